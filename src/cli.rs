//! Command-line arguments and subcommands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Authentication reverse proxy: sign in with Google, X, Facebook or any
/// OpenID Connect provider, then reach the app with identity headers.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    /// Config file (default: $PORTCULLIS_CONFIG, else config/portcullis.toml).
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the config and print every problem; exit 0 when valid.
    Check,
    /// Print a fresh random session secret (32 bytes, base64).
    Secret,
    /// List or end a user's sessions (store = "redis"), talking to Redis.
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// Print the user's sessions as JSON (id, provider, created, last_seen, expires).
    List {
        /// The user, as in X-User: `{provider}:{subject}`, e.g. google:1234.
        #[arg(long, value_name = "USER")]
        user: String,
    },
    /// End all of the user's sessions on every replica; prints {"revoked": N}.
    Revoke {
        /// The user, as in X-User: `{provider}:{subject}`, e.g. google:1234.
        #[arg(long, value_name = "USER")]
        user: String,
    },
}

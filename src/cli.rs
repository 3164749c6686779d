//! Command-line arguments and subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    Run(RunArgs),
    /// Validate the config and print every problem; exit 0 when valid.
    Check(CheckArgs),
    /// Print a fresh random session secret (32 bytes, base64).
    Secret,
    /// Print a fresh EC P-256 private key (PKCS#8 PEM) for [assertion] key_file.
    AssertionKey,
    /// List or end a user's sessions (store = "redis"), talking to Redis.
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
}

#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Take over the listening sockets of a running Portcullis (binary
    /// upgrade): start this, then send SIGQUIT to the old process, which
    /// hands its sockets over through `server.upgrade_socket` and finishes
    /// its requests. No connection is refused meanwhile.
    #[arg(long)]
    pub upgrade: bool,
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

/// `portcullis check [--explain [--user P:S --email E --groups G,H --host H] [METHOD PATH]]`.
#[derive(Debug, Default, Args)]
pub struct CheckArgs {
    /// Also print the effective rule table, and with METHOD PATH which rule
    /// applies to that request and why.
    #[arg(long)]
    pub explain: bool,
    /// The signed-in user, as its X-User value (default: no session).
    #[arg(long, requires = "explain", value_name = "PROVIDER:SUBJECT")]
    pub user: Option<String>,
    /// The user's email, taken as verified.
    #[arg(long, requires = "user", value_name = "EMAIL")]
    pub email: Option<String>,
    /// The user's groups, comma-separated (as from the user's provider).
    #[arg(long, requires = "user", value_delimiter = ',', value_name = "GROUPS")]
    pub groups: Vec<String>,
    /// The request's Host (default: server.public_url's).
    #[arg(long, requires = "explain", value_name = "HOST")]
    pub host: Option<String>,
    /// The request's method, e.g. GET.
    #[arg(requires_all = ["explain", "path"], value_name = "METHOD")]
    pub method: Option<String>,
    /// The request's path and query, e.g. /admin/x.
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
}

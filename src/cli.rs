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
}

//! The `portcullis` binary: CLI -> config -> telemetry -> pingora server.

use std::process::ExitCode;

use clap::Parser;

use portcullis::cli::{Cli, Command};
use portcullis::config::{self, ConfigError, ProcessEnv};
use portcullis::session::seal::SessionKey;

/// mimalloc: glibc's malloc/free were ~13% of the proxy's CPU time under
/// load (perf, wrk -c64), more than all of Portcullis's own code.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Secret => {
            println!("{}", SessionKey::generate().to_base64());
            ExitCode::SUCCESS
        }
        Command::Check => {
            let path = config::resolve_path(cli.config);
            match config::load(&path, &ProcessEnv) {
                Ok(s) => {
                    println!(
                        "{}: OK ({} provider(s): {})",
                        path.display(),
                        s.providers.len(),
                        s.providers
                            .iter()
                            .map(|p| p.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    report(&path, &e);
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => {
            let path = config::resolve_path(cli.config);
            let settings = match config::load(&path, &ProcessEnv) {
                Ok(s) => s,
                Err(e) => {
                    report(&path, &e);
                    return ExitCode::FAILURE;
                }
            };
            let _logs = portcullis::telemetry::init();
            match portcullis::server::run(settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn report(path: &std::path::Path, e: &ConfigError) {
    eprintln!("portcullis: invalid configuration in {}:", path.display());
    for line in e.lines() {
        eprintln!("  - {line}");
    }
}

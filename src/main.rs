//! The `portcullis` binary: CLI -> config -> telemetry -> pingora server.

use std::process::ExitCode;

use clap::Parser;

use portcullis::cli::{CheckArgs, Cli, Command, RunArgs, SessionsAction};
use portcullis::config::{self, ConfigError, ProcessEnv};
use portcullis::session::seal::SessionKey;

/// mimalloc: glibc's malloc/free were ~13% of the proxy's CPU time under
/// load (perf, wrk -c64), more than all of Portcullis's own code.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Secret => {
            println!("{}", SessionKey::generate().to_base64());
            ExitCode::SUCCESS
        }
        Command::AssertionKey => match portcullis::assertion::generate_key_pem() {
            Ok(pem) => {
                print!("{pem}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check(args) => {
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
                    // Valid but risky: said, never fatal.
                    for w in config::warnings(&s) {
                        println!("warning: {w}");
                    }
                    if args.explain {
                        return explain(s, &args);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    report(&path, &e);
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sessions { action } => {
            let path = config::resolve_path(cli.config);
            match config::load(&path, &ProcessEnv) {
                Ok(s) => sessions(&s, action),
                Err(e) => {
                    report(&path, &e);
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(run) => {
            let path = config::resolve_path(cli.config);
            let settings = match config::load(&path, &ProcessEnv) {
                Ok(s) => s,
                Err(e) => {
                    report(&path, &e);
                    return ExitCode::FAILURE;
                }
            };
            let _logs = portcullis::telemetry::init();
            for w in config::warnings(&settings) {
                tracing::warn!(key = %w.key, "{}", w.message);
            }
            if let Some(endpoint) = &settings.telemetry.otlp_endpoint {
                if let Err(e) = portcullis::traces::init(endpoint) {
                    eprintln!("portcullis: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let result = portcullis::server::run(settings, Some(path), run.upgrade);
            portcullis::traces::shutdown();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `portcullis sessions list|revoke --user U`: straight to Redis, the same
/// JSON as the admin listener. A revocation is announced to every replica.
fn sessions(settings: &config::Settings, action: SessionsAction) -> ExitCode {
    use portcullis::session::redis;
    let config::SessionStore::Redis(store) = &settings.session.store else {
        eprintln!(
            "portcullis: session.store is \"cookie\": sessions live only in cookies and cannot be listed or revoked; set store = \"redis\""
        );
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let keys = redis::Keys::new(&store.key_prefix);
    let result = runtime.block_on(async {
        let con = redis::connect_once(store).await?;
        match action {
            SessionsAction::List { user } => {
                redis::list(con, &keys, &user, portcullis::session::unix_now())
                    .await
                    .map(|list| serde_json::to_string(&list).unwrap_or_default())
            }
            SessionsAction::Revoke { user } => redis::revoke(con, &keys, &user)
                .await
                .map(|(n, _)| serde_json::json!({ "revoked": n }).to_string()),
        }
        .map_err(|e| redis::describe(&e))
    });
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!(
                "portcullis: Redis at {} could not be used: {why}",
                store.target.redacted()
            );
            ExitCode::FAILURE
        }
    }
}

/// `check --explain`: the rule table, and one request judged by the gate.
fn explain(settings: config::Settings, args: &CheckArgs) -> ExitCode {
    use portcullis::proxy::explain::{identity, Question};
    // The gate itself, built as for serving, minus the network: nothing is
    // fetched or forwarded (the upstream address is never used).
    let built = portcullis::providers::http_client()
        .map_err(|e| e.to_string())
        .and_then(|http| {
            portcullis::providers::Providers::build(&settings, &http).map_err(|e| e.to_string())
        });
    let providers = match built {
        Ok(p) => p,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = portcullis::proxy::App::new(
        settings,
        providers,
        ([127, 0, 0, 1], 9).into(),
        portcullis::session::SessionStore::Cookie,
    );
    println!();
    print!("{}", app.rule_table());
    let (Some(method), Some(target)) = (&args.method, &args.path) else {
        return ExitCode::SUCCESS;
    };
    let user = match &args.user {
        Some(u) => match identity(u, args.email.as_deref(), &args.groups) {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("portcullis: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        eprintln!("portcullis: {method:?} is not an HTTP method");
        return ExitCode::FAILURE;
    };
    let question = Question {
        method,
        target: target.clone(),
        host: args.host.clone(),
        user,
    };
    match app.explain(&question) {
        Ok(text) => {
            println!();
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(path: &std::path::Path, e: &ConfigError) {
    eprintln!("portcullis: invalid configuration in {}:", path.display());
    for line in e.lines() {
        eprintln!("  - {line}");
    }
}

/// mimalloc asks for transparent huge pages on its memory (madvise), so a
/// few touched bytes make 2 MiB resident: 16 of the 17 MiB of anonymous
/// memory of an idle proxy were huge pages. Without them: idle RSS 28 ->
/// 15 MiB, peak at 1,000 connections 69 -> 58 MiB, throughput unchanged
/// within noise. The flag applies to every page touched from here on,
/// whoever asked for it.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and only
    // sets a flag on this process; a failure (old kernel) changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

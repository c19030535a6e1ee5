//! The `ratchet` binary: the inline-tier CLI (turn, submit, drain, history,
//! events, resume, export, replay) and the Restate endpoint (`serve`).

mod agents;
mod approve;
mod args;
mod chaos;
mod inline;
mod models;
mod output;
mod serve;
mod setup;
mod telemetry;

use clap::Parser;
use std::process::ExitCode;

pub(crate) use args::{Cli, Command, JournalArgs, StoreArgs, WaitTarget};

fn main() -> ExitCode {
    ratchet::secrets::register_from_env();
    let cli = Cli::parse();
    let traces = match setup::init_logging(cli.otlp_endpoint.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            let message = ratchet::secrets::redact_string(format!("{e:#}"));
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ran = runtime.block_on(inline::dispatch(cli.command));
    if let Some(t) = traces {
        t.shutdown();
    }
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = ratchet::secrets::redact_string(format!("{e:#}"));
            match output::error_code(&e) {
                Some(code) if !message.contains(&code) => eprintln!("error: {code}: {message}"),
                _ => eprintln!("error: {message}"),
            }
            if output::refused_input(&e) {
                ExitCode::from(2)
            } else if output::error_code_of(&e) == Some(ratchet::ErrorCode::TurnParked) {
                // Not a failure: the turn waits, its steps kept.
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

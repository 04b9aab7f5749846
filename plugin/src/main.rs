//! `kubectl riposte`: Riposte's kubectl plugin. kubectl runs it for `kubectl riposte ...`
//! when `kubectl-riposte` is on the PATH.
#![forbid(unsafe_code)]

mod cli;
mod cluster;
mod commands;
mod error;
mod filter;
mod hunt;
mod objects;
mod render;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit with status 2 here, as clap does.
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime starts");
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

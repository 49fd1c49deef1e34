//! Entry point: parse, dispatch, and turn errors into one line and exit 2.

use std::process::ExitCode;

use clap::Parser;
use crashtrace::{
    cli::{Cli, Command},
    live::config::{Env, LiveConfig},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            crashtrace::diag::line(format_args!("crashtrace: {}", crashtrace::loader::error_chain(e.as_ref())));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.live_args() {
        Some(args) => {
            let config = LiveConfig::resolve(args, Env::current());
            runtime.block_on(crashtrace::live::run(&config))?;
            Ok(ExitCode::SUCCESS)
        }
        None => match cli.command {
            Some(Command::Report(args)) => crashtrace::report::run(&args),
            Some(Command::Doctor(args)) => crashtrace::doctor::run(&args),
            Some(Command::Live(_)) | None => unreachable!("live_args covers these"),
        },
    }
}

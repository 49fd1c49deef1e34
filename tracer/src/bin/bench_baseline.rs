//! The overhead benchmark's naive baseline, built only by `cargo xtask bench`
//! (feature `bench-baseline`): crashtrace live, with every signal_generate
//! event shipped to user space unfiltered, as sigsnoop-style tools do. It
//! takes the live flags of crashtrace; the shipped binary has no way to
//! turn the naive mode on.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use crashtrace::{
    cli::Cli,
    live::config::{Env, Layers},
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crashtrace-bench-baseline: {}", crashtrace::loader::error_chain(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<()> {
    let matches = Cli::command().name("crashtrace-bench-baseline").get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let Some(args) = cli.live_args() else {
        anyhow::bail!("the baseline only traces live; give live flags, not a subcommand");
    };
    let live_matches = matches.subcommand_matches("live").unwrap_or(&matches);
    let layers = Layers::from_matches(args, live_matches);
    let (mut config, _) = layers.resolve(Env::current())?;
    config.load.naive_all_signals = true;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // No configuration layers: a reload must not turn the naive mode off.
    runtime.block_on(crashtrace::live::run(&config, None))?;
    Ok(())
}

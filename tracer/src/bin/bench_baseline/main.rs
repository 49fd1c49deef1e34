//! The benchmarks' baselines, built only by `cargo xtask bench` (feature
//! `bench-baseline`), so the shipped binary has no way to turn them on. It
//! takes the live flags of crashtrace, and runs in one of two modes:
//!
//! - by default, the overhead benchmark's naive baseline: every
//!   signal_generate event shipped to user space unfiltered, as
//!   sigsnoop-style tools do;
//! - with `--no-stack-capture` (this binary's own flag), the stack-capture
//!   benchmark's baseline: crashtrace as shipped, but with the stack
//!   program attached and returning at once.
//!
//! With `--correlate-cost OPEN[,OPEN...]` as its first argument it traces
//! nothing: it times the correlator alone with that many chains open (the
//! correlation-cost benchmark; see [`correlate_cost`]).

mod correlate_cost;

use std::process::ExitCode;

use clap::{Arg, ArgAction, CommandFactory, FromArgMatches};
use crashtrace::{
    cli::Cli,
    live::config::{Env, Layers},
};

/// This binary's own flag; not one of crashtrace's.
const NO_STACK_CAPTURE: &str = "no-stack-capture";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crashtrace-bench-baseline: {}", crashtrace::loader::error_chain(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

fn command() -> clap::Command {
    Cli::command().name("crashtrace-bench-baseline").arg(
        Arg::new(NO_STACK_CAPTURE)
            .long(NO_STACK_CAPTURE)
            .action(ArgAction::SetTrue)
            .help("Take no stack at fatal signals (the stack-capture benchmark's baseline) instead of the naive mode"),
    )
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(correlate_cost::FLAG) {
        return correlate_cost::run(args.next().as_deref());
    }
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let Some(args) = cli.live_args() else {
        anyhow::bail!("the baseline only traces live; give live flags, not a subcommand");
    };
    let live_matches = matches.subcommand_matches("live").unwrap_or(&matches);
    let layers = Layers::from_matches(args, live_matches);
    let (mut config, _) = layers.resolve(Env::current())?;
    if matches.get_flag(NO_STACK_CAPTURE) {
        config.load.no_stack_capture = true;
    } else {
        config.load.naive_all_signals = true;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // No configuration layers: a reload must not turn either mode off.
    runtime.block_on(crashtrace::live::run(&config, None))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_baseline_flag_is_this_binarys_own() {
        let m = command().try_get_matches_from(["crashtrace-bench-baseline", "--no-stack-capture", "--json"]).expect("parses");
        assert!(m.get_flag(NO_STACK_CAPTURE));
        let m = command().try_get_matches_from(["crashtrace-bench-baseline", "--json"]).expect("parses");
        assert!(!m.get_flag(NO_STACK_CAPTURE));
    }
}

//! Entry point: parse, dispatch, and turn errors into one line and exit 2.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use crashtrace::{
    cli::{Cli, Command},
    live::config::{Env, Layers},
};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli, &matches) {
        Ok(code) => code,
        Err(e) => {
            crashtrace::sink::warn(&format!("crashtrace: {}", crashtrace::loader::error_chain(e.as_ref())));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    match cli.live_args() {
        Some(args) => {
            // The flags as given on the command line (bare, or under `live`),
            // over the configuration file.
            let live_matches = matches.subcommand_matches("live").unwrap_or(matches);
            let layers = Layers::from_matches(args, live_matches);
            let (config, _) = layers.resolve(Env::current())?;
            limit_malloc();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let finished = runtime.block_on(crashtrace::live::run(&config, Some(&layers)))?;
            Ok(if config.fail_on_drop && finished.dropped > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        None => match cli.command {
            Some(Command::Report(cmd)) => {
                let (args, list) = cmd.args();
                crashtrace::report::run(args, list)
            }
            Some(Command::Doctor(args)) => crashtrace::doctor::run(&args),
            Some(Command::Live(_)) | None => unreachable!("live_args covers these"),
        },
    }
}

/// glibc's malloc tuned for a long-running tracer with a small footprint:
/// - a fixed mmap threshold (128 KiB, glibc's starting value): glibc
///   otherwise raises it after the first big free (the parsed kernel BTF),
///   and later big buffers then come from the heap, where a growing Vec's
///   old and new copies are both resident and freed space stays mapped;
///   mmapped, a Vec grows by mremap and a free returns the memory at once;
/// - at most two arenas: each thread (event loop, symbolizer, journal
///   lookups) would otherwise get an arena of its own, each keeping freed
///   memory resident.
fn limit_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes glibc's allocator parameters; called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

//! Command-line arguments. Parsing only validates; [`crate::live::config`]
//! turns the live flags into what the tracer runs on, and `report` and
//! `doctor` check theirs likewise.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "crashtrace",
    version,
    about = "Trace crashes from the fatal signal to the core-dump collector, and say whether each core was stored or dropped",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace live (the default when no command is given).
    Live(LiveArgs),
    /// Read crashtrace event logs after the fact: timelines, verdicts, summary.
    Report(ReportArgs),
    /// Check this host, without tracing, for whatever would drop or hide cores.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// Log files written by `crashtrace --log` (rotated sets included).
    #[arg(required = true, value_name = "LOG")]
    pub logs: Vec<PathBuf>,
    /// Only chains involving this process, as live `--pid` keeps them: the
    /// process, the children it forks, and the crashes its handler's
    /// children cause.
    #[arg(short, long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only chains that started at or after this time (RFC 3339, or Unix seconds).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only chains that started before this time (RFC 3339, or Unix seconds).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only chains with this verdict; `dropped` matches every dropped:* verdict.
    #[arg(long, value_name = "VERDICT")]
    pub verdict: Option<String>,
    /// JSON Lines output instead of text.
    #[arg(short, long)]
    pub json: bool,
    /// Another directory where collectors store cores, for reconciliation.
    #[arg(long, value_name = "DIR")]
    pub store: Vec<PathBuf>,
    /// Stop at the first bad line instead of reporting it and going on.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args, Clone)]
pub struct DoctorArgs {
    /// JSON output with the same findings.
    #[arg(short, long)]
    pub json: bool,
    /// Also check this process (its RLIMIT_CORE and dumpability).
    #[arg(short, long, value_name = "PID")]
    pub pid: Option<u32>,
}

#[derive(Debug, Args, Clone)]
pub struct LiveArgs {
    /// Only chains involving this process: signals to and from it, the
    /// children its crash handler forks, and the collectors of their dumps.
    #[arg(short, long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Only cgroup events under this cgroup path (e.g. /system.slice), so a
    /// host churning cgroups elsewhere does not flood the output.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,

    /// Print JSON Lines (schema in the README) instead of text.
    #[arg(short, long)]
    pub json: bool,

    /// Also append the JSON Lines records to this file.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,

    /// When the log is fsynced: `verdict` (before each verdict is shown),
    /// `event` (after every record) or `none`.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = crate::log::SyncPolicy::Verdict)]
    pub log_sync: crate::log::SyncPolicy,

    /// Rotate the log before it grows past this size (bytes, or with a K, M
    /// or G suffix): PATH becomes PATH.1, PATH.1 becomes PATH.2, ...
    #[arg(long, value_name = "BYTES", requires = "log", value_parser = crate::log::parse_size)]
    pub log_max_size: Option<u64>,

    /// Rotated log files kept (PATH.1 ... PATH.N); older ones are deleted.
    #[arg(long, value_name = "N", default_value_t = crate::log::DEFAULT_KEEP)]
    pub log_keep: u32,

    /// What a full disk (or a log at its --log-max-size cap that cannot be
    /// rotated) does: `keep-tracing` (live output goes on, unwritten
    /// records are counted and said in the log once it takes records
    /// again) or `stop` (the tracer exits with an error).
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = crate::log::FullPolicy::KeepTracing)]
    pub log_full: crate::log::FullPolicy,

    /// Write a heartbeat record every SECS seconds (0: never), so that
    /// `crashtrace report` can tell a quiet tracer from a dead one.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub heartbeat: u64,

    /// Colour for text output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// How the core-dump entry is hooked: `auto` tries fentry, then kprobe,
    /// then the coredump tracepoint, then infers the dump from signal delivery.
    #[arg(long, value_enum, default_value_t = CoredumpHook::Auto)]
    pub coredump_hook: CoredumpHook,

    /// Ring buffer size in bytes (a power of two, at least one page).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = parse_ring_size)]
    pub ring_buffer_size: u32,

    /// Also copy this many bytes of the dying thread's user stack (at most
    /// 32768), so frames of code built without frame pointers can be
    /// unwound from `.eh_frame`. Each crash then costs this much ring
    /// buffer and log space; a copy is skipped (and counted as lost) while
    /// the ring buffer is over a quarter full. 0, the default, copies nothing.
    #[arg(long, value_name = "BYTES", default_value_t = 0, value_parser = parse_stack_copy)]
    pub stack_copy: u32,

    /// Ship every signal_generate event to user space, unfiltered. This is the
    /// naive baseline the benchmarks compare against; not for normal use.
    #[arg(long, hide = true)]
    pub naive_all_signals: bool,

    /// Print only verdict blocks, not one line per event.
    #[arg(long)]
    pub verdicts_only: bool,

    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,

    /// Load the eBPF object from this file instead of the one built in.
    #[arg(long, value_name = "PATH", env = "CRASHTRACE_BPF_OBJECT")]
    pub bpf_object: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoredumpHook {
    Auto,
    Fentry,
    Kprobe,
    /// The coredump:coredump tracepoint (Linux 7.3+).
    Tracepoint,
    /// Never hook the dump entry directly; infer it.
    Infer,
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

fn parse_stack_copy(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    let max = tracer_common::stack::STACK_COPY_MAX as u32;
    let min = tracer_common::stack::STACK_COPY_MIN as u32;
    if n != 0 && !(min..=max).contains(&n) {
        return Err(format!("{n} is outside {min}..={max} (or 0 for no copy)"));
    }
    Ok(n)
}

impl Cli {
    /// The live arguments, whether given bare or under `live`.
    pub fn live_args(&self) -> Option<&LiveArgs> {
        match &self.command {
            None => Some(&self.live),
            Some(Command::Live(a)) => Some(a),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("crashtrace").chain(args.iter().copied()))
    }

    #[test]
    fn bare_is_live_on_every_process() {
        let cli = parse(&[]).unwrap();
        let live = cli.live_args().unwrap();
        assert_eq!(live.pid, None);
        assert!(!live.json);
        assert_eq!(live.coredump_hook, CoredumpHook::Auto);
        assert_eq!(live.ring_buffer_size, 1 << 20);
    }

    #[test]
    fn pid_json_log() {
        let cli = parse(&["--pid", "1", "--json", "--log", "/tmp/x.jsonl"]).unwrap();
        let live = cli.live_args().unwrap();
        assert_eq!(live.pid, Some(1));
        assert!(live.json);
        assert_eq!(live.log.as_deref(), Some(std::path::Path::new("/tmp/x.jsonl")));
    }

    #[test]
    fn live_subcommand_takes_the_same_flags() {
        let cli = parse(&["live", "--pid", "7", "--coredump-hook", "kprobe"]).unwrap();
        let live = cli.live_args().unwrap();
        assert_eq!(live.pid, Some(7));
        assert_eq!(live.coredump_hook, CoredumpHook::Kprobe);
    }

    #[test]
    fn short_pid_and_json_mean_the_long_ones() {
        for args in [&["-p", "42", "-j"][..], &["live", "-p", "42", "-j"], &["-jp", "42"], &["-p42", "-j"]] {
            let cli = parse(args).unwrap();
            let live = cli.live_args().unwrap();
            assert_eq!(live.pid, Some(42), "{args:?}");
            assert!(live.json, "{args:?}");
        }
        match parse(&["report", "-p", "9", "-j", "a.jsonl"]).unwrap().command {
            Some(Command::Report(r)) => {
                assert_eq!(r.pid, Some(9));
                assert!(r.json);
                assert_eq!(r.logs, vec![PathBuf::from("a.jsonl")]);
            }
            other => panic!("expected report, got {other:?}"),
        }
        match parse(&["doctor", "-p", "1", "-j"]).unwrap().command {
            Some(Command::Doctor(d)) => {
                assert_eq!(d.pid, Some(1));
                assert!(d.json);
            }
            other => panic!("expected doctor, got {other:?}"),
        }
    }

    #[test]
    fn short_flags_validate_like_the_long_ones() {
        assert!(parse(&["-p", "abc"]).is_err());
        assert!(parse(&["-p"]).is_err());
        assert!(parse(&["-j", "x"]).is_err(), "-j takes no value");
        assert!(parse(&["report", "-p", "x", "a.jsonl"]).is_err());
        // Only -p and -j are short; other letters stay unclaimed.
        assert!(parse(&["-c", "/x"]).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["--pid", "abc"]).is_err());
        assert!(parse(&["--pid", "-3"]).is_err());
        assert!(parse(&["--ring-buffer-size", "5000"]).is_err());
        assert!(parse(&["--ring-buffer-size", "1024"]).is_err());
        assert!(parse(&["--coredump-hook", "magic"]).is_err());
        assert!(parse(&["--no-such-flag"]).is_err());
    }
}

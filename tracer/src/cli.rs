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
    Report(ReportCommand),
    /// Check this host, without tracing, for whatever would drop or hide cores.
    Doctor(DoctorArgs),
}

/// `report [list] LOG...`: the full report, or one line per crash.
#[derive(Debug, Args, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportCommand {
    #[command(subcommand)]
    pub action: Option<ReportAction>,
    #[command(flatten)]
    pub args: ReportArgs,
}

#[derive(Debug, Subcommand, Clone)]
pub enum ReportAction {
    /// One line per crash (time, pid, signal, verdict, core, executable),
    /// like `coredumpctl list`.
    List(ReportArgs),
}

impl ReportCommand {
    /// The report's arguments, and whether only the list is wanted.
    pub fn args(&self) -> (&ReportArgs, bool) {
        match &self.action {
            Some(ReportAction::List(a)) => (a, true),
            None => (&self.args, false),
        }
    }
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
    /// Only chains that started at or after this time: RFC 3339
    /// (2026-05-20T19:59:01Z), Unix seconds, or a time ago (`1h`, `30m`,
    /// `2d`, `-1h`; s, m, h, d, w).
    #[arg(short = 'S', long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Only chains that started before this time (as for --since).
    #[arg(short = 'U', long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Only chains with this verdict; `dropped` matches every dropped:* verdict.
    #[arg(long, value_name = "VERDICT")]
    pub verdict: Option<String>,
    /// Only crashes in this container (id, 12+ characters of it, the podman
    /// name the verdict record carries, or an nspawn machine name), as the
    /// chain's cgroup path names it.
    #[arg(long, value_name = "ID|NAME")]
    pub container: Option<String>,
    /// Only crashes in this systemd unit (`nginx` means `nginx.service`).
    #[arg(long, value_name = "NAME")]
    pub unit: Option<String>,
    /// JSON Lines output instead of text.
    #[arg(short, long)]
    pub json: bool,
    /// Another directory where collectors store cores, for reconciliation.
    #[arg(long, value_name = "DIR")]
    pub store: Vec<PathBuf>,
    /// Stop at the first bad line instead of reporting it and going on.
    #[arg(long)]
    pub strict: bool,
    /// Exit 1 if any chain shown has a dropped:* verdict (for scripts and CI).
    #[arg(long)]
    pub fail_on_drop: bool,
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
    /// Read the configuration from this file instead of
    /// /etc/crashtrace/crashtrace.toml (flags override it; SIGHUP re-reads it).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

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
    /// Unless given, it is sized from the number of CPUs and --stack-copy:
    /// room for 256 crashes per CPU (their events and stack copies) waiting
    /// to be read, between 1 MiB and 64 MiB; 8 MiB on 2 CPUs with the
    /// default stack copy. That rides out the reader falling behind a crash
    /// storm at full speed for tens of milliseconds without loss.
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    pub ring_buffer_size: Option<u32>,

    /// Bytes of the dying thread's user stack copied at a fatal signal (512
    /// to 32768; 0 for none). User space unwinds the innermost frames from
    /// this copy with the modules' `.eh_frame` tables, then continues with
    /// the kernel's frame-pointer walk: without the copy, a fault in a leaf
    /// function or a libc string function loses its caller, and code built
    /// without frame pointers loses every caller. Each crash costs this much
    /// ring buffer and log space; a copy is skipped (and counted as lost)
    /// while the ring buffer is over half full. The kernel copies the
    /// largest of 32, 16, 8, 4, 2, 1 KiB or 512 bytes that fits below the
    /// top of the stack.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_STACK_COPY, value_parser = parse_stack_copy)]
    pub stack_copy: u32,

    /// Also walk the kernel stack at a fatal signal. At `signal_deliver` it
    /// only shows the way back to user space (a page fault's or a syscall's
    /// entry, then `get_signal`), and the walk adds 2 to 5 µs to every
    /// crash (BENCHMARKS.md, "Stack capture cost"), so it is off unless
    /// asked for.
    #[arg(long)]
    pub kernel_stack: bool,

    /// Print only verdict blocks, not one line per event.
    #[arg(long)]
    pub verdicts_only: bool,

    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,

    /// Exit 1 at the end if any core was dropped (for scripts and CI).
    #[arg(long)]
    pub fail_on_drop: bool,

    /// Load the eBPF object from this file instead of the one built in.
    #[arg(long, value_name = "PATH", env = "CRASHTRACE_BPF_OBJECT")]
    pub bpf_object: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9477).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Write the metrics to this file for node_exporter's textfile collector
    /// (e.g. /var/lib/node_exporter/textfile_collector/crashtrace.prom).
    #[arg(long, value_name = "PATH")]
    pub metrics_textfile: Option<PathBuf>,

    /// How often the metrics textfile is rewritten.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, requires = "metrics_textfile")]
    pub metrics_interval: u64,

    /// Only crashes in this container: its id (12 characters or more of it),
    /// its name (rootful podman: read from containers/storage when its first
    /// fatal signal is delivered; events before that match by id only) or,
    /// for systemd-nspawn, its machine name.
    #[arg(long, value_name = "ID|NAME")]
    pub container: Option<String>,

    /// Only crashes in this systemd unit (`nginx` means `nginx.service`).
    #[arg(long, value_name = "NAME")]
    pub unit: Option<String>,

    /// Send each verdict to the systemd journal as a structured entry.
    #[arg(long)]
    pub journal: bool,

    /// journald's native socket (for tests).
    #[arg(long, value_name = "PATH", hide = true, default_value = crate::sink::journal::JOURNAL_SOCKET)]
    pub journal_socket: PathBuf,
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

pub(crate) fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

/// `--stack-copy` unless given: enough for the innermost frames of most
/// crashes (and whole small programs), small enough to copy in about a
/// microsecond.
pub const DEFAULT_STACK_COPY: u32 = 8192;

pub(crate) fn parse_stack_copy(s: &str) -> Result<u32, String> {
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

/// README.md's flag tables sit between these markers.
pub const README_FLAGS_BEGIN: &str = "<!-- flags:begin -->";
pub const README_FLAGS_END: &str = "<!-- flags:end -->";

/// Every visible flag of every command as Markdown tables, from the clap
/// definition itself, so the README cannot lose a flag.
pub fn markdown_flags() -> String {
    use clap::CommandFactory;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = String::new();
    let sections: [(&str, &clap::Command); 3] = [
        ("`crashtrace` (and `crashtrace live`)", &cmd),
        ("`crashtrace report LOG...` (and `crashtrace report list LOG...`)", cmd.find_subcommand("report").expect("report")),
        ("`crashtrace doctor`", cmd.find_subcommand("doctor").expect("doctor")),
    ];
    for (title, c) in sections {
        out.push_str(&format!("{title}\n\n| flag | default | what it does |\n| --- | --- | --- |\n"));
        for arg in c.get_arguments().filter(|a| !a.is_hide_set()) {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let value = || -> String {
                let possible: Vec<String> = arg.get_possible_values().iter().map(|p| p.get_name().to_string()).collect();
                if !possible.is_empty() {
                    return possible.join("|");
                }
                arg.get_value_names().map(|n| n.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")).unwrap_or_default()
            };
            let takes_value = arg.get_action().takes_values();
            let mut name = match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => format!("`-{s}`, `--{l}"),
                (None, Some(l)) => format!("`--{l}"),
                (Some(s), None) => format!("`-{s}"),
                (None, None) => format!("`{}...", value()),
            };
            if (arg.get_long().is_some() || arg.get_short().is_some()) && takes_value {
                name.push(' ');
                name.push_str(&value());
            }
            name.push('`');
            let default: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
            let default = if default.is_empty() || default == ["false"] { String::new() } else { format!("`{}`", default.join(" ")) };
            let help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
            let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
            out.push_str(&format!("| {} | {} | {} |\n", cell(&name), cell(&default), cell(&help)));
        }
        out.push('\n');
    }
    out.pop();
    out
}

/// A Markdown table cell: `|` escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// `readme` with its flag region replaced by [`markdown_flags`]; None if it
/// has no region.
pub fn with_readme_flags(readme: &str) -> Option<String> {
    let begin = readme.find(README_FLAGS_BEGIN)? + README_FLAGS_BEGIN.len();
    let end = begin + readme[begin..].find(README_FLAGS_END)?;
    Some(format!("{}\n{}\n{}", &readme[..begin], markdown_flags(), &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README.md's flag tables are what the CLI definition renders; set
    /// CRASHTRACE_UPDATE_README=1 (or run `cargo xtask readme`) to rewrite them.
    #[test]
    fn readme_flag_section_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let want = with_readme_flags(&readme)
            .unwrap_or_else(|| panic!("{} has no {README_FLAGS_BEGIN} ... {README_FLAGS_END} region", path.display()));
        if readme == want {
            return;
        }
        if std::env::var_os("CRASHTRACE_UPDATE_README").is_some() {
            std::fs::write(&path, &want).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            return;
        }
        panic!("README.md's flag tables are stale: run `cargo xtask readme` to regenerate them from tracer/src/cli.rs");
    }

    #[test]
    fn flag_tables_name_every_visible_flag_of_every_command() {
        use clap::CommandFactory;
        let tables = markdown_flags();
        let cmd = Cli::command();
        let mut checked = 0;
        for c in [&cmd, cmd.find_subcommand("report").unwrap(), cmd.find_subcommand("report").unwrap().find_subcommand("list").unwrap(), cmd.find_subcommand("doctor").unwrap()] {
            for arg in c.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    assert!(tables.contains(&format!("`--{long}")), "--{long} of {} missing:\n{tables}", c.get_name());
                    checked += 1;
                }
            }
        }
        assert!(checked > 25, "only {checked} flags checked");
        // The benchmarks' naive baseline is a separate bench-only binary
        // (feature `bench-baseline`), not a hidden flag of this one.
        assert!(!tables.contains("naive"), "{tables}");
        assert!(cmd.get_arguments().all(|a| a.get_long() != Some("naive-all-signals")));
        // Nor is the stack-capture benchmark's baseline (no capture at all).
        assert!(cmd.get_arguments().all(|a| a.get_long() != Some("no-stack-capture")));
        assert!(Cli::try_parse_from(["crashtrace", "--no-stack-capture"]).is_err());
        assert!(tables.contains("| `-p`, `--pid PID` |"), "{tables}");
        assert!(tables.contains("`--log-sync verdict\\|event\\|none` | `verdict` |"), "{tables}");
        assert!(tables.contains("| `LOG...` |"), "{tables}");
    }

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
        assert_eq!(live.ring_buffer_size, None, "sized when the configuration is resolved");
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
                let (r, list) = r.args();
                assert!(!list);
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
    fn report_list_takes_the_report_flags() {
        match parse(&["report", "list", "-S", "1h", "-U", "-5m", "--fail-on-drop", "a.jsonl", "b.jsonl"]).unwrap().command {
            Some(Command::Report(r)) => {
                let (r, list) = r.args();
                assert!(list);
                assert_eq!((r.since.as_deref(), r.until.as_deref()), (Some("1h"), Some("-5m")));
                assert!(r.fail_on_drop);
                assert_eq!(r.logs.len(), 2);
            }
            other => panic!("expected report list, got {other:?}"),
        }
        assert!(parse(&["report", "list"]).is_err(), "list needs a log");
        assert!(parse(&["report"]).is_err(), "report needs a log");
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

//! The live tracer's configuration, resolved once from the command line.
//!
//! Two layers, as in ripgrep: [`crate::cli::LiveArgs`] only parses and
//! validates flags; [`LiveConfig::resolve`] decides what they mean here and
//! now (whether to colour, which sinks to open and in what order, which
//! scope) and the tracer runs on the result. Each field is named after the
//! flag it comes from, and [`Layers`] puts the configuration file
//! ([`super::config_file`]) under the flags: flag, else file, else default.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use super::config_file::{self, ConfigFileError};
use crate::{
    cli::{ColorChoice, CoredumpHook, LiveArgs},
    log::LogOptions,
    render::Style,
    sink::SinkSpec,
};

/// What the live tracer runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// `--pid`: the watched process.
    pub pid: Option<u32>,
    /// `--cgroup`: the cgroup subtree in scope.
    pub cgroup: Option<String>,
    /// `--container`, `--unit`: the container or systemd unit in scope.
    pub container: Option<String>,
    pub unit: Option<String>,
    /// Where records go, in this order: the log first, so that a verdict is
    /// on disk before it is shown.
    pub sinks: Vec<SinkSpec>,
    /// What to load and how to attach it.
    pub load: LoadConfig,
    /// `--duration`: stop after this long.
    pub duration: Option<Duration>,
    /// `--fail-on-drop`: exit 1 if a core was dropped.
    pub fail_on_drop: bool,
    /// `--heartbeat`: how often a heartbeat record is written (None: never).
    pub heartbeat: Option<Duration>,
}

/// The eBPF side: the object and how its programs are loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// `--bpf-object`; None for the object built into the binary.
    pub bpf_object: Option<PathBuf>,
    pub coredump_hook: CoredumpHook,
    /// `--ring-buffer-size`, or the size [`auto_ring_size`] picks.
    pub ring_buffer_size: u32,
    pub stack_copy: u32,
    /// `--kernel-stack`: walk the kernel stack at a fatal signal too.
    pub kernel_stack: bool,
    /// No stack capture at all: the stack-capture benchmark's baseline,
    /// set only by the bench-only `crashtrace-bench-baseline`.
    pub no_stack_capture: bool,
    /// Ship every signal_generate event to user space: the naive baseline
    /// of the overhead benchmark. No flag sets it; only the bench-only
    /// binary `crashtrace-bench-baseline` does.
    pub naive_all_signals: bool,
}

/// Crashes per CPU the automatic ring buffer has room for while the reader
/// is behind. At about 10 KiB a crash (the default 8 KiB stack copy, the
/// 1.5 KiB stack capture, the small events) and a full-speed storm of some
/// 6,000 crashes/s per CPU, that is about 40 ms of reader stall; a 1 MiB
/// ring (2 ms) lost events in such storms, 16 MiB lost none.
pub const AUTO_RING_CRASHES_PER_CPU: u64 = 256;
/// Bytes of one crash's events other than its stack copy, rounded up: the
/// stack capture (1,504 bytes) and the signal, exit and dump events.
pub const AUTO_RING_EVENTS_PER_CRASH: u64 = 2048;
pub const AUTO_RING_MIN: u32 = 1 << 20;
/// The ring buffer's pages end up resident in the tracer once the ring has
/// wrapped, so the size is capped however many CPUs there are.
pub const AUTO_RING_MAX: u32 = 64 << 20;

/// The ring buffer size used when `--ring-buffer-size` is not given: room
/// for [`AUTO_RING_CRASHES_PER_CPU`] crashes per CPU, each with a
/// `stack_copy`-byte stack copy, as a power of two within
/// [`AUTO_RING_MIN`]..=[`AUTO_RING_MAX`].
pub fn auto_ring_size(cpus: u32, stack_copy: u32) -> u32 {
    let per_crash = u64::from(stack_copy) + AUTO_RING_EVENTS_PER_CRASH;
    let want = u64::from(cpus.max(1)).saturating_mul(AUTO_RING_CRASHES_PER_CPU).saturating_mul(per_crash);
    let pow2 = want.checked_next_power_of_two().unwrap_or(u64::MAX);
    pow2.clamp(u64::from(AUTO_RING_MIN), u64::from(AUTO_RING_MAX)) as u32
}

/// What about the environment the configuration depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Env {
    pub stdout_is_tty: bool,
    /// NO_COLOR is set (<https://no-color.org>).
    pub no_color: bool,
    /// Online CPUs: each can crash processes into the one ring buffer at
    /// the same time, so the automatic ring size grows with them.
    pub cpus: u32,
}

impl Env {
    pub fn current() -> Env {
        // SAFETY: isatty only reads the fd's state.
        let stdout_is_tty = unsafe { libc::isatty(1) } == 1;
        // SAFETY: sysconf only reads system configuration.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        Env { stdout_is_tty, no_color: std::env::var_os("NO_COLOR").is_some(), cpus: u32::try_from(online).unwrap_or(1).max(1) }
    }
}

impl LiveConfig {
    pub fn resolve(args: &LiveArgs, env: Env) -> LiveConfig {
        let mut sinks = Vec::new();
        if let Some(path) = &args.log {
            let options = LogOptions { sync: args.log_sync, max_size: args.log_max_size, keep: args.log_keep, full: args.log_full };
            sinks.push(SinkSpec::Log { path: path.clone(), options });
        }
        if args.json {
            // JSON Lines carry every record; --verdicts-only is for text.
            sinks.push(SinkSpec::JsonLines);
        } else {
            let color = match args.color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => env.stdout_is_tty && !env.no_color,
            };
            sinks.push(SinkSpec::Text { style: Style { color }, verdicts_only: args.verdicts_only });
        }
        // After the log and the screen: neither waits on these.
        if args.journal {
            sinks.push(SinkSpec::Journal { socket: args.journal_socket.clone() });
        }
        if args.metrics_listen.is_some() || args.metrics_textfile.is_some() {
            sinks.push(SinkSpec::Metrics {
                listen: args.metrics_listen,
                textfile: args.metrics_textfile.clone(),
                interval: Duration::from_secs(args.metrics_interval.max(1)),
            });
        }
        LiveConfig {
            pid: args.pid,
            cgroup: args.cgroup.clone(),
            container: args.container.clone(),
            unit: args.unit.clone(),
            sinks,
            load: LoadConfig {
                bpf_object: args.bpf_object.clone(),
                coredump_hook: args.coredump_hook,
                ring_buffer_size: args.ring_buffer_size.unwrap_or_else(|| auto_ring_size(env.cpus, args.stack_copy)),
                stack_copy: args.stack_copy,
                kernel_stack: args.kernel_stack,
                no_stack_capture: false,
                naive_all_signals: false,
            },
            duration: args.duration.map(Duration::from_secs),
            fail_on_drop: args.fail_on_drop,
            heartbeat: Some(args.heartbeat).filter(|s| *s > 0).map(Duration::from_secs),
        }
    }

    /// The keys that differ from `new` and that only a restart applies
    /// (see [`config_file::RELOADABLE_KEYS`] for the others).
    pub fn restart_keys(&self, new: &LiveConfig) -> Vec<&'static str> {
        let (a, b) = (&self.load, &new.load);
        [
            ("pid", self.pid != new.pid),
            ("cgroup", self.cgroup != new.cgroup),
            ("container", self.container != new.container),
            ("unit", self.unit != new.unit),
            ("heartbeat", self.heartbeat != new.heartbeat),
            ("duration", self.duration != new.duration),
            ("fail_on_drop", self.fail_on_drop != new.fail_on_drop),
            ("bpf_object", a.bpf_object != b.bpf_object),
            ("coredump_hook", a.coredump_hook != b.coredump_hook),
            ("ring_buffer_size", a.ring_buffer_size != b.ring_buffer_size),
            ("stack_copy", a.stack_copy != b.stack_copy),
            ("kernel_stack", a.kernel_stack != b.kernel_stack),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

/// What the configuration is built from: the flags as parsed and which of
/// them the command line (or environment) gave, kept so that SIGHUP builds it
/// again from a re-read file under the same flags.
#[derive(Clone, Debug)]
pub struct Layers {
    pub args: LiveArgs,
    pub given: BTreeSet<String>,
}

impl Layers {
    /// From clap's matches of the live arguments.
    pub fn from_matches(args: &LiveArgs, matches: &clap::ArgMatches) -> Layers {
        let given = matches
            .ids()
            .filter(|id| {
                matches!(
                    matches.value_source(id.as_str()),
                    Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
                )
            })
            .map(|id| id.as_str().to_string())
            .collect();
        Layers { args: args.clone(), given }
    }

    /// Reads the configuration file (again) and resolves flags over it.
    pub fn resolve(&self, env: Env) -> Result<(LiveConfig, Option<PathBuf>), ConfigFileError> {
        let file = config_file::load(self.args.config.as_deref())?;
        Ok((self.resolve_with(&file, env)?, file.path.clone()))
    }

    /// Resolves flags over an already read file.
    pub fn resolve_with(&self, file: &config_file::Loaded, env: Env) -> Result<LiveConfig, ConfigFileError> {
        let mut args = self.args.clone();
        file.apply(&mut args, &|key| self.given.contains(key))?;
        Ok(LiveConfig::resolve(&args, env))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{cli::Cli, log::SyncPolicy};

    fn resolve(args: &[&str], env: Env) -> LiveConfig {
        let cli = Cli::try_parse_from(std::iter::once("crashtrace").chain(args.iter().copied())).unwrap();
        LiveConfig::resolve(cli.live_args().unwrap(), env)
    }

    const TTY: Env = Env { stdout_is_tty: true, no_color: false, cpus: 2 };
    const PIPE: Env = Env { stdout_is_tty: false, no_color: false, cpus: 2 };

    #[test]
    fn ring_buffer_is_sized_from_cpus_and_stack_copy_unless_given() {
        // 2 CPUs × 256 crashes × (8 KiB copy + 2 KiB events) = 5 MiB, rounded up.
        assert_eq!(resolve(&[], PIPE).load.ring_buffer_size, 8 << 20);
        assert_eq!(resolve(&[], Env { cpus: 8, ..PIPE }).load.ring_buffer_size, 32 << 20);
        assert_eq!(resolve(&[], Env { cpus: 512, ..PIPE }).load.ring_buffer_size, AUTO_RING_MAX, "capped");
        assert_eq!(resolve(&["--stack-copy", "0"], Env { cpus: 1, ..PIPE }).load.ring_buffer_size, AUTO_RING_MIN);
        assert_eq!(resolve(&["--ring-buffer-size", "65536"], PIPE).load.ring_buffer_size, 65536, "given: kept");
        assert_eq!(auto_ring_size(0, 8192), auto_ring_size(1, 8192), "no CPU count reads as one");
        assert_eq!(auto_ring_size(u32::MAX, u32::MAX), AUTO_RING_MAX, "no overflow");
    }

    #[test]
    fn text_is_coloured_on_a_terminal_unless_no_color() {
        let text = |color, verdicts_only| vec![SinkSpec::Text { style: Style { color }, verdicts_only }];
        assert_eq!(resolve(&[], TTY).sinks, text(true, false));
        assert_eq!(resolve(&[], PIPE).sinks, text(false, false));
        assert_eq!(resolve(&[], Env { no_color: true, ..TTY }).sinks, text(false, false));
        assert_eq!(resolve(&["--color", "always", "--verdicts-only"], PIPE).sinks, text(true, true));
        assert_eq!(resolve(&["--color", "never"], TTY).sinks, text(false, false));
    }

    #[test]
    fn json_replaces_text_and_the_log_comes_first() {
        let c = resolve(&["--json", "--log", "/tmp/x.jsonl", "--log-sync", "event", "--log-keep", "2"], TTY);
        let options = LogOptions { sync: SyncPolicy::Event, max_size: None, keep: 2, ..LogOptions::default() };
        assert_eq!(c.sinks, vec![SinkSpec::Log { path: "/tmp/x.jsonl".into(), options }, SinkSpec::JsonLines]);
    }

    #[test]
    fn journal_and_metrics_are_opt_in_and_come_last() {
        assert!(!resolve(&[], PIPE).sinks.iter().any(|s| matches!(s, SinkSpec::Journal { .. } | SinkSpec::Metrics { .. })));
        let c = resolve(&["--json", "--journal", "--metrics-listen", "127.0.0.1:9477", "--metrics-textfile", "/tmp/c.prom"], PIPE);
        assert_eq!(
            c.sinks,
            vec![
                SinkSpec::JsonLines,
                SinkSpec::Journal { socket: "/run/systemd/journal/socket".into() },
                SinkSpec::Metrics {
                    listen: Some("127.0.0.1:9477".parse().unwrap()),
                    textfile: Some("/tmp/c.prom".into()),
                    interval: Duration::from_secs(15),
                },
            ]
        );
        let c = resolve(&["--metrics-textfile", "/tmp/c.prom", "--metrics-interval", "2"], PIPE);
        assert!(matches!(c.sinks.last(), Some(SinkSpec::Metrics { listen: None, interval, .. }) if *interval == Duration::from_secs(2)));
    }

    #[test]
    fn scope_load_and_duration_come_from_their_flags() {
        let c = resolve(&["--pid", "7", "--cgroup", "/system.slice", "--duration", "3", "--stack-copy", "4096", "--unit", "a"], PIPE);
        assert_eq!((c.pid, c.cgroup.as_deref()), (Some(7), Some("/system.slice")));
        assert_eq!((c.container.as_deref(), c.unit.as_deref()), (None, Some("a")));
        assert_eq!(c.duration, Some(Duration::from_secs(3)));
        assert_eq!(c.load.stack_copy, 4096);
        assert_eq!(c.load.coredump_hook, CoredumpHook::Auto);
        assert_eq!(resolve(&[], PIPE).duration, None);
    }
}

//! The live tracer's configuration, resolved once from the command line.
//!
//! Two layers, as in ripgrep: [`crate::cli::LiveArgs`] only parses and
//! validates flags; [`LiveConfig::resolve`] decides what they mean here and
//! now (whether to colour, which sinks to open and in what order, which
//! scope) and the tracer runs on the result. Each field is named after the
//! flag it comes from, so a configuration file can later supply the same
//! keys as another layer under the flags, without the tracer changing.

use std::{path::PathBuf, time::Duration};

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
    /// Where records go, in this order: the log first, so that a verdict is
    /// on disk before it is shown.
    pub sinks: Vec<SinkSpec>,
    /// What to load and how to attach it.
    pub load: LoadConfig,
    /// `--duration`: stop after this long.
    pub duration: Option<Duration>,
    /// `--heartbeat`: how often a heartbeat record is written (None: never).
    pub heartbeat: Option<Duration>,
}

/// The eBPF side: the object and how its programs are loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// `--bpf-object`; None for the object built into the binary.
    pub bpf_object: Option<PathBuf>,
    pub coredump_hook: CoredumpHook,
    pub ring_buffer_size: u32,
    pub stack_copy: u32,
    pub naive_all_signals: bool,
}

/// What about the environment the configuration depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Env {
    pub stdout_is_tty: bool,
    /// NO_COLOR is set (<https://no-color.org>).
    pub no_color: bool,
}

impl Env {
    pub fn current() -> Env {
        // SAFETY: isatty only reads the fd's state.
        let stdout_is_tty = unsafe { libc::isatty(1) } == 1;
        Env { stdout_is_tty, no_color: std::env::var_os("NO_COLOR").is_some() }
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
        LiveConfig {
            pid: args.pid,
            cgroup: args.cgroup.clone(),
            sinks,
            load: LoadConfig {
                bpf_object: args.bpf_object.clone(),
                coredump_hook: args.coredump_hook,
                ring_buffer_size: args.ring_buffer_size,
                stack_copy: args.stack_copy,
                naive_all_signals: args.naive_all_signals,
            },
            duration: args.duration.map(Duration::from_secs),
            heartbeat: Some(args.heartbeat).filter(|s| *s > 0).map(Duration::from_secs),
        }
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

    const TTY: Env = Env { stdout_is_tty: true, no_color: false };
    const PIPE: Env = Env { stdout_is_tty: false, no_color: false };

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
    fn scope_load_and_duration_come_from_their_flags() {
        let c = resolve(&["--pid", "7", "--cgroup", "/system.slice", "--duration", "3", "--stack-copy", "4096"], PIPE);
        assert_eq!((c.pid, c.cgroup.as_deref()), (Some(7), Some("/system.slice")));
        assert_eq!(c.duration, Some(Duration::from_secs(3)));
        assert_eq!(c.load.stack_copy, 4096);
        assert_eq!(c.load.coredump_hook, CoredumpHook::Auto);
        assert_eq!(resolve(&[], PIPE).duration, None);
    }
}

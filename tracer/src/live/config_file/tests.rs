use std::path::Path;

use clap::{CommandFactory, FromArgMatches};

use super::*;
use crate::{
    cli::Cli,
    live::config::{Env, Layers, LiveConfig},
    log::LogOptions,
    sink::SinkSpec,
};

const PIPE: Env = Env { stdout_is_tty: false, no_color: false, cpus: 2 };

fn layers(argv: &[&str]) -> Layers {
    let matches = Cli::command().try_get_matches_from(std::iter::once("crashtrace").chain(argv.iter().copied())).unwrap();
    let cli = Cli::from_arg_matches(&matches).unwrap();
    Layers::from_matches(cli.live_args().unwrap(), &matches)
}

fn resolve(argv: &[&str], file: &str) -> Result<LiveConfig, ConfigFileError> {
    let loaded = parse(Path::new("/etc/crashtrace/crashtrace.toml"), file.to_string())?;
    layers(argv).resolve_with(&loaded, PIPE)
}

/// The one line a bad file gives.
fn error(file: &str) -> String {
    let e = resolve(&[], file).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line, not {e:?}");
    e
}

#[test]
fn the_file_sets_what_the_flags_do_not() {
    let file = "log = \"/var/log/x.jsonl\"\nlog_max_size = \"8M\"\nlog_keep = 3\nverdicts_only = true\ncolor = \"always\"\npid = 9\nstack_copy = 4096\nkernel_stack = true\nduration = 5\n";
    let c = resolve(&[], file).unwrap();
    let options = LogOptions { max_size: Some(8 << 20), keep: 3, ..LogOptions::default() };
    assert_eq!(
        c.sinks,
        vec![
            SinkSpec::Log { path: "/var/log/x.jsonl".into(), options },
            SinkSpec::Text { style: crate::render::Style { color: true }, verdicts_only: true }
        ]
    );
    assert_eq!((c.pid, c.load.stack_copy, c.duration), (Some(9), 4096, Some(std::time::Duration::from_secs(5))));
    assert!(c.load.kernel_stack, "kernel_stack = true in the file");
}

#[test]
fn flags_win_over_the_file_even_when_they_give_the_default() {
    let file = "log = \"/var/log/x.jsonl\"\nlog_keep = 3\ncolor = \"always\"\nring_buffer_size = 65536\n";
    // --log-keep 5 is the default value, given explicitly: it still wins.
    let c = resolve(&["--log", "/tmp/y.jsonl", "--log-keep", "5", "--color", "never"], file).unwrap();
    match &c.sinks[..] {
        [SinkSpec::Log { path, options }, SinkSpec::Text { style, .. }] => {
            assert_eq!(path, Path::new("/tmp/y.jsonl"));
            assert_eq!(options.keep, 5);
            assert!(!style.color);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.load.ring_buffer_size, 65536, "not given as a flag: the file's");
    // Under `live` too.
    let matches = Cli::command().try_get_matches_from(["crashtrace", "live", "--color", "never"]).unwrap();
    let cli = Cli::from_arg_matches(&matches).unwrap();
    let l = Layers::from_matches(cli.live_args().unwrap(), matches.subcommand_matches("live").unwrap());
    assert!(l.given.contains("color") && !l.given.contains("log"), "{:?}", l.given);
}

#[test]
fn log_max_size_takes_bytes_or_a_suffix() {
    for (value, want) in [("1048576", 1u64 << 20), ("\"10M\"", 10 << 20), ("\"1G\"", 1 << 30)] {
        let c = resolve(&[], &format!("log = \"/l\"\nlog_max_size = {value}\n")).unwrap();
        match &c.sinks[0] {
            SinkSpec::Log { options, .. } => assert_eq!(options.max_size, Some(want), "{value}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let e = error("log_keep = 3\nlog = \"/x\n");
    assert!(e.starts_with("/etc/crashtrace/crashtrace.toml:2: "), "{e}");
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let e = error("# comment\n\ncolour = \"never\"\n");
    assert!(e.starts_with("/etc/crashtrace/crashtrace.toml:3: "), "{e}");
    assert!(e.contains("colour"), "{e}");
    // A table is not a key crashtrace knows either.
    assert!(error("[live]\npid = 1\n").contains("live"));
}

#[test]
fn a_wrong_type_names_the_key_and_line() {
    let e = error("log_keep = 3\npid = \"one\"\n");
    assert!(e.starts_with("/etc/crashtrace/crashtrace.toml:2: key \"pid\": "), "{e}");
    let e = error("json = 1\n");
    assert!(e.contains(":1: key \"json\""), "{e}");
    let e = error("pid = -3\n");
    assert!(e.contains(":1: key \"pid\""), "{e}");
}

#[test]
fn a_bad_value_names_the_key_line_and_the_choices() {
    let e = error("\n\nlog_sync = \"often\"\n");
    assert!(e.starts_with("/etc/crashtrace/crashtrace.toml:3: key \"log_sync\": \"often\" is not one of: verdict, event, none"), "{e}");
    let e = error("ring_buffer_size = 5000\n");
    assert!(e.contains(":1: key \"ring_buffer_size\": 5000 is not a power of two"), "{e}");
    let e = error("coredump_hook = \"magic\"\n");
    assert!(e.contains("key \"coredump_hook\"") && e.contains("tracepoint"), "{e}");
    let e = error("log = \"/l\"\nlog_max_size = \"12Q\"\n");
    assert!(e.contains(":2: key \"log_max_size\""), "{e}");
    let e = error("log = \"/l\"\nlog_max_size = true\n");
    assert!(e.contains(":2: key \"log_max_size\": boolean is not a size"), "{e}");
    let e = error("stack_copy = 1\n");
    assert!(e.contains("key \"stack_copy\""), "{e}");
    let e = error("log_max_size = \"8M\"\n");
    assert!(e.contains("needs a log"), "{e}");
}

#[test]
fn a_missing_default_file_is_no_file_but_a_missing_explicit_one_is_an_error() {
    let missing = Path::new("/nonexistent/crashtrace.toml");
    let e = load(Some(missing)).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/crashtrace.toml") && e.contains("--config"), "{e}");
    // The default path is absent on a host without the package; where it
    // exists, it must at least parse.
    if !Path::new(DEFAULT_PATH).exists() {
        assert!(load(None).unwrap().path.is_none());
    }
    // An empty file is an empty configuration.
    let empty = resolve(&[], "").unwrap();
    assert_eq!(empty, LiveConfig::resolve(&layers(&[]).args, PIPE));
}

#[test]
fn a_reload_names_the_keys_that_take_a_restart() {
    let old = resolve(&[], "log = \"/a\"\nring_buffer_size = 65536\n").unwrap();
    let new = resolve(&[], "log = \"/b\"\nring_buffer_size = 131072\ncgroup = \"/x\"\ncolor = \"always\"\n").unwrap();
    assert_eq!(old.restart_keys(&new), ["cgroup", "ring_buffer_size"]);
    assert!(old.restart_keys(&old).is_empty());
    for key in old.restart_keys(&new) {
        assert!(!RELOADABLE_KEYS.contains(&key), "{key}");
    }
}

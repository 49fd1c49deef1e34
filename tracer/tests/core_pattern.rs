//! Tier 2: who set the core_pattern a crash went to. A process writes
//! `|/bin/false` into /proc/sys/kernel/core_pattern, a crash follows, and the
//! verdict must name that writer, the old and the new value (issue 8, part 2).
//! Needs root; run serially by `cargo xtask test`.

mod common;

use std::process::Command;

use common::{Crasher, Exclusive, RlimitCore, TempDir, Tracer};
use serde_json::Value;

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn a_discarding_pattern_is_attributed_to_its_writer() {
    let settings = Exclusive::take();
    let dir = TempDir::new("crashtrace-pattern");
    let file_pattern = format!("{}/core.%p", dir.path().display());
    settings.set_core_pattern(&file_pattern);

    let mut tracer = Tracer::start(&["--json"]);
    // The writer: a shell of its own, so its pid is known and is not ours.
    let mut writer = Command::new("sh")
        .args(["-c", "printf '|/bin/false\\n' > /proc/sys/kernel/core_pattern"])
        .spawn()
        .expect("starting the writer shell");
    let writer_pid = writer.id();
    let status = writer.wait().expect("waiting for the writer");
    assert!(status.success(), "the writer shell failed: {status}");
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("reading core_pattern");
    assert_eq!(pattern.trim_end(), "|/bin/false", "the write did not take");

    let mut crasher = Crasher::spawn("segv", RlimitCore::Unlimited, dir.path());
    let crash_status = crasher.wait();
    let verdict = tracer.wait_verdict(crasher.pid);
    let stopped = tracer.stop();
    stopped.assert_clean_exit();

    assert_eq!(verdict["verdict"], "dropped:core-pattern-discards", "{verdict:#}");
    assert_eq!(verdict["kernel_said_dumped"], true, "|/bin/false still yields 'core dumped': {verdict:#}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(crash_status.signal(), Some(libc::SIGSEGV));
    let set_by = &verdict["core_pattern_set_by"];
    assert_eq!(set_by["writer"]["tgid"].as_u64(), Some(writer_pid as u64), "writer in {verdict:#}");
    assert_eq!(set_by["writer"]["comm"], "sh");
    assert_eq!(set_by["new_value"], "|/bin/false");
    assert_eq!(set_by["old_value"], Value::String(file_pattern.clone()));
    let reason = verdict["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("set by sh[{writer_pid}]")), "reason does not name the writer: {reason}");

    // The write itself is in the stream, as its own event.
    let write = stopped
        .records
        .iter()
        .find(|r| r["event"] == "sysctl-write" && r.pointer("/task/tgid").and_then(Value::as_u64) == Some(writer_pid as u64))
        .unwrap_or_else(|| panic!("no sysctl-write event from the writer {writer_pid}"));
    assert_eq!(write["name"], "kernel/core_pattern");
    assert_eq!(write["old_value"], Value::String(file_pattern));
    assert_eq!(write["new_value"], "|/bin/false");
}

//! Tier 2 for service mode: the real crashtrace, real BPF, real crashes.
//! Needs root; run serially:
//!
//!     cargo test -p crashtrace --test service -- --ignored --test-threads=1
//!
//! - SIGHUP after the log was renamed away (logrotate) opens a new file at
//!   the original path, starting with the header; the tracer goes on;
//! - SIGHUP re-reads the configuration file: a restart-only key that changed
//!   is named, a bad file keeps the configuration in use, and the tracer
//!   never dies of it;
//! - READY=1 reaches $NOTIFY_SOCKET (an abstract socket) once attached, and
//!   RELOADING=1 / READY=1 around a reload;
//! - a bad configuration file, or a missing explicit one, is one line and
//!   exit 2 before anything is loaded;
//! - --fail-on-drop makes a run that saw a dropped core exit 1.

mod common;

use std::{
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{Crasher, Exclusive, RlimitCore, TempDir, Tracer, CRASHTRACE};
use serde_json::Value;

/// The records of a log file, parsed.
fn log_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", path.display()))).collect()
}

fn has_verdict_for(records: &[Value], pid: u32) -> bool {
    records.iter().any(|r| r["type"] == "verdict" && r["crasher"]["tgid"] == pid)
}

/// Crashes a process that may not dump (RLIMIT_CORE 0): a quick, certain
/// verdict, and no core file left behind.
fn crash(dir: &Path) -> u32 {
    let mut c = Crasher::spawn("segv", RlimitCore::Bytes(0), dir);
    let status = c.wait();
    assert!(!status.success(), "the crasher did not crash: {status}");
    c.pid
}

fn sighup(tracer: &Tracer) {
    // SAFETY: kill(2) on our own child.
    let rc = unsafe { libc::kill(tracer.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill -HUP: {}", std::io::Error::last_os_error());
}

/// Waits (bounded) until crashtrace's stderr holds `needle`.
fn wait_stderr(tracer: &Tracer, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = tracer.stderr_text();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "crashtrace never said {needle:?}; its stderr:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until the log at `path` has a verdict for `pid`.
fn wait_logged(path: &Path, pid: u32) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if path.exists() {
            let records = log_records(path);
            if has_verdict_for(&records, pid) {
                return records;
            }
        }
        assert!(Instant::now() < deadline, "no verdict for pid {pid} in {}", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The next datagram on the notify socket, as text.
fn notified(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notify message within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn sighup_reopens_the_log_and_rereads_the_configuration() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-service");
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let log = dir.path().join("ct.jsonl");
    let config = dir.path().join("crashtrace.toml");
    std::fs::write(&config, format!("log = {:?}\nlog_keep = 3\n", log.display().to_string())).unwrap();

    let name = format!("crashtrace-test-notify-{}", std::process::id());
    let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let notify = format!("@{name}");
    let config_arg = config.display().to_string();
    let mut tracer = Tracer::start_with_env(&["--json", "--config", &config_arg], &[("NOTIFY_SOCKET", &notify)]);
    let ready = notified(&socket);
    assert!(ready.starts_with("READY=1\nSTATUS=tracing"), "{ready:?}");

    // Before the rotation: the verdict lands in the file the config named.
    let first = crash(dir.path());
    tracer.wait_verdict(first);
    wait_logged(&log, first);

    // logrotate: rename, then SIGHUP.
    let rotated = dir.path().join("ct.jsonl.1");
    std::fs::rename(&log, &rotated).unwrap();
    sighup(&tracer);
    assert!(notified(&socket).starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert!(notified(&socket).starts_with("READY=1"));
    let second = crash(dir.path());
    tracer.wait_verdict(second);
    let fresh = wait_logged(&log, second);
    assert_eq!(fresh[0]["type"], "header", "the new file starts with the header: {}", fresh[0]);
    assert!(!has_verdict_for(&fresh, first), "the new file has only what came after the SIGHUP");
    let old = log_records(&rotated);
    assert!(has_verdict_for(&old, first) && !has_verdict_for(&old, second), "the renamed file keeps what came before");

    // A restart-only key changed: named, not applied, tracing goes on.
    std::fs::write(&config, format!("log = {:?}\nring_buffer_size = 65536\n", log.display().to_string())).unwrap();
    sighup(&tracer);
    wait_stderr(&tracer, "ring_buffer_size changed in the configuration; they take a restart");

    // A bad file on reload: said, and the configuration in use stays.
    std::fs::write(&config, "log_sync = \"often\"\n").unwrap();
    sighup(&tracer);
    let text = wait_stderr(&tracer, "keeping the configuration in use");
    assert!(text.contains(&format!("{}:1: key \"log_sync\"", config.display())), "{text}");
    let third = crash(dir.path());
    tracer.wait_verdict(third);
    wait_logged(&log, third);

    let stopped = tracer.stop();
    stopped.assert_clean_exit();
    assert!(!stopped.stderr.contains("panicked"), "{}", stopped.stderr);
}

/// One line on stderr, exit 2, nothing loaded.
fn bad_config_run(config: &Path) -> common::Finished {
    let mut cmd = Command::new(CRASHTRACE);
    cmd.arg("--config").arg(config).args(["--json", "--duration", "5"]).env_remove("CRASHTRACE_BPF_OBJECT");
    common::run_bounded(cmd, Duration::from_secs(60))
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn a_bad_configuration_file_is_one_line_and_exit_2() {
    let _machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-service");
    let config = dir.path().join("crashtrace.toml");
    let path = config.display().to_string();
    for (text, needles) in [
        ("log_keep = 3\ncolour = \"never\"\n", vec![format!("{path}:2:"), "colour".to_string()]),
        ("pid = \"one\"\n", vec![format!("{path}:1:"), "key \"pid\"".to_string()]),
        ("\nring_buffer_size = 5000\n", vec![format!("{path}:2:"), "key \"ring_buffer_size\"".to_string()]),
        ("log = \"/x\n", vec![format!("{path}:1:")]),
    ] {
        std::fs::write(&config, text).unwrap();
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        bad_config_run(&config).assert_usage_error(&needles);
    }
    let missing = dir.path().join("absent.toml");
    bad_config_run(&missing).assert_usage_error(&[&missing.display().to_string(), "--config"]);
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn fail_on_drop_exits_1_after_a_dropped_core() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-service");
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let mut tracer = Tracer::start(&["--json", "--fail-on-drop"]);
    let pid = crash(dir.path());
    let verdict = tracer.wait_verdict(pid);
    assert_eq!(verdict["verdict"], "dropped:rlimit-core", "{verdict}");
    let stopped = tracer.stop();
    assert_eq!(stopped.status.code(), Some(1), "stderr:\n{}", stopped.stderr);
}

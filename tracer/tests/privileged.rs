//! Tier 2: the real crashtrace binary, with its real eBPF programs, watching
//! real crashes against real core-dump settings. Needs root; run serially by
//! `cargo xtask test` (`--ignored --test-threads=1`).
//!
//! The crash matrix is three crash kinds (a NULL-pointer fault, `abort()`,
//! `kill -SEGV` from this process) against four settings (a file pattern,
//! Debian's systemd-coredump with no systemd PID 1, `|/bin/false`, and
//! RLIMIT_CORE=0 with a file pattern); each pair is its own test, named
//! `<kind>::<setting>`. Every check finds its records by the crasher's pid,
//! because other processes run on the machine too.
//!
//! Then come the usage errors: each must be one line on stderr and exit 2.

mod common;

use std::{
    os::unix::{fs::symlink, process::ExitStatusExt},
    path::Path,
    process::{Command, ExitStatus},
    time::Duration,
};

use common::{Crasher, Exclusive, RlimitCore, Stopped, TempDir, Tracer, CRASHTRACE};
use serde_json::{json, Value};

/// Debian's systemd-coredump pattern, exactly as the package installs it.
const SYSTEMD_COREDUMP: &str = "/lib/systemd/systemd-coredump";
const SYSTEMD_PATTERN: &str = "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h %d";
/// The socket systemd's PID 1 serves for the collector.
const COREDUMP_SOCKET: &str = "/run/systemd/coredump";
const ENOENT: i64 = -2;

/// How the crasher dies.
#[derive(Clone, Copy, Debug)]
enum Crash {
    /// A write through a NULL pointer: a real fault.
    Fault,
    /// `abort()`: SIGABRT by tgkill.
    Abort,
    /// SIGSEGV sent by this test process with kill(2).
    KillSegv,
}

/// The core-dump setting in force when it dies.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Setting {
    /// `<tmp>/core.%p`, RLIMIT_CORE unlimited.
    FilePattern,
    /// Debian's systemd-coredump, and no systemd PID 1 to take the core.
    SystemdNoPid1,
    /// `|/bin/false`.
    BinFalse,
    /// `<tmp>/core.%p`, RLIMIT_CORE 0.
    RlimitCoreZero,
}

impl Crash {
    /// Starts the crasher, makes it crash, reaps it: its pid and wait status.
    fn run(self, rlimit: RlimitCore, cwd: &Path) -> (u32, ExitStatus) {
        let mut crasher = match self {
            Crash::Fault => Crasher::spawn("segv", rlimit, cwd),
            Crash::Abort => Crasher::spawn("abort", rlimit, cwd),
            Crash::KillSegv => {
                let mut c = Crasher::spawn("pause", rlimit, cwd);
                c.wait_ready();
                c.kill(libc::SIGSEGV);
                c
            }
        };
        let status = crasher.wait();
        (crasher.pid, status)
    }

    fn signal(self) -> (i32, &'static str) {
        match self {
            Crash::Fault | Crash::KillSegv => (libc::SIGSEGV, "SIGSEGV"),
            Crash::Abort => (libc::SIGABRT, "SIGABRT"),
        }
    }
}

/// Fails the test with the pointer, both values and the whole chain.
#[track_caller]
fn expect(chain: &Value, pointer: &str, want: Value) {
    let got = chain.pointer(pointer).cloned().unwrap_or(Value::Null);
    assert_eq!(
        got,
        want,
        "chain field {pointer}: want {want}, got {got}\nchain:\n{}",
        serde_json::to_string_pretty(chain).unwrap_or_default()
    );
}

#[track_caller]
fn fail(chain: &Value, why: String) -> ! {
    panic!("{why}\nchain:\n{}", serde_json::to_string_pretty(chain).unwrap_or_default())
}

/// The signal end of the chain: which signal, how it arose, who sent it,
/// what the process did with it, and how it exited.
fn check_signal(chain: &Value, crash: Crash, pid: u32, status: ExitStatus) {
    let (sig, name) = crash.signal();
    assert_eq!(status.signal(), Some(sig), "crasher {pid} did not die of {name}: {status}");
    expect(chain, "/crasher/tgid", json!(pid));
    expect(chain, "/sig", json!(sig));
    expect(chain, "/signal", json!(name));
    match crash {
        Crash::Fault => {
            expect(chain, "/origin", json!("fault"));
            expect(chain, "/code", json!(1)); // SEGV_MAPERR
            expect(chain, "/fault_addr", json!(0));
            expect(chain, "/sender/tgid", json!(pid));
        }
        Crash::Abort => {
            expect(chain, "/origin", json!("tkill"));
            expect(chain, "/code", json!(-6)); // SI_TKILL
            expect(chain, "/fault_addr", Value::Null);
            expect(chain, "/sender/tgid", json!(pid));
        }
        Crash::KillSegv => {
            expect(chain, "/origin", json!("kill"));
            expect(chain, "/code", json!(0)); // SI_USER
            expect(chain, "/fault_addr", Value::Null);
            expect(chain, "/sender/tgid", json!(std::process::id()));
        }
    }
    expect(chain, "/disposition", json!("default"));
    expect(chain, "/handler", Value::Null);
    expect(chain, "/ppid", json!(std::process::id()));
    // The raw wait status this process got is the exit code crashtrace saw.
    expect(chain, "/exit_code", json!(status.into_raw()));
    let sigchld = if status.core_dumped() { "CLD_DUMPED" } else { "CLD_KILLED" };
    expect(chain, "/sigchld", json!(sigchld));
    expect(chain, "/kernel_said_dumped", json!(status.core_dumped()));
    let timeline = chain["timeline"].as_array().map(Vec::len).unwrap_or(0);
    if timeline == 0 {
        fail(chain, "the chain has no timeline".into());
    }
}

/// The dump end of the chain for `setting`, and what is (not) on disk.
fn check_dump(chain: &Value, setting: Setting, pid: u32, status: ExitStatus, dir: &Path, file_pattern: &str) {
    let core_file = dir.join(format!("core.{pid}"));
    match setting {
        Setting::FilePattern => {
            assert!(status.core_dumped(), "the kernel did not report a core dump for {pid}: {status}");
            expect(chain, "/verdict", json!("stored"));
            expect(chain, "/dump/mode", json!("file"));
            expect(chain, "/dump/path", json!(file_pattern));
            expect(chain, "/dump/core_pattern", json!(file_pattern));
            expect(chain, "/dump/rlimit_core", Value::Null); // unlimited
            expect(chain, "/dump/dumpable", json!(1));
            expect(chain, "/collector", Value::Null);
            let core = std::fs::read(&core_file)
                .unwrap_or_else(|e| fail(chain, format!("verdict stored, but {}: {e}", core_file.display())));
            assert!(core.len() > 4 && core.starts_with(b"\x7fELF"), "{} is not an ELF core ({} bytes)", core_file.display(), core.len());
        }
        Setting::RlimitCoreZero => {
            assert!(!status.core_dumped(), "the kernel reported a core dump for {pid} despite RLIMIT_CORE=0: {status}");
            expect(chain, "/verdict", json!("dropped:rlimit-core"));
            expect(chain, "/dump/mode", json!("file"));
            expect(chain, "/dump/path", json!(file_pattern));
            expect(chain, "/dump/rlimit_core", json!(0));
            expect(chain, "/collector", Value::Null);
            assert!(!core_file.exists(), "{} exists although RLIMIT_CORE was 0", core_file.display());
        }
        Setting::SystemdNoPid1 => {
            assert!(status.core_dumped(), "the kernel did not report a core dump for {pid}: {status}");
            expect(chain, "/verdict", json!("dropped:collector-unreachable-pid1"));
            expect(chain, "/dump/mode", json!("pipe"));
            expect(chain, "/dump/helper", json!(SYSTEMD_COREDUMP));
            expect(chain, "/dump/core_pattern", json!(SYSTEMD_PATTERN));
            expect(chain, "/collector/filename", json!(SYSTEMD_COREDUMP));
            // %P: the crasher's pid in the initial namespace ties the helper to it.
            expect(chain, "/collector/argv/1", json!(pid.to_string()));
            expect(chain, "/collector/matched_by", json!("argv"));
            let connects = chain.pointer("/collector/connects").and_then(Value::as_array).cloned().unwrap_or_default();
            let to_socket = connects.iter().find(|c| c["path"] == COREDUMP_SOCKET);
            match to_socket {
                Some(c) if c["ret"] == json!(ENOENT) => {}
                Some(c) => fail(chain, format!("connect to {COREDUMP_SOCKET} returned {}, want {ENOENT} (ENOENT)", c["ret"])),
                None => fail(chain, format!("the collector shows no connect to {COREDUMP_SOCKET}")),
            }
            // systemd-coredump exits 1 when it cannot hand the core over.
            expect(chain, "/collector/exit_code", json!(1 << 8));
        }
        Setting::BinFalse => {
            assert!(status.core_dumped(), "the kernel did not report a core dump for {pid}: {status}");
            expect(chain, "/verdict", json!("dropped:core-pattern-discards"));
            expect(chain, "/dump/mode", json!("pipe"));
            expect(chain, "/dump/helper", json!("/bin/false"));
            expect(chain, "/dump/core_pattern", json!("|/bin/false"));
            expect(chain, "/collector/filename", json!("/bin/false"));
            expect(chain, "/collector/exit_code", json!(1 << 8));
        }
    }
    if setting != Setting::FilePattern {
        let reason = chain["reason"].as_str().unwrap_or("");
        if reason.is_empty() {
            fail(chain, "a dropped verdict without a reason".into());
        }
    }
}

/// The systemd scenario is about a collector with no systemd PID 1 to hand
/// the core to; it cannot be run without the collector, and would mean
/// something else on a host whose PID 1 serves the socket.
fn require_systemd_collector_without_pid1() {
    assert!(
        Path::new(SYSTEMD_COREDUMP).is_file(),
        "{SYSTEMD_COREDUMP} is missing: install Debian's systemd-coredump package \
         (`apt-get install systemd-coredump`) to run the systemd-coredump scenarios"
    );
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert!(
        pid1.trim() != "systemd" && !Path::new(COREDUMP_SOCKET).exists(),
        "this scenario needs a host whose PID 1 is not systemd and where {COREDUMP_SOCKET} does not exist \
         (PID 1 is {:?}); run it in a container or VM without systemd",
        pid1.trim()
    );
}

/// One (crash kind, setting) pair, end to end.
fn scenario(crash: Crash, setting: Setting) {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-privileged");
    let file_pattern = format!("{}/core.%p", dir.path().display());
    match setting {
        Setting::FilePattern | Setting::RlimitCoreZero => machine.set_core_pattern(&file_pattern),
        Setting::SystemdNoPid1 => {
            require_systemd_collector_without_pid1();
            machine.set_core_pattern(SYSTEMD_PATTERN);
            // Debian's value; the crasher then waits for the collector.
            machine.set_core_pipe_limit(16);
        }
        Setting::BinFalse => machine.set_core_pattern("|/bin/false"),
    }
    let rlimit = if setting == Setting::RlimitCoreZero { RlimitCore::Bytes(0) } else { RlimitCore::Unlimited };

    let mut tracer = Tracer::start(&["--json"]);
    let (pid, status) = crash.run(rlimit, dir.path());
    let chain = tracer.wait_verdict(pid);
    let stopped = tracer.stop();
    let summary = stopped.assert_clean_exit();

    check_signal(&chain, crash, pid, status);
    check_dump(&chain, setting, pid, status, dir.path(), &file_pattern);

    // One crash, one chain.
    let verdicts = stopped.verdicts_for(pid);
    assert_eq!(verdicts.len(), 1, "want one verdict for pid {pid}, got {}:\n{verdicts:#?}", verdicts.len());
    let verdict = chain["verdict"].as_str().unwrap_or_default();
    let counted = summary.pointer(&format!("/verdicts/{verdict}")).and_then(Value::as_u64).unwrap_or(0);
    assert!(counted >= 1, "the summary does not count the {verdict} verdict: {summary}");
    if status.core_dumped() && verdict.starts_with("dropped:") {
        let n = summary["kernel_said_dumped_but_dropped"].as_u64().unwrap_or(0);
        assert!(n >= 1, "the summary does not count a core the kernel called dumped but was dropped: {summary}");
    }
}

macro_rules! crash_matrix {
    ($($kind:ident => $crash:expr),* $(,)?) => {$(
        mod $kind {
            use super::*;

            #[test]
            #[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
            fn file_pattern_stored() {
                scenario($crash, Setting::FilePattern)
            }

            #[test]
            #[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
            fn systemd_coredump_without_pid1() {
                scenario($crash, Setting::SystemdNoPid1)
            }

            #[test]
            #[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
            fn bin_false_discards() {
                scenario($crash, Setting::BinFalse)
            }

            #[test]
            #[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
            fn rlimit_core_zero() {
                scenario($crash, Setting::RlimitCoreZero)
            }
        }
    )*};
}

crash_matrix! {
    fault => Crash::Fault,
    abort => Crash::Abort,
    kill_segv => Crash::KillSegv,
}

/// `--pid` shows the watched process's crash and nothing of another crash
/// that happens while it runs.
#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn pid_filter_shows_only_the_watched_crash() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-privileged");
    let file_pattern = format!("{}/core.%p", dir.path().display());
    machine.set_core_pattern(&file_pattern);

    let mut watched = Crasher::spawn("pause", RlimitCore::Unlimited, dir.path());
    let mut other = Crasher::spawn("pause", RlimitCore::Unlimited, dir.path());
    watched.wait_ready();
    other.wait_ready();
    let watched_arg = watched.pid.to_string();
    let mut tracer = Tracer::start(&["--json", "--pid", &watched_arg]);

    // The unwatched crash comes first, so its records would be out before
    // the watched verdict if the filter let them through.
    other.kill(libc::SIGSEGV);
    let other_status = other.wait();
    watched.kill(libc::SIGSEGV);
    let status = watched.wait();
    assert!(other_status.core_dumped() && status.core_dumped(), "both crashers should dump: {other_status}, {status}");

    let chain = tracer.wait_verdict(watched.pid);
    let stopped = tracer.stop();
    stopped.assert_clean_exit();
    check_signal(&chain, Crash::KillSegv, watched.pid, status);
    check_dump(&chain, Setting::FilePattern, watched.pid, status, dir.path(), &file_pattern);

    let header = &stopped.records[0];
    assert_eq!(header["watched_pid"], json!(watched.pid), "header: {header}");
    let leaked = common::about(&stopped.records, other.pid);
    assert!(leaked.is_empty(), "records about the unwatched pid {} got through --pid:\n{}", other.pid, leaked.join("\n"));
}

/// Stops `tracer` once it has caught up: a SIGTERM'd `pause` crasher's
/// `no-dump` verdict comes after every event before it.
fn stop_after_barrier(mut tracer: Tracer, dir: &Path) -> Stopped {
    let mut barrier = Crasher::spawn("pause", RlimitCore::Unlimited, dir);
    barrier.wait_ready();
    barrier.kill(libc::SIGTERM);
    barrier.wait();
    let chain = tracer.wait_verdict(barrier.pid);
    expect(&chain, "/verdict", json!("no-dump"));
    let stopped = tracer.stop();
    stopped.assert_clean_exit();
    stopped
}

/// A daemon that blocks SIGTERM and SIGUSR1 and takes them with sigwait
/// (`sigwait`) or a signalfd (`signalfd`), pinged with SIGUSR1 and shut down
/// with SIGTERM: it exits 0 having acted on nothing. The kernel side must
/// not ship those signals at all (no signal-generate event), and no chain
/// may open. A plain SIGTERM'd `pause` crasher afterwards is the barrier
/// that shows the tracer had caught up.
fn blocked_signals_are_not_shipped(mode: &str) {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-privileged");
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let tracer = Tracer::start(&["--json"]);

    let mut daemon = Crasher::spawn(mode, RlimitCore::Unlimited, dir.path());
    daemon.wait_ready();
    for _ in 0..5 {
        daemon.kill(libc::SIGUSR1);
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.kill(libc::SIGTERM);
    let status = daemon.wait();
    assert_eq!(status.code(), Some(0), "the {mode} daemon should take SIGTERM and exit 0: {status}");

    let stopped = stop_after_barrier(tracer, dir.path());

    let shipped: Vec<String> = stopped
        .records
        .iter()
        .filter(|r| r["event"] == "signal-generate" && r.pointer("/target/tgid").and_then(Value::as_u64) == Some(daemon.pid as u64))
        .map(Value::to_string)
        .collect();
    assert!(shipped.is_empty(), "signals the {mode} daemon {} blocked were shipped:\n{}", daemon.pid, shipped.join("\n"));
    let verdicts = stopped.verdicts_for(daemon.pid);
    assert!(verdicts.is_empty(), "a chain was opened for the {mode} daemon's clean shutdown: {verdicts:?}");
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn blocked_signals_taken_with_sigwait_are_not_shipped() {
    blocked_signals_are_not_shipped("sigwait");
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn blocked_signals_taken_with_signalfd_are_not_shipped() {
    blocked_signals_are_not_shipped("signalfd");
}

/// A multi-threaded process that exits 0 (exit_group from main, or from
/// another thread) is no crash: the kernel ends its other threads with a
/// SIGKILL that no one sent (no signal_generate), which the kernel side
/// must not ship, and no chain may open. Every multi-threaded program's
/// exit does this. A SIGTERM'd `pause` crasher afterwards is the barrier.
#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn a_multithreaded_clean_exit_is_not_a_kill() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-privileged");
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let tracer = Tracer::start(&["--json"]);

    let mut pids = Vec::new();
    for mode in ["threads", "thread-exit"] {
        let mut c = Crasher::spawn(mode, RlimitCore::Unlimited, dir.path());
        let status = c.wait();
        assert_eq!(status.code(), Some(0), "`crash {mode}` should exit 0: {status}");
        pids.push((mode, c.pid));
    }

    let stopped = stop_after_barrier(tracer, dir.path());

    for (mode, pid) in pids {
        let kills: Vec<String> = stopped
            .records
            .iter()
            .filter(|r| r["event"] == "signal-deliver" && r.pointer("/task/tgid").and_then(Value::as_u64) == Some(pid as u64))
            .map(Value::to_string)
            .collect();
        assert!(kills.is_empty(), "the exit of `crash {mode}` ({pid}) shipped its threads' SIGKILL:\n{}", kills.join("\n"));
        let verdicts = stopped.verdicts_for(pid);
        assert!(verdicts.is_empty(), "a chain was opened for `crash {mode}` ({pid}) exiting 0: {verdicts:?}");
    }
}

/// A process that blocks SIGTERM and unblocks it once it is pending dies of
/// it: signal_deliver still sees the default action, and the chain is there.
#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn a_blocked_sigterm_acted_on_after_unblocking_is_still_no_dump() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-privileged");
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let mut tracer = Tracer::start(&["--json"]);

    let mut c = Crasher::spawn("unblock", RlimitCore::Unlimited, dir.path());
    c.wait_ready();
    c.kill(libc::SIGTERM);
    let status = c.wait();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "the crasher should die of SIGTERM once it unblocks it: {status}");
    let chain = tracer.wait_verdict(c.pid);
    tracer.stop().assert_clean_exit();
    expect(&chain, "/verdict", json!("no-dump"));
    expect(&chain, "/signal", json!("SIGTERM"));
}

/// Bounded run of crashtrace expected to fail at once; `--duration` ends a
/// run that wrongly starts tracing.
fn crashtrace_failing(args: &[&str]) -> common::Finished {
    let mut cmd = Command::new(CRASHTRACE);
    cmd.args(args).args(["--json", "--duration", "5"]).env_remove("CRASHTRACE_BPF_OBJECT");
    common::run_bounded(cmd, Duration::from_secs(60))
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn error_pid_that_does_not_exist() {
    let _machine = Exclusive::take();
    // A pid that existed a moment ago and has been reaped: free, and pids are
    // handed out in increasing order, so it is not reused this soon.
    let mut child = Command::new("true").spawn().expect("running true");
    let pid = child.id();
    child.wait().expect("reaping true");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} was reused already; rerun");
    let pid = pid.to_string();
    crashtrace_failing(&["--pid", &pid]).assert_usage_error(&[&pid, "no process"]);
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn error_log_in_missing_directory() {
    let _machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-privileged");
    let log = dir.path().join("no-such-dir/events.jsonl");
    let log_arg = log.display().to_string();
    crashtrace_failing(&["--log", &log_arg]).assert_usage_error(&[&log_arg, "directory"]);
    assert!(!log.parent().expect("has a parent").exists(), "crashtrace created the missing directory");
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn error_log_is_a_symlink() {
    let _machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-privileged");
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me\n").expect("writing the symlink's target");
    let link = dir.path().join("events.jsonl");
    symlink(&target, &link).expect("making the symlink");
    let link_arg = link.display().to_string();
    crashtrace_failing(&["--log", &link_arg]).assert_usage_error(&[&link_arg, "symlink"]);
    let after = std::fs::read_to_string(&target).expect("reading the symlink's target");
    assert_eq!(after, "keep me\n", "crashtrace wrote through the symlink");
}

/// setpriv with every capability gone: effective, permitted, inheritable,
/// ambient and bounding.
fn without_capabilities(extra: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(extra).args(["--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--", CRASHTRACE]);
    cmd
}

fn unprivileged_run(extra: &[&str]) -> common::Finished {
    let mut cmd = without_capabilities(extra);
    cmd.args(["--json", "--duration", "5"]).env_remove("CRASHTRACE_BPF_OBJECT");
    let out = common::run_bounded(cmd, Duration::from_secs(60));
    assert!(
        !out.stderr.starts_with("setpriv:"),
        "setpriv could not drop privileges, so this check did not run: {}",
        out.stderr
    );
    out
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn error_root_without_capabilities() {
    let _machine = Exclusive::take();
    unprivileged_run(&[]).assert_usage_error(&["root", "CAP_BPF"]);
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn error_not_root() {
    let _machine = Exclusive::take();
    unprivileged_run(&["--reuid=65534", "--regid=65534", "--clear-groups"]).assert_usage_error(&["root", "CAP_BPF"]);
}

/// A user who may not trace must not get crashtrace to create or truncate a
/// file either: the privilege check comes before the log is opened.
#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn error_not_root_creates_no_log() {
    use std::os::unix::fs::PermissionsExt;
    let _machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-privileged");
    // Writable by nobody too, so only crashtrace's own order can keep the
    // log from being created.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod of the temporary directory");
    let fresh = dir.path().join("events.jsonl");
    let existing = dir.path().join("existing.jsonl");
    std::fs::write(&existing, "{\"keep\":1}\n").expect("writing the existing log");
    // Nobody's own log: one crashtrace would append to if it ran.
    std::os::unix::fs::chown(&existing, Some(65534), Some(65534)).expect("chown of the existing log");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o600)).expect("chmod of the existing log");
    for log in [&fresh, &existing] {
        let mut cmd = without_capabilities(&["--reuid=65534", "--regid=65534", "--clear-groups"]);
        let log_arg = log.display().to_string();
        cmd.args(["--json", "--duration", "5", "--log", &log_arg]).env_remove("CRASHTRACE_BPF_OBJECT");
        let out = common::run_bounded(cmd, Duration::from_secs(60));
        assert!(!out.stderr.starts_with("setpriv:"), "setpriv could not drop privileges: {}", out.stderr);
        out.assert_usage_error(&["root", "CAP_BPF"]);
        if log == &fresh {
            assert!(!fresh.exists(), "crashtrace created {} for a user who may not trace", fresh.display());
        }
    }
    assert!(!fresh.exists(), "crashtrace created {} for a user who may not trace", fresh.display());
    let kept = std::fs::read_to_string(&existing).expect("reading the existing log");
    assert_eq!(kept, "{\"keep\":1}\n", "crashtrace changed an existing log for a user who may not trace");
}

/// What a crashing process calls itself reaches the text output escaped:
/// a comm with an escape sequence, a newline and a bidi override neither
/// colours the terminal nor forges a line, live or in `report`; the JSON
/// log keeps the name exactly.
#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn hostile_comm_is_escaped_in_text_output_and_report() {
    use std::{
        io::{BufRead, BufReader},
        os::unix::process::ExitStatusExt as _,
        process::Stdio,
        time::Instant,
    };
    // 14 bytes: the kernel keeps 15 of a comm.
    const EVIL: &str = "\x1b[31mEVIL\nX\u{202e}";
    const SHOWN: &str = "\\x1b[31mEVIL\\nX\\u{202e}";

    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-privileged");
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let log = dir.path().join("events.jsonl");
    let live_out = dir.path().join("live.txt");
    let mut tracer = Command::new(common::pinned_crashtrace())
        .args(["--color", "never", "--log"])
        .arg(&log)
        .env_remove("CRASHTRACE_BPF_OBJECT")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&live_out).expect("creating the live output file"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting crashtrace");
    let mut stderr = BufReader::new(tracer.stderr.take().expect("piped"));
    let mut said = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("reading crashtrace's stderr");
        said.push_str(&line);
        assert!(n > 0, "crashtrace exited before attaching:\n{said}");
        if line.starts_with("crashtrace: attached") {
            break;
        }
    }

    // dash's builtins: the shell renames itself and kills itself.
    let script = "ulimit -c unlimited; printf '\\033[31mEVIL\\nX\\342\\200\\256' > /proc/self/comm && kill -SEGV $$";
    let mut crasher = Command::new("/bin/sh").args(["-c", script]).current_dir(dir.path()).spawn().expect("running sh");
    let pid = crasher.id();
    let status = crasher.wait().expect("reaping sh");
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "the renamed shell did not die of SIGSEGV: {status}");

    // The log is JSON: wait there for the verdict.
    let deadline = Instant::now() + Duration::from_secs(30);
    let verdict = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(v) = text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|r| common::is_verdict_for(r, pid)) {
            break v;
        }
        assert!(Instant::now() < deadline, "no verdict for pid {pid} in the log within 30 s:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(verdict["crasher"]["comm"], json!(EVIL), "the JSON log keeps the name exactly: {verdict}");
    let raw_log = std::fs::read(&log).expect("reading the log");
    assert!(!raw_log.contains(&0x1b), "a raw ESC in the JSON log");

    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(tracer.id() as libc::pid_t, libc::SIGINT) };
    let stopped = tracer.wait().expect("waiting for crashtrace");
    assert!(stopped.success(), "crashtrace exited with {stopped}");
    let live = std::fs::read_to_string(&live_out).expect("reading the live output");
    let mut report = Command::new(CRASHTRACE);
    report.arg("report").arg(&log);
    let report = common::run_bounded(report, Duration::from_secs(60));
    assert_eq!(report.status.code(), Some(0), "report failed: {}", report.stderr);

    for (what, text) in [("live output", &live), ("report", &report.stdout)] {
        assert!(text.contains(SHOWN), "{what} does not show the name escaped as {SHOWN}:\n{text}");
        assert!(!text.contains('\x1b'), "{what} has a raw ESC:\n{text}");
        assert!(!text.contains('\u{202e}'), "{what} has a raw bidi override:\n{text}");
        let forged: Vec<&str> = text.lines().filter(|l| l.starts_with('X')).collect();
        assert!(forged.is_empty(), "{what} has lines begun by the process's newline: {forged:?}");
    }
}

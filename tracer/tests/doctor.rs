//! `crashtrace doctor` on this real host. Each privileged test (root, run
//! serially with `--ignored --test-threads=1`) sets up one cause of lost
//! cores on purpose, holding the global lock and restoring core_pattern,
//! core_pipe_limit and suid_dumpable afterwards, and asserts the finding
//! from `crashtrace doctor --json`. Where the loss can be watched, the same
//! test then crashes a process under the same settings and checks that what
//! doctor predicted is what happened: the verdict of the running tracer (for
//! that, the binary needs its eBPF object, as `cargo xtask test` builds it),
//! or the kernel's own wait status and the core file on disk.
//!
//! The tests without `#[ignore]` change nothing on the host and need no root.

mod common;

use std::{
    ffi::CString,
    io::Read,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{fs::PermissionsExt, net::UnixListener, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use common::{run_bounded, Crasher, Exclusive, RlimitCore, TempDir, Tracer, CRASHTRACE, CRASH_WAIT};
use crashtrace::record::{HookState, Line, Record};
use serde_json::Value;

const SYSTEMD_COREDUMP: &str = "/lib/systemd/systemd-coredump";
const SYSTEMD_PATTERN: &str = "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h %d";
const COREDUMP_SOCKET: &str = "/run/systemd/coredump";
const SUID_DUMPABLE: &str = "/proc/sys/fs/suid_dumpable";
/// doctor reads /proc and tries two BPF attaches: seconds at most.
const DOCTOR_WAIT: Duration = Duration::from_secs(60);
/// The uid a crasher drops to, to make it a process that changed credentials.
const NOBODY: libc::uid_t = 65534;

/// One `crashtrace doctor --json` run.
struct Doctor {
    code: i32,
    report: Value,
}

fn doctor(args: &[&str]) -> Doctor {
    let mut cmd = Command::new(CRASHTRACE);
    cmd.arg("doctor").arg("--json").args(args);
    let out = run_bounded(cmd, DOCTOR_WAIT);
    assert!(!out.stderr.contains("panicked"), "doctor panicked:\n{}", out.stderr);
    let code = out.status.code().unwrap_or_else(|| panic!("doctor died by a signal: {}", out.status));
    assert!(code == 0 || code == 1, "doctor {args:?} exited {code}; stderr:\n{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json did not print one JSON document ({e}):\n{}", out.stdout));
    assert_eq!(report["v"], 1, "{report}");
    assert_eq!(report["type"], "doctor", "{report}");
    assert_eq!(report["loss"], Value::Bool(code == 1), "exit status {code} disagrees with \"loss\": {report:#}");
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    let want = if code == 1 { "cores will be lost" } else { "cores would be stored" };
    assert!(conclusion.starts_with(want), "exit status {code} but conclusion {conclusion:?}");
    for f in findings(&report) {
        for field in ["id", "severity", "cause", "fix"] {
            assert!(f[field].as_str().is_some_and(|s| !s.is_empty()), "finding without {field}: {f}");
        }
    }
    Doctor { code, report }
}

fn findings(report: &Value) -> Vec<&Value> {
    report["findings"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

impl Doctor {
    fn ids(&self) -> Vec<String> {
        findings(&self.report).iter().map(|f| f["id"].as_str().unwrap_or("").to_string()).collect()
    }

    fn losses(&self) -> Vec<String> {
        findings(&self.report)
            .iter()
            .filter(|f| f["severity"] == "loss")
            .map(|f| f["id"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The one finding with this id (and pid, when given).
    #[track_caller]
    fn finding(&self, id: &str, pid: Option<u32>) -> Value {
        let hits: Vec<&Value> = findings(&self.report)
            .into_iter()
            .filter(|f| f["id"] == id && pid.is_none_or(|p| f["pid"] == p))
            .collect();
        assert_eq!(hits.len(), 1, "want one finding {id} (pid {pid:?}), found {}; report:\n{:#}", hits.len(), self.report);
        hits[0].clone()
    }

    #[track_caller]
    fn assert_no(&self, prefix: &str) {
        let hits: Vec<String> = self.ids().into_iter().filter(|i| i.starts_with(prefix)).collect();
        assert!(hits.is_empty(), "want no {prefix}* finding, got {hits:?}; report:\n{:#}", self.report);
    }
}

#[track_caller]
fn assert_finding(f: &Value, severity: &str, verdict: Option<&str>) {
    assert_eq!(f["severity"], severity, "{f:#}");
    match verdict {
        Some(v) => assert_eq!(f["verdict"], v, "{f:#}"),
        None => assert!(f.get("verdict").is_none(), "{f:#}"),
    }
}

/// Crashes a fresh crasher (SIGSEGV, RLIMIT_CORE unlimited, in `dir`) under
/// a running tracer, and returns the tracer's verdict for it.
fn observed_verdict(dir: &Path) -> Value {
    let mut tracer = Tracer::start(&["--json"]);
    let mut crasher = Crasher::spawn("segv", RlimitCore::Unlimited, dir);
    let status = crasher.wait();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGSEGV), "crasher: {status}");
    let verdict = tracer.wait_verdict(crasher.pid);
    tracer.stop();
    verdict
}

/// What doctor predicted is what the tracer then said.
#[track_caller]
fn assert_prediction_held(predicted: &Value, observed: &Value) {
    assert_eq!(
        predicted["verdict"], observed["verdict"],
        "doctor predicted {} but the tracer said {} ({})\nfinding: {predicted:#}",
        predicted["verdict"], observed["verdict"], observed["reason"]
    );
}

/// A 1777 work directory, so processes that dropped privileges can use it too.
fn open_dir(prefix: &str) -> TempDir {
    let dir = TempDir::new(prefix);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
        .unwrap_or_else(|e| panic!("chmod 1777 {}: {e}", dir.path().display()));
    dir
}

fn set_suid_dumpable(value: u32) {
    std::fs::write(SUID_DUMPABLE, format!("{value}\n")).unwrap_or_else(|e| panic!("writing {SUID_DUMPABLE}: {e}"));
    let now = std::fs::read_to_string(SUID_DUMPABLE).unwrap_or_default();
    assert_eq!(now.trim(), value.to_string(), "{SUID_DUMPABLE} did not take {value}");
}

/// A child that is killed and reaped when dropped, so a failed test leaves
/// no process behind.
struct Guarded {
    child: Option<Child>,
    pid: u32,
}

impl Guarded {
    /// Waits (bounded) for the child; kills it and fails if it takes too long.
    fn reap(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("not reaped yet");
        let deadline = Instant::now() + CRASH_WAIT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("pid {} did not exit within {CRASH_WAIT:?}; killed it", self.pid);
                }
            }
        }
    }

    /// Reads "ready" from a `pause` crasher (bounded).
    fn wait_ready(&mut self) {
        let out = self.child.as_mut().and_then(|c| c.stdout.as_mut()).expect("stdout is piped");
        let mut pfd = libc::pollfd { fd: out.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1, "pid {} did not say ready", self.pid);
        let mut buf = [0u8; 16];
        let n = out.read(&mut buf).expect("reading ready");
        assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "ready");
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process that changed credentials: real uid root, effective uid nobody,
/// which makes the kernel set its dumpable flag from fs.suid_dumpable at
/// exec. Runs the crasher (copied into `dir`, so nobody may exec it) in
/// `mode`, RLIMIT_CORE unlimited, with `dir` as its cwd.
fn spawn_credential_changer(mode: &str, dir: &Path) -> Guarded {
    let exe = dir.join("crash");
    if !exe.exists() {
        std::fs::copy(common::crasher(), &exe).unwrap_or_else(|e| panic!("copying the crasher into {}: {e}", dir.display()));
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod the crasher");
    }
    let mut cmd = Command::new(&exe);
    cmd.arg(mode).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    // SAFETY: setrlimit and setresuid are async-signal-safe and touch no parent state.
    unsafe {
        cmd.pre_exec(|| {
            let rl = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_CORE, &rl) != 0 || libc::setresuid(0, NOBODY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    Guarded { pid: child.id(), child: Some(child) }
}

/// A listening SOCK_SEQPACKET unix socket at `path` (std has only STREAM).
fn seqpacket_listener(path: &Path) -> OwnedFd {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd only this function holds.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain data; zeroed is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long: {}", path.display());
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: bind/listen on our fd with a valid sockaddr_un of `len` bytes.
    unsafe {
        assert_eq!(libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len as libc::socklen_t), 0, "bind {}: {}", path.display(), std::io::Error::last_os_error());
        assert_eq!(libc::listen(fd.as_raw_fd(), 16), 0, "listen: {}", std::io::Error::last_os_error());
    }
    fd
}

/// Connects to `path` with SOCK_SEQPACKET, as systemd-coredump does, and
/// returns the errno (0 when something accepted the connection).
fn seqpacket_connect_errno(path: &str) -> i32 {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd only this function holds.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: as in seqpacket_listener.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(CString::new(path).expect("no NUL").as_bytes()) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + path.len() + 1;
    // SAFETY: connect on our fd with a valid sockaddr_un of `len` bytes.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len as libc::socklen_t) };
    if rc == 0 { 0 } else { std::io::Error::last_os_error().raw_os_error().unwrap_or(-1) }
}

/// RLIMIT_CORE (soft) of a process from /proc/PID/limits; `None` = unlimited.
fn soft_core_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("reading limits");
    let line = limits.lines().find_map(|l| l.strip_prefix("Max core file size")).expect("a core limit line");
    line.split_whitespace().next().and_then(|w| w.parse().ok())
}

// ---------------------------------------------------------------------------
// core_pattern

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn bin_false_discards_every_core() {
    let ex = Exclusive::take();
    ex.set_core_pattern("|/bin/false");
    let d = doctor(&[]);
    assert_eq!(d.code, 1);
    let f = d.finding("core-pattern-discards", None);
    assert_finding(&f, "loss", Some("dropped:core-pattern-discards"));
    assert!(f["cause"].as_str().unwrap_or("").contains("/bin/false"), "{f:#}");
    assert_eq!(d.losses(), vec!["core-pattern-discards"]);

    let dir = TempDir::new("crashtrace-doctor");
    assert_prediction_held(&f, &observed_verdict(dir.path()));
}

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn missing_helper_loses_every_core() {
    let ex = Exclusive::take();
    assert!(!Path::new("/nonexistent/x").exists(), "/nonexistent/x exists on this host");
    ex.set_core_pattern("|/nonexistent/x %P");
    let d = doctor(&[]);
    assert_eq!(d.code, 1);
    let f = d.finding("collector-helper-missing", None);
    assert_finding(&f, "loss", Some("dropped:core-pattern-discards"));
    assert_eq!(d.report["facts"]["helper"]["state"], "missing");
    assert_eq!(d.losses(), vec!["collector-helper-missing"]);

    let dir = TempDir::new("crashtrace-doctor");
    assert_prediction_held(&f, &observed_verdict(dir.path()));
}

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn systemd_coredump_without_pid1_listener_is_collector_unreachable_pid1() {
    let ex = Exclusive::take();
    assert!(Path::new(SYSTEMD_COREDUMP).exists(), "{SYSTEMD_COREDUMP} is missing: install Debian's systemd-coredump");
    let errno = seqpacket_connect_errno(COREDUMP_SOCKET);
    assert!(
        errno == libc::ENOENT || errno == libc::ECONNREFUSED,
        "this test needs a host where nothing serves {COREDUMP_SOCKET} (a PID 1 that is not systemd), but connect() gave errno {errno}"
    );
    ex.set_core_pattern(SYSTEMD_PATTERN);
    ex.set_core_pipe_limit(16);
    let d = doctor(&[]);
    assert_eq!(d.code, 1);
    let f = d.finding("collector-socket-unreachable", None);
    assert_finding(&f, "loss", Some("dropped:collector-unreachable-pid1"));
    let cause = f["cause"].as_str().unwrap_or("");
    assert!(cause.contains("dropped:collector-unreachable-pid1"), "the cause does not name the verdict: {cause}");
    let want_errno = if errno == libc::ENOENT { "ENOENT" } else { "ECONNREFUSED" };
    assert!(cause.contains(want_errno) && cause.contains(COREDUMP_SOCKET), "{cause}");
    assert_eq!(d.losses(), vec!["collector-socket-unreachable"]);
    assert_eq!(d.finding("pipe-limit", None)["severity"], "info");

    let dir = TempDir::new("crashtrace-doctor");
    let observed = observed_verdict(dir.path());
    assert_prediction_held(&f, &observed);
    assert_eq!(observed["kernel_said_dumped"], true, "{observed:#}");
}

#[test]
#[ignore = "privileged: writes core_pattern and core_pipe_limit"]
fn pipe_limit_zero_warns_of_the_proc_race() {
    let ex = Exclusive::take();
    ex.set_core_pattern(SYSTEMD_PATTERN);
    ex.set_core_pipe_limit(0);
    let d = doctor(&[]);
    let f = d.finding("pipe-limit-zero", None);
    assert_finding(&f, "warn", None);
    assert!(f["cause"].as_str().unwrap_or("").contains("/proc"), "{f:#}");
    assert!(!d.ids().contains(&"pipe-limit".to_string()));
    ex.set_core_pipe_limit(16);
    let d = doctor(&[]);
    d.assert_no("pipe-limit-zero");
    assert_finding(&d.finding("pipe-limit", None), "info", Some("dropped:pipe-limit"));
}

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn healthy_file_pattern_exits_zero() {
    let ex = Exclusive::take();
    let dir = open_dir("crashtrace-doctor");
    let pattern = format!("{}/core.%p", dir.path().display());
    ex.set_core_pattern(&pattern);
    set_suid_dumpable(2);
    let d = doctor(&[]);
    assert_eq!(d.code, 0, "a writable absolute file pattern should store cores; report:\n{:#}", d.report);
    assert!(d.losses().is_empty());
    for prefix in ["core-", "collector-", "suid-", "pipe-limit"] {
        d.assert_no(prefix);
    }
    assert_eq!(d.report["facts"]["core_dir"]["state"], "writable");
    // PID 1's own limit, checked independently: with a file pattern a soft
    // limit below one page is a warning about PID 1, not a predicted loss.
    match soft_core_limit(1) {
        Some(soft) if soft < 4096 => assert_finding(&d.finding("rlimit-core-zero", Some(1)), "warn", Some("dropped:rlimit-core")),
        _ => d.assert_no("rlimit-core"),
    }

    let observed = observed_verdict(dir.path());
    assert_eq!(observed["verdict"], "stored", "{observed:#}");
    let pid = observed.pointer("/crasher/tgid").and_then(Value::as_u64).expect("crasher pid");
    assert!(dir.path().join(format!("core.{pid}")).is_file(), "the core file is missing");
}

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn missing_core_dir_loses_every_core() {
    let ex = Exclusive::take();
    let dir = TempDir::new("crashtrace-doctor");
    let missing = dir.path().join("not-there");
    ex.set_core_pattern(&format!("{}/core.%p", missing.display()));
    let d = doctor(&[]);
    assert_eq!(d.code, 1);
    assert_finding(&d.finding("core-dir-missing", None), "loss", None);
    assert_eq!(d.report["facts"]["core_dir"]["state"], "missing");
    // The kernel agrees: no "core dumped", no file.
    let mut crasher = Crasher::spawn("segv", RlimitCore::Unlimited, dir.path());
    let status = crasher.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status}");
    assert!(!status.core_dumped(), "the kernel reported a core dump into a missing directory");
    assert!(!missing.exists());
}

#[test]
#[ignore = "privileged: writes core_pattern and suid_dumpable, crashes processes"]
fn suid_dumpable_2_with_relative_pattern_is_unsafe() {
    let ex = Exclusive::take();
    let dir = open_dir("crashtrace-doctor");
    set_suid_dumpable(2);
    ex.set_core_pattern("core.%p");
    let d = doctor(&[]);
    assert_eq!(d.code, 1);
    let f = d.finding("suid-dumpable-unsafe-pattern", None);
    assert_finding(&f, "loss", None);
    assert!(f["cause"].as_str().unwrap_or("").contains("Unsafe core_pattern used with fs.suid_dumpable=2"), "{f:#}");
    assert_finding(&d.finding("core-pattern-relative", None), "info", None);

    // The kernel: a process that changed credentials gets no core from the
    // relative pattern...
    let child = spawn_credential_changer("segv", dir.path());
    let pid = child.pid;
    let status = child.reap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status}");
    assert!(!status.core_dumped(), "the kernel dumped pid {pid} despite the unsafe pattern");
    assert!(!dir.path().join(format!("core.{pid}")).exists());

    // ...but does from an absolute one, where doctor has nothing to say.
    let absolute = format!("{}/core.%p", dir.path().display());
    ex.set_core_pattern(&absolute);
    let d = doctor(&[]);
    d.assert_no("suid-");
    let child = spawn_credential_changer("segv", dir.path());
    let pid = child.pid;
    let status = child.reap();
    assert!(status.core_dumped(), "pid {pid} was not dumped with an absolute pattern: {status}");
    assert!(dir.path().join(format!("core.{pid}")).is_file());
}

#[test]
#[ignore = "privileged: writes suid_dumpable and core_pattern, crashes a process"]
fn not_dumpable_pid_is_predicted_and_observed() {
    let ex = Exclusive::take();
    let dir = open_dir("crashtrace-doctor");
    ex.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    // The dumpable flag is taken from suid_dumpable at exec.
    set_suid_dumpable(0);
    let mut child = spawn_credential_changer("pause", dir.path());
    child.wait_ready();
    let pid = child.pid;
    let d = doctor(&["--pid", &pid.to_string()]);
    assert_eq!(d.code, 1);
    assert_eq!(d.report["facts"]["target"]["dumpable"], false, "{:#}", d.report["facts"]["target"]);
    let f = d.finding("pid-not-dumpable", Some(pid));
    assert_finding(&f, "loss", Some("dropped:not-dumpable"));
    assert_finding(&d.finding("suid-dumpable-off", None), "warn", Some("dropped:not-dumpable"));

    let mut tracer = Tracer::start(&["--json"]);
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSEGV) }, 0);
    let status = child.reap();
    use std::os::unix::process::ExitStatusExt;
    assert!(!status.core_dumped(), "{status}");
    let observed = tracer.wait_verdict(pid);
    tracer.stop();
    assert_prediction_held(&f, &observed);
}

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn rlimit_core_zero_of_pid_is_predicted_and_observed() {
    let ex = Exclusive::take();
    let dir = open_dir("crashtrace-doctor");
    ex.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let mut crasher = Crasher::spawn("pause", RlimitCore::Bytes(0), dir.path());
    crasher.wait_ready();
    let d = doctor(&["--pid", &crasher.pid.to_string()]);
    assert_eq!(d.code, 1);
    let f = d.finding("rlimit-core-zero", Some(crasher.pid));
    assert_finding(&f, "loss", Some("dropped:rlimit-core"));
    assert_eq!(d.losses(), vec!["rlimit-core-zero"]);

    let mut tracer = Tracer::start(&["--json"]);
    crasher.kill(libc::SIGSEGV);
    crasher.wait();
    let observed = tracer.wait_verdict(crasher.pid);
    tracer.stop();
    assert_prediction_held(&f, &observed);
}

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn rlimit_core_one_blocks_a_pipe() {
    let ex = Exclusive::take();
    let dir = TempDir::new("crashtrace-doctor");
    let sink = dir.path().join("sink");
    std::fs::write(&sink, "#!/bin/sh\nexec cat >/dev/null\n").expect("writing the sink helper");
    std::fs::set_permissions(&sink, std::fs::Permissions::from_mode(0o755)).expect("chmod the sink");
    ex.set_core_pattern(&format!("|{} %P", sink.display()));
    let mut crasher = Crasher::spawn("pause", RlimitCore::Bytes(1), dir.path());
    crasher.wait_ready();
    let d = doctor(&["--pid", &crasher.pid.to_string()]);
    assert_eq!(d.code, 1);
    let f = d.finding("rlimit-core-one", Some(crasher.pid));
    assert_finding(&f, "loss", Some("dropped:rlimit-core"));
    assert_eq!(d.losses(), vec!["rlimit-core-one"]);

    let mut tracer = Tracer::start(&["--json"]);
    crasher.kill(libc::SIGSEGV);
    crasher.wait();
    let observed = tracer.wait_verdict(crasher.pid);
    tracer.stop();
    assert_prediction_held(&f, &observed);
}

// ---------------------------------------------------------------------------
// `@` core sockets (Linux 6.16+). The kernel connects with SOCK_STREAM.

fn require_socket_mode() {
    let modes = std::fs::read_to_string("/proc/sys/kernel/core_modes").unwrap_or_default();
    assert!(
        modes.split_whitespace().any(|m| m == "socket"),
        "this kernel has no core socket mode (/proc/sys/kernel/core_modes: {modes:?}); the @ tests need Linux 6.16+"
    );
}

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn core_socket_with_stream_listener_stores() {
    let ex = Exclusive::take();
    require_socket_mode();
    let dir = TempDir::new("crashtrace-doctor");
    let path = dir.path().join("cd.sock");
    let listener = UnixListener::bind(&path).expect("binding the stream listener");
    ex.set_core_pattern(&format!("@{}", path.display()));
    let d = doctor(&[]);
    d.assert_no("collector-socket");
    d.assert_no("core-pattern");
    assert_eq!(d.code, 0, "{:#}", d.report);
    assert_eq!(d.report["facts"]["socket"]["listeners"], serde_json::json!(["stream"]));

    // The kernel writes the core into the connection; drain it meanwhile.
    let drain = std::thread::spawn(move || -> Vec<u8> {
        // Bounded: if the kernel never connects, the check below fails.
        listener.set_nonblocking(true).expect("non-blocking listener");
        let deadline = Instant::now() + CRASH_WAIT;
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return Vec::new(),
            }
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(CRASH_WAIT));
        let mut core = Vec::new();
        let _ = conn.read_to_end(&mut core);
        core
    });
    let observed = observed_verdict(dir.path());
    let core = drain.join().expect("the drain thread");
    assert!(core.starts_with(b"\x7fELF"), "the socket got {} bytes, not an ELF core", core.len());
    assert_eq!(observed["verdict"], "stored", "{observed:#}");
}

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn core_socket_with_seqpacket_listener_is_wrong_type() {
    let ex = Exclusive::take();
    require_socket_mode();
    let dir = TempDir::new("crashtrace-doctor");
    let path = dir.path().join("cd.sock");
    let _listener = seqpacket_listener(&path);
    ex.set_core_pattern(&format!("@{}", path.display()));
    let d = doctor(&[]);
    assert_eq!(d.code, 1);
    let f = d.finding("collector-socket-wrong-type", None);
    assert_finding(&f, "loss", Some("dropped:socket-unreachable"));
    d.assert_no("collector-socket-unreachable");
    assert_prediction_held(&f, &observed_verdict(dir.path()));
}

#[test]
#[ignore = "privileged: writes core_pattern, crashes a process"]
fn core_socket_without_listener_is_unreachable() {
    let ex = Exclusive::take();
    require_socket_mode();
    let dir = TempDir::new("crashtrace-doctor");
    ex.set_core_pattern(&format!("@{}/nobody.sock", dir.path().display()));
    let d = doctor(&[]);
    assert_eq!(d.code, 1);
    let f = d.finding("collector-socket-unreachable", None);
    assert_finding(&f, "loss", Some("dropped:socket-unreachable"));
    assert!(f["cause"].as_str().unwrap_or("").contains("ENOENT"), "{f:#}");
    assert_prediction_held(&f, &observed_verdict(dir.path()));
}

// ---------------------------------------------------------------------------
// Hooks and layout

#[test]
#[ignore = "privileged: loads BPF programs"]
fn hook_prediction_matches_the_tracer_header() {
    let _ex = Exclusive::take();
    let d = doctor(&[]);
    let hooks = &d.report["facts"]["hooks"];
    let tracer = Tracer::start(&["--json"]);
    let stopped = tracer.stop();
    stopped.assert_clean_exit();
    let header = &stopped.records[0];
    let typed = match serde_json::from_value::<Line>(header.clone()) {
        Ok(Line { record: Record::Header(h), .. }) => h,
        other => panic!("the first record is not a header: {other:?}\n{header:#}"),
    };
    let state_of = |name: &str| typed.hooks.iter().find(|h| h.name == name).map(|h| h.state);
    let function = hooks["dump_function"].as_str().expect("this kernel has a dump function in BTF");
    let fentry = match hooks["fentry"]["state"].as_str() {
        Some("attachable") => HookState::Attached,
        Some("refused") => HookState::Unavailable,
        other => panic!("doctor as root should have tried fentry, got {other:?}"),
    };
    assert_eq!(state_of(&format!("fentry/{function}")), Some(fentry), "doctor: {hooks:#}\nheader: {header:#}");
    assert_eq!(hooks["tp_btf"]["state"], "attachable");
    assert_eq!(state_of("tp_btf/signal_generate"), Some(HookState::Attached));
    if hooks["connect_tracepoints"] == true {
        assert_eq!(state_of("tracepoint/syscalls/sys_enter_connect"), Some(HookState::Attached), "{header:#}");
    }
    let mode = header["dump_mode"].as_str().unwrap_or("");
    let predicted = if mode.starts_with("fentry") {
        "dump-hook-fentry"
    } else if mode.starts_with("kprobe") {
        "dump-hook-kprobe"
    } else {
        assert_eq!(mode, "inferred", "{header:#}");
        "dump-hook-inferred"
    };
    assert_finding(&d.finding(predicted, None), "info", None);
}

/// The cgroup layout as /proc/mounts shows it, worked out here on its own.
fn mounted_cgroup_layout() -> &'static str {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("reading /proc/mounts");
    let types: Vec<&str> = mounts.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    match (types.contains(&"cgroup2"), types.contains(&"cgroup")) {
        (true, true) => "hybrid",
        (true, false) => "v2",
        (false, true) => "v1",
        (false, false) => "none",
    }
}

#[test]
fn cgroup_layout_is_the_mounted_one() {
    let d = doctor(&[]);
    let layout = mounted_cgroup_layout();
    assert_eq!(d.report["facts"]["cgroup"]["layout"], layout);
    let f = d.finding(&format!("cgroup-{layout}"), None);
    let want = if matches!(layout, "hybrid" | "v1") { "warn" } else { "info" };
    assert_finding(&f, want, None);
}

#[test]
fn text_output_has_a_block_per_finding_and_a_conclusion() {
    let out = run_bounded(
        {
            let mut c = Command::new(CRASHTRACE);
            c.arg("doctor");
            c
        },
        DOCTOR_WAIT,
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let code = out.status.code().expect("exit code");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("crashtrace doctor: kernel ")), "{}", out.stdout);
    let mut blocks = 0;
    let mut losses = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(severity) = ["LOSS  ", "WARN  ", "INFO  "].into_iter().find(|s| line.starts_with(s)) else { continue };
        blocks += 1;
        losses += usize::from(severity == "LOSS  ");
        let block: Vec<&str> = lines[i + 1..].iter().take_while(|l| l.starts_with("  ")).copied().collect();
        assert!(block.first().is_some_and(|l| l.starts_with("  cause    ")), "block {line}: {block:?}");
        assert!(block.last().is_some_and(|l| l.starts_with("  fix      ")), "block {line}: {block:?}");
    }
    assert!(blocks >= 2, "want at least the cgroup and dump-hook findings:\n{}", out.stdout);
    let last = lines.last().copied().unwrap_or("");
    if losses > 0 {
        assert_eq!(code, 1, "{}", out.stdout);
        assert!(last.starts_with("cores will be lost: "), "{last}");
    } else {
        assert_eq!(code, 0, "{}", out.stdout);
        assert!(last.starts_with("cores would be stored: "), "{last}");
    }
}

#[test]
fn unknown_pid_is_an_error_with_exit_2() {
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32768);
    let pid = (2..pid_max).rev().find(|p| !PathBuf::from(format!("/proc/{p}")).exists()).expect("a free pid");
    let mut cmd = Command::new(CRASHTRACE);
    cmd.args(["doctor", "--pid", &pid.to_string()]);
    let out = run_bounded(cmd, DOCTOR_WAIT);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].starts_with("crashtrace: ") && lines[0].contains(&format!("pid {pid}")), "{}", lines[0]);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

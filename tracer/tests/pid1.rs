//! Tier 2, the PID 1 incident: a systemd-like PID 1 (tests/pid1/testinit.c)
//! runs as PID 1 of a pid namespace and serves `/run/systemd/coredump`;
//! Debian's real systemd-coredump is the collector; the real crashtrace
//! binary watches the namespace's PID 1 with `--json --pid`.
//!
//! - `pid1_crash_deadlocks_its_collector` (A): PID 1 faults, its crash child
//!   dumps into the collector's pipe, the collector's connect succeeds but
//!   nobody accepts, so the crash child blocks in its pipe write and PID 1 in
//!   its wait. crashtrace must call the stall while it is happening.
//! - `frozen_pid1_drops_every_later_core` (B): the crash child is killed,
//!   PID 1 closes its fds and pauses over zombie children, and a crash on the
//!   host then loses its core (ECONNREFUSED) although the kernel says
//!   "core dumped". crashtrace must say so, and call PID 1 frozen.
//! - `healthy_pid1_stores_cores` (C): PID 1 serves the socket, a host crash
//!   is stored (by the test init, in its own directory), and the core file
//!   exists; crashtrace, looking where systemd-coredump keeps cores, says
//!   the collector kept none there.
//!
//! Each test first checks that the incident itself was reproduced (from
//! /proc: where the tasks sleep, their fds, the zombies) and fails if it was
//! not; then it checks crashtrace's records and reports every mismatch at
//! once, with what /proc showed, so one run says all that is wrong.

mod common;

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::FileTypeExt,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        mpsc::{self, Receiver},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{is_verdict_for, Crasher, Exclusive, RlimitCore, Stopped, TempDir, Tracer, VERDICT_WAIT};
use serde_json::{Value, json};

const SYSTEMD_COREDUMP: &str = "/lib/systemd/systemd-coredump";
/// Debian's pattern and pipe limit, exactly as the package sets them.
const SYSTEMD_PATTERN: &str = "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h %d";
const SYSTEMD_PIPE_LIMIT: u32 = 16;
const COREDUMP_SOCKET: &str = "/run/systemd/coredump";
const SOCKET_DIR: &str = "/run/systemd";
const ENOENT: i64 = -2;
const ECONNREFUSED: i64 = -111;
/// The service children the test init starts; they exit when it freezes.
const SERVICES: usize = 3;

/// Starting the namespace, finding its tasks, a state in /proc settling.
const SETUP_WAIT: Duration = Duration::from_secs(30);
/// How long crashtrace gets to call the deadlock while it lasts. Its stall
/// timeout is a few seconds, and a handled chain whose process never exits
/// ends after the correlator's quiet period (15 s), so this is generous.
const STALL_WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The test init

/// tests/pid1/testinit.c, compiled with `cc` once per test run.
fn testinit() -> &'static Path {
    static TESTINIT: OnceLock<PathBuf> = OnceLock::new();
    TESTINIT.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pid1/testinit.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pid1");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // Built under a private name, then renamed, so a concurrent run never
        // executes a half-written binary.
        let private = dir.join(format!("testinit.{}", std::process::id()));
        let out = Command::new("cc")
            .args(["-O0", "-g", "-Wall", "-o"])
            .arg(&private)
            .arg(&source)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `cc` to build the test init (install gcc): {e}"));
        assert!(
            out.status.success(),
            "cc failed to build {}: {}\n{}",
            source.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let binary = dir.join("testinit");
        std::fs::rename(&private, &binary).unwrap_or_else(|e| panic!("cannot move the test init into place: {e}"));
        binary
    })
}

/// Takes the machine, and sets Debian's systemd-coredump pattern and pipe
/// limit. The scenarios need that collector, and must not replace the
/// socket of a real systemd.
fn systemd_collector_machine() -> Exclusive {
    let machine = Exclusive::take();
    assert!(
        Path::new(SYSTEMD_COREDUMP).is_file(),
        "{SYSTEMD_COREDUMP} is missing: install Debian's systemd-coredump package \
         (`apt-get install systemd-coredump`) to run the PID 1 scenarios"
    );
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert!(
        pid1.trim() != "systemd",
        "PID 1 of this host is systemd: these tests would take over its {COREDUMP_SOCKET}; run them in a \
         container or VM without systemd"
    );
    machine.set_core_pattern(SYSTEMD_PATTERN);
    machine.set_core_pipe_limit(SYSTEMD_PIPE_LIMIT);
    machine
}

/// A pid namespace whose PID 1 is the test init. Dropping it kills the
/// namespace (and with it a crash child stuck in its dump), reaps `unshare`,
/// and removes the socket and, if it made it, /run/systemd.
struct Namespace {
    unshare: Child,
    /// The host pid of the namespace's PID 1.
    init: u32,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    _reader: JoinHandle<()>,
    made_socket_dir: bool,
}

impl Namespace {
    fn start(core_dir: &Path) -> Namespace {
        let made_socket_dir = !Path::new(SOCKET_DIR).exists();
        if let Ok(meta) = std::fs::symlink_metadata(COREDUMP_SOCKET) {
            // A socket left by an earlier run refuses connections; one that
            // answers belongs to a live collector service.
            let live = meta.file_type().is_socket() && UnixStream::connect(COREDUMP_SOCKET).is_ok();
            let seqpacket_live = meta.file_type().is_socket() && seqpacket_connects(COREDUMP_SOCKET);
            assert!(
                !live && !seqpacket_live,
                "something serves {COREDUMP_SOCKET} already; stop it (or run in a VM) before the PID 1 tests"
            );
        }
        let mut unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(testinit())
            .arg(core_dir)
            .arg(SERVICES.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `unshare` (util-linux): {e}"));
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let keep = stderr.clone();
        let from = unshare.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap_or_else(|p| p.into_inner()).push_str(&format!("{line}\n"));
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let unshare_pid = unshare.id();
        let deadline = Instant::now() + SETUP_WAIT;
        let init = loop {
            if let Some(&pid) = children(unshare_pid).first() {
                break pid;
            }
            if let Ok(Some(status)) = unshare.try_wait() {
                let _ = reader.join();
                panic!(
                    "unshare exited ({status}) before its child appeared; stderr:\n{}",
                    stderr.lock().unwrap_or_else(|p| p.into_inner())
                );
            }
            if Instant::now() > deadline {
                let _ = unshare.kill();
                let _ = unshare.wait();
                panic!("unshare {unshare_pid} had no child after {SETUP_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut ns = Namespace { unshare, init, lines, stderr, _reader: reader, made_socket_dir };
        if ns.wait_line("testinit: ready", SETUP_WAIT).is_none() {
            panic!(
                "the test init (host pid {init}) did not say ready within {SETUP_WAIT:?}; its stderr:\n{}",
                ns.stderr_text()
            );
        }
        ns
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (bounded) for a line of the test init's stderr containing `needle`.
    fn wait_line(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// SIGUSR1: the test init calls through a NULL handler pointer.
    fn trigger_crash(&self) {
        // SAFETY: kill(2) with a pid this test started (through unshare).
        let rc = unsafe { libc::kill(self.init as libc::pid_t, libc::SIGUSR1) };
        assert_eq!(rc, 0, "kill({}, SIGUSR1) failed: {}", self.init, std::io::Error::last_os_error());
    }

    /// The host pid of the crash child: the test init's child that kept its
    /// name (the services are named service0, service1, ...).
    fn wait_crash_child(&self) -> u32 {
        let deadline = Instant::now() + SETUP_WAIT;
        loop {
            let found = children(self.init).into_iter().find(|&c| Proc::read(c).is_some_and(|p| p.comm == "testinit"));
            if let Some(c) = found {
                return c;
            }
            if Instant::now() > deadline {
                panic!(
                    "the test init (host pid {}) forked no crash child within {SETUP_WAIT:?}; its stderr:\n{}",
                    self.init,
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the crash child sleeps in a pipe write and PID 1 in a
    /// wait: the deadlock of the incident. Fails the test if it does not
    /// form, because then nothing after it means anything.
    fn wait_deadlock(&self, crash_child: u32) -> (Proc, Proc) {
        let deadline = Instant::now() + SETUP_WAIT;
        loop {
            let c = Proc::read(crash_child);
            let init = Proc::read(self.init);
            if let (Some(c), Some(init)) = (&c, &init)
                && c.wchan.contains("pipe")
                && init.wchan.contains("wait")
            {
                return (c.clone(), init.clone());
            }
            if Instant::now() > deadline {
                panic!(
                    "no deadlock formed within {SETUP_WAIT:?}: want crash child {crash_child} in a pipe write and \
                     PID 1 {} in a wait.\ncrash child: {c:?}\nPID 1: {init:?}\ntest init stderr:\n{}",
                    self.init,
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until PID 1 has frozen: no fds, asleep in pause, and every
    /// service a zombie child of it. Fails the test if it does not.
    fn wait_frozen(&self) -> (Proc, Vec<Proc>) {
        let deadline = Instant::now() + SETUP_WAIT;
        loop {
            let init = Proc::read(self.init);
            let zombies: Vec<Proc> =
                children(self.init).into_iter().filter_map(Proc::read).filter(|p| p.state == "Z").collect();
            if let Some(init) = &init
                && init.fds == Some(0)
                && init.wchan.contains("pause")
                && zombies.len() >= SERVICES
            {
                return (init.clone(), zombies);
            }
            if Instant::now() > deadline {
                panic!(
                    "PID 1 {} did not freeze within {SETUP_WAIT:?}: want no fds, a sleep in pause and {SERVICES} \
                     zombie children.\nPID 1: {init:?}\nzombies: {zombies:?}\ntest init stderr:\n{}",
                    self.init,
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Killing a namespace's PID 1 kills every process in it, a crash
        // child blocked in its dump included. Only if it is still ours.
        if Proc::read(self.init).is_some_and(|p| p.ppid == self.unshare.id()) {
            // SAFETY: kill(2) on the child of our own unreaped `unshare`.
            unsafe { libc::kill(self.init as libc::pid_t, libc::SIGKILL) };
        }
        let deadline = Instant::now() + SETUP_WAIT;
        loop {
            match self.unshare.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    eprintln!("unshare {} outlived its namespace; killing it", self.unshare.id());
                    let _ = self.unshare.kill();
                    let _ = self.unshare.wait();
                    break;
                }
            }
        }
        if std::fs::symlink_metadata(COREDUMP_SOCKET).is_ok_and(|m| m.file_type().is_socket())
            && let Err(e) = std::fs::remove_file(COREDUMP_SOCKET)
        {
            eprintln!("could not remove {COREDUMP_SOCKET}: {e}; remove it by hand");
        }
        if self.made_socket_dir {
            // Only if empty: something else may have put files there since.
            let _ = std::fs::remove_dir(SOCKET_DIR);
        }
    }
}

/// Whether a SOCK_SEQPACKET connect to `path` succeeds (someone listens).
fn seqpacket_connects(path: &str) -> bool {
    // SAFETY: plain socket calls on an fd this function owns and closes.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in addr.sun_path.iter_mut().zip(path.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        let ok = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as u32,
        ) == 0;
        libc::close(fd);
        ok
    }
}

/// The children of process `pid` (its main thread's, which is all of them
/// for the single-threaded processes here).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// What /proc shows about one process at one moment.
#[derive(Clone, Debug)]
struct Proc {
    pid: u32,
    comm: String,
    state: String,
    ppid: u32,
    wchan: String,
    /// The kernel stack, one frame a line.
    stack: String,
    /// Open fds; None when /proc would not list them.
    fds: Option<usize>,
    /// "host ns" pids from NSpid.
    nspid: String,
}

impl Proc {
    fn read(pid: u32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // comm is in parentheses and may hold spaces; the fields follow the last ')'.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?.to_string();
        let mut rest = stat.get(close + 1..)?.split_whitespace();
        let state = rest.next()?.to_string();
        let ppid = rest.next()?.parse().ok()?;
        let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
        let nspid = read("status")
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let stack =
            read("stack").lines().map(|l| l.trim_start_matches("[<0>] ").to_string()).collect::<Vec<_>>().join(" < ");
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count());
        Some(Proc { pid, comm, state, ppid, wchan: read("wchan"), stack, fds, nspid })
    }

    fn describe(&self) -> String {
        format!(
            "pid {} ({}) nspid [{}] ppid {} state {} wchan {:?} fds {:?} stack: {}",
            self.pid, self.comm, self.nspid, self.ppid, self.state, self.wchan, self.fds, self.stack
        )
    }
}

// ---------------------------------------------------------------------------
// crashtrace

fn is_watched(record: &Value, pid: u32) -> bool {
    record["type"] == "watched" && record["pid"] == json!(pid)
}

// ---------------------------------------------------------------------------
// Findings

/// Mismatches collected over a whole scenario, then reported together with
/// what /proc showed and the records about the pids involved.
struct Findings {
    failures: Vec<String>,
    observed: Vec<String>,
}

impl Findings {
    fn new() -> Findings {
        Findings { failures: Vec::new(), observed: Vec::new() }
    }

    /// Something seen on the way; printed now (visible with --nocapture)
    /// and repeated in a failure report.
    fn observe(&mut self, what: String) {
        eprintln!("observed: {what}");
        self.observed.push(what);
    }

    fn check(&mut self, ok: bool, why: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(why());
        }
    }

    /// `record[pointer] == want`, for a record that may be missing.
    fn field(&mut self, what: &str, record: Option<&Value>, pointer: &str, want: Value) {
        let Some(record) = record else { return };
        let got = record.pointer(pointer).cloned().unwrap_or(Value::Null);
        self.check(got == want, || format!("{what}: {pointer} is {got}, want {want}"));
    }

    /// The `evidence` of `record` as strings, failing if it is not an array
    /// of strings.
    fn evidence(&mut self, what: &str, record: &Value) -> Vec<String> {
        match record.get("evidence").and_then(Value::as_array) {
            Some(items) if items.iter().all(Value::is_string) => {
                items.iter().filter_map(Value::as_str).map(str::to_string).collect()
            }
            _ => {
                self.failures.push(format!(
                    "{what}: `evidence` is not an array of strings: {}",
                    record.get("evidence").unwrap_or(&Value::Null)
                ));
                Vec::new()
            }
        }
    }

    /// An evidence string containing one of `needles` (lower case; the
    /// evidence is compared case-insensitively).
    fn mentions(&mut self, what: &str, evidence: &[String], needles: &[&str]) {
        let found = evidence.iter().any(|e| needles.iter().any(|n| e.to_lowercase().contains(n)));
        self.check(found, || format!("{what}: no evidence string mentions any of {needles:?}: {evidence:?}"));
    }

    /// Panics with every failure, the observations, and the records about
    /// `pids`, unless there were no failures.
    fn finish(self, stopped: &Stopped, pids: &[u32]) {
        if self.failures.is_empty() {
            return;
        }
        let mut about = Vec::new();
        for &pid in pids {
            about.push(format!("-- records about pid {pid}:"));
            about.extend(common::about(&stopped.records, pid));
            about.extend(stopped.records.iter().filter(|r| is_watched(r, pid)).map(Value::to_string));
        }
        panic!(
            "{} finding(s):\n  - {}\n\nobserved:\n  {}\n\n{}\n\ncrashtrace stderr:\n{}",
            self.failures.len(),
            self.failures.join("\n  - "),
            self.observed.join("\n  "),
            about.join("\n"),
            stopped.stderr
        );
    }
}

/// A clean stop: status 0, no panic, schema 1 on every record (a line that
/// is not JSON already failed in the harness), header
/// first naming the watched pid, summary last.
fn check_clean_exit(findings: &mut Findings, stopped: &Stopped, watched: u32) {
    findings.check(stopped.status.success(), || format!("crashtrace exited with {} after SIGINT", stopped.status));
    findings.check(!stopped.stderr.contains("panicked"), || "crashtrace panicked".into());
    findings.check(stopped.records.iter().all(|r| r["v"] == 1), || "a record without schema version 1".into());
    let first = stopped.records.first();
    findings.check(first.is_some_and(|r| r["type"] == "header"), || {
        format!("the first record is not the header: {first:?}")
    });
    findings.field("header", first, "/watched_pid", json!(watched));
    let last = stopped.records.last();
    findings.check(last.is_some_and(|r| r["type"] == "summary"), || {
        format!("the last record is not the summary: {last:?}")
    });
}

/// The collector's connect to the coredump socket, if the chain shows one.
fn socket_connect(chain: &Value) -> Option<i64> {
    chain
        .pointer("/collector/connects")
        .and_then(Value::as_array)?
        .iter()
        .filter(|c| c["path"] == COREDUMP_SOCKET)
        .filter_map(|c| c["ret"].as_i64())
        .next_back()
}

/// The incident up to the deadlock: namespace, crashtrace watching its
/// PID 1, the crash, the crash child, the deadlock seen in /proc.
struct Deadlocked {
    ns: Namespace,
    tracer: Tracer,
    crash_child: u32,
    triggered: Instant,
}

fn deadlock(core_dir: &Path, findings: &mut Findings) -> Deadlocked {
    let ns = Namespace::start(core_dir);
    let init_arg = ns.init.to_string();
    let tracer = Tracer::start(&["--json", "--pid", &init_arg]);
    ns.trigger_crash();
    let triggered = Instant::now();
    let crash_child = ns.wait_crash_child();
    let (c, init) = ns.wait_deadlock(crash_child);
    findings.observe(format!("deadlock, crash child C: {}", c.describe()));
    findings.observe(format!("deadlock, PID 1: {}", init.describe()));
    Deadlocked { ns, tracer, crash_child, triggered }
}

/// One line about a record crashtrace printed, for the observations.
fn summarize(record: &Value) -> String {
    let mut s = format!("{} {}", record["type"], record.get("verdict").or(record.get("state")).unwrap_or(&Value::Null));
    for key in ["stalled", "reason", "evidence"] {
        if let Some(v) = record.get(key) {
            s.push_str(&format!(" {key}={v}"));
        }
    }
    s
}

/// SIGKILL to the crash child: the dump is interrupted, PID 1's wait
/// returns, and it logs and freezes.
fn release(ns: &mut Namespace, crash_child: u32, findings: &mut Findings) {
    // SAFETY: kill(2) on a process in the namespace this test owns.
    let rc = unsafe { libc::kill(crash_child as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill({crash_child}, SIGKILL) failed: {}", std::io::Error::last_os_error());
    let Some(caught) = ns.wait_line("Caught <SEGV>", SETUP_WAIT) else {
        panic!(
            "the test init did not log its crash within {SETUP_WAIT:?} of the crash child's kill; stderr:\n{}",
            ns.stderr_text()
        )
    };
    findings.observe(format!("PID 1 logged: {caught}"));
}

// ---------------------------------------------------------------------------
// The scenarios

/// A: PID 1 faults; its crash child's collector connects but is never
/// served; the crash child and PID 1 deadlock. crashtrace must report the
/// stall, with evidence, before anyone ends it.
#[test]
#[ignore = "privileged: needs root, real BPF, unshare and cc; run with cargo xtask test"]
fn pid1_crash_deadlocks_its_collector() {
    let _machine = systemd_collector_machine();
    let dir = TempDir::new("crashtrace-pid1");
    let mut f = Findings::new();
    let Deadlocked { mut ns, mut tracer, crash_child: c, triggered } = deadlock(dir.path(), &mut f);
    let init = ns.init;

    // While it lasts.
    let deadline = Instant::now() + STALL_WAIT;
    let handled = tracer.wait_until(deadline, |r| is_verdict_for(r, init)).map(|i| tracer.records[i].clone());
    if let Some(h) = &handled {
        f.observe(format!(
            "PID 1's chain, {:.1} s after the trigger: {}",
            triggered.elapsed().as_secs_f64(),
            summarize(h)
        ));
    }
    let during = tracer.wait_until(deadline, |r| is_verdict_for(r, c)).map(|i| tracer.records[i].clone());
    if let Some(v) = &during {
        f.observe(format!(
            "the crash child's chain, {:.1} s after the trigger: {}",
            triggered.elapsed().as_secs_f64(),
            summarize(v)
        ));
    }
    let c_now = Proc::read(c);
    f.observe(format!(
        "crash child after waiting for crashtrace ({}): {}",
        if during.is_some() { "its verdict arrived" } else { "no verdict for it" },
        c_now.as_ref().map(Proc::describe).unwrap_or_else(|| "gone".into())
    ));
    f.check(c_now.as_ref().is_some_and(|p| p.wchan.contains("pipe")), || {
        format!("the crash child {c} left its pipe write before the test killed it: {c_now:?}")
    });

    release(&mut ns, c, &mut f);
    // What crashtrace says once it is over, for the report.
    let after = match &during {
        Some(_) => None,
        None => tracer.wait_until(Instant::now() + VERDICT_WAIT, |r| is_verdict_for(r, c)).map(|i| tracer.records[i].clone()),
    };
    let stopped = tracer.stop();
    check_clean_exit(&mut f, &stopped, init);

    // 1. PID 1's own fault, caught by its handler.
    f.check(handled.is_some(), || format!("no verdict for the watched pid {init} within {STALL_WAIT:?} of its crash"));
    let h = handled.as_ref();
    f.field("PID 1's verdict", h, "/verdict", json!("handled"));
    f.field("PID 1's verdict", h, "/sig", json!(libc::SIGSEGV));
    f.field("PID 1's verdict", h, "/signal", json!("SIGSEGV"));
    f.field("PID 1's verdict", h, "/code", json!(1)); // SEGV_MAPERR
    f.field("PID 1's verdict", h, "/origin", json!("fault"));
    f.field("PID 1's verdict", h, "/fault_addr", json!(0));

    // 2-5. The crash child's chain, as reported while it was stuck.
    f.check(during.is_some(), || {
        format!(
            "no verdict for the crash child {c} while it was deadlocked (waited {STALL_WAIT:?}); after it was killed, \
             crashtrace said: {}",
            after
                .as_ref()
                .map(|v| format!("verdict {} ({})", v["verdict"], v["reason"]))
                .unwrap_or_else(|| "nothing".into())
        )
    });
    // Linking and the collector are checked on whichever verdict came.
    let chain = during.as_ref().or(after.as_ref());
    if let (Some(chain), Some(h)) = (chain, h) {
        f.check(chain["linked_to"] == h["id"], || {
            format!("the crash child's chain is linked to {}, want PID 1's chain {}", chain["linked_to"], h["id"])
        });
    }
    f.field("the crash child's chain", chain, "/sig", json!(libc::SIGSEGV));
    f.field("the crash child's chain", chain, "/origin", json!("kill"));
    f.field("the crash child's chain", chain, "/code", json!(0)); // SI_USER
    f.field("the crash child's chain", chain, "/collector/filename", json!(SYSTEMD_COREDUMP));
    f.field("the crash child's chain", chain, "/collector/argv/1", json!(c.to_string()));
    if let Some(chain) = chain {
        let ret = socket_connect(chain);
        f.check(ret == Some(0), || {
            format!("the collector's connect to {COREDUMP_SOCKET} returned {ret:?}, want Some(0)")
        });
    }
    if let Some(v) = during.as_ref() {
        let what = "the crash child's verdict during the deadlock";
        f.field(what, Some(v), "/verdict", json!("dropped:collector-unreachable-pid1"));
        f.field(what, Some(v), "/stalled", json!(true));
        let reason = v["reason"].as_str().unwrap_or_default().to_lowercase();
        f.check(reason.contains("deadlock"), || {
            format!("{what}: the reason does not name the deadlock: {:?}", v["reason"])
        });
        let evidence = f.evidence(what, v);
        f.mentions(what, &evidence, &["pipe"]);
        f.mentions(what, &evidence, &["wait"]);
    }
    f.finish(&stopped, &[init, c]);
}

/// B: after PID 1 froze, a crash anywhere on the host loses its core: the
/// collector's connect is refused, the kernel still says "core dumped".
/// crashtrace must say so, and report PID 1 frozen in its crash handler.
#[test]
#[ignore = "privileged: needs root, real BPF, unshare and cc; run with cargo xtask test"]
fn frozen_pid1_drops_every_later_core() {
    let _machine = systemd_collector_machine();
    let dir = TempDir::new("crashtrace-pid1");
    let mut f = Findings::new();
    let Deadlocked { mut ns, mut tracer, crash_child: c, .. } = deadlock(dir.path(), &mut f);
    let init = ns.init;
    release(&mut ns, c, &mut f);
    let released = Instant::now();
    let (frozen, zombies) = ns.wait_frozen();
    f.observe(format!("frozen PID 1: {}", frozen.describe()));
    f.observe(format!(
        "zombie children of PID 1: {}",
        zombies.iter().map(|z| format!("{} ({})", z.pid, z.comm)).collect::<Vec<_>>().join(", ")
    ));

    let mut crasher = Crasher::spawn("segv", RlimitCore::Unlimited, dir.path());
    let status = crasher.wait();
    let pid = crasher.pid;
    f.observe(format!("host crasher {pid}: {status}"));
    assert!(
        std::os::unix::process::ExitStatusExt::core_dumped(&status),
        "the kernel did not report a core dump for the host crasher {pid} ({status}), so this is not the incident"
    );
    let verdict = tracer.wait_until(Instant::now() + VERDICT_WAIT, |r| is_verdict_for(r, pid)).map(|i| tracer.records[i].clone());
    let watched = tracer.wait_until(Instant::now() + VERDICT_WAIT, |r| is_watched(r, init) && r["state"] == "frozen-in-crash-handler").map(|i| tracer.records[i].clone());
    if let Some(w) = &watched {
        f.observe(format!("by {:.1} s after the release: {}", released.elapsed().as_secs_f64(), summarize(w)));
    }
    if let Some(v) = &verdict {
        f.observe(format!("the host crasher's chain: {}", summarize(v)));
    }
    let stopped = tracer.stop();
    check_clean_exit(&mut f, &stopped, init);

    f.check(verdict.is_some(), || {
        format!(
            "no verdict for the host crasher {pid} within {VERDICT_WAIT:?} (with --pid {init}, the owner of \
             {COREDUMP_SOCKET}: filtered out, or not ended?)"
        )
    });
    let what = "the host crasher's verdict";
    f.field(what, verdict.as_ref(), "/verdict", json!("dropped:collector-unreachable-pid1"));
    f.field(what, verdict.as_ref(), "/kernel_said_dumped", json!(true));
    f.field(what, verdict.as_ref(), "/collector/filename", json!(SYSTEMD_COREDUMP));
    if let Some(v) = verdict.as_ref() {
        let ret = socket_connect(v);
        f.check(ret == Some(ECONNREFUSED) || ret == Some(ENOENT), || {
            format!("{what}: the collector's connect to {COREDUMP_SOCKET} returned {ret:?}, want ECONNREFUSED ({ECONNREFUSED}) or ENOENT ({ENOENT})")
        });
    }

    let states: Vec<String> =
        stopped.records.iter().filter(|r| is_watched(r, init)).map(|r| r["state"].to_string()).collect();
    f.check(watched.is_some(), || {
        format!("no `watched` record calling pid {init} frozen-in-crash-handler; its watched states: {states:?}")
    });
    if let Some(w) = watched.as_ref() {
        let what = "the watched record";
        let evidence = f.evidence(what, w);
        f.mentions(what, &evidence, &["sigsegv"]);
        f.mentions(what, &evidence, &["no fd", "no file descriptor"]);
        f.mentions(what, &evidence, &["pause"]);
        f.mentions(what, &evidence, &["zombie"]);
    }
    f.finish(&stopped, &[init, pid]);
}

/// C: PID 1 serves the socket and does not crash; a host crash is stored.
#[test]
#[ignore = "privileged: needs root, real BPF, unshare and cc; run with cargo xtask test"]
fn healthy_pid1_stores_cores() {
    let _machine = systemd_collector_machine();
    let dir = TempDir::new("crashtrace-pid1");
    let mut f = Findings::new();
    let mut ns = Namespace::start(dir.path());
    let init = ns.init;
    let init_arg = init.to_string();
    let mut tracer = Tracer::start(&["--json", "--pid", &init_arg]);

    let mut crasher = Crasher::spawn("segv", RlimitCore::Unlimited, dir.path());
    let status = crasher.wait();
    let pid = crasher.pid;
    f.observe(format!("host crasher {pid}: {status}"));
    let stored_line = ns.wait_line(&format!("from pid {pid} "), SETUP_WAIT);
    f.observe(format!("PID 1 said: {stored_line:?}"));
    let verdict = tracer.wait_until(Instant::now() + VERDICT_WAIT, |r| is_verdict_for(r, pid)).map(|i| tracer.records[i].clone());
    let stopped = tracer.stop();
    check_clean_exit(&mut f, &stopped, init);

    // The test init must really have stored it, or the scenario is not the healthy case.
    let core = dir.path().join(format!("core.{pid}"));
    let bytes = std::fs::read(&core).unwrap_or_default();
    let said = stored_line
        .as_deref()
        .and_then(|l| l.strip_prefix("testinit: stored "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    assert!(
        said.is_some() && bytes.len() == said.unwrap_or(0) && bytes.starts_with(b"\x7fELF"),
        "the test init did not store the core of {pid}: it said {stored_line:?}; {} holds {} bytes; its stderr:\n{}",
        core.display(),
        bytes.len(),
        ns.stderr_text()
    );
    f.observe(format!("stored core: {} ({} bytes)", core.display(), bytes.len()));

    f.check(verdict.is_some(), || {
        format!(
            "no verdict for the host crasher {pid} within {VERDICT_WAIT:?} (with --pid {init}, the owner of \
             {COREDUMP_SOCKET}: filtered out, or not ended?)"
        )
    });
    let what = "the host crasher's verdict";
    // The test init is not systemd: it keeps the core in its own directory,
    // not in systemd-coredump's store, so crashtrace (which looks where
    // systemd-coredump keeps cores) finds none there and says so.
    f.field(what, verdict.as_ref(), "/verdict", json!("dropped:collector-discarded"));
    f.field(what, verdict.as_ref(), "/core/searched/0", json!("/var/lib/systemd/coredump"));
    f.field(what, verdict.as_ref(), "/collector/filename", json!(SYSTEMD_COREDUMP));
    f.field(what, verdict.as_ref(), "/collector/exit_code", json!(0));
    if let Some(v) = verdict.as_ref() {
        let ret = socket_connect(v);
        f.check(ret == Some(0), || {
            format!("{what}: the collector's connect to {COREDUMP_SOCKET} returned {ret:?}, want Some(0)")
        });
    }
    f.finish(&stopped, &[init, pid]);
}

//! Shared helpers for crashtrace's privileged (tier 2) tests: the global
//! lock, saving and restoring the kernel's core-dump settings, temporary
//! directories, the crasher program, and a running crashtrace whose JSON
//! Lines output is read as it arrives.
//!
//! Every wait here is bounded, and every failure panics with what was seen
//! (crashtrace's stderr, the records about the process in question), so a
//! failed run says why.

// Each test file that includes this module uses a different part of it.
#![allow(dead_code)]

use std::{
    ffi::CString,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Read},
    os::{
        fd::AsRawFd,
        unix::{fs::OpenOptionsExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError},
        Arc, Mutex, OnceLock,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

pub(crate) mod schema;

/// The lock every test that changes global machine state or crashes
/// processes holds for its whole duration (see the project's coordination rules).
pub(crate) const GLOBAL_LOCK: &str = "/tmp/crashtrace-global.lock";
pub(crate) const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";
pub(crate) const CORE_PIPE_LIMIT: &str = "/proc/sys/kernel/core_pipe_limit";
pub(crate) const SUID_DUMPABLE: &str = "/proc/sys/fs/suid_dumpable";

/// The crashtrace binary Cargo built for this test run.
pub(crate) const CRASHTRACE: &str = env!("CARGO_BIN_EXE_crashtrace");

/// The crashtrace binary to run: a hard link to [`CRASHTRACE`] named for
/// this test process. The target directory is shared, and a build elsewhere
/// (one without the eBPF object, say) can replace the binary at its usual
/// path while slow scenarios run. Links left by ended test processes are
/// removed.
pub(crate) fn pinned_crashtrace() -> PathBuf {
    static PINNED: OnceLock<PathBuf> = OnceLock::new();
    PINNED
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pinned");
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let owner = name.strip_prefix("crashtrace.").and_then(|p| p.parse::<u32>().ok());
                if owner.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            let pinned = dir.join(format!("crashtrace.{}", std::process::id()));
            let _ = std::fs::remove_file(&pinned);
            if std::fs::hard_link(CRASHTRACE, &pinned).is_err() {
                std::fs::copy(CRASHTRACE, &pinned)
                    .unwrap_or_else(|e| panic!("cannot copy {CRASHTRACE} to {}: {e}", pinned.display()));
            }
            pinned
        })
        .clone()
}

/// Attaching loads and verifies every program; on a busy 2-core machine
/// that can take a while, so the bound is generous.
pub(crate) const ATTACH_WAIT: Duration = Duration::from_secs(90);
/// A chain with no new evidence is ended after 15 s by the correlator, so a
/// verdict must come well within this.
pub(crate) const VERDICT_WAIT: Duration = Duration::from_secs(45);
/// SIGINT to exit, including the final flush and summary.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(30);
/// A crashing child, core dump and collector included.
pub(crate) const CRASH_WAIT: Duration = Duration::from_secs(30);

/// Panics unless this is root: the tier needs real BPF and writes /proc/sys.
pub(crate) fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "privileged tests need root (real BPF, /proc/sys writes); run them with `cargo xtask test` as root");
}

/// An exclusive flock on [`GLOBAL_LOCK`], released when dropped.
pub(crate) struct GlobalLock {
    _file: File,
}

impl GlobalLock {
    pub(crate) fn acquire() -> GlobalLock {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(GLOBAL_LOCK)
            .unwrap_or_else(|e| panic!("cannot open the global lock {GLOBAL_LOCK}: {e}"));
        loop {
            // SAFETY: flock on an fd this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                panic!("flock({GLOBAL_LOCK}) failed: {err}");
            }
        }
        GlobalLock { _file: file }
    }
}

/// core_pattern, core_pipe_limit and suid_dumpable as found, written back
/// when dropped, also when the test panics.
pub(crate) struct SavedSettings {
    saved: Vec<(&'static str, String)>,
}

impl SavedSettings {
    pub(crate) fn save() -> SavedSettings {
        let saved = [CORE_PATTERN, CORE_PIPE_LIMIT, SUID_DUMPABLE]
            .into_iter()
            .map(|path| {
                let value = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
                (path, value.trim_end_matches('\n').to_string())
            })
            .collect();
        SavedSettings { saved }
    }
}

impl Drop for SavedSettings {
    fn drop(&mut self) {
        let mut failed = Vec::new();
        for (path, value) in &self.saved {
            if let Err(e) = write_sysctl(path, value) {
                failed.push(format!("{path} = {value:?}: {e}"));
            }
        }
        if failed.is_empty() {
            return;
        }
        let msg = format!("could not restore the core-dump settings; fix them by hand: {}", failed.join("; "));
        // A second panic while unwinding would abort and hide the first.
        if std::thread::panicking() {
            eprintln!("{msg}");
        } else {
            panic!("{msg}");
        }
    }
}

/// Writes a /proc/sys value and reads it back. The trailing newline matters:
/// writing no bytes at all would leave an old core_pattern in place.
fn write_sysctl(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, format!("{value}\n")).map_err(|e| e.to_string())?;
    let now = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    if now.trim_end_matches('\n') != value {
        return Err(format!("wrote {value:?} but it reads back as {:?}", now.trim_end_matches('\n')));
    }
    Ok(())
}

/// What a privileged test holds for its whole duration: the global lock and
/// the saved settings. Fields drop in order, so the settings are restored
/// before the lock is released.
pub(crate) struct Exclusive {
    _settings: SavedSettings,
    _lock: GlobalLock,
}

impl Exclusive {
    pub(crate) fn take() -> Exclusive {
        require_root();
        let lock = GlobalLock::acquire();
        let settings = SavedSettings::save();
        Exclusive { _settings: settings, _lock: lock }
    }

    pub(crate) fn set_core_pattern(&self, pattern: &str) {
        write_sysctl(CORE_PATTERN, pattern).unwrap_or_else(|e| panic!("setting core_pattern: {e}"));
    }

    pub(crate) fn set_core_pipe_limit(&self, limit: u32) {
        write_sysctl(CORE_PIPE_LIMIT, &limit.to_string()).unwrap_or_else(|e| panic!("setting core_pipe_limit: {e}"));
    }
}

/// A directory under /tmp, removed with its contents when dropped.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new(prefix: &str) -> TempDir {
        let template = CString::new(format!("/tmp/{prefix}.XXXXXX")).expect("prefix has no NUL");
        let mut bytes = template.into_bytes_with_nul();
        // SAFETY: a writable, NUL-terminated template ending in XXXXXX.
        let ret = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        assert!(!ret.is_null(), "mkdtemp in /tmp failed: {}", std::io::Error::last_os_error());
        bytes.pop();
        TempDir { path: PathBuf::from(String::from_utf8(bytes).expect("mkdtemp keeps the template ASCII")) }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The crasher (tests/crashers/crash.c), compiled with `cc` once per test run.
pub(crate) fn crasher() -> &'static Path {
    static CRASHER: OnceLock<PathBuf> = OnceLock::new();
    CRASHER.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crashers/crash.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("crashers");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // Built under a private name, then renamed, so a concurrent run never
        // executes a half-written binary.
        let private = dir.join(format!("crash.{}", std::process::id()));
        let out = Command::new("cc")
            .args(["-O0", "-Wall", "-o"])
            .arg(&private)
            .arg(&source)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `cc` to build the crasher (install gcc): {e}"));
        assert!(
            out.status.success(),
            "cc failed to build {}: {}\n{}",
            source.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let binary = dir.join("crash");
        std::fs::rename(&private, &binary).unwrap_or_else(|e| panic!("cannot move the crasher into place: {e}"));
        binary
    })
}

/// RLIMIT_CORE for a crasher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RlimitCore {
    Unlimited,
    Bytes(u64),
}

/// A crasher process; killed and reaped when dropped if the test did not
/// reap it, so a failed test leaves no process behind.
pub(crate) struct Crasher {
    child: Option<Child>,
    pub pid: u32,
}

impl Crasher {
    /// Starts the crasher in `mode` (segv, abort, pause) in `cwd`, with
    /// RLIMIT_CORE set (soft and hard) before exec.
    pub(crate) fn spawn(mode: &str, rlimit: RlimitCore, cwd: &Path) -> Crasher {
        let limit = match rlimit {
            RlimitCore::Unlimited => libc::RLIM_INFINITY,
            RlimitCore::Bytes(n) => n as libc::rlim_t,
        };
        let mut cmd = Command::new(crasher());
        cmd.arg(mode).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // SAFETY: setrlimit is async-signal-safe and touches no parent state.
        unsafe {
            cmd.pre_exec(move || {
                let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(libc::RLIMIT_CORE, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start the crasher {}: {e}", crasher().display()));
        let pid = child.id();
        Crasher { child: Some(child), pid }
    }

    /// For `pause` mode: waits (bounded) until the crasher says it is ready.
    pub(crate) fn wait_ready(&mut self) {
        let stdout: &mut ChildStdout = self.child.as_mut().and_then(|c| c.stdout.as_mut()).expect("crasher stdout is piped");
        let mut pfd = libc::pollfd { fd: stdout.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        assert!(n == 1, "crasher {} did not say ready within 10 s (poll returned {n})", self.pid);
        let mut buf = [0u8; 64];
        let got = stdout.read(&mut buf).expect("reading the crasher's stdout");
        let said = String::from_utf8_lossy(&buf[..got]);
        assert_eq!(said.trim(), "ready", "crasher {} said {said:?} instead of ready", self.pid);
    }

    /// Sends `sig` to the crasher, from this (the test) process.
    pub(crate) fn kill(&self, sig: i32) {
        // SAFETY: kill(2) on our own unreaped child.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed: {}", self.pid, std::io::Error::last_os_error());
    }

    /// Reaps the crasher (bounded wait) and returns its wait status.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("crasher already reaped");
        wait_bounded(&mut child, CRASH_WAIT, "the crasher")
    }
}

impl Drop for Crasher {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running crashtrace, its JSON Lines stdout parsed as it arrives and its
/// stderr kept. Killed when dropped if the test did not stop it.
pub(crate) struct Tracer {
    child: Option<Child>,
    stdout_rx: Receiver<String>,
    stderr_rx: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    /// Every record read so far, in order.
    pub records: Vec<Value>,
}

/// What a stopped crashtrace left.
pub(crate) struct Stopped {
    pub status: ExitStatus,
    pub records: Vec<Value>,
    pub stderr: String,
}

fn read_lines<R: Read + Send + 'static>(
    from: R,
    to: mpsc::Sender<String>,
    keep: Option<Arc<Mutex<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if let Some(keep) = &keep {
                let mut k = keep.lock().unwrap_or_else(|p| p.into_inner());
                k.push_str(&line);
                k.push('\n');
            }
            if to.send(line).is_err() {
                break;
            }
        }
    })
}

impl Tracer {
    /// Starts crashtrace with `args` (add `--json`) and waits until it says
    /// it is attached.
    pub(crate) fn start(args: &[&str]) -> Tracer {
        Tracer::start_with_env(args, &[])
    }

    /// As [`Tracer::start`], with these environment variables set.
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Tracer {
        let binary = pinned_crashtrace();
        let mut child = Command::new(&binary)
            .args(args)
            .envs(env.iter().copied())
            // The object built into the binary is the one under test.
            .env_remove("CRASHTRACE_BPF_OBJECT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (pinned from {CRASHTRACE}): {e}", binary.display()));
        let (out_tx, stdout_rx) = mpsc::channel();
        let (err_tx, stderr_rx) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            read_lines(child.stdout.take().expect("piped"), out_tx, None),
            read_lines(child.stderr.take().expect("piped"), err_tx, Some(stderr.clone())),
        ];
        let mut tracer = Tracer { child: Some(child), stdout_rx, stderr_rx, stderr, readers, records: Vec::new() };
        tracer.wait_attached(args);
        tracer
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("crashtrace is running")
    }

    pub(crate) fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn wait_attached(&mut self, args: &[&str]) {
        let deadline = Instant::now() + ATTACH_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_rx.recv_timeout(left) {
                Ok(line) if line.contains("built without its eBPF object") => panic!(
                    "{CRASHTRACE} was built without its eBPF object, so tier 2 cannot run: build the tests with \
                     CRASHTRACE_EBPF_OBJECT pointing at the object (`cargo xtask test` does this). crashtrace said: {line}"
                ),
                Ok(line) if line.starts_with("crashtrace: attached") => return,
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    panic!(
                        "crashtrace {args:?} exited ({status:?}) without saying `crashtrace: attached`; its stderr:\n{}",
                        self.stderr_text()
                    );
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "crashtrace {args:?} did not say `crashtrace: attached` within {ATTACH_WAIT:?}; its stderr so far:\n{}",
                    self.stderr_text()
                ),
            }
        }
    }

    fn take_line(&mut self, line: String) -> &Value {
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("crashtrace --json printed a line that is not JSON ({e}): {line}"));
        // Every record a test reads is checked against the published schema.
        schema::check_line(&line);
        self.records.push(value);
        self.records.last().expect("just pushed")
    }

    /// Reads records until the verdict whose crasher is process `tgid`
    /// arrives, and returns it.
    pub(crate) fn wait_verdict(&mut self, tgid: u32) -> Value {
        let deadline = Instant::now() + VERDICT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_rx.recv_timeout(left) {
                Ok(line) => {
                    let record = self.take_line(line);
                    if is_verdict_for(record, tgid) {
                        return record.clone();
                    }
                }
                Err(e) => {
                    let why = match e {
                        RecvTimeoutError::Timeout => format!("no verdict for pid {tgid} within {VERDICT_WAIT:?}"),
                        RecvTimeoutError::Disconnected => format!("crashtrace closed stdout before a verdict for pid {tgid}"),
                    };
                    panic!(
                        "{why}.\nrecords about pid {tgid}:\n{}\ncrashtrace stderr:\n{}",
                        about(&self.records, tgid).join("\n"),
                        self.stderr_text()
                    );
                }
            }
        }
    }

    /// Reads records until one matches `pred` (or one already read does)
    /// and returns its index in `records`; fails with the last records and
    /// crashtrace's stderr after `limit`.
    pub(crate) fn wait_for(&mut self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> usize {
        let deadline = Instant::now() + limit;
        match self.wait_until(deadline, &pred) {
            Some(i) => i,
            None => panic!(
                "no {what} within {limit:?}.\nthe last records:\n{}\ncrashtrace stderr:\n{}",
                tail(&self.records, 30),
                self.stderr_text()
            ),
        }
    }

    /// The index of the first record, already read or arriving before
    /// `deadline`, that `pred` accepts; None when none came (the caller
    /// decides whether that fails).
    pub(crate) fn wait_until(&mut self, deadline: Instant, pred: impl Fn(&Value) -> bool) -> Option<usize> {
        if let Some(i) = self.records.iter().position(&pred) {
            return Some(i);
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_rx.recv_timeout(left) {
                Ok(line) => {
                    if pred(self.take_line(line)) {
                        return Some(self.records.len() - 1);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Stops crashtrace with SIGINT (bounded wait) and returns every record
    /// it printed, its exit status and its stderr.
    pub(crate) fn stop(mut self) -> Stopped {
        let mut child = self.child.take().expect("crashtrace is running");
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let status = wait_bounded(&mut child, STOP_WAIT, "crashtrace after SIGINT");
        // The readers end at EOF, which follows the exit.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        while let Ok(line) = self.stdout_rx.try_recv() {
            self.take_line(line);
        }
        Stopped { status, records: std::mem::take(&mut self.records), stderr: self.stderr_text() }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Stopped {
    /// Exit status 0, no panic text, and a `summary` as the last record.
    /// Returns the summary.
    #[track_caller]
    pub(crate) fn assert_clean_exit(&self) -> &Value {
        assert!(
            self.status.success(),
            "crashtrace exited with {} after SIGINT; stderr:\n{}",
            self.status,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "crashtrace panicked; stderr:\n{}", self.stderr);
        let first = self.records.first().unwrap_or_else(|| panic!("crashtrace printed no records; stderr:\n{}", self.stderr));
        assert_eq!(first["type"], "header", "the first record is not the header: {first}");
        let last = self.records.last().expect("not empty");
        assert_eq!(last["type"], "summary", "the last record is not the summary: {last}\nstderr:\n{}", self.stderr);
        for record in &self.records {
            assert_eq!(record["v"], 1, "a record without schema version 1: {record}");
        }
        last
    }

    /// Verdict records whose crasher is process `tgid`.
    pub(crate) fn verdicts_for(&self, tgid: u32) -> Vec<&Value> {
        self.records.iter().filter(|r| is_verdict_for(r, tgid)).collect()
    }
}

/// The records of JSON Lines text crashtrace wrote (a log, `report
/// --json`), each checked against the published schema.
pub(crate) fn records_of(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            schema::check_line(l);
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
        })
        .collect()
}

/// Waits for `child` with a deadline; kills it and fails past the deadline.
/// Polls briefly: tests act on a crasher's exit (removing its cgroup, say)
/// right after it.
pub(crate) fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} (pid {}) still ran after {limit:?}; killed it", child.id());
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// The last `n` records, one per line, for failure messages.
pub(crate) fn tail(records: &[Value], n: usize) -> String {
    records[records.len().saturating_sub(n)..].iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
}

pub(crate) fn is_verdict_for(record: &Value, tgid: u32) -> bool {
    record["type"] == "verdict" && record.pointer("/crasher/tgid").and_then(Value::as_u64) == Some(tgid as u64)
}

/// Records that mention process `tgid` as a task, target, crasher or
/// collector: the evidence to show when a check about it fails.
pub(crate) fn about(records: &[Value], tgid: u32) -> Vec<String> {
    let t = Some(tgid as u64);
    records
        .iter()
        .filter(|r| {
            ["/task/tgid", "/target/tgid", "/crasher/tgid", "/collector/pid", "/sender/tgid"]
                .iter()
                .any(|p| r.pointer(p).and_then(Value::as_u64) == t)
                || r.pointer("/argv/1").and_then(Value::as_str) == Some(tgid.to_string().as_str())
        })
        .map(|r| r.to_string())
        .collect()
}

/// Output of a crashtrace run that is expected to end by itself.
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end, bounded by `limit`; it is killed, and the test
/// fails, if it runs longer.
pub(crate) fn run_bounded(mut cmd: Command, limit: Duration) -> Finished {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = collect(Box::new(child.stdout.take().expect("piped")));
    let err = collect(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmd:?} still ran after {limit:?}; killed it. stderr:\n{}", err.join().unwrap_or_default());
            }
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    Finished { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

impl Finished {
    /// The shape of every crashtrace usage error: exit status 2, exactly one
    /// line on stderr starting `crashtrace:` and containing each of `needles`,
    /// no panic, and nothing on stdout (no header: it never started tracing).
    #[track_caller]
    pub(crate) fn assert_usage_error(&self, needles: &[&str]) {
        assert!(
            !self.stderr.contains("built without its eBPF object"),
            "{CRASHTRACE} was built without its eBPF object, so this check cannot run: build the tests with \
             CRASHTRACE_EBPF_OBJECT set (`cargo xtask test` does this). stderr:\n{}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "crashtrace panicked:\n{}", self.stderr);
        assert_eq!(self.status.code(), Some(2), "want exit status 2, got {}; stderr:\n{}", self.status, self.stderr);
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "want exactly one line on stderr, got {}:\n{}", lines.len(), self.stderr);
        assert!(lines[0].starts_with("crashtrace: "), "the error line does not start with `crashtrace: `: {}", lines[0]);
        for needle in needles {
            assert!(lines[0].contains(needle), "the error line does not mention {needle:?}: {}", lines[0]);
        }
        assert!(self.stdout.is_empty(), "crashtrace printed to stdout before failing:\n{}", self.stdout);
    }
}

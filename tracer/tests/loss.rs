//! Loss accounting, for real: crashtrace runs with the smallest ring buffer
//! (one page) and its reader stopped (SIGSTOP) while a burst of crashes
//! happens, so the kernel must drop events. The test checks that the loss is
//! reported, as `loss` records and as the summary's `lost_kernel`, and that
//! the count adds up: for each event kind the burst makes a known number of,
//! the events seen plus the events reported lost account for every one made.
//!
//! Privileged (root, real BPF, writes core_pattern); holds the machine's
//! global lock and restores core_pattern and core_pipe_limit.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

const GLOBAL_LOCK: &str = "/tmp/crashtrace-global.lock";
const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";
const CORE_PIPE_LIMIT: &str = "/proc/sys/kernel/core_pipe_limit";
const CRASHTRACE: &str = env!("CARGO_BIN_EXE_crashtrace");
/// Crashes in the burst. Each makes four events (SIGSEGV generated and
/// delivered, the exit, SIGCHLD CLD_KILLED to us), far more than a one-page
/// ring buffer holds.
const BURST: u64 = 400;
/// Lost events the burst cannot explain may come from other processes on the
/// machine that crashed or were killed while the reader was stopped; loss is
/// counted per kind, not per process. A double count would exceed this by
/// far (the burst loses well over a thousand events).
const NOISE_ALLOWANCE: u64 = BURST / 10;

/// Held for its flock; released when the file closes.
struct Lock {
    _file: File,
}

impl Lock {
    fn take() -> Lock {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(GLOBAL_LOCK)
            .expect("open the global lock");
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0, "flock {GLOBAL_LOCK}");
        Lock { _file: f }
    }
}

/// Restores core_pattern and core_pipe_limit on drop, panics included.
struct CoreSettings {
    pattern: String,
    pipe_limit: String,
    _lock: Lock,
}

impl CoreSettings {
    fn save(lock: Lock) -> CoreSettings {
        let read = |p: &str| {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {p}: {e}")).trim_end_matches('\n').to_string()
        };
        CoreSettings { pattern: read(CORE_PATTERN), pipe_limit: read(CORE_PIPE_LIMIT), _lock: lock }
    }
}

impl Drop for CoreSettings {
    fn drop(&mut self) {
        for (p, v) in [(CORE_PATTERN, &self.pattern), (CORE_PIPE_LIMIT, &self.pipe_limit)] {
            if let Err(e) = std::fs::write(p, v) {
                eprintln!("could not restore {p} to {v:?}: {e}");
            }
        }
    }
}

/// crashtrace with its stdout in a file and its stderr read by a thread.
struct Tracer {
    child: Child,
    stderr: std::thread::JoinHandle<Vec<String>>,
}

impl Tracer {
    fn start(args: &[&str], out: &PathBuf) -> Tracer {
        let mut child = Command::new(CRASHTRACE)
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(out).expect("create the output file"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crashtrace");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("crashtrace: attached")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        if rx.recv_timeout(Duration::from_secs(90)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("crashtrace did not attach: {:?}", reader.join().unwrap_or_default());
        }
        Tracer { child, stderr: reader }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill({}, {sig})", self.pid());
    }

    fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    }

    fn stop(mut self) -> Vec<String> {
        self.signal(libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for crashtrace") {
                let stderr = self.stderr.join().unwrap_or_default();
                assert!(status.success(), "crashtrace exited with {status}: {stderr:?}");
                return stderr;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("crashtrace did not exit within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Forks `n` children that each set RLIMIT_CORE to 0 and fault on a
/// PROT_NONE page (a real SIGSEGV); reaps them. Returns their pids.
///
/// The children put SIGSEGV back to SIG_DFL first: Rust's runtime installs
/// a SIGSEGV handler (for stack overflows) that returns and lets the fault
/// repeat, which would make each crash two SIGSEGVs, one of them handled.
fn crash_burst(n: u64) -> Vec<u32> {
    // SAFETY: an anonymous private mapping with no access; never unmapped.
    let page = unsafe {
        libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    assert_ne!(page, libc::MAP_FAILED, "mmap a PROT_NONE page");
    let mut pids = Vec::new();
    for _ in 0..n {
        // SAFETY: the child only makes async-signal-safe calls (setrlimit, a
        // store that faults) and never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: valid pointer; the page is mapped PROT_NONE, so the
            // store faults with SIGSEGV (SEGV_ACCERR) and the child dies.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::setrlimit(libc::RLIMIT_CORE, &zero);
                std::ptr::write_volatile(page as *mut u32, 1);
                libc::_exit(0);
            }
        }
        pids.push(pid as u32);
    }
    for &pid in &pids {
        let mut status = 0;
        // SAFETY: our own child; valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid as i32, &mut status, 0) }, pid as i32, "waitpid {pid}");
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
            "child {pid} ended with status {status:#x}, not SIGSEGV"
        );
    }
    pids
}

#[test]
#[ignore = "privileged: needs root, real BPF, crashes processes and changes core_pattern"]
fn ring_buffer_overflow_is_counted_and_reported() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid,
        0,
        "this test needs root (real BPF, /proc/sys writes): run `cargo xtask test` as root"
    );
    let settings = CoreSettings::save(Lock::take());
    let dir = PathBuf::from(format!("/dev/shm/crashtrace-loss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the scratch dir");
    // A file pattern, so RLIMIT_CORE=0 means no dump and no helper.
    std::fs::write(CORE_PATTERN, format!("{}/core.%p", dir.display())).expect("set core_pattern");
    let out = dir.join("out.jsonl");

    let tracer = Tracer::start(&["--json", "--ring-buffer-size", "4096"], &out);
    // Stop the reader and make sure it is stopped before the burst.
    tracer.signal(libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracer.state() != Some('T') {
        assert!(Instant::now() < deadline, "crashtrace did not stop (state {:?})", tracer.state());
        std::thread::sleep(Duration::from_millis(5));
    }
    let pids = crash_burst(BURST);
    tracer.signal(libc::SIGCONT);
    // Let a tick of the live loop read the counters and report.
    std::thread::sleep(Duration::from_millis(500));
    let stderr = tracer.stop();
    drop(settings);

    let text = std::fs::read_to_string(&out).expect("read crashtrace's output");
    let _ = std::fs::remove_dir_all(&dir);
    let ours: std::collections::HashSet<u32> = pids.iter().copied().collect();
    let mut seen_ours: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen_all: BTreeMap<String, u64> = BTreeMap::new();
    let mut lost_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut loss_records = 0;
    let mut lost_in_records = 0;
    let mut summary = None;
    let mut dump_mode = String::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        match v["type"].as_str() {
            Some("header") => dump_mode = v["dump_mode"].as_str().unwrap_or_default().to_string(),
            Some("event") => {
                let kind = v["event"].as_str().unwrap_or("?").to_string();
                *seen_all.entry(kind.clone()).or_default() += 1;
                if v["task"]["tgid"].as_u64().is_some_and(|t| ours.contains(&(t as u32))) {
                    *seen_ours.entry(kind).or_default() += 1;
                }
            }
            Some("loss") => {
                loss_records += 1;
                assert_eq!(v["source"], "kernel", "a kernel loss record: {line}");
                let counts = v["counts"].as_object().unwrap_or_else(|| panic!("loss record without counts: {line}"));
                let sum: u64 = counts.values().map(|n| n.as_u64().expect("counts are numbers")).sum();
                assert_eq!(v["total"].as_u64(), Some(sum), "a loss record's total is the sum of its counts: {line}");
                for (kind, n) in counts {
                    *lost_by_kind.entry(kind.clone()).or_default() += n.as_u64().unwrap_or(0);
                }
                lost_in_records += sum;
            }
            Some("summary") => summary = Some(v),
            _ => {}
        }
    }
    let summary = summary.unwrap_or_else(|| panic!("no summary record; stderr: {stderr:?}"));
    let report = format!(
        "seen (ours) {seen_ours:?}, seen (all) {seen_all:?}, lost {lost_by_kind:?} in {loss_records} loss records, summary {summary}"
    );
    assert!(
        loss_records > 0 && lost_in_records > 0,
        "a one-page ring buffer with a stopped reader lost nothing: {report}"
    );
    assert_eq!(
        summary["lost_kernel"].as_u64(),
        Some(lost_in_records),
        "the summary's lost_kernel is the sum of the loss records: {report}"
    );

    // Kinds the burst makes a known number of. A direct dump hook (not on
    // this machine's kernel, where dumps are inferred) would add dump-start.
    let mut made = vec![("signal-generate", 2 * BURST), ("signal-deliver", BURST), ("process-exit", BURST)];
    if dump_mode != "inferred" {
        made.push(("dump-start", BURST));
    }
    for (kind, n) in made {
        let seen = seen_ours.get(kind).copied().unwrap_or(0);
        let lost = lost_by_kind.get(kind).copied().unwrap_or(0);
        assert!(
            seen + lost >= n,
            "{kind}: {n} made, {seen} seen + {lost} reported lost: some loss went unreported; {report}"
        );
        assert!(
            seen + lost <= n + NOISE_ALLOWANCE,
            "{kind}: {n} made, {seen} seen + {lost} reported lost: more loss reported than there were events; {report}"
        );
    }
    eprintln!("loss accounting: {report}");
}

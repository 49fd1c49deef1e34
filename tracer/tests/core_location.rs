//! Tier 2: `stored` means the core is there. The real crashtrace binary
//! watches real crashes and must say where each core went, or that the
//! collector kept nothing and why.
//!
//! systemd-coredump runs for real: PID 1 on the test host is not systemd, so
//! `systemd-socket-activate --seqpacket --accept` serves
//! /run/systemd/coredump in its place and starts Debian's systemd-coredump
//! per connection, which really stores or discards (it logs to the kernel
//! log, having no journal). Each test holds the machine-wide lock, saves and
//! restores core_pattern, removes the coredump.conf drop-in it writes (under
//! /run/systemd/coredump.conf.d/) and the cores its crashers left.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Crasher, Exclusive, RlimitCore, TempDir, Tracer, CRASHTRACE};
use serde_json::Value;

const SYSTEMD_COREDUMP: &str = "/lib/systemd/systemd-coredump";
const SYSTEMD_PATTERN: &str = "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h %d";
const COREDUMP_SOCKET: &str = "/run/systemd/coredump";
const COREDUMP_DIR: &str = "/var/lib/systemd/coredump";
const DROP_IN_DIR: &str = "/run/systemd/coredump.conf.d";
const DROP_IN: &str = "/run/systemd/coredump.conf.d/90-crashtrace-test.conf";

fn socket_activate_binary() -> PathBuf {
    ["/usr/bin/systemd-socket-activate", "/bin/systemd-socket-activate", "/lib/systemd/systemd-socket-activate"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("systemd-socket-activate is missing: install Debian's systemd package"))
}

/// systemd-socket-activate serving the coredump socket, stopped (and the
/// socket removed) when dropped.
struct SocketActivated {
    child: Child,
}

impl SocketActivated {
    fn start() -> SocketActivated {
        assert!(Path::new(SYSTEMD_COREDUMP).exists(), "{SYSTEMD_COREDUMP} is missing: install Debian's systemd-coredump");
        let _ = std::fs::remove_file(COREDUMP_SOCKET);
        std::fs::create_dir_all("/run/systemd").expect("creating /run/systemd");
        let child = Command::new(socket_activate_binary())
            .args(["--seqpacket", "--accept", "-l", COREDUMP_SOCKET, SYSTEMD_COREDUMP])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting systemd-socket-activate");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(COREDUMP_SOCKET).exists() {
            assert!(Instant::now() < deadline, "systemd-socket-activate did not create {COREDUMP_SOCKET} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        SocketActivated { child }
    }
}

impl Drop for SocketActivated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(COREDUMP_SOCKET);
    }
}

/// A coredump.conf drop-in, removed when dropped.
struct DropIn;

impl DropIn {
    fn write(settings: &str) -> DropIn {
        std::fs::create_dir_all(DROP_IN_DIR).expect("creating the drop-in directory");
        std::fs::write(DROP_IN, format!("[Coredump]\n{settings}\n")).expect("writing the drop-in");
        DropIn
    }
}

impl Drop for DropIn {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(DROP_IN);
    }
}

/// systemd-coredump's files for `pid`, removed when dropped.
struct SystemdCores(Vec<u32>);

impl SystemdCores {
    fn of(pid: u32) -> Vec<PathBuf> {
        let needle = format!(".{pid}.");
        std::fs::read_dir(COREDUMP_DIR)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.file_name().and_then(|n| n.to_str()).map(|n| n.starts_with("core.") && n.contains(&needle)).unwrap_or(false))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for SystemdCores {
    fn drop(&mut self) {
        for pid in &self.0 {
            for p in SystemdCores::of(*pid) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Crashes a `pause` crasher with SIGSEGV; returns its pid.
fn crash(rlimit: RlimitCore, cwd: &Path) -> u32 {
    let mut c = Crasher::spawn("pause", rlimit, cwd);
    c.wait_ready();
    c.kill(libc::SIGSEGV);
    let status = c.wait();
    assert!(!status.success(), "crasher {} exited normally: {status}", c.pid);
    c.pid
}

#[track_caller]
fn show(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Runs one crash under systemd-coredump with `drop_in` settings (none:
/// the defaults); returns the verdict and the crasher's pid.
fn systemd_crash(drop_in: Option<&str>) -> (Value, u32, SystemdCores, Vec<Value>) {
    let _conf = drop_in.map(DropIn::write);
    let _served = SocketActivated::start();
    let tmp = TempDir::new("core-location");
    let mut tracer = Tracer::start(&["--json"]);
    let pid = crash(RlimitCore::Unlimited, tmp.path());
    let cores = SystemdCores(vec![pid]);
    let verdict = tracer.wait_verdict(pid);
    let stopped = tracer.stop();
    stopped.assert_clean_exit();
    (verdict, pid, cores, stopped.records)
}

/// The `core-located` event the tracer logged for `pid`.
fn located_event(records: &[Value], pid: u32) -> Value {
    records
        .iter()
        .find(|r| r["type"] == "event" && r["event"] == "core-located" && r["task"]["tgid"] == pid)
        .cloned()
        .unwrap_or_else(|| panic!("no core-located event for pid {pid}:\n{}", common::tail(records, 20)))
}

#[test]
#[ignore = "needs root: real BPF, core_pattern, systemd-coredump"]
fn systemd_coredump_default_storage_is_stored_with_its_file() {
    common::require_root();
    let ex = Exclusive::take();
    ex.set_core_pattern(SYSTEMD_PATTERN);
    let (v, pid, _cores, records) = systemd_crash(None);
    assert_eq!(v["verdict"], "stored", "{}", show(&v));
    assert_eq!(v["core"]["found_by"], "systemd-coredump-file", "{}", show(&v));
    let path = v["core"]["path"].as_str().unwrap_or_else(|| panic!("no core path: {}", show(&v)));
    assert!(path.starts_with(&format!("{COREDUMP_DIR}/core.crash.")) && path.contains(&format!(".{pid}.")), "{path}");
    let size = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}")).len();
    assert!(size > 0);
    assert_eq!(v["core"]["size"], size, "{}", show(&v));
    assert_eq!(v["core"]["truncated"], false);
    assert!(v["reason"].as_str().unwrap_or("").contains(path), "{}", v["reason"]);
    assert_eq!(located_event(&records, pid)["path"], path);
    eprintln!("systemd-coredump stored {path}: {size} bytes");
}

#[test]
#[ignore = "needs root: real BPF, core_pattern, systemd-coredump"]
fn systemd_coredump_storage_none_is_collector_discarded() {
    common::require_root();
    let ex = Exclusive::take();
    ex.set_core_pattern(SYSTEMD_PATTERN);
    let (v, pid, _cores, _) = systemd_crash(Some("Storage=none"));
    assert_eq!(v["verdict"], "dropped:collector-discarded", "{}", show(&v));
    assert!(SystemdCores::of(pid).is_empty(), "Storage=none stored a core");
    let reason = v["reason"].as_str().unwrap_or("");
    assert!(reason.contains(&format!("Storage=none ({DROP_IN})")), "{reason}");
    assert_eq!(v["core"]["path"], Value::Null);
    assert_eq!(v["core"]["searched"][0], COREDUMP_DIR);
    assert_eq!(v["collector"]["exit_code"], 0, "the collector exits 0 all the same");
}

#[test]
#[ignore = "needs root: real BPF, core_pattern, systemd-coredump"]
fn systemd_coredump_external_size_max_below_the_core_is_collector_discarded() {
    common::require_root();
    let ex = Exclusive::take();
    ex.set_core_pattern(SYSTEMD_PATTERN);
    let (v, pid, _cores, _) = systemd_crash(Some("ExternalSizeMax=4096"));
    assert_eq!(v["verdict"], "dropped:collector-discarded", "{}", show(&v));
    assert!(SystemdCores::of(pid).is_empty(), "a core above ExternalSizeMax was stored");
    let reason = v["reason"].as_str().unwrap_or("");
    // systemd-coredump's own line (kernel log), and the limit by name.
    assert!(reason.contains("is greater than 4096"), "{reason}");
    assert!(reason.contains(&format!("ExternalSizeMax=4096 ({DROP_IN})")), "{reason}");
    eprintln!("ExternalSizeMax=4096: {reason}");
}

#[test]
#[ignore = "needs root: real BPF, core_pattern, systemd-coredump"]
fn systemd_coredump_max_use_exceeded_still_stores_the_new_core() {
    common::require_root();
    let ex = Exclusive::take();
    ex.set_core_pattern(SYSTEMD_PATTERN);
    // An old core that already passes MaxUse=1.
    std::fs::create_dir_all(COREDUMP_DIR).expect("creating the coredump directory");
    let old = PathBuf::from(COREDUMP_DIR).join("core.crashtrace-old.0.00000000000000000000000000000000.1.1000000.zst");
    std::fs::write(&old, vec![0u8; 65536]).expect("writing an old core");
    let (v, pid, _cores, _) = systemd_crash(Some("MaxUse=1"));
    let old_left = old.exists();
    let _ = std::fs::remove_file(&old);
    // Measured on systemd 252: it stores the new core, then vacuums the
    // older ones to get under MaxUse (never the one it just wrote).
    assert_eq!(v["verdict"], "stored", "{}", show(&v));
    let path = v["core"]["path"].as_str().unwrap_or_default().to_string();
    assert!(path.contains(&format!(".{pid}.")), "{}", show(&v));
    assert!(Path::new(&path).exists(), "the core crashtrace named is gone: {path}");
    assert!(!old_left, "systemd-coredump left the old core in place despite MaxUse=1");
}

#[test]
#[ignore = "needs root: real BPF, core_pattern"]
fn file_pattern_is_stored_with_path_and_size_and_report_agrees() {
    common::require_root();
    let ex = Exclusive::take();
    let tmp = TempDir::new("core-location-file");
    ex.set_core_pattern(&format!("{}/core.%e.%p", tmp.path().display()));
    let log = tmp.path().join("crashtrace.log");
    let log_arg = log.display().to_string();
    let mut tracer = Tracer::start(&["--json", "--log", &log_arg]);
    let pid = crash(RlimitCore::Unlimited, tmp.path());
    let v = tracer.wait_verdict(pid);
    tracer.stop().assert_clean_exit();
    let want = tmp.path().join(format!("core.crash.{pid}"));
    let size = std::fs::metadata(&want).unwrap_or_else(|e| panic!("{}: {e}", want.display())).len();
    assert_eq!(v["verdict"], "stored", "{}", show(&v));
    assert_eq!(v["core"]["path"], want.display().to_string(), "{}", show(&v));
    assert_eq!(v["core"]["size"], size);
    assert_eq!(v["core"]["truncated"], false);
    assert_eq!(v["core"]["found_by"], "file-pattern");

    // report rebuilds the chain from the logged events, the lookup included.
    let mut cmd = Command::new(CRASHTRACE);
    cmd.args(["report", "--json", &log_arg]);
    let done = common::run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(done.status.code(), Some(0), "report failed:\n{}", done.stderr);
    let chain: Value = done
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| common::is_verdict_for(r, pid))
        .unwrap_or_else(|| panic!("no chain for {pid} in the report:\n{}", done.stdout));
    assert_eq!(chain["report"]["rebuilt_verdict"], "stored", "{}", show(&chain));
    assert_eq!(chain["core"], v["core"]);
    eprintln!("file pattern: {} bytes at {}", size, want.display());
}

#[test]
#[ignore = "needs root: real BPF, core_pattern"]
fn rlimit_core_below_the_core_is_stored_truncated() {
    common::require_root();
    let ex = Exclusive::take();
    let tmp = TempDir::new("core-location-trunc");
    ex.set_core_pattern(&format!("{}/core.%p", tmp.path().display()));
    let limit = 64 * 1024;
    let mut tracer = Tracer::start(&["--json"]);
    let pid = crash(RlimitCore::Bytes(limit), tmp.path());
    let v = tracer.wait_verdict(pid);
    let stopped = tracer.stop();
    stopped.assert_clean_exit();
    let file = tmp.path().join(format!("core.{pid}"));
    let meta = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let size = meta.len();
    // The kernel skips zero pages with a seek (a sparse file), and only the
    // bytes written count against the limit: the size may pass it, the
    // blocks written may not (a page of slack for the file system).
    use std::os::unix::fs::MetadataExt;
    let written = meta.blocks() * 512;
    assert!(written <= limit + 4096, "a core with {written} bytes written, above RLIMIT_CORE {limit}");
    assert_eq!(v["verdict"], "stored", "{}", show(&v));
    assert_eq!(v["core"]["path"], file.display().to_string());
    assert_eq!(v["core"]["size"], size);
    assert_eq!(v["core"]["truncated"], true, "{}", show(&v));
    eprintln!("RLIMIT_CORE={limit}: a {size}-byte core ({written} bytes written), truncated");
}

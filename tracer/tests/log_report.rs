//! Tier 2 for the event log and `crashtrace report`: the real crashtrace,
//! real BPF, real crashes. Needs root; run serially:
//!
//!     cargo test -p crashtrace --test log_report -- --ignored --test-threads=1
//!
//! (with CRASHTRACE_EBPF_OBJECT set at build time, as `cargo xtask test` does).
//!
//! - a live capture, its log and the report of that log give the same chains
//!   and verdicts, and stored cores are found (or marked unaccounted);
//! - SIGKILL mid-stream leaves a log the report reads, torn tail included;
//! - rotation under a size cap keeps whole, self-contained files;
//! - unsafe log paths are refused;
//! - a full disk (a 64 KiB tmpfs) costs log records, never live output.
//!
//! Every check finds its records by the crasher's pid, because other
//! processes run on the machine too.

mod common;

use std::{
    collections::BTreeMap,
    io::Write,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::{Crasher, Exclusive, Finished, RlimitCore, TempDir, Tracer, CRASHTRACE};
use serde_json::Value;

/// Runs `crashtrace report ARGS` to its end (bounded).
fn report(args: &[&str]) -> Finished {
    let mut cmd = Command::new(CRASHTRACE);
    cmd.arg("report").args(args);
    let done = common::run_bounded(cmd, Duration::from_secs(120));
    assert!(!done.stderr.contains("panicked"), "crashtrace report panicked:\n{}", done.stderr);
    done
}

/// The JSON Lines of a `report --json`, each checked against the schema.
fn records(done: &Finished) -> Vec<Value> {
    common::records_of(&done.stdout)
}

fn of_type<'a>(records: &'a [Value], t: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == t).collect()
}

fn summary(records: &[Value]) -> &Value {
    let s = of_type(records, "report-summary");
    assert_eq!(s.len(), 1, "want one report-summary, got {}", s.len());
    s[0]
}

/// A chain without the report's own annotations: what the tracer printed.
fn bare(chain: &Value) -> Value {
    let mut c = chain.clone();
    c.as_object_mut().expect("a chain is an object").remove("report");
    c
}

/// A record without the fields that place a line (run, sequence, time,
/// host, rotated-file number): what two copies of one record share.
fn unstamped(record: &Value) -> Value {
    let mut r = record.clone();
    let o = r.as_object_mut().expect("a record is an object");
    for k in ["run", "seq", "time", "host", "file"] {
        o.remove(k);
    }
    r
}

/// Crashes `mode` with `rlimit` in `cwd` and reaps it; returns its pid.
fn crash(mode: &str, rlimit: RlimitCore, cwd: &Path) -> u32 {
    let mut c = Crasher::spawn(mode, rlimit, cwd);
    let status = c.wait();
    assert!(!status.success(), "crasher {mode} exited normally: {status}");
    c.pid
}

/// A pause-mode crasher killed with `sig` by this process.
fn killed(sig: i32, cwd: &Path) -> u32 {
    let mut c = Crasher::spawn("pause", RlimitCore::Unlimited, cwd);
    c.wait_ready();
    c.kill(sig);
    c.wait();
    c.pid
}

/// A fake core: an ELF header of type ET_CORE.
fn fake_core(path: &Path) {
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(16, 0);
    elf.extend_from_slice(&4u16.to_le_bytes());
    elf.resize(64, 0);
    std::fs::write(path, elf).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn round_trip_live_log_report() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-log-report");
    let cores = dir.path().join("cores");
    let store = dir.path().join("store");
    std::fs::create_dir(&cores).expect("mkdir cores");
    std::fs::create_dir(&store).expect("mkdir store");
    machine.set_core_pattern(&format!("{}/core.%p", cores.display()));
    let log = dir.path().join("events.jsonl");
    let log_arg = log.display().to_string();

    let mut tracer = Tracer::start(&["--json", "--log", &log_arg]);
    let stored = crash("segv", RlimitCore::Unlimited, dir.path());
    let rlimit = crash("abort", RlimitCore::Bytes(0), dir.path());
    let kill_segv = killed(libc::SIGSEGV, dir.path());
    let term = killed(libc::SIGTERM, dir.path());
    let ours = [(stored, "stored"), (rlimit, "dropped:rlimit-core"), (kill_segv, "stored"), (term, "no-dump")];
    for (pid, _) in ours {
        tracer.wait_verdict(pid);
    }
    let live = tracer.stop();
    live.assert_clean_exit();
    let live_chains: Vec<&Value> = live.records.iter().filter(|r| r["type"] == "verdict").collect();
    for (pid, want) in ours {
        let v = live.verdicts_for(pid);
        assert_eq!(v.len(), 1, "live: one chain for pid {pid}");
        assert_eq!(v[0]["verdict"], want, "live verdict for pid {pid}: {}", v[0]);
    }
    let mode = std::fs::metadata(&log).expect("the log exists");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    // The log holds exactly what was printed live.
    let logged: Vec<Value> = common::records_of(&std::fs::read_to_string(&log).expect("reading the log"));
    assert_eq!(logged, live.records, "the log differs from the live --json output");

    let store_arg = store.display().to_string();
    let done = report(&["--json", "--store", &store_arg, &log_arg]);
    assert_eq!(done.status.code(), Some(0), "report failed:\n{}", done.stderr);
    let recs = records(&done);
    let chains = of_type(&recs, "verdict");
    // Same chains, same verdicts, same evidence as live.
    let live_set: BTreeMap<(u64, u64), Value> =
        live_chains.iter().map(|c| ((c["id"].as_u64().unwrap(), c["first_ts_ns"].as_u64().unwrap()), unstamped(c))).collect();
    let report_set: BTreeMap<(u64, u64), Value> =
        chains.iter().map(|c| ((c["id"].as_u64().unwrap(), c["first_ts_ns"].as_u64().unwrap()), bare(c))).collect();
    assert_eq!(report_set, live_set, "the report's chains differ from the live output");
    for (pid, want) in ours {
        let c = chains.iter().find(|c| common::is_verdict_for(c, pid)).expect("our chain is in the report");
        assert_eq!(c["report"]["source"], "verdict-record");
        // Replaying the logged events alone rebuilds the same verdict.
        assert_eq!(c["report"]["rebuilt_verdict"], want, "replay of pid {pid}: {c}");
    }
    let core_of = |c: &Value| c["report"]["core"].clone();
    let stored_chain = chains.iter().find(|c| common::is_verdict_for(c, stored)).unwrap();
    assert_eq!(core_of(stored_chain)["status"], "found", "{stored_chain}");
    assert_eq!(core_of(stored_chain)["path"], cores.join(format!("core.{stored}")).display().to_string());
    let s = summary(&recs);
    assert_eq!(s["bad_lines"], 0);
    assert_eq!(s["runs"], 1);
    assert_eq!(s["shown_rebuilt_only"], 0, "every chain had its verdict record");

    // The text form shows the same verdicts, one block per chain.
    let text = report(&[&log_arg]);
    assert_eq!(text.status.code(), Some(0));
    for (pid, want) in ours {
        let block = text.stdout.split("━━ ").find(|b| b.contains(&format!("[{pid}] "))).unwrap_or_else(|| {
            panic!("no block for pid {pid} in:\n{}", text.stdout)
        });
        assert!(block.contains(&format!("verdict    {want}")), "pid {pid}:\n{block}");
        assert!(block.contains("   timeline\n"), "pid {pid}:\n{block}");
    }

    // A core that went missing is unaccounted; a core nobody made is orphaned.
    std::fs::remove_file(cores.join(format!("core.{stored}"))).expect("removing the core");
    fake_core(&store.join("core.4000000"));
    let done = report(&["--json", "--store", &store_arg, &log_arg]);
    let recs = records(&done);
    let chains = of_type(&recs, "verdict");
    let stored_chain = chains.iter().find(|c| common::is_verdict_for(c, stored)).unwrap();
    assert_eq!(core_of(stored_chain)["status"], "unaccounted", "{stored_chain}");
    let s = summary(&recs);
    assert!(s["unaccounted"].as_u64().unwrap() >= 1);
    let orphans: Vec<&str> = s["orphaned_cores"].as_array().unwrap().iter().map(|o| o["path"].as_str().unwrap()).collect();
    assert!(orphans.contains(&store.join("core.4000000").to_str().unwrap()), "orphans: {orphans:?}");

    // Filters: by pid, and by verdict.
    let pid_arg = rlimit.to_string();
    let done = report(&["--json", "--pid", &pid_arg, &log_arg]);
    let recs = records(&done);
    let chains = of_type(&recs, "verdict");
    assert!(chains.iter().all(|c| c["crasher"]["tgid"] == rlimit || c["ppid"] == rlimit || c["sender"]["tgid"] == rlimit));
    assert_eq!(chains.iter().filter(|c| common::is_verdict_for(c, rlimit)).count(), 1);
    let done = report(&["--json", "--verdict", "dropped", &log_arg]);
    let recs = records(&done);
    let chains = of_type(&recs, "verdict");
    assert!(chains.iter().any(|c| common::is_verdict_for(c, rlimit)));
    assert!(chains.iter().all(|c| c["verdict"].as_str().unwrap().starts_with("dropped:")));
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn sigkill_mid_stream_then_report() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-log-report");
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let log = dir.path().join("events.jsonl");
    let log_arg = log.display().to_string();

    let mut tracer = Tracer::start(&["--json", "--log", &log_arg]);
    let first = crash("segv", RlimitCore::Unlimited, dir.path());
    tracer.wait_verdict(first);
    // A crash whose exit is in the log, then SIGKILL before its verdict can
    // be decided (the correlator waits 100 ms for late evidence).
    let second = crash("segv", RlimitCore::Unlimited, dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit_logged = format!("\"tgid\":{second},\"comm\":\"crash\"}},\"cgroup_id\"");
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l.contains("\"event\":\"process-exit\"") && l.contains(&exit_logged)) {
            break;
        }
        assert!(Instant::now() < deadline, "the exit of pid {second} never reached the log:\n{text}");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(tracer.pid() as libc::pid_t, libc::SIGKILL) }, 0);
    let killed_run = tracer.stop();
    assert!(!killed_run.status.success(), "crashtrace survived SIGKILL");
    let had_verdict = !killed_run.verdicts_for(second).is_empty();

    let done = report(&["--json", &log_arg]);
    assert_eq!(done.status.code(), Some(0), "report of a killed tracer's log:\n{}", done.stderr);
    let recs = records(&done);
    let chains = of_type(&recs, "verdict");
    for pid in [first, second] {
        let c = chains.iter().find(|c| common::is_verdict_for(c, pid)).unwrap_or_else(|| panic!("no chain for {pid}"));
        assert_eq!(c["verdict"], "stored", "pid {pid}: {c}");
    }
    let second_chain = chains.iter().find(|c| common::is_verdict_for(c, second)).unwrap();
    let want_source = if had_verdict { "verdict-record" } else { "rebuilt" };
    assert_eq!(second_chain["report"]["source"], want_source, "{second_chain}");
    eprintln!("sigkill: the second chain came from a {want_source}");
    let gaps = of_type(&recs, "gap");
    assert_eq!(gaps.last().expect("a gap")["kind"], "no-summary", "gaps: {gaps:?}");

    // A write cut off by the kill: half a record, no newline.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).expect("opening the log");
    f.write_all(b"{\"v\":1,\"type\":\"event\",\"wall_ns\":17957").expect("tearing the log");
    drop(f);
    let lines_before = std::fs::read_to_string(&log).unwrap().lines().count();
    let done = report(&["--json", &log_arg]);
    assert_eq!(done.status.code(), Some(0), "a torn tail is not bad input:\n{}", done.stderr);
    assert!(done.stderr.contains(&format!("{log_arg}:{lines_before}: torn last line")), "{}", done.stderr);
    let recs = records(&done);
    assert_eq!(of_type(&recs, "verdict").len(), chains.len(), "everything before the tear is kept");

    // The next run appends after the torn line, on a line of its own.
    let mut tracer = Tracer::start(&["--json", "--log", &log_arg]);
    let third = crash("segv", RlimitCore::Unlimited, dir.path());
    tracer.wait_verdict(third);
    tracer.stop().assert_clean_exit();
    let done = report(&["--json", &log_arg]);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    assert!(done.stderr.contains(&format!("{log_arg}:{lines_before}: torn record")), "{}", done.stderr);
    let recs = records(&done);
    let s = summary(&recs);
    assert_eq!((s["runs"].as_u64(), s["restarts"].as_u64(), s["torn_lines"].as_u64()), (Some(2), Some(1), Some(1)), "{s}");
    let restart = of_type(&recs, "gap").into_iter().find(|g| g["kind"] == "restart").expect("a restart gap");
    assert!(restart["detail"].as_str().unwrap().contains("ended without a summary record"), "{restart}");
    let chains = of_type(&recs, "verdict");
    for pid in [first, second, third] {
        assert!(chains.iter().any(|c| common::is_verdict_for(c, pid)), "no chain for {pid}");
    }
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn rotation_under_a_size_cap() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-log-report");
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let log = dir.path().join("events.jsonl");
    let log_arg = log.display().to_string();
    let cap = 65536u64;

    let mut tracer = Tracer::start(&["--json", "--log", &log_arg, "--log-max-size", "64K", "--log-keep", "3"]);
    // Every file starts with the header; the cap cannot be kept below it.
    let header_len = std::fs::read_to_string(&log).expect("the log").lines().next().map(str::len).unwrap_or(0) as u64;
    assert!(header_len < cap / 2, "the header record is {header_len} bytes; a {cap}-byte cap cannot show rotation");
    // About 3 KiB of records per crash: enough for four rotations or more.
    let crashes = ((cap - header_len) * 5 / 3072 + 10).min(200);
    let mut pids = Vec::new();
    for _ in 0..crashes {
        let pid = crash("abort", RlimitCore::Bytes(0), dir.path());
        tracer.wait_verdict(pid);
        pids.push(pid);
    }
    let live = tracer.stop();
    live.assert_clean_exit();

    let rotated = |n: u32| PathBuf::from(format!("{log_arg}.{n}"));
    let files = [rotated(3), rotated(2), rotated(1), log.clone()];
    for f in &files {
        let meta = std::fs::metadata(f).unwrap_or_else(|e| panic!("{}: {e} (rotation did not happen)", f.display()));
        assert!(meta.len() <= cap, "{} is {} bytes, over the {cap}-byte cap", f.display(), meta.len());
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600, "{}", f.display());
        let text = std::fs::read_to_string(f).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().expect("not empty")).expect("JSON");
        assert_eq!(first["type"], "header", "{} starts with a header", f.display());
        assert_eq!(unstamped(&first), unstamped(&live.records[0]), "{} starts with this run's header", f.display());
        assert_eq!(first["run"], live.records[0]["run"], "{} is of this run", f.display());
        assert!(text.ends_with('\n'), "{} ends with a whole line", f.display());
    }
    assert!(!rotated(4).exists(), "--log-keep 3 keeps three rotated files");

    let done = report(&["--json", &log_arg]);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    let recs = records(&done);
    let s = summary(&recs);
    assert_eq!((s["files"].as_u64(), s["runs"].as_u64(), s["bad_lines"].as_u64()), (Some(4), Some(1), Some(0)), "{s}");
    // What is left of the run reports as it was shown live; the newest crashes are all there.
    let chains = of_type(&recs, "verdict");
    for c in &chains {
        let pid = c["crasher"]["tgid"].as_u64().unwrap() as u32;
        let live_one = live.verdicts_for(pid);
        if c["report"]["source"] == "verdict-record" {
            assert!(live_one.iter().any(|l| unstamped(l) == bare(c)), "pid {pid}: report and live differ: {c}");
        }
    }
    let last = *pids.last().unwrap();
    let c = chains.iter().find(|c| common::is_verdict_for(c, last)).expect("the newest crash is in the report");
    assert_eq!(c["verdict"], "dropped:rlimit-core");
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn unsafe_log_paths_are_refused() {
    let _machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-log-report");
    let run = |log: &Path| {
        let mut cmd = Command::new(CRASHTRACE);
        cmd.args(["--json", "--duration", "5", "--log"]).arg(log).env_remove("CRASHTRACE_BPF_OBJECT");
        common::run_bounded(cmd, Duration::from_secs(60))
    };
    // A dangling symlink: following it would create the file it names.
    let nowhere = dir.path().join("nowhere");
    let dangling = dir.path().join("dangling.jsonl");
    symlink(&nowhere, &dangling).expect("symlink");
    run(&dangling).assert_usage_error(&["symlink"]);
    assert!(!nowhere.exists(), "crashtrace created the symlink's target");
    // A symlink to a directory.
    let to_dir = dir.path().join("to-dir.jsonl");
    symlink(dir.path(), &to_dir).expect("symlink");
    run(&to_dir).assert_usage_error(&["symlink"]);
    // A file owned by someone else.
    let theirs = dir.path().join("theirs.jsonl");
    std::fs::write(&theirs, "theirs\n").expect("writing");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
    run(&theirs).assert_usage_error(&["owned by uid 65534"]);
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs\n");
    // A FIFO would block the tracer, or feed a reader it does not know.
    let fifo = dir.path().join("fifo.jsonl");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    run(&fifo).assert_usage_error(&["not a regular file"]);
}

/// A tmpfs mounted on a temp dir; unmounted when dropped.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = TempDir::new("crashtrace-full-disk");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(out.status.success(), "mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr));
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let out = Command::new("umount").arg(self.dir.path()).output();
        match out {
            Ok(o) if o.status.success() => {}
            other => eprintln!("umount {} failed ({other:?}); unmount it by hand", self.dir.path().display()),
        }
    }
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn full_disk_costs_log_records_not_live_output() {
    let machine = Exclusive::take();
    let work = TempDir::new("crashtrace-log-report");
    machine.set_core_pattern(&format!("{}/core.%p", work.path().display()));
    let disk = SmallDisk::mount("64k");
    let log = disk.dir.path().join("events.jsonl");
    let log_arg = log.display().to_string();

    let mut tracer = Tracer::start(&["--json", "--log", &log_arg]);
    // Far more than 64 KiB of records: ~25 crashes of ~4 KiB each.
    let mut pids = Vec::new();
    for _ in 0..25 {
        let pid = crash("abort", RlimitCore::Bytes(0), work.path());
        let v = tracer.wait_verdict(pid);
        assert_eq!(v["verdict"], "dropped:rlimit-core", "{v}");
        pids.push(pid);
    }
    let live = tracer.stop();
    let live_summary = live.assert_clean_exit();
    for pid in &pids {
        assert_eq!(live.verdicts_for(*pid).len(), 1, "live output lost the verdict of {pid}");
    }
    let failures = live_summary["log_write_failures"].as_u64().expect("log_write_failures");
    assert!(failures > 0, "the disk never filled: {live_summary}");
    let reported = live.stderr.lines().filter(|l| l.contains("writing log") && l.contains("failed")).count();
    assert_eq!(reported, 1, "the failure is reported exactly once; stderr:\n{}", live.stderr);
    assert!(live.stderr.contains("No space left on device"), "{}", live.stderr);

    // What did fit is whole lines, and reads back.
    let text = std::fs::read(&log).expect("reading the log");
    assert!(text.ends_with(b"\n"), "the log ends mid-line");
    let done = report(&["--json", &log_arg]);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    let recs = records(&done);
    let s = summary(&recs);
    assert_eq!((s["bad_lines"].as_u64(), s["torn_lines"].as_u64()), (Some(0), Some(0)), "{s}");
    let in_log = pids.iter().filter(|p| of_type(&recs, "verdict").iter().any(|c| common::is_verdict_for(c, **p))).count();
    assert!(in_log > 0 && in_log < pids.len(), "{in_log} of {} crashes in the log", pids.len());
    // The summary record did not fit either: the report says the run has none.
    assert_eq!(of_type(&recs, "gap").last().expect("a gap")["kind"], "no-summary");
    drop(disk);
}

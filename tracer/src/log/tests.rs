use std::os::unix::fs::{MetadataExt, PermissionsExt};

use clap::Parser;

use super::*;
use crate::{
    cli::Cli,
    core_pattern::CoreSettings,
    event::{Event, Proc},
    record::{EventRecord, Header, Line, Summary},
};

/// A fresh directory under the target dir's temp area, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("crashtrace-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn header() -> Record {
    Record::Header(Header {
        tracer_version: "0.1.0".into(),
        kernel: "6.18.0".into(),
        hostname: "vm".into(),
        boot_id: "b".into(),
        start_wall_ns: 1_000,
        start_mono_ns: 10,
        dump_mode: "inferred".into(),
        dump_mode_reason: "test".into(),
        hooks: vec![],
        core_settings: None,
        watched_pid: None,
    })
}

fn settings_event(pattern: &str) -> Record {
    Record::Event(EventRecord {
        chain: None,
        wall_ns: 2_000,
        event: Event {
            ts_ns: 20,
            cpu: 0,
            task: Proc::default(),
            cgroup_id: 0,
            body: Body::CoreSettings(CoreSettings {
                core_pattern: pattern.into(),
                core_pipe_limit: 0,
                core_uses_pid: false,
                helper_executable: None,
                set_by: None,
            }),
        },
    })
}

fn fork_event(n: u32) -> Record {
    Record::Event(EventRecord {
        chain: None,
        wall_ns: 3_000 + n as u64,
        event: Event {
            ts_ns: 30 + n as u64,
            cpu: 0,
            task: Proc { pid: 7, tgid: 7, comm: "padding-padding".into() },
            cgroup_id: 1,
            body: Body::ProcessFork { child: n },
        },
    })
}

fn write(w: &mut LogWriter, r: Record) {
    let json = Line::new(r.clone()).to_json();
    w.write_record(&r, &json);
}

fn lines(path: &Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            crate::schema_check::check_line(l);
            serde_json::from_str::<Line>(l).unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", path.display()))
        })
        .collect()
}

#[test]
fn creates_0600_and_appends_whole_lines() {
    let dir = TempDir::new("create");
    let path = dir.path("log.jsonl");
    let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
    write(&mut w, header());
    write(&mut w, fork_event(1));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    drop(w);
    // A second run appends.
    let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
    write(&mut w, header());
    let got = lines(&path);
    assert_eq!(got.len(), 3);
    assert!(matches!(got[0].record, Record::Header(_)));
    assert!(matches!(got[2].record, Record::Header(_)));
    assert_eq!(w.failures, 0);
}

#[test]
fn refuses_symlink() {
    let dir = TempDir::new("symlink");
    let target = dir.path("target");
    std::fs::write(&target, "keep\n").unwrap();
    let link = dir.path("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = LogWriter::open(&link, LogOptions::default()).err().expect("a symlink must be refused");
    assert!(matches!(err, LogError::Symlink { .. }), "{err}");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
    // A dangling symlink too (O_CREAT would otherwise create its target).
    let dangling = dir.path("dangling.jsonl");
    std::os::unix::fs::symlink(dir.path("nowhere"), &dangling).unwrap();
    assert!(matches!(LogWriter::open(&dangling, LogOptions::default()), Err(LogError::Symlink { .. })));
    assert!(!dir.path("nowhere").exists());
}

#[test]
fn refuses_non_regular_file() {
    let dir = TempDir::new("fifo");
    let fifo = dir.path("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(matches!(LogWriter::open(&fifo, LogOptions::default()), Err(LogError::NotRegular { .. })));
    assert!(matches!(LogWriter::open(&dir.0, LogOptions::default()), Err(LogError::NotRegular { .. })));
}

#[test]
fn refuses_file_owned_by_someone_else() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Only root can give a file away; as another user, check the other
        // direction: a root-owned file is not ours.
        let err = LogWriter::open(Path::new("/etc/passwd"), LogOptions::default()).err().expect("refused");
        assert!(matches!(err, LogError::NotOwned { .. } | LogError::Open { .. }), "{err}");
        return;
    }
    let dir = TempDir::new("owner");
    let path = dir.path("theirs.jsonl");
    std::fs::write(&path, "").unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let err = LogWriter::open(&path, LogOptions::default()).err().expect("refused");
    assert!(matches!(err, LogError::NotOwned { owner: 65534, .. }), "{err}");
    assert!(err.to_string().contains("owned by uid 65534"), "{err}");
}

#[test]
fn sync_policy_decides_which_records_are_synced() {
    let dir = TempDir::new("sync");
    for (policy, want) in [(SyncPolicy::Verdict, 2), (SyncPolicy::Event, 5), (SyncPolicy::None, 0)] {
        let path = dir.path(&format!("{policy:?}.jsonl"));
        let mut w = LogWriter::open(&path, LogOptions { sync: policy, ..LogOptions::default() }).unwrap();
        write(&mut w, header());
        write(&mut w, fork_event(1));
        write(&mut w, fork_event(2));
        write(&mut w, fork_event(3));
        write(&mut w, Record::Summary(Summary::default()));
        assert_eq!(w.syncs, want, "{policy:?}");
    }
}

#[test]
fn rotation_names_keep_and_preamble() {
    let dir = TempDir::new("rotate");
    let path = dir.path("log.jsonl");
    let max = 4096;
    let mut w = LogWriter::open(&path, LogOptions { sync: SyncPolicy::None, max_size: Some(max), keep: 2, ..Default::default() }).unwrap();
    write(&mut w, header());
    write(&mut w, settings_event("/tmp/core.%p"));
    for n in 0..200 {
        write(&mut w, fork_event(n));
    }
    write(&mut w, settings_event("|/bin/false"));
    for n in 200..400 {
        write(&mut w, fork_event(n));
    }
    assert_eq!(w.failures, 0);
    assert!(w.rotations >= 4, "{} rotations", w.rotations);
    assert_eq!(rotated_path(&path, 1), dir.path("log.jsonl.1"));
    assert!(path.exists() && dir.path("log.jsonl.1").exists() && dir.path("log.jsonl.2").exists());
    assert!(!dir.path("log.jsonl.3").exists(), "keep=2 keeps two rotated files");
    let mut last_child = None;
    for p in [dir.path("log.jsonl.2"), dir.path("log.jsonl.1"), path.clone()] {
        assert!(std::fs::metadata(&p).unwrap().len() <= max, "{} is over the cap", p.display());
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let got = lines(&p);
        assert!(matches!(got[0].record, Record::Header(_)), "{} starts with a header", p.display());
        // The latest settings follow the header, so the file replays alone.
        match &got[1].record {
            Record::Event(e) => match &e.event.body {
                Body::CoreSettings(s) => assert_eq!(s.core_pattern, "|/bin/false"),
                other => panic!("{}: second record {other:?}", p.display()),
            },
            other => panic!("{}: second record {other:?}", p.display()),
        }
        // Oldest first: the fork children keep growing across the set.
        for l in &got[2..] {
            if let Record::Event(e) = &l.record
                && let Body::ProcessFork { child } = e.event.body
            {
                assert!(last_child.map(|c| child == c + 1).unwrap_or(true), "{child} after {last_child:?}");
                last_child = Some(child);
            }
        }
    }
    assert_eq!(last_child, Some(399));
}

#[test]
fn rotation_with_keep_zero_starts_over() {
    let dir = TempDir::new("keep0");
    let path = dir.path("log.jsonl");
    let mut w = LogWriter::open(&path, LogOptions { sync: SyncPolicy::None, max_size: Some(4096), keep: 0, ..Default::default() }).unwrap();
    write(&mut w, header());
    for n in 0..100 {
        write(&mut w, fork_event(n));
    }
    assert!(w.rotations > 0);
    assert!(!dir.path("log.jsonl.1").exists());
    let got = lines(&path);
    assert!(matches!(got[0].record, Record::Header(_)));
}

#[test]
fn a_record_larger_than_the_cap_does_not_rotate_forever() {
    let dir = TempDir::new("huge");
    let path = dir.path("log.jsonl");
    let mut w = LogWriter::open(&path, LogOptions { sync: SyncPolicy::None, max_size: Some(4096), keep: 1, ..Default::default() }).unwrap();
    write(&mut w, header());
    let big = format!("{{\"v\":1,\"type\":\"x\",\"pad\":\"{}\"}}", "a".repeat(10_000));
    w.write_line(&big);
    w.write_line(&big);
    assert_eq!(w.failures, 0);
    assert_eq!(w.rotations, 2);
}

#[test]
fn a_torn_last_line_is_ended_before_appending() {
    let dir = TempDir::new("torn");
    let path = dir.path("log.jsonl");
    std::fs::write(&path, "{\"v\":1,\"type\":\"event\",\"wall_").unwrap();
    let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
    write(&mut w, header());
    let text = std::fs::read_to_string(&path).unwrap();
    let mut it = text.lines();
    assert_eq!(it.next(), Some("{\"v\":1,\"type\":\"event\",\"wall_"));
    let second: Line = serde_json::from_str(it.next().unwrap()).unwrap();
    assert!(matches!(second.record, Record::Header(_)));
}

#[test]
fn write_failures_are_counted_and_output_goes_on() {
    // /dev/full fails every write with ENOSPC, like a full disk.
    let file = OpenOptions::new().append(true).open("/dev/full").unwrap();
    let mut w = LogWriter::with_file("/dev/full".into(), LogOptions::default(), file, 0);
    for n in 0..5 {
        write(&mut w, fork_event(n));
    }
    assert_eq!(w.failures, 5);
    assert_eq!(w.errors.write, 5);
    assert!(w.reported.write);
    assert!(w.fatal().is_none(), "keep-tracing is the default");
}

#[test]
fn a_full_disk_stops_the_tracer_if_told_to() {
    let file = OpenOptions::new().append(true).open("/dev/full").unwrap();
    let opts = LogOptions { full: FullPolicy::Stop, ..LogOptions::default() };
    let mut w = LogWriter::with_file("/dev/full".into(), opts, file, 0);
    write(&mut w, fork_event(1));
    let why = w.fatal().expect("a full disk with --log-full=stop is fatal");
    assert!(why.contains("--log-full"), "{why}");
}

#[test]
fn records_lost_while_the_disk_was_full_are_said_in_band_when_it_frees() {
    let dir = TempDir::new("refill");
    let path = dir.path("log.jsonl");
    let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
    write(&mut w, header());
    // The disk fills: the file is swapped for /dev/full under the writer.
    let good = w.file.replace(OpenOptions::new().append(true).open("/dev/full").unwrap());
    for n in 0..3 {
        write(&mut w, fork_event(n));
    }
    w.file = good;
    write(&mut w, fork_event(3));
    let got = lines(&path);
    assert_eq!(got.len(), 3, "header, the loss note, the record");
    match &got[1].record {
        Record::Loss(l) => {
            assert_eq!(l.source, "log");
            assert_eq!(l.total, 3);
            assert_eq!(l.counts.get("unwritten"), Some(&3));
        }
        other => panic!("expected a loss record, got {other:?}"),
    }
}

#[test]
fn a_failed_rotation_backs_off_and_keeps_the_cap() {
    let dir = TempDir::new("norotate");
    let path = dir.path("log.jsonl");
    // PATH.1 is a non-empty directory: renaming the log onto it fails.
    std::fs::create_dir_all(dir.path("log.jsonl.1/x")).unwrap();
    let max = 4096;
    let mut w = LogWriter::open(&path, LogOptions { sync: SyncPolicy::None, max_size: Some(max), keep: 1, ..Default::default() }).unwrap();
    write(&mut w, header());
    for n in 0..2000 {
        write(&mut w, fork_event(n));
    }
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len <= max, "the file grew to {len} bytes past the {max}-byte cap");
    let headers = lines(&path).iter().filter(|l| matches!(l.record, Record::Header(_))).count();
    assert_eq!(headers, 1, "a failed rotation appends no header copy");
    // Backed off: far fewer tries than records, and each kind reported once.
    assert!(w.errors.rotate >= 1 && w.errors.rotate < 20, "{} rotation tries", w.errors.rotate);
    assert!(w.dropped > 1900, "{} dropped", w.dropped);
    assert_eq!(w.failures, w.dropped);
    // The way clears: the next try rotates, and the new file says what was dropped.
    std::fs::remove_dir_all(dir.path("log.jsonl.1")).unwrap();
    for n in 2000..10_000 {
        write(&mut w, fork_event(n));
        if w.rotations > 0 {
            break;
        }
    }
    assert_eq!(w.rotations, 1);
    let got = lines(&path);
    assert!(matches!(got[0].record, Record::Header(_)));
    let note = got.iter().find_map(|l| match &l.record {
        Record::Loss(l) => Some(l.clone()),
        _ => None,
    });
    let note = note.expect("a loss record says what was dropped");
    assert_eq!(note.source, "log");
    assert!(note.counts.get("over-cap").copied().unwrap_or(0) > 1900, "{note:?}");
}

#[test]
fn the_directory_is_synced_after_create_and_rotation() {
    let dir = TempDir::new("dirsync");
    let path = dir.path("log.jsonl");
    let w = LogWriter::open(&path, LogOptions { sync: SyncPolicy::Verdict, max_size: Some(4096), keep: 1, ..Default::default() }).unwrap();
    assert_eq!(w.dir_syncs, 1, "a new file's name is durable only once its directory is");
    drop(w);
    // An existing file: nothing new in the directory.
    let mut w = LogWriter::open(&path, LogOptions { sync: SyncPolicy::Verdict, max_size: Some(4096), keep: 1, ..Default::default() }).unwrap();
    assert_eq!(w.dir_syncs, 0);
    write(&mut w, header());
    for n in 0..100 {
        write(&mut w, fork_event(n));
    }
    assert!(w.rotations > 0);
    assert_eq!(w.dir_syncs, w.rotations, "one directory sync per rotation, after the new file");
}

#[test]
fn cli_log_flags() {
    let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("crashtrace").chain(args.iter().copied()));
    let cli = parse(&["--log", "/tmp/x", "--log-sync", "event", "--log-max-size", "10M", "--log-keep", "3"]).unwrap();
    let live = cli.live_args().unwrap();
    assert_eq!(live.log_sync, SyncPolicy::Event);
    assert_eq!(live.log_max_size, Some(10 << 20));
    assert_eq!(live.log_keep, 3);
    let cli = parse(&["--log", "/tmp/x"]).unwrap();
    let live = cli.live_args().unwrap();
    assert_eq!(live.log_sync, SyncPolicy::Verdict);
    assert_eq!(live.log_max_size, None);
    assert_eq!(live.log_keep, DEFAULT_KEEP);
    assert!(parse(&["--log", "/tmp/x", "--log-sync", "sometimes"]).is_err());
    assert!(parse(&["--log", "/tmp/x", "--log-max-size", "100"]).is_err(), "below the minimum");
    assert!(parse(&["--log-max-size", "1M"]).is_err(), "a cap needs a log");
}

#[test]
fn sizes() {
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("64k"), Ok(65536));
    assert_eq!(parse_size("2G"), Ok(2 << 30));
    assert!(parse_size("").is_err());
    assert!(parse_size("K").is_err());
    assert!(parse_size("-5M").is_err());
    assert!(parse_size("99999999999999999999G").is_err());
    assert!(parse_size("18014398509481984K").is_err(), "overflow");
}

#[test]
fn rotated_files_start_with_their_own_bytes_and_records_carry_their_identity() {
    let dir = TempDir::new("ident");
    let path = dir.path("log.jsonl");
    let mut w = LogWriter::open(&path, LogOptions { sync: SyncPolicy::None, max_size: Some(4096), keep: 3, ..Default::default() }).unwrap();
    let mut stamp = crate::record::Stamp::new("ab".repeat(16), crate::record::Host { name: "vm".into(), boot: "b".into(), machine: "m".into() });
    for r in std::iter::once(header()).chain(std::iter::once(settings_event("/tmp/core"))).chain((0..300).map(fork_event)) {
        let line = stamp.line(r.clone(), 1_779_235_200_000_000_001);
        w.write_record(&r, &line.to_json());
    }
    assert!(w.rotations >= 3, "{} rotations", w.rotations);
    let files = [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2), rotated_path(&path, 3)];
    let heads: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).unwrap().into_iter().take(1024).collect())
        .collect();
    for (i, a) in heads.iter().enumerate() {
        for b in &heads[i + 1..] {
            assert_ne!(a, b, "two files of the set start with the same KiB");
        }
    }
    let mut last_seq = None;
    for p in files.iter().rev() {
        for l in lines(p) {
            assert_eq!(l.run.as_deref(), Some("abababababababababababababababab"));
            assert_eq!(l.time.as_deref(), Some("2026-05-20T00:00:00.000000001Z"));
            assert_eq!(l.host.as_ref().map(|h| h.machine.as_str()), Some("m"));
            // Copies at the start of a file say so; the rest count up by one.
            if l.file.is_none() {
                let seq = l.seq.unwrap();
                assert!(last_seq.is_none_or(|s| seq == s + 1), "{seq} after {last_seq:?}");
                last_seq = Some(seq);
            }
        }
    }
    assert_eq!(last_seq, Some(301));
}

/// The first KiB of each file, as log shippers fingerprint them.
fn heads(files: &[PathBuf]) -> Vec<Vec<u8>> {
    files.iter().map(|p| std::fs::read(p).unwrap().into_iter().take(1024).collect()).collect()
}

#[test]
fn files_reopened_after_logrotate_start_with_their_own_bytes() {
    let dir = TempDir::new("reopen-heads");
    let path = dir.path("log.jsonl");
    let mut w = LogWriter::open(&path, LogOptions { sync: SyncPolicy::None, ..Default::default() }).unwrap();
    let mut stamp = crate::record::Stamp::new("cd".repeat(16), crate::record::Host { name: "vm".into(), boot: "b".into(), machine: "m".into() });
    // A header longer than a KiB, as a real one with its hooks is: the
    // copy at the start of each file fills the whole fingerprint.
    let mut long = header();
    if let Record::Header(h) = &mut long {
        h.dump_mode_reason = "x".repeat(1500);
    }
    let mut put = |w: &mut LogWriter, r: Record| {
        let line = stamp.line(r, 1_779_235_200_000_000_001);
        w.write_line_of(&line, &line.to_json());
    };
    put(&mut w, long);
    put(&mut w, fork_event(0));
    // logrotate renames the file away and sends SIGHUP, twice.
    let mut files = Vec::new();
    for n in 1..=2 {
        let away = dir.path(&format!("log.jsonl.{n}"));
        std::fs::rename(&path, &away).unwrap();
        files.push(away);
        assert!(w.reopen_path().unwrap(), "a renamed-away log is followed by a new file");
        put(&mut w, fork_event(n));
    }
    files.push(path.clone());
    let heads = heads(&files);
    assert!(heads.iter().all(|h| h.len() == 1024), "each file holds more than a KiB");
    for (i, a) in heads.iter().enumerate() {
        for (j, b) in heads.iter().enumerate().skip(i + 1) {
            assert!(a != b, "{} and {} start with the same KiB: {}…", files[i].display(), files[j].display(), String::from_utf8_lossy(&a[..80]));
        }
    }
    // The copies say which file of the run they open.
    let numbers: Vec<Option<u64>> = files.iter().map(|p| lines(p)[0].file).collect();
    assert_eq!(numbers, [None, Some(1), Some(2)]);
}

#[test]
fn the_writers_own_loss_notes_carry_the_runs_identity() {
    let dir = TempDir::new("note-identity");
    let path = dir.path("log.jsonl");
    let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
    let mut stamp = crate::record::Stamp::new("ef".repeat(16), crate::record::Host { name: "vm".into(), boot: "b".into(), machine: String::new() });
    let mut put = |w: &mut LogWriter, r: Record| {
        let line = stamp.line(r, 1_779_235_200_000_000_001);
        w.write_line_of(&line, &line.to_json());
    };
    put(&mut w, header());
    let good = w.file.replace(OpenOptions::new().append(true).open("/dev/full").unwrap());
    put(&mut w, fork_event(0));
    w.file = good;
    put(&mut w, fork_event(1));
    let got = lines(&path);
    assert!(matches!(got[1].record, Record::Loss(_)), "{:?}", got[1]);
    let note = &got[1];
    assert_eq!(note.run.as_deref(), Some("efefefefefefefefefefefefefefefef"));
    assert_eq!(note.host.as_ref().map(|h| h.name.as_str()), Some("vm"));
    assert!(note.time.as_ref().is_some_and(|t| t.ends_with('Z')), "{:?}", note.time);
    // Not one of the run's records: no sequence number to leave a gap.
    assert_eq!(note.seq, None);
    assert_eq!(got[2].seq, Some(2));
}

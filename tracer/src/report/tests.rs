use std::{
    io::{Cursor, Read},
    path::PathBuf,
};

use serde_json::Value;

use super::*;

const FIXTURES: [&str; 8] = [
    "bin-false",
    "file-stored",
    "handled-reraise",
    "kill-segv",
    "missing-helper",
    "rlimit-core",
    "sigkill",
    "systemd-no-pid1",
];

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.jsonl"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn opts() -> Options {
    Options {
        pid: None,
        since_ns: None,
        until_ns: None,
        verdict: None,
        json: true,
        strict: false,
        color: false,
        systemd_dir: None,
        stores: Vec::new(),
        list: false,
        fail_on_drop: false,
        container: None,
        unit: None,
    }
}

/// What a report printed and said.
struct Ran {
    records: Vec<Value>,
    text: String,
    stderr: String,
    totals: Totals,
    stopped: bool,
}

impl Ran {
    fn of_type(&self, t: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r["type"] == t).collect()
    }

    fn verdicts(&self) -> Vec<(u64, String)> {
        let mut v: Vec<(u64, String)> = self
            .of_type("verdict")
            .iter()
            .map(|c| (c["crasher"]["tgid"].as_u64().unwrap(), c["verdict"].as_str().unwrap_or("unknown").to_string()))
            .collect();
        v.sort();
        v
    }
}

/// Runs a report over in-memory files, each its own log set.
fn report(opts: Options, files: &[(&str, &[u8])]) -> Ran {
    let json = opts.json;
    let mut r = Report::new(opts, Vec::new(), Vec::new());
    let mut stopped = false;
    for (name, bytes) in files {
        r.begin_set();
        if r.read(name, Cursor::new(bytes.to_vec())).unwrap() {
            stopped = true;
            break;
        }
    }
    let totals = if stopped { r.totals().clone() } else { r.finish().unwrap().totals };
    let text = String::from_utf8(r.out.clone()).unwrap();
    let records = if json {
        text.lines()
            .map(|l| {
                // Every line `report --json` prints is a record the schema describes.
                crate::schema_check::check_line(l);
                serde_json::from_str(l).unwrap_or_else(|e| panic!("report printed bad JSON {l:?}: {e}"))
            })
            .collect()
    } else {
        Vec::new()
    };
    Ran { records, text, stderr: String::from_utf8(r.err.clone()).unwrap(), totals, stopped }
}

fn recorded_verdicts(text: &str) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .filter_map(|l| match l.record {
            Record::Verdict(c) => Some((c.crasher.tgid as u64, c.verdict.unwrap().as_str().to_string())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn kind(line: &str) -> String {
    let l: Line = serde_json::from_str(line).unwrap();
    match l.record {
        Record::Event(e) => e.event.body.name().to_string(),
        Record::Header(_) => "header".into(),
        Record::Verdict(_) => "verdict".into(),
        Record::Loss(_) => "loss".into(),
        Record::Summary(_) => "summary".into(),
        Record::Watched(_) => "watched".into(),
        Record::Heartbeat(_) => "heartbeat".into(),
    }
}

/// The fixture without records of these kinds (record types, or event kinds).
fn without(text: &str, kinds: &[&str]) -> String {
    text.lines().filter(|l| !kinds.contains(&kind(l).as_str())).map(|l| format!("{l}\n")).collect()
}

fn without_verdicts(text: &str) -> String {
    without(text, &["verdict"])
}

/// Line number (1-based) of the first record of this kind.
fn line_of(text: &str, k: &str) -> usize {
    text.lines().position(|l| kind(l) == k).unwrap() + 1
}

#[test]
fn fixtures_give_their_recorded_verdicts() {
    for name in FIXTURES {
        let text = fixture(name);
        let want = recorded_verdicts(&text);
        assert!(!want.is_empty(), "{name} has verdict records");
        let ran = report(opts(), &[(name, text.as_bytes())]);
        assert_eq!(ran.verdicts(), want, "{name}");
        assert_eq!(ran.totals.bad_lines, 0, "{name}: {}", ran.stderr);
        for c in ran.of_type("verdict") {
            assert_eq!(c["report"]["source"], "verdict-record", "{name}");
        }
        assert_eq!(ran.of_type("run").len(), 1, "{name}");
        assert_eq!(ran.of_type("run")[0]["header"]["hostname"], "vm");
        assert!(ran.of_type("gap").is_empty(), "{name}: {:?}", ran.of_type("gap"));

        // Without header, settings and summary, the verdict records still
        // hold; the run is announced as one without a header.
        let bare = without(&text, &["header", "core-settings", "summary"]);
        let ran = report(opts(), &[(name, bare.as_bytes())]);
        assert_eq!(ran.verdicts(), want, "{name}: headerless");
        assert_eq!(ran.of_type("run").len(), 1, "{name}");
        assert!(ran.of_type("run")[0]["header"].is_null());
    }
}

#[test]
fn replayed_events_give_the_live_verdicts() {
    // Replaying the events alone must rebuild what the tracer decided live.
    for name in FIXTURES {
        let text = fixture(name);
        let want = recorded_verdicts(&text);
        let ran = report(opts(), &[(name, text.as_bytes())]);
        for c in ran.of_type("verdict") {
            assert_eq!(c["report"]["rebuilt_verdict"], c["verdict"], "{name}: the replay differs: {c}");
        }
        assert_eq!(ran.totals.shown_rebuilt_differs, 0, "{name}");

        let events_only = without_verdicts(&text);
        let ran = report(opts(), &[(name, events_only.as_bytes())]);
        assert_eq!(ran.verdicts(), want, "{name}: rebuilt from events alone");
        for c in ran.of_type("verdict") {
            assert_eq!(c["report"]["source"], "rebuilt", "{name}");
        }
        assert_eq!(ran.totals.shown_rebuilt_only as usize, want.len());
    }
}

#[test]
fn a_rebuild_without_core_settings_says_so() {
    let text = without(&fixture("systemd-no-pid1"), &["header", "core-settings", "verdict"]);
    let ran = report(opts(), &[("f", text.as_bytes())]);
    let chains = ran.of_type("verdict");
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0]["verdict"], "unknown");
    assert_eq!(chains[0]["missing"], "core-settings");
}

#[test]
fn text_output_has_timelines_sources_and_summary() {
    let text = fixture("systemd-no-pid1");
    let mut o = opts();
    o.json = false;
    let ran = report(o, &[("systemd.jsonl", text.as_bytes())]);
    let out = &ran.text;
    assert!(out.contains("━━ crash #1: crash[") && out.contains("] SIGSEGV (SEGV_MAPERR at 0x0, fault)"), "{out}");
    assert!(out.contains("verdict    dropped:collector-unreachable-pid1"), "{out}");
    let at = format!("source     verdict record (systemd.jsonl:{})", line_of(&text, "verdict"));
    assert!(out.contains(&at), "{out}");
    assert!(out.contains("   timeline\n"), "{out}");
    assert!(out.contains("━━ summary"), "{out}");
    assert!(out.contains("dropped:collector-unreachable-pid1"));
    let row = out.lines().find(|l| l.trim_start().starts_with("SIGSEGV")).expect("a table row");
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["SIGSEGV", "crash", "1", "dropped:collector-unreachable-pid1", "1"]);
    assert!(out.contains("1 of them were reported \"core dumped\" by the kernel"), "{out}");
}

#[test]
fn a_torn_last_line_is_reported_and_the_rest_kept() {
    let text = fixture("systemd-no-pid1");
    let lines: Vec<&str> = text.lines().collect();
    // The tracer died while writing the verdict: half a line, no newline.
    let v = line_of(&text, "verdict");
    let last = lines[v - 1];
    let torn = format!("{}\n{}", lines[..v - 1].join("\n"), &last[..last.len() / 2]);
    let ran = report(opts(), &[("torn.jsonl", torn.as_bytes())]);
    assert_eq!(ran.totals.torn_lines, 1);
    assert_eq!(ran.totals.bad_lines, 0, "a torn last line is not bad input");
    assert!(ran.stderr.contains(&format!("torn.jsonl:{v}: torn last line")), "{}", ran.stderr);
    assert_eq!(ran.of_type("gap").iter().filter(|g| g["kind"] == "torn").count(), 1);
    // The chain is still there, rebuilt from the events before the tear.
    let chains = ran.of_type("verdict");
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0]["report"]["source"], "rebuilt");
    assert_eq!(chains[0]["verdict"], "dropped:collector-unreachable-pid1");
    // And the run is known to have ended without its summary.
    assert_eq!(ran.of_type("gap").last().unwrap()["kind"], "no-summary");

    // Torn inside a multi-byte character.
    let mut bytes = lines[..v - 1].join("\n").into_bytes();
    bytes.extend_from_slice(b"\n{\"v\":1,\"type\":\"event\",\"x\":\"\xc3");
    let ran = report(opts(), &[("utf8.jsonl", &bytes)]);
    assert_eq!((ran.totals.torn_lines, ran.totals.bad_lines), (1, 0), "{}", ran.stderr);
}

#[test]
fn bad_input_is_reported_with_file_and_line_and_skipped() {
    let text = fixture("file-stored");
    let lines: Vec<&str> = text.lines().collect();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(format!("{}\n", lines[0]).as_bytes());
    bytes.extend_from_slice(b"this is not json\n"); // 2
    bytes.extend_from_slice(b"\x00\x01\xff\xfe binary\x89PNG\n"); // 3
    bytes.extend_from_slice(b"{\"v\":2,\"type\":\"event\",\"future\":true}\n"); // 4
    bytes.extend_from_slice(b"{\"v\":1,\"type\":\"telemetry\"}\n"); // 5
    bytes.extend_from_slice(b"{\"type\":\"event\"}\n"); // 6
    bytes.extend_from_slice(b"\n"); // 7
    bytes.extend_from_slice(format!("{{\"v\":1,\"type\":\"event\",\"pad\":\"{}\"}}\n", "x".repeat(MAX_LINE + 10)).as_bytes()); // 8
    bytes.extend_from_slice(b"{\"v\":1,\"type\":\"event\",\"wall_ns\":\"soon\"}\n"); // 9
    bytes.extend_from_slice(b"[1,2,3]\n"); // 10
    bytes.extend_from_slice(b"{\"v\":1,\"type\":\"event\",\"wall_ns\":1\n"); // 11: cut, then the next run's header
    bytes.extend_from_slice(format!("{}\n", lines[0]).as_bytes()); // 12
    bytes.extend_from_slice(b"{\"v\":1,\"type\":\"event\",\"wall_ns\":1\n"); // 13: cut mid-file, no header after: bad
    for l in &lines[1..] {
        bytes.extend_from_slice(format!("{l}\n").as_bytes());
    }
    let ran = report(opts(), &[("bad.jsonl", &bytes), ("empty.jsonl", b"")]);
    let err = &ran.stderr;
    for (line, what) in [
        (2, "not a JSON record"),
        (3, "not UTF-8 text"),
        (4, "schema version 2, but this crashtrace reads version 1"),
        (5, "unknown record type \"telemetry\""),
        (6, "no schema version"),
        (7, "empty line"),
        (8, "line of 1048617 bytes is longer than the 1048576-byte limit"),
        (9, "bad event record"),
        (10, "not a JSON record"),
    ] {
        let want = format!("bad.jsonl:{line}: {what}");
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("empty.jsonl:1: empty file"), "{err}");
    // A record cut off mid-write, then ended by the next run: torn, not bad.
    assert!(err.contains("bad.jsonl:11: torn record"), "{err}");
    assert!(err.contains("bad.jsonl:13: truncated record"), "{err}");
    assert_eq!(ran.totals.torn_lines, 1);
    assert_eq!(ran.totals.bad_lines, 11);
    assert_eq!(ran.verdicts(), recorded_verdicts(&text), "the good lines still count");
    assert!(!ran.stopped);
}

#[test]
fn strict_stops_at_the_first_bad_line() {
    let text = fixture("file-stored");
    let bad = format!("{}garbage\n{}", text.lines().next().unwrap().to_string() + "\n", text);
    let mut o = opts();
    o.strict = true;
    let ran = report(o, &[("bad.jsonl", bad.as_bytes())]);
    assert!(ran.stopped);
    assert_eq!(ran.totals.bad_lines, 1);
    assert!(ran.stderr.contains("bad.jsonl:2: not a JSON record"), "{}", ran.stderr);
    assert!(ran.stderr.contains("stopping (--strict)"));
}

/// `len` bytes of 'a' with no newline, then `tail`: made on the fly, so a
/// huge line costs the test no memory either.
struct HugeLine {
    left: u64,
    tail: Cursor<Vec<u8>>,
}

impl Read for HugeLine {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return self.tail.read(buf);
        }
        let n = (buf.len() as u64).min(self.left) as usize;
        buf[..n].fill(b'a');
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn a_huge_line_is_skipped_with_bounded_memory() {
    let len = 256u64 << 20;
    let tail = format!("\n{}", fixture("file-stored"));
    let mut lines = LineReader::new(HugeLine { left: len, tail: Cursor::new(tail.into_bytes()) }, MAX_LINE);
    assert_eq!(lines.next_line().unwrap(), RawLine::TooLong { len, terminated: true });
    // The cap, and one byte for the newline of a line of exactly the cap.
    assert!(lines.held() <= MAX_LINE + 1, "held {} bytes", lines.held());
    assert_eq!(lines.next_line().unwrap(), RawLine::Line { terminated: true });
    assert!(parse_line(lines.line()).is_ok());
    assert_eq!(lines.line_no, 2);

    let tail = format!("\n{}", fixture("file-stored"));
    let input = HugeLine { left: 8 << 20, tail: Cursor::new(tail.into_bytes()) };
    let mut r = Report::new(opts(), Vec::new(), Vec::new());
    r.read("huge.jsonl", input).unwrap();
    let totals = r.finish().unwrap().totals;
    assert_eq!(totals.bad_lines, 1);
    assert_eq!(totals.chains_shown, 1);
    assert!(String::from_utf8_lossy(&r.err).contains("huge.jsonl:1: line of 8388608 bytes is longer than"));
}

#[test]
fn line_reader_edges() {
    let mut r = LineReader::new(Cursor::new(b"a\n\nbb".to_vec()), 4);
    assert_eq!(r.next_line().unwrap(), RawLine::Line { terminated: true });
    assert_eq!(r.line(), b"a");
    assert_eq!(r.next_line().unwrap(), RawLine::Line { terminated: true });
    assert_eq!(r.line(), b"");
    assert_eq!(r.next_line().unwrap(), RawLine::Line { terminated: false });
    assert_eq!(r.line(), b"bb");
    assert_eq!(r.next_line().unwrap(), RawLine::Eof);
    assert_eq!(r.line_no, 3);
    // Exactly the cap fits; one more does not.
    let mut r = LineReader::new(Cursor::new(b"abcd\nabcde".to_vec()), 4);
    assert_eq!(r.next_line().unwrap(), RawLine::Line { terminated: true });
    assert_eq!(r.next_line().unwrap(), RawLine::TooLong { len: 5, terminated: false });
    assert_eq!(r.next_line().unwrap(), RawLine::Eof);
}

/// Hands out its bytes a few at a time (the sizes cycling through
/// `sizes`), with an `Interrupted` error now and then, as a pipe or a slow
/// disk might: line ends then fall anywhere in the reader's blocks.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    calls: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(7) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = self.sizes[self.calls % self.sizes.len()].min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// What the reader must say for `data`: each line, or how long a line over
/// the cap was, and whether it had its newline.
fn expected_lines(data: &[u8], cap: usize) -> Vec<(RawLine, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (line, terminated) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        rest = &rest[(line.len() + usize::from(terminated))..];
        if line.len() > cap {
            out.push((RawLine::TooLong { len: line.len() as u64, terminated }, Vec::new()));
        } else {
            out.push((RawLine::Line { terminated }, line.to_vec()));
        }
    }
    out
}

#[test]
fn line_reader_agrees_with_a_plain_split_wherever_reads_end() {
    let cap = 8;
    // Lines of every length around the cap, empty lines, and both endings.
    let mut texts: Vec<Vec<u8>> = Vec::new();
    let mut all = Vec::new();
    for len in 0..=3 * cap {
        all.extend(std::iter::repeat_n(b'a' + (len % 26) as u8, len));
        all.push(b'\n');
    }
    texts.push(all.clone());
    all.pop();
    texts.push(all);
    texts.push(b"\n\n\n".to_vec());
    texts.push(b"12345678".to_vec());
    texts.push(b"123456789".to_vec());
    texts.push(b"12345678\n123456789\n1234567\n".to_vec());
    for data in texts {
        let want = expected_lines(&data, cap);
        for sizes in [vec![1], vec![2, 3], vec![5, 1, 9], vec![100], vec![cap, cap + 1, 1]] {
            let mut r = LineReader::new(Trickle { data: data.clone(), at: 0, sizes: sizes.clone(), calls: 0 }, cap);
            let mut got = Vec::new();
            loop {
                match r.next_line().unwrap() {
                    RawLine::Eof => break,
                    raw @ RawLine::Line { .. } => got.push((raw, r.line().to_vec())),
                    raw @ RawLine::TooLong { .. } => got.push((raw, Vec::new())),
                }
                assert!(r.held() <= cap + 1);
            }
            assert_eq!(got, want, "reads of {sizes:?} bytes over {:?}", String::from_utf8_lossy(&data));
            assert_eq!(r.line_no, want.len() as u64);
            assert_eq!(r.next_line().unwrap(), RawLine::Eof, "the end stays the end");
        }
    }
}

/// A read error is returned, not taken for the end of the input.
#[test]
fn line_reader_returns_read_errors() {
    struct Broken(bool);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if std::mem::replace(&mut self.0, true) {
                return Err(std::io::Error::other("disk on fire"));
            }
            buf[..3].copy_from_slice(b"a\nb");
            Ok(3)
        }
    }
    let mut r = LineReader::new(Broken(false), 16);
    assert_eq!(r.next_line().unwrap(), RawLine::Line { terminated: true });
    assert_eq!(r.line(), b"a");
    assert!(r.next_line().is_err());
    assert_eq!(r.line_no, 1);
}

#[test]
fn filters() {
    let a = fixture("file-stored"); // stored
    let b = fixture("systemd-no-pid1"); // dropped:collector-unreachable-pid1
    let c = fixture("sigkill"); // no-dump
    let files: [(&str, &[u8]); 3] = [("a", a.as_bytes()), ("b", b.as_bytes()), ("c", c.as_bytes())];
    let ran = report(opts(), &files);
    let all = ran.verdicts();
    assert_eq!(all.len(), 5, "{all:?}");
    let pid_of = |v: &str| all.iter().find(|(_, verdict)| verdict == v).unwrap().0;
    let (stored, dropped) = (pid_of("stored"), pid_of("dropped:collector-unreachable-pid1"));
    let start = |pid: u64| {
        ran.of_type("verdict").iter().find(|c| c["crasher"]["tgid"] == pid).unwrap()["report"]["start_wall_ns"].as_u64().unwrap()
    };

    let mut o = opts();
    o.pid = Some(dropped as u32);
    assert_eq!(report(o, &files).verdicts(), vec![(dropped, "dropped:collector-unreachable-pid1".into())]);

    let mut o = opts();
    o.verdict = Some(VerdictFilter::parse("dropped").unwrap());
    assert_eq!(report(o, &files).verdicts(), vec![(dropped, "dropped:collector-unreachable-pid1".into())]);
    let mut o = opts();
    o.verdict = Some(VerdictFilter::parse("stored").unwrap());
    assert_eq!(report(o, &files).verdicts(), vec![(stored, "stored".into())]);
    let mut o = opts();
    o.verdict = Some(VerdictFilter::parse("no-dump").unwrap());
    assert_eq!(report(o, &files).verdicts().len(), 3);
    assert!(VerdictFilter::parse("dropped:nonsense").is_err());
    assert!(VerdictFilter::parse("Stored").is_err());

    // Since is inclusive, until exclusive, on the chain's first event.
    let t = start(dropped);
    let mut o = opts();
    o.since_ns = Some(t);
    let got = report(o, &files).verdicts();
    assert!(got.contains(&(dropped, "dropped:collector-unreachable-pid1".into())), "{got:?}");
    assert!(got.iter().all(|(_, v)| v != "stored") == (start(stored) < t), "{got:?}");
    let mut o = opts();
    o.until_ns = Some(t);
    let got = report(o, &files).verdicts();
    assert!(!got.iter().any(|(p, _)| *p == dropped), "{got:?}");
    let mut o = opts();
    o.since_ns = Some(t);
    o.until_ns = Some(t + 1);
    assert_eq!(report(o, &files).verdicts(), vec![(dropped, "dropped:collector-unreachable-pid1".into())]);
}

#[test]
fn options_from_args_check_their_values() {
    let args = |extra: &[&str]| {
        let cli = crate::cli::Cli::try_parse_from(["crashtrace", "report", "x.jsonl"].iter().chain(extra.iter())).unwrap();
        match cli.command {
            Some(crate::cli::Command::Report(a)) => a.args().0.clone(),
            _ => panic!("not a report"),
        }
    };
    use clap::Parser;
    let o = Options::from_args(&args(&["--since", "2026-05-20T00:00:00Z", "--until", "1800000000", "--verdict", "dropped"]), false).unwrap();
    assert_eq!(o.since_ns, Some(1_779_235_200_000_000_000));
    assert_eq!(o.verdict, Some(VerdictFilter::Dropped));
    assert!(matches!(Options::from_args(&args(&["--since", "tuesday"]), false), Err(ReportError::Since(_))));
    assert!(matches!(Options::from_args(&args(&["--since", "200", "--until", "100"]), false), Err(ReportError::EmptyRange)));
    let e = Options::from_args(&args(&["--verdict", "dropped:pid1"]), false).unwrap_err().to_string();
    // Relative times count back from now.
    let o = Options::from_args(&args(&["-S", "2h", "-U", "-1h", "--fail-on-drop"]), true).unwrap();
    let (since, until) = (o.since_ns.unwrap(), o.until_ns.unwrap());
    assert_eq!(until - since, 3600 * 1_000_000_000);
    assert!(until < crate::live::realtime_ns());
    assert!(o.list && o.fail_on_drop);
    assert!(e.contains("dropped:collector-unreachable-pid1"), "lists the verdicts: {e}");
}

fn header_line(boot: &str, mono: u64, wall: u64) -> String {
    let h = Header {
        tracer_version: "0.1.0".into(),
        kernel: "6.18.0".into(),
        hostname: "vm".into(),
        boot_id: boot.into(),
        start_wall_ns: wall,
        start_mono_ns: mono,
        dump_mode: "inferred".into(),
        dump_mode_reason: "test".into(),
        hooks: vec![],
        core_settings: None,
        watched_pid: None,
    };
    Line::new(Record::Header(h)).to_json()
}

#[test]
fn restarts_losses_and_unwritten_records_are_gaps() {
    let text = without(&fixture("file-stored"), &["header", "summary"]);
    let first: Line = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let Record::Event(e) = first.record else { panic!("an event first") };
    let (wall, mono) = (e.wall_ns - 1_000_000, e.event.ts_ns - 1_000_000);
    let loss = Line::new(Record::Loss(Loss {
        ts_ns: mono + 500_000_000,
        source: "kernel".into(),
        counts: [("signal-generate".to_string(), 7u64)].into_iter().collect(),
        total: 7,
    }))
    .to_json();
    let summary = Line::new(Record::Summary(Summary { log_write_failures: 3, ..Summary::default() })).to_json();
    // Run 1 is killed (no summary); run 2 stops cleanly with unwritten records.
    let log = format!(
        "{}\n{text}{loss}\n{}\n{}\n",
        header_line("boot", mono, wall),
        header_line("boot", mono + 10_000_000_000, wall + 10_000_000_000),
        summary
    );
    let ran = report(opts(), &[("log", log.as_bytes())]);
    let gaps = ran.of_type("gap");
    let kinds: Vec<&str> = gaps.iter().map(|g| g["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["loss", "restart", "unwritten"], "{gaps:?}");
    assert_eq!(gaps[0]["lost"], 7);
    assert!(gaps[1]["detail"].as_str().unwrap().contains("the tracer restarted: run 1 ended without a summary record"));
    assert_eq!(gaps[1]["line"], text.lines().count() + 3);
    assert_eq!((ran.totals.runs, ran.totals.restarts, ran.totals.runs_without_summary), (2, 1, 1));
    assert_eq!((ran.totals.lost_kernel, ran.totals.log_write_failures), (7, 3));
    assert_eq!(ran.of_type("run").len(), 2);

    // Another boot is not a restart of the same tracer.
    let log = format!("{}\n{text}{}\n", header_line("boot", mono, wall), header_line("other-boot", 5, wall + 1));
    let ran = report(opts(), &[("log", log.as_bytes())]);
    assert!(ran.of_type("gap")[0]["detail"].as_str().unwrap().contains("another boot or host"));
    assert_eq!(ran.totals.restarts, 0);

    // A log that ends without a summary says so at the end.
    let killed = format!("{}\n{text}", header_line("boot", mono, wall));
    let ran = report(opts(), &[("log", killed.as_bytes())]);
    assert_eq!(ran.of_type("gap").last().unwrap()["kind"], "no-summary");
}

#[test]
fn watched_pid_states_are_shown_in_time_order() {
    let text = without(&fixture("file-stored"), &["summary"]);
    let first_ts = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .find_map(|l| match l.record {
            Record::Event(e) if e.event.body.name() == "signal-generate" => Some(e.event.ts_ns),
            _ => None,
        })
        .unwrap();
    let watched = |pid: u32| {
        Line::new(Record::Watched(Watched {
            ts_ns: first_ts + 1,
            pid,
            state: crate::watched::State::FrozenInCrashHandler,
            evidence: vec!["3 zombie children".into()],
        }))
        .to_json()
    };
    let log = format!("{text}{}\n{}\n", watched(1), watched(77));
    let ran = report(opts(), &[("log", log.as_bytes())]);
    let states: Vec<&str> = ran.of_type("gap").iter().filter(|g| g["kind"] == "watched").map(|g| g["detail"].as_str().unwrap()).collect();
    assert_eq!(
        states,
        ["watched pid 1 is frozen-in-crash-handler: 3 zombie children", "watched pid 77 is frozen-in-crash-handler: 3 zombie children"]
    );
    let mut o = opts();
    o.pid = Some(1);
    o.json = false;
    let ran = report(o, &[("log", log.as_bytes())]);
    assert!(ran.text.contains("── STATE "), "{}", ran.text);
    assert!(ran.text.contains("watched pid 1 is frozen-in-crash-handler") && !ran.text.contains("watched pid 77"), "{}", ran.text);
    assert_eq!(ran.totals.bad_lines, 0);
}

#[test]
fn rotated_sets_are_read_oldest_first_as_one_run() {
    let dir = std::env::temp_dir().join(format!("crashtrace-report-rot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let full = fixture("systemd-no-pid1");
    let header = full.lines().next().unwrap().to_string();
    assert_eq!(kind(&header), "header");
    let text = without(&full, &["header"]);
    let lines: Vec<&str> = text.lines().collect();
    let path = dir.join("log.jsonl");
    // Each rotated-in file starts with the run's header, as the writer does.
    std::fs::write(crate::log::rotated_path(&path, 2), format!("{header}\n{}\n", lines[..3].join("\n"))).unwrap();
    std::fs::write(crate::log::rotated_path(&path, 1), format!("{header}\n{}\n", lines[3..6].join("\n"))).unwrap();
    std::fs::write(&path, format!("{header}\n{}\n", lines[6..].join("\n"))).unwrap();
    std::fs::write(dir.join("log.jsonl.01"), "junk").unwrap();
    std::fs::write(dir.join("log.jsonl.x"), "junk").unwrap();
    std::fs::write(dir.join("log.jsonl.10"), "").unwrap();
    assert_eq!(
        rotated_set(&path),
        vec![dir.join("log.jsonl.10"), dir.join("log.jsonl.2"), dir.join("log.jsonl.1"), path.clone()]
    );
    std::fs::remove_file(dir.join("log.jsonl.10")).unwrap();

    let mut r = Report::new(opts(), Vec::new(), Vec::new());
    // The set, and a rotated file named again, which is read once.
    let stopped = r.run_all(&[path.clone(), crate::log::rotated_path(&path, 1)]).unwrap();
    assert!(!stopped);
    let totals = r.finish().unwrap().totals;
    assert_eq!(totals.files, 3);
    assert_eq!(totals.runs, 1, "one run across the set");
    assert_eq!(totals.bad_lines, 0, "{}", String::from_utf8_lossy(&r.err));
    assert_eq!(totals.chains_shown, 1);
    assert_eq!(totals.shown_rebuilt_differs, 0);
    assert_eq!(totals.verdicts.get("dropped:collector-unreachable-pid1"), Some(&1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_file_is_bad_input() {
    let mut r = Report::new(opts(), Vec::new(), Vec::new());
    r.run_all(&[PathBuf::from("/nonexistent/crashtrace.jsonl")]).unwrap();
    let t = r.finish().unwrap();
    assert_eq!(t.exit_status(false), 1);
    assert!(String::from_utf8_lossy(&r.err).contains("/nonexistent/crashtrace.jsonl: cannot read"));
}

#[test]
fn stored_cores_are_reconciled() {
    let dir = std::env::temp_dir().join(format!("crashtrace-report-cores-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("cores")).unwrap();
    std::fs::create_dir_all(dir.join("store")).unwrap();
    let text = fixture("file-stored");
    let pattern = match serde_json::from_str::<Line>(text.lines().next().unwrap()).unwrap().record {
        Record::Header(h) => h.core_settings.unwrap().core_pattern,
        _ => panic!("a header first"),
    };
    assert!(pattern.ends_with("/core.%p"), "{pattern}");
    let log = text.replace(&pattern, &format!("{}/cores/core.%p", dir.display()));
    let (crash_ns, pid) = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .find_map(|l| match l.record {
            Record::Event(e) if e.event.body.name() == "signal-generate" => Some((e.wall_ns, e.event.task.tgid)),
            _ => None,
        })
        .unwrap();
    let crash_wall = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(crash_ns);
    let touch = |p: PathBuf| {
        std::fs::write(&p, b"core").unwrap();
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(crash_wall).unwrap();
    };

    // No core: the stored chain is unaccounted.
    let mut o = opts();
    o.stores = vec![dir.join("store")];
    let ran = report(o.clone(), &[("log", log.as_bytes())]);
    let chains = ran.of_type("verdict");
    assert_eq!(chains[0]["report"]["core"]["status"], "unaccounted");
    assert_eq!(ran.totals.unaccounted, 1);

    // The core where the pattern puts it; a core in the store no chain claims.
    touch(dir.join(format!("cores/core.{pid}")));
    touch(dir.join("store/core.31337"));
    let ran = report(o.clone(), &[("log", log.as_bytes())]);
    let chains = ran.of_type("verdict");
    assert_eq!(chains[0]["report"]["core"]["status"], "found");
    assert_eq!(chains[0]["report"]["core"]["path"], dir.join(format!("cores/core.{pid}")).display().to_string());
    assert_eq!(ran.totals.unaccounted, 0);
    assert_eq!(ran.totals.orphaned, 1);
    let summary = ran.of_type("report-summary");
    assert_eq!(summary[0]["orphaned_cores"][0]["path"], dir.join("store/core.31337").display().to_string());

    let mut text_opts = o;
    text_opts.json = false;
    let ran = report(text_opts, &[("log", log.as_bytes())]);
    assert!(ran.text.contains(&format!("core       {}/cores/core.{pid}", dir.display())), "{}", ran.text);
    assert!(ran.text.contains("orphaned cores"), "{}", ran.text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `report --pid` keeps what live `--pid` keeps: the crash of a process the
/// watched pid's child forked is its story too, though the watched pid is
/// neither the crasher, its parent, nor the sender.
#[test]
fn report_pid_follows_the_children_the_pid_forked_as_live_does() {
    let text = fixture("kill-segv");
    let fork = r#"{"v":1,"type":"event","wall_ns":1795723349324000000,"ts_ns":810727032268,"cpu":0,"task":{"pid":13320,"tgid":13320,"comm":"tmux"},"cgroup_id":1,"event":"process-fork","child":14808}"#;
    let at = line_of(&text, "signal-generate") - 1;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(at, fork);
    let log = lines.join("\n") + "\n";
    let shown = |pid| {
        let ran = report(Options { pid: Some(pid), ..opts() }, &[("log", log.as_bytes())]);
        assert_eq!(ran.totals.bad_lines, 0, "{}", ran.stderr);
        ran.verdicts()
    };
    assert_eq!(shown(13320), vec![(14809, "stored".to_string())]);
    assert_eq!(shown(14809), vec![(14809, "stored".to_string())]);
    assert!(shown(13321).is_empty());
}

#[test]
fn fail_on_drop_exits_1_only_when_a_dropped_chain_is_shown() {
    let dropped = fixture("systemd-no-pid1");
    let stored = fixture("file-stored");
    let status = |text: &str, fail_on_drop| {
        let ran = report(opts(), &[("log", text.as_bytes())]);
        assert_eq!(ran.totals.bad_lines, 0, "{}", ran.stderr);
        Outcome { totals: ran.totals }.exit_status(fail_on_drop)
    };
    assert_eq!(status(&dropped, true), 1);
    assert_eq!(status(&dropped, false), 0, "without the flag a drop is not a failure");
    assert_eq!(status(&stored, true), 0);
    // A filter that hides the dropped chain hides it from the exit status too.
    let ran = report(Options { verdict: Some(VerdictFilter::parse("stored").unwrap()), ..opts() }, &[("log", dropped.as_bytes())]);
    assert_eq!(Outcome { totals: ran.totals }.exit_status(true), 0);
}

#[test]
fn report_list_is_one_line_per_crash() {
    let logs = [fixture("systemd-no-pid1"), fixture("file-stored")];
    let files: Vec<(&str, &[u8])> = vec![("a", logs[0].as_bytes()), ("b", logs[1].as_bytes())];
    let ran = report(Options { list: true, json: false, ..opts() }, &files);
    let lines: Vec<&str> = ran.text.lines().collect();
    assert_eq!(lines.len(), 1 + ran.totals.chains_shown as usize, "{}", ran.text);
    assert!(lines[0].starts_with("TIME (UTC)") && lines[0].contains("PID") && lines[0].contains("VERDICT"), "{}", lines[0]);
    assert!(ran.text.contains("dropped:collector-unreachable-pid1"), "{}", ran.text);
    for line in &lines[1..] {
        assert!(line.contains("Z ") && line.contains("SIG"), "time with its zone, and the signal: {line}");
    }
    assert!(!ran.text.contains("summary"), "no summary in the list: {}", ran.text);
    // JSON: one "crash" document per chain, with the same fields.
    let ran = report(Options { list: true, ..opts() }, &files);
    assert_eq!(ran.records.len() as u64, ran.totals.chains_shown);
    for r in &ran.records {
        assert_eq!(r["type"], "crash", "{r}");
        for key in ["time", "pid", "signal", "verdict", "core", "comm"] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
    }
    // Nothing to list still says so.
    let none = report(Options { list: true, json: false, verdict: Some(VerdictFilter::parse("stored").unwrap()), ..opts() }, &files[..1]);
    assert_eq!(none.text, "no crashes in these logs match the filters\n");
}

#[test]
fn only_a_last_line_or_one_before_a_header_is_torn() {
    // 1,011 lines of "{": each looks like the start of a cut record, but a
    // writer tears at most its last line, so all but the last are bad input.
    let junk = "{\n".repeat(1011);
    let ran = report(opts(), &[("braces.jsonl", junk.as_bytes())]);
    assert_eq!((ran.totals.bad_lines, ran.totals.torn_lines), (1010, 1), "{}", ran.stderr);
    assert_eq!(Outcome { totals: ran.totals.clone() }.exit_status(false), 1);
    // Their messages are capped, torn ones too.
    let said = ran.stderr.lines().filter(|l| l.contains("braces.jsonl:")).count() as u64;
    assert!(said <= MAX_ERRORS_PRINTED + 2, "{said} lines printed");
}

#[test]
fn torn_line_messages_are_capped() {
    // Many runs, each killed mid-write: a torn line before every header.
    let header = header_line("boot", 1, 1_779_235_200_000_000_000);
    let mut text = String::new();
    for _ in 0..300 {
        text.push_str(&format!("{header}\n{{\"v\":1,\"type\":\"ev\n"));
    }
    let ran = report(opts(), &[("runs.jsonl", text.as_bytes())]);
    assert_eq!(ran.totals.torn_lines, 300);
    let said = ran.stderr.lines().filter(|l| l.contains("torn")).count() as u64;
    assert!(said <= MAX_ERRORS_PRINTED + 1, "{said} torn lines printed:\n{}", ran.stderr);
    assert!(ran.stderr.contains("counted, not printed"), "{}", ran.stderr);
}

/// Runs `run_all` on another thread: a report that blocks on a FIFO fails
/// the test instead of hanging it.
fn run_all_within(logs: Vec<PathBuf>, secs: u64) -> (Totals, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = Report::new(opts(), Vec::new(), Vec::new());
        r.run_all(&logs).unwrap();
        let t = r.finish().unwrap().totals;
        let _ = tx.send((t, String::from_utf8_lossy(&r.err).to_string()));
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs)).expect("report blocked on a file it should have refused")
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

#[test]
fn fifos_and_symlinks_are_refused_not_read() {
    let dir = std::env::temp_dir().join(format!("crashtrace-report-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log.jsonl");
    std::fs::write(&log, fixture("file-stored")).unwrap();
    // A FIFO as a rotated sibling.
    mkfifo(&crate::log::rotated_path(&log, 1));
    let (t, err) = run_all_within(vec![log.clone()], 10);
    assert!(err.contains("log.jsonl.1: not a regular file"), "{err}");
    assert_eq!((t.files, t.bad_lines), (2, 1), "{err}");
    // A FIFO given as LOG.
    let fifo = dir.join("fifo.jsonl");
    mkfifo(&fifo);
    let (t, err) = run_all_within(vec![fifo], 10);
    assert!(err.contains("fifo.jsonl: not a regular file"), "{err}");
    assert_eq!(t.bad_lines, 1);
    // A symlink is not followed: it could point anywhere (/dev/zero).
    let link = dir.join("link.jsonl");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let (t, err) = run_all_within(vec![link], 10);
    assert!(err.contains("link.jsonl: is a symlink"), "{err}");
    assert_eq!((t.bad_lines, t.lines), (1, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_utf8_log_names_keep_their_rotated_siblings() {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir().join(format!("crashtrace-report-name-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(std::ffi::OsStr::from_bytes(b"log\xff.jsonl"));
    std::fs::write(&log, "").unwrap();
    std::fs::write(crate::log::rotated_path(&log, 1), "").unwrap();
    std::fs::write(crate::log::rotated_path(&log, 2), "").unwrap();
    assert_eq!(rotated_set(&log), vec![crate::log::rotated_path(&log, 2), crate::log::rotated_path(&log, 1), log.clone()]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fixture's records stamped as the live tracer stamps them: run id,
/// sequence numbers, time and host.
fn stamped(text: &str, run: &str) -> Vec<String> {
    let mut stamp = crate::record::Stamp::new(run.into(), crate::record::Host { name: "vm".into(), boot: "b".into(), machine: String::new() });
    text.lines()
        .map(|l| {
            let line: Line = serde_json::from_str(l).unwrap();
            stamp.line(line.record, 1_779_235_200_000_000_000).to_json()
        })
        .collect()
}

#[test]
fn duplicates_gaps_and_reordering_are_found_by_run_and_seq() {
    let text = fixture("file-stored");
    let lines = stamped(&text, "0123456789abcdef0123456789abcdef");
    let whole = lines.join("\n") + "\n";
    let once = report(opts(), &[("a.jsonl", whole.as_bytes())]);
    assert_eq!(once.totals.duplicate_records + once.totals.missing_records + once.totals.reordered_records, 0);
    // The same log twice (a copy under another name): read once, said once.
    let twice = report(opts(), &[("a.jsonl", whole.as_bytes()), ("copy.jsonl", whole.as_bytes())]);
    assert_eq!(twice.totals.duplicate_records, lines.len() as u64);
    assert_eq!(twice.totals.chains_shown, once.totals.chains_shown, "a repeated verdict is not counted twice");
    assert_eq!(twice.totals.verdicts, once.totals.verdicts);
    assert_eq!(twice.totals.runs, 1);
    assert_eq!(twice.of_type("gap").iter().filter(|g| g["kind"] == "duplicate").count(), 1, "{}", twice.text);
    // Records 3..=5 missing (e.g. a rotated file lost).
    let gappy: String = lines.iter().enumerate().filter(|(i, _)| !(3..=5).contains(i)).map(|(_, l)| format!("{l}\n")).collect();
    let ran = report(opts(), &[("gap.jsonl", gappy.as_bytes())]);
    assert_eq!(ran.totals.missing_records, 3);
    let gap = ran.of_type("gap").into_iter().find(|g| g["kind"] == "missing").expect("a missing-records gap");
    assert!(gap["detail"].as_str().unwrap().contains("3 records"), "{gap}");
    // Two records swapped.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let ran = report(opts(), &[("swap.jsonl", (swapped.join("\n") + "\n").as_bytes())]);
    assert_eq!((ran.totals.reordered_records, ran.totals.missing_records, ran.totals.duplicate_records), (1, 0, 0));
}

fn heartbeat_line(stamp: &mut crate::record::Stamp, ts_ns: u64) -> String {
    stamp.line(Record::Heartbeat(crate::record::Heartbeat { ts_ns, interval_s: 30, events: 0 }), 0).to_json()
}

#[test]
fn a_dead_tracer_is_told_from_a_quiet_one() {
    let s = 1_000_000_000u64;
    let wall = 1_779_235_200 * s;
    let host = crate::record::Host { name: "vm".into(), boot: "boot".into(), machine: String::new() };
    // Run 1: a header and heartbeats for two minutes, then nothing.
    let mut run1 = crate::record::Stamp::new("11".repeat(16), host.clone());
    let h1: Line = serde_json::from_str(&header_line("boot", 0, wall)).unwrap();
    let mut text = run1.line(h1.record, wall).to_json() + "\n";
    for n in 1..=4 {
        text += &(heartbeat_line(&mut run1, n * 30 * s) + "\n");
    }
    // Run 2 starts ten minutes after the last heartbeat: run 1 died.
    let mut run2 = crate::record::Stamp::new("22".repeat(16), host.clone());
    let h2: Line = serde_json::from_str(&header_line("boot", 720 * s, wall + 720 * s)).unwrap();
    let dead = text.clone() + &run2.line(h2.record.clone(), wall).to_json() + "\n";
    let ran = report(opts(), &[("dead.jsonl", dead.as_bytes())]);
    assert_eq!(ran.totals.heartbeats, 4);
    assert_eq!(ran.totals.tracer_deaths, 1, "{}", ran.text);
    let gap = ran.of_type("gap").into_iter().find(|g| g["kind"] == "restart").unwrap();
    assert!(gap["detail"].as_str().unwrap().contains("died"), "{gap}");
    // Run 2 starts 20 s after the last heartbeat: killed and restarted, not
    // found dead.
    let h2: Line = serde_json::from_str(&header_line("boot", 140 * s, wall + 140 * s)).unwrap();
    let quick = text + &run2.line(h2.record, wall).to_json() + "\n";
    let ran = report(opts(), &[("quick.jsonl", quick.as_bytes())]);
    assert_eq!(ran.totals.tracer_deaths, 0, "{}", ran.text);
}

#[test]
fn older_records_and_unknown_fields_are_read() {
    // A record with fields a later crashtrace may add.
    let mut line: Value = serde_json::from_str(fixture("file-stored").lines().next().unwrap()).unwrap();
    line["future"] = serde_json::json!({"x": [1, 2]});
    line["hooks_v2"] = Value::from("later");
    assert!(parse_line(line.to_string().as_bytes()).is_ok(), "unknown fields are ignored");
    let stamped = stamped(&fixture("kill-segv"), "ab".repeat(16).as_str());
    let mut ev: Value = serde_json::from_str(&stamped[2]).unwrap();
    ev["shipper"] = Value::from("vector");
    let parsed = parse_line(ev.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.seq, Some(2));
    assert_eq!(parsed.host.as_ref().map(|h| h.name.as_str()), Some("vm"));
    // A record without a schema version is read as version 1, the first;
    // a later version is not (see bad_input_is_reported_with_file_and_line_and_skipped).
    let mut unversioned: Value = serde_json::from_str(&stamped[2]).unwrap();
    unversioned.as_object_mut().unwrap().remove("v");
    assert_eq!(parse_line(unversioned.to_string().as_bytes()).unwrap().v, 1);
    // A whole log that way, with a field from a shipper on every line,
    // gives the same report as the log as written.
    let plain = report(opts(), &[("a.jsonl", fixture("kill-segv").as_bytes())]);
    let odd: String = fixture("kill-segv")
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("v");
            v["log.file.name"] = Value::from("crashtrace.jsonl");
            v.to_string() + "\n"
        })
        .collect();
    let ran = report(opts(), &[("a.jsonl", odd.as_bytes())]);
    assert_eq!(ran.totals.bad_lines, 0, "{}", ran.stderr);
    assert_eq!(ran.totals.records, plain.totals.records);
    assert_eq!(ran.verdicts(), plain.verdicts());
    assert!(!ran.verdicts().is_empty());
    // The fixtures, written before runs and sequence numbers, still read.
    for f in FIXTURES {
        for l in fixture(f).lines() {
            let p = parse_line(l.as_bytes()).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(p.run.is_none() && p.seq.is_none());
        }
    }
}

#[test]
fn report_json_names_each_chain_as_its_verdict_record_does() {
    let run = "0123456789abcdef0123456789abcdef";
    let lines = stamped(&fixture("handled-reraise"), run);
    let logged: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).filter(|v: &Value| v["type"] == "verdict").collect();
    assert!(logged.len() >= 2, "the fixture has a handled crash and its re-raise");
    let ran = report(opts(), &[("a.jsonl", (lines.join("\n") + "\n").as_bytes())]);
    let shown = ran.of_type("verdict");
    assert_eq!(shown.len(), logged.len());
    for v in &logged {
        let uid = v["chain_uid"].as_str().unwrap();
        assert_eq!(uid, format!("{run}-{}", v["id"]));
        let same: Vec<_> = shown.iter().filter(|s| s["chain_uid"] == uid).collect();
        assert_eq!(same.len(), 1, "report shows chain {uid} once, by the same name: {shown:?}");
        assert_eq!(same[0]["id"], v["id"]);
        assert_eq!(same[0]["linked_to"], v["linked_to"]);
    }
    // Read again: the same names.
    let again = report(opts(), &[("a.jsonl", (lines.join("\n") + "\n").as_bytes())]);
    let names = |r: &Ran| r.of_type("verdict").iter().map(|v| v["chain_uid"].clone()).collect::<Vec<_>>();
    assert_eq!(names(&again), names(&ran));
    // A log without run ids (older) names no chain; one rebuilt from its
    // events alone was never named by the tracer, so it has none either.
    let old = report(opts(), &[("old.jsonl", fixture("handled-reraise").as_bytes())]);
    assert!(old.of_type("verdict").iter().all(|v| v.get("chain_uid").is_none()));
    let rebuilt = without_verdicts(&lines.join("\n"));
    let ran = report(opts(), &[("rebuilt.jsonl", rebuilt.as_bytes())]);
    assert!(!ran.of_type("verdict").is_empty());
    assert!(ran.of_type("verdict").iter().all(|v| v.get("chain_uid").is_none() && v["report"]["source"] == "rebuilt"));
}

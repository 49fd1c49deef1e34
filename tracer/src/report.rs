//! `crashtrace report LOG...`: reads event logs after the fact and prints one
//! timeline per crash chain with its verdict, the gaps in what was traced,
//! where each stored core is, and a summary table.
//!
//! How chains are rebuilt, with bounded memory:
//! - Logs are streamed line by line, each line capped at
//!   [`reader::MAX_LINE`] bytes; a rotated set (PATH.N ... PATH.1, PATH) is
//!   read oldest first.
//! - Each tracer run (a header record with a new boot id and start time)
//!   gets a fresh [`Correlator`]; the `event` records are replayed through it
//!   (ticked every 100 ms of event time, as the live tracer is, and flushed
//!   at the end of the run), so every chain is rebuilt from its events.
//! - A `verdict` record is what the live tracer decided, with everything it
//!   knew then; it is authoritative. A rebuilt chain is paired with its
//!   verdict record by crasher and time, and shown with it; a differing
//!   rebuilt verdict is noted. A rebuilt chain with no verdict record (the
//!   tracer was killed before deciding) is shown on its own, marked rebuilt.
//! - A rebuilt chain waits 5 s of log time for its verdict record; a verdict
//!   record waits until the replay must have ended its chain (the idle
//!   timeout, plus 5 s). At most 4096 wait at once, so memory does not grow
//!   with the log.
//!
//! Gaps: `loss` records, tracer restarts (a new header), a run with no
//! `summary` record (killed), records the tracer could not write (from its
//! summary) and a torn last line are shown where they happened, as are the
//! watched pid's states (`watched` records, e.g. frozen in its crash handler).
//!
//! Bad input (garbage, binary junk, over-long lines, an unknown schema
//! version, an empty or unreadable file) is reported on stderr with file and
//! line, counted, and skipped; `--strict` stops at the first with exit 2.
//! A torn record (a write cut off by SIGKILL or a full disk: the start of a
//! record, then the end of the line or file) is reported and does not count
//! as bad input. Exit status: 0, or 1 if bad input was skipped, or 2.

mod fast;
mod print;
pub mod reader;
pub mod store;
pub mod time;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    rc::Rc,
};

use serde::Serialize;

use crate::{
    chain::Chain,
    cli::ReportArgs,
    correlate::{Config, Correlator},
    event::{Body, Event, Proc},
    record::{EventRecord, Header, Line, Loss, Record, Summary, Watched},
    render::Style,
    scope::{Lookup, Scope},
    verdict::Verdict,
};

/// What the scope asks, answered from the replay's correlator (a log has
/// no /proc to read).
struct Replayed<'a>(&'a Correlator);

impl Lookup for Replayed<'_> {
    fn cgroup_path(&self, ev: &Event) -> Option<String> {
        self.0.cgroup_path(ev.cgroup_id).map(str::to_string)
    }

    fn helper_chain(&self, tgid: u32) -> Option<&Chain> {
        self.0.helper_chain(tgid)
    }
}

use self::{
    print::{Printer, Row, ShownChain, ShownRun, ShownSummary},
    reader::{parse_line, rotated_set, BadLine, LineReader, RawLine, MAX_LINE},
    store::{ChainContext, CoreStatus, Stores},
    time::{format_utc, parse_when},
};

/// Replay ticks the correlator this often, in event time (as live does).
const TICK_NS: u64 = 100_000_000;
/// How long, in log time, a chain waits for its verdict record or rebuild.
const HOLD_NS: u64 = 5_000_000_000;
/// Chains and gaps waiting to be shown, at most.
const MAX_PENDING: usize = 4096;
/// Rows of the summary table, at most; more are summed into "(other)".
const MAX_ROWS: usize = 10_000;
/// Errors printed per file; more are only counted.
const MAX_ERRORS_PRINTED: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("--since: {0}")]
    Since(String),
    #[error("--until: {0}")]
    Until(String),
    #[error("--since is not before --until; give a time range that is not empty")]
    EmptyRange,
    #[error("--verdict {0:?} is not a verdict; give one of: dropped (every dropped:*), {list}", list = verdict_list())]
    Verdict(String),
}

fn verdict_list() -> String {
    Verdict::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
}

/// Which verdicts `--verdict` lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictFilter {
    Exact(Verdict),
    /// Every `dropped:*`.
    Dropped,
}

impl VerdictFilter {
    pub fn parse(s: &str) -> Result<VerdictFilter, ReportError> {
        if s == "dropped" {
            return Ok(VerdictFilter::Dropped);
        }
        Verdict::parse(s).map(VerdictFilter::Exact).ok_or_else(|| ReportError::Verdict(s.to_string()))
    }

    pub fn matches(self, v: Option<Verdict>) -> bool {
        let v = v.unwrap_or(Verdict::Unknown);
        match self {
            VerdictFilter::Exact(want) => v == want,
            VerdictFilter::Dropped => v.is_dropped(),
        }
    }
}

/// What the report runs on, checked. The default reads everything, as
/// text, without a core store.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub pid: Option<u32>,
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
    pub verdict: Option<VerdictFilter>,
    pub json: bool,
    pub strict: bool,
    pub color: bool,
    /// systemd-coredump's store; None to leave it out (tests).
    pub systemd_dir: Option<PathBuf>,
    pub stores: Vec<PathBuf>,
    /// `report list`: one line per crash, no timelines or summary.
    pub list: bool,
    /// `--fail-on-drop`: exit 1 if a chain shown was dropped.
    pub fail_on_drop: bool,
    /// `--container` and `--unit`.
    pub container: Option<String>,
    pub unit: Option<String>,
}

impl Options {
    pub fn from_args(args: &ReportArgs, list: bool) -> Result<Options, ReportError> {
        let now = crate::live::realtime_ns();
        let since_ns = args.since.as_deref().map(|s| parse_when(s, now)).transpose().map_err(ReportError::Since)?;
        let until_ns = args.until.as_deref().map(|s| parse_when(s, now)).transpose().map_err(ReportError::Until)?;
        if let (Some(s), Some(u)) = (since_ns, until_ns)
            && s >= u
        {
            return Err(ReportError::EmptyRange);
        }
        let verdict = args.verdict.as_deref().map(VerdictFilter::parse).transpose()?;
        // SAFETY: isatty only reads the fd's state.
        let tty = unsafe { libc::isatty(1) } == 1;
        Ok(Options {
            pid: args.pid,
            since_ns,
            until_ns,
            verdict,
            json: args.json,
            strict: args.strict,
            color: !args.json && tty && std::env::var_os("NO_COLOR").is_none(),
            systemd_dir: Some(PathBuf::from(store::SYSTEMD_COREDUMP_DIR)),
            stores: args.store.clone(),
            list,
            fail_on_drop: args.fail_on_drop,
            container: args.container.clone(),
            unit: args.unit.clone(),
        })
    }

    fn in_range(&self, wall_ns: u64) -> bool {
        self.since_ns.map(|s| wall_ns >= s).unwrap_or(true) && self.until_ns.map(|u| wall_ns < u).unwrap_or(true)
    }

    fn chain_filtered(&self) -> bool {
        self.pid.is_some() || self.verdict.is_some()
    }
}

pub fn run(args: &ReportArgs, list: bool) -> anyhow::Result<ExitCode> {
    let opts = Options::from_args(args, list)?;
    let fail_on_drop = opts.fail_on_drop;
    let stdout = io::stdout().lock();
    let mut report = Report::new(opts, io::BufWriter::with_capacity(1 << 16, stdout), io::stderr().lock());
    match report.run_all(&args.logs).and_then(|stopped| if stopped { Ok(None) } else { report.finish().map(Some) }) {
        Ok(Some(outcome)) => Ok(ExitCode::from(outcome.exit_status(fail_on_drop))),
        Ok(None) => {
            let _ = report.out.flush();
            Ok(ExitCode::from(2))
        }
        // `crashtrace report LOG | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::anyhow!("writing the report: {e}")),
    }
}

/// Where a record was read.
#[derive(Clone, Debug)]
struct Place {
    file: Rc<str>,
    line: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One tracer run: what its header said, and what was read of it.
#[derive(Default)]
struct Run {
    number: u32,
    /// Boot id, start monotonic and wall ns: what tells runs apart.
    identity: Option<(String, u64, u64)>,
    hostname: Option<String>,
    boot_id: Option<String>,
    mono_to_wall: Option<i128>,
    /// Whether the log gave core settings (header or event) in this run.
    settings_known: bool,
    summary_seen: bool,
    records: u64,
    last_wall: u64,
    last_place: Option<Place>,
    /// The heartbeat interval the run's heartbeats gave, in seconds.
    heartbeat_s: Option<u64>,
}

impl Run {
    fn wall(&self, ts_ns: u64) -> u64 {
        (ts_ns as i128 + self.mono_to_wall.unwrap_or(0)).clamp(0, u64::MAX as i128) as u64
    }
}

/// A chain waiting to be shown: its verdict record, its rebuild, or both.
struct Slot {
    recorded: Option<(Chain, Place)>,
    /// The verdict record's `chain_uid` (or one made from its run id, for
    /// a record written before `chain_uid`).
    uid: Option<String>,
    rebuilt: Option<Chain>,
    /// Log time (the watermark) when the slot was made.
    stamp: u64,
}

#[derive(Clone, Debug, Serialize)]
struct Gap {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    wall_ns: Option<u64>,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lost: Option<u64>,
    file: String,
    line: u64,
}

enum Item {
    Chain(Box<Slot>),
    Gap(Gap),
}

/// Counts for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub files: u64,
    pub lines: u64,
    pub records: u64,
    pub events: u64,
    pub runs: u64,
    pub restarts: u64,
    pub runs_without_summary: u64,
    pub verdict_records: u64,
    /// Chains decided (before filters), and shown.
    pub chains_total: u64,
    pub chains_shown: u64,
    pub shown_from_verdict_records: u64,
    pub shown_rebuilt_only: u64,
    /// Shown chains whose replayed events gave another verdict.
    pub shown_rebuilt_differs: u64,
    pub verdicts: BTreeMap<String, u64>,
    pub drops: BTreeMap<String, u64>,
    pub kernel_said_dumped_but_dropped: u64,
    pub lost_kernel: u64,
    pub loss_records: u64,
    pub log_write_failures: u64,
    pub log_sync_failures: u64,
    pub bad_lines: u64,
    pub torn_lines: u64,
    /// Records read before (same run id and sequence number): a log given
    /// twice, or copied; skipped, so nothing is counted twice.
    pub duplicate_records: u64,
    /// Sequence numbers missing within a run: records lost between the
    /// tracer and here (a rotated file deleted or not given).
    pub missing_records: u64,
    /// Records whose sequence number is below one already read.
    pub reordered_records: u64,
    pub heartbeats: u64,
    /// Runs that ended without a summary long after their last heartbeat.
    pub tracer_deaths: u64,
    pub unaccounted: u64,
    pub orphaned: u64,
}

/// The end of a report.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub totals: Totals,
}

impl Outcome {
    /// 1 for bad input, or with `fail_on_drop` for a dropped core shown; else 0.
    pub fn exit_status(&self, fail_on_drop: bool) -> u8 {
        let dropped = fail_on_drop && self.totals.drops.values().any(|n| *n > 0);
        if self.totals.bad_lines > 0 || dropped { 1 } else { 0 }
    }
}

/// The report engine: records in, text or JSON Lines out.
pub struct Report<W: Write, E: Write> {
    opts: Options,
    pub out: W,
    err: E,
    /// Text or JSON Lines, chosen once from `--json`.
    printer: Box<dyn Printer>,
    run: Run,
    correlator: Correlator,
    next_tick_ns: u64,
    pending: BTreeMap<(u64, u64), Item>,
    /// The keys of `pending`'s chains by crasher tgid: pairing a rebuild
    /// with its verdict record looks at that process's chains only, not at
    /// every waiting one (millions of crashes in a log).
    pending_by_tgid: HashMap<u32, Vec<(u64, u64)>>,
    seq: u64,
    /// The latest event time of the current run.
    watermark: u64,
    stores: Stores,
    /// `--pid`, meaning what it means live.
    scope: Scope,
    totals: Totals,
    table: BTreeMap<(String, String, u64, String), u64>,
    /// The next record read starts a log set given on the command line.
    set_start: bool,
    stopped: bool,
    errors_in_file: u64,
    /// The replay correlator's idle timeout.
    idle_ns: u64,
    /// Sequence numbers read, per run id.
    sequences: HashMap<String, Sequence>,
}

/// The sequence numbers of one run read so far.
#[derive(Default)]
struct Sequence {
    highest: Option<u64>,
    seen: HashSet<u64>,
    /// Whether the duplicates of this run were said already.
    duplicates_said: bool,
}

/// Sequence numbers remembered per run at most, for duplicates: a run
/// longer than this is checked for gaps and order, and for duplicates
/// among its latest records only.
const MAX_SEQS_KEPT: usize = 4_000_000;

/// A run whose last record is older than this many heartbeat intervals
/// when the next run starts did not just stop: it died unnoticed.
const DEAD_AFTER_INTERVALS: u64 = 3;

impl<W: Write, E: Write> Report<W, E> {
    pub fn new(opts: Options, out: W, err: E) -> Report<W, E> {
        let stores = Stores::new(opts.systemd_dir.clone(), opts.stores.clone());
        Report {
            printer: print::printer(opts.json, opts.list, Style { color: opts.color }),
            scope: Scope::new(opts.pid, false, None).with_context(opts.container.clone(), opts.unit.clone()),
            opts,
            out,
            err,
            run: Run::default(),
            correlator: Correlator::new(Config::default()),
            next_tick_ns: 0,
            pending: BTreeMap::new(),
            pending_by_tgid: HashMap::new(),
            seq: 0,
            watermark: 0,
            stores,
            totals: Totals::default(),
            table: BTreeMap::new(),
            set_start: true,
            stopped: false,
            errors_in_file: 0,
            idle_ns: Config::default().idle_timeout_ns,
            sequences: HashMap::new(),
        }
    }

    /// Reads every log set named on the command line; true if `--strict`
    /// stopped it.
    pub fn run_all(&mut self, logs: &[PathBuf]) -> io::Result<bool> {
        let mut seen = HashSet::new();
        for log in logs {
            self.begin_set();
            for path in rotated_set(log) {
                let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if !seen.insert(key) {
                    continue;
                }
                if self.read_path(&path)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Reads one file; true if `--strict` stopped it.
    pub fn read_path(&mut self, path: &Path) -> io::Result<bool> {
        let name = path.display().to_string();
        match reader::open_log(path) {
            Ok(f) => self.read(&name, f),
            Err(e) => {
                self.totals.files += 1;
                self.bad_input(&name, None, &e.to_string())?;
                Ok(self.stopped)
            }
        }
    }

    /// Reads one log file's bytes; true if `--strict` stopped it.
    pub fn read<R: Read>(&mut self, name: &str, input: R) -> io::Result<bool> {
        self.totals.files += 1;
        self.errors_in_file = 0;
        let file: Rc<str> = name.into();
        let mut lines = LineReader::new(input, MAX_LINE);
        let mut any = false;
        // A line that looks cut off mid-write. A writer tears at most the
        // line it was writing when it died, so this is torn only if it is
        // the file's last line or the next run's header follows it;
        // otherwise it is bad input like any other.
        let mut cut: Option<(Place, usize, bool, BadLine)> = None;
        loop {
            let raw = match lines.next_line() {
                Ok(raw) => raw,
                Err(e) => {
                    any = true;
                    if let Some((place, _, _, e)) = cut.take() {
                        self.bad_input(name, Some(place.line), &e.to_string())?;
                    }
                    self.bad_input(name, Some(lines.line_no + 1), &format!("read error: {e}; the rest of the file is skipped"))?;
                    break;
                }
            };
            let place = Place { file: file.clone(), line: lines.line_no };
            match raw {
                RawLine::Eof => {
                    if let Some((place, len, terminated, _)) = cut.take() {
                        self.torn(place, len, terminated)?;
                    }
                    break;
                }
                RawLine::TooLong { len, .. } => {
                    any = true;
                    self.totals.lines += 1;
                    if let Some((place, _, _, e)) = cut.take() {
                        self.bad_input(name, Some(place.line), &e.to_string())?;
                    }
                    self.bad_input(name, Some(place.line), &BadLine::TooLong { len, cap: MAX_LINE }.to_string())?;
                }
                RawLine::Line { terminated } => {
                    any = true;
                    self.totals.lines += 1;
                    let parsed = parse_line(lines.line());
                    if let Some((held, len, held_terminated, e)) = cut.take() {
                        if matches!(&parsed, Ok(Line { record: Record::Header(_), .. })) {
                            self.torn(held, len, held_terminated)?;
                        } else {
                            self.bad_input(name, Some(held.line), &e.to_string())?;
                        }
                    }
                    match parsed {
                        Ok(line) => self.record(line, place)?,
                        Err(e) if is_torn(&e, terminated, lines.line().len()) => {
                            cut = Some((place, lines.line().len(), terminated, e));
                        }
                        Err(e) => self.bad_input(name, Some(place.line), &e.to_string())?,
                    }
                }
            }
            if self.stopped {
                return Ok(true);
            }
        }
        if !any {
            self.bad_input(name, Some(1), "empty file: no records (the tracer wrote nothing here)")?;
        }
        Ok(self.stopped)
    }

    /// Ends the last run, lists orphaned cores and prints the summary.
    pub fn finish(&mut self) -> io::Result<Outcome> {
        let unfinished = self.run.records > 0 && self.run.identity.is_some() && !self.run.summary_seen;
        let last = self.run.last_place.clone();
        let last_wall = self.run.last_wall;
        let heartbeat_s = self.run.heartbeat_s;
        self.end_run()?;
        if unfinished {
            self.totals.runs_without_summary += 1;
            let gap = Gap {
                kind: "no-summary",
                wall_ns: Some(last_wall).filter(|w| *w > 0),
                detail: self.unfinished_detail(last_wall, heartbeat_s),
                lost: None,
                file: last.as_ref().map(|p| p.file.to_string()).unwrap_or_default(),
                line: last.as_ref().map(|p| p.line).unwrap_or(0),
            };
            self.show_gap(&gap)?;
        }
        let (orphans, notes) = self.stores.orphans();
        let orphans: Vec<store::Orphan> = if self.opts.chain_filtered() {
            Vec::new()
        } else {
            orphans.into_iter().filter(|o| self.opts.in_range(o.mtime_wall_ns)).collect()
        };
        self.totals.orphaned = orphans.len() as u64;
        self.print_summary(&orphans, &notes)?;
        self.out.flush()?;
        self.err.flush()?;
        Ok(Outcome { totals: self.totals.clone() })
    }

    /// What a last run without a summary means: with heartbeats, whether
    /// the tracer is still running (its last heartbeat is recent) or died.
    fn unfinished_detail(&mut self, last_wall: u64, heartbeat_s: Option<u64>) -> String {
        let n = self.run.number;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        match heartbeat_s {
            Some(every) if every > 0 && last_wall > 0 && now > last_wall => {
                let silent = (now - last_wall) / 1_000_000_000;
                if silent > every.saturating_mul(DEAD_AFTER_INTERVALS) {
                    self.totals.tracer_deaths += 1;
                    format!("run {n} ends without a summary record and its last heartbeat (every {every} s) is {silent} s old: the tracer died (killed, crashed, or the host went down)")
                } else {
                    format!("run {n} ends without a summary record, but its last heartbeat is {silent} s old: the tracer is still running")
                }
            }
            _ => format!("run {n} ends without a summary record: the tracer was killed, crashed, or is still running"),
        }
    }

    /// The next record read starts a log set of its own: unless it is a
    /// header of the current run, a new run begins.
    pub fn begin_set(&mut self) {
        self.set_start = true;
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    fn bad_input(&mut self, file: &str, line: Option<u64>, what: &str) -> io::Result<()> {
        self.totals.bad_lines += 1;
        let at = match line {
            Some(l) => format!("{file}:{l}"),
            None => file.to_string(),
        };
        if self.opts.strict {
            writeln!(self.err, "crashtrace: {at}: {what}; stopping (--strict)")?;
            self.stopped = true;
            Ok(())
        } else {
            self.say(file, &format!("crashtrace: {at}: {what}; skipped"))
        }
    }

    /// Prints one complaint about a file, up to a cap per file: a file of
    /// junk must not flood the terminal.
    fn say(&mut self, file: &str, message: &str) -> io::Result<()> {
        self.errors_in_file += 1;
        if self.errors_in_file <= MAX_ERRORS_PRINTED {
            writeln!(self.err, "{message}")?;
        } else if self.errors_in_file == MAX_ERRORS_PRINTED + 1 {
            writeln!(self.err, "crashtrace: {file}: more bad or torn lines; they are counted, not printed")?;
        }
        Ok(())
    }

    fn torn(&mut self, place: Place, len: usize, terminated: bool) -> io::Result<()> {
        self.totals.torn_lines += 1;
        let what = if terminated {
            // A later run ended the cut line before appending its own.
            format!("torn record ({len} bytes): a write was cut off (tracer killed, or disk full); the records around it are kept")
        } else {
            format!("torn last line ({len} bytes, no newline): a write was cut off; everything before it is kept")
        };
        self.say(&place.file.clone(), &format!("crashtrace: {place}: {what}"))?;
        let gap = Gap {
            kind: "torn",
            wall_ns: Some(self.run.last_wall).filter(|w| *w > 0),
            detail: format!("a record was cut off mid-write ({len} bytes kept): the tracer was killed or the disk was full; the record is lost"),
            lost: None,
            file: place.file.to_string(),
            line: place.line,
        };
        self.push_gap(self.watermark, gap)
    }

    fn record(&mut self, line: Line, place: Place) -> io::Result<()> {
        self.totals.records += 1;
        if self.check_sequence(&line, &place)? {
            return Ok(());
        }
        if std::mem::take(&mut self.set_start) && !matches!(line.record, Record::Header(_)) {
            self.start_run(None, &place)?;
        }
        if let Record::Header(h) = line.record {
            return self.on_header(h, place);
        }
        let uid = match &line.record {
            Record::Verdict(c) => line.chain_uid.clone().or_else(|| line.run.as_deref().map(|r| crate::record::chain_uid(r, c.id))),
            _ => None,
        };
        self.run.records += 1;
        self.run.last_place = Some(place.clone());
        match line.record {
            Record::Header(_) => Ok(()),
            Record::Event(e) => self.on_event(e),
            Record::Verdict(c) => self.on_verdict(*c, uid, place),
            Record::Loss(l) => self.on_loss(l, place),
            Record::Summary(s) => self.on_summary(s, place),
            Record::Watched(w) => self.on_watched(w, place),
            Record::Heartbeat(h) => {
                self.totals.heartbeats += 1;
                self.run.heartbeat_s = Some(h.interval_s);
                if self.run.mono_to_wall.is_some() {
                    self.run.last_wall = self.run.last_wall.max(self.run.wall(h.ts_ns));
                }
                Ok(())
            }
        }
    }

    /// Checks a record's place in its run (run id and sequence number, where
    /// the log has them): true if it was read before and is to be skipped.
    /// Gaps and reordering are shown; the record is used either way.
    fn check_sequence(&mut self, line: &Line, place: &Place) -> io::Result<bool> {
        // The header and settings copied at the start of a rotated-in file
        // repeat records on purpose.
        let (Some(run), Some(seq), None) = (&line.run, line.seq, line.file) else { return Ok(false) };
        // Looked up before inserting: a run id copied for every record was
        // an allocation per line.
        if !self.sequences.contains_key(run.as_str()) {
            self.sequences.insert(run.clone(), Sequence::default());
        }
        let Some(s) = self.sequences.get_mut(run.as_str()) else { return Ok(false) };
        if s.seen.len() >= MAX_SEQS_KEPT {
            s.seen.clear();
        }
        if !s.seen.insert(seq) {
            self.totals.duplicate_records += 1;
            if !std::mem::replace(&mut s.duplicates_said, true) {
                let gap = Gap {
                    kind: "duplicate",
                    wall_ns: None,
                    detail: format!(
                        "records of run {run} read a second time from here on (the same log given twice, or a copy): skipped, not counted again"
                    ),
                    lost: None,
                    file: place.file.to_string(),
                    line: place.line,
                };
                self.show_gap(&gap)?;
            }
            return Ok(true);
        }
        let highest = s.highest;
        s.highest = Some(highest.map_or(seq, |h| h.max(seq)));
        match highest {
            Some(h) if seq > h.saturating_add(1) => {
                let missing = seq - h - 1;
                self.totals.missing_records = self.totals.missing_records.saturating_add(missing);
                let gap = Gap {
                    kind: "missing",
                    wall_ns: None,
                    detail: format!(
                        "{missing} records of run {run} are missing here (sequence {} to {}): a rotated file deleted or not given, or lines cut out",
                        h + 1,
                        seq - 1
                    ),
                    lost: Some(missing),
                    file: place.file.to_string(),
                    line: place.line,
                };
                self.push_gap(self.watermark, gap)?;
            }
            Some(h) if seq < h => {
                // It fills a hole counted as missing when a later record came first.
                self.totals.reordered_records += 1;
                self.totals.missing_records = self.totals.missing_records.saturating_sub(1);
            }
            _ => {}
        }
        Ok(false)
    }

    fn on_header(&mut self, h: Header, place: Place) -> io::Result<()> {
        let identity = (h.boot_id.clone(), h.start_mono_ns, h.start_wall_ns);
        if self.run.identity.as_ref() == Some(&identity) {
            // The same run continued in a rotated-in file.
            self.run.last_place = Some(place);
            return Ok(());
        }
        self.start_run(Some(&h), &place)?;
        self.run.identity = Some(identity);
        self.run.hostname = Some(h.hostname.clone()).filter(|s| !s.is_empty());
        self.run.boot_id = Some(h.boot_id.clone()).filter(|s| !s.is_empty());
        self.run.mono_to_wall = Some(h.start_wall_ns as i128 - h.start_mono_ns as i128);
        self.run.last_wall = h.start_wall_ns;
        self.run.records = 1;
        self.run.last_place = Some(place);
        self.stores.saw_wall(h.start_wall_ns);
        if let Some(s) = &h.core_settings {
            self.run.settings_known = true;
            self.correlator.feed(&Event {
                ts_ns: h.start_mono_ns,
                cpu: 0,
                task: Proc::default(),
                cgroup_id: 0,
                body: Body::CoreSettings(s.clone()),
            });
        }
        Ok(())
    }

    /// Ends the current run and starts the next (with `header`, or none).
    fn start_run(&mut self, header: Option<&Header>, place: &Place) -> io::Result<()> {
        let previous = (self.run.records > 0).then(|| {
            (self.run.number, self.run.identity.is_some() && !self.run.summary_seen, self.run.last_wall, self.run.last_place.clone())
        });
        let heartbeat_s = self.run.heartbeat_s;
        // Same boot and host: the tracer was started again. Otherwise the
        // host rebooted, or these are logs of another host.
        let same_boot = match (header, &self.run.identity) {
            (Some(h), Some((boot, _, _))) => *boot == h.boot_id && self.run.hostname.as_deref().unwrap_or("") == h.hostname,
            _ => false,
        };
        self.end_run()?;
        let number = self.run.number + 1;
        self.run = Run { number, ..Run::default() };
        self.totals.runs += 1;
        if let Some((n, unfinished, last_wall, last_place)) = previous {
            let wall = header.map(|h| h.start_wall_ns).filter(|w| *w > 0);
            let ended = match (last_wall, &last_place) {
                (0, _) | (_, None) => String::new(),
                (w, Some(p)) => format!("; its last record is at {} ({p})", format_utc(w)),
            };
            // With heartbeats, a long silence before the next start means
            // the tracer was dead all that time, not killed just before.
            let silent_s = match (header, last_wall) {
                (Some(h), w) if w > 0 && h.start_wall_ns > w => Some((h.start_wall_ns - w) / 1_000_000_000),
                _ => None,
            };
            let died = match (unfinished, heartbeat_s, silent_s) {
                (true, Some(every), Some(silent)) if every > 0 && silent > every.saturating_mul(DEAD_AFTER_INTERVALS) => {
                    Some(format!(
                        "died: no record or heartbeat (every {every} s) for {silent} s before the next run started, so it was dead, not quiet"
                    ))
                }
                _ => None,
            };
            if died.is_some() {
                self.totals.tracer_deaths += 1;
            }
            let how = if unfinished {
                self.totals.runs_without_summary += 1;
                died.as_deref().unwrap_or("ended without a summary record (killed, crashed, or the host went down)")
            } else {
                "stopped"
            };
            let detail = match header {
                Some(_) if same_boot => {
                    format!("the tracer restarted: run {n} {how}{ended}; crashes in between were not traced")
                }
                Some(_) => format!("a new tracer run begins on another boot or host: run {n} {how}{ended}"),
                None => format!("a log without a header record begins: run {n} {how}{ended}"),
            };
            if same_boot {
                self.totals.restarts += 1;
            }
            let gap = Gap { kind: "restart", wall_ns: wall, detail, lost: None, file: place.file.to_string(), line: place.line };
            self.show_gap(&gap)?;
        }
        self.show_run(header, place)
    }

    /// Ends every chain of the run and shows all that waits.
    fn end_run(&mut self) -> io::Result<()> {
        for chain in self.correlator.flush() {
            self.insert_rebuilt(chain);
        }
        self.release(true)?;
        self.correlator = Correlator::new(Config::default());
        self.next_tick_ns = 0;
        self.watermark = 0;
        Ok(())
    }

    fn on_event(&mut self, rec: EventRecord) -> io::Result<()> {
        let ev = rec.event;
        self.stores.saw_wall(rec.wall_ns);
        self.run.last_wall = self.run.last_wall.max(rec.wall_ns);
        if self.run.mono_to_wall.is_none() {
            self.run.mono_to_wall = Some(rec.wall_ns as i128 - ev.ts_ns as i128);
        }
        if let Body::CoreSettings(s) = &ev.body {
            // The copy a rotated-in file starts with changes nothing.
            if self.correlator.settings() == Some(s) {
                return Ok(());
            }
            self.run.settings_known = true;
        }
        self.totals.events += 1;
        if ev.ts_ns >= self.next_tick_ns {
            for chain in self.correlator.tick(ev.ts_ns) {
                self.insert_rebuilt(chain);
            }
            self.next_tick_ns = ev.ts_ns.saturating_add(TICK_NS);
        }
        self.watermark = self.watermark.max(ev.ts_ns);
        // The children the watched pid forks are in scope too, and the
        // pattern writes by collectors in scope (as live learns them).
        let _ = self.scope.event(&ev, &Replayed(&self.correlator));
        for chain in self.correlator.feed(&ev) {
            self.insert_rebuilt(chain);
        }
        self.release(false)
    }

    fn on_verdict(&mut self, chain: Chain, uid: Option<String>, place: Place) -> io::Result<()> {
        self.totals.verdict_records += 1;
        if self.run.mono_to_wall.is_some() {
            self.stores.saw_wall(self.run.wall(chain.first_ts_ns));
        }
        self.insert_recorded(chain, uid, place);
        self.release(false)
    }

    fn on_loss(&mut self, loss: Loss, place: Place) -> io::Result<()> {
        self.totals.loss_records += 1;
        if loss.source == "kernel" {
            self.totals.lost_kernel = self.totals.lost_kernel.saturating_add(loss.total);
        }
        let parts: Vec<String> = loss.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let gap = Gap {
            kind: "loss",
            wall_ns: self.run.mono_to_wall.map(|_| self.run.wall(loss.ts_ns)),
            detail: format!("{} events lost ({}): {}; chains around here may miss evidence", loss.total, loss.source, parts.join(" ")),
            lost: Some(loss.total),
            file: place.file.to_string(),
            line: place.line,
        };
        self.push_gap(loss.ts_ns, gap)
    }

    fn on_summary(&mut self, s: Summary, place: Place) -> io::Result<()> {
        self.run.summary_seen = true;
        self.totals.log_write_failures = self.totals.log_write_failures.saturating_add(s.log_write_failures);
        self.totals.log_sync_failures = self.totals.log_sync_failures.saturating_add(s.log_sync_failures);
        let mut missing = Vec::new();
        if s.log_write_failures > 0 {
            missing.push(format!("{} records could not be written to the log (disk full or I/O error)", s.log_write_failures));
        }
        if s.log_sync_failures > 0 {
            missing.push(format!("{} fsyncs of the log failed (records before them may not be on disk)", s.log_sync_failures));
        }
        if s.decode_errors > 0 {
            missing.push(format!("{} ring-buffer records could not be decoded", s.decode_errors));
        }
        if missing.is_empty() {
            return Ok(());
        }
        let gap = Gap {
            kind: "unwritten",
            wall_ns: Some(self.run.last_wall).filter(|w| *w > 0),
            detail: format!("run {}: {}; the log misses them", self.run.number, missing.join("; ")),
            lost: Some(s.log_write_failures.saturating_add(s.decode_errors)),
            file: place.file.to_string(),
            line: place.line,
        };
        self.push_gap(self.watermark, gap)
    }

    /// A watched pid's state (`--pid`), e.g. frozen in its crash handler:
    /// shown in time order among the chains.
    fn on_watched(&mut self, w: Watched, place: Place) -> io::Result<()> {
        if !self.scope.watched_record(w.pid) {
            return Ok(());
        }
        let evidence = if w.evidence.is_empty() { String::new() } else { format!(": {}", w.evidence.join("; ")) };
        let item = Gap {
            kind: "watched",
            wall_ns: self.run.mono_to_wall.map(|_| self.run.wall(w.ts_ns)),
            detail: format!("watched pid {} is {}{evidence}", w.pid, w.state),
            lost: None,
            file: place.file.to_string(),
            line: place.line,
        };
        self.push_gap(w.ts_ns, item)
    }

    fn push_gap(&mut self, ts: u64, gap: Gap) -> io::Result<()> {
        self.seq += 1;
        self.pending.insert((ts, self.seq), Item::Gap(gap));
        self.release(false)
    }

    /// Pairs a verdict record with a waiting rebuild, or waits for one.
    fn insert_recorded(&mut self, chain: Chain, uid: Option<String>, place: Place) {
        let key = self.pending_chain(&chain, |s| s.recorded.is_none() && s.rebuilt.as_ref().map(|r| same_crash(r, &chain)).unwrap_or(false));
        match key.and_then(|k| self.pending.get_mut(&k)) {
            Some(Item::Chain(s)) => {
                s.recorded = Some((chain, place));
                s.uid = uid;
            }
            _ => {
                let (tgid, first_ts_ns) = (chain.crasher.tgid, chain.first_ts_ns);
                let slot = Slot { recorded: Some((chain, place)), uid, rebuilt: None, stamp: self.watermark };
                self.insert_slot(tgid, first_ts_ns, slot);
            }
        }
    }

    /// Pairs a rebuilt chain with a waiting verdict record, or waits for one.
    fn insert_rebuilt(&mut self, mut chain: Chain) {
        if !self.run.settings_known && chain.dump.is_some() {
            // Without core_pattern the rebuild guesses an empty pattern.
            chain.verdict = Some(Verdict::Unknown);
            chain.reason = "rebuilt from events, but the log holds no core settings (no header or core-settings record) before this crash".into();
            chain.missing = Some("core-settings".into());
        }
        let key = self.pending_chain(&chain, |s| s.rebuilt.is_none() && s.recorded.as_ref().map(|(r, _)| same_crash(r, &chain)).unwrap_or(false));
        match key.and_then(|k| self.pending.get_mut(&k)) {
            Some(Item::Chain(s)) => s.rebuilt = Some(chain),
            _ => {
                let (tgid, first_ts_ns) = (chain.crasher.tgid, chain.first_ts_ns);
                let slot = Slot { recorded: None, uid: None, rebuilt: Some(chain), stamp: self.watermark };
                self.insert_slot(tgid, first_ts_ns, slot);
            }
        }
    }

    /// The first waiting chain (in `pending`'s order) of `chain`'s process
    /// that `pick` accepts.
    fn pending_chain(&self, chain: &Chain, pick: impl Fn(&Slot) -> bool) -> Option<(u64, u64)> {
        let keys = self.pending_by_tgid.get(&chain.crasher.tgid)?;
        keys.iter()
            .copied()
            .filter(|k| matches!(self.pending.get(k), Some(Item::Chain(s)) if pick(s)))
            .min()
    }

    fn insert_slot(&mut self, tgid: u32, first_ts_ns: u64, slot: Slot) {
        self.seq += 1;
        let key = (first_ts_ns, self.seq);
        self.pending.insert(key, Item::Chain(Box::new(slot)));
        self.pending_by_tgid.entry(tgid).or_default().push(key);
    }

    /// Forgets a chain taken out of `pending` from the tgid index.
    fn unindex(&mut self, key: (u64, u64), slot: &Slot) {
        let Some(tgid) = slot.recorded.as_ref().map(|(c, _)| c.crasher.tgid).or(slot.rebuilt.as_ref().map(|c| c.crasher.tgid)) else {
            return;
        };
        if let Some(keys) = self.pending_by_tgid.get_mut(&tgid) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.pending_by_tgid.remove(&tgid);
            }
        }
    }

    /// Shows waiting items from the oldest while they are ready.
    fn release(&mut self, all: bool) -> io::Result<()> {
        loop {
            let over = self.pending.len() > MAX_PENDING;
            let Some(entry) = self.pending.first_entry() else { break };
            let ready = all
                || over
                || match entry.get() {
                    Item::Gap(_) => true,
                    Item::Chain(s) => match (&s.recorded, &s.rebuilt) {
                        (Some(_), Some(_)) => true,
                        // The replay ends a chain at the latest after the
                        // idle timeout; its rebuild cannot come later.
                        (Some((c, _)), None) => {
                            self.watermark >= s.stamp.max(c.last_ts_ns).saturating_add(self.idle_ns).saturating_add(HOLD_NS)
                        }
                        _ => self.watermark >= s.stamp.saturating_add(HOLD_NS),
                    },
                };
            if !ready {
                break;
            }
            match self.pending.pop_first() {
                Some((key, Item::Chain(slot))) => {
                    self.unindex(key, &slot);
                    self.show_chain(*slot)?
                }
                Some((_, Item::Gap(gap))) => self.show_gap(&gap)?,
                None => break,
            }
        }
        Ok(())
    }

    fn show_chain(&mut self, slot: Slot) -> io::Result<()> {
        let Slot { recorded, rebuilt, uid, .. } = slot;
        let (chain, place, rebuilt) = match (recorded, rebuilt) {
            (Some((c, p)), r) => (c, Some(p), r),
            (None, Some(r)) => (r, None, None),
            (None, None) => return Ok(()),
        };
        self.totals.chains_total += 1;
        let mono_to_wall = self.run.mono_to_wall.unwrap_or(0);
        let start_wall = self.run.wall(chain.first_ts_ns);
        let core_uses_pid = self.correlator.settings().map(|s| s.core_uses_pid);
        let core = self.stores.reconcile(&ChainContext {
            chain: &chain,
            wall_start_ns: if self.run.mono_to_wall.is_some() { start_wall } else { 0 },
            hostname: self.run.hostname.as_deref(),
            boot_id: self.run.boot_id.as_deref(),
            core_uses_pid,
        });
        self.scope.note_chain(&chain);
        let wanted = self.scope.chain(&chain)
            && self.opts.verdict.map(|f| f.matches(chain.verdict)).unwrap_or(true)
            && self.opts.in_range(start_wall);
        if !wanted {
            return Ok(());
        }
        let verdict = chain.verdict.unwrap_or(Verdict::Unknown);
        let t = &mut self.totals;
        t.chains_shown += 1;
        if place.is_some() {
            t.shown_from_verdict_records += 1;
        } else {
            t.shown_rebuilt_only += 1;
        }
        let differs = rebuilt.as_ref().map(|r| r.verdict != chain.verdict).unwrap_or(false);
        if differs {
            t.shown_rebuilt_differs += 1;
        }
        *t.verdicts.entry(verdict.as_str().to_string()).or_default() += 1;
        if verdict.is_dropped() {
            *t.drops.entry(verdict.as_str().to_string()).or_default() += 1;
        }
        if chain.misleading_core_dumped() {
            t.kernel_said_dumped_but_dropped += 1;
        }
        if matches!(core, Some(CoreStatus::Unaccounted { .. })) {
            t.unaccounted += 1;
        }
        let mut key = (chain.signal.clone(), chain.crasher.comm.clone(), chain.cgroup_id, verdict.as_str().to_string());
        if self.table.len() >= MAX_ROWS && !self.table.contains_key(&key) {
            key = ("(other)".into(), "(other)".into(), 0, key.3);
        }
        *self.table.entry(key).or_default() += 1;

        let shown = ShownChain {
            chain: &chain,
            chain_uid: uid.as_deref(),
            place: place.as_ref(),
            rebuilt: rebuilt.as_ref(),
            core: core.as_ref(),
            run: self.run.number,
            start_wall_ns: start_wall,
            mono_to_wall,
        };
        self.printer.chain(&mut self.out, &shown)
    }

    fn show_gap(&mut self, gap: &Gap) -> io::Result<()> {
        if let Some(w) = gap.wall_ns
            && !self.opts.in_range(w)
        {
            return Ok(());
        }
        self.printer.gap(&mut self.out, gap)
    }

    fn show_run(&mut self, header: Option<&Header>, place: &Place) -> io::Result<()> {
        self.printer.run(&mut self.out, &ShownRun { run: self.run.number, place, header })
    }

    fn rows(&self) -> Vec<Row> {
        self.table
            .iter()
            .map(|((signal, comm, cgroup_id, verdict), count)| Row {
                signal: signal.clone(),
                comm: comm.clone(),
                cgroup_id: *cgroup_id,
                verdict: verdict.clone(),
                count: *count,
            })
            .collect()
    }

    fn print_summary(&mut self, orphans: &[store::Orphan], notes: &[String]) -> io::Result<()> {
        let summary = ShownSummary { totals: &self.totals, crashes: self.rows(), orphaned_cores: orphans, notes };
        self.printer.summary(&mut self.out, &summary)
    }
}

/// A line that looks like a torn write: it stops mid-record (the start of a
/// record and then nothing). Whether it is one depends on where it is (see
/// [`Report::read`]).
fn is_torn(e: &BadLine, terminated: bool, len: usize) -> bool {
    match e {
        BadLine::Truncated { .. } => true,
        // A last line cut in the middle of a multi-byte character.
        BadLine::NotUtf8 { column } => !terminated && column + 3 >= len,
        _ => false,
    }
}

/// Whether a verdict record and a rebuilt chain are the same crash: same
/// process, and their evidence overlaps in time.
fn same_crash(a: &Chain, b: &Chain) -> bool {
    a.crasher.tgid == b.crasher.tgid
        && (a.first_ts_ns == b.first_ts_ns || (a.first_ts_ns <= b.last_ts_ns && b.first_ts_ns <= a.last_ts_ns))
}

#[cfg(test)]
mod tests;

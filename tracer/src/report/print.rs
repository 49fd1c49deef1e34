//! How `report` prints what it found: text for people or JSON Lines, one
//! [`Printer`] each, chosen once from `--json`. The report engine hands
//! each chain, gap, run and the summary to its printer and does not know
//! which format it feeds.

use std::{
    fmt::Write as _,
    io::{self, Write},
};

use serde::Serialize;

use super::{
    store::{CoreStatus, Orphan},
    time::format_utc,
    Gap, Place, Totals,
};
use crate::{
    chain::Chain,
    record::{Document, Header},
    render::{esc, Block, Escaped, Quoted, Section, Style},
    verdict::Verdict,
};

/// A chain as shown: the chain, where it came from, and what was found.
pub(super) struct ShownChain<'a> {
    pub chain: &'a Chain,
    /// The chain's name across runs and hosts, from its verdict record;
    /// None for a chain rebuilt from events alone (the live tracer never
    /// named it) or a log without run ids.
    pub chain_uid: Option<&'a str>,
    /// The verdict record's place, or None for a chain rebuilt from events alone.
    pub place: Option<&'a Place>,
    /// The replay's chain beside a verdict record.
    pub rebuilt: Option<&'a Chain>,
    pub core: Option<&'a CoreStatus>,
    pub run: u32,
    pub start_wall_ns: u64,
    pub mono_to_wall: i128,
}

/// A tracer run begins.
pub(super) struct ShownRun<'a> {
    pub run: u32,
    pub place: &'a Place,
    pub header: Option<&'a Header>,
}

/// One row of the summary table.
#[derive(Serialize)]
pub(super) struct Row {
    pub signal: String,
    pub comm: String,
    pub cgroup_id: u64,
    pub verdict: String,
    pub count: u64,
}

#[derive(Serialize)]
pub(super) struct ShownSummary<'a> {
    #[serde(flatten)]
    pub totals: &'a Totals,
    pub crashes: Vec<Row>,
    pub orphaned_cores: &'a [Orphan],
    pub notes: &'a [String],
}

pub(super) trait Printer {
    fn chain(&self, out: &mut dyn Write, c: &ShownChain<'_>) -> io::Result<()>;
    fn gap(&self, out: &mut dyn Write, gap: &Gap) -> io::Result<()>;
    fn run(&self, out: &mut dyn Write, run: &ShownRun<'_>) -> io::Result<()>;
    fn summary(&self, out: &mut dyn Write, s: &ShownSummary<'_>) -> io::Result<()>;
}

pub(super) fn printer(json: bool, list: bool, style: Style) -> Box<dyn Printer> {
    match (list, json) {
        (true, json) => Box::new(ListPrinter { json, heading_done: std::cell::Cell::new(false) }),
        (false, true) => Box::new(JsonPrinter),
        (false, false) => Box::new(TextPrinter { style }),
    }
}

/// `report list`: one line per crash, like `coredumpctl list`; runs, gaps
/// and the summary are left out (the full report has them).
struct ListPrinter {
    json: bool,
    heading_done: std::cell::Cell<bool>,
}

/// One crash as `report list` shows it.
#[derive(Serialize)]
pub(super) struct ListRow {
    /// RFC 3339, UTC.
    pub time: String,
    pub pid: u32,
    pub signal: String,
    pub verdict: String,
    /// `present` (found in a store), `missing` (stored, but not found),
    /// `stored` (not checked), `none` (dropped) or `-` (not known).
    pub core: &'static str,
    pub comm: String,
}

impl ListRow {
    pub(super) fn of(c: &ShownChain<'_>) -> ListRow {
        let verdict = c.chain.verdict.unwrap_or(Verdict::Unknown);
        let core = match c.core {
            Some(CoreStatus::Found { .. }) => "present",
            Some(CoreStatus::Unaccounted { .. }) => "missing",
            _ if verdict == Verdict::Stored => "stored",
            _ if verdict.is_dropped() => "none",
            _ => "-",
        };
        ListRow {
            time: format_utc(c.start_wall_ns),
            pid: c.chain.crasher.tgid,
            signal: c.chain.signal.clone(),
            verdict: verdict.as_str().to_string(),
            core,
            comm: c.chain.crasher.comm.clone(),
        }
    }

    /// The text line; columns as wide as their usual values.
    fn text(&self) -> String {
        format!("{:<24}  {:>7}  {:<8} {:<30} {:<7}  {}", self.time, self.pid, self.signal, self.verdict, self.core, self.comm)
    }
}

impl Printer for ListPrinter {
    fn chain(&self, out: &mut dyn Write, c: &ShownChain<'_>) -> io::Result<()> {
        let row = ListRow::of(c);
        if self.json {
            return json_line(out, "crash", &row);
        }
        if !self.heading_done.replace(true) {
            let heading = ListRow {
                time: "TIME (UTC)".into(),
                pid: 0,
                signal: "SIG".into(),
                verdict: "VERDICT".into(),
                core: "CORE",
                comm: "COMM".into(),
            };
            writeln!(out, "{}", heading.text().replacen("      0", "    PID", 1))?;
        }
        writeln!(out, "{}", row.text())
    }

    fn gap(&self, _out: &mut dyn Write, _gap: &Gap) -> io::Result<()> {
        Ok(())
    }

    fn run(&self, _out: &mut dyn Write, _run: &ShownRun<'_>) -> io::Result<()> {
        Ok(())
    }

    fn summary(&self, out: &mut dyn Write, s: &ShownSummary<'_>) -> io::Result<()> {
        if !self.json && !self.heading_done.get() {
            writeln!(out, "no crashes in these logs{}", if s.totals.chains_total > 0 { " match the filters" } else { "" })?;
        }
        Ok(())
    }
}

/// JSON Lines, each a [`Document`].
struct JsonPrinter;

#[derive(Serialize)]
struct ChainOut<'a> {
    #[serde(flatten)]
    chain: &'a Chain,
    /// As in the log's verdict record.
    #[serde(skip_serializing_if = "Option::is_none")]
    chain_uid: Option<&'a str>,
    report: ChainNote<'a>,
}

#[derive(Serialize)]
struct ChainNote<'a> {
    run: u32,
    /// "verdict-record" or "rebuilt".
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    /// The verdict the replayed events give, when there is a verdict record.
    #[serde(skip_serializing_if = "Option::is_none")]
    rebuilt_verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebuilt_reason: Option<&'a str>,
    start_wall_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    core: Option<&'a CoreStatus>,
}

#[derive(Serialize)]
struct RunOut<'a> {
    run: u32,
    file: &'a str,
    line: u64,
    header: Option<&'a Header>,
}

fn json_line<T: Serialize>(out: &mut dyn Write, kind: &'static str, body: &T) -> io::Result<()> {
    // Serialised first, so a closed stdout shows as the io error it is.
    let mut json = serde_json::to_vec(&Document::new(kind, body)).map_err(io::Error::other)?;
    json.push(b'\n');
    out.write_all(&json)
}

impl Printer for JsonPrinter {
    fn chain(&self, out: &mut dyn Write, c: &ShownChain<'_>) -> io::Result<()> {
        let note = ChainNote {
            run: c.run,
            source: if c.place.is_some() { "verdict-record" } else { "rebuilt" },
            file: c.place.map(|p| &*p.file),
            line: c.place.map(|p| p.line),
            rebuilt_verdict: c.rebuilt.and_then(|r| r.verdict),
            rebuilt_reason: c.rebuilt.map(|r| r.reason.as_str()),
            start_wall_ns: c.start_wall_ns,
            core: c.core,
        };
        json_line(out, "verdict", &ChainOut { chain: c.chain, chain_uid: c.chain_uid, report: note })
    }

    fn gap(&self, out: &mut dyn Write, gap: &Gap) -> io::Result<()> {
        json_line(out, "gap", gap)
    }

    fn run(&self, out: &mut dyn Write, run: &ShownRun<'_>) -> io::Result<()> {
        json_line(out, "run", &RunOut { run: run.run, file: &run.place.file, line: run.place.line, header: run.header })
    }

    fn summary(&self, out: &mut dyn Write, s: &ShownSummary<'_>) -> io::Result<()> {
        json_line(out, "report-summary", s)
    }
}

/// Text: the live verdict block with `report`'s sections added, gaps and
/// runs as rules, and the summary with its tables.
struct TextPrinter {
    style: Style,
}

impl Printer for TextPrinter {
    fn chain(&self, out: &mut dyn Write, c: &ShownChain<'_>) -> io::Result<()> {
        let chain = c.chain;
        let verdict = chain.verdict.unwrap_or(Verdict::Unknown);
        let mut block = Block::of_chain(chain, c.mono_to_wall, self.style);
        match (c.place, c.rebuilt) {
            (Some(p), Some(r)) if r.verdict == chain.verdict => {
                block.line(Section::Source, format_args!("   source     verdict record ({p}); replaying the logged events gives the same verdict"));
            }
            (Some(p), Some(r)) => {
                let rv = r.verdict.map(|v| v.as_str()).unwrap_or("unknown");
                block.line(
                    Section::Source,
                    format_args!("   source     verdict record ({p}); replaying the logged events gives {rv} instead: {}", Escaped(&r.reason)),
                );
            }
            (Some(p), None) => {
                block.line(Section::Source, format_args!("   source     verdict record ({p}); its events are not in the log"));
            }
            (None, _) => {
                block.line(
                    Section::Source,
                    format_args!("   source     rebuilt from the logged events: no verdict record (the tracer stopped before deciding)"),
                );
            }
        }
        // The live tracer's lookup is in the block already; the stores are
        // shown only where they say something else (the core moved or went).
        let live_path = c.chain.core.as_ref().and_then(|l| l.path.as_deref());
        match c.core {
            Some(CoreStatus::Found { path }) if live_path == path.to_str() => {}
            Some(CoreStatus::Found { path }) if verdict == Verdict::Stored => {
                block.line(Section::Core, format_args!("   core       {}", Escaped(&path.to_string_lossy())));
            }
            Some(CoreStatus::Found { path }) => {
                block.line(Section::Core, format_args!("   core       {} (found, although the verdict is {verdict})", Escaped(&path.to_string_lossy())));
            }
            Some(CoreStatus::Unaccounted { searched }) => {
                let dirs: Vec<String> = searched.iter().map(|d| Escaped(&d.to_string_lossy()).to_string()).collect();
                let text = format!(
                    "UNACCOUNTED  the verdict says stored, but no core is in {}",
                    if dirs.is_empty() { "any store (give --store DIR)".to_string() } else { dirs.join(", ") }
                );
                block.line(Section::Core, format_args!("   core       {}", self.style.red(&text)));
            }
            Some(CoreStatus::Unchecked { why }) => {
                block.line(Section::Core, format_args!("   core       not checked: {}", Escaped(why)));
            }
            None => {}
        }
        out.write_all(block.render().as_bytes())
    }

    fn gap(&self, out: &mut dyn Write, gap: &Gap) -> io::Result<()> {
        let when = gap.wall_ns.map(|w| format!(" {}", format_utc(w))).unwrap_or_default();
        if gap.kind == "watched" {
            return writeln!(out, "── STATE{when}: {}  [{}:{}]", Escaped(&gap.detail), Escaped(&gap.file), gap.line);
        }
        let text = format!("── GAP{when}: {}  [{}:{}]", Escaped(&gap.detail), Escaped(&gap.file), gap.line);
        writeln!(out, "{}", self.style.red(&text))
    }

    fn run(&self, out: &mut dyn Write, run: &ShownRun<'_>) -> io::Result<()> {
        let n = run.run;
        let text = match run.header {
            Some(h) => {
                let mut s = format!(
                    "── run {n}: crashtrace {} on {} (kernel {}), started {}; dump detection {}",
                    h.tracer_version,
                    h.hostname,
                    h.kernel,
                    format_utc(h.start_wall_ns),
                    h.dump_mode
                );
                if let Some(c) = &h.core_settings {
                    let _ = write!(s, "; core_pattern {}", Quoted(&c.core_pattern));
                }
                if let Some(p) = h.watched_pid {
                    let _ = write!(s, "; watching pid {p} only");
                }
                s
            }
            None => format!("── run {n}: no header record: tracer, host and start time unknown"),
        };
        writeln!(out, "{text}  [{}]", run.place)
    }

    fn summary(&self, out: &mut dyn Write, summary: &ShownSummary<'_>) -> io::Result<()> {
        let (t, rows, orphans) = (summary.totals, &summary.crashes, summary.orphaned_cores);
        let mut s = String::new();
        let _ = writeln!(s, "━━ summary");
        let _ = writeln!(
            s,
            "   read       {} files, {} lines, {} records: {} tracer runs ({} restarts), {} events",
            t.files, t.lines, t.records, t.runs, t.restarts, t.events
        );
        let _ = writeln!(
            s,
            "   chains     {} shown of {}: {} with a verdict record ({} whose events give another verdict), {} rebuilt from events alone",
            t.chains_shown, t.chains_total, t.shown_from_verdict_records, t.shown_rebuilt_differs, t.shown_rebuilt_only
        );
        let _ = writeln!(
            s,
            "   gaps       {} events lost in the kernel ({} loss records); {} records the tracer could not write; {} runs ended without a summary; {} torn lines",
            t.lost_kernel, t.loss_records, t.log_write_failures, t.runs_without_summary, t.torn_lines
        );
        if t.duplicate_records + t.missing_records + t.reordered_records + t.tracer_deaths + t.log_sync_failures > 0 {
            let _ = writeln!(
                s,
                "   sequence   {} records missing, {} read twice (skipped), {} out of order; {} tracer deaths; {} failed log fsyncs",
                t.missing_records, t.duplicate_records, t.reordered_records, t.tracer_deaths, t.log_sync_failures
            );
        }
        if t.bad_lines > 0 {
            let _ = writeln!(s, "   bad input  {} lines or files skipped (listed on stderr)", t.bad_lines);
        }
        let _ = writeln!(s, "   cores      {} unaccounted, {} orphaned", t.unaccounted, t.orphaned);
        if !rows.is_empty() {
            let w_comm = rows.iter().map(|r| esc(&r.comm).chars().count()).max().unwrap_or(0).max("EXECUTABLE".len());
            let w_verdict = rows.iter().map(|r| r.verdict.len()).max().unwrap_or(0).max("VERDICT".len());
            let _ = writeln!(s, "\n   crashes by signal, executable, cgroup and verdict");
            let _ = writeln!(s, "     {:<9} {:<w_comm$} {:>12} {:<w_verdict$} {:>8}", "SIGNAL", "EXECUTABLE", "CGROUP", "VERDICT", "COUNT");
            for r in rows {
                let _ = writeln!(s, "     {:<9} {:<w_comm$} {:>12} {:<w_verdict$} {:>8}", r.signal, esc(&r.comm), r.cgroup_id, r.verdict, r.count);
            }
        }
        if !t.drops.is_empty() {
            let _ = writeln!(s, "\n   drops by reason");
            for (v, n) in &t.drops {
                let _ = writeln!(s, "     {v:<40} {n:>8}");
            }
            if t.kernel_said_dumped_but_dropped > 0 {
                let _ = writeln!(s, "     {} of them were reported \"core dumped\" by the kernel", t.kernel_said_dumped_but_dropped);
            }
        }
        if !orphans.is_empty() {
            let _ = writeln!(s, "\n   orphaned cores (no chain in these logs accounts for them)");
            for o in orphans.iter().take(50) {
                let _ = writeln!(s, "     {}  {}", format_utc(o.mtime_wall_ns), Escaped(&o.path.to_string_lossy()));
            }
            if orphans.len() > 50 {
                let _ = writeln!(s, "     … {} more", orphans.len() - 50);
            }
        }
        for n in summary.notes {
            let _ = writeln!(s, "   note       {n}");
        }
        out.write_all(s.as_bytes())
    }
}

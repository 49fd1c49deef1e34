//! Benchmark 7: what correlating one event costs with many crash chains
//! open. The correlator alone, in the release build, through the bench-only
//! `crashtrace-bench-baseline --correlate-cost` (the shipped binary has no
//! such mode, and xtask's own build of the crate is not the optimised one).
//! Pure user space: no BPF, no lock, no core_pattern change.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{
    Ctx,
    stats::{self, min_max},
    table::{Section, Table, TargetCheck},
};

/// The open-chain counts measured; the first is the reference.
const OPENS: [u64; 4] = [10, 100, 1_000, 10_000];
/// The target: the cost per event with the most chains open, at most this
/// many times the cost with the fewest.
const TARGET_RATIO: f64 = 2.0;

/// One count's figures, as the bench binary reports them.
struct Row {
    open: u64,
    max_open: u64,
    ns_per_event: f64,
    ns_per_tick: f64,
    runs: Vec<f64>,
}

pub(super) fn run(ctx: &Ctx) -> Result<Section> {
    let list = OPENS.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut section = Section::new(
        "7. Correlation cost with many chains open",
        "The correlator alone (no BPF), in the release build: for each count, a fresh correlator gets that many \
         crashers that took a fatal default action and never exit, so their chains stay open, then one fixed \
         stream of events, the same for every count, is timed through it: per cycle a whole crash of another \
         process (fault, delivery with a core dump to a file pattern, stack, exit, the parent's SIGCHLD), a \
         SIGSEGV caught by a handler, a transient unit's cgroup made and an older one removed or emptied, and a \
         core lookup's result. Per event it does what the live pipeline does with the correlator (feed, the \
         cgroup path learned at a delivery, the chain a cgroup event belongs to); every 100 ms of event time, \
         the core lookups' list and the tick, as live's timer does. Events come 100 µs apart (10,000/s, a crash \
         storm's order), so a tick's cost is shared by 1,000 events. The counts take turns within each round; \
         the figure is the median of the rounds. max_open is raised to fit the open chains and the stream's \
         own (live's default, 4,096, would evict the oldest of 10,000), and the run fails if any chain is \
         evicted or the stream's chains do not all end with the verdicts it was built for.",
    );
    section.commands.push(format!("{} --correlate-cost {list}", ctx.show(&ctx.baseline)));
    let out = Command::new(&ctx.baseline)
        .args(["--correlate-cost", &list])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", ctx.baseline.display()))?;
    if !out.status.success() {
        bail!("{} --correlate-cost {list} failed ({})", ctx.baseline.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(text.trim())
        .with_context(|| format!("--correlate-cost printed something that is not its JSON report: {text}"))?;
    let rows = parse(&report)?;
    let reference = rows.first().map(|r| r.ns_per_event).filter(|ns| *ns > 0.0).context("no figure for the fewest open chains")?;

    let mut t = Table::new(&["open chains", "max_open", "ns per event", "ratio to 10 open", "rounds' range", "ns per tick"]);
    for r in &rows {
        let (lo, hi) = min_max(&r.runs).unwrap_or((f64::NAN, f64::NAN));
        t.row(vec![
            stats::count(r.open),
            stats::count(r.max_open),
            stats::rate(r.ns_per_event),
            format!("{:.2}×", r.ns_per_event / reference),
            format!("{} … {}", stats::rate(lo), stats::rate(hi)),
            stats::rate(r.ns_per_tick),
        ]);
    }
    section.tables.push(t);
    section.notes.push(format!(
        "{} events and {} ticks per timed run, {} rounds; \"ns per event\" is all of a run's time (ticks included) \
         over its events, \"ns per tick\" a tick's share (core lookups' list + tick) per tick.",
        stats::count(report["events"].as_u64().unwrap_or(0)),
        report["ticks"].as_u64().unwrap_or(0),
        report["reps"].as_u64().unwrap_or(0),
    ));
    let most = rows.last().context("no figure for the most open chains")?;
    let ratio = most.ns_per_event / reference;
    section.targets.push(TargetCheck::new(
        "per-event cost with 10,000 chains open within 2× of the cost with 10 open",
        format!(
            "{} ns per event with {} open, {} ns with {} open: {ratio:.2}×",
            stats::rate(most.ns_per_event),
            stats::count(most.open),
            stats::rate(reference),
            stats::count(rows[0].open)
        ),
        ratio <= TARGET_RATIO,
    ));
    Ok(section)
}

/// The rows of the bench binary's report, in the order of [`OPENS`].
fn parse(report: &Value) -> Result<Vec<Row>> {
    let results = report["results"].as_array().context("the report has no results")?;
    let rows: Vec<Row> = results
        .iter()
        .map(|r| {
            let num = |k: &str| r[k].as_f64().with_context(|| format!("a result without {k}: {r}"));
            Ok(Row {
                open: r["open"].as_u64().with_context(|| format!("a result without open: {r}"))?,
                max_open: r["max_open"].as_u64().unwrap_or(0),
                ns_per_event: num("ns_per_event")?,
                ns_per_tick: num("ns_per_tick")?,
                runs: r["runs_ns_per_event"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default(),
            })
        })
        .collect::<Result<_>>()?;
    let opens: Vec<u64> = rows.iter().map(|r| r.open).collect();
    if opens != OPENS {
        bail!("the report has figures for {opens:?} open chains, not {OPENS:?}");
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bench_binarys_report() {
        let report: Value = serde_json::from_str(
            r#"{"events":20002,"ticks":21,"reps":7,"results":[
                {"open":10,"max_open":4096,"ns_per_event":2000.0,"ns_per_tick":10.0,"runs_ns_per_event":[1900.0,2000.0]},
                {"open":100,"max_open":4100,"ns_per_event":2100.0,"ns_per_tick":10.0,"runs_ns_per_event":[]},
                {"open":1000,"max_open":5000,"ns_per_event":2500.0,"ns_per_tick":10.0,"runs_ns_per_event":[]},
                {"open":10000,"max_open":14000,"ns_per_event":5000.0,"ns_per_tick":10.0,"runs_ns_per_event":[]}]}"#,
        )
        .unwrap();
        let rows = parse(&report).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3].max_open, 14_000);
        assert_eq!(rows[0].runs, vec![1900.0, 2000.0]);
        let mut missing = report.clone();
        missing["results"].as_array_mut().unwrap().pop();
        assert!(parse(&missing).is_err());
    }
}

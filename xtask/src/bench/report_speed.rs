//! Benchmark 5: `crashtrace report` on a large log. A real log is recorded
//! first (a small crash storm traced with `--log`); its records are then
//! repeated, timestamps shifted past the previous copy, up to the event
//! count wanted. Time and peak RSS (wait4's ru_maxrss) are measured on two
//! sizes, to show whether memory depends on the log's size. When the build
//! has no working `report` command, the benchmark says so and measures
//! nothing.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    Ctx, check_interrupted,
    global::{CoreGuard, GlobalLock},
    stats::{self, median, mib},
    table::{Section, Table, TargetCheck},
    tracer::{Output, Tracer},
    workload::Spawn,
};

const SEED_CRASHES: u64 = 2_000;
const TARGET_EVENTS_PER_SEC: f64 = 1_000_000.0;

pub(super) fn run(ctx: &Ctx) -> Result<Section> {
    let sc = &ctx.scale;
    let mut section = Section::new(
        "5. Report speed",
        &format!(
            "A real log is recorded first: {} crashes traced with `--log`. Its records (events, verdicts) are \
             repeated with timestamps shifted past the previous copy until the log holds {} events, and again \
             for {} events. `crashtrace report LOG >/dev/null` is timed {} time(s) on each; peak RSS is wait4's \
             ru_maxrss.",
            stats::count(SEED_CRASHES),
            stats::count(sc.report_events),
            stats::count(sc.report_small_events),
            sc.report_runs
        ),
    );
    let seed = ctx.scratch.join("report-seed.jsonl");
    record_seed(ctx, &seed, &mut section)?;

    // Is there a report command in this build?
    let probe = Command::new(&ctx.binary).arg("report").arg(&seed).stdout(Stdio::null()).output()?;
    if !probe.status.success() {
        let why = String::from_utf8_lossy(&probe.stderr).trim().to_string();
        section.notes.push(format!("`crashtrace report` on the recorded log failed ({}): {why}", probe.status));
        section.targets.push(TargetCheck::not_measured(
            "≥ 1,000,000 events/s, memory independent of the log's size",
            format!("not measured: `crashtrace report` does not work in this build ({why})"),
        ));
        let _ = std::fs::remove_file(&seed);
        return Ok(section);
    }

    let mut t = Table::new(&["log", "size", "median time", "events/s", "peak RSS"]);
    let mut results = Vec::new();
    for events in [sc.report_small_events, sc.report_events] {
        check_interrupted()?;
        let log = ctx.scratch.join(format!("report-{events}.jsonl"));
        let made = grow(&seed, &log, events)?;
        let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        section.commands.push(format!("{} report {} >/dev/null", ctx.show(&ctx.binary), log.display()));
        let mut times = Vec::new();
        let mut rss = 0;
        for _ in 0..sc.report_runs {
            check_interrupted()?;
            let (d, maxrss) = time_report(&ctx.binary, &log)?;
            times.push(d.as_secs_f64());
            rss = rss.max(maxrss);
        }
        let _ = std::fs::remove_file(&log);
        let secs = median(&times).unwrap_or(f64::NAN);
        let rate = made as f64 / secs;
        t.row(vec![
            format!("{} events", stats::count(made)),
            format!("{:.0} MiB", size as f64 / (1 << 20) as f64),
            format!("{secs:.3} s"),
            stats::rate(rate),
            mib(rss),
        ]);
        results.push((made, rate, rss));
    }
    let _ = std::fs::remove_file(&seed);
    section.tables.push(t);
    let (small, large) = (results[0], results[1]);
    section.targets.push(TargetCheck::new(
        "≥ 1,000,000 events/s on the 1M-event log",
        format!("{} events/s on {} events", stats::rate(large.1), stats::count(large.0)),
        large.1 >= TARGET_EVENTS_PER_SEC,
    ));
    // "Independent of size": ten times the events may not cost more than a
    // quarter more memory (allocator and buffer slack).
    section.targets.push(TargetCheck::new(
        "memory independent of the log's size",
        format!(
            "{} for {} events, {} for {} events",
            mib(small.2),
            stats::count(small.0),
            mib(large.2),
            stats::count(large.0)
        ),
        (large.2 as f64) <= small.2 as f64 * 1.25,
    ));
    Ok(section)
}

/// Records a real log: a small storm of crashes (file pattern, RLIMIT_CORE=0).
fn record_seed(ctx: &Ctx, seed: &Path, section: &mut Section) -> Result<()> {
    let pidfile = ctx.scratch.join("seed-pids");
    let pattern = format!("{}/core.%p", ctx.scratch.join("cores").display());
    std::fs::create_dir_all(ctx.scratch.join("cores"))?;
    let args = vec!["--log".to_string(), seed.display().to_string(), "--color".into(), "never".into()];
    let spec = Spawn { count: SEED_CRASHES, jobs: ctx.jobs, crash_every: 1, rlimit_core: "0", rate: None };
    let spawn_args = ctx.storm.spawn_args(&spec, &pidfile);
    section.commands.push(format!(
        "{} >/dev/null &  # while: {}",
        ctx.crashtrace_cmd(&args),
        ctx.storm_cmd(&spawn_args)
    ));
    let lock = GlobalLock::acquire()?;
    let guard = CoreGuard::save(&lock)?;
    guard.set(&pattern, 16)?;
    let tracer = Tracer::start(&ctx.binary, &args, &Output::Null)?;
    let spawned = ctx.storm.spawn(&spec, &pidfile);
    std::thread::sleep(Duration::from_millis(500));
    tracer.stop()?;
    spawned?;
    let _ = std::fs::remove_file(&pidfile);
    Ok(())
}

/// Adds `by` to every `..._ns` number of a record: its timestamps.
fn shift_ns(line: &str, by: u64) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut rest = line;
    while let Some(at) = rest.find("_ns\":") {
        let (head, tail) = rest.split_at(at + 5);
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            let n: u64 = tail[..digits].parse().unwrap_or(0);
            out += &n.saturating_add(by).to_string();
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

fn record_type(line: &str) -> &str {
    line.find("\"type\":\"").map(|at| &line[at + 8..]).and_then(|r| r.find('"').map(|end| &r[..end])).unwrap_or("")
}

/// The run id a record names (`"run":"..."`), if any.
fn run_id(line: &str) -> Option<&str> {
    let at = line.find("\"run\":\"")? + 7;
    line[at..].find('"').map(|end| &line[at..at + end])
}

/// The run id of copy `copy`: the seed's for the first, then one of the
/// same length per copy. Each copy is a run of its own, as if another
/// tracer had recorded it: `report` drops a record whose run and sequence
/// number it has read already, so copies under one run id would be read
/// and thrown away, and the benchmark would time little but parsing.
fn copy_run(run: &str, copy: u64) -> String {
    if copy == 0 || run.len() < 8 {
        return run.to_string();
    }
    format!("{}{copy:08x}", &run[..run.len() - 8])
}

/// Writes `out`: the seed's header, then its events and verdicts repeated
/// (each copy later than the last, and a run of its own) until `events`
/// events, then its summary. Returns the number of events written.
fn grow(seed: &Path, out: &Path, events: u64) -> Result<u64> {
    let text = std::fs::read_to_string(seed).with_context(|| format!("reading {}", seed.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines.iter().copied().filter(|l| record_type(l) == "header").collect();
    let body: Vec<&str> =
        lines.iter().copied().filter(|l| matches!(record_type(l), "event" | "verdict" | "loss")).collect();
    let summary: Vec<&str> = lines.iter().copied().filter(|l| record_type(l) == "summary").collect();
    let per_copy = body.iter().filter(|l| record_type(l) == "event").count() as u64;
    if header.is_empty() || per_copy == 0 {
        bail!("the recorded log {} has no header or no events", seed.display());
    }
    // A copy lasts at most the seed's span; start each a second after.
    let ts: Vec<u64> = body
        .iter()
        .filter_map(|l| {
            l.find("\"ts_ns\":").and_then(|at| l[at + 8..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        })
        .collect();
    let span = ts.iter().max().copied().unwrap_or(0) - ts.iter().min().copied().unwrap_or(0) + 1_000_000_000;
    let run = body.iter().find_map(|l| run_id(l)).map(str::to_string);
    let mut w = BufWriter::new(File::create(out).with_context(|| format!("creating {}", out.display()))?);
    for h in &header {
        writeln!(w, "{h}")?;
    }
    let mut written = 0u64;
    let mut copy = 0u64;
    'outer: loop {
        for l in &body {
            if written >= events {
                break 'outer;
            }
            if record_type(l) == "event" {
                written += 1;
            }
            let shifted = shift_ns(l, copy * span);
            match &run {
                Some(run) if copy > 0 => writeln!(w, "{}", shifted.replace(run.as_str(), &copy_run(run, copy)))?,
                _ => writeln!(w, "{shifted}")?,
            }
        }
        copy += 1;
    }
    for s in &summary {
        writeln!(w, "{s}")?;
    }
    w.flush()?;
    Ok(written)
}

/// Runs `crashtrace report LOG`; wall time and peak RSS in KiB.
fn time_report(binary: &Path, log: &Path) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let child = Command::new(binary).arg("report").arg(log).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: rusage is plain old data; zeroed is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own child, valid out-pointers.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4 on crashtrace report: {}", std::io::Error::last_os_error());
    }
    let elapsed = start.elapsed();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("crashtrace report {} exited with status {status:#x}", log.display());
    }
    Ok((elapsed, usage.ru_maxrss.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_every_timestamp() {
        let l = r#"{"v":1,"type":"event","wall_ns":100,"ts_ns":7,"x":{"first_ts_ns":1},"sig":11}"#;
        assert_eq!(
            shift_ns(l, 10),
            r#"{"v":1,"type":"event","wall_ns":110,"ts_ns":17,"x":{"first_ts_ns":11},"sig":11}"#
        );
        assert_eq!(shift_ns(r#"{"a_ns":null}"#, 5), r#"{"a_ns":null}"#);
    }

    #[test]
    fn grows_a_log_to_the_event_count() {
        let dir = std::env::temp_dir().join(format!("xtask-grow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seed = dir.join("seed.jsonl");
        std::fs::write(
            &seed,
            concat!(
                "{\"v\":1,\"type\":\"header\",\"start_wall_ns\":5}\n",
                "{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":1,\"type\":\"event\",\"ts_ns\":1000}\n",
                "{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":2,\"type\":\"event\",\"ts_ns\":2000}\n",
                "{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":3,\"type\":\"verdict\",\"chain_uid\":\"0123456789abcdef-1\",\"first_ts_ns\":1000}\n",
                "{\"v\":1,\"type\":\"summary\",\"events\":2}\n",
            ),
        )
        .unwrap();
        let out = dir.join("out.jsonl");
        assert_eq!(grow(&seed, &out, 5).unwrap(), 5);
        let text = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first().copied(), Some("{\"v\":1,\"type\":\"header\",\"start_wall_ns\":5}"));
        assert_eq!(lines.iter().filter(|l| record_type(l) == "event").count(), 5);
        assert!(lines.contains(&"{\"v\":1,\"run\":\"0123456789abcdef\",\"seq\":1,\"type\":\"event\",\"ts_ns\":1000}"), "{text}");
        // The second copy starts a second after the seed's span, as a run
        // of its own (its verdict's chain too); the third likewise.
        assert!(lines.contains(&"{\"v\":1,\"run\":\"0123456700000001\",\"seq\":1,\"type\":\"event\",\"ts_ns\":1000002000}"), "{text}");
        assert!(lines.contains(&"{\"v\":1,\"run\":\"0123456700000001\",\"seq\":3,\"type\":\"verdict\",\"chain_uid\":\"0123456700000001-1\",\"first_ts_ns\":1000002000}"), "{text}");
        assert!(lines.contains(&"{\"v\":1,\"run\":\"0123456700000002\",\"seq\":1,\"type\":\"event\",\"ts_ns\":2000003000}"), "{text}");
        assert_eq!(lines.last().copied(), Some("{\"v\":1,\"type\":\"summary\",\"events\":2}"));
    }
}

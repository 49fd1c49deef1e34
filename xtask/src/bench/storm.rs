//! Benchmark 2: crash storms. Real SIGSEGV faults, as fast as the spawners
//! (one per core) can fork them, for a fixed count; once into a file
//! core_pattern on tmpfs with RLIMIT_CORE=0, once into a pipe helper that
//! reads the core and exits 0. Each round runs the storm with and without
//! crashtrace (alternating which goes first). crashtrace's `--json` stream is
//! then read back: every crash the workload made must end in a verdict record
//! with the expected verdict, and every lost event must show in `loss`
//! records and the summary.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{bail, Result};

use super::{
    bpfstats, check_interrupted,
    global::{CoreGuard, GlobalLock},
    stats::{self, median},
    stream,
    table::{Section, Table, TargetCheck},
    tracer::{Output, Tracer},
    Ctx,
};

/// Crash rate the zero-loss target is set at.
const TARGET_RATE: f64 = 2_000.0;
/// Room for late events after the workload's last reap; the tracer drains
/// its ring buffer at stop anyway.
const SETTLE: Duration = Duration::from_millis(500);
const PIPE_LIMIT: u32 = 16;

struct Setup {
    name: &'static str,
    pattern: String,
    rlimit_core: &'static str,
    expected: &'static str,
    crashes: u64,
    /// Spawner processes. A pipe crash waits for its helper, so more
    /// spawners than cores keep the machine busy.
    jobs: u32,
}

#[derive(Default)]
struct Traced {
    rate: f64,
    correct: u64,
    made: u64,
    wrong: String,
    missing: u64,
    extra: u64,
    lost_records: u64,
    lost_summary: Option<u64>,
    decode_errors: u64,
    tracer_cpu: f64,
    peak_rss_kib: u64,
    hwm_kib: u64,
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let sc = &ctx.scale;
    let cores_dir = ctx.scratch.join("cores");
    std::fs::create_dir_all(&cores_dir)?;
    let setups = [
        Setup {
            name: "file pattern, RLIMIT_CORE=0",
            pattern: format!("{}/core.%p", cores_dir.display()),
            rlimit_core: "0",
            expected: "dropped:rlimit-core",
            crashes: sc.storm_file_crashes,
            jobs: ctx.jobs,
        },
        Setup {
            name: "pipe helper (reads the core, exits 0)",
            pattern: ctx.storm.sink_pattern(),
            rlimit_core: "inf",
            expected: "stored",
            crashes: sc.storm_pipe_crashes,
            jobs: ctx.jobs * 2,
        },
    ];
    let mut section = Section::new(
        "2. Crash storm",
        &format!(
            "Real SIGSEGV faults (a write through a null pointer) from spawner processes (one per core for the \
             file setup, two per core for the pipe setup, whose crashes wait for their helper) that fork crashing \
             children back to back and reap them. {} rounds per setup; each round runs the storm once without \
             and once with crashtrace (`--json` to a file on tmpfs), alternating which goes first. Crashes/s is \
             crashes made over the workload's own elapsed time. A verdict is correct when crashtrace's verdict \
             record for that crasher pid has the expected verdict; the pids come from the workload (a pid reused \
             within a run is owed one verdict per crash). Events lost \
             are the sum of the `loss` records, checked against the summary's `lost_kernel`. core_pipe_limit is \
             {} for the pipe setup. kernel.bpf_stats_enabled is on during the storms, so the kernel times each BPF \
             program run (the last table; it adds two clock reads per run). All three settings are restored \
             afterwards. Recursion misses are runs the kernel skipped because the program was already running on \
             that CPU: events lost before they reach the ring buffer.",
            sc.storm_rounds, PIPE_LIMIT
        ),
    );
    let pidfile = ctx.scratch.join("crash-pids");
    let json = ctx.scratch.join("storm.jsonl");
    let json_args = vec!["--json".to_string()];

    let lock = GlobalLock::acquire()?;
    let guard = CoreGuard::save(&lock)?;
    let stats_on = bpfstats::StatsOn::enable(&lock)?;
    let mut hooks = Table::new(&[
        "setup",
        "hook",
        "runs per crash",
        "ns per run",
        "µs per crash",
        "recursion misses (all runs)",
    ]);
    let mut table = Table::new(&[
        "setup",
        "crashes per run",
        "crashes/s, nothing attached",
        "crashes/s, crashtrace",
        "ratio",
        "events lost (loss records / summary)",
        "correct verdicts (worst run)",
        "wrong or missing",
        "tracer CPU per run",
        "peak RSS during storm",
        "peak RSS incl. start-up (VmHWM)",
    ]);
    let mut per_run = Table::new(&["setup", "round", "crashes/s, nothing", "crashes/s, crashtrace", "lost", "correct", "wrong", "missing"]);
    for setup in &setups {
        guard.set(&setup.pattern, PIPE_LIMIT)?;
        let spawn_args = ctx.storm.spawn_args(setup.crashes, setup.jobs, 1, setup.rlimit_core, &pidfile);
        section.commands.push(format!("echo '{}' > /proc/sys/kernel/core_pattern; echo {PIPE_LIMIT} > /proc/sys/kernel/core_pipe_limit", setup.pattern));
        section.commands.push(format!("{}    # nothing attached", ctx.storm_cmd(&spawn_args)));
        section.commands.push(format!(
            "{} > {} &  # then the same storm, then kill -INT",
            ctx.crashtrace_cmd(&json_args),
            json.display()
        ));

        let mut bare = Vec::new();
        let mut traced = Vec::new();
        let mut progs: BTreeMap<String, bpfstats::Prog> = BTreeMap::new();
        let mut traced_crashes = 0u64;
        let mut notes = Vec::new();
        for round in 0..sc.storm_rounds {
            let mut round_bare = None;
            let mut round_traced: Option<Traced> = None;
            for traced_first in [round % 2 == 0, round % 2 != 0] {
                check_interrupted()?;
                if !traced_first {
                    let s = ctx.storm.spawn(setup.crashes, setup.jobs, 1, setup.rlimit_core, &pidfile)?;
                    if s.segv != setup.crashes || s.other != 0 {
                        notes.push(format!("{}: a run without the tracer made {} SIGSEGV crashes of {} ({} other exits)", setup.name, s.segv, setup.crashes, s.other));
                    }
                    round_bare = Some(s.crashes_per_sec());
                    continue;
                }
                let tracer = Tracer::start(&ctx.binary, &json_args, &Output::File(json.clone()))?;
                let from = tracer.attached_at.elapsed();
                let spawned = ctx.storm.spawn(setup.crashes, setup.jobs, 1, setup.rlimit_core, &pidfile);
                let until = tracer.attached_at.elapsed();
                std::thread::sleep(SETTLE);
                let fdinfo = bpfstats::read(tracer.pid());
                let fin = tracer.stop()?;
                let spawned = spawned?;
                match fdinfo {
                    Ok(p) => bpfstats::accumulate(&mut progs, &p),
                    Err(e) => notes.push(format!("{}: could not read the tracer's BPF program stats: {e:#}", setup.name)),
                }
                traced_crashes += spawned.segv;
                if spawned.segv != setup.crashes || spawned.other != 0 {
                    notes.push(format!(
                        "{}: a traced run made {} SIGSEGV crashes of {} ({} other exits)",
                        setup.name, spawned.segv, setup.crashes, spawned.other
                    ));
                }
                let s = stream::read(&json, &spawned.crash_pids, &ctx.storm.comm(), setup.expected)?;
                let _ = std::fs::remove_file(&json);
                let lost_summary = s.summary_u64("lost_kernel");
                for sample in &s.wrong_samples {
                    notes.push(format!("{}: a wrong verdict: `{sample}`", setup.name));
                }
                if s.summary.is_none() {
                    notes.push(format!("{}: crashtrace's stream had no summary record", setup.name));
                }
                round_traced = Some(Traced {
                    rate: spawned.crashes_per_sec(),
                    correct: s.correct,
                    made: spawned.crash_pids.len() as u64,
                    wrong: s.wrong(setup.expected),
                    missing: s.missing,
                    extra: s.extra,
                    lost_records: s.lost_in_records,
                    lost_summary,
                    decode_errors: s.summary_u64("decode_errors").unwrap_or(0),
                    tracer_cpu: fin.cpu.as_secs_f64(),
                    peak_rss_kib: fin.peak_rss_between(from, until),
                    hwm_kib: fin.hwm_kib,
                });
            }
            let (Some(b), Some(t)) = (round_bare, round_traced) else { bail!("a storm round did not run both configurations") };
            eprintln!(
                "xtask bench: storm {} round {}/{}: {:.0}/s bare, {:.0}/s traced, {}/{} correct, {} lost",
                setup.name,
                round + 1,
                sc.storm_rounds,
                b,
                t.rate,
                t.correct,
                t.made,
                t.lost_records
            );
            per_run.row(vec![
                setup.name.into(),
                (round + 1).to_string(),
                stats::rate(b),
                stats::rate(t.rate),
                format!("{} / {}", t.lost_records, t.lost_summary.map(|n| n.to_string()).unwrap_or_else(|| "?".into())),
                format!("{}/{}", t.correct, t.made),
                if t.wrong.is_empty() { "0".into() } else { t.wrong.clone() },
                t.missing.to_string(),
            ]);
            bare.push(b);
            traced.push(t);
        }

        let per_crash = |n: u64| n as f64 / traced_crashes.max(1) as f64;
        let mut in_kernel_ns = 0.0;
        for p in progs.values().filter(|p| p.run_cnt > 0 || p.recursion_misses > 0) {
            in_kernel_ns += per_crash(p.run_time_ns);
            hooks.row(vec![
                setup.name.into(),
                p.name.clone(),
                format!("{:.2}", per_crash(p.run_cnt)),
                format!("{:.0}", p.run_time_ns as f64 / p.run_cnt.max(1) as f64),
                format!("{:.2}", per_crash(p.run_time_ns) / 1e3),
                p.recursion_misses.to_string(),
            ]);
        }
        hooks.row(vec![setup.name.into(), "all hooks".into(), String::new(), String::new(), format!("{:.2}", in_kernel_ns / 1e3), String::new()]);
        let rates: Vec<f64> = traced.iter().map(|t| t.rate).collect();
        let ratios: Vec<f64> = traced.iter().zip(&bare).map(|(t, b)| t.rate / b).collect();
        let lost: u64 = traced.iter().map(|t| t.lost_records).sum();
        let lost_summary: Option<u64> = traced.iter().map(|t| t.lost_summary).sum();
        let worst = traced.iter().min_by(|a, b| (a.correct * b.made).cmp(&(b.correct * a.made))).expect("at least one round");
        let wrong_or_missing: u64 = traced.iter().map(|t| t.made - t.correct.min(t.made)).sum();
        let all_right = traced.iter().all(|t| t.correct == t.made && t.made == setup.crashes && t.extra == 0);
        let decode_errors: u64 = traced.iter().map(|t| t.decode_errors).sum();
        let rate = median(&rates).unwrap_or(0.0);
        let bare_rate = median(&bare).unwrap_or(0.0);
        table.row(vec![
            setup.name.into(),
            stats::count(setup.crashes),
            stats::rate(bare_rate),
            stats::rate(rate),
            format!("{:.2}", median(&ratios).unwrap_or(f64::NAN)),
            format!("{} / {}", lost, lost_summary.map(|n| n.to_string()).unwrap_or_else(|| "?".into())),
            format!("{}/{} ({:.2}%)", worst.correct, worst.made, 100.0 * worst.correct as f64 / worst.made.max(1) as f64),
            stats::count(wrong_or_missing),
            format!("{:.2} s", median(&traced.iter().map(|t| t.tracer_cpu).collect::<Vec<_>>()).unwrap_or(f64::NAN)),
            stats::mib(traced.iter().map(|t| t.peak_rss_kib).max().unwrap_or(0)),
            stats::mib(traced.iter().map(|t| t.hwm_kib).max().unwrap_or(0)),
        ]);
        if lost_summary.is_some_and(|s| s != lost) {
            notes.push(format!("{}: the loss records add up to {lost} but the summaries say {}", setup.name, lost_summary.unwrap_or(0)));
        }
        if decode_errors > 0 {
            notes.push(format!("{}: {decode_errors} undecodable events", setup.name));
        }
        if let Some(t) = traced.iter().find(|t| t.extra > 0) {
            notes.push(format!("{}: {} verdict records more than crashes made for the same pids", setup.name, t.extra));
        }
        section.notes.extend(notes);

        let measured = format!(
            "{} crashes/s with crashtrace ({} without), {lost} lost, worst run {}/{} correct",
            stats::rate(rate),
            stats::rate(bare_rate),
            worst.correct,
            worst.made
        );
        let target = format!("{}: 0 lost and 100% correct verdicts at ≥ 2,000 crashes/s", setup.name);
        let mut check = TargetCheck::new(&target, measured.clone(), lost == 0 && all_right && rate >= TARGET_RATE);
        if rate < TARGET_RATE && bare_rate < TARGET_RATE {
            check.measured = format!("{measured}; this machine makes only {} crashes/s of this kind with nothing attached", stats::rate(bare_rate));
        }
        section.targets.push(check);
    }
    drop(stats_on);
    drop(guard);
    drop(lock);
    let _ = std::fs::remove_file(&pidfile);
    section.tables.push(table);
    section.tables.push(per_run);
    section.tables.push(hooks);
    Ok(section)
}

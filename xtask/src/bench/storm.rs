//! Benchmark 2: crash storms. Real SIGSEGV faults from spawner processes
//! that fork crashing children back to back, for a fixed count; into a file
//! core_pattern on tmpfs with RLIMIT_CORE=0 (crashtrace with its default
//! flags, and with the former 1 MiB ring buffer beside it), and into a pipe
//! helper that reads the core and exits 0. The default-flags and pipe
//! storms also run with nothing attached, alternating, for the ratio.
//! crashtrace's `--json`
//! stream is then read back: every crash the workload made must end in a
//! verdict record with the expected verdict, and every lost event must show
//! in `loss` records and the summary. The kernel's BPF statistics give the
//! stack capture's cost per crash.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Result, bail};

use super::{
    Ctx, bpfstats, check_interrupted,
    global::{CoreGuard, GlobalLock},
    stats::{self, median},
    stream,
    table::{Section, Table, TargetCheck},
    tracer::{Output, Tracer},
    workload::Spawn,
};

/// Room for late events after the workload's last reap; the tracer drains
/// its ring buffer at stop anyway.
const SETTLE: Duration = Duration::from_millis(500);
const PIPE_LIMIT: u32 = 16;
/// The ring buffer's size before it was sized from the CPU count: the
/// baseline the default-flags storm is compared with.
const FORMER_RING: u32 = 1 << 20;
/// The share of the helpers/s made with nothing attached that crashtrace
/// may cost in the pipe-helper storm.
const HELPER_COST_TARGET: f64 = 0.10;
/// The stack capture's in-kernel time per fatal signal, nanoseconds.
const STACK_CAPTURE_TARGET_NS: f64 = 2_000.0;

/// What a configuration's figures are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// 0 lost, 100% correct verdicts, and the stack capture's cost.
    ZeroLoss,
    /// crashtrace costs at most [`HELPER_COST_TARGET`] of the helpers/s.
    HelperCost,
    /// Shown beside the others for comparison only.
    Reference,
}

/// A core_pattern and what every crash under it should get.
struct Setup {
    pattern: String,
    expected: &'static str,
}

struct Config {
    name: String,
    setup: usize,
    spawn: Spawn,
    tracer_args: Vec<String>,
    /// Also run the same storm with nothing attached, for the ratio.
    compare_bare: bool,
    check: Check,
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
    /// The loss records' counts, by kind of event.
    lost_by_kind: BTreeMap<String, u64>,
}

pub(super) fn run(ctx: &Ctx) -> Result<Section> {
    let sc = &ctx.scale;
    let cores_dir = ctx.scratch.join("cores");
    std::fs::create_dir_all(&cores_dir)?;
    let setups = [
        Setup { pattern: format!("{}/core.%p", cores_dir.display()), expected: "dropped:rlimit-core" },
        Setup { pattern: ctx.storm.sink_pattern(), expected: "stored" },
    ];
    let json_args = vec!["--json".to_string()];
    let file = |count, rate| Spawn { count, jobs: ctx.jobs, crash_every: 1, rlimit_core: "0", rate };
    let configs = [
        Config {
            name: "default flags: file pattern, RLIMIT_CORE=0, as fast as possible, one spawner per core".into(),
            setup: 0,
            spawn: file(sc.storm_file_crashes, None),
            tracer_args: json_args.clone(),
            compare_bare: true,
            check: Check::ZeroLoss,
        },
        Config {
            name: format!("same, --ring-buffer-size {FORMER_RING} (the former default)"),
            setup: 0,
            spawn: file(sc.storm_file_crashes, None),
            tracer_args: vec!["--json".into(), "--ring-buffer-size".into(), FORMER_RING.to_string()],
            compare_bare: false,
            check: Check::Reference,
        },
        Config {
            name: "pipe helper (reads the core, exits 0), as fast as possible".into(),
            setup: 1,
            // A pipe crash waits for its helper, so more spawners than cores
            // keep the machine busy.
            spawn: Spawn {
                count: sc.storm_pipe_crashes,
                jobs: ctx.jobs * 2,
                crash_every: 1,
                rlimit_core: "inf",
                rate: None,
            },
            tracer_args: json_args.clone(),
            compare_bare: true,
            check: Check::HelperCost,
        },
    ];
    let mut section = Section::new(
        "2. Crash storm",
        &format!(
            "Real SIGSEGV faults (a write through a null pointer) from spawner processes that fork crashing \
             children and reap them, back to back: one spawner per core for the file pattern, two per core for the \
             pipe helper (whose crashes wait for it; each crash starts one helper process, so crashes/s there are \
             helpers/s). crashtrace runs with its default flags (the ring buffer sized from the CPU count), and \
             once more with the former 1 MiB ring buffer for comparison. {} rounds per configuration; the \
             default-flags file storm and the pipe storm also run with nothing attached in each round, \
             alternating which goes first. \
             crashtrace prints `--json` to a file on tmpfs. Crashes/s is crashes made over the workload's own \
             elapsed time. A verdict is correct when \
             crashtrace's verdict record for that crasher has the expected verdict (`dropped:rlimit-core` for the \
             file pattern, `stored` for the pipe helper); the pids come from the workload, and a pid reused within \
             a run is owed one verdict per crash. Events lost are the sum of the `loss` records, checked against \
             the summary's `lost_kernel`. core_pipe_limit is {PIPE_LIMIT}. kernel.bpf_stats_enabled is on during \
             the storms so the kernel times each BPF program run (the last table; it adds two clock reads per \
             run); recursion misses are runs the kernel skipped because the program was already running on that \
             CPU, events lost before they reach the ring buffer. All three settings are restored afterwards.",
            sc.storm_rounds
        ),
    );
    let pidfile = ctx.scratch.join("crash-pids");
    let json = ctx.scratch.join("storm.jsonl");

    let lock = GlobalLock::acquire()?;
    let guard = CoreGuard::save(&lock)?;
    let stats_on = bpfstats::StatsOn::enable(&lock)?;
    let mut table = Table::new(&[
        "configuration",
        "crashes per run",
        "crashes/s (pipe: helpers/s), nothing attached",
        "crashes/s (pipe: helpers/s), crashtrace",
        "ratio",
        "events lost (loss records / summary)",
        "correct verdicts (worst run)",
        "wrong or missing",
        "tracer CPU per run",
        "peak RSS during storm",
        "peak RSS incl. start-up (VmHWM)",
    ]);
    let mut per_run = Table::new(&[
        "configuration",
        "round",
        "crashes/s, nothing",
        "crashes/s, crashtrace",
        "lost",
        "correct",
        "wrong",
        "missing",
    ]);
    let mut hooks = Table::new(&[
        "configuration",
        "hook",
        "runs per crash",
        "ns per run",
        "µs per crash",
        "recursion misses (all runs)",
    ]);
    let mut current_setup = None;
    for config in &configs {
        let setup = &setups[config.setup];
        if current_setup != Some(config.setup) {
            guard.set(&setup.pattern, PIPE_LIMIT)?;
            section.commands.push(format!(
                "echo '{}' > /proc/sys/kernel/core_pattern; echo {PIPE_LIMIT} > /proc/sys/kernel/core_pipe_limit",
                setup.pattern
            ));
            current_setup = Some(config.setup);
        }
        let spawn_args = ctx.storm.spawn_args(&config.spawn, &pidfile);
        if config.compare_bare {
            section.commands.push(format!("{}    # nothing attached", ctx.storm_cmd(&spawn_args)));
        }
        section.commands.push(format!(
            "{} > {} &  # then: {}; then kill -INT",
            ctx.crashtrace_cmd(&config.tracer_args),
            json.display(),
            ctx.storm_cmd(&spawn_args)
        ));

        let mut bare = Vec::new();
        let mut traced = Vec::new();
        let mut notes = Vec::new();
        let mut progs: BTreeMap<String, bpfstats::Prog> = BTreeMap::new();
        let mut traced_crashes = 0u64;
        for round in 0..sc.storm_rounds {
            let mut round_bare = None;
            let mut round_traced: Option<Traced> = None;
            for traced_turn in [round % 2 == 0, round % 2 != 0] {
                check_interrupted()?;
                if !traced_turn {
                    if config.compare_bare {
                        let s = ctx.storm.spawn(&config.spawn, &pidfile)?;
                        if s.segv != config.spawn.count || s.other != 0 {
                            notes.push(format!(
                                "{}: a run without the tracer made {} SIGSEGV crashes of {} ({} other exits)",
                                config.name, s.segv, config.spawn.count, s.other
                            ));
                        }
                        round_bare = Some(s.crashes_per_sec());
                    }
                    continue;
                }
                let (t, p, n) = traced_run(ctx, config, setup, &pidfile, &json, &mut notes)?;
                bpfstats::accumulate(&mut progs, &p);
                traced_crashes += n;
                round_traced = Some(t);
            }
            let Some(t) = round_traced else { bail!("a storm round did not run crashtrace") };
            eprintln!(
                "xtask bench: storm {} round {}/{}: {} bare, {:.0}/s traced, {}/{} correct, {} lost",
                config.name,
                round + 1,
                sc.storm_rounds,
                round_bare.map(|b| format!("{b:.0}/s")).unwrap_or_else(|| "-".into()),
                t.rate,
                t.correct,
                t.made,
                t.lost_records
            );
            per_run.row(vec![
                config.name.clone(),
                (round + 1).to_string(),
                round_bare.map(stats::rate).unwrap_or_default(),
                stats::rate(t.rate),
                format!("{} / {}", t.lost_records, t.lost_summary.map(|n| n.to_string()).unwrap_or_else(|| "?".into())),
                format!("{}/{}", t.correct, t.made),
                if t.wrong.is_empty() { "0".into() } else { t.wrong.clone() },
                t.missing.to_string(),
            ]);
            bare.extend(round_bare);
            traced.push(t);
        }

        let per_crash = |n: u64| n as f64 / traced_crashes.max(1) as f64;
        let mut in_kernel_ns = 0.0;
        // Hooks that ran at least once per hundred crashes.
        for p in progs.values().filter(|p| per_crash(p.run_cnt) >= 0.01 || p.recursion_misses > 0) {
            in_kernel_ns += per_crash(p.run_time_ns);
            hooks.row(vec![
                config.name.clone(),
                p.name.clone(),
                format!("{:.2}", per_crash(p.run_cnt)),
                format!("{:.0}", p.run_time_ns as f64 / p.run_cnt.max(1) as f64),
                format!("{:.2}", per_crash(p.run_time_ns) / 1e3),
                p.recursion_misses.to_string(),
            ]);
        }
        hooks.row(vec![
            config.name.clone(),
            "all hooks".into(),
            String::new(),
            String::new(),
            format!("{:.2}", in_kernel_ns / 1e3),
            String::new(),
        ]);

        let rates: Vec<f64> = traced.iter().map(|t| t.rate).collect();
        let ratios: Vec<f64> = traced.iter().zip(&bare).map(|(t, b)| t.rate / b).collect();
        let lost: u64 = traced.iter().map(|t| t.lost_records).sum();
        let lost_summary: Option<u64> = traced.iter().map(|t| t.lost_summary).sum();
        let worst =
            traced.iter().min_by(|a, b| (a.correct * b.made).cmp(&(b.correct * a.made))).expect("at least one round");
        let wrong_or_missing: u64 = traced.iter().map(|t| t.made - t.correct.min(t.made)).sum();
        let all_right = traced.iter().all(|t| t.correct == t.made && t.made == config.spawn.count && t.extra == 0);
        let decode_errors: u64 = traced.iter().map(|t| t.decode_errors).sum();
        let rate = median(&rates).unwrap_or(0.0);
        let bare_rate = median(&bare);
        table.row(vec![
            config.name.clone(),
            stats::count(config.spawn.count),
            bare_rate.map(stats::rate).unwrap_or_default(),
            stats::rate(rate),
            median(&ratios).map(|r| format!("{r:.2}")).unwrap_or_default(),
            format!("{} / {}", lost, lost_summary.map(|n| n.to_string()).unwrap_or_else(|| "?".into())),
            format!(
                "{}/{} ({:.2}%)",
                worst.correct,
                worst.made,
                100.0 * worst.correct as f64 / worst.made.max(1) as f64
            ),
            stats::count(wrong_or_missing),
            format!("{:.2} s", median(&traced.iter().map(|t| t.tracer_cpu).collect::<Vec<_>>()).unwrap_or(f64::NAN)),
            stats::mib(traced.iter().map(|t| t.peak_rss_kib).max().unwrap_or(0)),
            stats::mib(traced.iter().map(|t| t.hwm_kib).max().unwrap_or(0)),
        ]);
        if lost_summary.is_some_and(|s| s != lost) {
            notes.push(format!(
                "{}: the loss records add up to {lost} but the summaries say {}",
                config.name,
                lost_summary.unwrap_or(0)
            ));
        }
        if decode_errors > 0 {
            notes.push(format!("{}: {decode_errors} undecodable events", config.name));
        }
        if let Some(t) = traced.iter().find(|t| t.extra > 0) {
            notes
                .push(format!("{}: {} verdict records more than crashes made for the same pids", config.name, t.extra));
        }
        section.notes.extend(notes);

        let mut lost_kinds: BTreeMap<String, u64> = BTreeMap::new();
        for t in &traced {
            for (k, n) in &t.lost_by_kind {
                *lost_kinds.entry(k.clone()).or_default() += n;
            }
        }
        if !lost_kinds.is_empty() {
            section.notes.push(format!(
                "{}: events lost by kind, all rounds: {}.",
                config.name,
                lost_kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
            ));
        }

        let mut measured = format!("{} crashes/s with crashtrace", stats::rate(rate));
        if let Some(b) = bare_rate {
            measured += &format!(" ({} with nothing attached)", stats::rate(b));
        }
        measured += &format!(", {lost} lost, worst run {}/{} correct", worst.correct, worst.made);
        match config.check {
            Check::ZeroLoss => {
                section.targets.push(TargetCheck::new(
                    &format!("0 lost and 100% correct verdicts at full speed: {}", config.name),
                    measured,
                    lost == 0 && all_right,
                ));
                // The stack capture program's own time (the eh_frame stack
                // copy included): per crash, each of which is one fatal
                // signal delivered.
                let capture = progs.values().find(|p| p.name.starts_with("stack_capture"));
                section.targets.push(match capture {
                    Some(p) if p.run_cnt > 0 => {
                        let ns = per_crash(p.run_time_ns);
                        TargetCheck::new(
                            "stack capture ≤ 2 µs per fatal signal (bpf_stats), default flags (stack copy and \
                             .eh_frame unwinding on)",
                            format!(
                                "{:.2} µs per crash ({:.2} runs per crash, {:.0} ns per run) in the default-flags file storm",
                                ns / 1e3,
                                per_crash(p.run_cnt),
                                p.run_time_ns as f64 / p.run_cnt as f64
                            ),
                            ns <= STACK_CAPTURE_TARGET_NS,
                        )
                    }
                    _ => TargetCheck::not_measured(
                        "stack capture ≤ 2 µs per fatal signal (bpf_stats)",
                        "no stack_capture program ran (not loaded, or its statistics could not be read)".into(),
                    ),
                });
            }
            Check::HelperCost => {
                let cost = median(&ratios).map(|r| 1.0 - r);
                section.targets.push(match cost {
                    Some(cost) => TargetCheck::new(
                        "pipe helper storm: crashtrace costs ≤ 10% of the helpers/s made with nothing attached",
                        format!(
                            "{} helpers/s with crashtrace, {} with nothing attached: {:.1}% fewer (median of \
                             per-round ratios); {lost} lost, worst run {}/{} correct",
                            stats::rate(rate),
                            bare_rate.map(stats::rate).unwrap_or_default(),
                            cost * 100.0,
                            worst.correct,
                            worst.made
                        ),
                        cost <= HELPER_COST_TARGET,
                    ),
                    None => TargetCheck::not_measured(
                        "pipe helper storm: crashtrace costs ≤ 10% of the helpers/s made with nothing attached",
                        "no storm ran with nothing attached".into(),
                    ),
                });
            }
            Check::Reference => {}
        }
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

/// One storm with crashtrace attached: what it saw, its BPF programs' stats,
/// and the crashes made.
fn traced_run(
    ctx: &Ctx,
    config: &Config,
    setup: &Setup,
    pidfile: &Path,
    json: &Path,
    notes: &mut Vec<String>,
) -> Result<(Traced, BTreeMap<u64, bpfstats::Prog>, u64)> {
    let tracer = Tracer::start(&ctx.binary, &config.tracer_args, &Output::File(json.to_path_buf()))?;
    let from = tracer.attached_at.elapsed();
    let spawned = ctx.storm.spawn(&config.spawn, pidfile);
    let until = tracer.attached_at.elapsed();
    std::thread::sleep(SETTLE);
    let fdinfo = bpfstats::read(tracer.pid());
    let fin = tracer.stop()?;
    let spawned = spawned?;
    let progs = fdinfo.unwrap_or_else(|e| {
        notes.push(format!("{}: could not read the tracer's BPF program stats: {e:#}", config.name));
        BTreeMap::new()
    });
    if spawned.segv != config.spawn.count || spawned.other != 0 {
        notes.push(format!(
            "{}: a traced run made {} SIGSEGV crashes of {} ({} other exits)",
            config.name, spawned.segv, config.spawn.count, spawned.other
        ));
    }
    let s = stream::read(json, &spawned.crash_pids, &ctx.storm.comm(), setup.expected)?;
    let _ = std::fs::remove_file(json);
    for sample in &s.wrong_samples {
        notes.push(format!("{}: a wrong verdict: `{sample}`", config.name));
    }
    if s.summary.is_none() {
        notes.push(format!("{}: crashtrace's stream had no summary record", config.name));
    }
    let traced = Traced {
        rate: spawned.crashes_per_sec(),
        correct: s.correct,
        made: spawned.crash_pids.len() as u64,
        wrong: s.wrong(setup.expected),
        missing: s.missing,
        extra: s.extra,
        lost_records: s.lost_in_records,
        lost_summary: s.summary_u64("lost_kernel"),
        decode_errors: s.summary_u64("decode_errors").unwrap_or(0),
        tracer_cpu: fin.cpu.as_secs_f64(),
        peak_rss_kib: fin.peak_rss_between(from, until),
        hwm_kib: fin.hwm_kib,
        lost_by_kind: s.lost_by_kind.clone(),
    };
    Ok((traced, progs, spawned.segv))
}

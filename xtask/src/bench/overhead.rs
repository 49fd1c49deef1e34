//! Benchmark 1: what crashtrace costs a busy host that is not crashing.
//!
//! The workload is a fixed amount of work: a fork/exit storm and a SIGUSR1
//! ping-pong (caught by handlers) side by side. It is timed with nothing
//! attached, with crashtrace, and with the naive baseline (crashtrace
//! `--naive-all-signals`, which ships every signal_generate event to user
//! space like sigsnoop-style tools). A second "nothing attached" run per
//! round measures the noise floor (an A/A comparison). Each round runs all
//! four in a rotated order; ratios are taken within a round.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{
    Ctx, bpfstats, check_interrupted,
    global::GlobalLock,
    machine,
    stats::{self, median, min_max, pct_change},
    table::{Section, Table, TargetCheck},
    tracer::{Output, Tracer},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Nothing,
    NothingAgain,
    Crashtrace,
    Naive,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Nothing, Mode::NothingAgain, Mode::Crashtrace, Mode::Naive];

    fn name(self) -> &'static str {
        match self {
            Mode::Nothing => "nothing attached",
            Mode::NothingAgain => "nothing attached (A/A control)",
            Mode::Crashtrace => "crashtrace",
            Mode::Naive => "naive baseline (--naive-all-signals)",
        }
    }

    fn tracer_args(self) -> Option<Vec<String>> {
        match self {
            Mode::Nothing | Mode::NothingAgain => None,
            Mode::Crashtrace => Some(vec!["--color".into(), "never".into()]),
            Mode::Naive => Some(vec!["--naive-all-signals".into(), "--color".into(), "never".into()]),
        }
    }
}

#[derive(Default)]
struct Runs {
    secs: Vec<f64>,
    /// Per round, against "nothing attached" in the same round: wall time;
    /// the workload's CPU (user + system, where BPF programs run); and that
    /// plus the tracer's own CPU, the whole cost of tracing.
    wall_ratio: Vec<f64>,
    cpu_ratio: Vec<f64>,
    total_cpu_ratio: Vec<f64>,
    tracer_cpu: Vec<f64>,
    events: Vec<f64>,
    lost: Vec<f64>,
}

/// One timed run.
struct Run {
    wall: f64,
    cpu: f64,
    tracer_cpu: f64,
}

pub(super) fn run(ctx: &Ctx) -> Result<Section> {
    let sc = &ctx.scale;
    let mut section = Section::new(
        "1. Overhead on a busy host that is not crashing",
        &format!(
            "A fixed amount of work: {} children forked and reaped one by one (each exits 0 at once) while two \
             processes ping-pong SIGUSR1 {} times, caught by handlers. The workload reports its wall time and the \
             CPU (user + system) its processes used; the tracer's CPU comes from its rusage, counted from \
             \"attached\" on. {} rounds; each round runs every configuration once, in a rotated order, and the \
             tracer is started before and stopped (SIGINT) after each timed run, so its start-up is not in the \
             figures. Slowdowns are medians of per-round ratios against \"nothing attached\" in the same round. \
             The machine's global lock is held throughout, which keeps other crash tests (and their tracers) out. \
             After the timed rounds, one more untimed run of each tracer with kernel.bpf_stats_enabled on gives \
             the in-kernel cost of each hook (the second table).",
            stats::count(sc.busy_forks),
            stats::count(sc.busy_rounds),
            sc.overhead_rounds
        ),
    );
    let busy = ctx.storm.busy_args(sc.busy_forks, sc.busy_rounds);
    section.commands = vec![
        format!("{}    # nothing attached", ctx.storm_cmd(&busy)),
        format!(
            "{} >/dev/null &  # then the workload, then kill -INT",
            ctx.crashtrace_cmd(&Mode::Crashtrace.tracer_args().unwrap_or_default())
        ),
        format!(
            "{} >/dev/null &  # then the workload, then kill -INT",
            ctx.crashtrace_cmd(&Mode::Naive.tracer_args().unwrap_or_default())
        ),
    ];

    // Nothing global changes here, but the other privileged jobs on this
    // machine (crash tests, benchmarks) attach tracers of their own; the lock
    // keeps them out of the measurement.
    let lock = GlobalLock::acquire()?;
    let mut runs: BTreeMap<Mode, Runs> = BTreeMap::new();
    let mut intruded: BTreeMap<Mode, usize> = BTreeMap::new();
    for round in 0..sc.overhead_rounds {
        let mut order = Mode::ALL;
        order.rotate_left(round % Mode::ALL.len());
        let mut this_round = BTreeMap::new();
        for mode in order {
            check_interrupted()?;
            if !machine::other_tracers(&[]).is_empty() {
                *intruded.entry(mode).or_default() += 1;
            }
            let r = runs.entry(mode).or_default();
            let run = match mode.tracer_args() {
                None => {
                    let b = ctx.storm.busy(sc.busy_forks, sc.busy_rounds)?;
                    Run { wall: b.elapsed.as_secs_f64(), cpu: b.cpu.as_secs_f64(), tracer_cpu: 0.0 }
                }
                Some(args) => {
                    let tracer = Tracer::start(&ctx.binary, &args, &Output::Null)?;
                    let b = ctx.storm.busy(sc.busy_forks, sc.busy_rounds);
                    let fin = tracer.stop()?;
                    let b = b?;
                    r.tracer_cpu.push(fin.cpu.as_secs_f64());
                    if let Some(s) = fin.text_summary() {
                        r.events.push(s.events as f64);
                        r.lost.push(s.lost as f64);
                    }
                    Run { wall: b.elapsed.as_secs_f64(), cpu: b.cpu.as_secs_f64(), tracer_cpu: fin.cpu.as_secs_f64() }
                }
            };
            r.secs.push(run.wall);
            this_round.insert(mode, run);
        }
        let base = &this_round[&Mode::Nothing];
        let (base_wall, base_cpu) = (base.wall, base.cpu);
        for (mode, run) in &this_round {
            let r = runs.entry(*mode).or_default();
            r.wall_ratio.push(run.wall / base_wall);
            r.cpu_ratio.push(run.cpu / base_cpu);
            r.total_cpu_ratio.push((run.cpu + run.tracer_cpu) / base_cpu);
        }
        eprintln!(
            "xtask bench: overhead round {}/{}: {}",
            round + 1,
            sc.overhead_rounds,
            this_round
                .iter()
                .map(|(m, r)| format!(
                    "{} {:.3} s (CPU {:.3} s + tracer {:.3} s)",
                    m.name(),
                    r.wall,
                    r.cpu,
                    r.tracer_cpu
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let mut table = Table::new(&[
        "configuration",
        "wall time",
        "wall-time slowdown",
        "wall-time ratio range",
        "workload CPU slowdown",
        "total CPU slowdown (workload + tracer)",
        "tracer CPU per run",
        "events to user space per run",
        "events lost per run",
    ]);
    // Median slowdowns, as fractions: (wall, workload CPU, total CPU).
    let mut slowdown: BTreeMap<Mode, (f64, f64, f64)> = BTreeMap::new();
    let med = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    for mode in Mode::ALL {
        let r = &runs[&mode];
        let s = (med(&r.wall_ratio) - 1.0, med(&r.cpu_ratio) - 1.0, med(&r.total_cpu_ratio) - 1.0);
        slowdown.insert(mode, s);
        let (lo, hi) = min_max(&r.wall_ratio).unwrap_or((f64::NAN, f64::NAN));
        let is_tracer = mode.tracer_args().is_some();
        let base = mode == Mode::Nothing;
        let shown = |x: f64| if base { "(baseline)".to_string() } else { pct_change(1.0 + x) };
        let counted = |v: &[f64]| {
            if is_tracer {
                median(v).map(|e| stats::count(e as u64)).unwrap_or_else(|| "?".into())
            } else {
                String::new()
            }
        };
        table.row(vec![
            mode.name().into(),
            format!("{:.3} s", med(&r.secs)),
            shown(s.0),
            if base { String::new() } else { format!("{} … {}", pct_change(lo), pct_change(hi)) },
            shown(s.1),
            shown(s.2),
            if is_tracer { format!("{:.3} s", med(&r.tracer_cpu)) } else { String::new() },
            counted(&r.events),
            counted(&r.lost),
        ]);
    }
    section.tables.push(table);
    match hook_costs(ctx, &lock) {
        Ok(t) => section.tables.push(t),
        Err(e) => section.notes.push(format!("No per-hook costs: {e:#}")),
    }
    drop(lock);

    let noise = slowdown[&Mode::NothingAgain];
    let ct = slowdown[&Mode::Crashtrace];
    let naive = slowdown[&Mode::Naive];
    section.notes.push(format!(
        "Noise floor, from the A/A control (nothing attached against nothing attached): wall time {}, workload \
         CPU {}. Other work on this shared machine moves wall time far more than CPU time, so the targets are \
         judged on total CPU: the CPU the workload's processes used (the BPF programs run in them) plus the \
         tracer's own. Wall-time figures are listed as measured.",
        pct_change(1.0 + noise.0),
        pct_change(1.0 + noise.1)
    ));
    if !intruded.is_empty() {
        section.notes.push(format!(
            "Another crashtrace process (not this benchmark's) was running at the start of some runs, adding its \
             own overhead: {}.",
            intruded.iter().map(|(m, n)| format!("{n} run(s) of \"{}\"", m.name())).collect::<Vec<_>>().join(", ")
        ));
    }
    section.targets.push(TargetCheck::new(
        "crashtrace slowdown ≤ 3% (total CPU)",
        format!(
            "{} total CPU (workload {}); wall time {} with an A/A noise floor of {}",
            pct_change(1.0 + ct.2),
            pct_change(1.0 + ct.1),
            pct_change(1.0 + ct.0),
            pct_change(1.0 + noise.0)
        ),
        ct.2 <= 0.03,
    ));
    let factor = if ct.2 > 0.0 { naive.2 / ct.2 } else { f64::INFINITY };
    section.targets.push(TargetCheck::new(
        "naive baseline's slowdown ≥ 10× crashtrace's (total CPU)",
        if ct.2 > 0.0 {
            format!("{:.1}× ({} vs {})", factor, pct_change(1.0 + naive.2), pct_change(1.0 + ct.2))
        } else {
            format!(
                "crashtrace's slowdown is not above zero ({}); the naive baseline's is {}",
                pct_change(1.0 + ct.2),
                pct_change(1.0 + naive.2)
            )
        },
        naive.2 > 0.0 && factor >= 10.0,
    ));
    Ok(section)
}

/// One more run of each tracer, untimed, with kernel.bpf_stats_enabled on:
/// what each hook costs per run in the kernel, on this workload.
fn hook_costs(ctx: &Ctx, lock: &GlobalLock) -> Result<Table> {
    let sc = &ctx.scale;
    let _stats = bpfstats::StatsOn::enable(lock)?;
    let mut t = Table::new(&["tracer", "hook", "runs", "ns per run", "total in the kernel", "recursion misses"]);
    for mode in [Mode::Crashtrace, Mode::Naive] {
        check_interrupted()?;
        let tracer = Tracer::start(&ctx.binary, &mode.tracer_args().unwrap_or_default(), &Output::Null)?;
        let busy = ctx.storm.busy(sc.busy_forks, sc.busy_rounds);
        let progs = bpfstats::read(tracer.pid());
        tracer.stop()?;
        busy?;
        let mut total = 0u64;
        for p in progs?.values().filter(|p| p.run_cnt > 0 || p.recursion_misses > 0) {
            total += p.run_time_ns;
            t.row(vec![
                mode.name().into(),
                p.name.clone(),
                stats::count(p.run_cnt),
                format!("{:.0}", p.run_time_ns as f64 / p.run_cnt.max(1) as f64),
                stats::ms(p.run_time_ns as f64),
                p.recursion_misses.to_string(),
            ]);
        }
        t.row(vec![
            mode.name().into(),
            "all hooks".into(),
            String::new(),
            String::new(),
            stats::ms(total as f64),
            String::new(),
        ]);
    }
    Ok(t)
}

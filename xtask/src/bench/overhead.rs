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
    check_interrupted,
    global::GlobalLock,
    machine,
    stats::{self, median, min_max, pct_change},
    table::{Section, Table, TargetCheck},
    tracer::{Output, Tracer},
    Ctx,
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
    ratio: Vec<f64>,
    /// Workload CPU (user + system, BPF programs included) against nothing attached.
    cpu_ratio: Vec<f64>,
    tracer_cpu: Vec<f64>,
    events: Vec<f64>,
    lost: Vec<f64>,
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let sc = &ctx.scale;
    let mut section = Section::new(
        "1. Overhead on a busy host that is not crashing",
        &format!(
            "A fixed amount of work: {} children forked and reaped one by one (each exits 0 at once) while two \
             processes ping-pong SIGUSR1 {} times, caught by handlers. Timed by the workload itself (wall time, \
             and the CPU its processes used), {} rounds; \
             each round runs every configuration once, in a rotated order, and the tracer is started before and \
             stopped (SIGINT) after each timed run, so its start-up is not in the figure. The machine's global lock \
             is held throughout, which keeps other crash tests (and their tracers) out. Slowdown is the median of \
             the per-round ratios against \"nothing attached\" in the same round.",
            stats::count(sc.busy_forks),
            stats::count(sc.busy_rounds),
            sc.overhead_rounds
        ),
    );
    let busy = ctx.storm.busy_args(sc.busy_forks, sc.busy_rounds);
    section.commands = vec![
        format!("{}    # nothing attached", ctx.storm_cmd(&busy)),
        format!("{} >/dev/null &  # then the workload, then kill -INT", ctx.crashtrace_cmd(&Mode::Crashtrace.tracer_args().unwrap_or_default())),
        format!("{} >/dev/null &  # then the workload, then kill -INT", ctx.crashtrace_cmd(&Mode::Naive.tracer_args().unwrap_or_default())),
    ];

    // Nothing global changes here, but the other privileged jobs on this
    // machine (crash tests, benchmarks) attach tracers of their own; the lock
    // keeps them out of the measurement.
    let _lock = GlobalLock::acquire()?;
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
            let busy = match mode.tracer_args() {
                None => ctx.storm.busy(sc.busy_forks, sc.busy_rounds)?,
                Some(args) => {
                    let tracer = Tracer::start(&ctx.binary, &args, &Output::Null)?;
                    let t = ctx.storm.busy(sc.busy_forks, sc.busy_rounds);
                    let fin = tracer.stop()?;
                    let t = t?;
                    r.tracer_cpu.push(fin.cpu.as_secs_f64());
                    if let Some(s) = fin.text_summary() {
                        r.events.push(s.events as f64);
                        r.lost.push(s.lost as f64);
                    }
                    t
                }
            };
            r.secs.push(busy.elapsed.as_secs_f64());
            this_round.insert(mode, (busy.elapsed.as_secs_f64(), busy.cpu.as_secs_f64()));
        }
        let (base, base_cpu) = this_round[&Mode::Nothing];
        for (mode, (secs, cpu)) in &this_round {
            let r = runs.entry(*mode).or_default();
            r.ratio.push(secs / base);
            r.cpu_ratio.push(cpu / base_cpu);
        }
        eprintln!(
            "xtask bench: overhead round {}/{}: {}",
            round + 1,
            sc.overhead_rounds,
            this_round.iter().map(|(m, (s, _))| format!("{} {:.3} s", m.name(), s)).collect::<Vec<_>>().join(", ")
        );
    }

    let mut table = Table::new(&[
        "configuration",
        "median time",
        "slowdown (median ratio)",
        "ratio range over rounds",
        "workload CPU (median ratio)",
        "tracer CPU per run",
        "events to user space per run",
        "events lost per run",
    ]);
    let mut slowdown = BTreeMap::new();
    let mut cpu_slowdown = BTreeMap::new();
    for mode in Mode::ALL {
        let r = &runs[&mode];
        let ratio = median(&r.ratio).unwrap_or(f64::NAN);
        slowdown.insert(mode, ratio - 1.0);
        cpu_slowdown.insert(mode, median(&r.cpu_ratio).unwrap_or(f64::NAN) - 1.0);
        let (lo, hi) = min_max(&r.ratio).unwrap_or((f64::NAN, f64::NAN));
        let is_tracer = mode.tracer_args().is_some();
        table.row(vec![
            mode.name().into(),
            format!("{:.3} s", median(&r.secs).unwrap_or(f64::NAN)),
            if mode == Mode::Nothing { "(baseline)".into() } else { pct_change(ratio) },
            if mode == Mode::Nothing { "".into() } else { format!("{} … {}", pct_change(lo), pct_change(hi)) },
            if mode == Mode::Nothing { "(baseline)".into() } else { pct_change(median(&r.cpu_ratio).unwrap_or(f64::NAN)) },
            if is_tracer { format!("{:.3} s", median(&r.tracer_cpu).unwrap_or(f64::NAN)) } else { "".into() },
            if is_tracer { median(&r.events).map(|e| stats::count(e as u64)).unwrap_or_else(|| "?".into()) } else { "".into() },
            if is_tracer { median(&r.lost).map(|e| stats::count(e as u64)).unwrap_or_else(|| "?".into()) } else { "".into() },
        ]);
    }
    section.tables.push(table);

    let noise = slowdown[&Mode::NothingAgain];
    let ct = slowdown[&Mode::Crashtrace];
    let naive = slowdown[&Mode::Naive];
    section.notes.push(format!(
        "Noise floor: the A/A control (nothing attached vs nothing attached) came out at {}; a slowdown \
         smaller than that is not distinguishable from noise on this machine.",
        pct_change(1.0 + noise)
    ));
    if !intruded.is_empty() {
        section.notes.push(format!(
            "Another crashtrace process (not this benchmark's) was running at the start of some runs, adding its \
             own overhead: {}.",
            intruded.iter().map(|(m, n)| format!("{n} run(s) of \"{}\"", m.name())).collect::<Vec<_>>().join(", ")
        ));
    }
    section.notes.push(format!(
        "Workload CPU (user + system time of the workload's processes, where the BPF programs run): crashtrace \
         {}, naive baseline {}, A/A control {}. This is less sensitive than wall time to other work on the \
         machine, but it does not include the tracer's own CPU (listed separately).",
        pct_change(1.0 + cpu_slowdown[&Mode::Crashtrace]),
        pct_change(1.0 + cpu_slowdown[&Mode::Naive]),
        pct_change(1.0 + cpu_slowdown[&Mode::NothingAgain]),
    ));
    section.targets.push(TargetCheck::new(
        "crashtrace slowdown ≤ 3% (wall time)",
        format!(
            "{} (A/A noise floor {}; workload CPU {})",
            pct_change(1.0 + ct),
            pct_change(1.0 + noise),
            pct_change(1.0 + cpu_slowdown[&Mode::Crashtrace])
        ),
        ct <= 0.03,
    ));
    let factor = if ct > 0.0 { naive / ct } else { f64::INFINITY };
    section.targets.push(TargetCheck::new(
        "naive baseline's slowdown ≥ 10× crashtrace's",
        if ct > 0.0 {
            format!("{:.1}× ({} vs {})", factor, pct_change(1.0 + naive), pct_change(1.0 + ct))
        } else {
            format!("crashtrace's slowdown is not above zero ({}); the naive baseline's is {}", pct_change(1.0 + ct), pct_change(1.0 + naive))
        },
        naive > 0.0 && factor >= 10.0,
    ));
    Ok(section)
}

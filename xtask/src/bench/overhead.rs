//! Benchmark 1: what crashtrace costs a busy host that is not crashing.
//!
//! The workload is a fixed amount of work: a fork/exit storm and a SIGUSR1
//! ping-pong side by side, in three variants that differ in how SIGUSR1 is
//! taken: caught by a handler; blocked (default action left in place) and
//! dequeued with sigwait; blocked and read from a signalfd. Each is timed
//! with nothing attached and with crashtrace; the handler one also with the
//! naive baseline (the bench-only `crashtrace-bench-baseline`, which ships
//! every signal_generate event to user space like sigsnoop-style tools). A
//! second "nothing attached" run per workload and round measures the noise
//! floor (an A/A comparison). Each round runs every configuration of every
//! workload in a rotated order; ratios are taken within a round. crashtrace's
//! `--json` stream is read back: the ping-pong processes must get no verdict
//! record, since a blocked signal taken by sigwait or a signalfd is never a
//! crash.

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;

use super::{
    Ctx, bpfstats, check_interrupted,
    global::GlobalLock,
    machine,
    stats::{self, median, min_max, pct_change},
    stream,
    table::{Section, Table, TargetCheck},
    tracer::{Output, Tracer},
    workload::Take,
};

/// The slowdown (total CPU) crashtrace may add to each workload.
const TARGET: f64 = 0.02;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Nothing,
    NothingAgain,
    Crashtrace,
    Naive,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Nothing => "nothing attached",
            Mode::NothingAgain => "nothing attached (A/A control)",
            Mode::Crashtrace => "crashtrace",
            Mode::Naive => "naive baseline (crashtrace-bench-baseline)",
        }
    }

    /// The modes run for a workload: the naive baseline only with the
    /// handler, where it makes its point (every delivery shipped) and where
    /// it has always been measured; it triples a round's time.
    fn for_take(take: Take) -> Vec<Mode> {
        let mut v = vec![Mode::Nothing, Mode::NothingAgain, Mode::Crashtrace];
        if take == Take::Handler {
            v.push(Mode::Naive);
        }
        v
    }

    fn is_tracer(self) -> bool {
        matches!(self, Mode::Crashtrace | Mode::Naive)
    }

    /// crashtrace writes `--json` (read back for false chains); the naive
    /// baseline's half a million events go to /dev/null as text.
    fn tracer_args(self) -> Vec<String> {
        match self {
            Mode::Crashtrace => vec!["--json".into()],
            _ => vec!["--color".into(), "never".into()],
        }
    }

    fn binary(self, ctx: &Ctx) -> &Path {
        if self == Mode::Naive { &ctx.baseline } else { &ctx.binary }
    }
}

fn take_name(take: Take) -> &'static str {
    match take {
        Take::Handler => "handler",
        Take::Sigwait => "sigwait (SIGUSR1 blocked)",
        Take::Signalfd => "signalfd (SIGUSR1 blocked)",
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
    /// Verdict records for the ping-pong's pids, per run (0 expected).
    false_chains: Vec<u64>,
    /// Runs whose `--json` stream had no summary record: not read to its
    /// end, so their false-chain count proves nothing.
    unread: usize,
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
             processes ping-pong SIGUSR1 {} times. Three workloads differ in how SIGUSR1 is taken: caught by a \
             handler; blocked, its default action (terminate) left in place, and dequeued with sigwait(2); blocked \
             and read from a signalfd(2). The workload reports its wall time and the CPU (user + system) its \
             processes used; the tracer's CPU comes from its schedstat, counted from \"attached\" on. {} rounds; \
             each round runs every configuration of every workload once, in a rotated order, and the tracer is \
             started before and stopped (SIGINT) after each timed run, so its start-up is not in the figures. \
             Slowdowns are medians of per-round ratios against \"nothing attached\" on the same workload in the \
             same round. crashtrace writes `--json` to a file on tmpfs, read back after each run: a verdict record \
             for either ping-pong process would be a false crash chain (a blocked signal later taken by sigwait or \
             a signalfd is decided in the kernel and is never a crash). The naive baseline (a separate bench-only \
             build, `cargo build --release -p crashtrace --features bench-baseline`) runs on the handler workload \
             only. The machine's global lock is held throughout, which keeps other crash tests (and their tracers) \
             out. After the timed rounds, one more untimed run of each tracer per workload with \
             kernel.bpf_stats_enabled on gives the in-kernel cost of each hook (the second table).",
            stats::count(sc.busy_forks),
            stats::count(sc.busy_rounds),
            sc.overhead_rounds
        ),
    );
    let json = ctx.scratch.join("overhead.jsonl");
    for take in Take::ALL {
        let busy = ctx.storm.busy_args(sc.busy_forks, sc.busy_rounds, take);
        section.commands.push(format!("{}    # nothing attached", ctx.storm_cmd(&busy)));
    }
    section.commands.push(format!(
        "{} > {} &  # then each workload, then kill -INT",
        ctx.crashtrace_cmd(&Mode::Crashtrace.tracer_args()),
        json.display()
    ));
    section.commands.push(format!(
        "{} {} >/dev/null &  # then the handler workload, then kill -INT",
        ctx.show(&ctx.baseline),
        Mode::Naive.tracer_args().join(" ")
    ));

    // Nothing global changes here, but the other privileged jobs on this
    // machine (crash tests, benchmarks) attach tracers of their own; the lock
    // keeps them out of the measurement.
    let lock = GlobalLock::acquire()?;
    let mut runs: BTreeMap<(Take, Mode), Runs> = BTreeMap::new();
    let mut intruded: BTreeMap<(Take, Mode), usize> = BTreeMap::new();
    for round in 0..sc.overhead_rounds {
        let mut takes = Take::ALL;
        takes.rotate_left(round % Take::ALL.len());
        let mut line = Vec::new();
        for take in takes {
            let mut order = Mode::for_take(take);
            let n = order.len();
            order.rotate_left(round % n);
            let mut this_round = BTreeMap::new();
            for mode in order {
                check_interrupted()?;
                if !machine::other_tracers(&[]).is_empty() {
                    *intruded.entry((take, mode)).or_default() += 1;
                }
                let r = runs.entry((take, mode)).or_default();
                let run = if !mode.is_tracer() {
                    let b = ctx.storm.busy(sc.busy_forks, sc.busy_rounds, take)?;
                    Run { wall: b.elapsed.as_secs_f64(), cpu: b.cpu.as_secs_f64(), tracer_cpu: 0.0 }
                } else {
                    let output = if mode == Mode::Crashtrace { Output::File(json.clone()) } else { Output::Null };
                    let tracer = Tracer::start(mode.binary(ctx), &mode.tracer_args(), &output)?;
                    let b = ctx.storm.busy(sc.busy_forks, sc.busy_rounds, take);
                    let fin = tracer.stop()?;
                    let b = b?;
                    r.tracer_cpu.push(fin.cpu.as_secs_f64());
                    if mode == Mode::Crashtrace {
                        let s = stream::read(&json, &b.pingpong, &ctx.storm.comm(), "")?;
                        let _ = std::fs::remove_file(&json);
                        r.false_chains.push(s.ours.values().sum());
                        r.unread += usize::from(s.summary.is_none());
                        r.events.push(s.event_records as f64);
                        r.lost.push(s.lost_in_records as f64);
                    } else if let Some(s) = fin.text_summary() {
                        r.events.push(s.events as f64);
                        r.lost.push(s.lost as f64);
                    }
                    Run { wall: b.elapsed.as_secs_f64(), cpu: b.cpu.as_secs_f64(), tracer_cpu: fin.cpu.as_secs_f64() }
                };
                r.secs.push(run.wall);
                this_round.insert(mode, run);
            }
            let base = &this_round[&Mode::Nothing];
            let (base_wall, base_cpu) = (base.wall, base.cpu);
            for (mode, run) in &this_round {
                let r = runs.entry((take, *mode)).or_default();
                r.wall_ratio.push(run.wall / base_wall);
                r.cpu_ratio.push(run.cpu / base_cpu);
                r.total_cpu_ratio.push((run.cpu + run.tracer_cpu) / base_cpu);
            }
            line.push(format!(
                "{}: {}",
                take.arg(),
                this_round
                    .iter()
                    .map(|(m, r)| format!("{} CPU {:.3} s + {:.3} s", m.name(), r.cpu, r.tracer_cpu))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        eprintln!("xtask bench: overhead round {}/{}: {}", round + 1, sc.overhead_rounds, line.join("; "));
    }

    let mut table = Table::new(&[
        "workload",
        "configuration",
        "wall time",
        "wall-time slowdown",
        "wall-time ratio range",
        "workload CPU slowdown",
        "total CPU slowdown (workload + tracer)",
        "total CPU ratio range",
        "tracer CPU per run",
        "events to user space per run",
        "events lost per run",
        "verdicts for the ping-pong pids (all runs)",
    ]);
    // Median slowdowns, as fractions: (wall, workload CPU, total CPU).
    let mut slowdown: BTreeMap<(Take, Mode), (f64, f64, f64)> = BTreeMap::new();
    let med = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    for take in Take::ALL {
        for mode in Mode::for_take(take) {
            let r = &runs[&(take, mode)];
            let s = (med(&r.wall_ratio) - 1.0, med(&r.cpu_ratio) - 1.0, med(&r.total_cpu_ratio) - 1.0);
            slowdown.insert((take, mode), s);
            let range = |v: &[f64]| {
                let (lo, hi) = min_max(v).unwrap_or((f64::NAN, f64::NAN));
                format!("{} … {}", pct_change(lo), pct_change(hi))
            };
            let base = mode == Mode::Nothing;
            let shown = |x: f64| if base { "(baseline)".to_string() } else { pct_change(1.0 + x) };
            let counted = |v: &[f64]| {
                if mode.is_tracer() {
                    median(v).map(|e| stats::count(e as u64)).unwrap_or_else(|| "?".into())
                } else {
                    String::new()
                }
            };
            table.row(vec![
                take_name(take).into(),
                mode.name().into(),
                format!("{:.3} s", med(&r.secs)),
                shown(s.0),
                if base { String::new() } else { range(&r.wall_ratio) },
                shown(s.1),
                shown(s.2),
                if base { String::new() } else { range(&r.total_cpu_ratio) },
                if mode.is_tracer() { format!("{:.3} s", med(&r.tracer_cpu)) } else { String::new() },
                counted(&r.events),
                counted(&r.lost),
                if mode == Mode::Crashtrace { r.false_chains.iter().sum::<u64>().to_string() } else { String::new() },
            ]);
        }
    }
    section.tables.push(table);
    match hook_costs(ctx, &lock) {
        Ok(t) => section.tables.push(t),
        Err(e) => section.notes.push(format!("No per-hook costs: {e:#}")),
    }
    drop(lock);

    section.notes.push(
        "Other work on this shared machine moves wall time far more than CPU time, so the targets are judged on \
         total CPU: the CPU the workload's processes used (the BPF programs run in them) plus the tracer's own. \
         Wall-time figures are listed as measured. The A/A control row of each workload is the noise floor of \
         the same measurement: a slowdown within it is not one this benchmark can tell from noise."
            .into(),
    );
    if !intruded.is_empty() {
        section.notes.push(format!(
            "Another crashtrace process (not this benchmark's) was running at the start of some runs, adding its \
             own overhead: {}.",
            intruded
                .iter()
                .map(|((t, m), n)| format!("{n} run(s) of \"{}\" on {}", m.name(), t.arg()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let ct = slowdown[&(Take::Handler, Mode::Crashtrace)];
    let naive = slowdown[&(Take::Handler, Mode::Naive)];
    section.notes.push(format!(
        "The naive baseline on the handler workload: {} total CPU against crashtrace's {}.",
        pct_change(1.0 + naive.2),
        pct_change(1.0 + ct.2)
    ));
    for take in Take::ALL {
        let ct = slowdown[&(take, Mode::Crashtrace)];
        let noise = slowdown[&(take, Mode::NothingAgain)];
        let chains: u64 = runs[&(take, Mode::Crashtrace)].false_chains.iter().sum();
        let unread = runs[&(take, Mode::Crashtrace)].unread;
        let mut measured = format!(
            "{} total CPU (workload {}; A/A noise floor {} total CPU); wall time {} (A/A {})",
            pct_change(1.0 + ct.2),
            pct_change(1.0 + ct.1),
            pct_change(1.0 + noise.2),
            pct_change(1.0 + ct.0),
            pct_change(1.0 + noise.0)
        );
        if take != Take::Handler {
            measured += &format!("; {chains} verdict records for the ping-pong pids");
        }
        section.targets.push(TargetCheck::new(
            &format!("crashtrace slowdown ≤ 2% (total CPU): {} workload", take_name(take)),
            measured,
            ct.2 <= TARGET,
        ));
        if take != Take::Handler {
            section.targets.push(TargetCheck::new(
                &format!("no false crash chain: {} workload", take_name(take)),
                format!(
                    "{chains} verdict records for the ping-pong pids over {} runs of {} round trips{}",
                    sc.overhead_rounds,
                    stats::count(sc.busy_rounds),
                    if unread > 0 { format!("; {unread} run(s) had no summary record, so were not read whole") } else { String::new() }
                ),
                chains == 0 && unread == 0,
            ));
        }
    }
    Ok(section)
}

/// One more run of each tracer per workload, untimed, with
/// kernel.bpf_stats_enabled on: what each hook costs per run in the kernel.
fn hook_costs(ctx: &Ctx, lock: &GlobalLock) -> Result<Table> {
    let sc = &ctx.scale;
    let _stats = bpfstats::StatsOn::enable(lock)?;
    let mut t =
        Table::new(&["workload", "tracer", "hook", "runs", "ns per run", "total in the kernel", "recursion misses"]);
    for take in Take::ALL {
        for mode in Mode::for_take(take).into_iter().filter(|m| m.is_tracer()) {
            check_interrupted()?;
            let tracer = Tracer::start(mode.binary(ctx), &mode.tracer_args(), &Output::Null)?;
            let busy = ctx.storm.busy(sc.busy_forks, sc.busy_rounds, take);
            let progs = bpfstats::read(tracer.pid());
            tracer.stop()?;
            busy?;
            let mut total = 0u64;
            for p in progs?.values().filter(|p| p.run_cnt > 0 || p.recursion_misses > 0) {
                total += p.run_time_ns;
                t.row(vec![
                    take.arg().into(),
                    mode.name().into(),
                    p.name.clone(),
                    stats::count(p.run_cnt),
                    format!("{:.0}", p.run_time_ns as f64 / p.run_cnt.max(1) as f64),
                    stats::ms(p.run_time_ns as f64),
                    p.recursion_misses.to_string(),
                ]);
            }
            t.row(vec![
                take.arg().into(),
                mode.name().into(),
                "all hooks".into(),
                String::new(),
                String::new(),
                stats::ms(total as f64),
                String::new(),
            ]);
        }
    }
    Ok(t)
}

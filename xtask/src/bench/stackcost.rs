//! Benchmark 6: what the stack taken at each fatal signal costs in the
//! kernel. Crash storms (file pattern, RLIMIT_CORE=0, the cheapest crash)
//! under crashtrace with default flags, with `--stack-copy 0`, with
//! `--kernel-stack`, and with no stack capture at all (the baseline), the
//! configurations taking turns within each round. kernel.bpf_stats_enabled
//! makes the kernel time every program run; the figures are each program's
//! run_time_ns over its run_cnt, and over the crashes made.
//!
//! run_time_ns is time spent inside the program, so other load on the
//! machine moves it much less than wall time, but not to nothing: a
//! program preempted or descheduled by the hypervisor is charged for the
//! wait. Each round's figure is kept, and the spread shown.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{
    Ctx, bpfstats, check_interrupted,
    global::{CoreGuard, GlobalLock},
    stats::{self, median, min_max},
    table::{Section, Table, TargetCheck},
    tracer::{Output, Tracer},
    workload::{Spawn, Storm},
};

/// The target: the stack capture, per fatal signal, with default flags.
const TARGET_US: f64 = 2.0;
/// The program that takes the stack, as bpfstats names it.
const STACK_PROGRAM: &str = "stack_capture";

struct Config {
    name: &'static str,
    args: &'static [&'static str],
    /// Run by the bench-only `crashtrace-bench-baseline` (whose own
    /// `--no-stack-capture` the shipped binary does not have).
    baseline: bool,
}

impl Config {
    fn binary<'a>(&self, ctx: &'a Ctx) -> &'a std::path::Path {
        if self.baseline { &ctx.baseline } else { &ctx.binary }
    }

    fn tracer_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["--json".into()];
        args.extend(self.args.iter().map(|a| a.to_string()));
        args
    }
}

const CONFIGS: [Config; 4] = [
    Config { name: "no stack capture (baseline)", args: &["--no-stack-capture"], baseline: true },
    Config { name: "default flags", args: &[], baseline: false },
    Config { name: "--stack-copy 0", args: &["--stack-copy", "0"], baseline: false },
    Config { name: "--kernel-stack", args: &["--kernel-stack"], baseline: false },
];
const DEFAULT: usize = 1;

/// What one configuration added up to over its rounds.
#[derive(Default)]
struct Totals {
    progs: BTreeMap<String, bpfstats::Prog>,
    crashes: u64,
    /// The stack program's µs per crash, round by round.
    stack_us: Vec<f64>,
    /// All programs' µs per crash, round by round.
    all_us: Vec<f64>,
}

fn is_stack_program(name: &str) -> bool {
    name == STACK_PROGRAM || name.starts_with(&format!("{STACK_PROGRAM} "))
}

/// (stack program's ns, all programs' ns) in `progs`.
fn split(progs: &BTreeMap<u64, bpfstats::Prog>) -> (u64, u64) {
    let stack = progs.values().filter(|p| is_stack_program(&p.name)).map(|p| p.run_time_ns).sum();
    let all = progs.values().map(|p| p.run_time_ns).sum();
    (stack, all)
}

fn spread(values: &[f64]) -> String {
    match (median(values), min_max(values)) {
        (Some(m), Some((lo, hi))) => format!("{m:.2} ({lo:.2}–{hi:.2})"),
        _ => String::new(),
    }
}

pub(super) fn run(ctx: &Ctx) -> Result<Section> {
    let sc = &ctx.scale;
    // Frame pointers in the workload, so the frame-pointer walk has frames
    // to follow (spawner, spawn, main, then the C library's), as in a
    // crash of ordinary code.
    let storm = Storm::build_as(&ctx.root.join("xtask/workloads/storm.c"), &ctx.root.join("target/bench"), "storm-fp", &[
        "-fno-omit-frame-pointer",
    ])?;
    let cores_dir = ctx.scratch.join("stack-cores");
    std::fs::create_dir_all(&cores_dir)?;
    let pattern = format!("{}/core.%p", cores_dir.display());
    let pidfile = ctx.scratch.join("stack-pids");
    let spawn = Spawn { count: sc.stack_crashes, jobs: ctx.jobs, crash_every: 1, rlimit_core: "0", rate: None };
    let spawn_args = storm.spawn_args(&spawn, &pidfile);

    let mut section = Section::new(
        "6. Stack capture cost",
        &format!(
            "What the stack taken at each fatal signal costs in the kernel. {} rounds; in each, crashtrace runs once \
             per configuration (the order rotating from round to round) while {} children crash (SIGSEGV, a write \
             through a null pointer, with frame pointers: `storm-fp` is the storm workload built with \
             `-fno-omit-frame-pointer`) into a file core_pattern with RLIMIT_CORE=0. kernel.bpf_stats_enabled is \
             on, so the kernel times each program run; µs per fatal signal is a program's run_time_ns over the \
             crashes made (its runs for other signals, which it filters out, included). The stack capture is \
             the `{STACK_PROGRAM}` program; the baseline is the bench-only `crashtrace-bench-baseline \
             --no-stack-capture` (the program attached but returning at once; the shipped binary has no such \
             flag). The figure per configuration is the median of the rounds, with the lowest and \
             highest in brackets. core_pattern and bpf_stats_enabled are restored afterwards.",
            sc.stack_rounds,
            stats::count(sc.stack_crashes),
        ),
    );
    section.commands.push(format!("echo '{pattern}' > /proc/sys/kernel/core_pattern; echo 1 > /proc/sys/kernel/bpf_stats_enabled"));
    for c in &CONFIGS {
        let args = c.tracer_args();
        let cmd = if c.baseline { format!("{} {}", ctx.show(&ctx.baseline), args.join(" ")) } else { ctx.crashtrace_cmd(&args) };
        section.commands.push(format!(
            "{cmd} > /dev/null &  # {}; then: {}; then read /proc/PID/fdinfo; kill -INT",
            c.name,
            ctx.storm_cmd(&spawn_args).replacen(&ctx.show(&ctx.storm.path), &ctx.show(&storm.path), 1)
        ));
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        section.notes.push(format!(
            "load average when the benchmark started: {} (other work on the machine inflates run_time_ns a little: \
             a program preempted or descheduled is charged for the wait)",
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        ));
    }

    let lock = GlobalLock::acquire()?;
    let guard = CoreGuard::save(&lock)?;
    guard.set(&pattern, 0)?;
    let stats_on = bpfstats::StatsOn::enable(&lock)?;
    let mut totals: Vec<Totals> = CONFIGS.iter().map(|_| Totals::default()).collect();
    for round in 0..sc.stack_rounds {
        for k in 0..CONFIGS.len() {
            check_interrupted()?;
            let i = (round + k) % CONFIGS.len();
            let tracer = Tracer::start(CONFIGS[i].binary(ctx), &CONFIGS[i].tracer_args(), &Output::Null)?;
            let spawned = storm.spawn(&spawn, &pidfile);
            let progs = bpfstats::read(tracer.pid());
            tracer.stop()?;
            let spawned = spawned?;
            let progs = progs?;
            if spawned.segv != spawn.count || spawned.other != 0 {
                section.notes.push(format!(
                    "{} round {}: {} SIGSEGV crashes of {} ({} other exits)",
                    CONFIGS[i].name,
                    round + 1,
                    spawned.segv,
                    spawn.count,
                    spawned.other
                ));
            }
            let (stack_ns, all_ns) = split(&progs);
            let per = |ns: u64| ns as f64 / spawned.segv.max(1) as f64 / 1e3;
            let t = &mut totals[i];
            t.crashes += spawned.segv;
            t.stack_us.push(per(stack_ns));
            t.all_us.push(per(all_ns));
            bpfstats::accumulate(&mut t.progs, &progs);
            eprintln!(
                "xtask bench: stack cost round {}/{}, {}: stack capture {:.2} µs, all hooks {:.2} µs per crash",
                round + 1,
                sc.stack_rounds,
                CONFIGS[i].name,
                per(stack_ns),
                per(all_ns)
            );
        }
    }
    drop(stats_on);
    drop(guard);
    drop(lock);
    let _ = std::fs::remove_file(&pidfile);
    let _ = std::fs::remove_dir_all(&cores_dir);

    let baseline_all = median(&totals[0].all_us);
    let mut summary = Table::new(&[
        "configuration",
        "crashes",
        "stack capture: ns per run",
        "stack capture: µs per fatal signal",
        "all hooks: µs per fatal signal",
        "all hooks minus the baseline's (µs)",
    ]);
    let mut per_program = Table::new(&["configuration", "program", "runs per crash", "ns per run", "µs per crash"]);
    for (c, t) in CONFIGS.iter().zip(&totals) {
        let stack = t.progs.values().filter(|p| is_stack_program(&p.name));
        let (runs, ns): (u64, u64) = stack.fold((0, 0), |(r, n), p| (r + p.run_cnt, n + p.run_time_ns));
        summary.row(vec![
            c.name.into(),
            stats::count(t.crashes),
            format!("{:.0}", ns as f64 / runs.max(1) as f64),
            spread(&t.stack_us),
            spread(&t.all_us),
            match (median(&t.all_us), baseline_all) {
                (Some(a), Some(b)) => format!("{:+.2}", a - b),
                _ => String::new(),
            },
        ]);
        let per_crash = |n: u64| n as f64 / t.crashes.max(1) as f64;
        for p in t.progs.values().filter(|p| per_crash(p.run_cnt) >= 0.01) {
            per_program.row(vec![
                c.name.into(),
                p.name.clone(),
                format!("{:.2}", per_crash(p.run_cnt)),
                format!("{:.0}", p.run_time_ns as f64 / p.run_cnt.max(1) as f64),
                format!("{:.2}", per_crash(p.run_time_ns) / 1e3),
            ]);
        }
    }
    let default = median(&totals[DEFAULT].stack_us).unwrap_or(f64::NAN);
    let ratio = default / TARGET_US;
    section.targets.push(TargetCheck::new(
        "stack capture ≤ 2 µs per fatal signal in the kernel, default flags",
        format!(
            "{default:.2} µs per fatal signal ({ratio:.1}× the target); with --kernel-stack {}",
            median(&totals[3].stack_us).map(|v| format!("{v:.2} µs")).unwrap_or_default()
        ),
        default <= TARGET_US,
    ));
    section.tables.push(summary);
    section.tables.push(per_program);
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_program_is_found_by_its_name_with_or_without_attach_point() {
        assert!(is_stack_program("stack_capture"));
        assert!(is_stack_program("stack_capture (signal_deliver)"));
        assert!(!is_stack_program("signal_deliver"));
        let mut progs = BTreeMap::new();
        progs.insert(1, bpfstats::Prog { name: "stack_capture (signal_deliver)".into(), run_cnt: 2, run_time_ns: 300, recursion_misses: 0 });
        progs.insert(2, bpfstats::Prog { name: "signal_deliver".into(), run_cnt: 2, run_time_ns: 100, recursion_misses: 0 });
        assert_eq!(split(&progs), (300, 400));
    }

    #[test]
    fn spread_shows_the_median_and_the_range() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), "2.00 (1.00–3.00)");
        assert_eq!(spread(&[]), "");
    }
}

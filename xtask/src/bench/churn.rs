//! Benchmark 3: memory under pid churn. Many short-lived processes, a share
//! of them crashing (file core_pattern, RLIMIT_CORE=0), with crashtrace
//! attached the whole time. Its RSS is sampled from /proc every 50 ms; the
//! correlation state's size at start, peak and end comes from its summary.

use std::time::Duration;

use anyhow::Result;

use super::{
    Ctx,
    global::{CoreGuard, GlobalLock},
    stats::{self, mib},
    stream,
    table::{Section, Table, TargetCheck},
    tracer::{Output, Sample, Tracer},
    workload::Spawn,
};

/// Steady-state RSS while the churn runs (after warm-up).
const STEADY_TARGET_KIB: u64 = 16 * 1024;
/// RSS may move by an allocator arena or two without the state growing.
const GROWTH_TOLERANCE_KIB: u64 = 1024;
const SETTLE: Duration = Duration::from_millis(500);

/// Resident KiB of the BPF maps user space has mapped: the ring buffer's
/// data pages (the kernel maps them twice, so that a record wrapping past
/// the end reads straight through; all resident from the mmap on).
pub(super) fn bpf_map_kib(mapped: &[(String, u64)]) -> u64 {
    mapped.iter().filter(|(name, _)| name.starts_with("anon_inode:bpf-map")).map(|(_, kib)| kib).sum()
}

pub(super) fn run(ctx: &Ctx) -> Result<Section> {
    let sc = &ctx.scale;
    let n = sc.churn_processes;
    let crashes = n.div_ceil(sc.churn_crash_every);
    let mut section = Section::new(
        "3. Memory under pid churn",
        &format!(
            "{} short-lived processes from {} spawners, one in {} crashing with SIGSEGV (file core_pattern on \
             tmpfs, RLIMIT_CORE=0, so {} chains), crashtrace attached throughout with `--json` to a file on tmpfs. \
             One run: it is the longest benchmark. RSS is sampled from /proc/PID/status every 50 ms; \"start of \
             churn\" is the sample taken once a tenth of the elapsed churn time had passed (after warm-up), \
             \"end\" the last sample before the workload finished. The state sizes are the correlator's entries \
             (open chains and their indexes) from crashtrace's summary record.",
            stats::count(n),
            ctx.jobs,
            sc.churn_crash_every,
            stats::count(crashes)
        ),
    );
    let pidfile = ctx.scratch.join("churn-pids");
    let json = ctx.scratch.join("churn.jsonl");
    let pattern = format!("{}/core.%p", ctx.scratch.join("cores").display());
    std::fs::create_dir_all(ctx.scratch.join("cores"))?;
    let spec = Spawn { count: n, jobs: ctx.jobs, crash_every: sc.churn_crash_every, rlimit_core: "0", rate: None };
    let spawn_args = ctx.storm.spawn_args(&spec, &pidfile);
    let json_args = vec!["--json".to_string()];
    section.commands = vec![
        format!("echo '{pattern}' > /proc/sys/kernel/core_pattern"),
        format!("{} > {} &", ctx.crashtrace_cmd(&json_args), json.display()),
        ctx.storm_cmd(&spawn_args),
        "kill -INT %1".into(),
    ];

    let lock = GlobalLock::acquire()?;
    let guard = CoreGuard::save(&lock)?;
    guard.set(&pattern, 16)?;
    let tracer = Tracer::start(&ctx.binary, &json_args, &Output::File(json.clone()))?;
    let rss_attached = tracer.rss_kib().unwrap_or(0);
    let from = tracer.attached_at.elapsed();
    let spawned = ctx.storm.spawn(&spec, &pidfile);
    let until = tracer.attached_at.elapsed();
    let mapped = tracer.mappings();
    std::thread::sleep(SETTLE);
    let fin = tracer.stop()?;
    drop(guard);
    drop(lock);
    let spawned = spawned?;
    let s = stream::read(&json, &spawned.crash_pids, &ctx.storm.comm(), "dropped:rlimit-core")?;
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&pidfile);

    let at = |tenths: u32| from + (until - from) * tenths / 10;
    let start = fin.sample_at(at(1));
    let end = fin.sample_before(until);
    let rss_start = start.map(|x| x.rss_kib).unwrap_or(0);
    let rss_end = end.map(|x| x.rss_kib).unwrap_or(0);
    let rss_peak = fin.peak_rss_between(from, until);
    let state = |k: &str| s.summary_u64(k).map(|v| v.to_string()).unwrap_or_else(|| "not in the summary".into());
    let lost = s.lost_in_records;

    let mut t = Table::new(&["measure", "value"]);
    for (k, v) in [
        ("processes", stats::count(spawned.children)),
        ("of which crashed (SIGSEGV)", stats::count(spawned.segv)),
        ("elapsed", stats::secs(spawned.elapsed)),
        ("processes/s", stats::rate(spawned.procs_per_sec())),
        ("RSS just after attach", mib(rss_attached)),
        ("RSS at start of churn (10% in)", mib(rss_start)),
        ("RSS at end of churn", mib(rss_end)),
        ("peak RSS during churn (sampled)", mib(rss_peak)),
        ("peak RSS incl. start-up (VmHWM)", mib(fin.hwm_kib)),
        ("correlation state at start", state("state_size_start")),
        ("correlation state, peak", state("state_size_peak")),
        ("correlation state at end (before the final flush)", state("state_size_end")),
        ("verdicts dropped:rlimit-core for the crashes", format!("{}/{}", s.correct, spawned.crash_pids.len())),
        (
            "other verdicts for the crashes",
            if s.wrong("dropped:rlimit-core").is_empty() { "none".into() } else { s.wrong("dropped:rlimit-core") },
        ),
        ("crashes with no verdict", s.missing.to_string()),
        ("verdict records beyond the crashes made", s.extra.to_string()),
        (
            "events lost (loss records / summary)",
            format!("{} / {}", lost, s.summary_u64("lost_kernel").map(|v| v.to_string()).unwrap_or_else(|| "?".into())),
        ),
        ("tracer CPU", format!("{:.2} s", fin.cpu.as_secs_f64())),
    ] {
        t.row(vec![k.into(), v]);
    }
    section.tables.push(t);
    // The whole trajectory, split, so a one-time step tells itself apart
    // from growth with the number of processes.
    let mut traj = Table::new(&["churn done", "RSS", "anonymous", "file-backed", "shared (ring buffer)"]);
    let row = |label: String, x: Option<Sample>| {
        let x = x.unwrap_or_default();
        vec![label, mib(x.rss_kib), mib(x.anon_kib), mib(x.file_kib), mib(x.shmem_kib)]
    };
    traj.row(row("0% (just after attach)".into(), fin.samples.first().copied()));
    for tenths in [1, 2, 3, 5, 7, 9] {
        traj.row(row(format!("{}%", tenths * 10), fin.sample_at(at(tenths))));
    }
    traj.row(row("100%".into(), end));
    section.tables.push(traj);
    if !mapped.is_empty() {
        section.notes.push(format!(
            "Resident memory by mapping at the end of the churn: {}.",
            mapped.iter().take(8).map(|(name, kib)| format!("{name} {}", mib(*kib))).collect::<Vec<_>>().join(", ")
        ));
    }
    if spawned.other != 0 {
        section.notes.push(format!("{} children neither crashed by SIGSEGV nor exited 0", spawned.other));
    }
    for sample in &s.wrong_samples {
        section.notes.push(format!("A wrong verdict: `{sample}`"));
    }
    if s.summary.is_none() {
        section.notes.push("crashtrace's stream had no summary record".into());
    }
    // Steady state: every sample from 10% of the churn in (past warm-up) to
    // its end, the largest of them.
    let steady_peak =
        fin.samples.iter().filter(|x| x.at >= at(1) && x.at <= until).map(|x| x.rss_kib).max().unwrap_or(0);
    section.targets.push(TargetCheck::new(
        "steady-state RSS under 1M-process churn ≤ 16 MiB (largest sample from 10% in to the end)",
        format!(
            "{} (start of churn {}, end {}; whole life incl. start-up {}; of it, BPF map mappings (the ring \
             buffer, mapped twice) {})",
            mib(steady_peak),
            mib(rss_start),
            mib(rss_end),
            mib(fin.hwm_kib),
            mib(bpf_map_kib(&mapped))
        ),
        steady_peak > 0 && steady_peak <= STEADY_TARGET_KIB,
    ));
    section.targets.push(TargetCheck::new(
        "memory flat: no RSS growth from start to end of churn (±1 MiB)",
        format!("{} → {} ({:+.1} MiB)", mib(rss_start), mib(rss_end), (rss_end as f64 - rss_start as f64) / 1024.0),
        rss_end <= rss_start + GROWTH_TOLERANCE_KIB,
    ));
    Ok(section)
}

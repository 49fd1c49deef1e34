//! `cargo xtask bench`: crashtrace's performance benchmarks, run for real on
//! this machine, printed as tables and written to BENCHMARKS.md with the
//! machine and the exact commands.
//!
//! 1. overhead on a busy host that is not crashing (SIGUSR1 taken by a
//!    handler, by sigwait, by a signalfd), against nothing attached and
//!    against a naive tracer that ships every signal to user space;
//! 2. crash storms (file pattern with RLIMIT_CORE=0 at full speed with the
//!    default flags, and a pipe helper): crashes/s, events lost, verdicts
//!    right out of crashes made, helpers/s against nothing attached, the
//!    stack capture's cost per crash;
//! 3. memory and correlation state under pid churn;
//! 4. start-up time and memory to "attached";
//! 5. `crashtrace report` speed, when the report command exists;
//! 6. the stack capture's cost per fatal signal in the kernel
//!    (`--only 6`), against no capture at all;
//! 7. the correlator's cost per event with 10 to 10,000 chains open
//!    (user space only, through the bench-only binary).
//!
//! Every figure is the median of several runs; comparisons alternate A and B
//! within one run and are reported as ratios. Targets are checked and each
//! one is printed as met or MISSED with the figure; a missed target never
//! fails the command, an error does. Benchmarks that crash processes or
//! change core_pattern hold the machine's global lock and restore what they
//! changed.

mod bpfstats;
mod churn;
mod corrcost;
mod global;
mod machine;
mod overhead;
mod report_speed;
mod stackcost;
mod startup;
mod stats;
mod storm;
mod stream;
pub(crate) mod synth_log;
mod table;
mod tracer;
mod workload;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use table::{Section, Status, Table};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Small counts for a quick look (a couple of minutes). The figures are
    /// not the published ones, so BENCHMARKS.md is left alone unless --out
    /// names it.
    #[arg(long)]
    pub quick: bool,
    /// Run only these benchmarks, by number (e.g. `--only 2,3`). Like
    /// --quick, this writes target/bench/BENCHMARKS.partial.md unless --out
    /// is given.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub only: Vec<u8>,
    /// Where to write the report.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// How much work each benchmark does.
#[derive(Clone, Debug)]
pub(crate) struct Scale {
    pub name: &'static str,
    pub overhead_rounds: usize,
    pub busy_forks: u64,
    pub busy_rounds: u64,
    pub storm_rounds: usize,
    pub storm_file_crashes: u64,
    pub storm_pipe_crashes: u64,
    pub churn_processes: u64,
    pub churn_crash_every: u64,
    pub startup_runs: usize,
    pub report_events: u64,
    pub report_small_events: u64,
    pub report_runs: usize,
    /// Stack-capture cost: crashes per configuration and round, and rounds.
    pub stack_crashes: u64,
    pub stack_rounds: usize,
}

impl Scale {
    /// Sized so that the whole run stays near ten minutes on a 2-core machine.
    pub(crate) const FULL: Scale = Scale {
        name: "full",
        overhead_rounds: 9,
        busy_forks: 20_000,
        busy_rounds: 250_000,
        storm_rounds: 3,
        storm_file_crashes: 50_000,
        storm_pipe_crashes: 10_000,
        churn_processes: 1_000_000,
        churn_crash_every: 100,
        startup_runs: 10,
        report_events: 1_000_000,
        report_small_events: 100_000,
        report_runs: 3,
        stack_crashes: 2_000,
        stack_rounds: 3,
    };
    pub(crate) const QUICK: Scale = Scale {
        name: "quick",
        overhead_rounds: 3,
        busy_forks: 5_000,
        busy_rounds: 60_000,
        storm_rounds: 2,
        storm_file_crashes: 5_000,
        storm_pipe_crashes: 1_000,
        churn_processes: 50_000,
        churn_crash_every: 100,
        startup_runs: 3,
        report_events: 100_000,
        report_small_events: 10_000,
        report_runs: 1,
        stack_crashes: 500,
        stack_rounds: 2,
    };
}

impl Scale {
    /// The counts, as BENCHMARKS.md states them.
    pub(crate) fn describe(&self) -> String {
        use stats::count;
        format!(
            "Scale ({}): overhead {} rounds of {} forks + {} SIGUSR1 round trips, for each of three workloads; crash \
             storms {} rounds of {} crashes (file pattern) and {} (pipe helper; fewer, because the kernel \
             starts a helper process per crash and the machine manages only about 2,000 of those a second, so the \
             run stays within the budget); pid churn {} processes, one in {} crashing; {} starts; report on logs \
             of {} and {} events; stack capture cost {} rounds of {} crashes per configuration.",
            self.name,
            self.overhead_rounds,
            count(self.busy_forks),
            count(self.busy_rounds),
            self.storm_rounds,
            count(self.storm_file_crashes),
            count(self.storm_pipe_crashes),
            count(self.churn_processes),
            self.churn_crash_every,
            self.startup_runs,
            count(self.report_small_events),
            count(self.report_events),
            self.stack_rounds,
            count(self.stack_crashes),
        )
    }
}

/// What every benchmark needs.
pub(crate) struct Ctx {
    pub root: PathBuf,
    /// target/release/crashtrace, absolute.
    pub binary: PathBuf,
    /// target/release/crashtrace-bench-baseline, absolute: the naive
    /// baseline, built with the crashtrace crate's `bench-baseline` feature.
    pub baseline: PathBuf,
    pub storm: workload::Storm,
    pub scale: Scale,
    /// On tmpfs: core files, pid lists, crashtrace's JSON output.
    pub scratch: PathBuf,
    /// Spawner processes in the crash and churn workloads: one per core.
    pub jobs: u32,
}

impl Ctx {
    /// `path` as the commands in BENCHMARKS.md show it: relative to the
    /// repository root when it is inside it.
    pub(crate) fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).map(|p| p.display().to_string()).unwrap_or_else(|_| path.display().to_string())
    }

    pub(crate) fn crashtrace_cmd(&self, args: &[String]) -> String {
        let mut s = self.show(&self.binary);
        for a in args {
            s.push(' ');
            s += a;
        }
        s
    }

    pub(crate) fn storm_cmd(&self, args: &[String]) -> String {
        format!("{} {}", self.show(&self.storm.path), args.join(" "))
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Fails once Ctrl-C was pressed, so the benchmark unwinds and its guards
/// restore core_pattern. Checked between runs.
pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Scratch space on tmpfs; the pid keeps concurrent runs apart.
const SCRATCH_PREFIX: &str = "/dev/shm/crashtrace-bench-";
const REPORT_NAME: &str = "BENCHMARKS.md";
/// Hand-written analysis starts at this heading; a re-run keeps it.
const ANALYSIS_HEADING: &str = "## Analysis";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn git(root: &Path, args: &[&str]) -> String {
    Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Runs the benchmarks; `binary` is the release build with the eBPF object
/// in it, `baseline` the naive baseline built the same way.
pub(crate) fn run(root: &Path, binary: &Path, baseline: &Path, args: &BenchArgs) -> Result<()> {
    if !is_root() {
        bail!(
            "the benchmarks load BPF programs and change core_pattern, so they need root: run `sudo cargo xtask bench`"
        );
    }
    let started = Instant::now();
    let scale = if args.quick { Scale::QUICK } else { Scale::FULL };
    let wanted = |n: u8| args.only.is_empty() || args.only.contains(&n);
    let out_path = match &args.out {
        Some(p) => p.clone(),
        None if args.quick || !args.only.is_empty() => root.join("target/bench/BENCHMARKS.partial.md"),
        None => root.join(REPORT_NAME),
    };
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t) };

    let machine = machine::Machine::probe();
    let storm = workload::Storm::build(&root.join("xtask/workloads/storm.c"), &root.join("target/bench"))?;
    let scratch = PathBuf::from(format!("{SCRATCH_PREFIX}{}", std::process::id()));
    global::scratch_dir(&scratch)?;
    let ctx = Ctx {
        root: root.to_path_buf(),
        binary: binary.to_path_buf(),
        baseline: baseline.to_path_buf(),
        storm,
        scale,
        scratch: scratch.clone(),
        jobs: (machine.cores as u32).max(1),
    };
    eprintln!(
        "xtask bench: {} scale; machine: {} cores, {}, kernel {}",
        ctx.scale.name, machine.cores, machine.cpu_model, machine.kernel
    );

    type Bench = fn(&Ctx) -> Result<Section>;
    let benches: [(u8, &str, Bench); 7] = [
        (1, "1. Overhead on a busy host that is not crashing", overhead::run),
        (2, "2. Crash storm", storm::run),
        (3, "3. Memory under pid churn", churn::run),
        (4, "4. Start-up", startup::run),
        (5, "5. Report speed", report_speed::run),
        (6, "6. Stack capture cost", stackcost::run),
        (7, "7. Correlation cost with many chains open", corrcost::run),
    ];
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    for (n, title, bench) in benches {
        if !wanted(n) {
            continue;
        }
        eprintln!("xtask bench: {title}");
        let section = match check_interrupted().and_then(|_| bench(&ctx)) {
            Ok(s) => s,
            Err(e) => {
                failed.push(format!("{title}: {e:#}"));
                let mut s = Section::new(title, "");
                s.error = Some(format!("{e:#}"));
                s
            }
        };
        print!("{}", section.text());
        sections.push(section);
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);

    let elapsed = started.elapsed();
    // An interrupted run has only some of the figures: keep it away from
    // the published report unless --out asked for it.
    let out_path = if INTERRUPTED.load(Ordering::SeqCst) && args.out.is_none() {
        root.join("target/bench/BENCHMARKS.partial.md")
    } else {
        out_path
    };
    let markdown = render(&ctx, &machine, &sections, elapsed, &out_path)?;
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out_path, markdown).with_context(|| format!("writing {}", out_path.display()))?;
    eprintln!("xtask bench: wrote {} after {:.0} s", out_path.display(), elapsed.as_secs_f64());
    if !failed.is_empty() {
        bail!("{} benchmark(s) did not finish:\n  {}", failed.len(), failed.join("\n  "));
    }
    Ok(())
}

fn render(
    ctx: &Ctx,
    machine: &machine::Machine,
    sections: &[Section],
    elapsed: std::time::Duration,
    out: &Path,
) -> Result<String> {
    let commit = git(&ctx.root, &["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&ctx.root, &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let mut md = String::from("# crashtrace benchmarks\n\n");
    md += &format!(
        "Measured by `cargo xtask bench` ({} scale) on {}, at commit {}{}, in {:.0} s. \
         Re-run it to refresh every figure; the text from \"{}\" on is kept.\n\n",
        ctx.scale.name,
        utc_now(),
        if commit.is_empty() { "(unknown)" } else { &commit },
        if dirty { " with uncommitted changes" } else { "" },
        elapsed.as_secs_f64(),
        ANALYSIS_HEADING,
    );
    md += "Each figure is the median of several runs. Comparisons alternate the \
           configurations within one run (A, B, A, B, ...) and are reported as \
           ratios of runs made side by side. Work directory: a tmpfs (`/dev/shm`).\n\n";
    md += &ctx.scale.describe();
    md += "\n\n";
    md += "## Machine\n\n";
    md += &machine.table().markdown();
    md.push('\n');

    let mut targets = Table::new(&["benchmark", "target", "measured", "status"]);
    for s in sections {
        for t in &s.targets {
            targets.row(vec![s.title.clone(), t.target.clone(), t.measured.clone(), t.status.word().into()]);
        }
        if let Some(e) = &s.error {
            targets.row(vec![s.title.clone(), "(all)".into(), e.clone(), Status::NotMeasured.word().into()]);
        }
    }
    md += "## Targets\n\n";
    md += &targets.markdown();
    md.push('\n');
    for s in sections {
        md += &s.markdown();
    }
    // Keep the hand-written analysis of an earlier run.
    let old = std::fs::read_to_string(out).unwrap_or_default();
    if let Some(at) = old.find(&format!("\n{ANALYSIS_HEADING}\n")) {
        md += &old[at + 1..];
    }
    Ok(md)
}

//! The VM test tier (`cargo xtask vm-test`): boots Debian cloud kernels
//! under qemu's TCG emulator with a busybox initramfs holding crashtrace,
//! runs the crash scenarios under every core-dump hook mode in the guest,
//! and judges the results on the host.
//!
//! It exists because the development hosts have no kprobes and refuse
//! fentry, so the direct hooks on do_coredump/vfs_coredump only run here.
//! It fails, never skips: a missing qemu, a kernel that cannot be fetched,
//! a guest that does not report, all make it fail with the reason.

mod check;
mod cpio;
pub(crate) mod initramfs;
pub(crate) mod kernels;
pub(crate) mod qemu;

use std::{
    fmt::Write as _,
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// Kernel options the hooks depend on, shown per kernel.
const KERNEL_OPTIONS: &[&str] = &[
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_KPROBES",
    "CONFIG_FUNCTION_TRACER",
    "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS",
    "CONFIG_FTRACE_SYSCALLS",
    "CONFIG_BPF_LSM",
];

/// `cargo xtask vm-test` arguments.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// Kernels to boot: `all` (the matrix), a matrix row (5.10, 6.1, 6.12,
    /// 6.18, newest) or any other kernel series such as 6.6.
    #[arg(long, default_value = "all", value_name = "VERSION|all")]
    pub kernel: String,
    /// Hard limit for one guest, boot to power-off, in seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
    /// Use the crashtrace binary already built at target/release/crashtrace
    /// instead of running `cargo xtask build` first.
    #[arg(long)]
    pub no_build: bool,
    /// Test this crashtrace binary (with its eBPF object built in) instead
    /// of building one.
    #[arg(long, value_name = "PATH", conflicts_with = "no_build")]
    pub crashtrace: Option<PathBuf>,
    /// Also write the matrix into README.md, between the lines
    /// `<!-- vm-matrix:begin -->` and `<!-- vm-matrix:end -->`.
    #[arg(long)]
    pub update_readme: bool,
}

impl Args {
    /// What `cargo xtask test` runs: every kernel, with a fresh build.
    pub(crate) fn full_matrix() -> Args {
        Args { kernel: "all".into(), timeout: 900, no_build: false, crashtrace: None, update_readme: false }
    }
}

/// The result of one kernel of the matrix.
struct KernelRun {
    label: String,
    covers: &'static str,
    kernel: Option<kernels::Kernel>,
    elapsed: Option<Duration>,
    outcome: Result<check::Outcome, String>,
    work: PathBuf,
}

impl KernelRun {
    fn passed(&self) -> bool {
        self.outcome.as_ref().map(check::Outcome::passed).unwrap_or(false)
    }
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let root = crate::root();
    let vm_dir = root.join("target/vm");
    fs::create_dir_all(&vm_dir)?;
    let specs = kernels::select(&args.kernel)?;
    qemu::check_available()?;

    let crashtrace = if let Some(p) = &args.crashtrace {
        if !p.is_file() {
            bail!("--crashtrace {}: no such file", p.display());
        }
        p.clone()
    } else if args.no_build {
        let p = root.join("target/release/crashtrace");
        if !p.is_file() {
            bail!("--no-build: {} does not exist; run `cargo xtask build`", p.display());
        }
        p
    } else {
        crate::build(false).context("building crashtrace for the guest")?
    };
    let vmtool = initramfs::build_vmtool(&vm_dir)?;
    let initrd = vm_dir.join("initramfs.cpio");
    let size = initramfs::build(&crashtrace, &vmtool, &initrd)?;
    eprintln!("xtask: vm: initramfs {} ({:.1} MiB)", initrd.display(), size as f64 / (1 << 20) as f64);

    let apt = kernels::Apt::new(&vm_dir.join("apt"))?;
    apt.update_if_stale()?;
    let candidates = apt.cloud_images()?;

    let mut runs = Vec::new();
    for spec in specs {
        let work = vm_dir.join("runs").join(&spec.label);
        let mut run = KernelRun {
            label: spec.label.clone(),
            covers: spec.covers,
            kernel: None,
            elapsed: None,
            outcome: Err(String::new()),
            work: work.clone(),
        };
        let Some(candidate) = kernels::choose(&spec, &candidates) else {
            run.outcome = Err(format!(
                "no linux-image-{}*-cloud-amd64 package in {}",
                spec.series.as_deref().unwrap_or(""),
                if spec.suites.is_empty() { "any suite".to_string() } else { spec.suites.join(", ") }
            ));
            report_one(&run);
            runs.push(run);
            continue;
        };
        let kernel = match kernels::fetch(&apt, &candidate, &vm_dir) {
            Ok(k) => k,
            Err(e) => {
                run.outcome = Err(format!("fetching {} {}: {e:#}", candidate.package, candidate.version));
                report_one(&run);
                runs.push(run);
                continue;
            }
        };
        eprintln!(
            "xtask: vm: booting {} ({} {}, {}) under TCG, limit {} s",
            kernel.release, candidate.package, candidate.version, candidate.suite, args.timeout
        );
        match qemu::boot(&kernel.vmlinuz, &initrd, &work, Duration::from_secs(args.timeout)) {
            Ok(boot) => {
                let report = check::parse(&boot.results);
                let end = check::BootEnd {
                    timed_out: boot.exit.is_none(),
                    exit: boot.exit.map(|s| s.to_string()),
                    console: &boot.console,
                };
                let mut outcome = check::evaluate(&report, &end);
                if let Some(config) = &kernel.config {
                    let values = kernels::config_values(config, KERNEL_OPTIONS);
                    let shown: Vec<String> =
                        values.iter().map(|(k, v)| format!("{}={v}", k.trim_start_matches("CONFIG_"))).collect();
                    outcome.notes.push(shown.join(" "));
                }
                outcome.notes.push(format!("guest output: {} and {}", boot.results_path.display(), boot.console_path.display()));
                run.elapsed = Some(boot.elapsed);
                run.outcome = Ok(outcome);
            }
            Err(e) => run.outcome = Err(format!("booting {}: {e:#}", kernel.release)),
        }
        run.kernel = Some(kernel);
        report_one(&run);
        runs.push(run);
    }

    let table = matrix_table(&runs);
    let summary_path = vm_dir.join("matrix.md");
    fs::write(&summary_path, &table).with_context(|| format!("writing {}", summary_path.display()))?;
    eprintln!("\n{table}\nxtask: vm: matrix written to {}; total {:.0} s", summary_path.display(), started.elapsed().as_secs_f64());
    if args.update_readme {
        update_readme(&root.join("README.md"), &table)?;
        // The hook section too, so one command leaves the README current.
        crate::readme::update(&root)?;
    }
    let failed: Vec<&str> = runs.iter().filter(|r| !r.passed()).map(|r| r.label.as_str()).collect();
    if !failed.is_empty() {
        bail!("VM tier failed on kernel(s) {}; details above, guest logs under {}", failed.join(", "), vm_dir.join("runs").display());
    }
    Ok(())
}

/// Prints one kernel's results: version, hook modes, pass/fail per check.
fn report_one(run: &KernelRun) {
    let mut s = String::new();
    let _ = writeln!(s, "\n== kernel {} ({})", run.label, run.covers);
    if let Some(k) = &run.kernel {
        let _ = writeln!(s, "   image    {} {} ({}), uname -r {}", k.candidate.package, k.candidate.version, k.candidate.suite, k.release);
    }
    if let Some(t) = run.elapsed {
        let _ = writeln!(s, "   time     {:.1} s under TCG, boot to power-off", t.as_secs_f64());
    }
    match &run.outcome {
        Err(e) => {
            let _ = writeln!(s, "   FAIL     {e}");
        }
        Ok(o) => {
            for m in &o.modes {
                let attach = m.attach_secs.map(|t| format!(", attached after {t:.1} s")).unwrap_or_default();
                let what = match (&m.dump_mode, &m.error) {
                    (Some(d), _) => format!("dump_mode {d}{attach}"),
                    (None, Some(e)) => format!("did not start: {}", e.trim()),
                    (None, None) => "no header".into(),
                };
                let names: Vec<&str> = m.unavailable_hooks.iter().map(|h| h.split(':').next().unwrap_or(h)).collect();
                let unavailable = if names.is_empty() { String::new() } else { format!("; unavailable: {}", names.join(", ")) };
                let _ = writeln!(s, "   mode     --coredump-hook {:<6} {what}{unavailable}", m.mode);
            }
            // Each unavailable hook's reason once, from the first mode that
            // reported it.
            let mut seen = Vec::new();
            for h in o.modes.iter().flat_map(|m| &m.unavailable_hooks) {
                let name = h.split(':').next().unwrap_or(h);
                if !seen.contains(&name) {
                    seen.push(name);
                    let _ = writeln!(s, "   hook     {h}");
                }
            }
            for c in &o.checks {
                let mode = c.mode.as_deref().map(|m| format!("[{m}]")).unwrap_or_default();
                let _ = writeln!(s, "   {}  {:<27} {:<9} {}", if c.pass { "pass" } else { "FAIL" }, c.subject, mode, c.detail);
            }
            for n in &o.notes {
                let _ = writeln!(s, "   note     {n}");
            }
        }
    }
    let _ = writeln!(s, "   result   {}", if run.passed() { "PASS" } else { "FAIL" });
    eprint!("{s}");
    let _ = fs::create_dir_all(&run.work);
    let _ = fs::write(run.work.join("report.txt"), s);
}

/// Replaces the README's generated matrix block, so the table there is the
/// last run's and cannot go stale by hand.
fn update_readme(readme: &std::path::Path, table: &str) -> Result<()> {
    replace_readme_block(readme, "vm-matrix", "cargo xtask vm-test --update-readme", table)
}

/// Replaces the block between `<!-- {tag}:begin -->` and `<!-- {tag}:end -->`
/// in `readme` with `table`, noting `command` as what generates it.
pub(crate) fn replace_readme_block(readme: &std::path::Path, tag: &str, command: &str, table: &str) -> Result<()> {
    let (begin_mark, end_mark) = (format!("<!-- {tag}:begin -->"), format!("<!-- {tag}:end -->"));
    let text = fs::read_to_string(readme).with_context(|| format!("reading {}", readme.display()))?;
    let (Some(begin), Some(end)) = (text.find(&begin_mark), text.find(&end_mark)) else {
        bail!("--update-readme: {} has no `{begin_mark}` ... `{end_mark}` block to fill", readme.display());
    };
    if end < begin {
        bail!("--update-readme: `{end_mark}` comes before `{begin_mark}` in {}", readme.display());
    }
    let generated = format!("{begin_mark}\n<!-- generated by `{command}`; edits here are overwritten -->\n\n{table}\n");
    let updated = format!("{}{generated}{}", &text[..begin], &text[end..]);
    fs::write(readme, updated).with_context(|| format!("writing {}", readme.display()))?;
    eprintln!("xtask: {tag} written into {}", readme.display());
    Ok(())
}

/// The kernels × hook modes × tests table, generated from this run.
fn matrix_table(runs: &[KernelRun]) -> String {
    let mut s = String::from(
        "| kernel | image | dump entry | `auto` picks | fentry | kprobe | infer | checks passed | time (TCG) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in runs {
        let (release, image) = match &r.kernel {
            Some(k) => (k.release.clone(), format!("{} ({})", k.candidate.version, k.candidate.suite)),
            None => (r.label.clone(), "-".into()),
        };
        let time = r.elapsed.map(|t| format!("{:.0} s", t.as_secs_f64())).unwrap_or_else(|| "-".into());
        match &r.outcome {
            Err(e) => {
                let _ = writeln!(s, "| {release} | {image} | - | - | - | - | - | FAILED: {} | {time} |", e.replace('|', "/"));
            }
            Ok(o) => {
                let entry = o
                    .kernel
                    .as_deref()
                    .and_then(check::kernel_version)
                    .map(check::dump_function)
                    .unwrap_or("?");
                let mode_cell = |mode: &str| -> String {
                    let ok = o.checks.iter().filter(|c| c.mode.as_deref() == Some(mode));
                    let (n, pass) = ok.fold((0, 0), |(n, p), c| (n + 1, p + usize::from(c.pass)));
                    match o.modes.iter().find(|m| m.mode == mode) {
                        Some(m) if m.attached => format!("{pass}/{n}"),
                        Some(_) => "did not start".into(),
                        None => "-".into(),
                    }
                };
                let auto = o.modes.iter().find(|m| m.mode == "auto").and_then(|m| m.dump_mode.clone()).unwrap_or_else(|| "-".into());
                let passed = o.checks.iter().filter(|c| c.pass).count();
                let _ = writeln!(
                    s,
                    "| {release} | {image} | {entry} | {auto} | {} | {} | {} | {passed}/{} {} | {time} |",
                    mode_cell("fentry"),
                    mode_cell("kprobe"),
                    mode_cell("infer"),
                    o.checks.len(),
                    if o.passed() { "pass" } else { "FAIL" }
                );
            }
        }
    }
    s
}

//! The distro test tier (`cargo xtask distro-test`): real Debian userlands
//! (bullseye .. sid) with systemd as PID 1, built by mmdebstrap and booted
//! under qemu's TCG emulator on the VM tier's Debian cloud kernels. Each
//! guest boots twice: the first boot installs crashtrace's .deb (from
//! `cargo xtask dist`) as a user would and sets `pid = 1` and `journal =
//! true` in its config file; the second starts the packaged unit in boot
//! order. A script in the guest then checks the service (early start,
//! reload, restart), crashes an ordinary program, makes PID 1 itself fault
//! at address 0 through gdb, and crashes more programs on the frozen
//! system; the host judges crashtrace's JSON Lines log and the journal's
//! entries against what really happened.
//!
//! It fails, never skips: a missing tool, an image that cannot be built, a
//! guest that does not report, all fail with the reason.

mod boot;
mod check;
mod image;
mod release;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::vm::{kernels, qemu};

/// `cargo xtask distro-test` arguments.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// Releases to boot: `all`, or bullseye, bookworm, trixie, sid
    /// (comma-separated).
    #[arg(long, default_value = "all", value_name = "RELEASE|all")]
    pub release: String,
    /// Hard limit for one guest, boot to power-off, in seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
    /// Use the .deb already built under target/dist/ instead of running
    /// `cargo xtask dist` first.
    #[arg(long)]
    pub no_build: bool,
    /// Test this crashtrace .deb (as `cargo xtask dist` builds it).
    #[arg(long, value_name = "PATH", conflicts_with = "no_build")]
    pub deb: Option<PathBuf>,
    /// Guests booted side by side (each has one vCPU).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// Also write the systemd × scenario table into README.md between
    /// `<!-- distro-matrix:begin -->` and `<!-- distro-matrix:end -->`.
    #[arg(long)]
    pub update_readme: bool,
}

/// The .deb `cargo xtask dist` left under target/dist/.
fn built_deb() -> Result<PathBuf> {
    let dir = crate::root().join("target/dist");
    let found = fs::read_dir(&dir)
        .with_context(|| format!("listing {}; run `cargo xtask dist` or drop --no-build", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"));
    found.with_context(|| format!("no .deb in {}; run `cargo xtask dist` or drop --no-build", dir.display()))
}

/// Defaults for a run of every release, as `cargo xtask test` runs it.
impl Default for Args {
    fn default() -> Self {
        Args { release: "all".into(), timeout: 900, no_build: false, deb: None, jobs: 2, update_readme: false }
    }
}

/// One release's run.
struct ReleaseRun {
    release: release::Release,
    kernel: Option<String>,
    image_build: Option<Duration>,
    /// The first boot: installing the .deb.
    install_boot: Option<Duration>,
    boot: Option<Duration>,
    evidence: check::Evidence,
    checks: Vec<check::Check>,
    error: Option<String>,
    work: PathBuf,
}

impl ReleaseRun {
    fn passed(&self) -> bool {
        self.error.is_none() && !self.checks.is_empty() && self.checks.iter().all(|c| c.status.ok())
    }
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let root = crate::root();
    let dir = root.join("target/distro");
    fs::create_dir_all(&dir)?;
    let releases = release::select(&args.release)?;
    qemu::check_available()?;
    let deb = match (&args.deb, args.no_build) {
        (Some(p), _) => p.clone(),
        (None, true) => built_deb()?,
        (None, false) => crate::dist::build().context("building the .deb the guests install")?.deb,
    };
    if !deb.is_file() {
        bail!("{} does not exist; run `cargo xtask dist` or drop --no-build", deb.display());
    }
    let vmtool = image::build_vmtool(&dir)?;

    let vm_dir = root.join("target/vm");
    let apt = kernels::Apt::new(&vm_dir.join("apt"))?;
    apt.update_if_stale()?;
    let candidates = apt.cloud_images()?;

    // Image builds are network- and disk-bound and booting is CPU-bound, so
    // the next release's image is built while guests boot.
    let (tx, rx) = std::sync::mpsc::channel();
    let builder = {
        let releases = releases.clone();
        let dir = dir.clone();
        std::thread::spawn(move || {
            for rel in releases {
                eprintln!("xtask: distro: {}: root image (mmdebstrap, cached by recipe)", rel.name);
                let built = image::root_image(&dir.join(rel.image), &rel).map_err(|e| format!("{e:#}"));
                if tx.send((rel, built)).is_err() {
                    return;
                }
            }
        })
    };

    // Each guest has one vCPU, so `--jobs` guests boot side by side; they
    // take images in release order as the builder finishes them.
    let rx = std::sync::Mutex::new(rx);
    let runs = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.max(1) {
            scope.spawn(|| loop {
                let next = rx.lock().map_err(|_| ()).and_then(|r| r.recv().map_err(|_| ()));
                let Ok((rel, image)) = next else { return };
                let work = dir.join(rel.name).join("run");
                let mut run = ReleaseRun {
                    release: rel,
                    kernel: None,
                    image_build: None,
                    install_boot: None,
                    boot: None,
                    evidence: check::Evidence::default(),
                    checks: Vec::new(),
                    error: None,
                    work,
                };
                if let Err(e) = run_one(&mut run, args, &apt, &candidates, &vm_dir, image, &deb, &vmtool) {
                    run.error = Some(format!("{e:#}"));
                }
                report_one(&run);
                if let Ok(mut runs) = runs.lock() {
                    runs.push(run);
                }
            });
        }
    });
    let _ = builder.join();
    let mut runs = runs.into_inner().unwrap_or_default();
    // Oldest release first, whatever order the guests finished in.
    runs.sort_by_key(|r| release::RELEASES.iter().chain(release::VARIANTS).position(|x| x.name == r.release.name));
    if runs.len() != releases.len() {
        bail!("only {} of {} releases ran: the image builder stopped", runs.len(), releases.len());
    }

    let table = results_table(&runs);
    let behaviour = behaviour_table(&runs);
    let text = format!("{table}\n{behaviour}");
    let summary = dir.join("matrix.md");
    fs::write(&summary, &text).with_context(|| format!("writing {}", summary.display()))?;
    eprintln!("\n{text}\nxtask: distro: tables written to {}; total {:.0} s", summary.display(), started.elapsed().as_secs_f64());
    if args.update_readme {
        crate::vm::replace_readme_block(&root.join("README.md"), "distro-matrix", "cargo xtask distro-test --update-readme", &format!("{behaviour}\n{table}"))?;
    }
    let failed: Vec<&str> = runs.iter().filter(|r| !r.passed()).map(|r| r.release.name).collect();
    if !failed.is_empty() {
        bail!("distro tier failed on {}; details above, guest output under {}", failed.join(", "), dir.display());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    run: &mut ReleaseRun,
    args: &Args,
    apt: &kernels::Apt,
    candidates: &[kernels::Candidate],
    vm_dir: &Path,
    image: std::result::Result<(PathBuf, Option<Duration>), String>,
    deb: &Path,
    vmtool: &Path,
) -> Result<()> {
    let rel = &run.release;
    let spec = kernels::matrix()
        .into_iter()
        .find(|s| s.label == rel.kernel)
        .with_context(|| format!("{} names kernel row {}, which the VM matrix lacks", rel.name, rel.kernel))?;
    let candidate = kernels::choose(&spec, candidates)
        .with_context(|| format!("no cloud kernel of row {} in {}", spec.label, spec.suites.join(", ")))?;
    // Two releases may boot the same kernel: one download at a time.
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let kernel = {
        let _one = FETCH.lock().unwrap_or_else(|e| e.into_inner());
        kernels::fetch(apt, &candidate, vm_dir)?
    };
    run.kernel = Some(format!("{} ({})", kernel.release, candidate.suite));

    let (image, built) = image.map_err(anyhow::Error::msg).with_context(|| format!("building the {} root image", rel.name))?;
    run.image_build = built;
    match built {
        Some(t) => eprintln!("xtask: distro: {}: built {} in {:.0} s", rel.name, image.display(), t.as_secs_f64()),
        None => eprintln!("xtask: distro: {}: cached {}", rel.name, image.display()),
    }
    let disks = image::run_disks(&run.work, &image, deb, vmtool, rel.enable)?;
    eprintln!("xtask: distro: {}: first boot: installing {} under TCG, limit {} s", rel.name, deb.display(), args.timeout);
    let install = boot::boot(&kernel.vmlinuz, &disks, &run.work, "install", Duration::from_secs(args.timeout))?;
    run.install_boot = Some(install.elapsed);
    if install.exit.is_none() {
        let tail: Vec<&str> = install.console.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the install boot did not power off within {} s; console {}:\n      {}",
            args.timeout,
            install.console_path.display(),
            tail.join("\n      ")
        );
    }
    eprintln!("xtask: distro: {}: second boot: the scenarios on {}, limit {} s", rel.name, kernel.release, args.timeout);
    let boot = boot::boot(&kernel.vmlinuz, &disks, &run.work, "scenarios", Duration::from_secs(args.timeout))?;
    run.boot = Some(boot.elapsed);
    let out = run.work.join("results");
    let mut ev = check::Evidence::default();
    match image::unpack_results(&disks.results, &out) {
        Ok(()) => {
            let read = |name: &str| fs::read_to_string(out.join(name)).unwrap_or_default();
            ev.facts = check::parse_facts(&read("results.txt"));
            (ev.records, ev.bad_lines) = check::parse_records(&read("crashtrace.jsonl"));
            // Only the second boot's runs are judged; the first boot may
            // have left records of its own (from a postinst start, say).
            if let Some(boot) = ev.facts.get("boot_id").cloned() {
                ev.records.retain(|r| r["host"]["boot"].as_str().is_none_or(|b| b == boot));
            }
            ev.doctor = read("e.doctor.txt");
            ev.doctor_after_restore = read("d.doctor.txt");
            ev.journal = check::parse_journal(&read("journal-verdicts.json"));
        }
        Err(e) => {
            let end = match boot.exit {
                Some(s) => format!("qemu exited ({s})"),
                None => format!("killed at the {} s limit", args.timeout),
            };
            let tail: Vec<&str> = boot.console.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            ev.missing = Some(format!("{e:#}; {end}; console {}:\n      {}", boot.console_path.display(), tail.join("\n      ")));
        }
    }
    run.checks = check::evaluate(rel.name, &ev);
    run.evidence = ev;
    Ok(())
}

/// Seconds from power-on to the scenario script's start, as the guest's
/// uptime tells it.
fn to_script(ev: &check::Evidence) -> Option<f64> {
    ev.facts.get("boot_uptime")?.parse().ok()
}

fn report_one(run: &ReleaseRun) {
    let mut s = String::new();
    let rel = &run.release;
    let f = |k: &str| run.evidence.facts.get(k).cloned().unwrap_or_else(|| "?".into());
    let _ = writeln!(s, "\n== {} (systemd {} expected)", rel.name, rel.systemd);
    if let Some(k) = &run.kernel {
        let _ = writeln!(s, "   kernel   {k}");
    }
    let _ = writeln!(s, "   systemd  {}", f("systemd_version"));
    match run.image_build {
        Some(t) => {
            let _ = writeln!(s, "   image    built in {:.0} s", t.as_secs_f64());
        }
        None => {
            let _ = writeln!(s, "   image    cached");
        }
    }
    if let Some(t) = run.install_boot {
        let _ = writeln!(s, "   install  {:.0} s under TCG, boot to power-off", t.as_secs_f64());
    }
    if let Some(t) = run.boot {
        let script = to_script(&run.evidence).map(|u| format!(", scenarios started {u:.0} s after power-on")).unwrap_or_default();
        let _ = writeln!(s, "   time     {:.0} s under TCG, boot to power-off{script}; {}", t.as_secs_f64(), f("startup"));
    }
    if let Some(e) = &run.error {
        let _ = writeln!(s, "   FAIL     {e}");
    }
    for c in &run.checks {
        let _ = writeln!(s, "   {:<5}  {:<22} {}", c.status.label(), c.id, c.detail);
        if let check::Status::ExpectedFail(why) | check::Status::UnexpectedPass(why) = &c.status {
            let _ = writeln!(s, "          {:<22} listed as expected to fail: {why}", "");
        }
    }
    let _ = writeln!(s, "   output   {}", run.work.display());
    let _ = writeln!(s, "   result   {}", if run.passed() { "PASS" } else { "FAIL" });
    eprint!("{s}");
    let _ = fs::create_dir_all(&run.work);
    let _ = fs::write(run.work.join("report.txt"), s);
}

/// Releases × checks, with pass / xfail / FAIL per cell.
fn results_table(runs: &[ReleaseRun]) -> String {
    let mut s = String::from("| check |");
    for r in runs {
        let _ = write!(s, " {} |", r.release.name);
    }
    s.push_str("\n| --- |");
    for _ in runs {
        s.push_str(" --- |");
    }
    s.push('\n');
    for (id, what) in check::CHECKS {
        let _ = write!(s, "| `{id}`: {what} |");
        for r in runs {
            let cell = r.checks.iter().find(|c| c.id == *id).map(|c| c.status.label()).unwrap_or("-");
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    s
}

/// systemd version × scenario: what really happened in the guest, from the
/// guest's own facts (not crashtrace's view of them).
fn behaviour_table(runs: &[ReleaseRun]) -> String {
    let mut s = String::from(
        "| release | systemd | kernel | core_pattern at boot | a. ordinary crash | b. PID 1 faults at 0 | after the freeze | c. next crash | d. pattern restored | e. doctor |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in runs {
        let f = |k: &str| r.evidence.facts.get(k).map(|v| v.replace('|', "\\|")).unwrap_or_else(|| "?".into());
        let stored = |k: &str| match r.evidence.facts.get(k) {
            Some(v) if v.starts_with('/') => "core stored".to_string(),
            Some(_) | None => "no core stored".to_string(),
        };
        let systemd = f("systemd_version");
        let systemd = systemd.split_whitespace().nth(1).unwrap_or("?");
        let _ = writeln!(
            s,
            "| {} | {systemd} | {} | `{}` | {} | {}; child's core: {} | pattern `{}`, PID 1 {} in {} with {} fds, {} zombies; socket {} | {} | socket {}: {} | exit {} |",
            r.release.name,
            f("kernel"),
            f("core_pattern_initial"),
            stored("a.coredumpctl_storage"),
            f("b.caught_line"),
            stored("b.coredumpctl_storage"),
            f("b.core_pattern"),
            f("b.pid1_state"),
            f("b.pid1_wchan"),
            f("b.pid1_fds"),
            f("b.pid1_zombies"),
            f("b.coredump_socket"),
            stored("c.coredumpctl_storage"),
            f("d.coredump_socket"),
            stored("d.coredumpctl_storage"),
            f("e.doctor_rc"),
        );
    }
    s
}

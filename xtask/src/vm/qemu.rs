//! Booting one kernel with the test initramfs under qemu's TCG emulator
//! (KVM is not available on the machines this runs on), with a hard time
//! limit. The first serial port carries the kernel console, the second the
//! guest's results.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

pub(crate) const QEMU: &str = "qemu-system-x86_64";

/// How a boot ended, and what the guest said.
pub(crate) struct Boot {
    pub elapsed: Duration,
    /// None when qemu was killed at the time limit.
    pub exit: Option<std::process::ExitStatus>,
    pub console: String,
    pub results: String,
    pub console_path: PathBuf,
    pub results_path: PathBuf,
}

/// Checks qemu is there, with the hint that fixes it.
pub(crate) fn check_available() -> Result<()> {
    let out = Command::new(QEMU).arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        _ => anyhow::bail!("{QEMU} is missing or does not run; install it with `apt-get install qemu-system-x86`"),
    }
}

pub(crate) fn boot(vmlinuz: &Path, initramfs: &Path, work: &Path, limit: Duration) -> Result<Boot> {
    fs::create_dir_all(work)?;
    let console_path = work.join("console.log");
    let results_path = work.join("results.log");
    for p in [&console_path, &results_path] {
        let _ = fs::remove_file(p);
    }
    let mut cmd = Command::new(QEMU);
    cmd.args(["-accel", "tcg", "-machine", "pc", "-cpu", "max", "-m", "1024", "-smp", "1"])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        // panic=-1 turns a panic into a reboot, and -no-reboot into qemu's exit.
        .args(["-append", "console=ttyS0 rdinit=/init panic=-1 loglevel=6"])
        .arg("-serial")
        .arg(format!("file:{}", console_path.display()))
        .arg("-serial")
        .arg(format!("file:{}", results_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(work.join("qemu-stderr.log")).context("creating qemu's stderr log")?);
    let (exit, elapsed) = run_guest(&mut cmd, limit)?;
    let read = |p: &Path| fs::read(p).map(|b| String::from_utf8_lossy(&b).replace('\r', "")).unwrap_or_default();
    let mut console = read(&console_path);
    let stderr = read(&work.join("qemu-stderr.log"));
    if !stderr.trim().is_empty() {
        console.push_str("\n[qemu stderr]\n");
        console.push_str(&stderr);
    }
    Ok(Boot { elapsed, exit, console, results: read(&results_path), console_path, results_path })
}

/// Runs a qemu command line to its exit or, at `limit`, kills it: the
/// guest's exit status (None when killed) and how long it ran.
pub(crate) fn run_guest(cmd: &mut Command, limit: Duration) -> Result<(Option<std::process::ExitStatus>, Duration)> {
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {QEMU}; install it with `apt-get install qemu-system-x86`"))?;
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Ok((exit, start.elapsed()))
}

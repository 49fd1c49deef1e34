//! Booting a release's root disk under qemu's TCG emulator, with systemd as
//! PID 1 and no initramfs: the Debian cloud kernels have NVMe and ext4
//! built in, so the disks are namespaces of one NVMe controller (nsid: root
//! 1, payload 2, results 3), found in the guest by PARTUUID, label and nsid.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};

use super::image::RunDisks;
use crate::vm::qemu::QEMU;

pub(super) struct Boot {
    pub elapsed: Duration,
    /// None when qemu was killed at the time limit.
    pub exit: Option<std::process::ExitStatus>,
    pub console_path: PathBuf,
    pub console: String,
}

/// Boots the run's disks once; `name` tells the boot's console and qemu
/// logs apart.
pub(super) fn boot(vmlinuz: &Path, disks: &RunDisks, work: &Path, name: &str, limit: Duration) -> Result<Boot> {
    let console_path = work.join(format!("console-{name}.log"));
    let stderr_path = work.join(format!("qemu-{name}.log"));
    let drive = |id: &str, file: &Path, format: &str| format!("file={},if=none,id={id},format={format},cache=unsafe", file.display());
    let mut cmd = Command::new(QEMU);
    // One vCPU: the configuration the tier's timings were measured with;
    // two (MTTCG) have not been measured on an idle host.
    cmd.args(["-accel", "tcg", "-machine", "q35", "-cpu", "max", "-m", "2048", "-smp", "1"])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        // panic=-1 turns a panic into a reboot, and -no-reboot into qemu's
        // exit; the guest powers off through sysrq when it is done.
        .arg("-append")
        .arg(format!("console=ttyS0 {} rw rootfstype=ext4 panic=-1 loglevel=4 systemd.show_status=1", super::image::root_arg()))
        .args(["-drive", &drive("root", &disks.root_overlay, "qcow2")])
        .args(["-drive", &drive("payload", &disks.payload, "raw")])
        .args(["-drive", &drive("results", &disks.results, "raw")])
        .args(["-device", "nvme,id=nvme0,serial=crashtrace"])
        .args(["-device", "nvme-ns,drive=root,bus=nvme0,nsid=1"])
        .args(["-device", "nvme-ns,drive=payload,bus=nvme0,nsid=2"])
        .args(["-device", "nvme-ns,drive=results,bus=nvme0,nsid=3"])
        .arg("-serial")
        .arg(format!("file:{}", console_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr_path).context("creating qemu's stderr log")?);
    let (exit, elapsed) = crate::vm::qemu::run_guest(&mut cmd, limit)?;
    let mut console = fs::read(&console_path).map(|b| String::from_utf8_lossy(&b).replace('\r', "")).unwrap_or_default();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    if !stderr.trim().is_empty() {
        console.push_str("\n[qemu stderr]\n");
        console.push_str(&stderr);
    }
    Ok(Boot { elapsed, exit, console_path, console })
}

//! Host packages and kernel set-up the tasks need, so that the README's two
//! commands work on a fresh machine: on Debian and Ubuntu the missing
//! packages are installed with apt-get; elsewhere one line names what to
//! install and the task stops.
//!
//! Installing systemd-coredump rewrites `kernel.core_pattern` (its postinst
//! applies 50-coredump.conf), so the host's core-dump settings are saved
//! before any install and written back after it.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

/// What a task is about to do; each need brings its packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Linking host binaries (crashtrace, bpf-linker, the test programs).
    Build,
    /// Tier 2: crashing test programs, a real collector, unshare/setpriv,
    /// readelf/strip for the stack tests, Prometheus for the metrics test,
    /// podman (and runc) for the container test.
    Privileged,
    /// cargo-fuzz's libFuzzer is C++.
    Fuzz,
    /// Tiers 3 and 4: qemu, a static busybox and helper, Debian's archive
    /// keys; for the distro tier's images mmdebstrap, qemu-img and mkfs.ext4
    /// (with -d).
    Vm,
    /// `cargo xtask dist` and its check.
    Dist,
}

/// A Debian package and how to tell, without dpkg, that what it brings is
/// present (for the message on other distributions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Package {
    pub deb: &'static str,
    /// Any one of these paths existing counts as present.
    pub probes: &'static [&'static str],
}

const fn pkg(deb: &'static str, probes: &'static [&'static str]) -> Package {
    Package { deb, probes }
}

const GCC: Package = pkg("gcc", &["/usr/bin/gcc", "/usr/bin/cc"]);
const LIBC_DEV: Package = pkg(
    "libc6-dev",
    &["/usr/lib/x86_64-linux-gnu/libc.a", "/usr/lib64/libc.a", "/usr/lib/libc.a"],
);
const BINUTILS: Package = pkg("binutils", &["/usr/bin/readelf"]);
const UTIL_LINUX: Package = pkg("util-linux", &["/usr/bin/unshare", "/bin/unshare"]);
const COREDUMP: Package =
    pkg("systemd-coredump", &["/lib/systemd/systemd-coredump", "/usr/lib/systemd/systemd-coredump"]);
/// A real Prometheus (and promtool) scraping the tracer's metrics.
const PROMETHEUS: Package = pkg("prometheus", &["/usr/bin/prometheus"]);
/// Rootful podman for the container test; runc because crun refuses
/// hybrid cgroup hosts whose cgroup2 hierarchy has controllers.
const PODMAN: Package = pkg("podman", &["/usr/bin/podman"]);
const RUNC: Package = pkg("runc", &["/usr/bin/runc", "/usr/sbin/runc"]);
const GXX: Package = pkg("g++", &["/usr/bin/g++", "/usr/bin/c++"]);
const QEMU: Package = pkg("qemu-system-x86", &["/usr/bin/qemu-system-x86_64"]);
const BUSYBOX: Package = pkg("busybox-static", &["/bin/busybox", "/usr/bin/busybox"]);
const KEYRING: Package =
    pkg("debian-archive-keyring", &["/usr/share/keyrings/debian-archive-keyring.gpg"]);
const DPKG: Package = pkg("dpkg", &["/usr/bin/dpkg-deb"]);
const FILE: Package = pkg("file", &["/usr/bin/file"]);
const GZIP: Package = pkg("gzip", &["/bin/gzip", "/usr/bin/gzip"]);
const MMDEBSTRAP: Package = pkg("mmdebstrap", &["/usr/bin/mmdebstrap"]);
const QEMU_UTILS: Package = pkg("qemu-utils", &["/usr/bin/qemu-img"]);
const E2FSPROGS: Package = pkg("e2fsprogs", &["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]);

/// Every need: what `cargo xtask test` and `cargo xtask setup` install.
pub(crate) const ALL: [Need; 5] = [Need::Build, Need::Privileged, Need::Fuzz, Need::Vm, Need::Dist];

/// Packages for a set of needs, each once, in a stable order.
pub(crate) fn packages(needs: &[Need]) -> Vec<Package> {
    let mut out: Vec<Package> = Vec::new();
    for need in needs {
        let list: &[Package] = match need {
            Need::Build => &[GCC, LIBC_DEV],
            Need::Privileged => &[GCC, LIBC_DEV, BINUTILS, UTIL_LINUX, COREDUMP, PROMETHEUS, PODMAN, RUNC],
            Need::Fuzz => &[GXX],
            Need::Vm => &[QEMU, BUSYBOX, LIBC_DEV, KEYRING, MMDEBSTRAP, QEMU_UTILS, E2FSPROGS],
            Need::Dist => &[DPKG, FILE, GZIP],
        };
        for p in list {
            if !out.contains(p) {
                out.push(*p);
            }
        }
    }
    out
}

/// Whether /etc/os-release describes Debian or a derivative (Ubuntu says
/// `ID_LIKE=debian`).
pub(crate) fn is_debian_like(os_release: &str) -> bool {
    os_release.lines().any(|line| {
        let Some((key, value)) = line.split_once('=') else { return false };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        match key.trim() {
            "ID" => value == "debian" || value == "ubuntu",
            "ID_LIKE" => value.split_whitespace().any(|v| v == "debian" || v == "ubuntu"),
            _ => false,
        }
    })
}

/// Whether `dpkg-query -W -f='${Status}'` output means installed. A package
/// that was removed but left its config reads `deinstall ok config-files`.
pub(crate) fn status_is_installed(status: &str) -> bool {
    status.split_whitespace().last() == Some("installed")
}

fn dpkg_installed(deb: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", deb])
        .output()
        .map(|o| o.status.success() && status_is_installed(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or(false)
}

fn probe_present(p: &Package) -> bool {
    p.probes.iter().any(|path| Path::new(path).exists())
}

/// Installs (Debian, Ubuntu) or names (elsewhere) the packages `needs` call
/// for that are missing.
pub(crate) fn ensure(needs: &[Need]) -> Result<()> {
    let wanted = packages(needs);
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !is_debian_like(&os_release) {
        let missing: Vec<&str> = wanted.iter().filter(|p| !probe_present(p)).map(|p| p.deb).collect();
        if missing.is_empty() {
            return Ok(());
        }
        bail!(
            "not Debian or Ubuntu, so nothing was installed: install your distribution's equivalents of these Debian packages, then run this again: {}",
            missing.join(" ")
        );
    }
    let missing: Vec<&str> = wanted.iter().filter(|p| !dpkg_installed(p.deb)).map(|p| p.deb).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !crate::is_root() {
        bail!(
            "missing packages: {}; install them with `sudo apt-get install --no-install-recommends {}`, or run this task as root",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let _settings = CoreSettingsGuard::save();
    crate::run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args(["update", "-qq"]))
        .context("apt-get update (the package lists are needed to install the missing packages)")?;
    crate::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    )
    .with_context(|| format!("installing {}", missing.join(" ")))?;
    Ok(())
}

const CORE_SETTINGS: [&str; 2] = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/core_pipe_limit"];

/// The lock the privileged tests hold while they change or depend on the
/// core-dump settings (tracer/tests/common/mod.rs).
const GLOBAL_LOCK: &str = "/tmp/crashtrace-global.lock";

/// Puts the host's core_pattern and core_pipe_limit back when dropped,
/// even when the install failed half-way. It holds the privileged tests'
/// lock meanwhile, so a test running beside the install never sees the
/// pattern the package sets.
struct CoreSettingsGuard {
    saved: Vec<(&'static str, String)>,
    _lock: Option<std::fs::File>,
}

impl CoreSettingsGuard {
    fn save() -> CoreSettingsGuard {
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(GLOBAL_LOCK).ok();
        if let Some(file) = &lock {
            use std::os::fd::AsRawFd;
            eprintln!("xtask: waiting for {GLOBAL_LOCK} (held while privileged tests run)");
            // SAFETY: flock on an fd this function owns; released on close.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        }
        let saved = CORE_SETTINGS
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok().map(|v| (*path, v)))
            .collect();
        CoreSettingsGuard { saved, _lock: lock }
    }
}

impl Drop for CoreSettingsGuard {
    fn drop(&mut self) {
        for (path, value) in &self.saved {
            let now = std::fs::read_to_string(path).unwrap_or_default();
            if &now != value {
                match std::fs::write(path, value) {
                    Ok(()) => eprintln!("xtask: restored {path} to {:?} after the install changed it", value.trim_end()),
                    Err(e) => eprintln!(
                        "xtask: WARNING: could not restore {path} to {:?} ({e}); write it back by hand",
                        value.trim_end()
                    ),
                }
            }
        }
    }
}

/// Classic tracepoints (the helper's connect()) and their format files need
/// tracefs; crashtrace mounts it itself, but the tests read it first.
pub(crate) fn mount_tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok(());
    }
    crate::run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))
        .context("mounting tracefs on /sys/kernel/tracing (the kernel needs CONFIG_TRACING)")
}

/// Installs a rustup toolchain (minimal profile) when missing: the eBPF
/// build and the fuzzers need nightly.
pub(crate) fn rust_toolchain(name: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with(&format!("{name}-"))))
        .unwrap_or(false);
    if !installed {
        crate::run(Command::new("rustup").args(["toolchain", "install", name, "--profile", "minimal"]))
            .with_context(|| format!("installing the {name} Rust toolchain"))?;
    }
    Ok(())
}

/// Installs a rustup target (the standard library for it) when missing.
pub(crate) fn rust_target(target: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == target))
        .unwrap_or(false);
    if !installed {
        crate::run(Command::new("rustup").args(["target", "add", target]))
            .with_context(|| format!("adding the Rust target {target} (needed for the static build)"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_and_ubuntu_are_recognised() {
        assert!(is_debian_like("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"));
        assert!(is_debian_like("NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n"));
        // A derivative that names only its parent.
        assert!(is_debian_like("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"));
        assert!(!is_debian_like("ID=fedora\nID_LIKE=\"rhel centos\"\n"));
        assert!(!is_debian_like("ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n"));
        assert!(!is_debian_like(""), "no os-release is not Debian");
        // A pretty name mentioning Debian is not an ID.
        assert!(!is_debian_like("PRETTY_NAME=\"not debian\"\nID=arch\n"));
    }

    #[test]
    fn dpkg_status_installed_only_when_installed() {
        assert!(status_is_installed("install ok installed"));
        assert!(!status_is_installed("deinstall ok config-files"));
        assert!(!status_is_installed("unknown ok not-installed"));
        assert!(!status_is_installed("install ok half-installed"));
        assert!(!status_is_installed(""));
    }

    #[test]
    fn needs_bring_their_packages_once() {
        let all = packages(&ALL);
        let names: Vec<&str> = all.iter().map(|p| p.deb).collect();
        for want in [
            "gcc",
            "libc6-dev",
            "util-linux",
            "systemd-coredump",
            "g++",
            "qemu-system-x86",
            "busybox-static",
            "debian-archive-keyring",
            "dpkg",
            "file",
        ] {
            assert_eq!(names.iter().filter(|n| **n == want).count(), 1, "{want} once in {names:?}");
        }
        assert_eq!(packages(&[Need::Build]).iter().map(|p| p.deb).collect::<Vec<_>>(), ["gcc", "libc6-dev"]);
        assert!(packages(&[]).is_empty());
    }
}

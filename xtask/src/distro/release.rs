//! The Debian releases the distro tier boots, each with the kernel series it
//! gets from the VM tier's kernel matrix.

use anyhow::{bail, Result};

/// One Debian release: its suite, the kernel row of `vm::kernels::matrix()`
/// it boots, and the systemd it is known to ship (for the report only; the
/// guest reports the real version).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Release {
    pub name: &'static str,
    pub suite: &'static str,
    pub mirror: &'static str,
    /// A label of `vm::kernels::matrix()`.
    pub kernel: &'static str,
    pub systemd: &'static str,
}

/// Packages every image gets: systemd as PID 1 with its collector, gdb to
/// make PID 1 fault, udev (systemd's device handling, and the noise it
/// brings), procps for pidof.
pub(super) const PACKAGES: &[&str] = &["systemd", "systemd-sysv", "systemd-coredump", "udev", "procps", "gdb"];

/// Oldest first.
pub(super) const RELEASES: &[Release] = &[
    // bullseye's own 5.10 would do for systemd 247, but 6.1 is what the
    // bullseye-security backport offers and what the tracer is tested on.
    Release { name: "bullseye", suite: "bullseye", mirror: "http://deb.debian.org/debian", kernel: "6.1", systemd: "247" },
    Release { name: "bookworm", suite: "bookworm", mirror: "http://deb.debian.org/debian", kernel: "6.1", systemd: "252" },
    Release { name: "trixie", suite: "trixie", mirror: "http://deb.debian.org/debian", kernel: "6.12", systemd: "257" },
    // systemd 262's coredumpd speaks the kernel's @@ socket protocol (6.17+)
    // and wants pidfd coredump-signal info (6.19+): the newest kernel.
    Release { name: "sid", suite: "sid", mirror: "http://deb.debian.org/debian", kernel: "newest", systemd: "262" },
];

/// Resolves `--release`: `all` or one release name.
pub(super) fn select(wanted: &str) -> Result<Vec<Release>> {
    if wanted == "all" {
        return Ok(RELEASES.to_vec());
    }
    let mut out = Vec::new();
    for name in wanted.split(',') {
        match RELEASES.iter().find(|r| r.name == name.trim()) {
            Some(r) => out.push(r.clone()),
            None => {
                let names: Vec<&str> = RELEASES.iter().map(|r| r.name).collect();
                bail!("--release {wanted}: expected `all` or one of {} (comma-separated)", names.join(", "));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_selection() {
        assert_eq!(select("all").unwrap().len(), RELEASES.len());
        assert_eq!(select("bookworm").unwrap()[0].kernel, "6.1");
        assert_eq!(select("trixie,sid").unwrap().iter().map(|r| r.name).collect::<Vec<_>>(), ["trixie", "sid"]);
        assert!(select("buster").is_err());
    }

    #[test]
    fn every_release_names_a_kernel_row() {
        let rows: Vec<String> = crate::vm::kernels::matrix().into_iter().map(|s| s.label).collect();
        for r in RELEASES {
            assert!(rows.iter().any(|l| l == r.kernel), "{} boots kernel row {}, which the VM matrix lacks", r.name, r.kernel);
        }
    }
}

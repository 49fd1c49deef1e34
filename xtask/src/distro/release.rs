//! The Debian releases the distro tier boots, each with the kernel series it
//! gets from the VM tier's kernel matrix.

use anyhow::{bail, Result};

/// One Debian release: its suite, the kernel row of `vm::kernels::matrix()`
/// it boots, and the systemd it is known to ship (for the report only; the
/// guest reports the real version).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Release {
    pub name: &'static str,
    /// The root image it boots (a release's own name, or the release whose
    /// image a variant shares).
    pub image: &'static str,
    /// Units the first boot enables besides crashtrace (a variant's
    /// difference from its release).
    pub enable: &'static [&'static str],
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
    Release { name: "bullseye", image: "bullseye", enable: &[], suite: "bullseye", mirror: "http://deb.debian.org/debian", kernel: "6.1", systemd: "247" },
    Release { name: "bookworm", image: "bookworm", enable: &[], suite: "bookworm", mirror: "http://deb.debian.org/debian", kernel: "6.1", systemd: "252" },
    Release { name: "trixie", image: "trixie", enable: &[], suite: "trixie", mirror: "http://deb.debian.org/debian", kernel: "6.12", systemd: "257" },
    // systemd 262's coredumpd speaks the kernel's @@ socket protocol (6.17+)
    // and wants pidfd coredump-signal info (6.19+): the newest kernel.
    Release { name: "sid", image: "sid", enable: &[], suite: "sid", mirror: "http://deb.debian.org/debian", kernel: "newest", systemd: "262" },
];

/// Variants, run only when named (`--release sid-coredumpd`): not yet part
/// of `all`.
pub(super) const VARIANTS: &[Release] = &[
    // systemd 262 ships systemd-coredumpd disabled; enabled, it registers
    // `@@/run/systemd/coredumpd/kernel` as core_pattern and collects
    // through the kernel's socket protocol, in a service of its own rather
    // than behind PID 1's socket.
    Release {
        name: "sid-coredumpd",
        image: "sid",
        enable: &["systemd-coredumpd.service"],
        suite: "sid",
        mirror: "http://deb.debian.org/debian",
        kernel: "newest",
        systemd: "262",
    },
];

/// Resolves `--release`: `all` or one release name.
pub(super) fn select(wanted: &str) -> Result<Vec<Release>> {
    if wanted == "all" {
        return Ok(RELEASES.to_vec());
    }
    let mut out = Vec::new();
    for name in wanted.split(',') {
        match RELEASES.iter().chain(VARIANTS).find(|r| r.name == name.trim()) {
            Some(r) => out.push(r.clone()),
            None => {
                let names: Vec<&str> = RELEASES.iter().chain(VARIANTS).map(|r| r.name).collect();
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
        for r in RELEASES.iter().chain(VARIANTS) {
            assert!(RELEASES.iter().any(|x| x.name == r.image), "{} boots image {}, which no release builds", r.name, r.image);
            assert!(rows.iter().any(|l| l == r.kernel), "{} boots kernel row {}, which the VM matrix lacks", r.name, r.kernel);
        }
    }
}

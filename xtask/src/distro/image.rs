//! The guest's disks: the root file system built by mmdebstrap (cached per
//! release under target/distro/<release>/, named by a hash of its recipe so
//! a changed recipe builds a new one), a read-only payload disk with what
//! changes every run (crashtrace, the crasher, the scenario script), and a
//! raw results disk the guest writes a tar archive onto.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::release::{Release, PACKAGES};

const SCENARIOS_UNIT: &str = include_str!("../../distro/crashtrace-scenarios.service");
pub(super) const SCENARIOS: &str = include_str!("../../distro/scenarios.sh");
pub(super) const VMTOOL_C: &str = include_str!("../../vm/vmtool.c");
/// The payload disk carries this label; the image's fstab mounts it by it.
const PAYLOAD_LABEL: &str = "ctpayload";
/// The root file system's size, and where it starts on the disk: one MBR
/// partition, so the kernel finds it by PARTUUID. Device names do not
/// work: from Linux 7.x on, NVMe namespaces are probed in parallel and
/// /dev/nvme0n1 may be the payload disk.
const ROOT_SIZE_MIB: u64 = 3072;
const ROOT_OFFSET_MIB: u64 = 1;
/// The MBR disk signature; the partition is PARTUUID=<it>-01.
const DISK_ID: &str = "43545231";
const DISK_ID_VALUE: u32 = 0x4354_5231;

/// The kernel's `root=` for the image.
pub(super) fn root_arg() -> String {
    format!("root=PARTUUID={DISK_ID}-01")
}
/// Bumped by hand when the customize steps below change in a way the hash
/// of their text would not show.
const RECIPE_VERSION: u32 = 4;

/// The fstab the image ships: the root disk and the payload disk. The
/// payload's by-label link comes from udev, which under TCG with two guests
/// and a loaded host took over 60 s on trixie and sid: the mount then failed,
/// crashtrace and the scenarios with it, and the guest sat at its login
/// prompt until the time limit (the "script printed nothing" hang).
fn fstab() -> String {
    format!(
        "PARTUUID={DISK_ID}-01 / ext4 rw,errors=remount-ro 0 1\n\
         LABEL={PAYLOAD_LABEL} /payload ext4 ro,nofail,x-systemd.device-timeout=300s 0 0\n"
    )
}

/// Units the scenarios do not need (masking a unit a release lacks is harmless).
const MASKED: &[&str] = &[
    "systemd-networkd-wait-online.service",
    "systemd-networkd.service",
    "systemd-timesyncd.service",
    "getty@tty1.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "fstrim.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "dpkg-db-backup.timer",
    "systemd-tmpfiles-clean.timer",
];

/// Shell steps mmdebstrap runs on the finished tree ("$1" is its root).
fn customize_hooks(staging: &Path) -> Vec<String> {
    let s = staging.display();
    vec![
        format!("cp {s}/fstab \"$1/etc/fstab\""),
        "mkdir -p \"$1/payload\"".into(),
        "echo distro-guest > \"$1/etc/hostname\"".into(),
        format!("cp {s}/crashtrace-scenarios.service \"$1/etc/systemd/system/\""),
        "chroot \"$1\" systemctl enable crashtrace-scenarios.service".into(),
        // A root login on the console, for looking into a guest by hand.
        "chroot \"$1\" passwd -d root".into(),
        // Nothing in the guest needs the network, the clock, a login on the
        // VGA console or housekeeping timers, and each costs boot time under
        // TCG (or wakes up in the middle of the scenarios).
        format!("chroot \"$1\" systemctl mask {} >/dev/null 2>&1 || true", MASKED.join(" ")),
    ]
}

/// FNV-1a, 64 bits: a stable cache key that needs no crate.
pub(super) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Everything that decides the image's contents, as text to hash.
pub(super) fn recipe(release: &Release) -> String {
    format!(
        "v{RECIPE_VERSION}\n{} {} {}\nvariant=minbase\npackages={}\nsize={ROOT_SIZE_MIB}M at {ROOT_OFFSET_MIB}M of an MBR disk {DISK_ID}\n--fstab\n{}--hooks\n{}\n--unit\n{SCENARIOS_UNIT}",
        release.suite,
        release.mirror,
        release.image,
        PACKAGES.join(","),
        fstab(),
        customize_hooks(Path::new("STAGING")).join("\n"),
    )
}

/// The cached image's path for this recipe.
pub(super) fn image_path(dir: &Path, release: &Release) -> PathBuf {
    dir.join(format!("rootfs-{:016x}.ext4", fnv1a(recipe(release).as_bytes())))
}

/// Returns the root image, building it unless the cache holds this recipe's,
/// and how long the build took (None when cached).
pub(super) fn root_image(dir: &Path, release: &Release) -> Result<(PathBuf, Option<Duration>)> {
    fs::create_dir_all(dir)?;
    let image = image_path(dir, release);
    if image.is_file() {
        return Ok((image, None));
    }
    if Command::new("mmdebstrap").arg("--version").output().is_err() {
        bail!("mmdebstrap is missing; install it with `apt-get install mmdebstrap`");
    }
    let started = Instant::now();
    let staging = dir.join("staging");
    let tree = dir.join("rootfs.partial");
    let partial = image.with_extension("partial");
    for p in [&staging, &tree] {
        let _ = fs::remove_dir_all(p);
    }
    let _ = fs::remove_file(&partial);
    fs::create_dir_all(&staging)?;
    fs::write(staging.join("fstab"), fstab())?;
    fs::write(staging.join("crashtrace-scenarios.service"), SCENARIOS_UNIT)?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--mode=root", "--quiet"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg("--aptopt=Acquire::Retries \"3\"")
        // The mirror may serve a snapshot whose sid Release file has passed
        // its Valid-Until; the packages are still the ones signed. (apt
        // options do not change the image, so they are not in the recipe.)
        .arg("--aptopt=Acquire::Check-Valid-Until \"false\"");
    for hook in customize_hooks(&staging) {
        cmd.arg(format!("--customize-hook={hook}"));
    }
    cmd.arg(release.suite).arg(&tree).arg(release.mirror);
    crate::run(&mut cmd).with_context(|| {
        format!("mmdebstrap could not build {}; it needs {} to be reachable", release.name, release.mirror)
    })?;
    fs::File::create(&partial)?.set_len((ROOT_OFFSET_MIB + ROOT_SIZE_MIB) << 20)?;
    crate::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "distro-root", "-E"])
            .arg(format!("offset={},nodiscard", ROOT_OFFSET_MIB << 20))
            .arg("-d")
            .arg(&tree)
            .arg(&partial)
            .arg(format!("{ROOT_SIZE_MIB}M")),
    )
    .context("turning the tree into an ext4 file system (needs e2fsprogs 1.43+ for -d)")?;
    // After mkfs, which must not touch the first MiB but need not be trusted to.
    write_mbr(&partial)?;
    fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    // Images of older recipes are dead weight.
    for e in fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("rootfs-") && name.ends_with(".ext4") {
            let _ = fs::remove_file(e.path());
        }
    }
    fs::rename(&partial, &image)?;
    Ok((image, Some(started.elapsed())))
}

/// A master boot record with one Linux partition from ROOT_OFFSET_MIB
/// over ROOT_SIZE_MIB, and DISK_ID as its signature (which makes the
/// kernel's PARTUUID `<DISK_ID>-01`).
pub(super) fn mbr() -> [u8; 512] {
    let mut m = [0u8; 512];
    m[0x1b8..0x1bc].copy_from_slice(&DISK_ID_VALUE.to_le_bytes());
    let e = &mut m[0x1be..0x1ce];
    // CHS fields say "use LBA" (0xfe 0xff 0xff); the kernel reads the LBA ones.
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = 0x83;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    let start = (ROOT_OFFSET_MIB << 11) as u32;
    let sectors = (ROOT_SIZE_MIB << 11) as u32;
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

fn write_mbr(disk: &Path) -> Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().write(true).open(disk).with_context(|| format!("opening {}", disk.display()))?;
    f.write_all(&mbr()).with_context(|| format!("writing the partition table of {}", disk.display()))
}

/// Builds the static crasher (the VM tier's helper program).
pub(super) fn build_vmtool(work: &Path) -> Result<PathBuf> {
    let src = work.join("vmtool.c");
    let bin = work.join("vmtool");
    fs::write(&src, VMTOOL_C)?;
    crate::run(Command::new("gcc").args(["-O2", "-static", "-o"]).arg(&bin).arg(&src))
        .context("building the guest's crasher with gcc (static linking needs libc6-dev)")?;
    Ok(bin)
}

/// The per-run disks.
pub(super) struct RunDisks {
    pub root_overlay: PathBuf,
    pub payload: PathBuf,
    pub results: PathBuf,
}

/// A qcow2 overlay over the cached image (so the cache stays pristine; both
/// boots of a run share it), the payload disk, and an empty results disk.
pub(super) fn run_disks(work: &Path, image: &Path, deb: &Path, vmtool: &Path, enable: &[&str]) -> Result<RunDisks> {
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work)?;
    let root_overlay = work.join("root.qcow2");
    crate::run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(fs::canonicalize(image)?)
            .arg(&root_overlay),
    )
    .context("creating the root disk's overlay (qemu-img is in qemu-utils)")?;
    let dir = work.join("payload");
    fs::create_dir_all(&dir)?;
    // The package as `cargo xtask dist` built it; its binary is static, so
    // it runs on every guest's libc (bullseye has glibc 2.31).
    let name = deb.file_name().context("the .deb has a file name")?;
    fs::copy(deb, dir.join(name)).with_context(|| format!("copying {}", deb.display()))?;
    fs::copy(vmtool, dir.join("vmtool"))?;
    fs::write(dir.join("scenarios.sh"), SCENARIOS)?;
    fs::write(dir.join("message-ids.txt"), message_ids())?;
    fs::write(dir.join("enable-units.txt"), enable.iter().map(|u| format!("{u}\n")).collect::<String>())?;
    let payload = work.join("payload.ext4");
    crate::run(Command::new("mkfs.ext4").args(["-q", "-F", "-L", PAYLOAD_LABEL, "-d"]).arg(&dir).arg(&payload).arg("64M"))
        .context("building the payload disk")?;
    let results = work.join("results.tar");
    let f = fs::File::create(&results)?;
    f.set_len(64 << 20)?;
    Ok(RunDisks { root_overlay, payload, results })
}

/// Every verdict's journal MESSAGE_ID, one `verdict id` per line: the
/// guest asks journalctl for each.
pub(super) fn message_ids() -> String {
    crashtrace::sink::journal::MESSAGE_IDS.iter().map(|(v, id)| format!("{v} {id}\n")).collect()
}

/// Unpacks the guest's tar archive from the results disk.
pub(super) fn unpack_results(results: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    let out = Command::new("tar").arg("-xf").arg(results).arg("-C").arg(dest).output().context("cannot run tar")?;
    if !out.status.success() {
        bail!(
            "the results disk holds no archive ({}); the guest did not finish, see its console log",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distro::release::RELEASES;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn mbr_layout() {
        let m = mbr();
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(format!("{:08x}", u32::from_le_bytes(m[0x1b8..0x1bc].try_into().unwrap())), DISK_ID);
        assert_eq!(m[0x1be + 4], 0x83);
        assert_eq!(u32::from_le_bytes(m[0x1be + 8..0x1be + 12].try_into().unwrap()), 2048);
        assert_eq!(u64::from(u32::from_le_bytes(m[0x1be + 12..0x1be + 16].try_into().unwrap())), ROOT_SIZE_MIB * 2048);
        // The other three entries are empty.
        assert!(m[0x1ce..0x1fe].iter().all(|b| *b == 0));
    }

    #[test]
    fn each_release_has_its_own_image_name() {
        let dir = Path::new("/x");
        let names: Vec<PathBuf> = RELEASES.iter().map(|r| image_path(dir, r)).collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The staging directory's location is not part of the recipe.
        assert!(!recipe(&RELEASES[0]).contains("target/distro"));
    }
}

//! Debian kernels for the VM tier: which ones, where to get them, and the
//! cache under target/vm/.
//!
//! apt runs with a private sources list, lists directory and cache, so the
//! host's own apt state is neither read for the choice nor changed. The
//! choice is made afresh from the suites' package lists: the newest cloud
//! image of a kernel series, so the matrix follows Debian's security updates
//! without edits here.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context, Result};

/// One row of the kernel matrix.
#[derive(Clone, Debug)]
pub(crate) struct KernelSpec {
    /// What `--kernel` takes, and the row's name in reports.
    pub label: String,
    /// The kernel series ("6.1"), or None for the newest kernel offered.
    pub series: Option<String>,
    /// Suites to take it from; empty means any suite of the private list.
    pub suites: Vec<&'static str>,
    /// What the row is there to cover.
    pub covers: &'static str,
}

fn spec(label: &str, series: Option<&str>, suites: &[&'static str], covers: &'static str) -> KernelSpec {
    KernelSpec { label: label.into(), series: series.map(Into::into), suites: suites.to_vec(), covers }
}

/// The default matrix, oldest first.
pub(crate) fn matrix() -> Vec<KernelSpec> {
    vec![
        spec("5.10", Some("5.10"), &["bullseye-security", "bullseye"], "the oldest supported kernel (do_coredump)"),
        spec("6.1", Some("6.1"), &["bookworm-security", "bookworm"], "do_coredump"),
        spec("6.12", Some("6.12"), &["trixie-security", "trixie"], "do_coredump"),
        spec("6.18", Some("6.18"), &["trixie-backports"], "vfs_coredump (6.17+), @ socket core_patterns (6.16+)"),
        spec("newest", None, &["trixie-backports", "sid"], "the newest cloud kernel offered"),
    ]
}

/// Resolves `--kernel`: "all", a matrix label, or any other "X.Y" series
/// (then looked up in every suite).
pub(crate) fn select(wanted: &str) -> Result<Vec<KernelSpec>> {
    if wanted == "all" {
        return Ok(matrix());
    }
    if let Some(s) = matrix().into_iter().find(|s| s.label == wanted) {
        return Ok(vec![s]);
    }
    let is_series = {
        let mut parts = wanted.split('.');
        let ok = |p: Option<&str>| p.map(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).unwrap_or(false);
        ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
    };
    if !is_series {
        let labels: Vec<String> = matrix().into_iter().map(|s| s.label).collect();
        bail!("--kernel {wanted}: expected `all`, one of {}, or a kernel series such as 6.6", labels.join(", "));
    }
    Ok(vec![spec(wanted, Some(wanted), &[], "a series asked for with --kernel")])
}

const SUITES: &[(&str, &str)] = &[
    ("http://deb.debian.org/debian", "bullseye"),
    ("http://deb.debian.org/debian-security", "bullseye-security"),
    ("http://deb.debian.org/debian", "bookworm"),
    ("http://deb.debian.org/debian-security", "bookworm-security"),
    ("http://deb.debian.org/debian", "trixie"),
    ("http://deb.debian.org/debian-security", "trixie-security"),
    ("http://deb.debian.org/debian", "trixie-backports"),
    ("http://deb.debian.org/debian", "sid"),
];
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Package lists older than this are fetched again.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// apt with private state under `dir`.
pub(crate) struct Apt {
    dir: PathBuf,
}

/// A cloud image package offered by a suite.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Candidate {
    pub package: String,
    pub version: String,
    pub suite: String,
}

impl Apt {
    pub(crate) fn new(dir: &Path) -> Result<Apt> {
        if !Path::new(KEYRING).is_file() {
            bail!("{KEYRING} is missing; install it with `apt-get install debian-archive-keyring`");
        }
        for sub in ["lists/partial", "cache/archives/partial", "debs"] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let list: String = SUITES
            .iter()
            .map(|(uri, suite)| format!("deb [arch=amd64 signed-by={KEYRING}] {uri} {suite} main\n"))
            .collect();
        fs::write(dir.join("sources.list"), list).context("writing the private sources list")?;
        Ok(Apt { dir: dir.to_path_buf() })
    }

    /// The options that keep apt on the private list; the same for update,
    /// apt-cache and download.
    fn options(&self) -> Vec<String> {
        let d = |s: &str| self.dir.join(s).display().to_string();
        [
            format!("Dir::Etc::SourceList={}", d("sources.list")),
            "Dir::Etc::SourceParts=/dev/null".into(),
            format!("Dir::State::Lists={}", d("lists")),
            // Keeps apt's binary caches off the host's /var/cache/apt.
            format!("Dir::Cache={}", d("cache")),
            "APT::Architecture=amd64".into(),
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            // Downloads go to a directory the _apt user cannot write.
            "APT::Sandbox::User=root".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.args(self.options());
        c
    }

    /// Fetches the package lists unless they are fresh. A failed fetch
    /// with usable old lists is reported and the old lists are used.
    pub(crate) fn update_if_stale(&self) -> Result<()> {
        let stamp = self.dir.join("lists/.crashtrace-updated");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .map(|t| SystemTime::now().duration_since(t).map(|age| age < LISTS_MAX_AGE).unwrap_or(false))
            .unwrap_or(false);
        if fresh {
            return Ok(());
        }
        eprintln!("xtask: vm: fetching Debian package lists (bullseye .. sid) into {}", self.dir.join("lists").display());
        let status = self.command("apt-get").args(["-qq", "update"]).status().context("cannot run apt-get")?;
        if status.success() {
            fs::write(&stamp, b"").context("stamping the package lists")?;
            return Ok(());
        }
        if stamp.exists() {
            eprintln!("xtask: vm: WARNING: apt-get update failed ({status}); using the package lists from the last fetch");
            return Ok(());
        }
        bail!("apt-get update with the private sources list failed ({status}); the VM tier needs deb.debian.org (or a mirror of it) to fetch kernels")
    }

    /// Every `linux-image-X.Y...-cloud-amd64` package the suites offer.
    pub(crate) fn cloud_images(&self) -> Result<Vec<Candidate>> {
        let out = self.command("apt-cache").args(["pkgnames", "linux-image-"]).output().context("cannot run apt-cache")?;
        if !out.status.success() {
            bail!("apt-cache pkgnames failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|n| image_series(n).is_some())
            .map(str::to_string)
            .collect();
        names.sort();
        if names.is_empty() {
            bail!("the package lists name no linux-image-*-cloud-amd64 package; is {} complete?", self.dir.join("lists").display());
        }
        let out = self.command("apt-cache").arg("madison").args(&names).output().context("cannot run apt-cache")?;
        if !out.status.success() {
            bail!("apt-cache madison failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(parse_madison(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Downloads packages into `dest` (names, or name=version).
    pub(crate) fn download(&self, packages: &[String], dest: &Path) -> Result<()> {
        let status = self
            .command("apt-get")
            .current_dir(dest)
            .args(["-qq", "download"])
            .args(packages)
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get download {} failed ({status})", packages.join(" "));
        }
        Ok(())
    }
}

/// "6.1" for "linux-image-6.1.0-56-cloud-amd64", "7.3" for
/// "linux-image-7.3.4+deb13-cloud-amd64"; None for meta-packages,
/// unsigned and debug images.
pub(crate) fn image_series(package: &str) -> Option<String> {
    let rest = package.strip_prefix("linux-image-")?.strip_suffix("-cloud-amd64")?;
    let mut chars = rest.char_indices();
    let mut dots = 0;
    for (i, c) in &mut chars {
        if c == '.' {
            dots += 1;
            if dots == 2 {
                return Some(rest[..i].to_string());
            }
        } else if c == '-' || c == '+' {
            return (dots == 1 && i + 1 < rest.len()).then(|| rest[..i].to_string());
        } else if !c.is_ascii_digit() {
            return None;
        }
    }
    None
}

/// Parses `apt-cache madison` lines:
/// `pkg | version | http://deb.debian.org/debian trixie-backports/main amd64 Packages`.
pub(crate) fn parse_madison(text: &str) -> Vec<Candidate> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split('|').map(str::trim);
            let package = parts.next()?.to_string();
            let version = parts.next()?.to_string();
            let source = parts.next()?;
            if !source.ends_with("Packages") {
                return None;
            }
            let suite = source.split_whitespace().nth(1)?.split('/').next()?.to_string();
            Some(Candidate { package, version, suite })
        })
        .collect()
}

/// dpkg's version order.
fn version_gt(a: &str, b: &str) -> bool {
    Command::new("dpkg").args(["--compare-versions", a, "gt", b]).status().map(|s| s.success()).unwrap_or(false)
}

/// The newest candidate that fits the spec.
pub(crate) fn choose(spec: &KernelSpec, candidates: &[Candidate]) -> Option<Candidate> {
    let mut best: Option<&Candidate> = None;
    for c in candidates {
        if !spec.suites.is_empty() && !spec.suites.contains(&c.suite.as_str()) {
            continue;
        }
        if spec.series.as_ref().is_some_and(|series| image_series(&c.package).as_ref() != Some(series)) {
            continue;
        }
        if best.map(|b| version_gt(&c.version, &b.version)).unwrap_or(true) {
            best = Some(c);
        }
    }
    best.cloned()
}

/// A kernel unpacked and ready to boot.
#[derive(Clone, Debug)]
pub(crate) struct Kernel {
    pub candidate: Candidate,
    /// What `uname -r` will say.
    pub release: String,
    pub vmlinuz: PathBuf,
    pub config: Option<PathBuf>,
}

/// Downloads (unless cached) and unpacks the chosen image under `root`.
/// Images from 6.19 on are split: the image package holds no vmlinuz and
/// depends on linux-binary-* (vmlinuz) and linux-base-* (config) of the
/// same version; those are fetched then.
pub(crate) fn fetch(apt: &Apt, candidate: &Candidate, root: &Path) -> Result<Kernel> {
    let unpacked = root.join("kernels").join(format!("{}_{}", candidate.package, candidate.version));
    if let Some(k) = find_kernel(candidate, &unpacked) {
        return Ok(k);
    }
    let debs = root.join("apt/debs");
    let pinned = format!("{}={}", candidate.package, candidate.version);
    eprintln!("xtask: vm: downloading {pinned} ({})", candidate.suite);
    apt.download(std::slice::from_ref(&pinned), &debs)?;
    let image = find_deb(&debs, &candidate.package, &candidate.version)?;
    let partial = unpacked.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    unpack(&image, &partial)?;
    if find_kernel(candidate, &partial).is_none() {
        let depends = Command::new("dpkg-deb").arg("-f").arg(&image).arg("Depends").output().context("cannot run dpkg-deb")?;
        let split = split_parts(&String::from_utf8_lossy(&depends.stdout));
        if split.is_empty() {
            bail!("{} holds no vmlinuz and depends on no linux-binary-* package", image.display());
        }
        let pinned: Vec<String> = split.iter().map(|(p, v)| format!("{p}={v}")).collect();
        eprintln!("xtask: vm: the image is split; downloading {}", pinned.join(" "));
        apt.download(&pinned, &debs)?;
        for (p, v) in &split {
            unpack(&find_deb(&debs, p, v)?, &partial)?;
        }
    }
    let _ = fs::remove_dir_all(&unpacked);
    fs::rename(&partial, &unpacked)?;
    find_kernel(candidate, &unpacked)
        .with_context(|| format!("{} unpacked to {} but holds no vmlinuz", candidate.package, unpacked.display()))
}

fn unpack(deb: &Path, dest: &Path) -> Result<()> {
    let status = Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest).status().context("cannot run dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed ({status})", deb.display());
    }
    Ok(())
}

/// The linux-binary-* and linux-base-* packages a split image depends on,
/// with the exact versions its `(= VERSION)` constraints name.
pub(crate) fn split_parts(depends: &str) -> Vec<(String, String)> {
    depends
        .split(',')
        .filter_map(|alternatives| {
            let dep = alternatives.split('|').next()?.trim();
            let (name, rest) = dep.split_once(' ').unwrap_or((dep, ""));
            let version = rest.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
            let wanted = name.starts_with("linux-binary-") || (name.starts_with("linux-base-") && name.ends_with("-amd64"));
            wanted.then(|| (name.to_string(), version.to_string()))
        })
        .collect()
}

/// apt names downloads `NAME_VERSION_ARCH.deb`, with ':' in the version
/// escaped as "%3a".
fn find_deb(dir: &Path, package: &str, version: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{package}_{}_amd64.deb", version.replace(':', "%3a")));
    if path.is_file() {
        Ok(path)
    } else {
        bail!("apt-get download succeeded but {} is missing", path.display())
    }
}

/// The kernel image and config in an unpacked tree: /boot/vmlinuz-REL and
/// /boot/config-REL up to 6.18, /usr/lib/modules/REL/{vmlinuz,config} after.
fn find_kernel(candidate: &Candidate, tree: &Path) -> Option<Kernel> {
    let boot = tree.join("boot");
    if let Ok(entries) = fs::read_dir(&boot) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(release) = name.strip_prefix("vmlinuz-") {
                let config = boot.join(format!("config-{release}"));
                return Some(Kernel {
                    candidate: candidate.clone(),
                    release: release.to_string(),
                    vmlinuz: e.path(),
                    config: config.is_file().then_some(config),
                });
            }
        }
    }
    let modules = tree.join("usr/lib/modules");
    for e in fs::read_dir(&modules).ok()?.flatten() {
        let vmlinuz = e.path().join("vmlinuz");
        if vmlinuz.is_file() {
            let config = e.path().join("config");
            return Some(Kernel {
                candidate: candidate.clone(),
                release: e.file_name().to_string_lossy().to_string(),
                vmlinuz,
                config: config.is_file().then_some(config),
            });
        }
    }
    None
}

/// `CONFIG_NAME=value` lines of a kernel config, for the report.
pub(crate) fn config_values(config: &Path, names: &[&str]) -> Vec<(String, String)> {
    let text = fs::read_to_string(config).unwrap_or_default();
    names
        .iter()
        .map(|n| {
            let set = text.lines().find_map(|l| l.strip_prefix(&format!("{n}=")).map(str::to_string));
            (n.to_string(), set.unwrap_or_else(|| "n".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_image_names() {
        assert_eq!(image_series("linux-image-6.1.0-56-cloud-amd64").as_deref(), Some("6.1"));
        assert_eq!(image_series("linux-image-5.10.0-46-cloud-amd64").as_deref(), Some("5.10"));
        assert_eq!(image_series("linux-image-6.12.118+deb13-cloud-amd64").as_deref(), Some("6.12"));
        assert_eq!(image_series("linux-image-7.3.4+deb13-cloud-amd64").as_deref(), Some("7.3"));
        assert_eq!(image_series("linux-image-6.1.0-0.deb11.52-cloud-amd64").as_deref(), Some("6.1"));
        // Meta-packages, unsigned and debug images are not boot images here.
        assert_eq!(image_series("linux-image-6.1-cloud-amd64"), None);
        assert_eq!(image_series("linux-image-cloud-amd64"), None);
        assert_eq!(image_series("linux-image-6.1.0-56-cloud-amd64-unsigned"), None);
        assert_eq!(image_series("linux-image-6.1.0-56-cloud-amd64-dbg"), None);
        assert_eq!(image_series("linux-image-6.1.0-56-amd64"), None);
    }

    const MADISON: &str = "\
linux-image-6.1.0-56-cloud-amd64 |  6.1.192-2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.1.0-47-cloud-amd64 |  6.1.176-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
linux-image-6.1.0-0.deb11.52-cloud-amd64 | 6.1.170-1~deb11u1 | http://deb.debian.org/debian-security bullseye-security/main amd64 Packages
linux-image-6.12.118+deb13-cloud-amd64 | 6.12.118-1 | http://deb.debian.org/debian-security trixie-security/main amd64 Packages
linux-image-7.3.4+deb13-cloud-amd64 | 7.3.4-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
linux-image-7.2.13+deb14-cloud-amd64 |   7.2.13-1 | http://deb.debian.org/debian sid/main amd64 Packages
linux | 6.1.192-2 | http://deb.debian.org/debian-security bookworm-security/main Sources
";

    #[test]
    fn madison_lines_parse() {
        let c = parse_madison(MADISON);
        assert_eq!(c.len(), 6, "the Sources line is not an image");
        assert_eq!(
            c[0],
            Candidate {
                package: "linux-image-6.1.0-56-cloud-amd64".into(),
                version: "6.1.192-2".into(),
                suite: "bookworm-security".into()
            }
        );
        assert_eq!(c[4].suite, "trixie-backports");
    }

    #[test]
    fn choice_follows_series_suites_and_version() {
        let c = parse_madison(MADISON);
        let by_label = |l: &str| matrix().into_iter().find(|s| s.label == l).unwrap();
        assert_eq!(choose(&by_label("6.1"), &c).unwrap().package, "linux-image-6.1.0-56-cloud-amd64");
        assert_eq!(choose(&by_label("6.12"), &c).unwrap().package, "linux-image-6.12.118+deb13-cloud-amd64");
        assert_eq!(choose(&by_label("newest"), &c).unwrap().package, "linux-image-7.3.4+deb13-cloud-amd64");
        assert!(choose(&by_label("5.10"), &c).is_none());
    }

    #[test]
    fn split_image_parts() {
        let depends = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
            linux-base-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-binary-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), \
            linux-modules-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1)";
        assert_eq!(
            split_parts(depends),
            [
                ("linux-base-7.3.4+deb13-cloud-amd64".to_string(), "7.3.4-1~bpo13+1".to_string()),
                ("linux-binary-7.3.4+deb13-cloud-amd64".to_string(), "7.3.4-1~bpo13+1".to_string()),
            ]
        );
        // A 6.18 image depends on the generic linux-base without an exact version.
        assert!(split_parts("kmod, linux-base (>= 4.12~), initramfs-tools (>= 0.120+deb8u2)").is_empty());
    }

    #[test]
    fn kernel_selection() {
        assert_eq!(select("all").unwrap().len(), matrix().len());
        assert_eq!(select("6.12").unwrap()[0].suites, ["trixie-security", "trixie"]);
        let other = select("6.6").unwrap();
        assert_eq!(other[0].series.as_deref(), Some("6.6"));
        assert!(other[0].suites.is_empty());
        assert!(select("six").is_err());
        assert!(select("6.").is_err());
    }
}

//! `cargo xtask dist`: what a host installs. Under target/dist/ it leaves a
//! static x86_64 (musl) crashtrace with the eBPF object built in, its
//! SHA-256, and a .deb with that binary, a systemd unit, the configuration
//! file (a conffile), man pages and shell completions generated from the
//! real `Cli`, and the licence texts.
//!
//! The .deb is assembled with `dpkg-deb` rather than cargo-deb: dpkg-deb is on
//! every host this targets (it needs Debian to install anyway), costs no
//! minutes-long tool build on CI, and the layout is written out here in
//! full, where the check below can compare it with what was packed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;

use clap_complete::Shell;

/// The static build's target: musl links everything in.
pub(crate) const TARGET: &str = "x86_64-unknown-linux-musl";
/// The package's Debian architecture for [`TARGET`].
const DEB_ARCH: &str = "amd64";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const DESCRIPTION: &str = "eBPF tracer of crashes, core dumps and their collectors";

/// The unit the package installs; see the file for why each line is there.
pub(crate) const UNIT: &str = include_str!("dist/crashtrace.service");
const UNIT_PATH: &str = "lib/systemd/system/crashtrace.service";
/// The configuration file the package installs: the service's settings,
/// and every other key commented out with its default and what it does.
pub(crate) const CONFIG: &str = include_str!("dist/crashtrace.toml");
/// Where it goes; also the binary's default `--config`.
const CONFIG_PATH: &str = "etc/crashtrace/crashtrace.toml";

/// `cargo xtask dist` arguments.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// Then check what was built: static, runs, package contents, an
    /// install into a scratch root, the unit (and, as root, that it attaches).
    #[arg(long)]
    pub check: bool,
}

/// What `build` produced.
pub(crate) struct Dist {
    pub binary: PathBuf,
    pub deb: PathBuf,
}

/// The product's command line, as the binary parses it.
pub(crate) fn cli() -> clap::Command {
    crashtrace::cli::Cli::command()
}

/// Man pages for `cmd` and each visible subcommand: (file name, roff).
/// Subcommand pages are named `crashtrace-report.1` and so on.
pub(crate) fn man_pages(cmd: clap::Command) -> Result<Vec<(String, Vec<u8>)>> {
    fn walk(cmd: clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
        let man = clap_mangen::Man::new(cmd.clone()).date("");
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        out.push((man.get_filename(), roff));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, out)?;
        }
        Ok(())
    }
    // Building sets the subcommands' display names (`crashtrace-report`),
    // which name their pages; the help subcommand needs no page.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out)?;
    Ok(out)
}

/// The shells completions are made for, with where Debian's packages of
/// each shell look for a vendor's completion file.
pub(crate) const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "usr/share/bash-completion/completions/crashtrace"),
    (Shell::Zsh, "usr/share/zsh/vendor-completions/_crashtrace"),
    (Shell::Fish, "usr/share/fish/vendor_completions.d/crashtrace.fish"),
];

pub(crate) fn completion(shell: Shell, mut cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "crashtrace", &mut out);
    out
}

/// Every file the package must hold, as `dpkg-deb -c` names them.
pub(crate) fn expected_files() -> Result<Vec<String>> {
    let mut files = vec!["./usr/bin/crashtrace".to_string(), format!("./{UNIT_PATH}"), format!("./{CONFIG_PATH}")];
    for (name, _) in man_pages(cli())? {
        files.push(format!("./usr/share/man/man1/{name}.gz"));
    }
    for (_, path) in SHELLS {
        files.push(format!("./{path}"));
    }
    for doc in ["copyright", "LICENSE-MIT", "LICENSE-APACHE"] {
        files.push(format!("./usr/share/doc/crashtrace/{doc}"));
    }
    Ok(files)
}

/// The paths in `dpkg-deb -c` output (`perms owner size date time path`;
/// a symlink adds ` -> target`).
pub(crate) fn listed_paths(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|line| {
            let path = line.split_whitespace().nth(5)?;
            Some(path.trim_end_matches('/'))
        })
        .collect()
}

/// The package's control file.
pub(crate) fn control(installed_kib: u64) -> String {
    format!(
        "Package: crashtrace\n\
         Version: {VERSION}\n\
         Architecture: {DEB_ARCH}\n\
         Maintainer: The crashtrace developers\n\
         Installed-Size: {installed_kib}\n\
         Recommends: procps\n\
         Section: admin\n\
         Priority: optional\n\
         Description: {DESCRIPTION}\n \
         crashtrace follows every crash from the fatal signal to the core-dump\n \
         collector and says whether the core was stored or dropped, and why.\n \
         The binary is static and carries its eBPF programs; it needs a kernel\n \
         with BTF (5.10 or later). The service is installed but not enabled:\n \
         systemctl enable --now crashtrace\n"
    )
}

/// Debian's machine-readable copyright file, pointing at the two texts.
fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
     Upstream-Name: crashtrace\n\n\
     Files: *\n\
     Copyright: The crashtrace developers\n\
     License: MIT or Apache-2.0\n \
     The full texts are LICENSE-MIT and LICENSE-APACHE in this directory.\n"
        .to_string()
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("running sha256sum (coreutils)")?;
    if !out.status.success() {
        bail!("sha256sum {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let hash = text.split_whitespace().next().unwrap_or_default().to_string();
    if hash.len() != 64 {
        bail!("sha256sum {} printed {text:?}", path.display());
    }
    Ok(hash)
}

/// Writes `NAME.sha256` next to `path` in `sha256sum -c` format.
fn write_sha256(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().and_then(|n| n.to_str()).context("file name")?;
    let sum = path.with_file_name(format!("{name}.sha256"));
    fs::write(&sum, format!("{}  {name}\n", sha256(path)?))?;
    Ok(sum)
}

/// Commit time of HEAD, so package timestamps do not depend on when it
/// was built.
fn source_date_epoch() -> Option<String> {
    let out = Command::new("git").current_dir(crate::root()).args(["log", "-1", "--format=%ct"]).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn du_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += du_kib(&entry.path())?;
        } else {
            total += meta.len().div_ceil(1024);
        }
    }
    Ok(total)
}

/// Builds the static (musl) crashtrace with the eBPF object built in, and
/// checks that it is static: the path of cargo's output.
pub(crate) fn static_binary() -> Result<PathBuf> {
    let root = crate::root();
    crate::deps::rust_target(TARGET)?;
    let object = crate::build_ebpf()?;
    crate::run(
        Command::new("cargo")
            .current_dir(&root)
            .env("CRASHTRACE_EBPF_OBJECT", &object)
            // Symbols are not needed to run it and are most of its size;
            // the musl target's artifacts are dist's own, so this
            // profile override rebuilds nothing else.
            .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
            .args(["build", "-p", "crashtrace", "--release", "--target", TARGET]),
    )
    .context("building the static crashtrace")?;
    let built = root.join("target").join(TARGET).join("release/crashtrace");
    check_static(&built)?;
    Ok(built)
}

/// Builds the static binary and the .deb.
pub(crate) fn build() -> Result<Dist> {
    let started = std::time::Instant::now();
    let root = crate::root();
    let out_dir = root.join("target/dist");
    fs::create_dir_all(&out_dir)?;
    let built = static_binary()?;
    let binary = out_dir.join(format!("crashtrace-{VERSION}-{TARGET}"));
    fs::copy(&built, &binary).with_context(|| format!("copying {}", built.display()))?;
    write_sha256(&binary)?;
    check_static(&binary)?;

    let stage = out_dir.join("deb");
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing the old {}", stage.display()))?;
    }
    write(&stage.join("usr/bin/crashtrace"), &fs::read(&binary)?, 0o755)?;
    write(&stage.join(UNIT_PATH), UNIT.as_bytes(), 0o644)?;
    write(&stage.join(CONFIG_PATH), CONFIG.as_bytes(), 0o644)?;
    // dpkg keeps an edited conffile on upgrade (and asks); only files
    // listed here get that care.
    write(&stage.join("DEBIAN/conffiles"), format!("/{CONFIG_PATH}\n").as_bytes(), 0o644)?;
    let man_dir = stage.join("usr/share/man/man1");
    for (name, roff) in man_pages(cli())? {
        let page = man_dir.join(&name);
        write(&page, &roff, 0o644)?;
        // -n: no name or time stamp inside, so the page is reproducible.
        crate::run(Command::new("gzip").args(["-9nf"]).arg(&page))?;
    }
    for (shell, path) in SHELLS {
        write(&stage.join(path), &completion(shell, cli()), 0o644)?;
    }
    let doc = stage.join("usr/share/doc/crashtrace");
    write(&doc.join("copyright"), copyright().as_bytes(), 0o644)?;
    for licence in ["LICENSE-MIT", "LICENSE-APACHE"] {
        let text = fs::read(root.join(licence)).with_context(|| format!("reading {licence} at the repository root"))?;
        write(&doc.join(licence), &text, 0o644)?;
    }
    let installed_kib = du_kib(&stage)?;
    write(&stage.join("DEBIAN/control"), control(installed_kib).as_bytes(), 0o644)?;
    // Directories 0755 whatever the umask, as Debian policy wants.
    set_dir_modes(&stage)?;

    let deb = out_dir.join(format!("crashtrace_{VERSION}_{DEB_ARCH}.deb"));
    let mut cmd = Command::new("dpkg-deb");
    cmd.args(["--root-owner-group", "--build"]).arg(&stage).arg(&deb);
    if let Some(epoch) = source_date_epoch() {
        cmd.env("SOURCE_DATE_EPOCH", epoch);
    }
    crate::run(&mut cmd).context("packing the .deb")?;
    write_sha256(&deb)?;
    for path in [&binary, &deb] {
        eprintln!("xtask: dist: {} ({:.1} MiB)", path.display(), fs::metadata(path)?.len() as f64 / (1 << 20) as f64);
    }
    eprintln!("xtask: dist: built in {:.0} s", started.elapsed().as_secs_f64());
    Ok(Dist { binary, deb })
}

fn set_dir_modes(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            set_dir_modes(&entry.path())?;
        }
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot start {cmd:?}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{cmd:?} failed with {}: {}", out.status, text.trim());
    }
    Ok(text)
}

/// Static means `file` says so and `ldd` finds nothing to load.
fn check_static(binary: &Path) -> Result<()> {
    let file = output(Command::new("file").arg("-b").arg(binary))?;
    if !(file.contains("statically linked") || file.contains("static-pie linked")) {
        bail!("{} is not static: file says {}", binary.display(), file.trim());
    }
    // ldd exits 1 on a static binary; what it prints is what matters.
    let ldd = Command::new("ldd").arg(binary).output().context("running ldd")?;
    let ldd_text = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
    if !(ldd_text.contains("not a dynamic executable") || ldd_text.contains("statically linked")) {
        bail!("ldd finds libraries in {}: {}", binary.display(), ldd_text.trim());
    }
    eprintln!("xtask: dist: static: file: {}; ldd: {}", file.trim(), ldd_text.trim());
    Ok(())
}

/// Checks the built artefacts: the binary runs, the package holds every
/// file, installs into a scratch root, and its unit passes
/// `systemd-analyze verify` where that exists. As root, the binary must
/// also attach.
pub(crate) fn check(dist: &Dist) -> Result<()> {
    check_static(&dist.binary)?;
    let help = output(Command::new(&dist.binary).arg("--help"))?;
    if !help.contains("--pid") {
        bail!("{} --help does not list --pid:\n{help}", dist.binary.display());
    }
    let listing = output(Command::new("dpkg-deb").arg("-c").arg(&dist.deb))?;
    let listed = listed_paths(&listing);
    let missing: Vec<String> = expected_files()?.into_iter().filter(|f| !listed.contains(&f.as_str())).collect();
    if !missing.is_empty() {
        bail!("{} lacks {}; it holds:\n{listing}", dist.deb.display(), missing.join(", "));
    }
    eprintln!("xtask: dist: {} holds all {} expected files", dist.deb.display(), expected_files()?.len());

    // Install into a scratch root: dpkg's database and files land there,
    // the host's stay untouched. The package has no maintainer scripts, so
    // nothing needs to run inside the (shell-less) root.
    let scratch = crate::root().join("target/dist/scratch-root");
    if scratch.exists() {
        fs::remove_dir_all(&scratch)?;
    }
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        fs::create_dir_all(scratch.join(dir))?;
    }
    fs::write(scratch.join("var/lib/dpkg/status"), "")?;
    output(
        Command::new("dpkg").arg(format!("--root={}", scratch.display())).arg("-i").arg(&dist.deb),
    )
    .context("dpkg -i into a scratch root")?;
    let status = fs::read_to_string(scratch.join("var/lib/dpkg/status"))?;
    if !status.contains("Package: crashtrace") || !status.contains("Status: install ok installed") {
        bail!("dpkg --root did not record crashtrace as installed:\n{status}");
    }
    let installed = scratch.join("usr/bin/crashtrace");
    let version = output(Command::new(&installed).arg("--version"))?;
    if !version.contains(VERSION) {
        bail!("{} --version says {version:?}, not {VERSION}", installed.display());
    }
    eprintln!("xtask: dist: dpkg -i into {} works; {}", scratch.display(), version.trim());

    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(o) if o.status.success() => {
            // ExecReload's /bin/kill comes from procps (which the package
            // recommends), not from this package: put the host's in the
            // scratch root, as a real root has it, so verify finds it.
            let kill = scratch.join("bin/kill");
            fs::create_dir_all(scratch.join("bin"))?;
            fs::copy("/bin/kill", &kill).context("copying /bin/kill into the scratch root (install procps)")?;
            let unit = scratch.join(UNIT_PATH);
            let out = Command::new("systemd-analyze")
                .arg(format!("--root={}", scratch.display()))
                .args(["verify", "--man=no"])
                .arg(&unit)
                .output()
                .context("running systemd-analyze verify")?;
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            // Unknown or unparsable lines are only warnings to systemd, which
            // then runs the unit without them: count them as failures.
            if !out.status.success() || text.contains("Unknown key") || text.contains("Failed to parse") {
                bail!("systemd-analyze verify rejects {}: {}", unit.display(), text.trim());
            }
            eprintln!("xtask: dist: systemd-analyze verify accepts the unit{}", if text.trim().is_empty() { String::new() } else { format!(" ({})", text.trim()) });
        }
        _ => eprintln!("xtask: dist: systemd-analyze not found; unit NOT verified"),
    }

    if crate::is_root() {
        // With only the unit's capabilities, as the service would run.
        let bounding = setpriv_bounding_set(UNIT)?;
        let out = output(
            Command::new("setpriv")
                .args(["--bounding-set", &bounding, "--inh-caps", "-all", "--"])
                .arg(&dist.binary)
                .args(["--duration", "2", "--color", "never"]),
        )?;
        if !out.contains("attached in") {
            bail!("{} --duration 2 did not attach with {bounding}:\n{out}", dist.binary.display());
        }
        if let Some(line) = out.lines().find(|l| l.contains("hook cgroup_sysctl") && !l.contains("attached")) {
            bail!("with the unit's capabilities ({bounding}) the sysctl hook fails: {}", line.trim());
        }
        eprintln!("xtask: dist: the static binary attaches with only the unit's capabilities");
    } else {
        eprintln!("xtask: dist: not root, so the attach check did NOT run");
    }
    Ok(())
}

/// The unit's CapabilityBoundingSet as setpriv's `--bounding-set` value.
pub(crate) fn setpriv_bounding_set(unit: &str) -> Result<String> {
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .context("the unit has no CapabilityBoundingSet")?;
    let mut out = String::from("-all");
    for cap in caps.split_whitespace() {
        let name = cap.strip_prefix("CAP_").with_context(|| format!("{cap} is not a capability name"))?;
        out.push_str(",+");
        out.push_str(&name.to_ascii_lowercase());
    }
    Ok(out)
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let dist = build()?;
    if args.check {
        check(&dist)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// roff writes `-` as `\-`; undo that to look for flags as typed.
    fn plain(roff: &[u8]) -> String {
        String::from_utf8_lossy(roff).replace("\\-", "-")
    }

    #[test]
    fn man_page_mentions_every_visible_flag() {
        let pages = man_pages(cli()).unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["crashtrace.1", "crashtrace-live.1", "crashtrace-report.1", "crashtrace-report-list.1", "crashtrace-doctor.1"]);
        let mut built = cli().disable_help_subcommand(true);
        built.build();
        // In the order man_pages walks them: depth first.
        fn walk<'a>(cmd: &'a clap::Command, out: &mut Vec<&'a clap::Command>) {
            out.push(cmd);
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
                walk(sub, out);
            }
        }
        let mut commands = Vec::new();
        walk(&built, &mut commands);
        assert_eq!(commands.len(), pages.len());
        for (cmd, (name, roff)) in commands.into_iter().zip(&pages) {
            let text = plain(roff);
            let mut checked = 0;
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    assert!(text.contains(&format!("--{long}")), "{name} lacks --{long}");
                    checked += 1;
                }
                if let Some(short) = arg.get_short() {
                    assert!(text.contains(&format!("-{short}")), "{name} lacks -{short}");
                }
            }
            assert!(checked >= 2, "{name}: only {checked} flags found to check");
        }
        let top = plain(&pages[0].1);
        for flag in ["--pid", "-p", "--json", "-j", "--log", "--duration", "--stack-copy"] {
            assert!(top.contains(flag), "crashtrace.1 lacks {flag}");
        }
        assert!(!top.contains("naive-all-signals"), "a hidden flag is documented");
        assert!(top.contains(".TH crashtrace 1"), "not a section 1 page");
    }

    #[test]
    fn completions_for_every_shell_name_the_flags_and_subcommands() {
        for (shell, path) in SHELLS {
            let text = String::from_utf8(completion(shell, cli())).unwrap();
            // fish spells flags `-s p -l pid`; bash and zsh as typed.
            let (pid, json, max_size) = match shell {
                Shell::Fish => ("-s p -l pid", "-s j -l json", "-l log-max-size"),
                _ => ("--pid", "--json", "--log-max-size"),
            };
            for word in [pid, json, max_size, "report", "doctor"] {
                assert!(text.contains(word), "{shell} completion lacks {word}");
            }
            assert!(path.starts_with("usr/share/"), "{path}");
        }
    }

    /// The service's configuration: the unit's flags over the shipped file.
    fn service_config() -> crashtrace::live::config::LiveConfig {
        use clap::{CommandFactory, FromArgMatches};
        let exec = UNIT.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
        let argv: Vec<&str> = exec.split_whitespace().collect();
        assert_eq!(argv[0], "/usr/bin/crashtrace");
        // The unit's flags must parse with the real CLI.
        let matches = crashtrace::cli::Cli::command().try_get_matches_from(&argv).unwrap();
        let cli = crashtrace::cli::Cli::from_arg_matches(&matches).unwrap();
        let live = cli.live_args().expect("the service traces live");
        let layers = crashtrace::live::config::Layers::from_matches(live, &matches);
        let file = crashtrace::live::config_file::parse(std::path::Path::new(CONFIG_PATH), CONFIG.to_string()).unwrap();
        let env = crashtrace::live::config::Env { stdout_is_tty: false, no_color: false };
        layers.resolve_with(&file, env).unwrap()
    }

    #[test]
    fn unit_runs_the_packaged_binary_with_its_log_in_the_logs_directory() {
        use crashtrace::sink::SinkSpec;
        let config = service_config();
        let log = config.sinks.iter().find_map(|s| match s {
            SinkSpec::Log { path, options } => Some((path.clone(), *options)),
            _ => None,
        });
        let (log, options) = log.expect("the service logs");
        assert!(log.starts_with("/var/log/crashtrace/"), "{}", log.display());
        assert_eq!((options.max_size, options.keep), (Some(64 << 20), 8));
        assert!(UNIT.lines().any(|l| l == "LogsDirectory=crashtrace"), "the log directory is not created");
        assert!(UNIT.lines().any(|l| l == "ProtectSystem=strict"));
        assert!(UNIT.lines().any(|l| l == "Type=notify"), "crashtrace sends READY=1 once attached");
        assert!(UNIT.lines().any(|l| l == "ExecReload=/bin/kill -HUP $MAINPID"));
        assert!(UNIT.lines().any(|l| l == "Restart=on-failure"));
        assert!(!UNIT.lines().any(|l| l.starts_with("WatchdogSec=")), "a frozen PID 1 could not act on a watchdog anyway");
        // The binary's default path is where the package puts the file.
        assert_eq!(crashtrace::live::config_file::DEFAULT_PATH, format!("/{CONFIG_PATH}"));
    }

    /// The shipped file with every `# key = value` line uncommented.
    fn every_key_set() -> String {
        CONFIG
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn shipped_config_documents_every_live_flag_and_parses() {
        // Every key, commented or not, is a live flag, and every live flag
        // (but --config itself and hidden ones) is a key: a new flag
        // without its line here fails this test.
        let all = every_key_set();
        let table: toml::Table = toml::from_str(&all).unwrap_or_else(|e| panic!("uncommented config: {e}"));
        let keys: std::collections::BTreeSet<String> = table.keys().cloned().collect();
        let cmd = cli();
        let flags: std::collections::BTreeSet<String> = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_long().is_some())
            .map(|a| a.get_id().as_str().to_string())
            .filter(|id| !matches!(id.as_str(), "config" | "help" | "version"))
            .collect();
        assert_eq!(keys, flags, "keys of the shipped config vs live flags");
        // Each value is one the binary takes, commented defaults included.
        let cli = <crashtrace::cli::Cli as clap::Parser>::try_parse_from(["crashtrace"]).unwrap();
        let mut args = cli.live_args().unwrap().clone();
        let file = crashtrace::live::config_file::parse(std::path::Path::new(CONFIG_PATH), all).unwrap();
        file.apply(&mut args, &|_| false).unwrap();
        assert_eq!(args.pid, Some(1), "the uncommented pid line is read");
        // The file as shipped parses too, and only sets the service's keys.
        let shipped: toml::Table = toml::from_str(CONFIG).unwrap();
        let set: Vec<&str> = shipped.keys().map(String::as_str).collect();
        assert_eq!(set, ["color", "log", "log_keep", "log_max_size", "verdicts_only"]);
    }

    #[test]
    fn unit_capabilities_become_a_setpriv_bounding_set() {
        let set = setpriv_bounding_set(UNIT).unwrap();
        assert!(set.starts_with("-all,+bpf,+perfmon,"), "{set}");
        // Debian's kernels refuse perf_event_open (the connect tracepoints)
        // without it.
        assert!(set.contains("+sys_admin"), "{set}");
        assert_eq!(setpriv_bounding_set("CapabilityBoundingSet=CAP_BPF CAP_SYS_PTRACE\n").unwrap(), "-all,+bpf,+sys_ptrace");
        assert!(setpriv_bounding_set("[Service]\n").is_err());
        assert!(setpriv_bounding_set("CapabilityBoundingSet=BPF\n").is_err());
    }

    #[test]
    fn listing_paths_are_parsed() {
        let listing = "drwxr-xr-x root/root         0 2026-12-01 10:00 ./\n\
                       drwxr-xr-x root/root         0 2026-12-01 10:00 ./usr/bin/\n\
                       -rwxr-xr-x root/root   9000000 2026-12-01 10:00 ./usr/bin/crashtrace\n\
                       lrwxrwxrwx root/root         0 2026-12-01 10:00 ./usr/bin/ct -> crashtrace\n";
        assert_eq!(listed_paths(listing), [".", "./usr/bin", "./usr/bin/crashtrace", "./usr/bin/ct"]);
        assert!(listed_paths("garbage\n").is_empty());
    }

    #[test]
    fn expected_files_cover_binary_unit_pages_completions_licences() {
        let files = expected_files().unwrap();
        for want in [
            "./usr/bin/crashtrace",
            "./lib/systemd/system/crashtrace.service",
            "./etc/crashtrace/crashtrace.toml",
            "./usr/share/man/man1/crashtrace.1.gz",
            "./usr/share/man/man1/crashtrace-report.1.gz",
            "./usr/share/bash-completion/completions/crashtrace",
            "./usr/share/zsh/vendor-completions/_crashtrace",
            "./usr/share/fish/vendor_completions.d/crashtrace.fish",
            "./usr/share/doc/crashtrace/LICENSE-MIT",
            "./usr/share/doc/crashtrace/LICENSE-APACHE",
        ] {
            assert!(files.iter().any(|f| f == want), "{want} not expected in {files:?}");
        }
    }

    #[test]
    fn control_has_the_fields_dpkg_needs() {
        let c = control(1234);
        // Recommends procps: the unit's ExecReload runs its /bin/kill.
        for field in ["Package: crashtrace\n", "Architecture: amd64\n", "Installed-Size: 1234\n", "Maintainer: ", "Recommends: procps\n"] {
            assert!(c.contains(field), "{field:?} missing from\n{c}");
        }
        assert!(c.contains(&format!("Version: {VERSION}\n")));
        assert!(c.ends_with('\n'));
        // Continuation lines of Description start with a space.
        let desc_at = c.find("Description:").unwrap();
        assert!(c[desc_at..].lines().skip(1).all(|l| l.starts_with(' ')), "{c}");
    }
}

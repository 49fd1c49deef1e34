//! Project tasks: toolchain set-up, the eBPF build, running, and every test
//! tier. `cargo xtask --help` lists them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod deps;
mod dist;
mod distro;
mod readme;
mod tree;
mod vm;

#[derive(Parser)]
#[command(name = "xtask", about = "crashtrace's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what every task needs: the host packages (apt-get on Debian
    /// and Ubuntu), nightly's rust-src and bpf-linker, and mount tracefs.
    Setup,
    /// Build the eBPF object and crashtrace with the object built in.
    Build {
        #[arg(long)]
        debug: bool,
    },
    /// Build, then run crashtrace as root; arguments after `--` go to it.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test tier: unit, privileged (root, real BPF), VM.
    Test {
        /// Only the unprivileged tier.
        #[arg(long)]
        unit_only: bool,
        /// Also write the VM tier's kernel table into README.md.
        #[arg(long, conflicts_with = "unit_only")]
        update_readme: bool,
    },
    /// Tier 3: boot Debian kernels under qemu (TCG) and run the crash
    /// scenarios under every core-dump hook mode.
    VmTest(vm::Args),
    /// Boot Debian userlands (bullseye .. sid) with systemd as PID 1 under
    /// qemu (TCG), crashtrace running as a service, and make PID 1 crash.
    DistroTest(distro::Args),
    /// Performance benchmarks (root): overhead, crash storms, memory under
    /// pid churn, start-up, report speed. Writes BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Rewrite README.md's hook section from the hook table
    /// (tracer/src/hooks.rs).
    Readme,
    /// Build what a host installs into target/dist/: a static x86_64
    /// binary with its SHA-256, and a .deb (unit, man pages, completions).
    Dist(dist::Args),
    /// Write a large synthetic log (the recorded fixtures replayed with fresh
    /// pids and times) for timing `crashtrace report` by hand.
    BenchLog {
        /// Events to write, at least.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Leave out the verdict records, so `report` rebuilds every chain.
        #[arg(long)]
        no_verdicts: bool,
        /// Instead: this many fatal signals caught by handlers, each in a
        /// process of its own (state that grows with processes).
        #[arg(long, value_name = "N", conflicts_with_all = ["events", "no_verdicts"])]
        handled: Option<u64>,
        #[arg(default_value = "/tmp/crashtrace-bench.jsonl")]
        path: std::path::PathBuf,
    },
    /// Run each fuzz target (fuzz/) for a bounded time; fails on any crash.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        seconds: u32,
    },
}

/// cargo-fuzz, pinned so CI builds the same tool every time.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const FUZZ_TARGETS: [&str; 4] = ["decode", "log_reader", "log_files", "doctor_parsers"];
/// Targets that read logs: their corpora are seeded with the recorded
/// fixtures, so the fuzzer starts from real records rather than from noise.
const LOG_TARGETS: [&str; 2] = ["log_reader", "log_files"];
/// Room for a line just past report's 1 MiB line cap.
const FUZZ_MAX_LEN: usize = (1 << 20) + 4096;

fn fuzz(seconds: u32) -> Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION))
        .unwrap_or(false);
    if !installed {
        run(Command::new("cargo").args(["install", &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"), "--locked", "--force"]))
            .context("installing cargo-fuzz")?;
    }
    for target in FUZZ_TARGETS {
        let corpus = root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        if LOG_TARGETS.contains(&target) {
            seed_corpus(&corpus)?;
        }
        run(Command::new("cargo")
            .current_dir(root().join("fuzz"))
            .env_remove("RUSTUP_TOOLCHAIN")
            .args([
                &format!("+{NIGHTLY}"),
                "fuzz",
                "run",
                target,
                "--",
                corpus.to_str().context("the corpus path is UTF-8")?,
                "--",
                &format!("-max_total_time={seconds}"),
                &format!("-max_len={FUZZ_MAX_LEN}"),
            ]))
        .with_context(|| format!("fuzz target {target} found a crash (see fuzz/artifacts/{target})"))?;
    }
    Ok(())
}

/// Copies each recorded fixture log into the corpus (once; the fuzzer
/// keeps what it grows from them), prefixed by the mode byte the log
/// targets read first.
fn seed_corpus(corpus: &Path) -> Result<()> {
    let fixtures = root().join("tracer/tests/fixtures");
    for entry in std::fs::read_dir(&fixtures).with_context(|| format!("listing {}", fixtures.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let name = path.file_name().context("a fixture has a name")?;
        let seed = corpus.join(name);
        if seed.exists() {
            continue;
        }
        let mut bytes = vec![0u8];
        bytes.extend(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
        std::fs::write(&seed, bytes).with_context(|| format!("writing {}", seed.display()))?;
    }
    Ok(())
}

const NIGHTLY: &str = "nightly";
/// bpf-linker 0.10.4 links with rustc's own LLVM; later versions want a
/// system LLVM that these machines lack.
const BPF_LINKER_VERSION: &str = "0.10.4";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn setup() -> Result<()> {
    deps::rust_toolchain(NIGHTLY)?;
    let has_rust_src = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with("rust-src")))
        .unwrap_or(false);
    if !has_rust_src {
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
            .context("installing rust-src for the nightly toolchain (needed to build core for the BPF target)")?;
    }
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false);
    if !linker_ok {
        run(Command::new("cargo").args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked", "--force"]))
            .context("installing bpf-linker")?;
    }
    Ok(())
}

/// Path of the eBPF object `build_ebpf` produces.
fn ebpf_object() -> PathBuf {
    root().join("target/bpfel-unknown-none/release/tracer-ebpf")
}

fn build_ebpf() -> Result<PathBuf> {
    setup()?;
    run(Command::new("cargo")
        .current_dir(root().join("tracer-ebpf"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .args([
            &format!("+{NIGHTLY}"),
            "build",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--release",
        ]))
    .context("building the eBPF object")?;
    let object = ebpf_object();
    if !object.is_file() {
        bail!("the eBPF build succeeded but {} is missing", object.display());
    }
    Ok(object)
}

fn build(debug: bool) -> Result<PathBuf> {
    let object = build_ebpf()?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root()).env("CRASHTRACE_EBPF_OBJECT", &object).args(["build", "-p", "crashtrace"]);
    if !debug {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    Ok(root().join(if debug { "target/debug/crashtrace" } else { "target/release/crashtrace" }))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => deps::ensure(&deps::ALL).and_then(|()| deps::mount_tracefs()).and_then(|()| setup()),
        Task::Build { debug } => {
            deps::ensure(&[deps::Need::Build])?;
            build(debug).map(|p| eprintln!("xtask: built {}", p.display()))
        }
        Task::Run { args } => {
            deps::ensure(&[deps::Need::Build])?;
            let binary = build(false)?;
            let mut cmd = if is_root() {
                Command::new(&binary)
            } else {
                let mut c = Command::new("sudo");
                c.arg(&binary);
                c
            };
            cmd.args(&args);
            run(&mut cmd)
        }
        Task::Test { unit_only, update_readme } => test(unit_only, update_readme),
        Task::Fuzz { seconds } => deps::ensure(&[deps::Need::Fuzz]).and_then(|()| fuzz(seconds)),
        Task::Readme => readme::update(&root()),
        Task::VmTest(args) => deps::ensure(&[deps::Need::Build, deps::Need::Vm]).and_then(|()| vm::run(&args)),
        Task::Dist(args) => deps::ensure(&[deps::Need::Build, deps::Need::Dist]).and_then(|()| dist::run(&args)),
        Task::DistroTest(args) => deps::ensure(&[deps::Need::Build, deps::Need::Vm]).and_then(|()| distro::run(&args)),
        Task::Bench(args) => {
            let binary = build(false)?;
            bench::run(&root(), &binary, &args)
        }
        Task::BenchLog { events, no_verdicts, handled, path } => {
            let written = match handled {
                Some(n) => bench::synth_log::write_handled(&path, n)?,
                None => bench::synth_log::write(&root().join("tracer/tests/fixtures"), &path, events, !no_verdicts)?,
            };
            eprintln!("wrote {written} events to {}", path.display());
            Ok(())
        }
    }
}

/// Names of tracer/tests/*.rs.
fn privileged_test_files() -> Result<Vec<String>> {
    let dir = root().join("tracer/tests");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                out.push(stem.to_string());
            }
    }
    if out.is_empty() {
        bail!("no privileged test files in {}", dir.display());
    }
    Ok(out)
}

fn test(unit_only: bool, update_readme: bool) -> Result<()> {
    let tree = tree::Snapshot::take();
    eprintln!("xtask: tier 1 (unprivileged): decode, correlator, verdicts, CLI, log reading");
    run(Command::new("cargo").current_dir(root()).args(["test", "--workspace"]))?;
    tree.unchanged_since("tier 1", &[])?;
    if unit_only {
        eprintln!("xtask: tiers 2 and 3 NOT RUN (--unit-only)");
        return Ok(());
    }
    if !is_root() {
        bail!("tiers 2 and 3 need root: they install packages, load real BPF programs and change core_pattern; run `sudo cargo xtask test`, or `cargo xtask test --unit-only` for tier 1 alone");
    }
    deps::ensure(&deps::ALL)?;
    deps::mount_tracefs()?;
    eprintln!("xtask: fuzzing {}, 30 s each", FUZZ_TARGETS.join(", "));
    deps::rust_toolchain(NIGHTLY)?;
    fuzz(30)?;
    eprintln!("xtask: tier 2 (privileged, serial): real BPF programs, real crashes, real collectors");
    let object = build_ebpf()?;
    // Every integration test file holds privileged tests (marked #[ignore] so
    // plain `cargo test` skips them); run them all, one test at a time,
    // because they share the host's core_pattern and cgroups.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root()).env("CRASHTRACE_EBPF_OBJECT", &object).args(["test", "-p", "crashtrace"]);
    let mut files = privileged_test_files()?;
    files.sort();
    for name in &files {
        cmd.args(["--test", name]);
    }
    cmd.args(["--", "--ignored", "--test-threads=1"]);
    eprintln!("xtask: privileged test files: {}", files.join(", "));
    run(&mut cmd)?;
    tree.unchanged_since("fuzzing and tier 2", &[])?;
    eprintln!("xtask: dist: the static binary and the .deb, installed into a scratch root");
    dist::check(&dist::build()?)?;
    eprintln!("xtask: tier 3 (VM): Debian kernels under qemu (TCG), direct core-dump hooks, every hook mode");
    // A test run leaves tracked files alone; --update-readme refreshes the
    // README's kernel table from this run.
    vm::run(&vm::Args { update_readme, ..vm::Args::full_matrix() })?;
    eprintln!("xtask: tier 4 (distro): Debian bullseye to sid with systemd as PID 1, the .deb installed and PID 1 crashed");
    distro::run(&distro::Args { update_readme, no_build: true, ..distro::Args::default() })?;
    tree.unchanged_since("the dist check and tiers 3 and 4", if update_readme { &["README.md"] } else { &[] })?;
    Ok(())
}

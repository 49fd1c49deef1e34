//! Tier 2: the crashing thread's stack, captured by the real eBPF programs at
//! the fatal signal and symbolised when the chain ends. Needs root; run
//! serially by `cargo xtask test` (`--ignored --test-threads=1`).
//!
//! The crashers fault three calls deep: main -> crash_level1 -> crash_level2
//! -> crash_level3 (tests/crashers/deep.c and deep.rs), built here with and
//! without frame pointers, and stripped. Every check finds its records by
//! the crasher's pid, because other processes run on the machine too.

mod common;

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use common::{Exclusive, TempDir, Tracer};
use crashtrace::symbolize::Symbolizer;
use serde_json::Value;

const SYSTEMD_COREDUMP: &str = "/lib/systemd/systemd-coredump";
/// Debian's systemd-coredump pattern, exactly as the package installs it.
const SYSTEMD_PATTERN: &str = "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h %d";
const COREDUMP_SOCKET: &str = "/run/systemd/coredump";
const SIGSEGV: i32 = 11;

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crashers").join(name)
}

fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds tests/crashers/deep.c into `dir/name` with `cc` and `flags`.
fn build_c(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    run_tool(Command::new("cc").args(flags).arg("-Wall").arg("-o").arg(&out).arg(source("deep.c")));
    out
}

/// Builds tests/crashers/deep.rs with frame pointers forced on.
fn build_rust(dir: &Path) -> PathBuf {
    let out = dir.join("deep-rust");
    run_tool(
        Command::new("rustc")
            .args(["--edition", "2021", "-C", "opt-level=2", "-C", "force-frame-pointers=yes", "-o"])
            .arg(&out)
            .arg(source("deep.rs")),
    );
    out
}

/// The GNU build-id of an ELF file, from `readelf -n`.
fn build_id(path: &Path) -> String {
    let notes = run_tool(Command::new("readelf").arg("-n").arg(path));
    notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("{} has no build-id note:\n{notes}", path.display()))
        .trim()
        .to_string()
}

/// Runs `binary` in `dir` until it dies; returns its pid. It must die of SIGSEGV.
fn crash(binary: &Path, dir: &Path, rlimit_core: u64) -> u32 {
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
    // SAFETY: setrlimit is async-signal-safe and touches no parent state.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let rl = libc::rlimit { rlim_cur: rlimit_core, rlim_max: rlimit_core };
            if libc::setrlimit(libc::RLIMIT_CORE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let pid = child.id();
    let status = child.wait().unwrap_or_else(|e| panic!("waiting for {}: {e}", binary.display()));
    assert_eq!(status.signal(), Some(SIGSEGV), "{} should die of SIGSEGV, got {status}", binary.display());
    pid
}

/// The systemd-coredump scenario needs the collector and no systemd PID 1.
fn require_systemd_collector_without_pid1() {
    assert!(
        Path::new(SYSTEMD_COREDUMP).is_file(),
        "{SYSTEMD_COREDUMP} is missing: install Debian's systemd-coredump package to run the stack tests"
    );
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert!(
        pid1.trim() != "systemd" && !Path::new(COREDUMP_SOCKET).exists(),
        "this test needs a host whose PID 1 is not systemd and where {COREDUMP_SOCKET} does not exist (PID 1 is {:?})",
        pid1.trim()
    );
}

/// Crashes `binary` under Debian's systemd-coredump with no systemd PID 1
/// (the core is lost; the crasher waits for the collector, so it is alive
/// when its maps are read) and returns its verdict record.
fn crash_with_core_lost(machine: &Exclusive, binary: &Path, dir: &Path) -> Value {
    require_systemd_collector_without_pid1();
    machine.set_core_pattern(SYSTEMD_PATTERN);
    machine.set_core_pipe_limit(16);
    let mut tracer = Tracer::start(&["--json"]);
    let pid = crash(binary, dir, 0);
    let verdict = tracer.wait_verdict(pid);
    let stopped = tracer.stop();
    stopped.assert_clean_exit();
    verdict
}

fn user_frames(verdict: &Value) -> &Vec<Value> {
    verdict
        .pointer("/stack/user")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("the verdict has no captured stack:\n{verdict:#}"))
}

fn function(frame: &Value) -> Option<&str> {
    frame["function"].as_str()
}

/// The stack as one line per frame, for failure messages and the test log.
fn describe(frames: &[Value]) -> String {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                "#{i} {:#x} {} ({} + {})",
                f["addr"].as_u64().unwrap_or(0),
                function(f).unwrap_or("n/a"),
                f["module"].as_str().unwrap_or("?"),
                f["file_offset"].as_u64().map(|o| format!("{o:#x}")).unwrap_or_else(|| "?".into())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts frames 0..names.len() are `names` (by substring: Rust names
/// carry their crate path), all in `module`.
#[track_caller]
fn assert_frames(verdict: &Value, names: &[&str], module: &Path) {
    let frames = user_frames(verdict);
    let got = describe(frames);
    assert!(frames.len() >= names.len(), "want at least {} frames, got:\n{got}", names.len());
    for (i, name) in names.iter().enumerate() {
        let f = &frames[i];
        assert!(function(f).is_some_and(|n| n == *name || n.ends_with(&format!("::{name}"))), "frame #{i} is not {name}:\n{got}");
        assert_eq!(f["module"].as_str(), Some(module.to_str().expect("utf-8 path")), "frame #{i}'s module:\n{got}");
    }
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn frame_pointers_name_three_levels_when_the_core_is_lost() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = build_c(dir.path(), "deep-fp", &["-O0", "-fno-omit-frame-pointer"]);
    let verdict = crash_with_core_lost(&machine, &binary, dir.path());
    eprintln!("frame pointers, -O0:\n{}", describe(user_frames(&verdict)));

    // The core is lost, the stack is not.
    assert_eq!(verdict["verdict"], "dropped:collector-unreachable-pid1", "{verdict:#}");
    assert_frames(&verdict, &["crash_level3", "crash_level2", "crash_level1", "main"], &binary);
    let stack = &verdict["stack"];
    assert_eq!(stack["symbolized_from"], "proc-maps", "{stack:#}");
    assert_eq!(stack["sig"], SIGSEGV);
    let frames = user_frames(&verdict);
    // Frame 0 is where the thread was: the IP register.
    assert_eq!(stack["ip"], frames[0]["addr"], "{stack:#}");
    let id = build_id(&binary);
    for (i, f) in frames.iter().take(4).enumerate() {
        assert_eq!(f["build_id"].as_str(), Some(id.as_str()), "frame #{i}'s build-id: {f}");
        assert!(f["file_offset"].is_u64(), "frame #{i} has no file offset: {f}");
    }
    // The kernel stack shows how the signal arose; crashtrace's own frames
    // (the BPF program, the tracepoint dispatch) are left out.
    let kernel: Vec<&str> = stack["kernel"].as_array().expect("kernel frames").iter().filter_map(function).collect();
    assert!(kernel.contains(&"get_signal"), "kernel stack: {kernel:?}");
    assert!(kernel.iter().any(|n| n.contains("page_fault")), "a fault's kernel stack passes the page-fault entry: {kernel:?}");
    assert!(!kernel.iter().any(|n| n.starts_with("bpf_")), "crashtrace's own frames are shown: {kernel:?}");
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn without_frame_pointers_the_ip_names_the_faulting_function() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = build_c(dir.path(), "deep-nofp", &["-O2", "-fomit-frame-pointer"]);
    let verdict = crash_with_core_lost(&machine, &binary, dir.path());
    let frames = user_frames(&verdict);
    // What a frame-pointer walk gives here: the IP is exact; after it, the
    // walk follows whatever the BP register held, so no caller is found
    // reliably (seen here: BP = 1 and the walk ends at frame 0).
    eprintln!("no frame pointers, -O2:\n{}", describe(frames));
    assert_frames(&verdict, &["crash_level3"], &binary);
    for (i, f) in frames.iter().enumerate().skip(1) {
        // Whatever follows must not borrow the callers' names by accident:
        // a frame named crash_level2/1 would have to be a real return
        // address into them, which this build never puts where BP points.
        assert!(
            !matches!(function(f), Some("crash_level2" | "crash_level1")),
            "frame #{i} claims a caller the frame-pointer walk cannot know:\n{}",
            describe(frames)
        );
    }
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn stack_copy_unwinds_code_without_frame_pointers_from_eh_frame() {
    let machine = Exclusive::take();
    require_systemd_collector_without_pid1();
    machine.set_core_pattern(SYSTEMD_PATTERN);
    machine.set_core_pipe_limit(16);
    let dir = TempDir::new("crashtrace-stacks");
    let binary = build_c(dir.path(), "deep-nofp-copy", &["-O2", "-fomit-frame-pointer"]);
    let mut tracer = Tracer::start(&["--json", "--stack-copy", "8192"]);
    let pid = crash(&binary, dir.path(), 0);
    let verdict = tracer.wait_verdict(pid);
    let stopped = tracer.stop();
    stopped.assert_clean_exit();
    let frames = user_frames(&verdict);
    eprintln!("no frame pointers, -O2, --stack-copy 8192:\n{}", describe(frames));
    assert_eq!(verdict["stack"]["unwound_by"], "eh-frame", "{:#}", verdict["stack"]);
    assert_frames(&verdict, &["crash_level3", "crash_level2", "crash_level1", "main"], &binary);
    // The copy itself is in the event stream, for unwinding elsewhere.
    let copy = stopped
        .records
        .iter()
        .find(|r| r["event"] == "stack-copy" && r.pointer("/task/tgid").and_then(Value::as_u64) == Some(pid as u64))
        .unwrap_or_else(|| panic!("no stack-copy record for pid {pid}"));
    let hex_len = copy["data"].as_str().map(str::len).unwrap_or(0);
    assert!((2 * 512..=2 * 8192).contains(&hex_len), "stack copy of {} bytes", hex_len / 2);
    assert_eq!(copy["sp"], verdict["stack"]["sp"]);
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn rust_frames_are_named_in_order() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = build_rust(dir.path());
    let verdict = crash_with_core_lost(&machine, &binary, dir.path());
    eprintln!("Rust, frame pointers forced:\n{}", describe(user_frames(&verdict)));
    assert_frames(&verdict, &["crash_level3", "crash_level2", "crash_level1", "main"], &binary);
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn stripped_binary_gives_offsets_and_build_id_not_names() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let unstripped = build_c(dir.path(), "deep-full", &["-O0", "-fno-omit-frame-pointer"]);
    let stripped = dir.path().join("deep-stripped");
    run_tool(Command::new("strip").arg("--strip-all").arg("-o").arg(&stripped).arg(&unstripped));
    let id = build_id(&stripped);
    assert_eq!(id, build_id(&unstripped), "strip keeps the build-id note");

    let verdict = crash_with_core_lost(&machine, &stripped, dir.path());
    let frames = user_frames(&verdict);
    eprintln!("stripped:\n{}", describe(frames));
    let ours: Vec<&Value> = frames.iter().filter(|f| f["module"].as_str() == stripped.to_str()).collect();
    assert!(ours.len() >= 4, "want the four frames in the stripped binary:\n{}", describe(frames));
    for f in &ours {
        assert_eq!(function(f), None, "a stripped binary gave a name:\n{}", describe(frames));
        assert_eq!(f["build_id"].as_str(), Some(id.as_str()), "{f}");
        assert!(f["file_offset"].is_u64(), "{f}");
    }
    // Symbolised elsewhere, against the unstripped build with the same
    // build-id, the recorded offsets name the frames.
    let mut symbolizer = Symbolizer::new();
    let names: Vec<String> = ours
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, f)| {
            let offset = f["file_offset"].as_u64().expect("checked");
            symbolizer.name_in_file(&unstripped, offset, i > 0).map(|(name, _)| name).unwrap_or_default()
        })
        .collect();
    assert_eq!(names, ["crash_level3", "crash_level2", "crash_level1", "main"], "{}", describe(frames));
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn kernel_build_ids_name_the_frames_after_the_process_is_gone() {
    // RLIMIT_CORE=0 with a file pattern: no dump, so the process exits at
    // once, and its maps may be gone before crashtrace reads them. Either
    // way the stack keeps what is needed: each frame's build-id and file
    // offset, resolved by the kernel at the signal.
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let binary = build_c(dir.path(), "deep-gone", &["-O0", "-fno-omit-frame-pointer"]);
    let mut tracer = Tracer::start(&["--json"]);
    let pid = crash(&binary, dir.path(), 0);
    let verdict = tracer.wait_verdict(pid);
    tracer.stop().assert_clean_exit();

    let frames = user_frames(&verdict);
    let from = verdict["stack"]["symbolized_from"].as_str().unwrap_or("none").to_string();
    eprintln!("process gone at once (symbolised from {from}):\n{}", describe(frames));
    let id = build_id(&binary);
    let mut symbolizer = Symbolizer::new();
    let names: Vec<String> = frames
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, f)| {
            assert_eq!(f["build_id"].as_str(), Some(id.as_str()), "frame #{i}: {f}");
            let offset = f["file_offset"].as_u64().unwrap_or_else(|| panic!("frame #{i} has no file offset: {f}"));
            symbolizer.name_in_file(&binary, offset, i > 0).map(|(name, _)| name).unwrap_or_default()
        })
        .collect();
    assert_eq!(names, ["crash_level3", "crash_level2", "crash_level1", "main"], "{}", describe(frames));
    if from == "build-id" {
        // libc is mapped by crashtrace too, so its build-id leads to it.
        assert!(
            frames.get(4).and_then(|f| f["module"].as_str()).is_some_and(|m| m.ends_with("/libc.so.6")),
            "the libc frame was not found by its build-id:\n{}",
            describe(frames)
        );
    }
    if from == "proc-maps" {
        // The maps were read in time: the frames are named in place too.
        assert_frames(&verdict, &["crash_level3", "crash_level2", "crash_level1", "main"], &binary);
    }
}

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
    crash_with_core_lost_args(machine, binary, dir, &["--json"])
}

/// [`crash_with_core_lost`] with crashtrace started with `args`.
fn crash_with_core_lost_args(machine: &Exclusive, binary: &Path, dir: &Path, args: &[&str]) -> Value {
    require_systemd_collector_without_pid1();
    machine.set_core_pattern(SYSTEMD_PATTERN);
    machine.set_core_pipe_limit(16);
    let mut tracer = Tracer::start(args);
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
    // The kernel walk is taken only when asked for (--kernel-stack).
    let verdict = crash_with_core_lost_args(&machine, &binary, dir.path(), &["--json", "--kernel-stack"]);
    eprintln!("frame pointers, -O0:\n{}", show(&verdict));

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
    // No stack copy: the kernel's frame-pointer walk alone.
    let verdict = crash_with_core_lost_args(&machine, &binary, dir.path(), &["--json", "--stack-copy", "0"]);
    assert_eq!(verdict["stack"]["unwound_by"], "frame-pointer", "{:#}", verdict["stack"]);
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
    assert_unwound_by_eh_frame(&verdict);
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
    eprintln!("Rust, frame pointers forced:\n{}", show(&verdict));
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

// ---------------------------------------------------------------------
// Callers with default flags: the stack copy taken at every fatal signal,
// unwound from .eh_frame and merged with the frame-pointer walk.
// ---------------------------------------------------------------------

const SIGABRT: i32 = 6;

/// Builds tests/crashers/callers.c into `dir/name` with `flags`.
fn build_callers(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    run_tool(Command::new("cc").args(flags).arg("-Wall").arg("-pthread").arg("-o").arg(&out).arg(source("callers.c")));
    out
}

/// Starts `binary args` in `dir` with RLIMIT_CORE 0, stdin and stdout piped.
fn spawn(binary: &Path, args: &[&str], dir: &Path) -> std::process::Child {
    let mut cmd = Command::new(binary);
    cmd.args(args).current_dir(dir).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe and touches no parent state.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::setrlimit(libc::RLIMIT_CORE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

/// Waits (bounded) for `child` to die of `sig`.
fn reap(mut child: std::process::Child, sig: i32, what: &str) {
    let status = common::wait_bounded(&mut child, std::time::Duration::from_secs(30), what);
    assert_eq!(status.signal(), Some(sig), "{what} should die of signal {sig}, got {status}");
}

/// A pipe helper that reads nothing and exits after 2 s: with
/// core_pipe_limit set, the kernel waits for it, so the crasher is still
/// there (its maps readable) when its stack is drained, however busy the
/// machine. What happens when it is not is
/// [`a_process_gone_before_its_stack_is_drained_still_gets_names`]'s.
const HOLDING_PATTERN: &str = "|/usr/bin/sleep 2";

/// Runs `binary args` until it dies of `sig` under a tracer started with
/// default flags; returns its verdict.
fn crash_default_flags(machine: &Exclusive, binary: &Path, args: &[&str], dir: &Path, sig: i32) -> Value {
    machine.set_core_pattern(HOLDING_PATTERN);
    machine.set_core_pipe_limit(16);
    let mut tracer = Tracer::start(&["--json"]);
    let mut child = spawn(binary, args, dir);
    let pid = child.id();
    drop(child.stdin.take());
    reap(child, sig, &binary.display().to_string());
    let verdict = tracer.wait_verdict(pid);
    tracer.stop().assert_clean_exit();
    verdict
}

/// The stack and how it was found, for the test log.
fn show(verdict: &Value) -> String {
    format!(
        "{}\nunwound_by {}, symbolized_from {}, notes {}",
        describe(user_frames(verdict)),
        verdict["stack"]["unwound_by"],
        verdict["stack"]["symbolized_from"],
        verdict["stack"]["notes"]
    )
}

fn names(verdict: &Value) -> Vec<String> {
    user_frames(verdict).iter().map(|f| function(f).unwrap_or("n/a").to_string()).collect()
}

/// Whether `got` names `want` (Rust and C++ names carry their paths).
fn is(got: &str, want: &str) -> bool {
    got == want || got.ends_with(&format!("::{want}"))
}

/// Asserts frames `from..` are exactly `want`, in order.
#[track_caller]
fn assert_run(verdict: &Value, from: usize, want: &[&str]) {
    let got = names(verdict);
    let window = got.get(from..from + want.len());
    assert!(
        window.is_some_and(|w| w.iter().zip(want).all(|(g, w)| is(g, w))),
        "frames #{from}.. are not {want:?}:\n{}\nunwound_by {}, notes {:#}",
        describe(user_frames(verdict)),
        verdict["stack"]["unwound_by"],
        verdict["stack"]["notes"]
    );
}

/// The index of the first frame named `want`.
#[track_caller]
fn position(verdict: &Value, want: &str) -> usize {
    names(verdict)
        .iter()
        .position(|n| is(n, want))
        .unwrap_or_else(|| panic!("no frame {want}:\n{}", describe(user_frames(verdict))))
}

#[track_caller]
fn assert_unwound_by_eh_frame(verdict: &Value) {
    let by = verdict["stack"]["unwound_by"].as_str().unwrap_or("none");
    assert!(by == "eh_frame" || by == "mixed", "unwound_by {by}: {:#}", verdict["stack"]);
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn default_flags_find_the_caller_of_a_leaf_without_a_frame() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = build_callers(dir.path(), "callers-leaf", &["-O1", "-fno-omit-frame-pointer"]);
    let disasm = run_tool(Command::new("objdump").arg("-d").arg("--no-show-raw-insn").arg(&binary));
    let leaf = disasm.split("<leaf>:").nth(1).expect("leaf in the disassembly");
    assert!(!leaf.lines().take(3).any(|l| l.contains("push") && l.contains("%rbp")), "this gcc gave leaf a frame; the test needs one without:\n{leaf}");
    let verdict = crash_default_flags(&machine, &binary, &["leaf"], dir.path(), SIGSEGV);
    eprintln!("leaf without a frame, -O1 -fno-omit-frame-pointer:\n{}", show(&verdict));
    assert_frames(&verdict, &["leaf", "caller", "outer", "main"], &binary);
    assert_unwound_by_eh_frame(&verdict);
    // Default flags take no kernel walk: it adds microseconds to every
    // crash and shows only the way back to user space (see --kernel-stack).
    let kernel = verdict["stack"]["kernel"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(kernel, 0, "a kernel stack was taken with default flags: {:#}", verdict["stack"]);
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn default_flags_find_the_callers_of_libc_asm_functions() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = build_callers(dir.path(), "callers-libc", &["-O1", "-fno-omit-frame-pointer"]);
    for (mode, libc_fn) in [("strlen", "strlen"), ("memcpy", "mem")] {
        let verdict = crash_default_flags(&machine, &binary, &[mode], dir.path(), SIGSEGV);
        eprintln!("{mode}:\n{}", show(&verdict));
        let frames = user_frames(&verdict);
        assert!(
            function(&frames[0]).is_some_and(|n| n.contains(libc_fn)) && frames[0]["module"].as_str().is_some_and(|m| m.contains("libc.so")),
            "frame #0 is not libc's {libc_fn}:\n{}",
            describe(frames)
        );
        assert_run(&verdict, 1, &["caller", "outer", "main"]);
        assert_unwound_by_eh_frame(&verdict);
    }
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn default_flags_unwind_code_without_frame_pointers() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = build_c(dir.path(), "deep-nofp-default", &["-O2", "-fomit-frame-pointer"]);
    let verdict = crash_default_flags(&machine, &binary, &[], dir.path(), SIGSEGV);
    eprintln!("no frame pointers, default flags:\n{}", show(&verdict));
    assert_frames(&verdict, &["crash_level3", "crash_level2", "crash_level1", "main"], &binary);
    assert_unwound_by_eh_frame(&verdict);
    let leaf = build_callers(dir.path(), "callers-nofp", &["-O2", "-fomit-frame-pointer"]);
    let verdict = crash_default_flags(&machine, &leaf, &["leaf"], dir.path(), SIGSEGV);
    eprintln!("leaf, no frame pointers, default flags:\n{}", show(&verdict));
    assert_frames(&verdict, &["leaf", "caller", "outer", "main"], &leaf);
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn default_flags_name_a_rust_panic_abort() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = dir.path().join("panic-abort");
    run_tool(
        Command::new("rustc")
            .args(["--edition", "2021", "-C", "opt-level=1", "-C", "panic=abort", "-o"])
            .arg(&binary)
            .arg(source("panic_abort.rs")),
    );
    let verdict = crash_default_flags(&machine, &binary, &[], dir.path(), SIGABRT);
    eprintln!("Rust panic = abort:\n{}", show(&verdict));
    let at = position(&verdict, "level2");
    assert_run(&verdict, at, &["level2", "level1", "main"]);
    let before: Vec<String> = names(&verdict)[..at].to_vec();
    assert!(before.iter().any(|n| n.contains("abort")), "no abort frame above level2: {before:?}");
    assert!(before.iter().any(|n| n.contains("panic")), "no panic frame above level2: {before:?}");
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn default_flags_name_a_cxx_throw_that_terminates() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = dir.path().join("terminate");
    run_tool(Command::new("g++").args(["-O1", "-o"]).arg(&binary).arg(source("terminate.cc")));
    let verdict = crash_default_flags(&machine, &binary, &[], dir.path(), SIGABRT);
    eprintln!("C++ throw -> std::terminate:\n{}", show(&verdict));
    let at = position(&verdict, "__cxa_throw");
    assert_run(&verdict, at, &["__cxa_throw", "level2()", "level1()", "main"]);
    let before: Vec<String> = names(&verdict)[..at].to_vec();
    assert!(before.iter().any(|n| n.ends_with("abort")), "no abort frame above __cxa_throw: {before:?}");
    assert!(before.iter().any(|n| n.contains("terminate")), "no std::terminate above __cxa_throw: {before:?}");
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn default_flags_name_a_fault_in_another_thread() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = build_callers(dir.path(), "callers-thread", &["-O1", "-fno-omit-frame-pointer"]);
    let verdict = crash_default_flags(&machine, &binary, &["thread"], dir.path(), SIGSEGV);
    eprintln!("a second thread:\n{}", show(&verdict));
    assert_frames(&verdict, &["leaf", "caller", "t_outer", "thread_main"], &binary);
    assert_run(&verdict, 4, &["start_thread"]);
    assert_ne!(verdict["stack"]["tid"], verdict["crasher"]["tgid"], "the stack is the faulting thread's: {:#}", verdict["stack"]);
}

/// Removes a file or directory tree made for a test when dropped.
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn a_stripped_binary_is_named_from_its_build_id_debug_file() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-stacks");
    let full = build_c(dir.path(), "deep-debug", &["-O0", "-g", "-fno-omit-frame-pointer"]);
    let stripped = dir.path().join("deep-stripped-debug");
    run_tool(Command::new("strip").arg("--strip-all").arg("-o").arg(&stripped).arg(&full));
    let id = build_id(&stripped);
    let debug_dir = Path::new("/usr/lib/debug/.build-id").join(&id[..2]);
    std::fs::create_dir_all(&debug_dir).expect("creating the build-id debug directory");
    let debug = debug_dir.join(format!("{}.debug", &id[2..]));
    let _cleanup = Remove(debug.clone());
    run_tool(Command::new("objcopy").arg("--only-keep-debug").arg(&full).arg(&debug));
    let verdict = crash_default_flags(&machine, &stripped, &[], dir.path(), SIGSEGV);
    eprintln!("stripped, debug file by build-id:\n{}", show(&verdict));
    assert_frames(&verdict, &["crash_level3", "crash_level2", "crash_level1", "main"], &stripped);
    for f in user_frames(&verdict).iter().take(4) {
        assert_eq!(f["build_id"].as_str(), Some(id.as_str()), "{f}");
    }
}

// ---------------------------------------------------------------------
// Symbolisation a crasher cannot block or fool.
// ---------------------------------------------------------------------

/// A bind mount, undone (lazily) when dropped.
struct BindMount(PathBuf);

impl BindMount {
    fn new(from: &Path, over: &Path) -> BindMount {
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in a path");
        let (src, dst) = (c(from), c(over));
        // SAFETY: valid NUL-terminated paths; a bind mount needs no data.
        let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
        assert_eq!(rc, 0, "bind-mounting {} over {}: {}", from.display(), over.display(), std::io::Error::last_os_error());
        BindMount(over.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        if let Ok(p) = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Crashes `binary` (callers.c) after `evil` (a directory holding a FIFO or
/// a symlink named like the binary) is bind-mounted over the binary's
/// directory: /proc/PID/maps still names the old path, which now opens the
/// FIFO or follows the symlink. Then crashes a second, untouched binary.
/// Returns both verdicts and how long SIGINT took to stop the tracer.
fn crash_under_swapped_path(machine: &Exclusive, make_evil: impl Fn(&Path)) -> (Value, Value, std::time::Duration) {
    require_systemd_collector_without_pid1();
    machine.set_core_pattern(SYSTEMD_PATTERN);
    machine.set_core_pipe_limit(16);
    let dir = TempDir::new("crashtrace-stacks");
    let victim_dir = dir.path().join("bin");
    let evil_dir = dir.path().join("evil");
    std::fs::create_dir_all(&victim_dir).unwrap();
    std::fs::create_dir_all(&evil_dir).unwrap();
    let binary = build_callers(&victim_dir, "callers", &["-O1", "-fno-omit-frame-pointer"]);
    make_evil(&evil_dir.join("callers"));
    let other = build_callers(dir.path(), "callers-other", &["-O1", "-fno-omit-frame-pointer"]);

    let mut tracer = Tracer::start(&["--json"]);
    let mut child = spawn(&binary, &["leaf", "wait"], dir.path());
    let pid = child.id();
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().expect("piped"), &mut ready).expect("the crasher says ready");
    let mount = BindMount::new(&evil_dir, &victim_dir);
    std::io::Write::write_all(child.stdin.as_mut().expect("piped"), b"x").expect("releasing the crasher");
    reap(child, SIGSEGV, "the crasher under a swapped path");
    let first = tracer.wait_verdict(pid);
    // Later crashes still get verdicts.
    let second_child = spawn(&other, &["leaf"], dir.path());
    let second_pid = second_child.id();
    reap(second_child, SIGSEGV, "the second crasher");
    let second = tracer.wait_verdict(second_pid);
    let t = std::time::Instant::now();
    tracer.stop().assert_clean_exit();
    let stop_took = t.elapsed();
    drop(mount);
    (first, second, stop_took)
}

#[track_caller]
fn assert_named_or_refused(verdict: &Value, refused: &str) {
    let frames = user_frames(verdict);
    let ours: Vec<&Value> = frames.iter().filter(|f| f["module"].as_str().is_some_and(|m| m.ends_with("/bin/callers"))).collect();
    assert!(!ours.is_empty(), "no frame in the swapped binary:\n{}", describe(frames));
    let named = ours.iter().all(|f| function(f).is_some());
    let notes = verdict["stack"]["notes"].to_string();
    // Named through /proc/PID/map_files (the process was still there), or
    // left unnamed with the reason.
    assert!(named || notes.contains(refused), "neither named nor refused ({refused}):\n{}\nnotes {notes}", describe(frames));
    if named {
        assert_run(verdict, 0, &["leaf", "caller", "outer", "main"]);
    }
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn a_fifo_in_place_of_a_module_does_not_block_the_tracer() {
    let machine = Exclusive::take();
    let (first, second, stop_took) = crash_under_swapped_path(&machine, |p| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
    });
    eprintln!("FIFO in place of the module:\n{}\nnotes {:#}", describe(user_frames(&first)), first["stack"]["notes"]);
    assert_named_or_refused(&first, "a FIFO");
    assert_run(&second, 0, &["leaf", "caller", "outer", "main"]);
    assert!(stop_took < std::time::Duration::from_secs(10), "SIGINT took {stop_took:?}");
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn a_symlink_to_dev_zero_in_place_of_a_module_is_not_read() {
    let machine = Exclusive::take();
    let (first, second, stop_took) =
        crash_under_swapped_path(&machine, |p| std::os::unix::fs::symlink("/dev/zero", p).expect("symlink to /dev/zero"));
    eprintln!("/dev/zero in place of the module:\n{}\nnotes {:#}", describe(user_frames(&first)), first["stack"]["notes"]);
    assert_named_or_refused(&first, "Too many levels of symbolic links");
    assert_run(&second, 0, &["leaf", "caller", "outer", "main"]);
    assert!(stop_took < std::time::Duration::from_secs(10), "SIGINT took {stop_took:?}");
}

#[test]
#[ignore = "privileged: needs root and real BPF; run with `cargo xtask test`"]
fn a_process_gone_before_its_stack_is_drained_still_gets_names() {
    // The binary crashes once while it can be seen (its maps read, its
    // build-id learnt), then again with no core at all: it exits at once,
    // often before its stack is drained. Either way its frames are named:
    // from its maps if they were still there, else from the kernel's
    // build-id + file offset and the file that build-id was seen in.
    let machine = Exclusive::take();
    require_systemd_collector_without_pid1();
    let dir = TempDir::new("crashtrace-stacks");
    let binary = build_c(dir.path(), "deep-twice", &["-O0", "-fno-omit-frame-pointer"]);
    machine.set_core_pattern(SYSTEMD_PATTERN);
    machine.set_core_pipe_limit(16);
    let mut tracer = Tracer::start(&["--json"]);
    let first = crash(&binary, dir.path(), 0);
    tracer.wait_verdict(first);
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let mut froms = Vec::new();
    for _ in 0..3 {
        let pid = crash(&binary, dir.path(), 0);
        let verdict = tracer.wait_verdict(pid);
        let from = verdict["stack"]["symbolized_from"].as_str().unwrap_or("none").to_string();
        eprintln!("gone at once (symbolised from {from}):\n{}", show(&verdict));
        assert_frames(&verdict, &["crash_level3", "crash_level2", "crash_level1", "main"], &binary);
        froms.push(from);
    }
    tracer.stop().assert_clean_exit();
    eprintln!("symbolised from: {froms:?}");
}

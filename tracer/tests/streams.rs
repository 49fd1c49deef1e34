//! Tier 1: crashtrace's own streams failing. An error whose message cannot
//! be written (stderr closed, a full disk, a reader gone) must still exit 2,
//! never panic (exit 101) and never look like success. Needs no root: the
//! errors here come before anything is loaded.

use std::{
    fs::File,
    process::{Command, Stdio},
};

const CRASHTRACE: &str = env!("CARGO_BIN_EXE_crashtrace");

/// A pid that existed a moment ago and has been reaped.
fn gone_pid() -> String {
    let mut child = Command::new("true").spawn().expect("running true");
    let pid = child.id();
    child.wait().expect("reaping true");
    pid.to_string()
}

/// Runs crashtrace with `args` and stderr going to `stderr`; its exit code.
fn exit_code(args: &[&str], stderr: Stdio) -> Option<i32> {
    let out = Command::new(CRASHTRACE)
        .args(args)
        .env_remove("CRASHTRACE_BPF_OBJECT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .status()
        .expect("running crashtrace");
    out.code()
}

#[test]
fn unknown_pid_with_stderr_on_a_full_device_exits_2() {
    let full = File::options().write(true).open("/dev/full").expect("opening /dev/full");
    let pid = gone_pid();
    assert_eq!(exit_code(&["--pid", &pid, "--duration", "1"], full.into()), Some(2));
}

#[test]
fn unknown_pid_with_stderr_to_a_closed_pipe_exits_2() {
    // A pipe whose reading end is closed: every write fails with EPIPE.
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe(2) failed");
    // SAFETY: closing the read end we just created and own.
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is an open fd we own; Stdio takes it over.
    let write_end: Stdio = unsafe { <Stdio as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
    let pid = gone_pid();
    assert_eq!(exit_code(&["--pid", &pid, "--duration", "1"], write_end), Some(2));
}

#[test]
fn bad_argument_with_stderr_closed_exits_2() {
    // `2>&-`: no fd 2 at all.
    let mut cmd = Command::new(CRASHTRACE);
    cmd.arg("--no-such-flag").stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: close(2) in the child between fork and exec is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::close(2);
            Ok(())
        })
    };
    let status = cmd.status().expect("running crashtrace");
    assert_eq!(status.code(), Some(2), "{status}");
}

#[test]
fn report_of_a_missing_log_with_stderr_on_a_full_device_exits_2() {
    let full = File::options().write(true).open("/dev/full").expect("opening /dev/full");
    assert_eq!(exit_code(&["report", "/nonexistent/crashtrace-no-such.jsonl"], full.into()), Some(2));
}

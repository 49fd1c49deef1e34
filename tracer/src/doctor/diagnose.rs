//! The diagnosis: [`HostFacts`] in, [`Finding`]s out. Pure, so every
//! finding is tested on hand-built facts.
//!
//! Each finding has a stable id, a severity (`loss` when it predicts that
//! cores will be lost, `warn` when cores may be lost or hidden, `info` for
//! how things stand), the cause, a fix, and, where crashtrace would end the
//! affected crashes with one, the verdict it predicts.
//! Kernel behaviour cited: https://elixir.bootlin.com/linux/v6.18/source/fs/coredump.c

use serde::Serialize;

use super::facts::{
    CgroupLayout, DirState, HostFacts, PathState, Probe, ProcessFacts, SocketClient, SocketFacts, SocketFile,
    Tracefs,
};
use crate::{
    core_pattern::{is_discarding_file, is_discarding_helper, parse_core_pattern, DumpMode},
    hooks::{self, Rung},
    verdict::{Verdict, MIN_COREDUMP},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Cores will be lost.
    Loss,
    /// Cores may be lost, or losses hidden, in some cases.
    Warn,
    /// How things stand.
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Loss => "loss",
            Severity::Warn => "warn",
            Severity::Info => "info",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier, e.g. `core-pattern-discards`.
    pub id: &'static str,
    pub severity: Severity,
    /// The process the finding is about, for per-process findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The verdict crashtrace gives the crashes this finding is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    pub cause: String,
    pub fix: String,
}

fn finding(id: &'static str, severity: Severity, verdict: Option<Verdict>, cause: String, fix: impl Into<String>) -> Finding {
    Finding { id, severity, pid: None, verdict, cause, fix: fix.into() }
}

/// A file pattern anyone can use while fixing something else.
const FILE_PATTERN_FIX: &str = "mkdir -p /var/crash && chmod 1777 /var/crash && sysctl kernel.core_pattern=/var/crash/core.%e.%p";

/// Everything that follows from the facts, losses first.
pub fn diagnose(facts: &HostFacts) -> Vec<Finding> {
    let mode = parse_core_pattern(&facts.core_pattern);
    let mut out = Vec::new();
    pattern(facts, &mode, &mut out);
    pid1_socket(facts, &mut out);
    coredump_conf(facts, &mut out);
    pipe_limit(facts, &mode, &mut out);
    suid_dumpable(facts, &mode, &mut out);
    process_limits(facts, &mode, &mut out);
    cgroups(facts, &mut out);
    hooks(facts, &mut out);
    // Stable: within a severity, the order above.
    out.sort_by_key(|f| f.severity);
    out
}

/// Whether any finding predicts that cores will be lost.
pub fn predicts_loss(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Loss)
}

fn pattern(facts: &HostFacts, mode: &DumpMode, out: &mut Vec<Finding>) {
    let shown = &facts.core_pattern;
    match mode {
        DumpMode::Empty => out.push(finding(
            "core-pattern-discards",
            Severity::Loss,
            Some(Verdict::CorePatternDiscards),
            "core_pattern is empty: the kernel writes no core at all, yet the shell still says \"core dumped\"".into(),
            FILE_PATTERN_FIX,
        )),
        DumpMode::File { path } if is_discarding_file(path) => out.push(finding(
            "core-pattern-discards",
            Severity::Loss,
            Some(Verdict::CorePatternDiscards),
            format!("core_pattern {shown:?} writes every core to {path}, which throws it away"),
            FILE_PATTERN_FIX,
        )),
        DumpMode::File { path } => file_pattern(facts, path, out),
        DumpMode::Pipe { helper, .. } if helper.is_empty() => out.push(finding(
            "collector-helper-missing",
            Severity::Loss,
            Some(Verdict::CorePatternDiscards),
            format!("core_pattern {shown:?} pipes to no program at all: the kernel cannot start a helper"),
            FILE_PATTERN_FIX,
        )),
        DumpMode::Pipe { helper, .. } if is_discarding_helper(helper) => out.push(finding(
            "core-pattern-discards",
            Severity::Loss,
            Some(Verdict::CorePatternDiscards),
            format!(
                "core_pattern {shown:?} pipes every core to {helper}, which reads nothing and exits, yet the shell \
                 still says \"core dumped\". systemd writes |/bin/false at boot, at shutdown and after PID 1 crashed"
            ),
            format!(
                "point core_pattern at a real collector, e.g. `sysctl kernel.core_pattern='|/lib/systemd/systemd-coredump \
                 %P %u %g %s %t %c %h'` with systemd as PID 1, or a file pattern: {FILE_PATTERN_FIX}; run `crashtrace` \
                 to see which process writes {helper} into core_pattern"
            ),
        )),
        DumpMode::Pipe { helper, .. } => {
            match facts.helper.as_ref().map(|h| h.state) {
                Some(PathState::Missing) => out.push(finding(
                    "collector-helper-missing",
                    Severity::Loss,
                    Some(Verdict::CorePatternDiscards),
                    format!("core_pattern {shown:?} pipes to {helper}, which does not exist: the kernel cannot start it, and every core is lost"),
                    format!("install the collector that provides {helper}, or set another pattern: {FILE_PATTERN_FIX}"),
                )),
                Some(PathState::NotExecutable) => out.push(finding(
                    "collector-helper-missing",
                    Severity::Loss,
                    Some(Verdict::CorePatternDiscards),
                    format!("core_pattern {shown:?} pipes to {helper}, which is not executable: the kernel cannot start it, and every core is lost"),
                    format!("chmod +x {helper}, or set another pattern: {FILE_PATTERN_FIX}"),
                )),
                Some(PathState::Executable) | None => {}
            }
            if let Some(socket) = &facts.socket {
                collector_socket(facts, socket, out);
            }
        }
        DumpMode::Socket { path, ack } => {
            let (major_minor, since) = if *ack { ((6, 17), "6.17") } else { ((6, 16), "6.16") };
            let listed = facts.core_modes.as_ref().map(|m| m.iter().any(|x| x == "socket"));
            let too_old = kernel_version(&facts.kernel_release).is_some_and(|v| v < major_minor);
            if too_old || listed == Some(false) {
                out.push(finding(
                    "core-pattern-mode-unsupported",
                    Severity::Loss,
                    None,
                    format!(
                        "core_pattern {shown:?} asks for a core socket, which needs Linux {since} or later; kernel {} \
                         takes the pattern as a relative file name instead, and no core arrives at {path}",
                        facts.kernel_release
                    ),
                    format!("use a pipe helper or a file pattern on this kernel: {FILE_PATTERN_FIX}"),
                ));
            } else if let Some(socket) = &facts.socket {
                collector_socket(facts, socket, out);
            }
        }
    }
}

fn file_pattern(facts: &HostFacts, path: &str, out: &mut Vec<Finding>) {
    if !path.starts_with('/') {
        out.push(finding(
            "core-pattern-relative",
            Severity::Info,
            None,
            format!(
                "core_pattern {path:?} is relative: each core is written into the crasher's current directory, \
                 and is lost where that directory is not writable by the crasher (daemons often run in /)"
            ),
            format!("use an absolute pattern: {FILE_PATTERN_FIX}"),
        ));
        return;
    }
    let Some(dir) = &facts.core_dir else { return };
    let d = &dir.path;
    match &dir.state {
        DirState::Missing | DirState::NotADirectory => out.push(finding(
            "core-dir-missing",
            Severity::Loss,
            None,
            format!(
                "core_pattern {path:?} writes into {d}, which {}: the kernel cannot create any core file, yet the shell \
                 still says nothing is wrong",
                if dir.state == DirState::Missing { "does not exist" } else { "is not a directory" }
            ),
            format!("mkdir -p {d} && chmod 1777 {d}"),
        )),
        DirState::NotWritable(why) => out.push(finding(
            "core-dir-not-writable",
            Severity::Loss,
            None,
            format!("core_pattern {path:?} writes into {d}, which even root cannot write to ({why}): no core file can be created"),
            format!("make {d} writable (a read-only mount?), or point core_pattern elsewhere: {FILE_PATTERN_FIX}"),
        )),
        DirState::Writable if !dir.world_writable => out.push(finding(
            "core-dir-restricted",
            Severity::Warn,
            None,
            format!(
                "core_pattern {path:?} writes into {d}, which not every user can write to: cores of processes \
                 that cannot write there are lost"
            ),
            format!("chmod 1777 {d}"),
        )),
        DirState::Writable => {}
    }
}

/// The socket a core has to pass through, and whether it is served.
fn collector_socket(facts: &HostFacts, socket: &SocketFacts, out: &mut Vec<Finding>) {
    let path = &socket.path;
    let want = socket.client.socket_type();
    let (verdict, who) = match socket.client {
        SocketClient::SystemdCoredump => (Verdict::CollectorUnreachablePid1, "systemd-coredump"),
        SocketClient::Kernel => (Verdict::SocketUnreachable, "the kernel"),
    };
    let pid1 = pid1_name(&facts.pid1);
    if socket.listeners.contains(&want) {
        return;
    }
    if !socket.listeners.is_empty() {
        let have: Vec<String> = socket.listeners.iter().map(|t| t.name()).collect();
        out.push(finding(
            "collector-socket-wrong-type",
            Severity::Loss,
            Some(verdict),
            format!(
                "{who} connects to {path} with {}, but what listens there is {}: the connect fails with EPROTOTYPE \
                 and every core is lost as {verdict}",
                want.name(),
                have.join(", ")
            ),
            format!("make the collector listen on {path} with {}", want.name()),
        ));
        return;
    }
    let (errno, why) = match socket.file {
        SocketFile::Missing => ("ENOENT", format!("{path} does not exist")),
        SocketFile::NotASocket => ("ECONNREFUSED", format!("{path} is not a socket")),
        SocketFile::Socket => ("ECONNREFUSED", format!("the socket file {path} exists, but no process listens on it")),
    };
    let (cause, fix) = match socket.client {
        SocketClient::SystemdCoredump => {
            let pid1_state = if socket.file == SocketFile::Socket && pid1.contains("systemd") {
                "PID 1 closed it: it crashed and froze in its crash handler, or is shutting down".to_string()
            } else {
                format!("PID 1 ({pid1}) does not serve it")
            };
            (
                format!(
                    "core_pattern pipes cores to systemd-coredump, which hands each one to PID 1 over {path}; {why}: \
                     {pid1_state}. systemd-coredump's connect() fails with {errno} and every core is lost as {verdict}, \
                     while the shell still says \"core dumped\""
                ),
                format!(
                    "run systemd as PID 1 (it serves {path} through systemd-coredump.socket), or, without systemd, \
                     use a collector that needs no PID 1: {FILE_PATTERN_FIX}"
                ),
            )
        }
        SocketClient::Kernel => (
            format!(
                "core_pattern {:?} makes the kernel connect to {path}; {why}: the connect fails with {errno} and \
                 every core is lost as {verdict}",
                facts.core_pattern
            ),
            format!("start the core collector that listens on {path} (SOCK_STREAM), or set another pattern: {FILE_PATTERN_FIX}"),
        ),
    };
    out.push(finding("collector-socket-unreachable", Severity::Loss, Some(verdict), cause, fix));
}

/// PID 1's coredump socket when the pattern does not go through it: a
/// systemd that crashed swaps in `|/bin/false` and stops serving the socket,
/// and setting systemd's pattern back would then lose every core as well.
fn pid1_socket(facts: &HostFacts, out: &mut Vec<Finding>) {
    let Some(socket) = &facts.pid1_socket else { return };
    if facts.socket.as_ref().is_some_and(|s| s.path == socket.path) {
        return; // the pattern's own socket, checked with the pattern
    }
    let path = &socket.path;
    let want = socket.client.socket_type();
    if socket.listeners.contains(&want) {
        return;
    }
    let pid1 = pid1_name(&facts.pid1);
    let is_systemd = pid1.contains("systemd");
    if socket.file == SocketFile::Missing && !is_systemd {
        return; // no systemd, no socket: nothing expects one
    }
    let why = match (socket.file, socket.listeners.is_empty()) {
        (_, false) => format!(
            "what listens on {path} is {}, not {} (EPROTOTYPE)",
            socket.listeners.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
            want.name()
        ),
        (SocketFile::Missing, true) => format!("{path} does not exist (ENOENT)"),
        (SocketFile::NotASocket, true) => format!("{path} is not a socket (ECONNREFUSED)"),
        (SocketFile::Socket, true) => {
            format!("the socket file {path} exists, but no process listens on it (ECONNREFUSED)")
        }
    };
    let state = if is_systemd && socket.file == SocketFile::Socket {
        "PID 1 closed it: it crashed and froze in its crash handler, or is shutting down"
    } else {
        "PID 1 does not serve it"
    };
    out.push(finding(
        "pid1-coredump-socket-dead",
        Severity::Warn,
        Some(Verdict::CollectorUnreachablePid1),
        format!(
            "PID 1's coredump socket is not served: {why}; {state} ({pid1}). core_pattern {:?} does not use it now, \
             but with systemd-coredump's pattern back every core would be lost as {}",
            facts.core_pattern,
            Verdict::CollectorUnreachablePid1
        ),
        format!(
            "if PID 1 froze in its crash handler, only a reboot brings {path} back; until then use a collector that \
             needs no PID 1: {FILE_PATTERN_FIX}"
        ),
    ));
}

fn pid1_name(pid1: &ProcessFacts) -> String {
    match (&pid1.comm, &pid1.exe) {
        (_, Some(exe)) => exe.clone(),
        (Some(comm), None) => comm.clone(),
        (None, None) => "unknown".into(),
    }
}

/// Below this a size limit of systemd-coredump keeps almost no core (a
/// small C program's core is some hundred KiB before compression).
const TINY_LIMIT: u64 = 1 << 20;

/// systemd-coredump settings that keep nothing, or nearly nothing: it still
/// exits 0, so the kernel and the shell say "core dumped".
fn coredump_conf(facts: &HostFacts, out: &mut Vec<Finding>) {
    let Some(conf) = &facts.coredump_conf else { return };
    if let Some(why) = conf.keeps_nothing(None) {
        let file = why.rsplit_once(" (").map(|(_, f)| f.trim_end_matches(')')).unwrap_or("coredump.conf").to_string();
        out.push(finding(
            "coredump-conf-keeps-nothing",
            Severity::Loss,
            Some(Verdict::CollectorDiscarded),
            format!("systemd-coredump is configured with {why}: it takes every core, keeps none, and exits 0, so the shell still says \"core dumped\""),
            format!("remove the setting from {file} (Storage=external keeps cores in /var/lib/systemd/coredump)"),
        ));
    }
    let storage = conf.storage.as_ref().map(|s| s.value.as_str()).unwrap_or("external");
    let tiny = [
        ("ProcessSizeMax", &conf.process_size_max, true),
        ("ExternalSizeMax", &conf.external_size_max, storage == "external"),
        ("JournalSizeMax", &conf.journal_size_max, storage == "journal"),
    ];
    for (name, setting, applies) in tiny {
        if let Some(s) = setting
            && applies
            && s.value > 0
            && s.value < TINY_LIMIT
        {
            out.push(finding(
                "coredump-conf-tiny-limit",
                Severity::Warn,
                Some(Verdict::CollectorDiscarded),
                format!("{name}={} ({}): systemd-coredump keeps no core larger than that, and most are", s.value, s.file),
                format!("raise {name} in {} (the default is 1G for ExternalSizeMax and ProcessSizeMax), or remove it", s.file),
            ));
        }
    }
    if let Some(s) = &conf.max_use
        && s.value < TINY_LIMIT
    {
        out.push(finding(
            "coredump-conf-tiny-limit",
            Severity::Warn,
            None,
            format!(
                "MaxUse={} ({}): systemd-coredump removes every older core after each new one (measured with systemd 252: the newest is kept)",
                s.value, s.file
            ),
            format!("raise MaxUse in {} or remove it (the default is 10% of the file system)", s.file),
        ));
    }
    for bad in &conf.bad_lines {
        out.push(finding(
            "coredump-conf-unparsed",
            Severity::Info,
            None,
            format!("a coredump.conf line crashtrace could not read: {bad}"),
            "check the line against coredump.conf(5); systemd ignores what it cannot parse",
        ));
    }
}

fn pipe_limit(facts: &HostFacts, mode: &DumpMode, out: &mut Vec<Finding>) {
    let DumpMode::Pipe { helper, .. } = mode else { return };
    if helper.is_empty() || is_discarding_helper(helper) {
        return;
    }
    match facts.core_pipe_limit {
        Some(0) => out.push(finding(
            "pipe-limit-zero",
            Severity::Warn,
            None,
            format!(
                "core_pipe_limit is 0: the kernel does not wait for {helper} to finish, so the crasher can exit and \
                 be reaped while the helper still reads /proc/PID of it; a helper that needs /proc/%P races and may \
                 store an incomplete core or none (there is no limit on parallel dumps either)"
            ),
            "sysctl kernel.core_pipe_limit=16",
        )),
        Some(n) => out.push(finding(
            "pipe-limit",
            Severity::Info,
            Some(Verdict::PipeLimit),
            format!(
                "core_pipe_limit is {n}: the kernel waits for {helper} to finish, and skips the dump of any crash \
                 beyond {n} piped dumps in flight (\"over core_pipe_limit\")"
            ),
            "raise kernel.core_pipe_limit if many processes crash at once",
        )),
        None => {}
    }
}

fn suid_dumpable(facts: &HostFacts, mode: &DumpMode, out: &mut Vec<Finding>) {
    match facts.suid_dumpable {
        Some(0) => out.push(finding(
            "suid-dumpable-off",
            Severity::Warn,
            Some(Verdict::NotDumpable),
            "fs.suid_dumpable is 0: processes that changed credentials (setuid or setgid programs, or ones that \
             dropped privileges) are not dumpable, and their crashes leave no core"
                .into(),
            "if those cores are wanted: sysctl fs.suid_dumpable=2 with an absolute or pipe core_pattern",
        )),
        Some(1) => out.push(finding(
            "suid-dumpable-debug",
            Severity::Warn,
            None,
            "fs.suid_dumpable is 1 (debug): cores of setuid programs are dumped as the user who ran them, \
             which can leak privileged memory to that user"
                .into(),
            "sysctl fs.suid_dumpable=2 (dump them as root) or 0",
        )),
        Some(2) => {
            if let DumpMode::File { path } = mode
                && !path.starts_with('/')
            {
                out.push(finding(
                    "suid-dumpable-unsafe-pattern",
                    Severity::Loss,
                    None,
                    format!(
                        "fs.suid_dumpable is 2 and core_pattern {path:?} is relative: the kernel refuses to dump \
                         processes that changed credentials (the kernel's \"Unsafe core_pattern used with \
                         fs.suid_dumpable=2: pipe handler or fully qualified core dump path required\" case), so \
                         their cores are lost"
                    ),
                    format!("use an absolute pattern or a pipe helper: {FILE_PATTERN_FIX}"),
                ));
            }
        }
        _ => {}
    }
}

/// RLIMIT_CORE and dumpability of PID 1, and of `--pid`. For `--pid` a
/// problem is a loss: that process's core will not be kept. For PID 1 it is
/// a warning: its crash handler may raise the limit in the child that dumps
/// (systemd's does), but processes that inherit its limit get no core.
fn process_limits(facts: &HostFacts, mode: &DumpMode, out: &mut Vec<Finding>) {
    let target_is_pid1 = facts.target.as_ref().is_some_and(|t| t.pid == 1);
    if !target_is_pid1 {
        process_limit(&facts.pid1, false, mode, out);
    }
    if let Some(target) = &facts.target {
        process_limit(target, true, mode, out);
        dumpability(facts, target, out);
    }
}

fn process_limit(p: &ProcessFacts, is_target: bool, mode: &DumpMode, out: &mut Vec<Finding>) {
    let Some(limit) = p.rlimit_core else { return };
    let Some(soft) = limit.soft else { return }; // unlimited
    let severity = if is_target { Severity::Loss } else { Severity::Warn };
    let who = match &p.comm {
        Some(comm) => format!("pid {} ({comm})", p.pid),
        None => format!("pid {}", p.pid),
    };
    let raise = if limit.hard.is_none_or(|h| h >= MIN_COREDUMP) {
        format!("raise it: `prlimit --pid {} --core=unlimited`, or LimitCORE=infinity in its unit", p.pid)
    } else {
        format!(
            "its hard limit is {} bytes too, so only root can raise it: `prlimit --pid {} --core=unlimited:unlimited`",
            limit.hard.unwrap_or(0),
            p.pid
        )
    };
    let pid1_note = if is_target { "" } else { "; PID 1's own crash handler may raise it for the child that dumps (systemd's does), but every process that inherits it gets no core file" };
    let mut f = match mode {
        DumpMode::File { path } if !is_discarding_file(path) && soft < MIN_COREDUMP => finding(
            "rlimit-core-zero",
            severity,
            Some(Verdict::RlimitCore),
            format!(
                "{who} has RLIMIT_CORE {soft} (soft), below the {MIN_COREDUMP}-byte minimum for a core file: with \
                 file pattern {path:?} the kernel writes no core when it crashes{pid1_note}"
            ),
            raise,
        ),
        DumpMode::Pipe { helper, .. } if soft == 1 => finding(
            "rlimit-core-one",
            severity,
            Some(Verdict::RlimitCore),
            format!(
                "{who} has RLIMIT_CORE 1 (soft): the kernel refuses to pipe its core to {helper}, because 1 marks \
                 a core-dump helper itself (recursion guard){pid1_note}"
            ),
            raise,
        ),
        DumpMode::Pipe { helper, args } if soft < MIN_COREDUMP && args.iter().any(|a| a.contains("%c")) => finding(
            "rlimit-core-zero",
            severity,
            None,
            format!(
                "{who} has RLIMIT_CORE {soft} (soft), and core_pattern passes it to {helper} as %c: collectors that \
                 honour it (systemd-coredump does) record the crash but keep no core{pid1_note}"
            ),
            raise,
        ),
        _ => return,
    };
    f.pid = Some(p.pid);
    out.push(f);
}

fn dumpability(facts: &HostFacts, p: &ProcessFacts, out: &mut Vec<Finding>) {
    if p.dumpable != Some(false) {
        return;
    }
    let who = format!("pid {}{}", p.pid, p.comm.as_ref().map(|c| format!(" ({c})")).unwrap_or_default());
    let mut f = if facts.suid_dumpable == Some(2) {
        finding(
            "pid-not-dumpable",
            Severity::Warn,
            None,
            format!(
                "{who} is not dumpable as its owner: it changed credentials (then, with fs.suid_dumpable=2, it is \
                 dumped as root, to a pipe or an absolute path only) or it called prctl(PR_SET_DUMPABLE, 0) (then \
                 it is not dumped at all)"
            ),
            "if the process set PR_SET_DUMPABLE 0 itself, that is its choice; otherwise keep core_pattern absolute or a pipe",
        )
    } else {
        finding(
            "pid-not-dumpable",
            Severity::Loss,
            Some(Verdict::NotDumpable),
            format!(
                "{who} is not dumpable: it changed credentials (setuid, setgid, or dropped privileges) with \
                 fs.suid_dumpable={}, or called prctl(PR_SET_DUMPABLE, 0); the kernel will not dump it",
                facts.suid_dumpable.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
            ),
            "sysctl fs.suid_dumpable=2 with an absolute or pipe core_pattern, or stop the process from clearing PR_SET_DUMPABLE",
        )
    };
    f.pid = Some(p.pid);
    out.push(f);
}

fn cgroups(facts: &HostFacts, out: &mut Vec<Finding>) {
    let c = &facts.cgroup;
    let v2 = c.v2_mount.as_deref().unwrap_or("?");
    out.push(match c.layout {
        CgroupLayout::V2 => finding(
            "cgroup-v2",
            Severity::Info,
            None,
            format!("cgroup v2 only (unified, at {v2}): each crash chain carries the crasher's cgroup id, which names its service"),
            "nothing to do",
        ),
        CgroupLayout::Hybrid => finding(
            "cgroup-hybrid",
            Severity::Warn,
            None,
            format!(
                "hybrid cgroup layout: {} v1 hierarchies plus cgroup2 at {v2}{}. The cgroup id in crashtrace's chains \
                 comes from the cgroup2 tree, which does not show how services are split up in v1, and under v1 \
                 a crasher that became a zombie has already moved to the root cgroup, so collectors that read \
                 /proc/PID/cgroup late cannot tell which service crashed",
                c.v1_mounts.len(),
                match c.v2_path.as_deref() {
                    Some("/") => ", where this process sits at the root",
                    _ => "",
                }
            ),
            "boot with systemd.unified_cgroup_hierarchy=1 (or cgroup_no_v1=all) for the unified layout",
        ),
        CgroupLayout::V1 => finding(
            "cgroup-v1",
            Severity::Warn,
            None,
            "cgroup v1 only: crashtrace's cgroup ids (from the cgroup2 tree) are all the root's, and a crasher that \
             became a zombie has already moved to the root cgroup, so neither crashtrace nor collectors that read \
             /proc/PID/cgroup late can tell which service crashed"
                .into(),
            "boot with systemd.unified_cgroup_hierarchy=1 (or cgroup_no_v1=all) for the unified layout",
        ),
        CgroupLayout::None => finding(
            "cgroup-none",
            Severity::Info,
            None,
            "no cgroup filesystem is mounted: crash chains carry no useful cgroup id".into(),
            "mount cgroup2: `mount -t cgroup2 none /sys/fs/cgroup`",
        ),
    });
}

fn hooks(facts: &HostFacts, out: &mut Vec<Finding>) {
    let h = &facts.hooks;
    if !h.btf {
        out.push(finding(
            "btf-missing",
            Severity::Warn,
            None,
            "the kernel has no BTF (/sys/kernel/btf/vmlinux): crashtrace cannot read the kernel's layouts or attach \
             its tp_btf hooks, so it cannot start, and crashes go unexplained"
                .into(),
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are)",
        ));
    } else if let Probe::Refused(why) = &h.tp_btf {
        let tp = hooks::required_tp_btf().next().unwrap_or("its tracepoints");
        out.push(finding(
            "tp-btf-unavailable",
            Severity::Warn,
            None,
            format!("tp_btf on {tp} does not attach ({why}): crashtrace needs it and cannot start"),
            "check kernel.unprivileged_bpf_disabled, lockdown, and any LSM or seccomp policy that blocks bpf(2)",
        ));
    }
    // The connect tracepoints' events and config, from the hook table.
    let connect = &hooks::CONNECT_FIELDS;
    let systems = connect.systems();
    let names: Vec<&str> = connect.events().into_iter().map(|(_, event)| event).collect();
    let config = connect.config().unwrap_or("CONFIG_FTRACE_SYSCALLS");
    match (&h.tracefs, h.connect_tracepoints) {
        (Tracefs::Unavailable, _) => out.push(finding(
            "tracefs-unavailable",
            Severity::Warn,
            None,
            format!(
                "the kernel has no tracefs: crashtrace cannot attach the {} connect tracepoints, so it will not see \
                 a collector's failed connect() and cannot tell dropped:collector-unreachable-pid1 from dropped:collector-failed",
                systems.join("/")
            ),
            format!("use a kernel with CONFIG_TRACING and {config}"),
        )),
        (Tracefs::Mounted(dir), Some(false)) => out.push(finding(
            "connect-tracepoints-missing",
            Severity::Warn,
            None,
            format!(
                "{dir}/events/{} has no {}: crashtrace will not see a collector's \
                 failed connect() and cannot tell dropped:collector-unreachable-pid1 from dropped:collector-failed",
                systems.join(","),
                names.join("/")
            ),
            format!("use a kernel with {config}"),
        )),
        _ => {}
    }
    out.push(dump_hook(h));
}

/// Which way crashtrace will see dump starts: the fallback ladder of the
/// loader (fentry, else kprobe, on the dump entry; else inference). Hook
/// names come from the hook table's rungs.
fn dump_hook(h: &super::facts::HookFacts) -> Finding {
    let rung_name = |rung: Rung, function: &str| {
        hooks::rung(rung).map(|spec| spec.name(function)).unwrap_or_else(|| function.to_string())
    };
    let tracefs = match &h.tracefs {
        Tracefs::Mounted(dir) => format!("tracefs at {dir}"),
        Tracefs::Mountable => "tracefs not mounted (crashtrace mounts it at /sys/kernel/tracing)".into(),
        Tracefs::Unavailable => "no tracefs".into(),
    };
    let tp_btf = match &h.tp_btf {
        Probe::Attachable => "tp_btf attaches".to_string(),
        Probe::Refused(why) => format!("tp_btf refused ({why})"),
        Probe::Unknown(why) => format!("tp_btf {why}"),
    };
    let kprobe = if h.kprobe_pmu { "kprobe PMU present" } else { "no kprobe PMU (CONFIG_KPROBES off)" };
    let Some(function) = &h.dump_function else {
        return finding(
            "dump-hook-inferred",
            Severity::Info,
            None,
            format!(
                "the kernel's BTF has {}, so there is nothing to hook: dump starts are \
                 inferred from signal_deliver (SIG_DFL and a core signal), the helper's exec and the exit status. \
                 BTF {}; {tp_btf}; {kprobe}; {tracefs}",
                hooks::neither(hooks::DUMP_ENTRY),
                if h.btf { "present" } else { "missing" }
            ),
            "nothing to do; crashtrace --coredump-hook picks the way by hand",
        );
    };
    let fentry = match &h.fentry {
        Probe::Attachable => format!("fentry on {function} attaches"),
        Probe::Refused(why) => format!("fentry on {function} refused ({why})"),
        Probe::Unknown(why) => format!("fentry on {function}: {why}"),
    };
    let hooks = format!("BTF present; {tp_btf}; {fentry}; {kprobe}; {tracefs}");
    let (id, how) = match (&h.fentry, h.kprobe_pmu) {
        (Probe::Attachable, _) => (
            "dump-hook-fentry",
            format!("crashtrace will see each dump start directly, with {}", rung_name(Rung::Fentry, function)),
        ),
        (Probe::Refused(_), true) => (
            "dump-hook-kprobe",
            format!("crashtrace will fall back to {} to see each dump start", rung_name(Rung::Kprobe, function)),
        ),
        (Probe::Refused(_), false) => (
            "dump-hook-inferred",
            "crashtrace will infer each dump start from signal_deliver (SIG_DFL and a core signal), the helper's exec and the exit status".to_string(),
        ),
        (Probe::Unknown(_), pmu) => (
            "dump-hook-unknown",
            format!(
                "whether crashtrace sees dump starts with {} is unknown until it starts; otherwise it {}",
                rung_name(Rung::Fentry, function),
                if pmu {
                    format!("falls back to {}", rung_name(Rung::Kprobe, function))
                } else {
                    "infers them from signal_deliver, the helper's exec and the exit status".into()
                }
            ),
        ),
    };
    finding(id, Severity::Info, None, format!("{how}. {hooks}"), "nothing to do; `crashtrace --coredump-hook` picks the way by hand")
}

/// (major, minor) of a kernel release such as "6.18.44-fc-v669".
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::facts::{
        CgroupFacts, CoreLimit, DirFacts, HelperFacts, HookFacts, SockType,
    };

    const SYSTEMD: &str = "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h %d";

    fn process(pid: u32, comm: &str, soft: Option<u64>) -> ProcessFacts {
        ProcessFacts {
            pid,
            comm: Some(comm.into()),
            exe: None,
            euid: Some(0),
            rlimit_core: Some(CoreLimit { soft, hard: None }),
            dumpable: None,
        }
    }

    /// A healthy host: a world-writable absolute file pattern, v2, every hook.
    fn healthy() -> HostFacts {
        HostFacts {
            kernel_release: "6.18.44".into(),
            core_pattern: "/var/crash/core.%e.%p".into(),
            core_pipe_limit: Some(16),
            suid_dumpable: Some(2),
            core_modes: Some(vec!["file".into(), "pipe".into(), "socket".into()]),
            helper: None,
            socket: None,
            pid1_socket: None,
            core_dir: Some(DirFacts { path: "/var/crash".into(), state: DirState::Writable, world_writable: true }),
            pid1: process(1, "systemd", None),
            target: None,
            cgroup: CgroupFacts {
                layout: CgroupLayout::V2,
                v2_mount: Some("/sys/fs/cgroup".into()),
                v1_mounts: vec![],
                v2_path: Some("/user.slice".into()),
            },
            hooks: HookFacts {
                btf: true,
                dump_function: Some("vfs_coredump".into()),
                tp_btf: Probe::Attachable,
                fentry: Probe::Attachable,
                kprobe_pmu: true,
                tracefs: Tracefs::Mounted("/sys/kernel/tracing".into()),
                connect_tracepoints: Some(true),
            },
            coredump_conf: None,
        }
    }

    fn conf(text: &str) -> crate::coredump_conf::CoredumpConf {
        let mut c = crate::coredump_conf::CoredumpConf::default();
        c.apply("/etc/systemd/coredump.conf.d/x.conf", text);
        c
    }

    #[test]
    fn coredump_conf_that_keeps_nothing_is_a_loss() {
        let base = systemd(SocketFile::Socket, vec![SockType::Seqpacket], "systemd");
        let ids = |f: &[Finding]| f.iter().map(|x| (x.id, x.severity)).collect::<Vec<_>>();
        let clean = diagnose(&HostFacts { coredump_conf: Some(conf("[Coredump]\nStorage=external\n")), ..base.clone() });
        assert!(!clean.iter().any(|f| f.id.starts_with("coredump-conf")), "{clean:?}");

        let none = diagnose(&HostFacts { coredump_conf: Some(conf("[Coredump]\nStorage=none\n")), ..base.clone() });
        let f = none.iter().find(|f| f.id == "coredump-conf-keeps-nothing").expect("Storage=none is found");
        assert_eq!((f.severity, f.verdict), (Severity::Loss, Some(Verdict::CollectorDiscarded)));
        assert!(f.cause.contains("Storage=none") && f.fix.contains("/etc/systemd/coredump.conf.d/x.conf"), "{f:?}");
        assert!(predicts_loss(&none));

        let zero = diagnose(&HostFacts { coredump_conf: Some(conf("[Coredump]\nProcessSizeMax=0\n")), ..base.clone() });
        assert!(ids(&zero).contains(&("coredump-conf-keeps-nothing", Severity::Loss)), "{zero:?}");

        let tiny = diagnose(&HostFacts { coredump_conf: Some(conf("[Coredump]\nExternalSizeMax=4096\nMaxUse=1\nBogus\n")), ..base.clone() });
        assert_eq!(
            ids(&tiny).into_iter().filter(|(id, _)| id.starts_with("coredump-conf")).collect::<Vec<_>>(),
            vec![("coredump-conf-tiny-limit", Severity::Warn), ("coredump-conf-tiny-limit", Severity::Warn), ("coredump-conf-unparsed", Severity::Info)]
        );
        // JournalSizeMax only matters with Storage=journal.
        let journal = diagnose(&HostFacts { coredump_conf: Some(conf("[Coredump]\nJournalSizeMax=10\n")), ..base });
        assert!(!journal.iter().any(|f| f.id.starts_with("coredump-conf")), "{journal:?}");
    }

    fn pipe(pattern: &str, helper: &str, state: PathState) -> HostFacts {
        HostFacts {
            core_pattern: pattern.into(),
            helper: Some(HelperFacts { path: helper.into(), state }),
            core_dir: None,
            ..healthy()
        }
    }

    fn systemd(file: SocketFile, listeners: Vec<SockType>, pid1: &str) -> HostFacts {
        HostFacts {
            socket: Some(SocketFacts {
                path: "/run/systemd/coredump".into(),
                client: SocketClient::SystemdCoredump,
                file,
                listeners,
            }),
            pid1: process(1, pid1, None),
            ..pipe(SYSTEMD, "/lib/systemd/systemd-coredump", PathState::Executable)
        }
    }

    fn socket_pattern(pattern: &str, path: &str, listeners: Vec<SockType>) -> HostFacts {
        HostFacts {
            core_pattern: pattern.into(),
            core_dir: None,
            socket: Some(SocketFacts {
                path: path.into(),
                client: SocketClient::Kernel,
                file: if listeners.is_empty() { SocketFile::Missing } else { SocketFile::Socket },
                listeners,
            }),
            ..healthy()
        }
    }

    fn ids(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.id).collect()
    }

    #[track_caller]
    fn only(findings: &[Finding], id: &str) -> Finding {
        let hits: Vec<&Finding> = findings.iter().filter(|f| f.id == id).collect();
        assert_eq!(hits.len(), 1, "want exactly one {id}, got {:?}", ids(findings));
        hits[0].clone()
    }

    #[track_caller]
    fn losses(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().filter(|f| f.severity == Severity::Loss).map(|f| f.id).collect()
    }

    #[test]
    fn healthy_host_predicts_no_loss() {
        let f = diagnose(&healthy());
        assert!(!predicts_loss(&f), "{f:#?}");
        assert!(f.iter().all(|f| f.severity == Severity::Info), "{f:#?}");
        assert_eq!(ids(&f), vec!["cgroup-v2", "dump-hook-fentry"]);
    }

    #[test]
    fn bin_false_discards() {
        for helper in ["/bin/false", "/usr/bin/true"] {
            let f = diagnose(&pipe(&format!("|{helper}"), helper, PathState::Executable));
            let d = only(&f, "core-pattern-discards");
            assert_eq!(d.severity, Severity::Loss);
            assert_eq!(d.verdict, Some(Verdict::CorePatternDiscards));
            assert!(d.cause.contains(helper), "{}", d.cause);
            assert_eq!(losses(&f), vec!["core-pattern-discards"]);
            // Waiting for /bin/false is moot.
            assert!(!ids(&f).contains(&"pipe-limit"));
        }
    }

    #[test]
    fn dev_null_and_empty_discard() {
        let f = diagnose(&HostFacts { core_pattern: "/dev/null".into(), core_dir: None, ..healthy() });
        assert_eq!(only(&f, "core-pattern-discards").verdict, Some(Verdict::CorePatternDiscards));
        let f = diagnose(&HostFacts { core_pattern: "".into(), core_dir: None, ..healthy() });
        assert!(only(&f, "core-pattern-discards").cause.contains("empty"));
        assert!(predicts_loss(&f));
    }

    #[test]
    fn missing_or_unexecutable_helper() {
        let f = diagnose(&pipe("|/nonexistent/x %P", "/nonexistent/x", PathState::Missing));
        let m = only(&f, "collector-helper-missing");
        assert_eq!((m.severity, m.verdict), (Severity::Loss, Some(Verdict::CorePatternDiscards)));
        assert!(m.cause.contains("does not exist"), "{}", m.cause);
        let f = diagnose(&pipe("|/opt/c", "/opt/c", PathState::NotExecutable));
        assert!(only(&f, "collector-helper-missing").cause.contains("not executable"));
        let f = diagnose(&HostFacts { core_pattern: "|".into(), core_dir: None, ..healthy() });
        assert_eq!(losses(&f), vec!["collector-helper-missing"]);
    }

    #[test]
    fn systemd_coredump_without_listener_is_unreachable_pid1() {
        let f = diagnose(&systemd(SocketFile::Missing, vec![], "process_api"));
        let s = only(&f, "collector-socket-unreachable");
        assert_eq!(s.severity, Severity::Loss);
        assert_eq!(s.verdict, Some(Verdict::CollectorUnreachablePid1));
        assert!(s.cause.contains("dropped:collector-unreachable-pid1"), "{}", s.cause);
        assert!(s.cause.contains("ENOENT") && s.cause.contains("process_api"), "{}", s.cause);
        assert_eq!(losses(&f), vec!["collector-socket-unreachable"]);
        // A frozen systemd: the file stays, nobody listens.
        let f = diagnose(&systemd(SocketFile::Socket, vec![], "systemd"));
        let s = only(&f, "collector-socket-unreachable");
        assert!(s.cause.contains("ECONNREFUSED") && s.cause.contains("froze"), "{}", s.cause);
    }

    fn pid1_coredump_socket(file: SocketFile, listeners: Vec<SockType>) -> Option<SocketFacts> {
        Some(SocketFacts { path: "/run/systemd/coredump".into(), client: SocketClient::SystemdCoredump, file, listeners })
    }

    #[test]
    fn a_frozen_systemd_behind_bin_false_names_the_dead_socket() {
        // systemd's crash handler swapped in |/bin/false and stopped serving
        // its socket: both are named.
        let facts = HostFacts {
            pid1_socket: pid1_coredump_socket(SocketFile::Socket, vec![]),
            ..pipe("|/bin/false", "/bin/false", PathState::Executable)
        };
        let f = diagnose(&facts);
        assert!(ids(&f).contains(&"core-pattern-discards"), "{f:#?}");
        let s = only(&f, "pid1-coredump-socket-dead");
        assert_eq!(s.verdict, Some(Verdict::CollectorUnreachablePid1));
        assert!(s.cause.contains("/run/systemd/coredump") && s.cause.contains("ECONNREFUSED"), "{}", s.cause);
        assert!(s.cause.contains("froze"), "{}", s.cause);
    }

    #[test]
    fn pid1s_socket_is_checked_once_and_only_when_dead() {
        // Served: nothing to say.
        let served = HostFacts { pid1_socket: pid1_coredump_socket(SocketFile::Socket, vec![SockType::Seqpacket]), ..healthy() };
        assert!(!ids(&diagnose(&served)).contains(&"pid1-coredump-socket-dead"));
        // No systemd and no socket file: nothing expects one.
        let none = HostFacts {
            pid1: process(1, "init", None),
            pid1_socket: pid1_coredump_socket(SocketFile::Missing, vec![]),
            ..healthy()
        };
        assert!(!ids(&diagnose(&none)).contains(&"pid1-coredump-socket-dead"));
        // The pattern pipes to systemd-coredump: the pattern's finding says it.
        let via_pattern = HostFacts {
            pid1_socket: pid1_coredump_socket(SocketFile::Socket, vec![]),
            ..systemd(SocketFile::Socket, vec![], "systemd")
        };
        let f = diagnose(&via_pattern);
        assert!(!ids(&f).contains(&"pid1-coredump-socket-dead"), "{f:#?}");
        assert!(ids(&f).contains(&"collector-socket-unreachable"));
    }

    #[test]
    fn systemd_coredump_served_by_pid1() {
        let f = diagnose(&systemd(SocketFile::Socket, vec![SockType::Seqpacket], "systemd"));
        assert!(!predicts_loss(&f), "{f:#?}");
        assert_eq!(only(&f, "pipe-limit").verdict, Some(Verdict::PipeLimit));
    }

    #[test]
    fn wrong_socket_types() {
        let f = diagnose(&systemd(SocketFile::Socket, vec![SockType::Stream], "systemd"));
        let w = only(&f, "collector-socket-wrong-type");
        assert_eq!(w.verdict, Some(Verdict::CollectorUnreachablePid1));
        assert!(w.cause.contains("SOCK_SEQPACKET") && w.cause.contains("EPROTOTYPE"), "{}", w.cause);
        // The kernel connects to an @ socket with SOCK_STREAM.
        let f = diagnose(&socket_pattern("@/run/cd.sock", "/run/cd.sock", vec![SockType::Seqpacket]));
        let w = only(&f, "collector-socket-wrong-type");
        assert_eq!(w.verdict, Some(Verdict::SocketUnreachable));
        assert!(w.cause.contains("SOCK_STREAM"), "{}", w.cause);
    }

    #[test]
    fn core_socket_patterns() {
        let f = diagnose(&socket_pattern("@/run/cd.sock", "/run/cd.sock", vec![SockType::Stream]));
        assert!(!predicts_loss(&f), "{f:#?}");
        let f = diagnose(&socket_pattern("@@/run/cd.sock", "/run/cd.sock", vec![]));
        let u = only(&f, "collector-socket-unreachable");
        assert_eq!((u.severity, u.verdict), (Severity::Loss, Some(Verdict::SocketUnreachable)));
        // Too old a kernel for the mode.
        let old = HostFacts { kernel_release: "6.16.2".into(), ..socket_pattern("@@/run/cd.sock", "/run/cd.sock", vec![SockType::Stream]) };
        assert_eq!(losses(&diagnose(&old)), vec!["core-pattern-mode-unsupported"]);
        let old = HostFacts { kernel_release: "6.16.2".into(), ..socket_pattern("@/run/cd.sock", "/run/cd.sock", vec![SockType::Stream]) };
        assert!(!predicts_loss(&diagnose(&old)));
        let old = HostFacts {
            kernel_release: "6.12.0".into(),
            core_modes: None,
            ..socket_pattern("@/run/cd.sock", "/run/cd.sock", vec![SockType::Stream])
        };
        assert_eq!(losses(&diagnose(&old)), vec!["core-pattern-mode-unsupported"]);
    }

    #[test]
    fn pipe_limit_zero_races() {
        let f = diagnose(&HostFacts { core_pipe_limit: Some(0), ..systemd(SocketFile::Socket, vec![SockType::Seqpacket], "systemd") });
        let z = only(&f, "pipe-limit-zero");
        assert_eq!(z.severity, Severity::Warn);
        assert!(z.cause.contains("/proc"), "{}", z.cause);
        assert!(!ids(&f).contains(&"pipe-limit"));
        // Not about file patterns.
        assert!(!ids(&diagnose(&HostFacts { core_pipe_limit: Some(0), ..healthy() })).contains(&"pipe-limit-zero"));
    }

    #[test]
    fn suid_dumpable_settings() {
        let unsafe_ = HostFacts { core_pattern: "core.%p".into(), core_dir: None, suid_dumpable: Some(2), ..healthy() };
        let f = diagnose(&unsafe_);
        let u = only(&f, "suid-dumpable-unsafe-pattern");
        assert_eq!(u.severity, Severity::Loss);
        assert!(u.cause.contains("Unsafe core_pattern used with fs.suid_dumpable=2"), "{}", u.cause);
        assert!(ids(&f).contains(&"core-pattern-relative"));
        // The same relative pattern is only unsafe with 2.
        let f = diagnose(&HostFacts { suid_dumpable: Some(0), ..unsafe_.clone() });
        assert!(!predicts_loss(&f), "{f:#?}");
        assert_eq!(only(&f, "suid-dumpable-off").verdict, Some(Verdict::NotDumpable));
        assert_eq!(only(&diagnose(&HostFacts { suid_dumpable: Some(1), ..healthy() }), "suid-dumpable-debug").severity, Severity::Warn);
        // 2 with a pipe or an absolute path is what the kernel wants.
        assert!(!ids(&diagnose(&healthy())).iter().any(|i| i.starts_with("suid-")));
    }

    #[test]
    fn rlimit_core_of_pid1_and_target() {
        let host = HostFacts { pid1: process(1, "init", Some(0)), ..healthy() };
        let f = diagnose(&host);
        let r = only(&f, "rlimit-core-zero");
        assert_eq!((r.severity, r.pid, r.verdict), (Severity::Warn, Some(1), Some(Verdict::RlimitCore)));
        assert!(!predicts_loss(&f));
        let f = diagnose(&HostFacts { target: Some(process(4242, "app", Some(0))), ..host.clone() });
        let t: Vec<&Finding> = f.iter().filter(|f| f.id == "rlimit-core-zero").collect();
        assert_eq!(t.len(), 2);
        assert!(t.iter().any(|f| f.pid == Some(4242) && f.severity == Severity::Loss));
        // --pid 1: PID 1 is the target, once, and a loss.
        let f = diagnose(&HostFacts { target: Some(process(1, "init", Some(0))), ..host.clone() });
        let r = only(&f, "rlimit-core-zero");
        assert_eq!((r.pid, r.severity), (Some(1), Severity::Loss));
        // Pipes ignore the limit, except 1, and %c hands it to the helper.
        let sd = systemd(SocketFile::Socket, vec![SockType::Seqpacket], "systemd");
        let f = diagnose(&HostFacts { target: Some(process(7, "app", Some(0))), ..sd.clone() });
        assert!(!ids(&f).iter().any(|i| i.starts_with("rlimit")), "{f:#?}");
        let f = diagnose(&HostFacts { target: Some(process(7, "app", Some(1))), ..sd.clone() });
        assert_eq!(only(&f, "rlimit-core-one").verdict, Some(Verdict::RlimitCore));
        let with_c = HostFacts {
            core_pattern: "|/lib/systemd/systemd-coredump %P %u %g %s %t %c %h".into(),
            target: Some(process(7, "app", Some(0))),
            ..sd
        };
        let r = only(&diagnose(&with_c), "rlimit-core-zero");
        assert_eq!((r.severity, r.verdict), (Severity::Loss, None));
        // Unlimited, or unknown: nothing to say.
        let f = diagnose(&HostFacts { target: Some(process(7, "app", None)), ..healthy() });
        assert!(!ids(&f).iter().any(|i| i.starts_with("rlimit")));
    }

    #[test]
    fn target_not_dumpable() {
        let mut p = process(99, "daemon", None);
        p.euid = Some(65534);
        p.dumpable = Some(false);
        let f = diagnose(&HostFacts { target: Some(p.clone()), suid_dumpable: Some(0), ..healthy() });
        let d = only(&f, "pid-not-dumpable");
        assert_eq!((d.severity, d.pid, d.verdict), (Severity::Loss, Some(99), Some(Verdict::NotDumpable)));
        let f = diagnose(&HostFacts { target: Some(p.clone()), suid_dumpable: Some(2), ..healthy() });
        assert_eq!(only(&f, "pid-not-dumpable").severity, Severity::Warn);
        p.dumpable = Some(true);
        assert!(!ids(&diagnose(&HostFacts { target: Some(p), ..healthy() })).contains(&"pid-not-dumpable"));
    }

    #[test]
    fn core_dir_states() {
        let with = |state: DirState, world: bool| HostFacts {
            core_dir: Some(DirFacts { path: "/var/crash".into(), state, world_writable: world }),
            ..healthy()
        };
        assert_eq!(losses(&diagnose(&with(DirState::Missing, false))), vec!["core-dir-missing"]);
        assert_eq!(losses(&diagnose(&with(DirState::NotADirectory, false))), vec!["core-dir-missing"]);
        assert_eq!(losses(&diagnose(&with(DirState::NotWritable("Read-only file system".into()), false))), vec!["core-dir-not-writable"]);
        assert_eq!(only(&diagnose(&with(DirState::Writable, false)), "core-dir-restricted").severity, Severity::Warn);
    }

    #[test]
    fn cgroup_layouts() {
        let with = |layout: CgroupLayout| HostFacts { cgroup: CgroupFacts { layout, ..healthy().cgroup }, ..healthy() };
        assert_eq!(only(&diagnose(&with(CgroupLayout::Hybrid)), "cgroup-hybrid").severity, Severity::Warn);
        assert_eq!(only(&diagnose(&with(CgroupLayout::V1)), "cgroup-v1").severity, Severity::Warn);
        assert_eq!(only(&diagnose(&with(CgroupLayout::None)), "cgroup-none").severity, Severity::Info);
        assert_eq!(only(&diagnose(&with(CgroupLayout::V2)), "cgroup-v2").severity, Severity::Info);
    }

    #[test]
    fn hook_fallback_ladder() {
        let with = |fentry: Probe, kprobe_pmu: bool| HostFacts {
            hooks: HookFacts { fentry, kprobe_pmu, ..healthy().hooks },
            ..healthy()
        };
        let eperm = || Probe::Refused("attaching a test program failed: EPERM (Operation not permitted)".into());
        assert!(only(&diagnose(&with(Probe::Attachable, false)), "dump-hook-fentry").cause.contains("fentry/vfs_coredump"));
        assert!(only(&diagnose(&with(eperm(), true)), "dump-hook-kprobe").cause.contains("kprobe/vfs_coredump"));
        let inferred = only(&diagnose(&with(eperm(), false)), "dump-hook-inferred");
        assert!(inferred.cause.contains("EPERM") && inferred.cause.contains("no kprobe PMU"), "{}", inferred.cause);
        let unknown = only(&diagnose(&with(Probe::Unknown("unknown until crashtrace starts".into()), false)), "dump-hook-unknown");
        assert!(unknown.cause.contains("unknown until it starts"), "{}", unknown.cause);
        let no_fn = HostFacts { hooks: HookFacts { dump_function: None, ..healthy().hooks }, ..healthy() };
        assert!(only(&diagnose(&no_fn), "dump-hook-inferred").cause.contains("neither vfs_coredump nor do_coredump"));
    }

    #[test]
    fn hooks_crashtrace_needs() {
        let no_btf = HostFacts { hooks: HookFacts { btf: false, ..healthy().hooks }, ..healthy() };
        assert_eq!(only(&diagnose(&no_btf), "btf-missing").severity, Severity::Warn);
        let tp = HostFacts { hooks: HookFacts { tp_btf: Probe::Refused("EPERM".into()), ..healthy().hooks }, ..healthy() };
        let t = only(&diagnose(&tp), "tp-btf-unavailable");
        assert_eq!(t.severity, Severity::Warn);
        // The tracepoint is named from the hook table.
        assert!(t.cause.starts_with("tp_btf on signal_generate does not attach (EPERM)"), "{}", t.cause);
        let no_tracefs = HostFacts { hooks: HookFacts { tracefs: Tracefs::Unavailable, connect_tracepoints: None, ..healthy().hooks }, ..healthy() };
        let t = only(&diagnose(&no_tracefs), "tracefs-unavailable");
        assert!(t.cause.contains("cannot attach the syscalls connect tracepoints"), "{}", t.cause);
        assert_eq!(t.fix, "use a kernel with CONFIG_TRACING and CONFIG_FTRACE_SYSCALLS");
        let no_connect = HostFacts { hooks: HookFacts { connect_tracepoints: Some(false), ..healthy().hooks }, ..healthy() };
        let c = only(&diagnose(&no_connect), "connect-tracepoints-missing");
        assert!(c.cause.starts_with("/sys/kernel/tracing/events/syscalls has no sys_enter_connect/sys_exit_connect: "), "{}", c.cause);
        assert_eq!(c.fix, "use a kernel with CONFIG_FTRACE_SYSCALLS");
        // Not mounted but mountable is fine: crashtrace mounts it.
        let mountable = HostFacts { hooks: HookFacts { tracefs: Tracefs::Mountable, connect_tracepoints: None, ..healthy().hooks }, ..healthy() };
        assert_eq!(diagnose(&mountable).iter().filter(|f| f.severity != Severity::Info).count(), 0);
    }

    #[test]
    fn losses_come_first() {
        let host = HostFacts {
            cgroup: CgroupFacts { layout: CgroupLayout::Hybrid, ..healthy().cgroup },
            ..systemd(SocketFile::Missing, vec![], "process_api")
        };
        let sev: Vec<Severity> = diagnose(&host).iter().map(|f| f.severity).collect();
        let mut sorted = sev.clone();
        sorted.sort();
        assert_eq!(sev, sorted);
        assert_eq!(sev.first(), Some(&Severity::Loss));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("6.1.0-28-cloud-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.10"), Some((5, 10)));
        assert_eq!(kernel_version("weird"), None);
        assert!((6, 9) < (6, 16));
    }
}

//! What `crashtrace doctor` finds out about the host: the core-dump sysctls,
//! the collector the pattern leads to (helper binary, unix socket listener),
//! the target directory of a file pattern, RLIMIT_CORE and dumpability of
//! PID 1 and of `--pid`, the cgroup layout, and which of crashtrace's hooks
//! the kernel offers. [`HostFacts::gather`] is the only part that touches
//! /proc, /sys and the filesystem; the parsers it uses are pure and tested
//! here. It changes nothing on the host: tracefs is not mounted, and the
//! hook probes detach as soon as they have attached.
//!
//! Paths are checked as this process sees them. The kernel starts a pipe
//! helper, and connects to a core socket, from the initial mount and network
//! namespaces, so run doctor there (on the host, not in a container).

use std::{os::unix::fs::MetadataExt, path::Path};

use anyhow::Context;
use serde::Serialize;

use super::bpf_probe::{AttachTargets, ProbeResult};
use crate::{
    core_pattern::{self, parse_core_pattern, DumpMode, SYSTEMD_COREDUMP_SOCKET},
    hooks::{self, Rung},
    layout::{self, KernelBtf},
    loader,
};

pub const SUID_DUMPABLE: &str = "/proc/sys/fs/suid_dumpable";
pub const CORE_MODES: &str = "/proc/sys/kernel/core_modes";
pub const KPROBE_PMU: &str = hooks::KPROBE_PMU;

/// Everything the diagnosis is made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// e.g. "6.18.44-fc-v669".
    pub kernel_release: String,
    pub core_pattern: String,
    pub core_pipe_limit: Option<u32>,
    pub suid_dumpable: Option<u32>,
    /// The modes listed in /proc/sys/kernel/core_modes, on kernels that have it.
    pub core_modes: Option<Vec<String>>,
    /// For a pipe pattern: the helper binary.
    pub helper: Option<HelperFacts>,
    /// The unix socket a core has to pass through: the one the kernel
    /// connects to for an `@`/`@@` pattern, or the one systemd-coredump
    /// hands cores to.
    pub socket: Option<SocketFacts>,
    /// PID 1's coredump socket (/run/systemd/coredump), whatever the
    /// pattern: looked at when systemd is PID 1 or the socket file exists,
    /// so a pattern swapped away from systemd-coredump (as systemd's own
    /// crash handler does) does not hide a PID 1 that stopped serving it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid1_socket: Option<SocketFacts>,
    /// For an absolute file pattern whose directory has no `%` specifier.
    pub core_dir: Option<DirFacts>,
    pub pid1: ProcessFacts,
    /// The process named with `--pid`.
    pub target: Option<ProcessFacts>,
    pub cgroup: CgroupFacts,
    pub hooks: HookFacts,
    /// systemd-coredump's settings (coredump.conf and drop-ins), when the
    /// pattern pipes to it.
    pub coredump_conf: Option<crate::coredump_conf::CoredumpConf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HelperFacts {
    pub path: String,
    pub state: PathState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathState {
    Executable,
    NotExecutable,
    Missing,
}

/// Who connects to the socket, which decides the socket type it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketClient {
    /// The kernel itself, for an `@` or `@@` pattern: it connects with
    /// SOCK_STREAM.
    Kernel,
    /// systemd-coredump, which connects to /run/systemd/coredump with
    /// SOCK_SEQPACKET.
    SystemdCoredump,
}

impl SocketClient {
    pub fn socket_type(self) -> SockType {
        match self {
            SocketClient::Kernel => SockType::Stream,
            SocketClient::SystemdCoredump => SockType::Seqpacket,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SockType {
    Stream,
    Dgram,
    Seqpacket,
    Other(u32),
}

impl SockType {
    fn from_proc(hex: u32) -> SockType {
        match hex {
            1 => SockType::Stream,
            2 => SockType::Dgram,
            5 => SockType::Seqpacket,
            n => SockType::Other(n),
        }
    }

    pub fn name(self) -> String {
        match self {
            SockType::Stream => "SOCK_STREAM".into(),
            SockType::Dgram => "SOCK_DGRAM".into(),
            SockType::Seqpacket => "SOCK_SEQPACKET".into(),
            SockType::Other(n) => format!("socket type {n}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SocketFacts {
    pub path: String,
    pub client: SocketClient,
    /// What is at the path in the filesystem.
    pub file: SocketFile,
    /// The types of the listening sockets bound to the path (from
    /// /proc/net/unix); empty when nothing listens.
    pub listeners: Vec<SockType>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketFile {
    Socket,
    NotASocket,
    Missing,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirFacts {
    pub path: String,
    #[serde(flatten)]
    pub state: DirState,
    /// Writable by every user (mode o+w), so any crasher can create its core there.
    pub world_writable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum DirState {
    /// Root can create files there (read-only mounts ruled out).
    Writable,
    NotWritable(String),
    NotADirectory,
    Missing,
}

/// RLIMIT_CORE in bytes; `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CoreLimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessFacts {
    pub pid: u32,
    pub comm: Option<String>,
    /// Unreadable without the right to ptrace the process.
    pub exe: Option<String>,
    pub euid: Option<u32>,
    /// `None` when /proc/PID/limits could not be read.
    pub rlimit_core: Option<CoreLimit>,
    /// Whether the kernel would dump it as its owner. Read from the owner of
    /// /proc/PID/status, which the kernel sets to root for a process that is
    /// not dumpable; `None` when that cannot tell (a process running as root).
    pub dumpable: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupLayout {
    /// Only cgroup2 is mounted (the unified hierarchy).
    V2,
    /// Only cgroup v1 hierarchies are mounted.
    V1,
    /// v1 controller hierarchies plus a cgroup2 mount (systemd's "hybrid").
    Hybrid,
    /// No cgroup filesystem is mounted.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupFacts {
    pub layout: CgroupLayout,
    /// Where cgroup2 is mounted.
    pub v2_mount: Option<String>,
    /// Mount points of the v1 hierarchies.
    pub v1_mounts: Vec<String>,
    /// This process's cgroup2 path ("0::" in /proc/self/cgroup).
    pub v2_path: Option<String>,
}

/// Whether a hook could be attached, tried for real where that is cheap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum Probe {
    Attachable,
    Refused(String),
    /// Not tried: the text says why.
    Unknown(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "path", rename_all = "kebab-case")]
pub enum Tracefs {
    Mounted(String),
    /// Not mounted, but the kernel has tracefs: crashtrace mounts it at start.
    Mountable,
    Unavailable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookFacts {
    /// /sys/kernel/btf/vmlinux is there and parses.
    pub btf: bool,
    /// The kernel's dump entry: `vfs_coredump` (6.17+) or `do_coredump`.
    pub dump_function: Option<String>,
    /// tp_btf on the first required tracepoint of the hook table
    /// (signal_generate), which crashtrace cannot run without.
    pub tp_btf: Probe,
    /// fentry on the dump entry.
    pub fentry: Probe,
    pub kprobe_pmu: bool,
    pub tracefs: Tracefs,
    /// The syscalls connect tracepoints ([`hooks::CONNECT_FIELDS`]'s
    /// events), where tracefs is readable.
    pub connect_tracepoints: Option<bool>,
}

impl HostFacts {
    /// Reads the host. Fails only on what makes a diagnosis impossible: an
    /// unreadable core_pattern, or a `--pid` that does not exist.
    pub fn gather(target_pid: Option<u32>) -> anyhow::Result<HostFacts> {
        let core_pattern = std::fs::read_to_string(core_pattern::CORE_PATTERN)
            .with_context(|| format!("cannot read {}; is /proc mounted?", core_pattern::CORE_PATTERN))?
            .trim_end_matches('\n')
            .to_string();
        let target = match target_pid {
            Some(pid) => Some(process_facts(pid).with_context(|| {
                format!("no process with pid {pid} to check; give the pid of a running process (see `ps -p {pid}`)")
            })?),
            None => None,
        };
        let mode = parse_core_pattern(&core_pattern);
        let helper = match &mode {
            DumpMode::Pipe { helper, .. } if !helper.is_empty() => {
                Some(HelperFacts { path: helper.clone(), state: path_state(helper) })
            }
            _ => None,
        };
        let socket = match &mode {
            DumpMode::Socket { path, .. } => Some(socket_facts(path, SocketClient::Kernel)),
            DumpMode::Pipe { helper, .. } if is_systemd_coredump(helper) => {
                Some(socket_facts(SYSTEMD_COREDUMP_SOCKET, SocketClient::SystemdCoredump))
            }
            _ => None,
        };
        let pid1 = process_facts(1).unwrap_or(ProcessFacts {
            pid: 1,
            comm: None,
            exe: None,
            euid: None,
            rlimit_core: None,
            dumpable: None,
        });
        let pid1_is_systemd = pid1.comm.as_deref().is_some_and(|c| c.contains("systemd"))
            || pid1.exe.as_deref().is_some_and(|e| e.contains("systemd"));
        let pid1_socket = (pid1_is_systemd || Path::new(SYSTEMD_COREDUMP_SOCKET).exists())
            .then(|| socket_facts(SYSTEMD_COREDUMP_SOCKET, SocketClient::SystemdCoredump));
        let core_dir = match &mode {
            DumpMode::File { path } => file_pattern_dir(path).map(|dir| dir_facts(&dir)),
            _ => None,
        };
        Ok(HostFacts {
            kernel_release: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            core_pipe_limit: read_trimmed(core_pattern::CORE_PIPE_LIMIT).and_then(|s| s.parse().ok()),
            suid_dumpable: read_trimmed(SUID_DUMPABLE).and_then(|s| s.parse().ok()),
            core_modes: read_trimmed(CORE_MODES).map(|s| s.split_whitespace().map(str::to_string).collect()),
            core_pattern,
            helper,
            socket,
            core_dir,
            pid1_socket,
            // PID 1 always exists; a failure to read it leaves its facts unknown.
            pid1,
            target,
            cgroup: cgroup_facts(),
            hooks: hook_facts(),
            coredump_conf: match &mode {
                DumpMode::Pipe { helper, .. } if is_systemd_coredump(helper) => Some(crate::coredump_conf::CoredumpConf::read()),
                _ => None,
            },
        })
    }
}

/// Whether a pipe helper is systemd's collector, which needs PID 1's socket.
pub fn is_systemd_coredump(helper: &str) -> bool {
    Path::new(helper).file_name().is_some_and(|n| n == "systemd-coredump")
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn path_state(path: &str) -> PathState {
    if core_pattern::is_executable(path) {
        PathState::Executable
    } else if Path::new(path).exists() {
        PathState::NotExecutable
    } else {
        PathState::Missing
    }
}

fn socket_facts(path: &str, client: SocketClient) -> SocketFacts {
    use std::os::unix::fs::FileTypeExt;
    let file = match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => SocketFile::Socket,
        Ok(_) => SocketFile::NotASocket,
        Err(_) => SocketFile::Missing,
    };
    let listeners = std::fs::read_to_string("/proc/net/unix").map(|t| unix_listeners(&t, path)).unwrap_or_default();
    SocketFacts { path: path.to_string(), client, file, listeners }
}

/// The types of the listening sockets bound to `path`, from /proc/net/unix:
/// `Num RefCount Protocol Flags Type St Inode Path`, where a listening
/// socket has __SO_ACCEPTCON (0x10000) in Flags.
/// https://elixir.bootlin.com/linux/v6.18/source/net/unix/af_unix.c (unix_seq_show)
pub fn unix_listeners(proc_net_unix: &str, path: &str) -> Vec<SockType> {
    const SO_ACCEPTCON: u32 = 1 << 16;
    let mut types = Vec::new();
    for line in proc_net_unix.lines().skip(1) {
        let mut rest = line;
        let mut fields = Vec::with_capacity(7);
        for _ in 0..7 {
            rest = rest.trim_start();
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        // The path is the rest of the line after one space; it may hold spaces.
        let bound = rest.strip_prefix(' ').unwrap_or(rest);
        if bound != path || fields.len() < 7 {
            continue;
        }
        let (Ok(flags), Ok(kind)) = (u32::from_str_radix(fields[3], 16), u32::from_str_radix(fields[4], 16)) else {
            continue;
        };
        if flags & SO_ACCEPTCON != 0 {
            types.push(SockType::from_proc(kind));
        }
    }
    types
}

/// The directory an absolute file pattern writes into, when it is fixed:
/// `None` for a relative pattern or one whose directory has `%` specifiers.
pub fn file_pattern_dir(pattern: &str) -> Option<String> {
    if !pattern.starts_with('/') {
        return None;
    }
    let dir = Path::new(pattern).parent()?.to_str()?;
    if dir.contains('%') {
        return None;
    }
    Some(if dir.is_empty() { "/".to_string() } else { dir.to_string() })
}

fn dir_facts(dir: &str) -> DirFacts {
    use std::os::unix::fs::PermissionsExt;
    let (state, world_writable) = match std::fs::metadata(dir) {
        Err(_) => (DirState::Missing, false),
        Ok(m) if !m.is_dir() => (DirState::NotADirectory, false),
        Ok(m) => (root_writable(dir), m.permissions().mode() & 0o002 != 0),
    };
    DirFacts { path: dir.to_string(), state, world_writable }
}

/// Whether root can create files in `dir`. A read-only mount stops
/// everyone; beyond that, access(2) answers for root only when doctor runs
/// as root, and other users are covered by `world_writable`.
fn root_writable(dir: &str) -> DirState {
    let Ok(c) = std::ffi::CString::new(dir) else {
        return DirState::NotWritable("the path has a NUL byte".into());
    };
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(2) with a NUL-terminated path and a valid out-struct.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut vfs) };
    if rc == 0 && vfs.f_flag & libc::ST_RDONLY != 0 {
        return DirState::NotWritable("read-only file system".into());
    }
    // SAFETY: geteuid cannot fail; access(2) with a NUL-terminated path.
    if unsafe { libc::geteuid() } == 0 && unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return DirState::NotWritable(std::io::Error::last_os_error().to_string());
    }
    DirState::Writable
}

/// One process's facts. Fails when the process does not exist.
fn process_facts(pid: u32) -> std::io::Result<ProcessFacts> {
    let proc_dir = format!("/proc/{pid}");
    let limits = std::fs::read_to_string(format!("{proc_dir}/limits"))?;
    let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap_or_default();
    let euid = status_euid(&status);
    // Not the directory itself: /proc/PID always belongs to the euid.
    let owner = std::fs::metadata(format!("{proc_dir}/status")).map(|m| m.uid()).ok();
    Ok(ProcessFacts {
        pid,
        comm: read_trimmed(&format!("{proc_dir}/comm")),
        exe: std::fs::read_link(format!("{proc_dir}/exe")).ok().map(|p| p.display().to_string()),
        euid,
        rlimit_core: core_limit(&limits),
        dumpable: dumpable_from_owner(euid, owner),
    })
}

/// RLIMIT_CORE from /proc/PID/limits ("Max core file size  0  unlimited  bytes").
pub fn core_limit(limits: &str) -> Option<CoreLimit> {
    let line = limits.lines().find_map(|l| l.strip_prefix("Max core file size"))?;
    let mut words = line.split_whitespace();
    let parse = |w: Option<&str>| -> Option<Option<u64>> {
        match w? {
            "unlimited" => Some(None),
            n => n.parse().ok().map(Some),
        }
    };
    Some(CoreLimit { soft: parse(words.next())?, hard: parse(words.next())? })
}

/// The effective uid from /proc/PID/status ("Uid: real effective saved fs").
pub fn status_euid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// The kernel makes the files under /proc/PID owned by the task's euid only
/// while it is dumpable (SUID_DUMP_USER); otherwise by root. So for a process
/// not running as root, a root-owned /proc/PID/status means "not dumpable as
/// its owner" (dumpable 0, or 2 with suid_dumpable=2).
/// https://elixir.bootlin.com/linux/v6.18/source/fs/proc/base.c (task_dump_owner)
pub fn dumpable_from_owner(euid: Option<u32>, owner: Option<u32>) -> Option<bool> {
    match (euid?, owner?) {
        (0, _) => None,
        (_, owner) => Some(owner != 0),
    }
}

fn cgroup_facts() -> CgroupFacts {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    cgroup_layout(&mounts, &own)
}

/// The cgroup layout from /proc/mounts, with /proc/self/cgroup for this
/// process's place in the cgroup2 tree.
pub fn cgroup_layout(mounts: &str, self_cgroup: &str) -> CgroupFacts {
    let mut v2_mount = None;
    let mut v1_mounts = Vec::new();
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(dir), Some(fstype)) = (f.next(), f.next(), f.next()) else { continue };
        match fstype {
            "cgroup2" if v2_mount.is_none() => v2_mount = Some(dir.to_string()),
            "cgroup" => v1_mounts.push(dir.to_string()),
            _ => {}
        }
    }
    let layout = match (v2_mount.is_some(), v1_mounts.is_empty()) {
        (true, true) => CgroupLayout::V2,
        (true, false) => CgroupLayout::Hybrid,
        (false, false) => CgroupLayout::V1,
        (false, true) => CgroupLayout::None,
    };
    let v2_path = self_cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string);
    CgroupFacts { layout, v2_mount, v1_mounts, v2_path }
}

fn hook_facts() -> HookFacts {
    let btf_path = Path::new(layout::VMLINUX_BTF);
    let kbtf = KernelBtf::open(btf_path).ok();
    let dump_function =
        kbtf.as_ref().and_then(|b| hooks::DUMP_ENTRY.iter().find(|f| b.has_function(f))).map(|f| f.to_string());
    let tracefs = tracefs_state();
    let connect_tracepoints = match &tracefs {
        Tracefs::Mounted(dir) => tracefs_events_present(Path::new(dir), &hooks::CONNECT_FIELDS.events()),
        _ => None,
    };
    let (tp_btf, fentry) = probe_tracing(kbtf.is_some(), dump_function.as_deref());
    HookFacts {
        btf: kbtf.is_some(),
        dump_function,
        tp_btf,
        fentry,
        kprobe_pmu: Path::new(KPROBE_PMU).exists(),
        tracefs,
        connect_tracepoints,
    }
}

/// Whether every (system, event) is under `<tracefs>/events`; `None` when a
/// system's directory is unreadable (without root), so it is not known.
fn tracefs_events_present(tracefs: &Path, events: &[(&str, &str)]) -> Option<bool> {
    let mut all = true;
    for (system, event) in events {
        let dir = tracefs.join("events").join(system);
        match std::fs::read_dir(&dir) {
            Ok(_) => all &= dir.join(event).is_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => all = false,
            Err(_) => return None,
        }
    }
    Some(all)
}

fn tracefs_state() -> Tracefs {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events").is_dir() {
            return Tracefs::Mounted(dir.to_string());
        }
    }
    // A tracefs that root cannot list yet still shows as mounted.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if let Some(dir) = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2] == "tracefs").then(|| f[1].to_string())
    }) {
        return Tracefs::Mounted(dir);
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems.lines().any(|l| l.split_whitespace().last() == Some("tracefs")) {
        Tracefs::Mountable
    } else {
        Tracefs::Unavailable
    }
}

/// Tries tp_btf on the hook table's first required tracepoint, and fentry
/// on the dump entry (the ladder's top rung), with a do-nothing program,
/// when this process may load BPF programs.
fn probe_tracing(btf: bool, dump_function: Option<&str>) -> (Probe, Probe) {
    const UNTRIED: &str = "unknown until crashtrace starts: trying it needs root (or CAP_BPF and CAP_PERFMON)";
    if !btf {
        let no = Probe::Refused(format!("no kernel BTF at {}", layout::VMLINUX_BTF));
        return (no.clone(), no);
    }
    if loader::check_privileges().is_err() {
        return (Probe::Unknown(UNTRIED.into()), Probe::Unknown(UNTRIED.into()));
    }
    let targets = match AttachTargets::open(Path::new(layout::VMLINUX_BTF)) {
        Ok(t) => t,
        Err(e) => return (Probe::Unknown(e.clone()), Probe::Unknown(e)),
    };
    let convert = |r: ProbeResult| match r {
        ProbeResult::Attached => Probe::Attachable,
        ProbeResult::Refused(why) => Probe::Refused(why),
    };
    let tp_btf = match hooks::required_tp_btf().next() {
        Some(tp) => convert(targets.tp_btf(tp)),
        None => Probe::Unknown("the hook table has no required tp_btf hook".into()),
    };
    let functions = hooks::rung(Rung::Fentry).and_then(|h| h.attach.functions()).unwrap_or(hooks::DUMP_ENTRY);
    let fentry = match dump_function {
        Some(f) => convert(targets.fentry(f)),
        None => Probe::Refused(format!("the kernel's BTF has {}", hooks::neither(functions))),
    };
    (tp_btf, fentry)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_NET_UNIX: &str = "\
Num       RefCount Protocol Flags    Type St Inode Path
00000000aaeaede6: 00000003 00000000 00000000 0001 03  1056
000000006c48077e: 00000002 00000000 00010000 0001 01 45510 /tmp/dr/cd.sock
0000000095d63f11: 00000002 00000000 00010000 0005 01 83482 /run/systemd/coredump
00000000deadbeef: 00000002 00000000 00000000 0005 01 83483 /run/bound-only
00000000feedface: 00000002 00000000 00010000 0001 01 83484 /tmp/with space/s.sock
";

    #[test]
    fn listeners_by_path_and_type() {
        assert_eq!(unix_listeners(PROC_NET_UNIX, "/tmp/dr/cd.sock"), vec![SockType::Stream]);
        assert_eq!(unix_listeners(PROC_NET_UNIX, "/run/systemd/coredump"), vec![SockType::Seqpacket]);
        // Bound but not listening: connect() would be refused.
        assert!(unix_listeners(PROC_NET_UNIX, "/run/bound-only").is_empty());
        assert!(unix_listeners(PROC_NET_UNIX, "/nowhere").is_empty());
        assert_eq!(unix_listeners(PROC_NET_UNIX, "/tmp/with space/s.sock"), vec![SockType::Stream]);
        // A prefix of a bound path is not that path.
        assert!(unix_listeners(PROC_NET_UNIX, "/tmp/dr/cd").is_empty());
        assert!(unix_listeners("garbage\nline without fields\n", "/x").is_empty());
    }

    #[test]
    fn core_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max file size             unlimited            unlimited            bytes     \n\
                      Max core file size        0                    unlimited            bytes     \n";
        assert_eq!(core_limit(limits), Some(CoreLimit { soft: Some(0), hard: None }));
        let limits = "Max core file size        1                    1                    bytes\n";
        assert_eq!(core_limit(limits), Some(CoreLimit { soft: Some(1), hard: Some(1) }));
        assert_eq!(core_limit("Max core file size  lots  unlimited bytes\n"), None);
        assert_eq!(core_limit(""), None);
    }

    #[test]
    fn euid_and_dumpability() {
        assert_eq!(status_euid("Name:\tx\nUid:\t1000\t65534\t1000\t1000\n"), Some(65534));
        assert_eq!(status_euid("Name:\tx\n"), None);
        assert_eq!(dumpable_from_owner(Some(65534), Some(65534)), Some(true));
        assert_eq!(dumpable_from_owner(Some(65534), Some(0)), Some(false));
        assert_eq!(dumpable_from_owner(Some(0), Some(0)), None);
        assert_eq!(dumpable_from_owner(None, Some(0)), None);
    }

    #[test]
    fn cgroup_layouts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        let facts = cgroup_layout(hybrid, "4:memory:/x\n0::/\n");
        assert_eq!(facts.layout, CgroupLayout::Hybrid);
        assert_eq!(facts.v2_mount.as_deref(), Some("/sys/fs/cgroup/unified"));
        assert_eq!(facts.v1_mounts, vec!["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory"]);
        assert_eq!(facts.v2_path.as_deref(), Some("/"));
        let v2 = cgroup_layout("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n", "0::/user.slice\n");
        assert_eq!(v2.layout, CgroupLayout::V2);
        assert_eq!(v2.v2_path.as_deref(), Some("/user.slice"));
        assert_eq!(cgroup_layout("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n", "").layout, CgroupLayout::V1);
        assert_eq!(cgroup_layout("proc /proc proc rw 0 0\n", "").layout, CgroupLayout::None);
    }

    #[test]
    fn file_pattern_dirs() {
        assert_eq!(file_pattern_dir("/var/crash/core.%e.%p").as_deref(), Some("/var/crash"));
        assert_eq!(file_pattern_dir("/core").as_deref(), Some("/"));
        assert_eq!(file_pattern_dir("/var/crash/%u/core").as_deref(), None);
        assert_eq!(file_pattern_dir("core").as_deref(), None);
    }

    #[test]
    fn tracefs_events_from_the_hook_table() {
        let dir = std::env::temp_dir().join(format!("crashtrace-doctor-tracefs-{}", std::process::id()));
        let events = hooks::CONNECT_FIELDS.events();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(tracefs_events_present(&dir, &events), Some(false), "no events dir at all");
        std::fs::create_dir_all(dir.join("events/syscalls/sys_enter_connect")).unwrap();
        assert_eq!(tracefs_events_present(&dir, &events), Some(false), "only the enter side");
        std::fs::create_dir_all(dir.join("events/syscalls/sys_exit_connect")).unwrap();
        assert_eq!(tracefs_events_present(&dir, &events), Some(true));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn systemd_coredump_helper() {
        assert!(is_systemd_coredump("/lib/systemd/systemd-coredump"));
        assert!(is_systemd_coredump("/usr/lib/systemd/systemd-coredump"));
        assert!(!is_systemd_coredump("/usr/share/apport/apport"));
        assert!(!is_systemd_coredump("/tmp/systemd-coredump-wrapper"));
    }
}

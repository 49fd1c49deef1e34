//! The events user space works with: decoded from the wire, written to JSON
//! Lines, and read back by `crashtrace report`. One schema for all of them.

use serde::{Deserialize, Serialize};

/// Bumped whenever a record changes incompatibly. Every JSON record has it.
pub const SCHEMA_VERSION: u32 = 1;

/// A process as an event saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
}

impl std::fmt::Display for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid == self.tgid {
            write!(f, "{}[{}]", self.comm, self.tgid)
        } else {
            write!(f, "{}[{}/{}]", self.comm, self.tgid, self.pid)
        }
    }
}

/// One event: who was running (`task`) and what happened (`body`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds, from the kernel.
    pub ts_ns: u64,
    pub cpu: u32,
    pub task: Proc,
    pub cgroup_id: u64,
    #[serde(flatten)]
    pub body: Body,
}

/// Where the dump start was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DumpHook {
    Fentry,
    Kprobe,
    Tracepoint,
    /// No direct hook: derived from signal_deliver (SIG_DFL + core signal).
    Inferred,
}

impl DumpHook {
    pub fn as_str(self) -> &'static str {
        match self {
            DumpHook::Fentry => "fentry",
            DumpHook::Kprobe => "kprobe",
            DumpHook::Tracepoint => "tracepoint",
            DumpHook::Inferred => "inferred",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Body {
    /// A signal generated for `target`; the event's task is the sender.
    SignalGenerate {
        sig: i32,
        code: i32,
        errno: i32,
        group: i32,
        /// 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 info lost.
        result: i32,
        /// "full", "noinfo" or "priv".
        info: String,
        target: Proc,
        target_ppid: u32,
        /// The target's sa_handler for this signal when it was generated.
        target_handler: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        fault_addr: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        si_pid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        si_uid: Option<u32>,
    },
    /// The receiving thread acts on a signal; the event's task is the receiver.
    SignalDeliver {
        sig: i32,
        code: i32,
        errno: i32,
        info: String,
        sa_handler: u64,
        sa_flags: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        fault_addr: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        si_pid: Option<u32>,
        /// None: unlimited.
        rlimit_core: Option<u64>,
        ppid: u32,
        /// None: unknown (no mm).
        dumpable: Option<u32>,
        /// The receiver's pid namespace inode and its pid inside it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pidns: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        ns_pid: Option<u32>,
    },
    /// A direct hook saw the kernel's core-dump entry.
    DumpStart {
        sig: i32,
        code: i32,
        hook: DumpHook,
        rlimit_core: Option<u64>,
        dumpable: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        fault_addr: Option<u64>,
    },
    /// The kernel exec'd a core_pattern pipe helper (the event's task).
    HelperExec { filename: String, argv: Vec<String>, args_truncated: bool },
    /// A helper's connect(): `ret` is 0 or -errno.
    HelperConnect {
        family: u16,
        path: String,
        ret: i32,
    },
    /// A followed process exited.
    ProcessExit {
        exit_code: i32,
        ppid: u32,
        roles: Vec<String>,
    },
    /// A watched process forked.
    ProcessFork { child: u32 },
    /// The core-dump settings in force (read from /proc by user space).
    CoreSettings(crate::core_pattern::CoreSettings),
    /// A write to a core-dump sysctl; the event's task is the writer.
    SysctlWrite { name: String, old_value: String, new_value: String },
    /// A cgroup changed; the event's task is the one acting.
    Cgroup {
        /// "mkdir", "rmdir", "release" or "populated".
        op: String,
        /// Hierarchy id; 0 is cgroup v2.
        root: u32,
        id: u64,
        level: u32,
        /// For "populated": 1 populated, 0 empty.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        populated: Option<bool>,
        path: String,
        /// Zombies still charged to the group when it was emptied or removed
        /// (cgroup v2 keeps a zombie in its group until it is reaped). Filled
        /// in by user space from /proc.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        zombies: Vec<Proc>,
    },
    /// The stack of the thread acting on a fatal signal (the event's task),
    /// taken in the kernel at delivery. Raw addresses; see [`crate::stack`].
    StackCapture {
        sig: i32,
        /// User frames: the IP, then return addresses (frame-pointer walk).
        user: Vec<u64>,
        kernel: Vec<u64>,
        /// The user frames as build-id + file offset, where the kernel
        /// could read the build-id; same order as `user`.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        build_ids: Vec<Option<crate::stack::BuildIdRef>>,
        /// User registers when the thread entered the kernel.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        ip: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        sp: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        bp: Option<u64>,
        /// Why a walk gave nothing: the errno `bpf_get_stack` returned.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        user_errno: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        kernel_errno: Option<i32>,
    },
    /// The top of that thread's user stack (`--stack-copy`), from `sp` up,
    /// for unwinding from `.eh_frame`. `data` is hex in JSON.
    StackCopy {
        sp: u64,
        #[serde(with = "crate::stack::hex_bytes")]
        data: Vec<u8>,
    },
}

impl Body {
    pub fn name(&self) -> &'static str {
        match self {
            Body::SignalGenerate { .. } => "signal-generate",
            Body::SignalDeliver { .. } => "signal-deliver",
            Body::DumpStart { .. } => "dump-start",
            Body::HelperExec { .. } => "helper-exec",
            Body::HelperConnect { .. } => "helper-connect",
            Body::ProcessExit { .. } => "process-exit",
            Body::ProcessFork { .. } => "process-fork",
            Body::CoreSettings(_) => "core-settings",
            Body::SysctlWrite { .. } => "sysctl-write",
            Body::Cgroup { .. } => "cgroup",
            Body::StackCapture { .. } => "stack-capture",
            Body::StackCopy { .. } => "stack-copy",
        }
    }
}

/// Signal names for display.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        16 => "SIGSTKFLT",
        17 => "SIGCHLD",
        18 => "SIGCONT",
        19 => "SIGSTOP",
        20 => "SIGTSTP",
        21 => "SIGTTIN",
        22 => "SIGTTOU",
        23 => "SIGURG",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        26 => "SIGVTALRM",
        27 => "SIGPROF",
        28 => "SIGWINCH",
        29 => "SIGIO",
        30 => "SIGPWR",
        31 => "SIGSYS",
        n if (34..=64).contains(&n) => return format!("SIGRT{}", n - 34),
        n => return format!("SIG{n}"),
    };
    name.to_string()
}

/// Names for errno values crashtrace shows (connect results mostly).
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        11 => "EAGAIN",
        13 => "EACCES",
        22 => "EINVAL",
        32 => "EPIPE",
        91 => "EPROTOTYPE",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        115 => "EINPROGRESS",
        n => return format!("errno {n}"),
    };
    name.to_string()
}

/// A human description of si_code for the signal.
pub fn code_name(sig: i32, code: i32) -> String {
    use tracer_common::signal::*;
    let s = match (sig, code) {
        (_, SI_USER) => "SI_USER",
        (_, SI_KERNEL) => "SI_KERNEL",
        (_, SI_QUEUE) => "SI_QUEUE",
        (_, SI_TKILL) => "SI_TKILL",
        (SIGSEGV, 1) => "SEGV_MAPERR",
        (SIGSEGV, 2) => "SEGV_ACCERR",
        (SIGBUS, 1) => "BUS_ADRALN",
        (SIGBUS, 2) => "BUS_ADRERR",
        (SIGILL, 1) => "ILL_ILLOPC",
        (SIGILL, 2) => "ILL_ILLOPN",
        (SIGFPE, 1) => "FPE_INTDIV",
        (SIGFPE, 2) => "FPE_INTOVF",
        (SIGTRAP, 1) => "TRAP_BRKPT",
        (SIGCHLD, CLD_EXITED) => "CLD_EXITED",
        (SIGCHLD, CLD_KILLED) => "CLD_KILLED",
        (SIGCHLD, CLD_DUMPED) => "CLD_DUMPED",
        (_, c) => return format!("code {c}"),
    };
    s.to_string()
}

//! The header every event starts with.

/// Length of a kernel `comm` (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// What follows the header. The numbers are part of the wire format.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    SignalGenerate = 1,
    SignalDeliver = 2,
    DumpStart = 3,
    HelperExec = 4,
    HelperConnect = 5,
    ProcessExit = 6,
    ProcessFork = 7,
    SysctlWrite = 8,
    Cgroup = 9,
    StackCapture = 10,
    StackCopy = 11,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::SignalGenerate,
        EventKind::SignalDeliver,
        EventKind::DumpStart,
        EventKind::HelperExec,
        EventKind::HelperConnect,
        EventKind::ProcessExit,
        EventKind::ProcessFork,
        EventKind::SysctlWrite,
        EventKind::Cgroup,
        EventKind::StackCapture,
        EventKind::StackCopy,
    ];

    pub fn from_u32(v: u32) -> Option<EventKind> {
        Some(match v {
            1 => EventKind::SignalGenerate,
            2 => EventKind::SignalDeliver,
            3 => EventKind::DumpStart,
            4 => EventKind::HelperExec,
            5 => EventKind::HelperConnect,
            6 => EventKind::ProcessExit,
            7 => EventKind::ProcessFork,
            8 => EventKind::SysctlWrite,
            9 => EventKind::Cgroup,
            10 => EventKind::StackCapture,
            11 => EventKind::StackCopy,
            _ => return None,
        })
    }

    /// Size in bytes of the whole event of this kind, header included.
    /// Every kind is matched explicitly so a new kind cannot be forgotten.
    pub const fn wire_size(self) -> usize {
        use core::mem::size_of;
        match self {
            EventKind::SignalGenerate => size_of::<crate::signal::SignalGenerate>(),
            EventKind::SignalDeliver => size_of::<crate::signal::SignalDeliver>(),
            EventKind::DumpStart => size_of::<crate::coredump::DumpStart>(),
            EventKind::HelperExec => size_of::<crate::collector::HelperExec>(),
            EventKind::HelperConnect => size_of::<crate::collector::HelperConnect>(),
            EventKind::ProcessExit => size_of::<crate::process::ProcessExit>(),
            EventKind::ProcessFork => size_of::<crate::process::ProcessFork>(),
            EventKind::SysctlWrite => size_of::<crate::sysctl::SysctlWrite>(),
            EventKind::Cgroup => size_of::<crate::cgroup::CgroupEvent>(),
            EventKind::StackCapture => size_of::<crate::stack::StackCapture>(),
            EventKind::StackCopy => size_of::<crate::stack::StackCopy>(),
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            EventKind::SignalGenerate => "signal-generate",
            EventKind::SignalDeliver => "signal-deliver",
            EventKind::DumpStart => "dump-start",
            EventKind::HelperExec => "helper-exec",
            EventKind::HelperConnect => "helper-connect",
            EventKind::ProcessExit => "process-exit",
            EventKind::ProcessFork => "process-fork",
            EventKind::SysctlWrite => "sysctl-write",
            EventKind::Cgroup => "cgroup",
            EventKind::StackCapture => "stack-capture",
            EventKind::StackCopy => "stack-copy",
        }
    }
}

/// Common header. The decoder relies on it sitting at offset 0 of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] as u32.
    pub kind: u32,
    pub cpu: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, nanoseconds.
    pub ts_ns: u64,
    /// The current task's thread id, as the kernel calls it `pid`.
    pub pid: u32,
    /// The current task's thread-group id (the process id users see).
    pub tgid: u32,
    /// cgroup v2 id of the current task (the directory's inode number).
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

impl EventHeader {
    pub const fn zeroed() -> Self {
        EventHeader { kind: 0, cpu: 0, ts_ns: 0, pid: 0, tgid: 0, cgroup_id: 0, comm: [0; COMM_LEN] }
    }
}

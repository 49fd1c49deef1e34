//! The header every event starts with.

use bytemuck::{Pod, Zeroable};

/// Length of a kernel `comm` (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

crate::named_enum! {
    /// What follows the header. The numbers are part of the wire format; the
    /// names are the `event` tag of the JSON records.
    #[repr(u32)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum EventKind {
        SignalGenerate = 1 => "signal-generate",
        SignalDeliver = 2 => "signal-deliver",
        DumpStart = 3 => "dump-start",
        HelperExec = 4 => "helper-exec",
        HelperConnect = 5 => "helper-connect",
        ProcessExit = 6 => "process-exit",
        ProcessFork = 7 => "process-fork",
        SysctlWrite = 8 => "sysctl-write",
        Cgroup = 9 => "cgroup",
        StackCapture = 10 => "stack-capture",
        StackCopy = 11 => "stack-copy",
    }
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| *k as u32 == v)
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
}

/// Common header. The decoder relies on it sitting at offset 0 of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
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

const _: () = assert!(core::mem::size_of::<EventHeader>() == 48);

impl EventHeader {
    pub const fn zeroed() -> Self {
        EventHeader { kind: 0, cpu: 0, ts_ns: 0, pid: 0, tgid: 0, cgroup_id: 0, comm: [0; COMM_LEN] }
    }
}

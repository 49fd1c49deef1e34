//! Process life events for the tasks crashtrace follows.

use bytemuck::{Pod, Zeroable};

use crate::header::EventHeader;

/// Why a process was followed to its exit; a bit set.
pub const ROLE_CRASHER: u32 = 1;
pub const ROLE_HELPER: u32 = 2;
pub const ROLE_WATCHED: u32 = 4;
pub const ROLE_WATCHED_CHILD: u32 = 8;

/// The thread-group leader of a followed process exits (`sched_process_exit`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ProcessExit {
    pub header: EventHeader,
    /// `task->exit_code`: signal | 0x80 when a core was dumped, or status << 8.
    pub exit_code: i32,
    /// `ROLE_*` bits.
    pub role: u32,
    pub ppid: u32,
    pub _pad0: u32,
}

const _: () = assert!(core::mem::size_of::<ProcessExit>() == 64);

/// A followed process forks (`sched_process_fork`); header is the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ProcessFork {
    pub header: EventHeader,
    pub child_pid: u32,
    pub child_tgid: u32,
}

const _: () = assert!(core::mem::size_of::<ProcessFork>() == 56);

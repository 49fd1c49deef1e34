//! The core_pattern pipe helper (the collector): its exec and its connects.

use bytemuck::{Pod, Zeroable};

use crate::header::EventHeader;

pub const HELPER_PATH_MAX: usize = 128;
/// Bytes of the helper's NUL-separated argv kept; longer lists are cut.
pub const HELPER_ARGS_MAX: usize = 384;
/// sizeof(sockaddr_un.sun_path).
pub const SUN_PATH_MAX: usize = 108;

pub const AF_UNIX: u16 = 1;

/// A usermode helper exec'd by the kernel for a piped core dump: parent
/// kthreadd and RLIMIT_CORE == 1, as `umh_pipe_setup` leaves it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct HelperExec {
    pub header: EventHeader,
    pub ppid: u32,
    /// Valid bytes in `args`.
    pub args_len: u32,
    pub rlimit_core: u64,
    pub filename: [u8; HELPER_PATH_MAX],
    /// argv, NUL-separated, as in /proc/PID/cmdline.
    pub args: [u8; HELPER_ARGS_MAX],
}

const _: () = assert!(core::mem::size_of::<HelperExec>() == 576);

/// A helper's connect() and its result.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct HelperConnect {
    pub header: EventHeader,
    /// The syscall's return: 0 or -errno.
    pub ret: i32,
    pub family: u16,
    pub _pad0: u16,
    /// sun_path for AF_UNIX (a leading NUL means an abstract socket).
    pub path: [u8; SUN_PATH_MAX],
    pub _pad1: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<HelperConnect>() == 168);

//! The core dump's start, seen by a direct hook on the kernel's dump entry.

use bytemuck::{Pod, Zeroable};

use crate::header::EventHeader;

/// Which hook saw the dump start. Inference (no direct hook) produces no
/// `DumpStart` event: user space derives the start from `SignalDeliver`.
pub const HOOK_FENTRY: u32 = 1;
pub const HOOK_KPROBE: u32 = 2;
pub const HOOK_TRACEPOINT: u32 = 3;

/// Entry of `do_coredump` / `vfs_coredump` (6.17+) in the dumping thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct DumpStart {
    pub header: EventHeader,
    pub sig: i32,
    pub code: i32,
    /// One of the `HOOK_*` values.
    pub hook: u32,
    /// The dumper's mm dumpable mode, or `signal::DUMPABLE_UNKNOWN`.
    pub dumpable: u32,
    pub rlimit_core: u64,
    pub fault_addr: u64,
}

const _: () = assert!(core::mem::size_of::<DumpStart>() == 80);

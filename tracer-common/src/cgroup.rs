//! cgroup life events (`cgroup:cgroup_mkdir`, `cgroup_rmdir`,
//! `cgroup_release`, `cgroup_notify_populated`), v1 and v2.

use bytemuck::{Pod, Zeroable};

use crate::header::EventHeader;

pub const CGROUP_PATH_MAX: usize = 256;

pub const CGROUP_MKDIR: u32 = 1;
pub const CGROUP_RMDIR: u32 = 2;
pub const CGROUP_RELEASE: u32 = 3;
pub const CGROUP_POPULATED: u32 = 4;

/// Longest `--cgroup` prefix the kernel-side filter compares.
pub const CGROUP_FILTER_MAX: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct CgroupEvent {
    /// The header's task is the one acting (the rmdir caller, say).
    pub header: EventHeader,
    /// One of the `CGROUP_*` operations.
    pub op: u32,
    /// Hierarchy id (0 for the v2 hierarchy).
    pub root: u32,
    /// The cgroup's id: on v2 the directory's inode number.
    pub id: u64,
    pub level: u32,
    /// For `CGROUP_POPULATED`: 1 populated, 0 empty.
    pub val: i32,
    /// Path inside its hierarchy, NUL-terminated.
    pub path: [u8; CGROUP_PATH_MAX],
}

const _: () = assert!(core::mem::size_of::<CgroupEvent>() == 328);

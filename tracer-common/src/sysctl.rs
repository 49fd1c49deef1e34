//! Writes to the core-dump sysctls (kernel/core_pattern and friends), seen by
//! a cgroup/sysctl program on the cgroup v2 root: who wrote what, and what
//! it replaced.

use bytemuck::{Pod, Zeroable};

use crate::header::EventHeader;

/// CORENAME_MAX_SIZE: the kernel's limit for core_pattern.
pub const SYSCTL_VALUE_MAX: usize = 128;
pub const SYSCTL_NAME_MAX: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SysctlWrite {
    pub header: EventHeader,
    /// e.g. "kernel/core_pattern", NUL-terminated.
    pub name: [u8; SYSCTL_NAME_MAX],
    pub old_value: [u8; SYSCTL_VALUE_MAX],
    pub new_value: [u8; SYSCTL_VALUE_MAX],
}

const _: () = assert!(core::mem::size_of::<SysctlWrite>() == 336);

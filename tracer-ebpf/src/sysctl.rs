//! Writes to the core-dump sysctls, from a cgroup/sysctl program attached to
//! the cgroup v2 root (so every task on the host passes through it). It never
//! denies anything: it reports and returns "allow".
//! https://elixir.bootlin.com/linux/v6.18/source/kernel/bpf/cgroup.c (__cgroup_bpf_run_filter_sysctl)

use aya_ebpf::{
    helpers::generated::{bpf_sysctl_get_current_value, bpf_sysctl_get_name, bpf_sysctl_get_new_value},
    macros::cgroup_sysctl,
    programs::SysctlContext,
};
use tracer_common::{
    sysctl::{SysctlWrite, SYSCTL_NAME_MAX, SYSCTL_VALUE_MAX},
    EventKind,
};

use crate::emit::reserve;

const ALLOW: i32 = 1;

#[cgroup_sysctl]
pub fn sysctl_write(ctx: SysctlContext) -> i32 {
    let write = unsafe { (*ctx.sysctl).write };
    if write != 0 {
        try_sysctl_write(&ctx);
    }
    ALLOW
}

/// The sysctls that decide where cores go: kernel/core_* and fs/suid_dumpable.
#[inline(always)]
fn interesting(name: &[u8; SYSCTL_NAME_MAX]) -> bool {
    let core = name[0] == b'k'
        && name[1] == b'e'
        && name[2] == b'r'
        && name[3] == b'n'
        && name[4] == b'e'
        && name[5] == b'l'
        && name[6] == b'/'
        && name[7] == b'c'
        && name[8] == b'o'
        && name[9] == b'r'
        && name[10] == b'e'
        && name[11] == b'_';
    let suid = name[0] == b'f' && name[1] == b's' && name[2] == b'/' && name[3] == b's' && name[4] == b'u' && name[5] == b'i';
    core || suid
}

/// Zeroes `len` bytes (a multiple of 8) with word stores: a byte-wise memset
/// of ring-buffer memory is more than the verifier will walk here.
#[inline(always)]
unsafe fn zero(ptr: *mut u8, words: usize) {
    let p = ptr as *mut u64;
    let mut i = 0;
    while i < words {
        unsafe { core::ptr::write_volatile(p.add(i), 0) };
        i += 1;
    }
}

#[inline(always)]
fn try_sysctl_write(ctx: &SysctlContext) {
    let Some(mut entry) = reserve::<SysctlWrite>(EventKind::SysctlWrite) else {
        return;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        zero((*event).name.as_mut_ptr(), SYSCTL_NAME_MAX / 8);
        let n = bpf_sysctl_get_name(ctx.sysctl, (*event).name.as_mut_ptr() as *mut _, SYSCTL_NAME_MAX as _, 0);
        if n < 0 || !interesting(&(*event).name) {
            entry.discard(0);
            return;
        }
        zero((*event).old_value.as_mut_ptr(), SYSCTL_VALUE_MAX / 8);
        zero((*event).new_value.as_mut_ptr(), SYSCTL_VALUE_MAX / 8);
        // Both return -E2BIG with a truncated, NUL-terminated copy when the
        // value is longer than the buffer; a shortened value is still useful.
        bpf_sysctl_get_current_value(ctx.sysctl, (*event).old_value.as_mut_ptr() as *mut _, SYSCTL_VALUE_MAX as _);
        bpf_sysctl_get_new_value(ctx.sysctl, (*event).new_value.as_mut_ptr() as *mut _, SYSCTL_VALUE_MAX as _);
    }
    entry.submit(0);
}

//! cgroup life: mkdir, rmdir, release and populated changes, v1 and v2.
//! A host that churns cgroups is filtered in the kernel by `--cgroup PATH`.
//!
//! TP_PROTO(struct cgroup *cgrp, const char *path) (+ int val for populated)
//! https://elixir.bootlin.com/linux/v6.18/source/include/trace/events/cgroup.h

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{
    cgroup::{CgroupEvent, CGROUP_FILTER_MAX, CGROUP_MKDIR, CGROUP_PATH_MAX, CGROUP_POPULATED, CGROUP_RELEASE, CGROUP_RMDIR},
    EventKind,
};

use crate::{
    emit::reserve,
    maps::{offsets_valid, CGROUP_SCRATCH, SETTINGS},
    off,
    task::read,
};

#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: BtfTracePointContext) -> i32 {
    cgroup_event(&ctx, CGROUP_MKDIR, 0);
    0
}

#[btf_tracepoint(function = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: BtfTracePointContext) -> i32 {
    cgroup_event(&ctx, CGROUP_RMDIR, 0);
    0
}

#[btf_tracepoint(function = "cgroup_release")]
pub fn cgroup_release(ctx: BtfTracePointContext) -> i32 {
    cgroup_event(&ctx, CGROUP_RELEASE, 0);
    0
}

#[btf_tracepoint(function = "cgroup_notify_populated")]
pub fn cgroup_populated(ctx: BtfTracePointContext) -> i32 {
    let val: i32 = ctx.arg(2);
    cgroup_event(&ctx, CGROUP_POPULATED, val);
    0
}

#[inline(always)]
fn cgroup_event(ctx: &BtfTracePointContext, op: u32, val: i32) {
    if !offsets_valid() {
        return;
    }
    let cgrp: *const u8 = ctx.arg(0);
    let path: *const u8 = ctx.arg(1);
    let Some(scratch) = CGROUP_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let scratch = unsafe { &mut *scratch };
    if unsafe { bpf_probe_read_kernel_str_bytes(path, scratch) }.is_err() {
        scratch[0] = 0;
    }
    if !under_prefix(scratch) {
        return;
    }
    let Some(mut entry) = reserve::<CgroupEvent>(EventKind::Cgroup) else {
        return;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        if bpf_probe_read_kernel_buf(scratch.as_ptr(), &mut (*event).path).is_err() {
            (*event).path = [0; CGROUP_PATH_MAX];
        }
        let root = read::<*const u8>(cgrp, off!(cgroup_root)).unwrap_or(core::ptr::null());
        let kn = read::<*const u8>(cgrp, off!(cgroup_kn)).unwrap_or(core::ptr::null());
        (*event).op = op;
        (*event).root = read::<i32>(root, off!(cgroup_root_hierarchy_id)).unwrap_or(-1) as u32;
        (*event).id = read::<u64>(kn, off!(kernfs_node_id)).unwrap_or(0);
        (*event).level = read::<i32>(cgrp, off!(cgroup_level)).unwrap_or(0) as u32;
        (*event).val = val;
    }
    entry.submit(0);
}

/// Whether `path` starts with the `--cgroup` prefix (always, without one).
#[inline(always)]
fn under_prefix(path: &[u8; CGROUP_PATH_MAX]) -> bool {
    let len = unsafe { core::ptr::read_volatile(&SETTINGS.cgroup_prefix_len) } as usize;
    if len == 0 {
        return true;
    }
    let mut i = 0;
    while i < CGROUP_FILTER_MAX {
        if i < len {
            let want = unsafe { core::ptr::read_volatile(&SETTINGS.cgroup_prefix[i]) };
            if path[i] != want {
                return false;
            }
        }
        i += 1;
    }
    true
}

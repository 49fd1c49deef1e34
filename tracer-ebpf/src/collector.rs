//! The core_pattern pipe helper: recognised at exec, followed through its
//! connect() calls to its exit.
//!
//! The kernel starts the helper from a kworker with CLONE_PARENT, so its
//! parent is kthreadd (pid 2), and `umh_pipe_setup` sets its RLIMIT_CORE to 1
//! before exec. Both together mark a core-dump helper.
//! https://elixir.bootlin.com/linux/v6.18/source/fs/coredump.c (umh_coredump_setup)

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, generated as bpf_gen},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use tracer_common::{
    collector::{HelperConnect, HelperExec, HELPER_ARGS_MAX, SUN_PATH_MAX},
    EventKind,
};

use crate::{
    emit::{current_tgid, reserve},
    maps::{is_helper, offsets_valid, ConnectArgs, CONNECTS, HELPERS},
    off,
    task::{read, Task},
};

const KTHREADD_PID: u32 = 2;
const HELPER_RLIMIT_CORE: u64 = 1;

// TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
#[btf_tracepoint(function = "sched_process_exec")]
pub fn helper_exec(ctx: BtfTracePointContext) -> i32 {
    if offsets_valid() {
        try_helper_exec(&ctx);
    }
    0
}

#[inline(always)]
fn try_helper_exec(ctx: &BtfTracePointContext) {
    let task = Task(ctx.arg::<*const u8>(0));
    let bprm: *const u8 = ctx.arg(2);
    if task.ppid() != KTHREADD_PID || task.rlimit_core() != HELPER_RLIMIT_CORE {
        return;
    }
    let tgid = current_tgid();
    let _ = HELPERS.insert(&tgid, &1, 0);

    let Some(mut entry) = reserve::<HelperExec>(EventKind::HelperExec) else {
        return;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).ppid = KTHREADD_PID;
        (*event).rlimit_core = HELPER_RLIMIT_CORE;
        (*event).filename = [0; tracer_common::collector::HELPER_PATH_MAX];
        if let Some(filename) = read::<*const u8>(bprm, off!(bprm_filename)) {
            let _ = bpf_probe_read_kernel_str_bytes(filename, &mut (*event).filename);
        }
        let (start, end) = task.arg_area();
        let mut len = end.wrapping_sub(start) as usize;
        if len > HELPER_ARGS_MAX {
            len = HELPER_ARGS_MAX;
        }
        // The verifier wants the size visibly bounded by the buffer.
        len &= HELPER_ARGS_MAX * 2 - 1;
        let mut copied = 0u32;
        if start != 0 && len > 0 && len <= HELPER_ARGS_MAX {
            let dst = (*event).args.as_mut_ptr() as *mut core::ffi::c_void;
            if bpf_gen::bpf_probe_read_user(dst, len as u32, start as *const core::ffi::c_void) == 0 {
                copied = len as u32;
            }
        }
        (*event).args_len = copied;
    }
    entry.submit(0);
}

// syscalls:sys_enter_connect: (int fd, struct sockaddr *uservaddr, int addrlen).
// Field offsets come from the tracepoint's format file, via OFFSETS.
#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn helper_connect_enter(ctx: TracePointContext) -> u32 {
    if offsets_valid() && is_helper(current_tgid()) {
        try_connect_enter(&ctx);
    }
    0
}

#[inline(always)]
fn try_connect_enter(ctx: &TracePointContext) {
    let Ok(addr) = (unsafe { ctx.read_at::<u64>(off!(connect_enter_uservaddr) as usize) }) else {
        return;
    };
    let addr = addr as *const u8;
    let family = unsafe { bpf_probe_read_user(addr as *const u16) }.unwrap_or(0);
    let mut args = ConnectArgs { family, _pad0: 0, path: [0; SUN_PATH_MAX] };
    unsafe {
        let _ = bpf_gen::bpf_probe_read_user(
            args.path.as_mut_ptr() as *mut core::ffi::c_void,
            SUN_PATH_MAX as u32,
            addr.add(2) as *const core::ffi::c_void,
        );
    }
    let _ = CONNECTS.insert(&bpf_get_current_pid_tgid(), &args, 0);
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn helper_connect_exit(ctx: TracePointContext) -> u32 {
    if offsets_valid() && is_helper(current_tgid()) {
        try_connect_exit(&ctx);
    }
    0
}

#[inline(always)]
fn try_connect_exit(ctx: &TracePointContext) {
    let key = bpf_get_current_pid_tgid();
    let Some(args) = (unsafe { CONNECTS.get(&key) }) else {
        return;
    };
    let args = *args;
    let _ = CONNECTS.remove(&key);
    let ret = unsafe { ctx.read_at::<i64>(off!(connect_exit_ret) as usize) }.unwrap_or(0);
    let Some(mut entry) = reserve::<HelperConnect>(EventKind::HelperConnect) else {
        return;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).ret = ret as i32;
        (*event).family = args.family;
        (*event)._pad0 = 0;
        (*event).path = args.path;
        (*event)._pad1 = [0; 4];
    }
    entry.submit(0);
}

//! Direct hooks on the kernel's core-dump entry: fentry, else kprobe, on
//! `vfs_coredump` (6.17+) or `do_coredump` (earlier). User space picks the
//! function and the kind at start-up; where neither attaches, it infers the
//! dump from `signal_deliver` instead and these programs stay unloaded.
//!
//! void vfs_coredump(const kernel_siginfo_t *siginfo)
//! https://elixir.bootlin.com/linux/v6.18/source/fs/coredump.c

use aya_ebpf::{
    macros::{fentry, kprobe, tracepoint},
    programs::{FEntryContext, ProbeContext, TracePointContext},
};
use tracer_common::{
    coredump::{DumpStart, HOOK_FENTRY, HOOK_KPROBE, HOOK_TRACEPOINT},
    EventKind,
};

use crate::{
    emit::{current_tgid, reserve},
    maps::{mark_crashing, offsets_valid},
    task::{current, read},
};

#[fentry(function = "vfs_coredump")]
pub fn coredump_fentry(ctx: FEntryContext) -> i32 {
    if offsets_valid() {
        dump_started(ctx.arg::<*const u8>(0), HOOK_FENTRY);
    }
    0
}

#[kprobe]
pub fn coredump_kprobe(ctx: ProbeContext) -> u32 {
    if offsets_valid() {
        if let Some(siginfo) = ctx.arg::<*const u8>(0) {
            dump_started(siginfo, HOOK_KPROBE);
        }
    }
    0
}

// coredump:coredump (7.3+): `int sig; char comm[16]`, fired in the dumping
// task. It carries no siginfo, so the fault address comes from signal_deliver.
#[tracepoint(category = "coredump", name = "coredump")]
pub fn coredump_tracepoint(ctx: TracePointContext) -> u32 {
    if offsets_valid() {
        let sig = unsafe { ctx.read_at::<i32>(crate::off!(coredump_tp_sig) as usize) }.unwrap_or(0);
        dump_started_sig(sig, 0, 0, HOOK_TRACEPOINT);
    }
    0
}

#[inline(always)]
fn dump_started(siginfo: *const u8, hook: u32) {
    let sig = unsafe { read::<i32>(siginfo, 0) }.unwrap_or(0);
    let code = unsafe { read::<i32>(siginfo, 8) }.unwrap_or(0);
    let fault_addr = if code > 0 { unsafe { read::<u64>(siginfo, 16) }.unwrap_or(0) } else { 0 };
    dump_started_sig(sig, code, fault_addr, hook);
}

#[inline(always)]
fn dump_started_sig(sig: i32, code: i32, fault_addr: u64, hook: u32) {
    let tgid = current_tgid();
    mark_crashing(tgid, sig);
    let Some(mut entry) = reserve::<DumpStart>(EventKind::DumpStart) else {
        return;
    };
    let task = current();
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).sig = sig;
        (*event).code = code;
        (*event).hook = hook;
        (*event).dumpable = task.dumpable();
        (*event).rlimit_core = task.rlimit_core();
        (*event).fault_addr = fault_addr;
    }
    entry.submit(0);
}

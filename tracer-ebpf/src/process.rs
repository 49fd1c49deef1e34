//! Process life for the tasks crashtrace follows: crashers, helpers and
//! watched pids. Everything else on the host is dropped at the first check.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::{
    process::{ProcessExit, ProcessFork, ROLE_CRASHER, ROLE_HELPER, ROLE_WATCHED, ROLE_WATCHED_CHILD},
    EventKind,
};

use crate::{
    emit::reserve,
    maps::{is_helper, is_watched, offsets_valid, unmark_crashing, HELPERS},
    task::Task,
};

/// kthreadd, the parent of every core_pattern helper.
const KTHREADD_PID: u32 = 2;

// TP_PROTO(struct task_struct *p), plus `bool group_dead` since 6.16; only
// the task is read. Fires in do_exit() after exit_code is set.
// https://elixir.bootlin.com/linux/v6.18/source/kernel/exit.c
#[btf_tracepoint(function = "sched_process_exit")]
pub fn process_exit(ctx: BtfTracePointContext) -> i32 {
    if offsets_valid() {
        try_process_exit(&ctx);
    }
    0
}

#[inline(always)]
fn try_process_exit(ctx: &BtfTracePointContext) {
    let task = Task(ctx.arg::<*const u8>(0));
    let tgid = task.tgid();
    // One event per process: the thread-group leader's exit.
    if task.pid() != tgid {
        return;
    }
    let ppid = task.ppid();
    let mut role = 0;
    if unmark_crashing(tgid) {
        role |= ROLE_CRASHER;
    }
    // Only kthreadd's children can be core_pattern helpers (see
    // collector.rs); the map is not asked for the rest of the host's exits.
    if ppid == KTHREADD_PID && is_helper(tgid) {
        role |= ROLE_HELPER;
        let _ = HELPERS.remove(&tgid);
    }
    if is_watched(tgid) {
        role |= ROLE_WATCHED;
    }
    if is_watched(ppid) {
        role |= ROLE_WATCHED_CHILD;
    }
    if role == 0 {
        return;
    }
    let Some(mut entry) = reserve::<ProcessExit>(EventKind::ProcessExit) else {
        return;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).exit_code = task.exit_code();
        (*event).role = role;
        (*event).ppid = ppid;
        (*event)._pad0 = 0;
    }
    entry.submit(0);
}

// TP_PROTO(struct task_struct *parent, struct task_struct *child)
#[btf_tracepoint(function = "sched_process_fork")]
pub fn process_fork(ctx: BtfTracePointContext) -> i32 {
    if offsets_valid() {
        try_process_fork(&ctx);
    }
    0
}

#[inline(always)]
fn try_process_fork(ctx: &BtfTracePointContext) {
    let parent = Task(ctx.arg::<*const u8>(0));
    let child = Task(ctx.arg::<*const u8>(1));
    if !is_watched(parent.tgid()) {
        return;
    }
    let child_pid = child.pid();
    let child_tgid = child.tgid();
    // Threads are not children; only new processes count.
    if child_pid != child_tgid {
        return;
    }
    let Some(mut entry) = reserve::<ProcessFork>(EventKind::ProcessFork) else {
        return;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).child_pid = child_pid;
        (*event).child_tgid = child_tgid;
    }
    entry.submit(0);
}

//! `signal:signal_generate` and `signal:signal_deliver`, as BTF tracepoints.
//!
//! Both fire for every signal on the host, so they filter first and copy
//! second. What passes: core-dumping signals, signals whose default action
//! kills a target that has no handler, SIGCHLD reporting a killed or dumped
//! child, SIGPIPE to a task that is dumping, and anything to or from a
//! watched pid. A ping-pong of caught SIGUSR1s never reaches the ring buffer,
//! and neither does a fatal-by-default signal the target blocks (a daemon
//! taking SIGTERM through signalfd or sigwait): it is read, not acted on, and
//! if it is unblocked and acted on later, signal_deliver sees it then.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use tracer_common::{
    config::{SETTING_NAIVE_ALL_SIGNALS, SETTING_WATCHING},
    signal::{
        is_core_signal, is_fault_signal, is_terminating_signal, SignalDeliver, SignalGenerate, CLD_DUMPED, CLD_KILLED,
        GENERATE_TARGET_BLOCKED, INFO_FULL, INFO_NOINFO, INFO_PRIV, SIGCHLD, SIGKILL, SIGPIPE, SIG_DFL,
    },
    EventKind,
};

use crate::{
    emit::{current_tgid, reserve},
    maps::{is_crashing, is_watched, mark_crashing, offsets_valid, settings_flags},
    task::{current, read, Task},
};

/// What the siginfo said, read through its UAPI layout (stable):
/// si_signo 0, si_errno 4, si_code 8, then the union at 16.
/// https://elixir.bootlin.com/linux/v6.18/source/include/uapi/asm-generic/siginfo.h
struct Info {
    kind: u32,
    errno: i32,
    code: i32,
    fault_addr: u64,
    si_pid: u32,
    si_uid: u32,
}

#[inline(always)]
fn read_info(sig: i32, info: *const u8) -> Info {
    let raw = info as usize;
    if raw <= 1 {
        // SEND_SIG_NOINFO (0) and SEND_SIG_PRIV (1) are markers, not pointers.
        return Info {
            kind: if raw == 0 { INFO_NOINFO } else { INFO_PRIV },
            errno: 0,
            code: 0,
            fault_addr: 0,
            si_pid: 0,
            si_uid: 0,
        };
    }
    let errno = unsafe { read::<i32>(info, 4) }.unwrap_or(0);
    let code = unsafe { read::<i32>(info, 8) }.unwrap_or(0);
    let mut out = Info { kind: INFO_FULL, errno, code, fault_addr: 0, si_pid: 0, si_uid: 0 };
    if code > 0 && is_fault_signal(sig) {
        out.fault_addr = unsafe { read::<u64>(info, 16) }.unwrap_or(0);
    } else if code <= 0 || sig == SIGCHLD {
        // kill/tgkill/sigqueue, and SIGCHLD, carry the sender's pid and uid.
        out.si_pid = unsafe { read::<u32>(info, 16) }.unwrap_or(0);
        out.si_uid = unsafe { read::<u32>(info, 20) }.unwrap_or(0);
    }
    out
}

/// si_code, 0 for the SEND_SIG_NOINFO/SEND_SIG_PRIV markers.
#[inline(always)]
fn si_code(info: *const u8) -> i32 {
    if (info as usize) <= 1 {
        return 0;
    }
    unsafe { read::<i32>(info, 8) }.unwrap_or(0)
}

// TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int result)
// https://elixir.bootlin.com/linux/v6.18/source/include/trace/events/signal.h
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> i32 {
    if offsets_valid() {
        try_signal_generate(&ctx);
    }
    0
}

#[inline(always)]
fn try_signal_generate(ctx: &BtfTracePointContext) {
    let sig: i32 = ctx.arg(0);
    let info: *const u8 = ctx.arg(1);
    let target = Task(ctx.arg::<*const u8>(2));
    let group: i32 = ctx.arg(3);
    let result: i32 = ctx.arg(4);
    if target.is_null() {
        return;
    }
    // Every signal on the host passes here, most of them caught or
    // ignored: the target's tgid is read only when a decision needs it.
    let watching = settings_flags() & SETTING_WATCHING != 0;
    let involves_watched = || watching && (is_watched(target.tgid()) || is_watched(current_tgid()));

    let mut handler = SIG_DFL;
    let naive = settings_flags() & SETTING_NAIVE_ALL_SIGNALS != 0;
    let wanted = if naive {
        true
    } else if is_core_signal(sig) {
        handler = target.handler(sig);
        true
    } else if sig == SIGCHLD {
        let code = si_code(info);
        code == CLD_KILLED || code == CLD_DUMPED || involves_watched()
    } else if sig == SIGPIPE && is_crashing(target.tgid()) {
        // The dump's reader went away: the dumper gets SIGPIPE mid-dump.
        true
    } else if is_terminating_signal(sig) {
        handler = if sig == SIGKILL { SIG_DFL } else { target.handler(sig) };
        handler == SIG_DFL || involves_watched()
    } else {
        involves_watched()
    };
    if !wanted {
        return;
    }
    let target_tgid = target.tgid();

    // Blocked, and not forced by a fault (force_sig_info_to_task unblocks a
    // fault's signal before generating it; the si_code check is a second
    // guard): not a crash candidate. Dropped here, before ring-buffer space
    // is taken, unless a watched pid is involved or the baseline wants all.
    let mut flags = 0;
    if (is_core_signal(sig) || is_terminating_signal(sig))
        && sig != SIGKILL
        && !(is_fault_signal(sig) && si_code(info) > 0)
        && target.blocks(sig)
    {
        if !naive && !involves_watched() {
            return;
        }
        flags = GENERATE_TARGET_BLOCKED;
    }

    // Follow a process that is sent a fatal signal to its exit, even if it
    // never acts on the signal (it exits first). A blocked one is followed
    // only once signal_deliver sees it acted on.
    if result == 0 && flags == 0 && (is_core_signal(sig) || (is_terminating_signal(sig) && handler == SIG_DFL)) {
        mark_crashing(target_tgid, sig);
    }
    let Some(mut entry) = reserve::<SignalGenerate>(EventKind::SignalGenerate) else {
        return;
    };
    let facts = read_info(sig, info);
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).sig = sig;
        (*event).errno = facts.errno;
        (*event).code = facts.code;
        (*event).group = group;
        (*event).result = result;
        (*event).info_kind = facts.kind;
        (*event).target_pid = target.pid();
        (*event).target_tgid = target_tgid;
        (*event).target_comm = target.comm();
        (*event).fault_addr = facts.fault_addr;
        (*event).si_pid = facts.si_pid;
        (*event).si_uid = facts.si_uid;
        (*event).target_handler = handler;
        (*event).target_ppid = target.ppid();
        (*event).flags = flags;
    }
    entry.submit(0);
}

// TP_PROTO(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)
// Fires in the receiving thread, in get_signal(), before the action is taken.
#[btf_tracepoint(function = "signal_deliver")]
pub fn signal_deliver(ctx: BtfTracePointContext) -> i32 {
    if offsets_valid() {
        try_signal_deliver(&ctx);
    }
    0
}

#[inline(always)]
fn try_signal_deliver(ctx: &BtfTracePointContext) {
    let sig: i32 = ctx.arg(0);
    let info: *const u8 = ctx.arg(1);
    let ka: *const u8 = ctx.arg(2);
    let sa_handler = unsafe { read::<u64>(ka, crate::off!(sigaction_handler)) }.unwrap_or(SIG_DFL);
    let tgid = current_tgid();

    let fatal_default = sa_handler == SIG_DFL && (is_core_signal(sig) || is_terminating_signal(sig));
    let wanted = is_core_signal(sig) || fatal_default || is_watched(tgid);
    if !wanted {
        return;
    }
    if fatal_default {
        // Every thread of a dying group passes here with SIGKILL; one event
        // per process is enough.
        if sig == SIGKILL && is_crashing(tgid) {
            return;
        }
        // A SIGKILL that no signal_generate saw (a sent one put the process
        // in CRASHING there) is the kernel ending a group's other threads:
        // exit_group, exec's de_thread. Every multi-threaded process that
        // exits does this; it is no kill and no crash. (A dump's zap of the
        // other threads comes after the crash put the process in CRASHING.)
        if sig == SIGKILL && !is_watched(tgid) {
            return;
        }
        mark_crashing(tgid, sig);
    }

    let Some(mut entry) = reserve::<SignalDeliver>(EventKind::SignalDeliver) else {
        return;
    };
    let facts = read_info(sig, info);
    let task = current();
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).sig = sig;
        (*event).errno = facts.errno;
        (*event).code = facts.code;
        (*event).info_kind = facts.kind;
        (*event).sa_handler = sa_handler;
        (*event).sa_flags = read::<u64>(ka, crate::off!(sigaction_flags)).unwrap_or(0);
        (*event).fault_addr = facts.fault_addr;
        (*event).si_pid = facts.si_pid;
        (*event).si_uid = facts.si_uid;
        (*event).rlimit_core = task.rlimit_core();
        (*event).ppid = task.ppid();
        (*event).dumpable = task.dumpable();
        let (pidns, ns_tgid) = task.pid_namespace();
        (*event).pidns_inum = pidns;
        (*event).ns_tgid = ns_tgid;
    }
    entry.submit(0);
}

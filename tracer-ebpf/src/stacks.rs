//! The dying thread's stack, taken in `signal_deliver` right after its
//! `SignalDeliver` event: what a core would have shown first, kept even when
//! the core is lost.
//!
//! Everything is written straight into the ring-buffer reservation: the
//! event is far larger than the 512-byte BPF stack. `bpf_get_stack` zeroes
//! what it does not fill, and every other field is written, so no byte of
//! the event is left uninitialised.
//!
//! Cost matters: this runs in the dying thread at every crash, so a crash
//! storm pays it thousands of times a second. Each `bpf_get_stack` call is a
//! walk of its own, microseconds each; the kernel walk (ORC, through the
//! tracepoint's and this program's frames) only shows the way back to user
//! space, so it is only taken with `--kernel-stack`.
//! See BENCHMARKS.md, "Stack capture cost".

use aya_ebpf::{
    bindings::{pt_regs, BPF_F_USER_BUILD_ID, BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE},
    helpers::{
        bpf_probe_read_kernel,
        generated::{bpf_get_current_task_btf, bpf_get_stack, bpf_probe_read_user, bpf_task_pt_regs},
    },
    programs::BtfTracePointContext,
    EbpfContext,
};
use tracer_common::{
    config::{SETTING_KERNEL_STACK, SETTING_NO_STACK_CAPTURE},
    stack::{BuildIdFrame, StackCapture, StackCopy, KERNEL_FRAMES_MAX, STACK_REGS_VALID, USER_FRAMES_MAX},
    EventKind, LOST_SLOTS,
};

use aya_ebpf::macros::btf_tracepoint;
use tracer_common::signal::{is_core_signal, is_terminating_signal, SIGKILL, SIG_DFL};

use crate::{
    emit::{current_tgid, reserve},
    maps::{is_watched, offsets_valid, settings_flags, EVENTS, LOST, SETTINGS},
    task::read,
};

const USER_BYTES: u32 = (USER_FRAMES_MAX * core::mem::size_of::<u64>()) as u32;
const KERNEL_BYTES: u32 = (KERNEL_FRAMES_MAX * core::mem::size_of::<u64>()) as u32;
const BUILD_ID_BYTES: u32 = (USER_FRAMES_MAX * core::mem::size_of::<BuildIdFrame>()) as u32;

// A program of its own on signal_deliver, attached after `signal_deliver`
// (so its event follows the SignalDeliver one): it needs helpers older
// kernels lack (bpf_get_current_task_btf 5.11, bpf_task_pt_regs 5.15), and
// where it cannot load, every other hook still works.
#[btf_tracepoint(function = "signal_deliver")]
pub fn stack_capture(ctx: BtfTracePointContext) -> i32 {
    if !offsets_valid() || settings_flags() & SETTING_NO_STACK_CAPTURE != 0 {
        return 0;
    }
    let sig: i32 = ctx.arg(0);
    let ka: *const u8 = ctx.arg(2);
    let sa_handler = unsafe { read::<u64>(ka, crate::off!(sigaction_handler)) }.unwrap_or(SIG_DFL);
    let fatal = is_core_signal(sig) || is_terminating_signal(sig);
    // The dying thread's stack, while it is still the current task; SIGKILL
    // is a kill, not a crash, and reaches every thread of a dying group. A
    // watched process's fatal signals count even when it handles them.
    let crash = fatal && sa_handler == SIG_DFL && sig != SIGKILL;
    if crash || (fatal && is_watched(current_tgid())) {
        capture(&ctx, sig);
    }
    0
}

/// Sends a `StackCapture` for the current thread, which is acting on `sig`.
/// Must run in the receiving thread's context: both walks and the registers
/// are the current task's.
#[inline(always)]
pub fn capture(ctx: &BtfTracePointContext, sig: i32) {
    let Some(mut entry) = reserve::<StackCapture>(EventKind::StackCapture) else {
        return;
    };
    let event = entry.as_mut_ptr();
    let raw = ctx.as_ptr();
    let (ip, sp, bp, regs_ok) = user_regs();
    unsafe {
        (*event).sig = sig;
        (*event)._pad0 = 0;
        // User frames through the frame-pointer chain, starting at the
        // user IP; the kernel reads the user stack without faulting.
        (*event).user_ret =
            bpf_get_stack(raw, (*event).user.as_mut_ptr().cast(), USER_BYTES, BPF_F_USER_STACK as u64) as i32;
        // The same walk resolved to build-id + file offset in the kernel, so
        // the frames can be symbolised even when the process (and its
        // /proc/PID/maps) is gone before user space looks.
        (*event).build_id_ret = bpf_get_stack(
            raw,
            (*event).build_ids.as_mut_ptr().cast(),
            BUILD_ID_BYTES,
            (BPF_F_USER_STACK | BPF_F_USER_BUILD_ID) as u64,
        ) as i32;
        // The kernel path back to user space (a page fault's, a syscall's),
        // only when asked for: a walk of microseconds for little news.
        if settings_flags() & SETTING_KERNEL_STACK != 0 {
            (*event).kernel_ret = bpf_get_stack(raw, (*event).kernel.as_mut_ptr().cast(), KERNEL_BYTES, 0) as i32;
        } else {
            (*event).kernel_ret = 0;
            core::ptr::write_bytes((*event).kernel.as_mut_ptr(), 0, KERNEL_FRAMES_MAX);
        }

        (*event).ip = ip;
        (*event).sp = sp;
        (*event).bp = bp;
        (*event).flags = if regs_ok { STACK_REGS_VALID } else { 0 };
    }
    entry.submit(0);
    let want = unsafe { core::ptr::read_volatile(&SETTINGS.stack_copy_bytes) };
    if regs_ok && want > 0 {
        copy_stack(sp, want);
    }
}

/// A `StackCopy` with `N` bytes of stack: the reservation's size must be a
/// constant, so each size is its own type.
#[repr(C)]
struct WithData<const N: usize> {
    event: StackCopy,
    data: [u8; N],
}

enum Copied {
    Sent,
    /// The read faulted: the stack ends less than N bytes above SP.
    TooBig,
    /// No room in the ring buffer (counted as lost by `reserve`).
    NoRoom,
}

#[inline(always)]
fn try_copy<const N: usize>(sp: u64, want: u32) -> Copied {
    if N as u32 > want {
        return Copied::TooBig;
    }
    let Some(mut entry) = reserve::<WithData<N>>(EventKind::StackCopy) else {
        return Copied::NoRoom;
    };
    let sized = entry.as_mut_ptr();
    unsafe {
        // On failure the helper zeroes the buffer; on success it fills it:
        // either way every byte is written.
        let ret = bpf_probe_read_user((*sized).data.as_mut_ptr().cast(), N as u32, sp as *const _) as i32;
        if ret != 0 {
            entry.discard(0);
            return Copied::TooBig;
        }
        (*sized).event.sp = sp;
        (*sized).event.len = N as u32;
        (*sized).event.ret = ret;
    }
    entry.submit(0);
    Copied::Sent
}

/// Copies up to `want` bytes of user stack from `sp` upward, in the largest
/// of the fixed sizes that does not run past the end of the stack.
///
/// A copy is an extra: it is skipped, and counted as lost, when it would
/// fill the ring buffer past half, so that in a crash storm the events
/// every verdict needs still find room. (Half, not less: the other events
/// of a crash are some 2 KiB against a copy's 8, so the lower half holds
/// the events of as many crashes as the upper half holds copies, and every
/// byte held back from copies is a copy lost in a burst.)
#[inline(always)]
fn copy_stack(sp: u64, want: u32) {
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let size = EVENTS.query(BPF_RB_RING_SIZE as u64);
    if pending.saturating_add(want as u64) > size / 2 {
        let slot = EventKind::StackCopy as u32;
        if slot < LOST_SLOTS {
            if let Some(counter) = LOST.get_ptr_mut(slot) {
                // Per-CPU slot: no other CPU writes it.
                unsafe { *counter += 1 };
            }
        }
        return;
    }
    macro_rules! attempt {
        ($($n:literal),*) => {$(
            match try_copy::<$n>(sp, want) {
                Copied::Sent | Copied::NoRoom => return,
                Copied::TooBig => {}
            }
        )*};
    }
    attempt!(32768, 16384, 8192, 4096, 2048, 1024, 512);
}

/// The user registers saved when the thread entered the kernel:
/// (ip, sp, bp, valid). Valid only when the saved code segment is a user
/// one (CPL 3): a kernel thread has no user registers to show. One read of
/// the whole `pt_regs` (168 bytes) costs less than a read per register.
#[inline(always)]
fn user_regs() -> (u64, u64, u64, bool) {
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs;
    if regs.is_null() {
        return (0, 0, 0, false);
    }
    match unsafe { bpf_probe_read_kernel(regs) } {
        Ok(r) if r.cs & 3 == 3 => (r.rip, r.rsp, r.rbp, true),
        _ => (0, 0, 0, false),
    }
}

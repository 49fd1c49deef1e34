//! Signal events (`signal:signal_generate`, `signal:signal_deliver`) and the
//! signal facts both sides need.

use bytemuck::{Pod, Zeroable};

use crate::header::{EventHeader, COMM_LEN};

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGQUIT: i32 = 3;
pub const SIGILL: i32 = 4;
pub const SIGTRAP: i32 = 5;
pub const SIGABRT: i32 = 6;
pub const SIGBUS: i32 = 7;
pub const SIGFPE: i32 = 8;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGSEGV: i32 = 11;
pub const SIGUSR2: i32 = 12;
pub const SIGPIPE: i32 = 13;
pub const SIGALRM: i32 = 14;
pub const SIGTERM: i32 = 15;
pub const SIGSTKFLT: i32 = 16;
pub const SIGCHLD: i32 = 17;
pub const SIGXCPU: i32 = 24;
pub const SIGXFSZ: i32 = 25;
pub const SIGVTALRM: i32 = 26;
pub const SIGPROF: i32 = 27;
pub const SIGIO: i32 = 29;
pub const SIGPWR: i32 = 30;
pub const SIGSYS: i32 = 31;

/// si_code values for SIGCHLD.
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_DUMPED: i32 = 3;
/// si_code values for sent signals.
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;
pub const SI_QUEUE: i32 = -1;
pub const SI_TKILL: i32 = -6;

/// `signal_generate`'s result argument.
pub const TRACE_SIGNAL_DELIVERED: i32 = 0;
pub const TRACE_SIGNAL_IGNORED: i32 = 1;
pub const TRACE_SIGNAL_ALREADY_PENDING: i32 = 2;
pub const TRACE_SIGNAL_OVERFLOW_FAIL: i32 = 3;
pub const TRACE_SIGNAL_LOSE_INFO: i32 = 4;

/// How the siginfo pointer looked: the kernel passes 0 and 1 as markers.
pub const INFO_FULL: u32 = 0;
/// SEND_SIG_NOINFO: a plain kill from the kernel with no siginfo.
pub const INFO_NOINFO: u32 = 1;
/// SEND_SIG_PRIV: a kernel-internal signal.
pub const INFO_PRIV: u32 = 2;

/// `sa_handler` markers.
pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

/// Signals a fault in the thread itself raises (si_code > 0), whose siginfo
/// carries the faulting address in si_addr. SIGSYS is not one: seccomp's
/// si_addr is the calling instruction, not a fault address.
pub const FAULT_SIGNALS: [i32; 5] = [SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV];

/// Whether `sig` is one of [`FAULT_SIGNALS`].
#[inline(always)]
pub const fn is_fault_signal(sig: i32) -> bool {
    // A loop over the one list (const fns cannot use iterators); five
    // compares, unrolled in the eBPF programs.
    let mut i = 0;
    while i < FAULT_SIGNALS.len() {
        if FAULT_SIGNALS[i] == sig {
            return true;
        }
        i += 1;
    }
    false
}

/// Signals whose default action dumps core (sig_kernel_coredump).
/// https://elixir.bootlin.com/linux/v6.18/source/kernel/signal.c (SIG_KERNEL_COREDUMP_MASK)
pub const fn is_core_signal(sig: i32) -> bool {
    matches!(sig, SIGQUIT | SIGILL | SIGTRAP | SIGABRT | SIGBUS | SIGFPE | SIGSEGV | SIGXCPU | SIGXFSZ | SIGSYS)
}

/// Signals whose default action terminates the process without a dump.
pub const fn is_terminating_signal(sig: i32) -> bool {
    matches!(
        sig,
        SIGHUP | SIGINT | SIGKILL | SIGUSR1 | SIGUSR2 | SIGPIPE | SIGALRM | SIGTERM | SIGSTKFLT
            | SIGVTALRM | SIGPROF | SIGIO | SIGPWR
    ) || (sig >= 34 && sig <= 64)
}

/// Signals whose default action ends the process, with or without a dump.
pub const fn is_fatal_by_default(sig: i32) -> bool {
    is_core_signal(sig) || is_terminating_signal(sig)
}

/// A signal on its way to a task (`signal:signal_generate`). `current` — the
/// header's task — is the sender.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SignalGenerate {
    pub header: EventHeader,
    pub sig: i32,
    pub errno: i32,
    pub code: i32,
    pub group: i32,
    /// One of the `TRACE_SIGNAL_*` values.
    pub result: i32,
    /// One of the `INFO_*` values.
    pub info_kind: u32,
    pub target_pid: u32,
    pub target_tgid: u32,
    pub target_comm: [u8; COMM_LEN],
    /// si_addr, for signals a fault raised (code > 0 on SEGV/BUS/ILL/FPE/TRAP).
    pub fault_addr: u64,
    /// si_pid/si_uid, for signals sent by kill/tgkill/sigqueue (code <= 0).
    pub si_pid: u32,
    pub si_uid: u32,
    /// The target's `sa_handler` for this signal at generation time.
    pub target_handler: u64,
    /// The target's parent's thread-group id.
    pub target_ppid: u32,
    /// `GENERATE_*` bits.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<SignalGenerate>() == 128);

/// `SignalGenerate.flags`: the target blocked the signal when it was
/// generated (sent anyway because a watched pid or the naive baseline is
/// involved); it is acted on only if and when it is unblocked.
pub const GENERATE_TARGET_BLOCKED: u32 = 1;

/// A signal being acted on in the receiving thread (`signal:signal_deliver`).
/// The header's task is the receiver.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SignalDeliver {
    pub header: EventHeader,
    pub sig: i32,
    pub errno: i32,
    pub code: i32,
    pub info_kind: u32,
    pub sa_handler: u64,
    pub sa_flags: u64,
    pub fault_addr: u64,
    pub si_pid: u32,
    pub si_uid: u32,
    /// The receiver's RLIMIT_CORE soft limit, in bytes (u64::MAX = unlimited).
    pub rlimit_core: u64,
    /// The receiver's parent's thread-group id.
    pub ppid: u32,
    /// The mm's dumpable mode (0 off, 1 user, 2 root), or [`DUMPABLE_UNKNOWN`].
    pub dumpable: u32,
    /// Inode of the receiver's pid namespace (what /proc/PID/ns/pid names),
    /// and its process id as seen inside that namespace; 0 when unreadable.
    /// Read here because /proc/PID/ns is gone by the time user space looks.
    pub pidns_inum: u32,
    pub ns_tgid: u32,
}

const _: () = assert!(core::mem::size_of::<SignalDeliver>() == 120);

pub const DUMPABLE_UNKNOWN: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_signals_are_the_ones_with_a_fault_address() {
        let faults: [i32; 5] = [4, 5, 7, 8, 11];
        for sig in 0..=64 {
            assert_eq!(is_fault_signal(sig), faults.contains(&sig), "signal {sig}");
        }
        // Every fault signal dumps core by default.
        assert!(FAULT_SIGNALS.iter().all(|s| is_core_signal(*s)));
    }
}

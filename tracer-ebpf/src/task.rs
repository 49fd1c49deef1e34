//! Reads of kernel structs through the offsets user space found in BTF.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::signal::DUMPABLE_UNKNOWN;

use crate::off;

/// A `task_struct *`.
#[derive(Clone, Copy)]
pub struct Task(pub *const u8);

/// RLIMIT_CORE's index in signal_struct.rlim (uapi/asm-generic/resource.h).
const RLIMIT_CORE: usize = 4;
/// sizeof(struct rlimit): two unsigned longs.
const RLIMIT_SIZE: usize = 16;
/// MMF_DUMPABLE_MASK: the dumpable mode lives in the two lowest flag bits.
/// https://elixir.bootlin.com/linux/v6.18/source/include/linux/sched/coredump.h
const MMF_DUMPABLE_MASK: u64 = 3;

#[inline(always)]
pub unsafe fn read<T>(base: *const u8, offset: u32) -> Option<T> {
    if base.is_null() {
        return None;
    }
    unsafe { bpf_probe_read_kernel(base.add(offset as usize) as *const T).ok() }
}

impl Task {
    #[inline(always)]
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }

    #[inline(always)]
    pub fn pid(self) -> u32 {
        unsafe { read::<i32>(self.0, off!(task_pid)) }.unwrap_or(0) as u32
    }

    #[inline(always)]
    pub fn tgid(self) -> u32 {
        unsafe { read::<i32>(self.0, off!(task_tgid)) }.unwrap_or(0) as u32
    }

    #[inline(always)]
    pub fn comm(self) -> [u8; 16] {
        unsafe { read::<[u8; 16]>(self.0, off!(task_comm)) }.unwrap_or([0; 16])
    }

    #[inline(always)]
    pub fn real_parent(self) -> Task {
        Task(unsafe { read::<*const u8>(self.0, off!(task_real_parent)) }.unwrap_or(core::ptr::null()))
    }

    /// The parent's thread-group id, 0 when unreadable.
    #[inline(always)]
    pub fn ppid(self) -> u32 {
        let parent = self.real_parent();
        if parent.is_null() { 0 } else { parent.tgid() }
    }

    #[inline(always)]
    pub fn exit_code(self) -> i32 {
        unsafe { read::<i32>(self.0, off!(task_exit_code)) }.unwrap_or(0)
    }

    /// RLIMIT_CORE's soft limit; u64::MAX (RLIM_INFINITY) also when unreadable.
    #[inline(always)]
    pub fn rlimit_core(self) -> u64 {
        let signal = unsafe { read::<*const u8>(self.0, off!(task_signal)) }.unwrap_or(core::ptr::null());
        let offset = off!(signal_rlim) + (RLIMIT_CORE * RLIMIT_SIZE) as u32;
        unsafe { read::<u64>(signal, offset) }.unwrap_or(u64::MAX)
    }

    /// The dumpable mode (0 off, 1 owner, 2 root), or DUMPABLE_UNKNOWN.
    #[inline(always)]
    pub fn dumpable(self) -> u32 {
        let exec_state = off!(task_exec_state);
        if exec_state != 0 {
            // 7.2+: enum task_dumpable in task->exec_state.
            let state = unsafe { read::<*const u8>(self.0, exec_state) }.unwrap_or(core::ptr::null());
            return match unsafe { read::<u32>(state, off!(exec_state_dumpable)) } {
                Some(d) => d & MMF_DUMPABLE_MASK as u32,
                None => DUMPABLE_UNKNOWN,
            };
        }
        let mm = unsafe { read::<*const u8>(self.0, off!(task_mm)) }.unwrap_or(core::ptr::null());
        match unsafe { read::<u64>(mm, off!(mm_flags)) } {
            Some(flags) => (flags & MMF_DUMPABLE_MASK) as u32,
            None => DUMPABLE_UNKNOWN,
        }
    }

    /// `sa_handler` of the task's action for `sig`, SIG_DFL when unreadable.
    #[inline(always)]
    pub fn handler(self, sig: i32) -> u64 {
        if !(1..=64).contains(&sig) {
            return 0;
        }
        let sighand = unsafe { read::<*const u8>(self.0, off!(task_sighand)) }.unwrap_or(core::ptr::null());
        let offset = off!(sighand_action) + (sig as u32 - 1) * off!(k_sigaction_size) + off!(sigaction_handler);
        unsafe { read::<u64>(sighand, offset) }.unwrap_or(0)
    }

    /// Whether the task blocks `sig`: in `blocked`, or in `real_blocked`,
    /// where sigtimedwait keeps the mask while it unblocks the waited set
    /// (kernel/signal.c do_sigtimedwait). x86_64's sigset_t is one u64 with
    /// bit sig-1. Unreadable masks count as not blocked: the event then
    /// goes out, as it did before this filter existed.
    #[inline(always)]
    pub fn blocks(self, sig: i32) -> bool {
        if !(1..=64).contains(&sig) {
            return false;
        }
        let bit = 1u64 << (sig as u32 - 1);
        let blocked_at = off!(task_blocked);
        let real_blocked_at = off!(task_real_blocked);
        // The two masks are neighbours in every task_struct so far: one read
        // then, not two (this runs for every fatal-by-default signal sent on
        // the host, most of them taken by sigwait or a signalfd).
        if real_blocked_at == blocked_at + 8 {
            // SAFETY: read() checks for null and goes through bpf_probe_read_kernel.
            let [blocked, real_blocked] = unsafe { read::<[u64; 2]>(self.0, blocked_at) }.unwrap_or([0, 0]);
            return (blocked | real_blocked) & bit != 0;
        }
        // SAFETY: as above.
        let blocked = unsafe { read::<u64>(self.0, blocked_at) }.unwrap_or(0);
        // SAFETY: as above.
        let real_blocked = unsafe { read::<u64>(self.0, real_blocked_at) }.unwrap_or(0);
        (blocked | real_blocked) & bit != 0
    }

    /// (pid namespace inode, process id inside it) from the group leader's
    /// struct pid: numbers[level] is the innermost namespace's view.
    #[inline(always)]
    pub fn pid_namespace(self) -> (u32, u32) {
        let leader = unsafe { read::<*const u8>(self.0, off!(task_group_leader)) }.unwrap_or(core::ptr::null());
        let pid = unsafe { read::<*const u8>(leader, off!(task_thread_pid)) }.unwrap_or(core::ptr::null());
        let Some(level) = (unsafe { read::<u32>(pid, off!(pid_level)) }) else {
            return (0, 0);
        };
        // Pid namespaces nest at most 32 deep (MAX_PID_NS_LEVEL).
        let level = level & 31;
        let upid = off!(pid_numbers) + level * off!(upid_size);
        let nr = unsafe { read::<i32>(pid, upid + off!(upid_nr)) }.unwrap_or(0) as u32;
        let ns = unsafe { read::<*const u8>(pid, upid + off!(upid_ns)) }.unwrap_or(core::ptr::null());
        let inum = unsafe { read::<u32>(ns, off!(pidns_inum)) }.unwrap_or(0);
        (inum, nr)
    }

    /// The mm's argv area: (arg_start, arg_end).
    #[inline(always)]
    pub fn arg_area(self) -> (u64, u64) {
        let mm = unsafe { read::<*const u8>(self.0, off!(task_mm)) }.unwrap_or(core::ptr::null());
        let start = unsafe { read::<u64>(mm, off!(mm_arg_start)) }.unwrap_or(0);
        let end = unsafe { read::<u64>(mm, off!(mm_arg_end)) }.unwrap_or(0);
        (start, end)
    }
}

pub fn current() -> Task {
    Task(unsafe { aya_ebpf::helpers::bpf_get_current_task() } as *const u8)
}

//! Globals user space writes into the eBPF object before load.

use bytemuck::{Pod, Zeroable};

/// Offsets into kernel structs that are not ABI. User space reads them from
/// the running kernel's BTF, so no kernel version is baked into the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_real_parent: u32,
    pub task_signal: u32,
    pub task_sighand: u32,
    pub task_mm: u32,
    pub task_exit_code: u32,
    /// signal_struct.rlim
    pub signal_rlim: u32,
    /// sighand_struct.action
    pub sighand_action: u32,
    /// sizeof(struct k_sigaction)
    pub k_sigaction_size: u32,
    /// k_sigaction.sa.sa_handler and k_sigaction.sa.sa_flags
    pub sigaction_handler: u32,
    pub sigaction_flags: u32,
    /// mm_struct's flags word; its low two bits are the dumpable mode.
    pub mm_flags: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// linux_binprm.filename
    pub bprm_filename: u32,
    /// Field offsets in the records of the syscalls:sys_enter_connect and
    /// sys_exit_connect tracepoints, from their tracefs `format` files.
    pub connect_enter_uservaddr: u32,
    pub connect_exit_ret: u32,
    /// cgroup.root, cgroup_root.hierarchy_id, cgroup.kn, kernfs_node.id, cgroup.level
    pub cgroup_root: u32,
    pub cgroup_root_hierarchy_id: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    pub cgroup_level: u32,
    /// task_struct.group_leader, task_struct.thread_pid, pid.level,
    /// pid.numbers, sizeof(struct upid), upid.nr, upid.ns,
    /// pid_namespace.ns + ns_common.inum
    pub task_group_leader: u32,
    pub task_thread_pid: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,
    pub upid_ns: u32,
    pub pidns_inum: u32,
    /// task_struct.exec_state and task_exec_state.dumpable, where the kernel
    /// keeps dumpability since 7.2; 0 on older kernels (mm flags then).
    pub task_exec_state: u32,
    pub exec_state_dumpable: u32,
    /// Offset of `sig` in the coredump:coredump tracepoint's record (7.3+).
    pub coredump_tp_sig: u32,
    /// task_struct.blocked and task_struct.real_blocked (sigset_t): a
    /// signal the target blocks is not acted on when generated.
    pub task_blocked: u32,
    pub task_real_blocked: u32,
    /// 1 once user space filled the struct in; programs do nothing until then.
    pub valid: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 152);

impl KernelOffsets {
    pub const fn zeroed() -> Self {
        KernelOffsets {
            task_pid: 0,
            task_tgid: 0,
            task_comm: 0,
            task_real_parent: 0,
            task_signal: 0,
            task_sighand: 0,
            task_mm: 0,
            task_exit_code: 0,
            signal_rlim: 0,
            sighand_action: 0,
            k_sigaction_size: 0,
            sigaction_handler: 0,
            sigaction_flags: 0,
            mm_flags: 0,
            mm_arg_start: 0,
            mm_arg_end: 0,
            bprm_filename: 0,
            connect_enter_uservaddr: 0,
            connect_exit_ret: 0,
            cgroup_root: 0,
            cgroup_root_hierarchy_id: 0,
            cgroup_kn: 0,
            kernfs_node_id: 0,
            cgroup_level: 0,
            task_group_leader: 0,
            task_thread_pid: 0,
            pid_level: 0,
            pid_numbers: 0,
            upid_size: 0,
            upid_nr: 0,
            upid_ns: 0,
            pidns_inum: 0,
            task_exec_state: 0,
            exec_state_dumpable: 0,
            coredump_tp_sig: 0,
            task_blocked: 0,
            task_real_blocked: 0,
            valid: 0,
        }
    }
}

/// Run-time switches for the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Settings {
    /// `SETTING_*` bits.
    pub flags: u32,
    /// Bytes of `cgroup_prefix` in use; 0 = every cgroup.
    pub cgroup_prefix_len: u32,
    /// `--cgroup PATH`: only cgroup events under this path are sent.
    pub cgroup_prefix: [u8; crate::cgroup::CGROUP_FILTER_MAX],
    /// `--stack-copy BYTES`: how much of the dying thread's user stack to
    /// copy (a `StackCopy` event), at most `stack::STACK_COPY_MAX`; 0 = none.
    pub stack_copy_bytes: u32,
}

const _: () = assert!(core::mem::size_of::<Settings>() == 76);

/// Ship every signal_generate event, unfiltered: the naive baseline the
/// benchmarks compare against.
pub const SETTING_NAIVE_ALL_SIGNALS: u32 = 1;
/// A pid is watched (`--pid`): only then are the WATCHED lookups worth
/// their cost on every signal.
pub const SETTING_WATCHING: u32 = 2;
/// `--kernel-stack`: walk the kernel stack at a fatal signal too. Off by
/// default: the walk (ORC, through the tracepoint and BPF frames) costs
/// several microseconds per crash and only shows the return-to-user path.
pub const SETTING_KERNEL_STACK: u32 = 4;
/// No stack capture at all: the baseline the stack-capture benchmark
/// compares against (`crashtrace-bench-baseline --no-stack-capture`; the
/// shipped binary cannot set it).
pub const SETTING_NO_STACK_CAPTURE: u32 = 8;

impl Settings {
    pub const fn zeroed() -> Self {
        Settings { flags: 0, cgroup_prefix_len: 0, cgroup_prefix: [0; crate::cgroup::CGROUP_FILTER_MAX], stack_copy_bytes: 0 }
    }
}

/// aya's `Pod`, for the globals user space writes into the object before load.
#[cfg(feature = "user")]
mod user {
    use super::{KernelOffsets, Settings};

    /// Compiles only for a `bytemuck::Pod` type: the bound the impls below
    /// rest on.
    const fn bytemuck_pod<T: bytemuck::Pod>() {}

    const _: () = bytemuck_pod::<KernelOffsets>();
    // SAFETY: aya::Pod asks for a plain-data type whose every byte is
    // initialised and any bit pattern valid; KernelOffsets is bytemuck::Pod
    // (derived and asserted just above), which guarantees exactly that.
    unsafe impl aya::Pod for KernelOffsets {}

    const _: () = bytemuck_pod::<Settings>();
    // SAFETY: as for KernelOffsets: Settings is bytemuck::Pod (asserted above).
    unsafe impl aya::Pod for Settings {}
}

//! The crashing thread's stack at the fatal signal (`StackCapture`), taken in
//! `signal:signal_deliver` in the context of the thread that dies: the user
//! frames (frame-pointer walk), the same frames as build-id + file offset,
//! the kernel frames (only with `--kernel-stack`: zero otherwise), and the
//! user registers.
//!
//! The arrays are filled by `bpf_get_stack`, which writes the frames it found
//! and zeroes the rest, so every byte of the event is initialised.

use bytemuck::{Pod, Zeroable};

use crate::header::EventHeader;

/// User frames kept: the faulting IP, then return addresses.
pub const USER_FRAMES_MAX: usize = 32;
/// Kernel frames kept.
pub const KERNEL_FRAMES_MAX: usize = 16;
/// Size of a build-id in `struct bpf_stack_build_id` (BPF_BUILD_ID_SIZE).
pub const BUILD_ID_SIZE: usize = 20;

/// `bpf_stack_build_id.status`: no entry.
pub const BUILD_ID_STATUS_EMPTY: i32 = 0;
/// `bpf_stack_build_id.status`: `build_id` and `offset` (a file offset) hold.
pub const BUILD_ID_STATUS_VALID: i32 = 1;
/// `bpf_stack_build_id.status`: no build-id found; `offset` holds the raw IP.
pub const BUILD_ID_STATUS_IP: i32 = 2;

/// `StackCapture.flags`: `ip`, `sp` and `bp` were read from the task's user
/// registers (`bpf_task_pt_regs`).
pub const STACK_REGS_VALID: u32 = 1;

/// One frame as the kernel resolves it with `BPF_F_USER_BUILD_ID`: the layout
/// of `struct bpf_stack_build_id` (uapi/linux/bpf.h), which is ABI.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BuildIdFrame {
    /// One of the `BUILD_ID_STATUS_*` values.
    pub status: i32,
    pub build_id: [u8; BUILD_ID_SIZE],
    /// A file offset for `BUILD_ID_STATUS_VALID`, the raw IP for
    /// `BUILD_ID_STATUS_IP`.
    pub offset: u64,
}

const _: () = assert!(core::mem::size_of::<BuildIdFrame>() == 32);

impl BuildIdFrame {
    pub const fn zeroed() -> Self {
        BuildIdFrame { status: 0, build_id: [0; BUILD_ID_SIZE], offset: 0 }
    }
}

/// The stack of a thread acting on a fatal signal. The header's task is that
/// thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct StackCapture {
    pub header: EventHeader,
    pub sig: i32,
    /// `STACK_*` bits.
    pub flags: u32,
    /// `bpf_get_stack`'s results: bytes written (a multiple of 8, resp. of
    /// the build-id frame size), or a negative errno.
    pub user_ret: i32,
    pub kernel_ret: i32,
    pub build_id_ret: i32,
    pub _pad0: u32,
    /// User registers at the moment the thread entered the kernel.
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub user: [u64; USER_FRAMES_MAX],
    pub kernel: [u64; KERNEL_FRAMES_MAX],
    /// The user frames again, each as build-id + file offset where the
    /// kernel could read the build-id (same walk, same order as `user`).
    pub build_ids: [BuildIdFrame; USER_FRAMES_MAX],
}

const _: () = assert!(core::mem::size_of::<StackCapture>() == 1504);

/// The number of valid entries a `bpf_get_stack` result stands for.
pub const fn frames_in(ret: i32, entry_size: usize, max: usize) -> usize {
    if ret <= 0 {
        return 0;
    }
    let n = ret as usize / entry_size;
    if n > max { max } else { n }
}

/// Largest `--stack-copy`: the ring buffer must hold many of these.
pub const STACK_COPY_MAX: usize = 32 * 1024;
/// Smallest copy sent; a stack with less than this above SP sends none.
pub const STACK_COPY_MIN: usize = 512;

/// The top of the dying thread's user stack, from its SP upward, sent after
/// its `StackCapture` when `--stack-copy` asks for it. With it, user space
/// can unwind code built without frame pointers from `.eh_frame`.
///
/// `len` bytes of stack follow this struct in the record. The kernel reads
/// the stack in one of a few fixed sizes (32, 16, 8, 4, 2, 1 KiB, 512 bytes),
/// the largest that is at most `--stack-copy` and does not run past the end
/// of the stack, so the record is exactly as long as its data.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct StackCopy {
    pub header: EventHeader,
    /// The user SP: the address of the first byte that follows.
    pub sp: u64,
    /// Bytes of stack that follow.
    pub len: u32,
    /// The read's result (0).
    pub ret: i32,
}

const _: () = assert!(core::mem::size_of::<StackCopy>() == 64);

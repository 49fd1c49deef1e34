//! Every map and global of the object, in one place.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    config::{KernelOffsets, Settings},
    LOST_SLOTS,
};

/// 1 MiB by default; user space resizes it before load (`--ring-buffer-size`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Failed reservations per event kind; user space sums the CPUs.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_SLOTS, 0);

/// `--pid` targets (thread-group ids); value 1.
#[map]
pub static WATCHED: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

/// core_pattern pipe helpers by thread-group id; value 1.
#[map]
pub static HELPERS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(1024, 0);

/// Processes taking a fatal default action, by thread-group id; value = signal.
/// LRU so that a storm of deaths can never fill it.
#[map]
pub static CRASHING: LruHashMap<u32, i32> = LruHashMap::with_max_entries(16384, 0);

/// connect() arguments of helper threads between syscall entry and exit.
#[map]
pub static CONNECTS: LruHashMap<u64, ConnectArgs> = LruHashMap::with_max_entries(1024, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnectArgs {
    pub family: u16,
    pub _pad0: u16,
    pub path: [u8; tracer_common::collector::SUN_PATH_MAX],
}

/// Per-CPU room for a cgroup path, so `--cgroup` can filter before a
/// ring-buffer reservation: events outside the subtree then cost no ring
/// space and are never counted as lost.
#[map]
pub static CGROUP_SCRATCH: PerCpuArray<[u8; tracer_common::cgroup::CGROUP_PATH_MAX]> = PerCpuArray::with_max_entries(1, 0);

/// Filled in by user space from the kernel's BTF before load.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets::zeroed();

#[unsafe(no_mangle)]
pub static SETTINGS: Settings = Settings::zeroed();

/// Reads one field of [`OFFSETS`]. Volatile, so the compiler cannot fold the
/// zero it sees at build time.
#[macro_export]
macro_rules! off {
    ($field:ident) => {
        $crate::maps::offset_of_field(|o| &o.$field)
    };
}

#[inline(always)]
pub fn offset_of_field(field: impl Fn(&KernelOffsets) -> &u32) -> u32 {
    unsafe { core::ptr::read_volatile(field(&OFFSETS)) }
}

pub fn settings_flags() -> u32 {
    unsafe { core::ptr::read_volatile(&SETTINGS.flags) }
}

pub fn offsets_valid() -> bool {
    off!(valid) == 1
}

#[inline(always)]
pub fn is_watched(tgid: u32) -> bool {
    settings_flags() & tracer_common::config::SETTING_WATCHING != 0 && unsafe { WATCHED.get(&tgid).is_some() }
}

pub fn is_helper(tgid: u32) -> bool {
    unsafe { HELPERS.get(&tgid).is_some() }
}

pub fn is_crashing(tgid: u32) -> bool {
    unsafe { CRASHING.get(&tgid).is_some() }
}

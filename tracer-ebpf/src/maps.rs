//! Every map and global of the object, in one place.

use aya_ebpf::{
    macros::map,
    bindings::BPF_NOEXIST,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
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
static CRASHING: LruHashMap<u32, i32> = LruHashMap::with_max_entries(16384, 0);

/// Entries put in [`CRASHING`] minus those taken out at exit. Never below
/// the map's real size (an LRU eviction leaves it higher, which only costs
/// lookups), so 0 means empty. Why keep it: every process exit on the host
/// asks whether it was crashing, and a miss in a big LRU hash costs several
/// hundred ns of cache misses, where one shared counter is one load.
#[map]
static CRASHING_COUNT: Array<u64> = Array::with_max_entries(1, 0);

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
    crashing_count() != 0 && unsafe { CRASHING.get(&tgid).is_some() }
}

/// Follows `tgid` to its exit as a process taking a fatal signal. Counted
/// only when new: the same process is marked at generate, deliver and dump.
#[inline(always)]
pub fn mark_crashing(tgid: u32, sig: i32) {
    if CRASHING.insert(&tgid, &sig, BPF_NOEXIST as u64).is_ok() {
        add_crashing(1);
    }
}

/// Ends following `tgid`; true if it was followed.
#[inline(always)]
pub fn unmark_crashing(tgid: u32) -> bool {
    if crashing_count() == 0 {
        return false;
    }
    let removed = CRASHING.remove(&tgid).is_ok();
    if removed {
        add_crashing(u64::MAX); // -1, wrapping: BPF has an atomic add only.
    }
    removed
}

#[inline(always)]
fn crashing_count() -> u64 {
    match CRASHING_COUNT.get_ptr_mut(0) {
        // SAFETY: a map value pointer from the kernel; a plain read may
        // see another CPU's add late, which the ordering of signal
        // delivery before exit makes harmless.
        Some(p) => unsafe { core::ptr::read_volatile(p) },
        // Unreadable: assume not empty, so lookups still happen.
        None => 1,
    }
}

#[inline(always)]
fn add_crashing(delta: u64) {
    if let Some(p) = CRASHING_COUNT.get_ptr_mut(0) {
        // SAFETY: a map value pointer from the kernel, shared by all CPUs:
        // an atomic add (the result unused, so the oldest BPF encoding).
        // (core's AtomicU64 has no fetch_add on the BPF target.)
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(p, delta);
        }
    }
}

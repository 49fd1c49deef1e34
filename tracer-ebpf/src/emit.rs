//! Reserving events in the ring buffer, and counting the ones that did not fit.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    maps::ring_buf::RingBufEntry,
};
use tracer_common::{EventHeader, EventKind, LOST_SLOTS};

use crate::maps::{EVENTS, LOST};

/// Reserves room for a `T` whose first field is an [`EventHeader`] and fills
/// the header in. A full ring buffer bumps `LOST[kind]` and returns `None`:
/// loss is counted, never silent.
#[inline(always)]
pub fn reserve<T: 'static>(kind: EventKind) -> Option<RingBufEntry<T>> {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        count_lost(kind);
        return None;
    };
    let header = entry.as_mut_ptr() as *mut EventHeader;
    let pid_tgid = bpf_get_current_pid_tgid();
    unsafe {
        header.write(EventHeader {
            kind: kind as u32,
            cpu: bpf_get_smp_processor_id(),
            ts_ns: bpf_ktime_get_ns(),
            pid: pid_tgid as u32,
            tgid: (pid_tgid >> 32) as u32,
            cgroup_id: bpf_get_current_cgroup_id(),
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
        });
    }
    Some(entry)
}

#[inline(always)]
fn count_lost(kind: EventKind) {
    let slot = kind as u32;
    if slot >= LOST_SLOTS {
        return;
    }
    if let Some(counter) = LOST.get_ptr_mut(slot) {
        // Per-CPU slot: no other CPU writes it, so a plain add is exact.
        unsafe { *counter += 1 };
    }
}

pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

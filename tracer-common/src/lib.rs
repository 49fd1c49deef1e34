//! Wire types shared by crashtrace's eBPF programs and its user space.
//!
//! Every event is a `#[repr(C)]` struct that starts with an [`EventHeader`];
//! user space reads `header.kind` first and then the whole struct. Padding is
//! written out as named fields so that no uninitialised byte crosses the ring
//! buffer. Each type is defined here once and nowhere else.
//!
//! Each wire type derives bytemuck's `Pod` and `Zeroable`: the derive refuses
//! implicit padding and non-plain fields, so user space can read the bytes
//! with bytemuck instead of unsafe pointer casts. Each is followed by a
//! compile-time assertion of its size, which is part of the format.
#![no_std]

pub mod cgroup;
pub mod collector;
pub mod config;
pub mod coredump;
pub mod header;
pub mod names;
pub mod process;
pub mod signal;
pub mod stack;
pub mod sysctl;

pub use header::{EventHeader, EventKind, COMM_LEN};

/// Names of the maps in the eBPF object, so both sides spell them alike.
pub mod maps {
    /// The ring buffer every event goes through.
    pub const EVENTS: &str = "EVENTS";
    /// Per-CPU counts of failed ring-buffer reservations, indexed by event kind.
    pub const LOST: &str = "LOST";
    /// Thread-group ids the user asked to watch (`--pid`).
    pub const WATCHED: &str = "WATCHED";
    /// Thread-group ids of core_pattern pipe helpers seen at exec.
    pub const HELPERS: &str = "HELPERS";
    /// Thread-group ids taking a fatal default action (dying or dumping).
    pub const CRASHING: &str = "CRASHING";
    /// connect() arguments staged between syscall entry and exit.
    pub const CONNECTS: &str = "CONNECTS";
    /// The globals user space fills in before load.
    pub const OFFSETS: &str = "OFFSETS";
    pub const SETTINGS: &str = "SETTINGS";
}

/// Size of the `LOST` array: one slot per event kind, slot 0 unused.
pub const LOST_SLOTS: u32 = 16;

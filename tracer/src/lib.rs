//! crashtrace: an eBPF tracer of crashes, core dumps and their collectors.
//!
//! The module map, by layer (each depends only on those above it):
//!
//! - Wire and domain types: `event` (one kernel event), `chain` (a crash
//!   chain), `verdict`, `record` (the JSON Lines records), `core_pattern`,
//!   `core_location` (where a dumped core went), `coredump_conf`
//!   (systemd-coredump's settings),
//!   `stack`, `procmaps` (a process's executable mappings).
//! - Pure logic, no aya, no tokio: `decode` (ring-buffer bytes to events),
//!   `correlate` (events to chains and verdicts), `watched` (a watched
//!   pid's state, from facts), `scope` (what `--pid` and `--cgroup` keep),
//!   `layout`'s parsers.
//! - Text: `render` (events, verdict blocks built from named sections,
//!   header, watched, loss, summary), shared by the sinks and `report`.
//! - Symbolisation: `unwind` (`.eh_frame` over a stack copy) and
//!   `symbolize` (frames to names), both on `procmaps`.
//! - Outputs: `sink` (text, JSON Lines, log; one per format), on `log` (the
//!   rotating log file).
//! - Hooks: `hooks`, the one table of eBPF programs, their attach points,
//!   the dump-entry ladder and what each loses when missing; `loader`
//!   walks it, and `doctor` and the README are made from it.
//! - Programs: `cli` (flags only), `live` (configuration, enrichment from
//!   /proc, the per-event pipeline and the loop; with `loader`, the only
//!   place aya and tokio meet the rest), `report` (logs after the fact),
//!   `doctor` (the host, without tracing).

pub mod chain;
pub mod cli;
pub mod container;
pub mod core_location;
pub mod core_pattern;
pub mod coredump_conf;
pub mod correlate;
pub mod decode;
pub mod diag;
pub mod doctor;
pub mod event;
pub mod hooks;
pub mod layout;
pub mod live;
pub mod loader;
pub mod log;
pub mod modfile;
pub mod procmaps;
pub mod record;
pub mod render;
pub mod report;
pub mod scope;
pub mod sink;
pub mod stack;
pub mod symbolize;
pub mod unwind;
pub mod verdict;
pub mod watched;

/// The check of records against the published JSON Schema, shared with the
/// privileged tests (one file, so the unit tests and those check alike).
#[cfg(test)]
#[path = "../tests/common/schema.rs"]
#[allow(dead_code)]
mod schema_check;

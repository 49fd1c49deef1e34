//! crashtrace: an eBPF tracer of crashes, core dumps and their collectors.
//!
//! Pure modules (no aya, no tokio): `event`, `decode`, `chain`, `correlate`,
//! `verdict`, `core_pattern`, `record`, `output`, `cli`, `layout`'s parsers,
//! `hooks` (the table of hooks). Kernel-facing: `loader`, which walks that
//! table. The live loop: `runtime`.

pub mod chain;
pub mod cli;
pub mod core_pattern;
pub mod correlate;
pub mod decode;
pub mod doctor;
pub mod event;
pub mod hooks;
pub mod layout;
pub mod loader;
pub mod log;
pub mod output;
pub mod record;
pub mod report;
pub mod runtime;
pub mod stack;
pub mod symbolize;
pub mod unwind;
pub mod verdict;
pub mod watched;

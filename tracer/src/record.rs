//! The JSON Lines records: the stable, versioned wire form shared by
//! `--json`, `--log` and `crashtrace report`. Every line carries `"v"`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{chain::Chain, core_pattern::CoreSettings, event::Event};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub v: u32,
    #[serde(flatten)]
    pub record: Record,
}

impl Line {
    pub fn new(record: Record) -> Line {
        Line { v: crate::event::SCHEMA_VERSION, record }
    }

    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys,
        // no custom Serialize impls that error.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"v\":1,\"type\":\"error\",\"error\":{:?}}}", e.to_string()))
    }
}

/// Every other JSON document crashtrace prints (`report`'s lines, `doctor
/// --json`): the same `"v"` and `"type"` as a [`Line`], then the body's fields.
#[derive(Debug, Serialize)]
pub struct Document<'a, T: Serialize> {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub body: &'a T,
}

impl<'a, T: Serialize> Document<'a, T> {
    pub fn new(kind: &'static str, body: &'a T) -> Document<'a, T> {
        Document { v: crate::event::SCHEMA_VERSION, kind, body }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    /// First record of a stream or log file.
    Header(Header),
    Event(EventRecord),
    /// A finished crash chain with its verdict.
    Verdict(Box<Chain>),
    /// Events the kernel or user space could not deliver.
    Loss(Loss),
    /// Last record, at a clean stop.
    Summary(Summary),
    /// The watched pid's state changed (`--pid`).
    Watched(Watched),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Watched {
    pub ts_ns: u64,
    pub pid: u32,
    /// "running", "handling-crash", "frozen-in-crash-handler" or "exited".
    pub state: String,
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Wall-clock time, ns since the Unix epoch (from the monotonic stamp).
    pub wall_ns: u64,
    /// The crash chain this event belongs to after the fact, e.g. the
    /// teardown of a crashed process's cgroup.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chain: Option<u64>,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    pub name: String,
    /// "attached", "unavailable" or "disabled".
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub tracer_version: String,
    pub kernel: String,
    pub hostname: String,
    pub boot_id: String,
    /// Wall-clock ns at start, and the monotonic ns at the same instant.
    pub start_wall_ns: u64,
    pub start_mono_ns: u64,
    /// How dump starts are seen: "fentry/vfs_coredump", "kprobe/do_coredump", "inferred".
    pub dump_mode: String,
    pub dump_mode_reason: String,
    pub hooks: Vec<Hook>,
    pub core_settings: Option<CoreSettings>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub watched_pid: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loss {
    pub ts_ns: u64,
    /// "kernel" (ring buffer full) or "user" (undecodable records).
    pub source: String,
    /// Lost in this interval, per event kind.
    pub counts: BTreeMap<String, u64>,
    pub total: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub events: u64,
    pub chains: u64,
    pub verdicts: BTreeMap<String, u64>,
    pub kernel_said_dumped_but_dropped: u64,
    pub lost_kernel: u64,
    pub decode_errors: u64,
    pub log_write_failures: u64,
    /// Correlation state entries (open chains and their indexes) right after
    /// attach, at the largest seen, and just before the final flush: the
    /// evidence that the state stays bounded however many processes come and go.
    #[serde(default)]
    pub state_size_start: u64,
    #[serde(default)]
    pub state_size_peak: u64,
    #[serde(default)]
    pub state_size_end: u64,
}

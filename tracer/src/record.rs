//! The JSON Lines records: the stable, versioned wire form shared by
//! `--json`, `--log` and `crashtrace report`. Every line carries `"v"`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{chain::Chain, core_pattern::CoreSettings, event::Event};

/// One line of JSON Lines. Besides the record, each line the live tracer
/// writes says who wrote it and where it stands, so a line shipped on its
/// own (a log shipper, a journal) still says which host, boot and run it
/// is from: `run`, `seq`, `time` and `host`, and a record about a crash
/// chain names it in a way unique across runs and hosts (`chain_uid`). All
/// optional: older logs lack them, and `--json` from tests or tools may too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The schema version. A record without one is read as version 1, the
    /// first: readers take every version up to their own.
    #[serde(default = "first_version")]
    pub v: u32,
    /// In a header copied into a rotated-in file: that file's number within
    /// the run (1, 2, ...), so no two files start with the same bytes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<u64>,
    /// The run id: 128 random bits in hex, made at start.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run: Option<String>,
    /// The record's number within the run, from 0 (the header), one more
    /// for every record.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub seq: Option<u64>,
    /// Wall-clock time the record was made, RFC 3339 UTC with nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host: Option<Host>,
    /// The chain this record is about (a verdict's own chain; an event's
    /// `chain`), named across runs and hosts: see [`chain_uid`].
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chain_uid: Option<String>,
    /// A verdict's `linked_to` chain, named the same way.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub linked_chain_uid: Option<String>,
    #[serde(flatten)]
    pub record: Record,
}

fn first_version() -> u32 {
    1
}

/// A chain's name across runs and hosts: the run id, a dash, and the
/// chain's id within the run (`RUN-ID`). The run id is 128 random bits made
/// at start, so no two runs share one whichever host they are on; the id
/// is unique within the run. Made from the record's own fields, the name is
/// the same wherever the chain is mentioned, and when `report` reads the log
/// again.
pub fn chain_uid(run: &str, id: u64) -> String {
    format!("{run}-{id}")
}

/// The chains a record is about: its own (a verdict's, or the one an event
/// belongs to) and the one a verdict is linked to.
fn chains_of(record: &Record) -> (Option<u64>, Option<u64>) {
    match record {
        Record::Verdict(c) => (Some(c.id), c.linked_to),
        Record::Event(e) => (e.chain, None),
        _ => (None, None),
    }
}

/// The host a record comes from, in few bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    /// /proc/sys/kernel/random/boot_id.
    pub boot: String,
    /// /etc/machine-id; empty if the host has none.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub machine: String,
}

impl Host {
    /// This host, as far as it can be read; what cannot be read is empty.
    pub fn current() -> Host {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
        Host {
            name: read("/proc/sys/kernel/hostname"),
            boot: read("/proc/sys/kernel/random/boot_id"),
            machine: read("/etc/machine-id"),
        }
    }
}

/// Stamps a run's records with its identity and their sequence numbers.
#[derive(Clone, Debug)]
pub struct Stamp {
    pub run: String,
    pub host: Host,
    next_seq: u64,
}

impl Stamp {
    pub fn new(run: String, host: Host) -> Stamp {
        Stamp { run, host, next_seq: 0 }
    }

    /// A stamp for this run of this host: a fresh random run id.
    pub fn current() -> Stamp {
        Stamp::new(new_run_id(), Host::current())
    }

    /// The record as a line, with the next sequence number and `wall_ns`
    /// as its time.
    pub fn line(&mut self, record: Record, wall_ns: u64) -> Line {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let (chain, linked) = chains_of(&record);
        Line {
            v: crate::event::SCHEMA_VERSION,
            file: None,
            run: Some(self.run.clone()),
            seq: Some(seq),
            time: Some(crate::report::time::format_utc_ns(wall_ns)),
            host: Some(self.host.clone()),
            chain_uid: chain.map(|id| chain_uid(&self.run, id)),
            linked_chain_uid: linked.map(|id| chain_uid(&self.run, id)),
            record,
        }
    }

    /// A record made outside the run's sequence (the log writer's own
    /// `loss` notes): the run's identity and the time, but no sequence
    /// number, as it is not one of the run's records.
    pub fn unsequenced(&self, record: Record, wall_ns: u64) -> Line {
        let (chain, linked) = chains_of(&record);
        Line {
            v: crate::event::SCHEMA_VERSION,
            file: None,
            run: Some(self.run.clone()),
            seq: None,
            time: Some(crate::report::time::format_utc_ns(wall_ns)),
            host: Some(self.host.clone()),
            chain_uid: chain.map(|id| chain_uid(&self.run, id)),
            linked_chain_uid: linked.map(|id| chain_uid(&self.run, id)),
            record,
        }
    }
}

/// 128 random bits as 32 hex digits, from the kernel's getrandom; if that
/// fails (it does not block for 16 bytes after boot), from the time and pid,
/// which tell runs apart on one host, mixed with the boot id (random per
/// boot), which tells hosts apart: chain names ([`chain_uid`]) rest on it.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        bytes = fallback_run_id(now, std::process::id(), &boot);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The run id when getrandom fails: the boot id's 128 bits (its hex digits)
/// XOR the time and pid.
fn fallback_run_id(now_ns: u128, pid: u32, boot_id: &str) -> [u8; 16] {
    let boot = boot_id.chars().filter_map(|c| c.to_digit(16)).fold(0u128, |acc, d| (acc << 4) | d as u128);
    (boot ^ now_ns ^ ((pid as u128) << 96)).to_le_bytes()
}

impl Line {
    pub fn new(record: Record) -> Line {
        Line {
            v: crate::event::SCHEMA_VERSION,
            file: None,
            run: None,
            seq: None,
            time: None,
            host: None,
            chain_uid: None,
            linked_chain_uid: None,
            record,
        }
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
    /// The tracer is alive (`--heartbeat`): a quiet log is not a dead tracer.
    Heartbeat(Heartbeat),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub ts_ns: u64,
    /// Seconds until the next heartbeat: a reader that sees none for much
    /// longer knows the tracer died.
    pub interval_s: u64,
    /// Events seen so far in this run.
    pub events: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Watched {
    pub ts_ns: u64,
    pub pid: u32,
    pub state: crate::watched::State,
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Wall-clock time, ns since the Unix epoch (from the monotonic stamp).
    pub wall_ns: u64,
    /// The crash chain this event belongs to after the fact: the teardown
    /// of a crashed process's cgroup, or the lookup of its core.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chain: Option<u64>,
    #[serde(flatten)]
    pub event: Event,
}

/// One hook as the header reports it: the name the user sees (for a dump
/// hook, with the kernel function it landed on), and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    pub name: String,
    pub state: HookState,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

impl Hook {
    pub fn new(name: impl Into<String>, state: HookState, detail: Option<String>) -> Hook {
        Hook { name: name.into(), state, detail }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookState {
    Attached,
    /// The kernel or host lacks what the hook needs; `detail` says what.
    Unavailable,
    /// Switched off by a flag (`--coredump-hook=infer`).
    Disabled,
}

impl HookState {
    pub fn as_str(self) -> &'static str {
        match self {
            HookState::Attached => "attached",
            HookState::Unavailable => "unavailable",
            HookState::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for HookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so width flags in the text header line up.
        f.pad(self.as_str())
    }
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
    /// Verdicts journald did not take (`--journal`; absent or down).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub journal_failures: u64,
    /// fsyncs of the log (file or directory) that failed: what they covered
    /// may not be on disk.
    #[serde(default)]
    pub log_sync_failures: u64,
    /// Correlation state entries (open chains and their indexes) right after
    /// attach, at the largest seen, and just before the final flush: the
    /// evidence that the state stays bounded however many processes come and go.
    #[serde(default)]
    pub state_size_start: u64,
    #[serde(default)]
    pub state_size_peak: u64,
    #[serde(default)]
    pub state_size_end: u64,
    /// Lines for stdout or stderr dropped because their reader (journald,
    /// under systemd) did not take them in time; the log has every record.
    #[serde(default)]
    pub output_dropped: u64,
    /// With `--pid` or `--cgroup`: chains that ended but were not shown.
    /// `chains` and `verdicts` count the chains shown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chains_out_of_scope: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_states_keep_their_json_spelling() {
        for (state, text) in
            [(HookState::Attached, "attached"), (HookState::Unavailable, "unavailable"), (HookState::Disabled, "disabled")]
        {
            let hook = Hook::new("tp_btf/x", state, None);
            let json = serde_json::to_string(&hook).unwrap();
            assert_eq!(json, format!(r#"{{"name":"tp_btf/x","state":"{text}"}}"#));
            assert_eq!(serde_json::from_str::<Hook>(&json).unwrap(), hook);
            assert_eq!(format!("{state:<12}|"), format!("{text:<12}|"));
        }
        assert!(serde_json::from_str::<Hook>(r#"{"name":"x","state":"Attached"}"#).is_err());
    }

    #[test]
    fn records_about_a_chain_name_it_by_run_and_id() {
        let run = "ab".repeat(16);
        let mut stamp = Stamp::new(run.clone(), Host { name: "vm".into(), boot: "b".into(), machine: String::new() });
        let event = |chain| {
            Record::Event(EventRecord {
                wall_ns: 1,
                chain,
                event: Event { ts_ns: 1, cpu: 0, task: Default::default(), cgroup_id: 0, body: crate::event::Body::ProcessFork { child: 2 } },
            })
        };
        let mut chain = Chain::new(7, Default::default(), 11, 1);
        chain.linked_to = Some(6);
        let verdict = stamp.line(Record::Verdict(Box::new(chain)), 1);
        assert_eq!(verdict.chain_uid.as_deref(), Some(format!("{run}-7").as_str()));
        assert_eq!(verdict.linked_chain_uid.as_deref(), Some(format!("{run}-6").as_str()));
        let of_chain = stamp.line(event(Some(7)), 1);
        assert_eq!(of_chain.chain_uid, verdict.chain_uid, "the same name in every record about the chain");
        assert_eq!(of_chain.linked_chain_uid, None);
        let plain = stamp.line(event(None), 1);
        assert_eq!((plain.chain_uid, plain.linked_chain_uid), (None, None));
        // Written and read back, the name stays.
        let back: Line = serde_json::from_str(&verdict.to_json()).unwrap();
        assert_eq!(back.chain_uid, verdict.chain_uid);
    }

    #[test]
    fn the_fallback_run_id_tells_hosts_apart_by_their_boot_id() {
        let a = fallback_run_id(1_000, 42, "f2848361-3d96-4619-bace-9a367afaffd9");
        let b = fallback_run_id(1_000, 42, "204c3126-a415-4b4f-ab66-98ba317b2469");
        assert_ne!(a, b, "two hosts starting a run at the same ns with the same pid");
        assert_ne!(a, fallback_run_id(1_001, 42, "f2848361-3d96-4619-bace-9a367afaffd9"));
        assert_ne!(a, fallback_run_id(1_000, 43, "f2848361-3d96-4619-bace-9a367afaffd9"));
        // No boot id to read: time and pid still tell runs apart.
        assert_ne!(fallback_run_id(1, 1, ""), fallback_run_id(2, 1, ""));
        let id = new_run_id();
        assert!(id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
}

//! Where a dumped core ended up: the `core` object a chain carries, and the
//! pure parts of finding it (which collector stores where, the kernel log's
//! and the journal's words about it). The host reads live in
//! [`crate::live::enrich`]; the rules that turn these facts into a verdict
//! are in [`crate::verdict`].
//!
//! Per collector (the pipe helper's program name):
//! - a file pattern: the expanded file; truncated when its size is
//!   RLIMIT_CORE (the kernel stops writing there);
//! - systemd-coredump: `/var/lib/systemd/coredump/core.COMM.UID.BOOTID.PID.USEC[.zst]`,
//!   confirmed by its `user.coredump.pid` xattr; else its journal entry
//!   (`COREDUMP_FILENAME`, `COREDUMP_TRUNCATED`); its reasons for keeping
//!   nothing come from the journal or the kernel log, else coredump.conf;
//! - apport: `/var/crash/*.crash` naming the pid (best effort);
//! - corekeeper: `/var/crash/*` files whose name holds the pid (best effort);
//! - any other helper: its store is unknown, so its exit status is all there
//!   is (`found_by: collector-exit`);
//! - an `@` socket: the kernel handed the core over; what the receiver kept
//!   is not knowable from here.

use serde::{Deserialize, Serialize};

tracer_common::named_enum! {
    serde
    /// How a core was found.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum FoundBy {
        /// The file core_pattern names, expanded.
        FilePattern => "file-pattern",
        /// systemd-coredump's file, its xattrs naming the crasher.
        SystemdCoredumpFile => "systemd-coredump-file",
        /// systemd-coredump's journal entry (COREDUMP_FILENAME).
        Journal => "journal",
        Apport => "apport",
        Corekeeper => "corekeeper",
        /// An `@` socket: the kernel's word that it sent the core.
        Socket => "socket",
        /// A helper crashtrace knows no store of: its exit status 0.
        CollectorExit => "collector-exit",
    }
}

/// Where the core is, or what was looked at when it is nowhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreLocation {
    /// The core's file (or socket); None when no store holds it.
    #[serde(default)]
    pub path: Option<String>,
    /// Bytes on disk (compressed for systemd-coredump's `.zst` files).
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub found_by: Option<FoundBy>,
    /// The collector is one whose store crashtrace knows, so a core not
    /// found there was not kept.
    #[serde(default)]
    pub known_store: bool,
    /// Where it was looked for, when not found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub searched: Vec<String>,
    /// The collector's own reason for keeping nothing (its log line), or the
    /// configuration that explains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded: Option<String>,
    /// What else is worth knowing (e.g. what cannot be known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CoreLocation {
    pub fn found(path: String, size: Option<u64>, truncated: bool, found_by: FoundBy) -> CoreLocation {
        CoreLocation { path: Some(path), size, truncated, found_by: Some(found_by), known_store: true, searched: Vec::new(), discarded: None, note: None }
    }

    /// Nothing found in a store crashtrace knows.
    pub fn missing(searched: Vec<String>, discarded: Option<String>) -> CoreLocation {
        CoreLocation { path: None, size: None, truncated: false, found_by: None, known_store: true, searched, discarded, note: None }
    }

    /// A core taken on the collector's or the kernel's word.
    pub fn on_word(found_by: FoundBy, path: Option<String>, note: &str) -> CoreLocation {
        CoreLocation { path, size: None, truncated: false, found_by: Some(found_by), known_store: false, searched: Vec::new(), discarded: None, note: Some(note.to_string()) }
    }

    pub fn is_found(&self) -> bool {
        self.path.is_some() || self.found_by.is_some()
    }

    /// "path (N bytes, truncated)" for messages.
    pub fn describe(&self) -> String {
        let mut s = self.path.clone().unwrap_or_else(|| "(no path)".into());
        let mut extra = Vec::new();
        if let Some(n) = self.size {
            extra.push(format!("{n} bytes"));
        }
        if self.truncated {
            extra.push("truncated".into());
        }
        if let Some(f) = self.found_by {
            extra.push(format!("found by {f}"));
        }
        if !extra.is_empty() {
            s.push_str(&format!(" ({})", extra.join(", ")));
        }
        s
    }
}

/// The collectors whose stores crashtrace knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collector {
    SystemdCoredump,
    Apport,
    Corekeeper,
    Other,
}

/// Which collector a pipe helper is, by its program's name.
pub fn collector_of(helper: &str) -> Collector {
    let base = helper.rsplit('/').next().unwrap_or(helper);
    match base {
        "systemd-coredump" => Collector::SystemdCoredump,
        "apport" => Collector::Apport,
        b if b.contains("corekeeper") || helper.contains("/corekeeper/") => Collector::Corekeeper,
        _ => Collector::Other,
    }
}

/// A /dev/kmsg record: "PRIO,SEQ,USEC,FLAGS;MESSAGE". Returns the
/// monotonic time in ns and the message.
pub fn parse_kmsg(record: &str) -> Option<(u64, &str)> {
    let (head, msg) = record.split_once(';')?;
    let usec: u64 = head.split(',').nth(2)?.parse().ok()?;
    Some((usec.saturating_mul(1000), msg.lines().next().unwrap_or("")))
}

/// systemd-coredump's lines in the kernel log (it logs there when no
/// journal takes its messages) at or after `since_ns`, that explain a core
/// not kept. Newest last, at most `max`.
pub fn coredump_kmsg_reasons<'a>(records: impl Iterator<Item = &'a str>, since_ns: u64, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in records {
        let Some((ts, msg)) = parse_kmsg(r) else { continue };
        if ts < since_ns || !msg.starts_with("systemd-coredump[") {
            continue;
        }
        let lower = msg.to_ascii_lowercase();
        if lower.contains("not be stored") || lower.contains("not storing") || lower.contains("too large") || lower.contains("disable") || lower.contains("failed") || lower.contains("skipping") {
            out.push(msg.to_string());
            if out.len() > max {
                out.remove(0);
            }
        }
    }
    out
}

/// What one `journalctl -o json` entry of systemd-coredump says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalCoredump {
    pub filename: Option<String>,
    pub truncated: bool,
    pub message: Option<String>,
}

/// Parses the last entry of `journalctl -o json` output for COREDUMP_PID=pid.
pub fn parse_journal(text: &str, pid: u32) -> Option<JournalCoredump> {
    let pid_s = pid.to_string();
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("COREDUMP_PID").and_then(|p| p.as_str()) != Some(pid_s.as_str()) {
            return None;
        }
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Some(JournalCoredump {
            filename: s("COREDUMP_FILENAME"),
            truncated: s("COREDUMP_TRUNCATED").map(|t| t == "1" || t == "yes").unwrap_or(false),
            message: s("MESSAGE").map(|m| m.lines().next().unwrap_or("").to_string()),
        })
    })
}

/// An apport report names the crasher's pid in its ProcStatus section.
pub fn apport_names_pid(text: &str, pid: u32) -> bool {
    text.lines().any(|l| l.trim_start().strip_prefix("Pid:").map(|p| p.trim() == pid.to_string()).unwrap_or(false))
}

/// Whether an ELF core of `file_size` bytes, whose first bytes are `head`,
/// is cut short: its last PT_LOAD segment ends past the end of the file
/// (the kernel stops writing when RLIMIT_CORE would be passed, so the size
/// alone is below the limit, not at it). None when the header cannot tell
/// (not a 64-bit ELF core, or program headers beyond `head`).
pub fn elf_core_truncated(head: &[u8], file_size: u64) -> Option<bool> {
    if head.len() < 64 || head[..4] != *b"\x7fELF" || head[4] != 2 {
        return None;
    }
    let le = head[5] == 1;
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) });
    let u32_at = |o: usize| {
        head.get(o..o + 4).map(|b| {
            let a = [b[0], b[1], b[2], b[3]];
            if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
        })
    };
    let u64_at = |o: usize| {
        head.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            if le { u64::from_le_bytes(a) } else { u64::from_be_bytes(a) }
        })
    };
    if u16_at(16)? != 4 {
        return None; // not ET_CORE
    }
    let phoff = usize::try_from(u64_at(32)?).ok()?;
    let phentsize = usize::from(u16_at(54)?);
    let phnum = usize::from(u16_at(56)?);
    // PN_XNUM: the count is in section 0; too rare to chase here.
    if phnum == 0xffff || phentsize < 56 {
        return None;
    }
    let mut end = 0u64;
    for i in 0..phnum {
        let o = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(o)? == 1 {
            end = end.max(u64_at(o + 8)?.saturating_add(u64_at(o + 32)?));
        }
    }
    Some(end > file_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectors_by_name() {
        assert_eq!(collector_of("/lib/systemd/systemd-coredump"), Collector::SystemdCoredump);
        assert_eq!(collector_of("/usr/share/apport/apport"), Collector::Apport);
        assert_eq!(collector_of("/usr/lib/corekeeper/dump"), Collector::Corekeeper);
        assert_eq!(collector_of("/usr/local/bin/mycollector"), Collector::Other);
    }

    #[test]
    fn kmsg_lines_after_the_crash() {
        let recs = [
            "6,100,3095000000,-;systemd-coredump[11504]: The core will not be stored: size 21347 is greater than 4096 (the configured maximum)",
            "6,101,3096065670,-;systemd-coredump[11504]: The core will not be stored: size 21347 is greater than 4096 (the configured maximum)",
            "6,102,3096065671,-;systemd-coredump[11564]: Removed old coredump core.sleep.zst.",
            "4,103,3096065672,-;other[1]: core will not be stored",
            "garbage",
        ];
        assert_eq!(parse_kmsg(recs[1]).map(|(t, _)| t), Some(3_096_065_670_000));
        let got = coredump_kmsg_reasons(recs.iter().copied(), 3_096_000_000_000, 4);
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("size 21347 is greater than 4096"), "{got:?}");
        assert!(coredump_kmsg_reasons(recs.iter().copied(), 3_097_000_000_000, 4).is_empty());
    }

    #[test]
    fn journal_entries() {
        let text = concat!(
            "{\"COREDUMP_PID\":\"41\",\"MESSAGE\":\"other\"}\n",
            "{\"COREDUMP_PID\":\"42\",\"COREDUMP_FILENAME\":\"/var/lib/systemd/coredump/core.x.0.b.42.1.zst\",\"COREDUMP_TRUNCATED\":\"1\",\"MESSAGE\":\"Process 42 (x) of user 0 dumped core.\\n\\nStack trace\"}\n",
            "not json\n"
        );
        let j = parse_journal(text, 42).unwrap();
        assert_eq!(j.filename.as_deref(), Some("/var/lib/systemd/coredump/core.x.0.b.42.1.zst"));
        assert!(j.truncated);
        assert_eq!(j.message.as_deref(), Some("Process 42 (x) of user 0 dumped core."));
        assert_eq!(parse_journal(text, 43), None);
    }

    /// A 64-bit little-endian ELF core with the given PT_LOAD (offset, filesz).
    fn elf(loads: &[(u64, u64)]) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[16..18].copy_from_slice(&4u16.to_le_bytes());
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&(loads.len() as u16 + 1).to_le_bytes());
        // A PT_NOTE first, then the loads.
        let mut note = vec![0u8; 56];
        note[..4].copy_from_slice(&4u32.to_le_bytes());
        h.extend(note);
        for (off, sz) in loads {
            let mut p = vec![0u8; 56];
            p[..4].copy_from_slice(&1u32.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[32..40].copy_from_slice(&sz.to_le_bytes());
            h.extend(p);
        }
        h
    }

    #[test]
    fn elf_truncation() {
        let h = elf(&[(4096, 8192), (12288, 4096)]);
        assert_eq!(elf_core_truncated(&h, 16384), Some(false));
        assert_eq!(elf_core_truncated(&h, 16383), Some(true));
        assert_eq!(elf_core_truncated(&h, 20000), Some(false));
        assert_eq!(elf_core_truncated(&h[..100], 16384), None);
        assert_eq!(elf_core_truncated(b"not an elf file at all, not at all, no, not at all, nope, no..", 1), None);
        let mut exec = h.clone();
        exec[16] = 2;
        assert_eq!(elf_core_truncated(&exec, 1), None);
    }

    #[test]
    fn apport_pid() {
        assert!(apport_names_pid("ProblemType: Crash\nProcStatus:\n Name:\tx\n Pid:\t4242\n", 4242));
        assert!(!apport_names_pid("ProcStatus:\n Pid:\t42421\n", 4242));
    }

    #[test]
    fn describes_and_serialises() {
        let l = CoreLocation::found("/cores/core.1".into(), Some(8192), true, FoundBy::FilePattern);
        assert_eq!(l.describe(), "/cores/core.1 (8192 bytes, truncated, found by file-pattern)");
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["found_by"], "file-pattern");
        assert_eq!(json["truncated"], true);
        let back: CoreLocation = serde_json::from_value(json).unwrap();
        assert_eq!(back, l);
        assert!(!CoreLocation::missing(vec!["/d".into()], None).is_found());
    }
}

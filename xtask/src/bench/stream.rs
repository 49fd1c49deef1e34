//! Reading back what crashtrace printed with `--json`: which of the crashes a
//! benchmark made ended in a verdict record, and with which verdict; what the
//! `loss` records and the summary said.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader},
    path::Path,
};

use anyhow::{Context, Result};
use serde_json::Value;

#[derive(Debug, Default)]
pub(super) struct Stream {
    pub event_records: u64,
    /// Verdict records whose crasher is one of ours, by verdict.
    pub ours: BTreeMap<String, u64>,
    /// Our crashes that ended with the expected verdict. Pids are reused in
    /// a long storm, so a pid crashed n times is owed n verdicts.
    pub correct: u64,
    /// Our crashes with no verdict record at all.
    pub missing: u64,
    /// Verdict records for our pids beyond the crashes made (should never happen).
    pub extra: u64,
    /// Verdicts for processes the benchmark did not make (background noise).
    pub others: u64,
    /// The first few of our verdict records with another verdict, in brief.
    pub wrong_samples: Vec<String>,
    pub loss_records: u64,
    /// Sum of the `total` of every loss record.
    pub lost_in_records: u64,
    /// Sum of the `counts` of every loss record, by kind of event.
    pub lost_by_kind: BTreeMap<String, u64>,
    pub summary: Option<Value>,
}

impl Stream {
    /// Our verdicts other than `expected`, as "verdict ×n" words.
    pub(super) fn wrong(&self, expected: &str) -> String {
        let w: Vec<String> =
            self.ours.iter().filter(|(v, _)| *v != expected).map(|(v, n)| format!("{v} ×{n}")).collect();
        w.join(", ")
    }

    pub(super) fn summary_u64(&self, key: &str) -> Option<u64> {
        self.summary.as_ref()?.get(key)?.as_u64()
    }
}

/// The record type of a JSON line, without parsing the whole line. Every
/// record has its `"type":"..."` near the start, after the version and, in
/// records that carry them, the run id, sequence number, time and host (a
/// few hundred bytes); those come before any field of the record's own, so
/// the first `"type":"` is the record's. (Inside a JSON string a quote is
/// escaped, so the pattern cannot come from a value.)
fn record_type(line: &str) -> Option<&str> {
    let mut end = line.len().min(HEAD);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let head = &line[..end];
    let start = head.find("\"type\":\"")? + 8;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// How far into a line its type is looked for.
const HEAD: usize = 1024;

/// How many wrong verdict records to keep.
const SAMPLES: usize = 3;

/// A wrong verdict in a line: pid, verdict, signal, reason, timeline.
fn describe(v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("?").to_string();
    let timeline: Vec<String> = v
        .get("timeline")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|e| e.get("what").and_then(Value::as_str)).map(str::to_string).collect())
        .unwrap_or_default();
    format!(
        "pid {}: {} for {} ({}); timeline: {}",
        v.pointer("/crasher/tgid").and_then(Value::as_u64).unwrap_or(0),
        s("/verdict"),
        s("/signal"),
        s("/reason"),
        timeline.join(" | ")
    )
}

/// Reads a `--json` stream. `ours` lists the pids of the crashes the
/// benchmark made, once per crash, all with command name `comm` (pids are
/// reused, so the name tells our crashers from other processes that had the
/// same pid); `expected` is the verdict each should get.
pub(super) fn read(path: &Path, ours: &[u32], comm: &str, expected: &str) -> Result<Stream> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut owed: HashMap<u32, u64> = HashMap::new();
    for p in ours {
        *owed.entry(*p).or_default() += 1;
    }
    // Per pid: verdict records seen, and how many had the expected verdict.
    let mut got: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut s = Stream::default();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        match record_type(&line) {
            Some("event") => s.event_records += 1,
            Some("verdict") => {
                let v: Value = serde_json::from_str(&line)
                    .with_context(|| format!("a verdict record that is not JSON: {line}"))?;
                let tgid = v.pointer("/crasher/tgid").and_then(Value::as_u64).map(|t| t as u32);
                let their_comm = v.pointer("/crasher/comm").and_then(Value::as_str).unwrap_or("");
                let verdict = v.get("verdict").and_then(Value::as_str).unwrap_or("(none)").to_string();
                match tgid {
                    Some(t) if owed.contains_key(&t) && their_comm == comm => {
                        let e = got.entry(t).or_default();
                        e.0 += 1;
                        e.1 += u64::from(verdict == expected);
                        if verdict != expected && s.wrong_samples.len() < SAMPLES {
                            s.wrong_samples.push(describe(&v));
                        }
                        *s.ours.entry(verdict).or_default() += 1;
                    }
                    _ => s.others += 1,
                }
            }
            Some("loss") => {
                let v: Value =
                    serde_json::from_str(&line).with_context(|| format!("a loss record that is not JSON: {line}"))?;
                s.loss_records += 1;
                s.lost_in_records += v.get("total").and_then(Value::as_u64).unwrap_or(0);
                for (kind, n) in v.get("counts").and_then(Value::as_object).into_iter().flatten() {
                    *s.lost_by_kind.entry(kind.clone()).or_default() += n.as_u64().unwrap_or(0);
                }
            }
            Some("summary") => s.summary = serde_json::from_str(&line).ok(),
            _ => {}
        }
    }
    for (pid, n) in &owed {
        let (seen, right) = got.get(pid).copied().unwrap_or((0, 0));
        s.correct += right.min(*n);
        s.missing += n.saturating_sub(seen);
        s.extra += seen.saturating_sub(*n);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_our_verdicts_and_loss() {
        let dir = std::env::temp_dir().join(format!("xtask-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"v\":1,\"type\":\"header\",\"kernel\":\"x\"}\n",
                "{\"v\":1,\"type\":\"event\",\"ts_ns\":1}\n",
                "{\"v\":1,\"type\":\"verdict\",\"crasher\":{\"pid\":10,\"tgid\":10,\"comm\":\"storm\"},\"verdict\":\"dropped:rlimit-core\"}\n",
                "{\"v\":1,\"type\":\"verdict\",\"crasher\":{\"pid\":11,\"tgid\":11,\"comm\":\"storm\"},\"verdict\":\"unknown\"}\n",
                "{\"v\":1,\"type\":\"verdict\",\"crasher\":{\"pid\":13,\"tgid\":13,\"comm\":\"storm\"},\"verdict\":\"dropped:rlimit-core\"}\n",
                "{\"v\":1,\"type\":\"verdict\",\"crasher\":{\"pid\":13,\"tgid\":13,\"comm\":\"storm\"},\"verdict\":\"dropped:rlimit-core\"}\n",
                "{\"v\":1,\"type\":\"verdict\",\"crasher\":{\"pid\":14,\"tgid\":14,\"comm\":\"storm\"},\"verdict\":\"dropped:rlimit-core\"}\n",
                "{\"v\":1,\"type\":\"verdict\",\"crasher\":{\"pid\":14,\"tgid\":14,\"comm\":\"storm\"},\"verdict\":\"dropped:rlimit-core\"}\n",
                "{\"v\":1,\"type\":\"verdict\",\"crasher\":{\"pid\":99,\"tgid\":99,\"comm\":\"storm\"},\"verdict\":\"no-dump\"}\n",
                "{\"v\":1,\"type\":\"verdict\",\"crasher\":{\"pid\":12,\"tgid\":12,\"comm\":\"cargo\"},\"verdict\":\"no-dump\"}\n",
                "{\"v\":1,\"type\":\"loss\",\"ts_ns\":5,\"source\":\"kernel\",\"counts\":{\"signal-generate\":3},\"total\":3}\n",
                "{\"v\":1,\"type\":\"summary\",\"events\":4,\"lost_kernel\":3}\n",
            ),
        )
        .unwrap();
        // 13 crashed twice (a reused pid) and got two verdicts; 14 crashed
        // once and got two.
        let ours = [10, 11, 12, 13, 13, 14];
        let s = read(&path, &ours, "storm", "dropped:rlimit-core").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.event_records, 1);
        assert_eq!(s.correct, 4);
        assert_eq!(s.wrong("dropped:rlimit-core"), "unknown ×1");
        assert_eq!(s.missing, 1);
        assert_eq!(s.extra, 1);
        // 99 is not ours; 12 is, but that record is another process's.
        assert_eq!(s.others, 2);
        assert_eq!(s.wrong_samples, ["pid 11: unknown for ? (?); timeline: "]);
        assert_eq!((s.loss_records, s.lost_in_records), (1, 3));
        assert_eq!(s.lost_by_kind.get("signal-generate"), Some(&3));
        assert_eq!(s.summary_u64("lost_kernel"), Some(3));
    }

    #[test]
    fn record_type_reads_the_head_only() {
        assert_eq!(record_type("{\"v\":1,\"type\":\"verdict\",\"x\":1}"), Some("verdict"));
        // Records with the run's identity before their type.
        let long = concat!(
            "{\"v\":1,\"run\":\"90ad2aec2eb15eefe4bdf917868da1fc\",\"seq\":268925,",
            "\"time\":\"2026-12-01T13:27:22.323812959Z\",\"host\":{\"name\":\"vm\",",
            "\"boot\":\"204c3126-a415-4b4f-ab66-98ba317b2469\",\"machine\":\"3d1219c7c4c5404aaa1f6d2a48adfda4\"},",
            "\"type\":\"loss\",\"ts_ns\":1}"
        );
        assert_eq!(record_type(long), Some("loss"));
        assert_eq!(record_type("{\"v\":1}"), None);
        assert_eq!(record_type(""), None);
    }
}

//! Tier 1: the OpenTelemetry Collector filelog configuration in
//! `contrib/otel/crashtrace-filelog.yaml` against the records crashtrace
//! writes. No collector runs here (none can be built or installed on this
//! machine), so the test plays the receiver's operators over the recorded
//! fixtures, as written and as a live run stamps them, with what the
//! operators do that matters here: each field path an operator reads must
//! exist in every record it applies to (a `move` from a missing field is an
//! error in the collector), every operator must apply to some record, the
//! time layout must parse each record's `time` to the instant it was
//! stamped with, and the severity mapping must give every verdict its
//! journal priority. The `if` expressions and the Go time layout are
//! interpreted for the subset the file uses; anything else fails the test,
//! so a change to the file is a change to this test.

use std::{collections::BTreeMap, path::PathBuf};

use crashtrace::{
    record::{Heartbeat, Host, Line, Loss, Record, Stamp, Summary, Watched},
    verdict::Verdict,
};
use serde_json::{Map, Value};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/otel/crashtrace-filelog.yaml");
const SERVICE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../xtask/src/dist/crashtrace.toml");

fn config() -> Value {
    let text = std::fs::read_to_string(CONFIG).unwrap_or_else(|e| panic!("{CONFIG}: {e}"));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{CONFIG}: not YAML: {e}"));
    serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{CONFIG}: {e}"))
}

fn receiver(config: &Value) -> &Value {
    let r = &config["receivers"]["filelog/crashtrace"];
    assert!(r.is_object(), "{CONFIG}: no receivers.filelog/crashtrace");
    r
}

fn operators(config: &Value) -> Vec<Value> {
    receiver(config)["operators"].as_array().unwrap_or_else(|| panic!("{CONFIG}: the receiver has no operators")).clone()
}

/// One log line with the instant it was stamped with (None: not stamped).
struct Sample {
    line: String,
    wall_ns: Option<u64>,
}

/// The fixtures as recorded (older: no stamps), the same stamped as a live
/// run stamps them, and stamped records of the kinds the fixtures lack.
fn samples() -> Vec<Sample> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut texts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    texts.sort();
    assert!(texts.len() >= 8, "the fixtures are missing from {}", dir.display());
    let mut out = Vec::new();
    let mut wall = 1_795_723_347_975_060_467u64;
    for (n, text) in texts.iter().enumerate() {
        // Every other run on a host without /etc/machine-id.
        let machine = if n % 2 == 0 { "4b1d0c0ffee04b1d0c0ffee04b1d0c0f".to_string() } else { String::new() };
        let mut stamp = Stamp::new(format!("{n:032x}"), Host { name: "vm".into(), boot: "f2848361-3d96-4619-bace-9a367afaffd9".into(), machine });
        for l in text.lines() {
            out.push(Sample { line: l.to_string(), wall_ns: None });
            let line: Line = serde_json::from_str(l).unwrap();
            // Steps that are not whole milliseconds: every digit of the
            // nanoseconds counts.
            wall += 1_234_567_891;
            out.push(Sample { line: stamp.line(line.record, wall).to_json(), wall_ns: Some(wall) });
        }
        let extra = [
            Record::Heartbeat(Heartbeat { ts_ns: 1, interval_s: 30, events: 4 }),
            Record::Watched(Watched { ts_ns: 2, pid: 1, state: crashtrace::watched::State::Running, evidence: vec![] }),
            Record::Loss(Loss { ts_ns: 3, source: "kernel".into(), counts: BTreeMap::from([("signal-deliver".to_string(), 2)]), total: 2 }),
            Record::Summary(Summary::default()),
        ];
        for r in extra {
            wall += 987_654_321;
            out.push(Sample { line: stamp.line(r, wall).to_json(), wall_ns: Some(wall) });
        }
        // The log writer's own note: stamped, not sequenced.
        wall += 1;
        let note = Record::Loss(Loss { ts_ns: 4, source: "log".into(), counts: BTreeMap::new(), total: 0 });
        out.push(Sample { line: stamp.unsequenced(note, wall).to_json(), wall_ns: Some(wall) });
    }
    out
}

/// A field path of the collector's: `attributes.host.name`,
/// `resource["host.name"]`, `body`.
fn path(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    out.push(rest[..end].to_string());
    rest = &rest[end..];
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[\"") {
            let close = r.find("\"]").unwrap_or_else(|| panic!("unclosed [\" in field {text:?}"));
            out.push(r[..close].to_string());
            rest = &r[close + 2..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            out.push(r[..end].to_string());
            rest = &r[end..];
        } else {
            panic!("the test cannot read field {text:?}: teach path() its syntax");
        }
    }
    assert!(matches!(out[0].as_str(), "attributes" | "resource" | "body"), "field {text:?} is not under attributes, resource or body");
    out
}

/// What the collector holds of one entry.
#[derive(Default)]
struct Entry {
    body: Value,
    attributes: Value,
    resource: Map<String, Value>,
    timestamp_ns: Option<u64>,
    severity: Option<String>,
}

impl Entry {
    fn get(&self, p: &[String]) -> Option<&Value> {
        match p[0].as_str() {
            "body" => p[1..].iter().try_fold(&self.body, |v, k| v.get(k)),
            "attributes" => p[1..].iter().try_fold(&self.attributes, |v, k| v.get(k)),
            "resource" => {
                let (first, more) = p[1..].split_first()?;
                more.iter().try_fold(self.resource.get(first)?, |v, k| v.get(k))
            }
            _ => None,
        }
    }

    fn take(&mut self, p: &[String]) -> Option<Value> {
        let (last, parents) = p[1..].split_last()?;
        let mut v = match p[0].as_str() {
            "attributes" => &mut self.attributes,
            _ => panic!("the test moves only from attributes, not {p:?}"),
        };
        for k in parents {
            v = v.get_mut(k)?;
        }
        v.as_object_mut()?.remove(last)
    }

    fn set(&mut self, p: &[String], value: Value) {
        match (p[0].as_str(), p.len()) {
            ("resource", 2) => {
                self.resource.insert(p[1].clone(), value);
            }
            ("attributes", 2) => {
                self.attributes[&p[1]] = value;
            }
            _ => panic!("the test sets only top-level resource or attribute keys, not {p:?}"),
        }
    }

    /// An operator's `if`: clauses joined by `and`, each `FIELD == "text"`,
    /// `FIELD != "text"` or `FIELD != nil`.
    fn holds(&self, expr: &str) -> bool {
        expr.split(" and ").all(|clause| {
            let (field, op, want) = ["!=", "=="]
                .iter()
                .find_map(|op| clause.split_once(op).map(|(l, r)| (l.trim(), *op, r.trim())))
                .unwrap_or_else(|| panic!("the test cannot read the condition {clause:?}: teach holds() its syntax"));
            let got = self.get(&path(field)).filter(|v| !v.is_null());
            let want = match want {
                "nil" => None,
                w if w.len() >= 2 && w.starts_with('"') && w.ends_with('"') => Some(Value::from(&w[1..w.len() - 1])),
                w => panic!("the test cannot read the value {w:?} in {clause:?}"),
            };
            (got == want.as_ref()) == (op == "==")
        })
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `value` with a Go time layout (the tokens this file's layout
/// uses) into ns since the epoch; Err says where it does not match.
fn parse_go_time(layout: &str, value: &str) -> Result<u64, String> {
    let (mut l, mut v) = (layout, value);
    let (mut year, mut month, mut day, mut hour, mut min, mut sec, mut nanos, mut offset_s) = (0i64, 0i64, 0i64, 0i64, 0i64, 0i64, 0i64, 0i64);
    let digits = |v: &mut &str, n: usize, what: &str| -> Result<i64, String> {
        let d = v.get(..n).filter(|d| d.bytes().all(|b| b.is_ascii_digit())).ok_or_else(|| format!("{what}: {n} digits expected at {v:?}"))?;
        *v = &v[n..];
        Ok(d.parse().unwrap())
    };
    while !l.is_empty() {
        if let Some(r) = l.strip_prefix("2006") {
            year = digits(&mut v, 4, "year")?;
            l = r;
        } else if let Some(r) = l.strip_prefix("Z07:00") {
            if let Some(rest) = v.strip_prefix('Z') {
                v = rest;
            } else {
                let sign = match v.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return Err(format!("zone: Z or ±hh:mm expected at {v:?}")),
                };
                v = &v[1..];
                let h = digits(&mut v, 2, "zone hours")?;
                v = v.strip_prefix(':').ok_or("zone: ':' expected")?;
                let m = digits(&mut v, 2, "zone minutes")?;
                offset_s = sign * (h * 3600 + m * 60);
            }
            l = r;
        } else if let Some(r) = l.strip_prefix(".000000000") {
            v = v.strip_prefix('.').ok_or_else(|| format!("'.' expected at {v:?}"))?;
            nanos = digits(&mut v, 9, "nanoseconds")?;
            l = r;
        } else if let Some(r) = l.strip_prefix("01") {
            month = digits(&mut v, 2, "month")?;
            l = r;
        } else if let Some(r) = l.strip_prefix("02") {
            day = digits(&mut v, 2, "day")?;
            l = r;
        } else if let Some(r) = l.strip_prefix("15") {
            hour = digits(&mut v, 2, "hour")?;
            l = r;
        } else if let Some(r) = l.strip_prefix("04") {
            min = digits(&mut v, 2, "minute")?;
            l = r;
        } else if let Some(r) = l.strip_prefix("05") {
            sec = digits(&mut v, 2, "second")?;
            l = r;
        } else {
            let c = l.chars().next().unwrap();
            if c.is_ascii_alphanumeric() && c != 'T' {
                return Err(format!("layout {layout:?}: the test does not know the element at {l:?}; teach parse_go_time() it"));
            }
            v = v.strip_prefix(c).ok_or_else(|| format!("{c:?} expected at {v:?}"))?;
            l = &l[c.len_utf8()..];
        }
    }
    if !v.is_empty() {
        return Err(format!("left over after the layout: {v:?}"));
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return Err(format!("{value:?} is not a valid time"));
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Ok(secs as u64 * 1_000_000_000 + nanos as u64)
}

fn mapping_of(op: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mapping = op["mapping"].as_object().unwrap_or_else(|| panic!("severity_parser without a mapping: {op}"));
    for (level, values) in mapping {
        let values: Vec<&str> = match values {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap_or_else(|| panic!("mapping value {v} is not text"))).collect(),
            other => panic!("mapping {level}: {other} is neither text nor a list"),
        };
        for v in values {
            assert!(out.insert(v.to_string(), level.clone()).is_none(), "{v} is mapped twice");
        }
    }
    out
}

#[test]
fn the_filelog_operators_read_fields_the_records_have() {
    let config = config();
    let ops = operators(&config);
    let mut applied = vec![0usize; ops.len()];
    let mut stamped_seen = 0;
    for sample in samples() {
        let mut e = Entry { body: Value::from(sample.line.clone()), ..Entry::default() };
        for (i, op) in ops.iter().enumerate() {
            let id = op["id"].as_str().unwrap_or("?");
            let kind = op["type"].as_str().unwrap_or_else(|| panic!("operator {id} has no type"));
            if let Some(cond) = op.get("if") {
                let cond = cond.as_str().unwrap_or_else(|| panic!("operator {id}: if is not text"));
                if !e.holds(cond) {
                    continue;
                }
            }
            applied[i] += 1;
            let read = |e: &Entry, key: &str| -> Value {
                let field = op[key].as_str().unwrap_or_else(|| panic!("operator {id} has no {key}"));
                e.get(&path(field))
                    .filter(|v| !v.is_null())
                    .cloned()
                    .unwrap_or_else(|| panic!("operator {id} reads {field}, which this record lacks: {}", sample.line))
            };
            match kind {
                "json_parser" => {
                    assert_eq!(op["parse_to"], "attributes", "operator {id}");
                    let body = read(&e, "parse_from");
                    let text = body.as_str().unwrap_or_else(|| panic!("operator {id}: the body is not text"));
                    e.attributes = serde_json::from_str(text).unwrap_or_else(|err| panic!("operator {id}: not JSON ({err}): {text}"));
                    assert!(e.attributes.is_object());
                }
                "time_parser" => {
                    assert_eq!(op["layout_type"], "gotime", "operator {id}: the test reads Go layouts only");
                    let layout = op["layout"].as_str().unwrap_or_else(|| panic!("operator {id} has no layout"));
                    let text = read(&e, "parse_from");
                    let text = text.as_str().unwrap_or_else(|| panic!("operator {id}: {text} is not text"));
                    let ns = parse_go_time(layout, text).unwrap_or_else(|err| panic!("operator {id}: layout {layout:?} does not parse {text:?}: {err}"));
                    assert_eq!(Some(ns), sample.wall_ns, "operator {id}: {text:?} read as {ns} ns");
                    e.timestamp_ns = Some(ns);
                }
                "severity_parser" => {
                    assert_eq!(op["preset"], "none", "operator {id}: a preset would map names of its own");
                    let value = read(&e, "parse_from");
                    let value = value.as_str().unwrap_or_else(|| panic!("operator {id}: {value} is not text"));
                    let level = mapping_of(op).get(value).cloned();
                    e.severity = Some(level.unwrap_or_else(|| panic!("operator {id}: no severity for {value:?}: {}", sample.line)));
                }
                "move" | "copy" => {
                    let value = read(&e, "from");
                    let to = path(op["to"].as_str().unwrap_or_else(|| panic!("operator {id} has no to")));
                    if kind == "move" {
                        e.take(&path(op["from"].as_str().unwrap()));
                    }
                    e.set(&to, value);
                }
                "add" => {
                    let field = path(op["field"].as_str().unwrap_or_else(|| panic!("operator {id} has no field")));
                    e.set(&field, op["value"].clone());
                }
                other => panic!("operator {id}: the test does not know operator type {other}; teach it what the type reads"),
            }
        }
        let record: Value = serde_json::from_str(&sample.line).unwrap();
        assert!(e.severity.is_some(), "no severity for {}", sample.line);
        assert_eq!(e.resource.get("service.name"), Some(&Value::from("crashtrace")));
        if sample.wall_ns.is_some() {
            stamped_seen += 1;
            // A stamped record ships with its time, host and run.
            assert_eq!(e.timestamp_ns, sample.wall_ns);
            assert_eq!(e.resource.get("host.name"), Some(&record["host"]["name"]));
            assert_eq!(e.resource.get("crashtrace.boot_id"), Some(&record["host"]["boot"]));
            assert_eq!(e.resource.get("host.id"), record["host"].get("machine"));
            assert_eq!(e.resource.get("service.instance.id"), Some(&record["run"]));
            assert_eq!(e.attributes["run"], record["run"], "the run stays an attribute too");
        } else {
            assert_eq!(e.timestamp_ns, None);
            assert!(!e.resource.contains_key("host.name"));
        }
        if record["type"] == "verdict" {
            assert_eq!(e.attributes["chain_uid"], record["chain_uid"]);
        }
    }
    assert!(stamped_seen > 100, "{stamped_seen} stamped records");
    for (op, n) in ops.iter().zip(&applied) {
        assert!(*n > 0, "operator {} applies to no record crashtrace writes", op["id"]);
    }
}

#[test]
fn every_verdict_gets_its_journal_priority_as_severity() {
    let config = config();
    let ops = operators(&config);
    let op = ops.iter().find(|o| o["id"] == "verdict_severity").expect("a verdict_severity operator");
    assert_eq!(op["parse_from"], "attributes.verdict");
    let mapping = mapping_of(op);
    for v in Verdict::ALL {
        let want = match crashtrace::sink::journal::priority(v) {
            3 => "error",
            4 => "warn",
            6 => "info",
            p => panic!("priority {p} for {v}: give it an OpenTelemetry severity here and in {CONFIG}"),
        };
        assert_eq!(mapping.get(v.as_str()).map(String::as_str), Some(want), "verdict {v}");
    }
    assert_eq!(mapping.len(), Verdict::ALL.len(), "the mapping names verdicts crashtrace does not have: {mapping:?}");
}

#[test]
fn the_go_layout_reader_refuses_what_does_not_match() {
    let layout = "2006-01-02T15:04:05.000000000Z07:00";
    assert_eq!(parse_go_time(layout, "1970-01-01T00:00:01.000000002Z"), Ok(1_000_000_002));
    assert_eq!(parse_go_time(layout, "1970-01-01T01:00:00.000000000+01:00"), Ok(0));
    for bad in ["2026-05-20T00:00:00.001Z", "2026-05-20 00:00:00.000000001Z", "2026-05-20T00:00:00.000000001", "2026-13-20T00:00:00.000000001Z"] {
        assert!(parse_go_time(layout, bad).is_err(), "{bad}");
    }
    assert!(parse_go_time("Mon Jan 2 2006", "Tue Dec 1 2026").is_err(), "unknown layout elements are refused");
}

#[test]
fn the_receiver_reads_the_services_log_and_its_rotated_files() {
    let config = config();
    let r = receiver(&config);
    let service = std::fs::read_to_string(SERVICE_CONFIG).unwrap_or_else(|e| panic!("{SERVICE_CONFIG}: {e}"));
    let log = service
        .lines()
        .find_map(|l| l.strip_prefix("log = ").map(|v| v.trim().trim_matches('"').to_string()))
        .unwrap_or_else(|| panic!("{SERVICE_CONFIG} sets no log"));
    let include: Vec<&str> = r["include"].as_array().expect("include").iter().filter_map(Value::as_str).collect();
    assert!(include.contains(&log.as_str()), "{include:?} lacks the service's log {log}");
    assert!(include.contains(&format!("{log}.*").as_str()), "{include:?} lacks its rotated files");
    // The pipeline uses the receiver, and the storage it names exists.
    let logs = &config["service"]["pipelines"]["logs"];
    assert!(logs["receivers"].as_array().unwrap().contains(&Value::from("filelog/crashtrace")));
    let storage = r["storage"].as_str().expect("storage");
    assert!(config["extensions"].get(storage).is_some(), "extension {storage} is not defined");
    assert!(config["service"]["extensions"].as_array().unwrap().contains(&Value::from(storage)));
}

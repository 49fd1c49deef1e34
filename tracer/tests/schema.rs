//! Tier 1: the published JSON Schema (`schema/crashtrace-v1.schema.json`)
//! against the records crashtrace writes: it is a valid draft 2020-12
//! schema, every recorded fixture matches it (as recorded, and stamped the
//! way a live run stamps records), its enums are the code's names, and a
//! broken record fails the check with the record and the violation.

mod common;

use std::path::PathBuf;

use common::schema::{check_line, closed, published, violations};
use crashtrace::record::{chain_uid, Host, Line, Record, Stamp};
use serde_json::Value;

fn fixtures() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))))
        .collect();
    out.sort();
    assert!(out.len() >= 8, "the recorded fixtures are missing from {}", dir.display());
    out
}

/// The fixture's records as a live run writes them: run, sequence number,
/// time, host and chain names.
fn stamped(text: &str) -> Vec<String> {
    let host = Host { name: "vm".into(), boot: "f2848361-3d96-4619-bace-9a367afaffd9".into(), machine: "0123abcd".into() };
    let mut stamp = Stamp::new("ab".repeat(16), host);
    text.lines()
        .map(|l| {
            let line: Line = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad fixture line ({e}): {l}"));
            stamp.line(line.record, 1_795_723_349_324_311_309).to_json()
        })
        .collect()
}

/// The panic message of `f`, which must panic.
fn panic_text(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("the check accepted a broken record");
    err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

#[test]
fn the_schema_is_valid_draft_2020_12() {
    let schema = published();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("the published schema is not a valid JSON Schema: {e}"));
    jsonschema::meta::validate(&closed(schema)).unwrap_or_else(|e| panic!("the closed schema is not a valid JSON Schema: {e}"));
}

#[test]
fn every_recorded_fixture_line_matches() {
    let mut n = 0;
    for (name, text) in fixtures() {
        for (i, line) in text.lines().enumerate() {
            let wrong = violations(&serde_json::from_str(line).unwrap());
            assert!(wrong.is_empty(), "{name}:{}: {}\nrecord: {line}", i + 1, wrong.join("; "));
            n += 1;
        }
    }
    assert!(n >= 90, "only {n} fixture lines checked");
}

#[test]
fn fixtures_stamped_as_a_live_run_stamps_them_match_and_name_their_chains() {
    for (name, text) in fixtures() {
        for line in stamped(&text) {
            check_line(&line);
            let v: Value = serde_json::from_str(&line).unwrap();
            for field in ["run", "seq", "time", "host"] {
                assert!(v.get(field).is_some(), "{name}: no {field} in {line}");
            }
            if v["type"] == "verdict" {
                let want = chain_uid(&"ab".repeat(16), v["id"].as_u64().unwrap());
                assert_eq!(v["chain_uid"], want.as_str(), "{name}: {line}");
                match v["linked_to"].as_u64() {
                    Some(to) => assert_eq!(v["linked_chain_uid"], chain_uid(&"ab".repeat(16), to).as_str()),
                    None => assert!(v.get("linked_chain_uid").is_none()),
                }
            }
        }
    }
}

#[test]
fn broken_records_fail_with_the_record_and_the_violation() {
    let (_, text) = fixtures().into_iter().find(|(n, _)| n.ends_with("kill-segv.jsonl")).unwrap();
    let lines = stamped(&text);
    let event = lines.iter().find(|l| l.contains("\"event\":\"signal-generate\"")).unwrap().clone();
    let verdict = lines.iter().find(|l| l.contains("\"type\":\"verdict\"")).unwrap().clone();
    check_line(&event);
    check_line(&verdict);
    let edit = |line: &str, f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(line).unwrap();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        // A required field missing.
        (edit(&event, &|v| drop(v.as_object_mut().unwrap().remove("wall_ns"))), "wall_ns"),
        (edit(&verdict, &|v| drop(v.as_object_mut().unwrap().remove("verdict"))), "verdict"),
        (edit(&event, &|v| drop(v["target"].as_object_mut().unwrap().remove("tgid"))), "tgid"),
        // A field of the wrong type.
        (edit(&event, &|v| v["seq"] = Value::from("2")), "seq"),
        (edit(&verdict, &|v| v["sig"] = Value::from("SIGSEGV")), "sig"),
        (edit(&verdict, &|v| v["verdict"] = Value::from("dropped:maybe")), "verdict"),
        (edit(&event, &|v| v["time"] = Value::from("2026-11-30 10:00:00")), "time"),
        (edit(&event, &|v| v["v"] = Value::from(2)), "v"),
        (edit(&event, &|v| v["type"] = Value::from("telemetry")), "type"),
        // A field the schema does not describe: fine for a reader, but a
        // record crashtrace writes must be described in full.
        (edit(&event, &|v| v["undocumented"] = Value::from(1)), "undocumented"),
    ];
    for (line, field) in cases {
        let text = panic_text(|| check_line(&line));
        assert!(text.contains("does not match schema/crashtrace-v1.schema.json"), "{text}");
        assert!(text.contains(&format!("record: {line}")), "the message does not show the record: {text}");
        let (violation, _) = text.split_once("\nrecord: ").unwrap();
        assert!(violation.contains(field), "the violation does not name {field}: {text}");
    }
}

#[test]
fn the_published_schema_lets_readers_meet_unknown_fields() {
    let (_, text) = fixtures().into_iter().find(|(n, _)| n.ends_with("kill-segv.jsonl")).unwrap();
    let mut v: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    v["added_later"] = Value::from("x");
    let open = jsonschema::draft202012::new(&published()).unwrap();
    assert!(open.is_valid(&v), "the published schema must accept fields it does not know");
    assert!(!violations(&v).is_empty(), "the tests' closed copy must refuse them");
}

/// The names in the schema's enums are the code's names, all of them.
#[test]
fn the_schema_enums_are_the_codes_names() {
    let schema = published();
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v["enum"].as_array().unwrap_or_else(|| panic!("no enum in {v}")).iter().map(|s| s.as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let verdict = &schema["$defs"]["part-chain"]["properties"]["verdict"]["anyOf"][0];
    assert_eq!(names(verdict), sorted(crashtrace::verdict::Verdict::ALL.iter().map(|v| v.as_str().to_string()).collect()));
    let state = &schema["$defs"]["watched"]["properties"]["state"];
    assert_eq!(names(state), sorted(crashtrace::watched::State::ALL.iter().map(|v| v.as_str().to_string()).collect()));
    let found = &schema["$defs"]["core-location"]["properties"]["found_by"]["anyOf"][0];
    assert_eq!(names(found), sorted(crashtrace::core_location::FoundBy::ALL.iter().map(|v| v.as_str().to_string()).collect()));
    let runtime = &schema["$defs"]["part-chain"]["properties"]["container"]["properties"]["runtime"];
    assert_eq!(names(runtime), sorted(crashtrace::container::Runtime::ALL.iter().map(|v| v.as_str().to_string()).collect()));
    // Every record type the reader knows, and the report's own, dispatch.
    let types = names(&schema["properties"]["type"]);
    for t in ["header", "event", "verdict", "loss", "summary", "watched", "heartbeat", "gap", "run", "report-summary", "crash"] {
        assert!(types.contains(&t.to_string()), "record type {t} missing from the schema");
        assert!(schema["$defs"].get(t).is_some(), "no definition for record type {t}");
    }
}

/// A record of each kind that the fixtures lack, as the tracer makes it.
#[test]
fn records_the_fixtures_lack_match() {
    let host = Host { name: "vm".into(), boot: "b".into(), machine: String::new() };
    let mut stamp = Stamp::new("cd".repeat(16), host);
    let records = [
        Record::Heartbeat(crashtrace::record::Heartbeat { ts_ns: 5, interval_s: 30, events: 12 }),
        Record::Watched(crashtrace::record::Watched {
            ts_ns: 6,
            pid: 1,
            state: crashtrace::watched::State::FrozenInCrashHandler,
            evidence: vec!["wchan do_pause".into()],
        }),
        Record::Loss(crashtrace::record::Loss { ts_ns: 7, source: "kernel".into(), counts: [("signal-generate".to_string(), 3)].into(), total: 3 }),
        Record::Summary(crashtrace::record::Summary { journal_failures: 1, chains_out_of_scope: 2, ..Default::default() }),
    ];
    for r in records {
        let line = stamp.line(r, 1_795_723_349_000_000_000).to_json();
        check_line(&line);
        // The log writer's own notes carry no sequence number.
        let note = stamp.unsequenced(Record::Loss(crashtrace::record::Loss { ts_ns: 1, source: "log".into(), counts: Default::default(), total: 0 }), 1);
        check_line(&note.to_json());
        // And records of a plain `Line::new` (tests, tools): no stamp at all.
        let plain: Line = serde_json::from_str(&line).unwrap();
        check_line(&Line::new(plain.record).to_json());
    }
}

use serde_json::{Map, Value};

use super::*;
use crate::report::reader::parse_general;

const FIXTURES: &[&str] = &[
    include_str!("../../../tests/fixtures/bin-false.jsonl"),
    include_str!("../../../tests/fixtures/file-stored.jsonl"),
    include_str!("../../../tests/fixtures/handled-reraise.jsonl"),
    include_str!("../../../tests/fixtures/kill-segv.jsonl"),
    include_str!("../../../tests/fixtures/missing-helper.jsonl"),
    include_str!("../../../tests/fixtures/rlimit-core.jsonl"),
    include_str!("../../../tests/fixtures/sigkill.jsonl"),
    include_str!("../../../tests/fixtures/systemd-no-pid1.jsonl"),
];

/// The contract: whatever the fast parse returns, the general parse
/// returns too. Returns whether the fast parse took the line.
fn agrees(text: &str) -> bool {
    match parse(text) {
        Some(fast) => {
            assert_eq!(parse_general(text).as_ref(), Ok(&fast), "the fast parse differs on {text}");
            true
        }
        None => false,
    }
}

fn lines() -> impl Iterator<Item = &'static str> {
    FIXTURES.iter().flat_map(|f| f.lines())
}

/// The same record with the line fields a live tracer writes.
fn stamped(text: &str) -> String {
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else { panic!("fixture line is not an object: {text}") };
    map.insert("run".into(), "0123456789abcdef0123456789abcdef".into());
    map.insert("seq".into(), 7.into());
    map.insert("time".into(), "2026-12-01T00:00:00.000000001Z".into());
    map.insert("host".into(), serde_json::json!({"name": "h", "boot": "b"}));
    map.insert("chain_uid".into(), "0123456789abcdef0123456789abcdef-3".into());
    Value::Object(map).to_string()
}

#[test]
fn takes_the_events_and_verdicts_of_the_fixtures_as_the_general_parse_does() {
    let (mut events, mut verdicts) = (0, 0);
    for line in lines() {
        for text in [line.to_string(), stamped(line)] {
            if agrees(&text) {
                match parse(&text).map(|l| l.record) {
                    Some(Record::Event(_)) => events += 1,
                    Some(Record::Verdict(_)) => verdicts += 1,
                    other => panic!("the fast parse gave {other:?}"),
                }
            }
        }
    }
    // Every fixture has events of the common kinds and a verdict; both forms of each.
    assert!(events >= 2 * 8 * 4, "only {events} events took the fast parse");
    assert!(verdicts >= 2 * 8, "only {verdicts} verdicts took the fast parse");
}

/// Every field of every fixture record removed, made null, or given a value
/// of another type: the fast parse either declines or agrees.
#[test]
fn declines_or_agrees_on_damaged_records() {
    let replacements = [Value::Null, Value::from("x"), Value::from(-1), Value::from(1.5), Value::from(u64::MAX), Value::Bool(true)];
    let mut taken = 0;
    let mut declined = 0;
    for line in lines() {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line) else { panic!("fixture line is not an object: {line}") };
        for key in map.keys() {
            let mut without = map.clone();
            without.remove(key);
            let mut variants: Vec<Map<String, Value>> = vec![without];
            for r in &replacements {
                let mut m = map.clone();
                m.insert(key.clone(), r.clone());
                variants.push(m);
            }
            for m in variants {
                let text = Value::Object(m).to_string();
                if agrees(&text) {
                    taken += 1;
                } else {
                    declined += 1;
                }
            }
        }
    }
    assert!(taken > 0 && declined > 0, "taken {taken}, declined {declined}");
}

#[test]
fn declines_what_it_does_not_handle() {
    let ev = r#"{"v":1,"type":"event","wall_ns":5,"ts_ns":1,"cpu":0,"task":{"pid":1,"tgid":1,"comm":"a"},"cgroup_id":0,"event":"process-fork","child":2}"#;
    assert!(agrees(ev));
    // Another schema version, a duplicate key, an unknown kind, another type.
    for text in [
        ev.replace(r#""v":1"#, r#""v":2"#),
        ev.replace(r#""child":2"#, r#""child":2,"child":3"#),
        ev.replace("process-fork", "core-settings"),
        ev.replace(r#""type":"event""#, r#""type":"loss""#),
        // A guess that the parse proves wrong: the type is elsewhere.
        ev.replace(r#""child":2"#, r#""child":2,"x":{"type":"event"}"#).replace(r#""type":"event","#, ""),
        ev.replace(r#""child":2"#, r#""child":null"#),
    ] {
        assert!(parse(&text).is_none(), "took {text}");
    }
    // Keys of other kinds are ignored, as the general parse ignores them.
    assert!(agrees(&ev.replace(r#""child":2"#, r#""child":2,"sig":11,"nonsense":[1,{"a":2}]"#)));
}

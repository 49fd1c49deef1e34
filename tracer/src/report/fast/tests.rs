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

/// A stack capture and a stack copy as a crash storm's log records them
/// (the copy's bytes cut to 100).
const STACK_CAPTURE: &str = r#"{"v":1,"run":"3976c18a1f59877a68e9e3120b2fff98","seq":4,"time":"2026-12-01T16:34:18.053883805Z","host":{"name":"vm","boot":"204c3126-a415-4b4f-ab66-98ba317b2469","machine":"3d1219c7c4c5404aaa1f6d2a48adfda4"},"type":"event","wall_ns":1796142858053576078,"ts_ns":22863688849307,"cpu":0,"task":{"pid":25953,"tgid":25953,"comm":"storm"},"cgroup_id":1,"event":"stack-capture","sig":11,"user":[94261748685480],"kernel":[],"build_ids":[{"build_id":"bebbacac64756999a64e820d98cd9c3bd3df570a","file_offset":6824}],"ip":94261748685480,"sp":140727068496848,"bp":0}"#;
const STACK_COPY: &str = r#"{"v":1,"run":"3976c18a1f59877a68e9e3120b2fff98","seq":5,"time":"2026-12-01T16:34:18.053918761Z","host":{"name":"vm","boot":"204c3126-a415-4b4f-ab66-98ba317b2469","machine":"3d1219c7c4c5404aaa1f6d2a48adfda4"},"type":"event","wall_ns":1796142858053598069,"ts_ns":22863688871298,"cpu":0,"task":{"pid":25953,"tgid":25953,"comm":"storm"},"cgroup_id":1,"event":"stack-copy","sp":140727068496848,"data":"000000000000000000000000000000000000000000000000e803000000000000a0328a39bb550000000000000000000052495641040000000000000000000000524956410000000000000000000000005445005f5f6c6962050000000600000000000000"}"#;

#[test]
fn takes_recorded_stack_records_as_the_general_parse_does() {
    for text in [STACK_CAPTURE, STACK_COPY] {
        assert!(agrees(text), "declined {text}");
    }
    let Some(Line { record: Record::Event(e), .. }) = parse(STACK_COPY) else { panic!("not an event") };
    let Body::StackCopy { sp, data } = e.event.body else { panic!("not a stack copy") };
    assert_eq!(sp, 140727068496848);
    assert_eq!(data.len(), 100);
    assert_eq!(&data[24..26], &[0xe8, 0x03]);
    // Optional fields missing or null, errnos and empty walks: still the same.
    let sparse = STACK_CAPTURE
        .replace(r#","ip":94261748685480,"sp":140727068496848,"bp":0"#, r#","sp":null,"user_errno":-14,"kernel_errno":-2"#)
        .replace(r#""user":[94261748685480]"#, r#""user":[]"#)
        .replace(r#","build_ids":[{"build_id":"bebbacac64756999a64e820d98cd9c3bd3df570a","file_offset":6824}]"#, "");
    assert!(agrees(&sparse), "declined {sparse}");
    assert!(agrees(&STACK_CAPTURE.replace(r#""build_ids":[{"#, r#""build_ids":[null,{"#).replace(r#""user":[94261748685480]"#, r#""user":[1,94261748685480]"#)));
}

/// Cut anywhere, a stack record is declined (the general parse then says
/// it was truncated); damaged fields decline or agree.
#[test]
fn declines_cut_or_damaged_stack_records() {
    for text in [STACK_CAPTURE, STACK_COPY] {
        for end in (0..text.len()).filter(|&e| text.is_char_boundary(e)) {
            assert!(parse(&text[..end]).is_none(), "took a line cut at {end}: {}", &text[..end]);
            assert!(parse_general(&text[..end]).is_err());
        }
    }
    let damaged = [
        // Odd length, a pair from_str_radix refuses, and one it takes ("+f").
        STACK_COPY.replace(r#""data":"00"#, r#""data":"0"#),
        STACK_COPY.replace(r#""data":"00"#, r#""data":"zz"#),
        STACK_COPY.replace(r#""data":"00"#, r#""data":"+f"#),
        STACK_COPY.replace(r#""data":"00"#, r#""data":"0é"#),
        // An escaped digit: the text cannot be borrowed; declined, then read the general way.
        STACK_COPY.replace(r#""data":"00"#, r#""data":"\u00300"#),
        STACK_COPY.replace(r#""data":"00"#, r#""data":null,"x":"#),
        STACK_COPY.replace(r#","sp":140727068496848"#, ""),
        STACK_COPY.replace(r#""sp":140727068496848"#, r#""sp":null"#),
        STACK_COPY.replace(r#""sp":140727068496848"#, r#""sp":-1"#),
        STACK_CAPTURE.replace(r#""user":[94261748685480]"#, r#""user":[-1]"#),
        STACK_CAPTURE.replace(r#""user":[94261748685480]"#, r#""user":null"#),
        STACK_CAPTURE.replace(r#""kernel":[],"#, ""),
        STACK_CAPTURE.replace(r#""build_ids":["#, r#""build_ids":null,"x":["#),
        STACK_CAPTURE.replace(r#""sig":11"#, r#""sig":11,"sig":11"#),
        STACK_CAPTURE.replace(r#""ip":94261748685480"#, r#""ip":1.5"#),
    ];
    let mut declined = 0;
    for text in &damaged {
        if !agrees(text) {
            declined += 1;
            // Whatever it declined, the general parse reads or refuses as before.
            let _ = parse_general(text);
        }
    }
    assert!(declined >= damaged.len() - 2, "took {} of the damaged lines", damaged.len() - declined);
    // The general parse reads "+f" as a byte and refuses "zz", as it always did.
    assert!(parse_general(&damaged[2]).is_ok());
    assert!(parse_general(&damaged[1]).is_err());
    assert!(parse_general(&damaged[4]).is_ok(), "an escaped hex digit is still hex");
}

/// Names with escapes, control characters and non-ASCII text (a comm is
/// whatever the process set) read the same both ways.
#[test]
fn escaped_and_unicode_names_read_the_same() {
    for comm in [r#"st\u00e9\n\t\"m\\x\u0001"#, "stérm☃", r#"\ud83d\ude00"#, "a\u{7f}b", r#"\/slash"#] {
        for base in [STACK_CAPTURE, STACK_COPY] {
            let text = base.replace(r#""comm":"storm""#, &format!(r#""comm":"{comm}""#));
            assert!(agrees(&text), "declined {text}");
        }
    }
    // A raw control character is not JSON: refused by both.
    let raw = STACK_CAPTURE.replace(r#""comm":"storm""#, "\"comm\":\"st\u{1}orm\"");
    assert!(parse(&raw).is_none());
    assert!(parse_general(&raw).is_err());
}

/// A stack copy of 2 KiB, long enough for its hex to be taken out before
/// the JSON parse.
fn long_copy() -> String {
    let hex: String = crate::event::hex(&(0..=255u8).cycle().take(2048).collect::<Vec<u8>>());
    STACK_COPY.replace(r#""data":"00"#, &format!(r#""data":"{hex}00"#))
}

#[test]
fn a_long_stack_copy_is_read_with_its_hex_taken_out_as_the_general_parse_reads_it() {
    let line = long_copy();
    assert!(split_data(&line).is_some(), "not split");
    assert!(agrees(&line));
    let Some(Line { record: Record::Event(e), .. }) = parse(&line) else { panic!("declined") };
    let Body::StackCopy { data, .. } = e.event.body else { panic!("not a stack copy") };
    assert_eq!(data.len(), 2048 + 100);
    assert_eq!(&data[..3], &[0, 1, 2]);
}

/// Whatever a long line holds around or instead of its hex, taking the hex
/// out gives what the general parse gives, or declines.
#[test]
fn taking_the_hex_out_never_changes_what_a_line_means() {
    let line = long_copy();
    let hex_start = line.find(r#""data":""#).unwrap() + 8;
    let cases = [
        // A second `data` elsewhere: nested in an unknown field, before and after.
        line.replace(r#""cgroup_id":1"#, r#""cgroup_id":1,"x":{"data":"00"}"#),
        line.replace(r#""sp":"#, r#""x":{"data":"zz"},"sp":"#) + "",
        format!("{}{}", &line[..line.len() - 1], r#","x":{"data":""}}"#),
        // Only a nested one: the top level has none, so a copy without bytes is refused.
        line.replace(r#""data":""#, r#""x":{"data":""#).replacen(r#"00"}"#, r#"00"}}"#, 1),
        // The top-level key spelt with an escape, and a literal nested one.
        line.replace(r#""data":""#, r#""d\u0061ta":""#).replacen(r#""cgroup_id":1"#, r#""cgroup_id":1,"y":{"data":"ab"}"#, 1),
        // A top-level key spelt with spaces and a nested one that is not.
        line.replace(r#""data":""#, r#""x":{"data":""#).replacen(r#"00"}"#, r#"00"},"data" : ""}"#, 1),
        // Escapes elsewhere in the line.
        line.replace(r#""comm":"storm""#, r#""comm":"st\"orm""#),
        // A control character, a quote-free non-hex, a "+f" pair, odd length in the hex.
        format!("{}\u{1}{}", &line[..hex_start + 4], &line[hex_start + 5..]),
        format!("{}zz{}", &line[..hex_start + 4], &line[hex_start + 6..]),
        format!("{}+f{}", &line[..hex_start + 4], &line[hex_start + 6..]),
        format!("{}{}", &line[..hex_start + 4], &line[hex_start + 5..]),
        // Another kind with a `data` field it does not have: ignored by both.
        line.replace(r#""event":"stack-copy""#, r#""event":"process-fork","child":2"#),
        // The data key's value not a string.
        line.replace(r#""data":""#, r#""data":["#).replacen(r#"00"}"#, r#"00"]}"#, 1),
    ];
    for text in &cases {
        let fast = parse(text);
        let general = parse_general(text);
        if let Some(fast) = fast {
            assert_eq!(general.as_ref(), Ok(&fast), "differs on {}", &text[..300.min(text.len())]);
        }
    }
    // The copy of another kind is still taken (the whole line parsed).
    assert!(parse(&cases[11]).is_some());
    // "+f" is a byte, as it always was.
    assert!(parse_general(&cases[9]).is_ok());
    // And refused ones stay refused.
    for i in [7, 8, 10] {
        assert!(parse(&cases[i]).is_none() && parse_general(&cases[i]).is_err(), "case {i}");
    }
}

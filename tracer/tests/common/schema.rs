//! Checks crashtrace's JSON Lines against the published schema,
//! `schema/crashtrace-v1.schema.json`. Shared by the privileged tests (every
//! helper that parses crashtrace's JSON output calls [`check_line`]) and the
//! unit tests (the lib includes this file), so one check guards both.
//!
//! Records are checked against a closed copy of the schema: the published
//! one lets any object carry fields it does not name (readers ignore
//! unknown fields), but a field crashtrace writes that the schema does not
//! describe is a schema to update, so the tests refuse it.

use std::sync::OnceLock;

use serde_json::Value;

/// The schema as published.
pub(crate) fn published() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/crashtrace-v1.schema.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}; the schema ships in the repository's schema/"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"))
}

/// The schema with every object closed (`unevaluatedProperties: false`),
/// except the `part-*` definitions, which only make sense composed into a
/// closed one.
pub(crate) fn closed(mut schema: Value) -> Value {
    fn close(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.get("type").is_some_and(|t| t == "object") && !map.contains_key("unevaluatedProperties") {
                    map.insert("unevaluatedProperties".into(), Value::Bool(false));
                }
                for (key, sub) in map.iter_mut() {
                    if key == "$defs"
                        && let Value::Object(defs) = sub
                    {
                        for (name, def) in defs.iter_mut() {
                            if name.starts_with("part-") {
                                // Not closed itself; what it holds may be.
                                if let Some(Value::Object(props)) = def.get_mut("properties") {
                                    props.values_mut().for_each(close);
                                }
                            } else {
                                close(def);
                            }
                        }
                    } else {
                        close(sub);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(close),
            _ => {}
        }
    }
    close(&mut schema);
    schema
}

fn strict() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| jsonschema::draft202012::new(&closed(published())).unwrap_or_else(|e| panic!("the closed schema does not compile: {e}")))
}

/// What is wrong with a record, one line per violation (empty: nothing).
/// A failed part of the schema leaves every field it covers "unevaluated",
/// so those complaints are shown only when nothing else is wrong.
pub(crate) fn violations(record: &Value) -> Vec<String> {
    let (unevaluated, other): (Vec<_>, Vec<_>) = strict()
        .iter_errors(record)
        .map(|e| {
            let is_unevaluated = e.schema_path().to_string().ends_with("/unevaluatedProperties");
            (is_unevaluated, format!("at {:?}: {e} (schema: {})", e.instance_path().to_string(), e.schema_path()))
        })
        .partition(|(u, _)| *u);
    let shown = if other.is_empty() { unevaluated } else { other };
    shown.into_iter().map(|(_, text)| text).collect()
}

/// Panics, naming the record and every violation, unless `line` is one
/// record that the schema describes in full.
pub(crate) fn check_line(line: &str) {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON record ({e}): {line}"));
    let wrong = violations(&value);
    assert!(
        wrong.is_empty(),
        "record does not match schema/crashtrace-v1.schema.json:\n  {}\nrecord: {line}",
        wrong.join("\n  ")
    );
}

//! Judging one release's guest run. The guest reports raw facts
//! (results.txt: `key=value` lines, plus files) and crashtrace's JSON Lines
//! log; this module parses both and decides each check. Pure: text in,
//! checks out.
//!
//! What a check expects comes from what really happened in the guest (the
//! pattern PID 1's crash left behind, whether coredumpctl found a core),
//! so one set of checks serves systemd versions that behave differently.

use std::collections::BTreeMap;

use serde_json::Value;

/// The checks of one run, in scenario order. The ids are the keys of
/// [`EXPECTED_FAILURES`].
pub(super) const CHECKS: &[(&str, &str)] = &[
    ("guest-finished", "the guest ran every scenario and shipped its results"),
    ("crashtrace-started", "crashtrace wrote its header before the first crash"),
    ("a.stored", "a healthy crash: crashtrace says `stored`"),
    ("a.coredumpctl", "a healthy crash: coredumpctl finds the core"),
    ("b.pid1-faulted", "gdb made PID 1 fault: systemd logged `Caught <SEGV>`"),
    ("b.pid1-handled", "PID 1's fault at 0: `handled`, origin fault, SEGV_MAPERR at 0x0"),
    ("b.child-linked", "the crash child's chain is linked to PID 1's with the verdict that really happened"),
    ("b.pattern-writer", "the `|/bin/false` write is a sysctl-write by systemd-coredump"),
    ("b.watched-handling", "PID 1's watched state went through `handling-crash`"),
    ("b.watched-frozen", "PID 1's watched state ends `frozen-in-crash-handler`"),
    ("c.verdict", "the next crash gets the verdict that really happened (`dropped:core-pattern-discards` after `|/bin/false`)"),
    ("c.set-by", "the discarding pattern is attributed to systemd-coredump (`core_pattern_set_by`)"),
    ("c.kernel-said-dumped", "the dropped core still has `kernel_said_dumped: true`"),
    ("d.verdict", "systemd's pattern restored by hand: `dropped:collector-unreachable-pid1`"),
    ("d.econnrefused", "the collector's connect failed with ECONNREFUSED"),
    ("e.doctor-exit", "`crashtrace doctor` after the freeze exits 1"),
    ("e.doctor-names", "doctor names the discarding pattern and the dead socket"),
    ("e.doctor-after-restore", "doctor with systemd's pattern back names the dead socket and exits 1"),
];

/// Checks that fail today because of known crashtrace bugs, keyed by
/// (release, check id), with the reason. A listed check that fails does not
/// fail the tier; one that passes is reported as XPASS so the entry can go.
///
/// Empty: every crashtrace bug this tier found is fixed. A new entry is
/// `(release, check id, reason)`, the reason naming the bug.
pub(super) const EXPECTED_FAILURES: &[(&str, &str, &str)] = &[];

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Status {
    Pass,
    Fail,
    /// Failed, and listed in [`EXPECTED_FAILURES`].
    ExpectedFail(&'static str),
    /// Passed, though listed in [`EXPECTED_FAILURES`].
    UnexpectedPass(&'static str),
    /// What the check is about did not happen on this systemd (say why).
    NotApplicable,
}

impl Status {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::ExpectedFail(_) => "xfail",
            Status::UnexpectedPass(_) => "XPASS",
            Status::NotApplicable => "n/a",
        }
    }
    /// Whether the tier may pass with this result.
    pub(super) fn ok(&self) -> bool {
        !matches!(self, Status::Fail)
    }
}

#[derive(Clone, Debug)]
pub(super) struct Check {
    pub id: &'static str,
    pub status: Status,
    pub detail: String,
}

/// The guest's facts: `key=value` lines, the last value of a key winning.
pub(super) fn parse_facts(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// crashtrace's records; lines that are not JSON objects are counted, not
/// fatal (a torn last line is possible when the guest powers off).
pub(super) fn parse_records(text: &str) -> (Vec<Value>, usize) {
    let mut bad = 0;
    let records = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => Some(v),
            _ => {
                bad += 1;
                None
            }
        })
        .collect();
    (records, bad)
}

/// What one run left: facts, records, doctor's output.
#[derive(Debug, Default)]
pub(super) struct Evidence {
    pub facts: BTreeMap<String, String>,
    pub records: Vec<Value>,
    pub bad_lines: usize,
    pub doctor: String,
    /// doctor's output once systemd's pattern is back.
    pub doctor_after_restore: String,
    /// Set when the guest produced no results at all.
    pub missing: Option<String>,
}

impl Evidence {
    fn fact(&self, key: &str) -> Option<&str> {
        self.facts.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn pid(&self, key: &str) -> Option<u64> {
        self.fact(key)?.parse().ok()
    }
    fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.records.iter().filter(move |r| r["type"] == ty)
    }
    /// The last verdict record of a crash of `pid`.
    pub(super) fn verdict_of(&self, pid: u64) -> Option<&Value> {
        self.of_type("verdict").filter(|r| r["crasher"]["pid"].as_u64() == Some(pid)).last()
    }
    fn watched_states(&self, pid: u64) -> Vec<String> {
        self.of_type("watched")
            .filter(|r| r["pid"].as_u64() == Some(pid))
            .filter_map(|r| r["state"].as_str().map(str::to_string))
            .collect()
    }
    /// sysctl-write events that set core_pattern to `value`, as "comm[pid]".
    fn pattern_writes(&self, value: &str) -> Vec<String> {
        self.of_type("event")
            .filter(|r| r["event"] == "sysctl-write")
            .filter(|r| field(r, "name").is_some_and(|n| n.as_str().is_some_and(|n| n.contains("core_pattern"))))
            .filter(|r| field(r, "new_value").and_then(Value::as_str).map(str::trim) == Some(value))
            .map(|r| format!("{}[{}]", r["task"]["comm"].as_str().unwrap_or("?"), r["task"]["pid"]))
            .collect()
    }
}

/// A kind's field, whether the record flattens it or nests it under the
/// kind's name.
fn field<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    record.get(name).or_else(|| record.as_object()?.values().find_map(|v| v.as_object()?.get(name)))
}

/// systemd-coredump's comm, cut to the kernel's 15 characters.
const COLLECTOR_COMM: &str = "systemd-coredum";
const DISCARD: &str = "|/bin/false";

fn summary(v: &Value) -> String {
    format!(
        "chain #{} {}[{}]: {} ({})",
        v["id"],
        v["crasher"]["comm"].as_str().unwrap_or("?"),
        v["crasher"]["pid"],
        v["verdict"].as_str().unwrap_or("?"),
        v["reason"].as_str().unwrap_or("")
    )
}

/// Decides every check of [`CHECKS`] for one release's run.
pub(super) fn evaluate(release: &str, ev: &Evidence) -> Vec<Check> {
    evaluate_with(release, ev, EXPECTED_FAILURES)
}

/// [`evaluate`] against a given expected-failure table.
fn evaluate_with(release: &str, ev: &Evidence, expected: &[(&str, &str, &'static str)]) -> Vec<Check> {
    let mut raw: Vec<(&'static str, Option<bool>, String)> = Vec::new();
    let mut put = |id: &'static str, pass: Option<bool>, detail: String| raw.push((id, pass, detail));

    match &ev.missing {
        Some(why) => put("guest-finished", Some(false), why.clone()),
        None => put(
            "guest-finished",
            Some(ev.fact("done").is_some()),
            format!("{} facts, {} records, {} unreadable lines", ev.facts.len(), ev.records.len(), ev.bad_lines),
        ),
    }
    let header = ev.of_type("header").next();
    put(
        "crashtrace-started",
        Some(header.is_some() && ev.fact("crashtrace_ready").is_some_and(|v| v != "no")),
        match header {
            Some(h) => format!("dump_mode {}", h["dump_mode"].as_str().unwrap_or("?")),
            None => "no header record in /var/log/crashtrace.jsonl".into(),
        },
    );

    // a. healthy
    let a = ev.pid("a.crasher_pid").and_then(|p| ev.verdict_of(p));
    put("a.stored", Some(a.is_some_and(|v| v["verdict"] == "stored")), a.map(summary).unwrap_or_else(|| "no verdict for the crasher".into()));
    let a_storage = ev.fact("a.coredumpctl_storage");
    put("a.coredumpctl", Some(a_storage.is_some_and(|s| s.starts_with('/'))), format!("Storage: {}", a_storage.unwrap_or("none")));

    // b. PID 1 faults
    let caught = ev.fact("b.caught_line").unwrap_or("");
    put("b.pid1-faulted", Some(caught.contains("SEGV")), format!("gdb rc {}, PID 1 logged {caught:?}", ev.fact("b.gdb_rc").unwrap_or("?")));
    let pid1 = ev.verdict_of(1);
    put(
        "b.pid1-handled",
        Some(pid1.is_some_and(|v| {
            v["verdict"] == "handled" && v["origin"] == "fault" && v["fault_addr"].as_u64() == Some(0) && v["code"].as_i64() == Some(1)
        })),
        pid1.map(|v| format!("{}, origin {}, code {}, fault_addr {}", summary(v), v["origin"], v["code"], v["fault_addr"]))
            .unwrap_or_else(|| "no verdict for PID 1".into()),
    );
    match (pid1, ev.pid("b.crash_child")) {
        (_, None) => put("b.child-linked", None, "systemd named no crash child".into()),
        (None, Some(child)) => put("b.child-linked", Some(false), format!("no chain for PID 1, so none for its crash child {child} to link to")),
        (Some(p), Some(child)) => {
            let truth = if ev.fact("b.coredumpctl_storage").is_some_and(|s| s.starts_with('/')) { "stored" } else { "dropped:" };
            let linked = ev.of_type("verdict").filter(|v| v["linked_to"] == p["id"]).find(|v| v["crasher"]["pid"].as_u64() == Some(child));
            put(
                "b.child-linked",
                Some(linked.is_some_and(|v| v["verdict"].as_str().is_some_and(|s| s.starts_with(truth)))),
                match linked {
                    Some(v) => format!("{}; coredumpctl says {}", summary(v), ev.fact("b.coredumpctl_storage").unwrap_or("none")),
                    None => match ev.verdict_of(child) {
                        Some(v) => format!("the child's {} has linked_to {}, not PID 1's chain #{}", summary(v), v["linked_to"], p["id"]),
                        None => format!("no chain for crash child {child}"),
                    },
                },
            );
        }
    }
    let frozen_pattern = ev.fact("b.core_pattern").unwrap_or("");
    let discarding = frozen_pattern == DISCARD;
    if discarding {
        let writers = ev.pattern_writes(DISCARD);
        put(
            "b.pattern-writer",
            Some(writers.iter().any(|w| w.starts_with(COLLECTOR_COMM))),
            format!("writes of {DISCARD}: {}", if writers.is_empty() { "none seen".into() } else { writers.join(", ") }),
        );
    } else {
        put("b.pattern-writer", None, format!("the pattern after PID 1's crash is {frozen_pattern:?}: nothing wrote {DISCARD}"));
    }
    let states = ev.watched_states(1);
    let shown = if states.is_empty() { "no watched record for pid 1".to_string() } else { states.join(" -> ") };
    put("b.watched-handling", Some(states.iter().any(|s| s == "handling-crash")), shown.clone());
    if ev.fact("b.frozen_after").and_then(|s| s.parse::<u32>().ok()).is_some_and(|n| n < 120) {
        put(
            "b.watched-frozen",
            Some(states.last().is_some_and(|s| s == "frozen-in-crash-handler")),
            format!(
                "{shown}; PID 1 logged \"Freezing execution\", sleeps in {} with {} fds",
                ev.fact("b.pid1_wchan").unwrap_or("?"),
                ev.fact("b.pid1_fds").unwrap_or("?")
            ),
        );
    } else {
        put("b.watched-frozen", None, "PID 1 did not log \"Freezing execution\"".into());
    }

    // c. the next crash
    let c = ev.pid("c.crasher_pid").and_then(|p| ev.verdict_of(p));
    let c_pattern = ev.fact("c.core_pattern").unwrap_or("");
    let c_stored = ev.fact("c.coredumpctl_storage").is_some_and(|s| s.starts_with('/'));
    let c_truth = if c_pattern == DISCARD {
        Some("dropped:core-pattern-discards")
    } else if c_stored {
        Some("stored")
    } else {
        None
    };
    let c_detail = |extra: String| match c {
        Some(v) => format!("{}{extra}", summary(v)),
        None => "no verdict for the crasher".into(),
    };
    match c_truth {
        Some(t) => put("c.verdict", Some(c.is_some_and(|v| v["verdict"] == t)), c_detail(format!("; expected {t} (pattern {c_pattern:?})"))),
        None => put("c.verdict", Some(false), c_detail(format!("; pattern {c_pattern:?} and no stored core: the guest's facts do not say what happened"))),
    }
    if c_pattern == DISCARD {
        let by = c.map(|v| &v["core_pattern_set_by"]);
        put(
            "c.set-by",
            Some(by.is_some_and(|b| b["writer"]["comm"].as_str().is_some_and(|s| s.starts_with(COLLECTOR_COMM)))),
            format!("core_pattern_set_by {}", by.map(Value::to_string).unwrap_or_else(|| "-".into())),
        );
        put("c.kernel-said-dumped", Some(c.is_some_and(|v| v["kernel_said_dumped"] == true)), c_detail(String::new()));
    } else {
        put("c.set-by", None, format!("the pattern is {c_pattern:?}: nothing discards"));
        put("c.kernel-said-dumped", None, format!("the pattern is {c_pattern:?}: nothing discards"));
    }

    // d. the pattern put back by hand
    let d = ev.pid("d.crasher_pid").and_then(|p| ev.verdict_of(p));
    let d_socket = ev.fact("d.coredump_socket").unwrap_or("?");
    let d_stored = ev.fact("d.coredumpctl_storage").is_some_and(|s| s.starts_with('/'));
    let d_detail = match d {
        Some(v) => format!("{}; the socket was {d_socket}", summary(v)),
        None => format!("no verdict for the crasher; the socket was {d_socket}"),
    };
    if d_stored {
        put("d.verdict", Some(d.is_some_and(|v| v["verdict"] == "stored")), format!("{d_detail}; coredumpctl found the core"));
        put("d.econnrefused", None, "the collector reached its socket".into());
    } else {
        put("d.verdict", Some(d.is_some_and(|v| v["verdict"] == "dropped:collector-unreachable-pid1")), d_detail);
        let text = d.map(|v| v["collector"].to_string()).unwrap_or_default();
        put(
            "d.econnrefused",
            Some(text.contains("ECONNREFUSED") || text.contains("-111")),
            format!("collector {}", if text.is_empty() { "-".into() } else { text }),
        );
    }

    // e. doctor
    let rc = ev.fact("e.doctor_rc").unwrap_or("?");
    put("e.doctor-exit", Some(rc == "1"), format!("exit {rc}"));
    let names_pattern = !discarding || ev.doctor.contains(DISCARD);
    let names_socket = ev.doctor.contains("/run/systemd/coredump")
        && ["ECONNREFUSED", "no process listens", "refused"].iter().any(|w| ev.doctor.contains(w));
    put(
        "e.doctor-names",
        Some(names_pattern && names_socket),
        format!(
            "{}; dead socket {}",
            if discarding { format!("{DISCARD} {}", if names_pattern { "named" } else { "NOT named" }) } else { "no discarding pattern".into() },
            if names_socket { "named" } else { "NOT named" }
        ),
    );

    let rc = ev.fact("d.doctor_rc").unwrap_or("?");
    let names_socket = ev.doctor_after_restore.contains("/run/systemd/coredump")
        && ["ECONNREFUSED", "no process listens", "refused"].iter().any(|w| ev.doctor_after_restore.contains(w));
    if ev.fact("d.coredump_socket").is_some_and(|s| s != "connectable") {
        put(
            "e.doctor-after-restore",
            Some(rc == "1" && names_socket),
            format!("exit {rc}; dead socket {}", if names_socket { "named" } else { "NOT named" }),
        );
    } else {
        put("e.doctor-after-restore", None, "the coredump socket still takes connections".into());
    }

    raw.into_iter()
        .map(|(id, pass, detail)| {
            let listed = expected.iter().find(|(r, c, _)| *r == release && *c == id).map(|(_, _, why)| *why);
            let status = match (pass, listed) {
                (None, _) => Status::NotApplicable,
                (Some(true), None) => Status::Pass,
                (Some(true), Some(why)) => Status::UnexpectedPass(why),
                (Some(false), None) => Status::Fail,
                (Some(false), Some(why)) => Status::ExpectedFail(why),
            };
            Check { id, status, detail }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_id<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id}"))
    }

    #[test]
    fn facts_parse_last_value_wins() {
        let f = parse_facts("a=1\nb.x=two words\n\njunk\na=3\n=v\n");
        assert_eq!(f.get("a").map(String::as_str), Some("3"));
        assert_eq!(f.get("b.x").map(String::as_str), Some("two words"));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn records_skip_torn_lines() {
        let (r, bad) = parse_records("{\"v\":1,\"type\":\"header\"}\n{\"v\":1,\"ty\n[1]\n");
        assert_eq!(r.len(), 1);
        assert_eq!(bad, 2);
    }

    #[test]
    fn every_check_is_decided_once() {
        let checks = evaluate("bookworm", &Evidence { missing: Some("no archive".into()), ..Default::default() });
        let ids: Vec<&str> = checks.iter().map(|c| c.id).collect();
        let want: Vec<&str> = CHECKS.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, want);
        assert_eq!(by_id(&checks, "guest-finished").status, Status::Fail);
    }

    #[test]
    fn expected_failures_name_real_checks_and_releases() {
        for (release, id, why) in EXPECTED_FAILURES {
            assert!(CHECKS.iter().any(|(c, _)| c == id), "{id} is not a check");
            assert!(super::super::release::RELEASES.iter().any(|r| r.name == *release), "{release} is not a release");
            assert!(!why.is_empty());
        }
    }

    /// A run the way it should go on systemd 252: every check passes.
    fn good_run() -> Evidence {
        let facts = "\
done=99
crashtrace_ready=40
a.crasher_pid=500
a.coredumpctl_storage=/var/lib/systemd/coredump/core.vmtool.zst_(present)
b.gdb_rc=0
b.caught_line=Caught_<SEGV>,_dumped_core_as_pid_600.
b.crash_child=600
b.frozen_after=12
b.coredumpctl_storage=/var/lib/systemd/coredump/core.systemd.zst_(present)
b.core_pattern=|/bin/false
b.pid1_wchan=do_wait
b.pid1_fds=3
c.crasher_pid=700
c.core_pattern=|/bin/false
d.crasher_pid=800
d.coredump_socket=refused
e.doctor_rc=1
d.doctor_rc=1
";
        let records = r#"{"v":1,"type":"header","dump_mode":"fentry"}
{"v":1,"type":"verdict","id":1,"crasher":{"pid":500,"comm":"vmtool"},"verdict":"stored","reason":"r"}
{"v":1,"type":"watched","pid":1,"state":"handling-crash"}
{"v":1,"type":"verdict","id":2,"crasher":{"pid":1,"comm":"systemd"},"origin":"fault","code":1,"fault_addr":0,"verdict":"handled"}
{"v":1,"type":"event","event":"sysctl-write","task":{"pid":601,"comm":"systemd-coredum"},"name":"kernel/core_pattern","old_value":"|/lib/systemd/systemd-coredump %P","new_value":"|/bin/false"}
{"v":1,"type":"verdict","id":3,"crasher":{"pid":600,"comm":"systemd"},"linked_to":2,"verdict":"stored"}
{"v":1,"type":"watched","pid":1,"state":"frozen-in-crash-handler"}
{"v":1,"type":"verdict","id":4,"crasher":{"pid":700,"comm":"vmtool"},"verdict":"dropped:core-pattern-discards","kernel_said_dumped":true,"core_pattern_set_by":{"writer":{"pid":601,"comm":"systemd-coredum"},"new_value":"|/bin/false"}}
{"v":1,"type":"verdict","id":5,"crasher":{"pid":800,"comm":"vmtool"},"verdict":"dropped:collector-unreachable-pid1","kernel_said_dumped":true,"collector":{"connects":[{"result":"ECONNREFUSED"}]}}
"#;
        let (records, bad_lines) = parse_records(records);
        Evidence {
            facts: parse_facts(facts),
            records,
            bad_lines,
            doctor: "core_pattern \"|/bin/false\" discards every core\n/run/systemd/coredump: the socket file exists, but no process listens on it (ECONNREFUSED)\n".into(),
            doctor_after_restore: "LOSS  collector-socket-unreachable\n  cause    the socket file /run/systemd/coredump exists, but no process listens on it\n".into(),
            missing: None,
        }
    }

    #[test]
    fn a_good_run_passes_every_check() {
        // A release without expected failures: the statuses are the raw ones.
        let checks = evaluate("unlisted", &good_run());
        for c in &checks {
            assert_eq!(c.status, Status::Pass, "{}: {}", c.id, c.detail);
        }
    }

    #[test]
    fn listed_checks_become_xfail_or_xpass() {
        // A table of its own: the real one may be empty.
        let table = [("r", "a.stored", "a known bug")];
        let (release, id, _) = table[0];
        let checks = evaluate_with(release, &good_run(), &table);
        assert!(matches!(by_id(&checks, id).status, Status::UnexpectedPass(_)), "{id}");
        assert!(by_id(&checks, id).status.ok());
        let checks = evaluate_with(release, &Evidence { missing: Some("no archive".into()), ..Default::default() }, &table);
        assert!(matches!(by_id(&checks, id).status, Status::ExpectedFail(_)), "{id}");
        assert!(by_id(&checks, id).status.ok());
        // Unlisted failures still fail the tier.
        assert!(!by_id(&checks, "guest-finished").status.ok());
    }

    #[test]
    fn wrong_verdicts_and_states_fail() {
        let mut ev = good_run();
        let text: Vec<String> = ev
            .records
            .iter()
            .map(|r| r.to_string().replace("frozen-in-crash-handler", "running").replace("\"linked_to\":2", "\"linked_to\":null"))
            .collect();
        ev.records = parse_records(&text.join("\n")).0;
        ev.facts.insert("e.doctor_rc".into(), "0".into());
        ev.doctor = "core_pattern \"|/bin/false\" discards every core\n".into();
        let checks = evaluate("unlisted", &ev);
        for id in ["b.watched-frozen", "b.child-linked", "e.doctor-exit", "e.doctor-names"] {
            assert_eq!(by_id(&checks, id).status, Status::Fail, "{id}");
        }
        assert_eq!(by_id(&checks, "b.watched-handling").status, Status::Pass);
        assert!(by_id(&checks, "b.child-linked").detail.contains("linked_to null"), "{}", by_id(&checks, "b.child-linked").detail);
    }

    #[test]
    fn a_pattern_left_alone_makes_the_discard_checks_not_apply() {
        // systemd 262 with coredumpd: no |/bin/false, and later cores are stored.
        let mut ev = good_run();
        for k in ["b.core_pattern", "c.core_pattern"] {
            ev.facts.insert(k.into(), "@@/run/systemd/coredumpd/kernel".into());
        }
        ev.facts.insert("c.coredumpctl_storage".into(), "/var/lib/systemd/coredump/core.x.zst".into());
        let checks = evaluate("unlisted", &ev);
        for id in ["b.pattern-writer", "c.set-by", "c.kernel-said-dumped"] {
            assert_eq!(by_id(&checks, id).status, Status::NotApplicable, "{id}");
        }
        // The crash was stored, so `dropped:core-pattern-discards` is wrong now.
        assert_eq!(by_id(&checks, "c.verdict").status, Status::Fail);
    }

    #[test]
    fn nested_event_fields_are_found() {
        let v: Value = serde_json::from_str(r#"{"type":"event","event":"sysctl-write","sysctl-write":{"name":"kernel/core_pattern","new_value":"|/bin/false"},"task":{"pid":9,"comm":"systemd-coredum"}}"#).unwrap();
        let ev = Evidence { records: vec![v], ..Default::default() };
        assert_eq!(ev.pattern_writes("|/bin/false"), ["systemd-coredum[9]"]);
    }
}

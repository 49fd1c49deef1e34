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
    ("install", "the first boot installed the .deb with dpkg and enabled its unit"),
    ("conffile", "the config file is the package's conffile, edited for `pid = 1` and `journal = true`"),
    ("service.notify", "the packaged unit is Type=notify and active (READY=1 after attaching)"),
    ("service.early", "crashtrace was active before sysinit.target, so before the default target"),
    ("crashtrace-started", "crashtrace wrote its header before the first crash"),
    ("service.hooks", "under the unit's sandbox no hook is refused for want of a permission"),
    ("a.stored", "a healthy crash: crashtrace says `stored`"),
    ("a.coredumpctl", "a healthy crash: coredumpctl finds the core"),
    ("a.core-location", "the `stored` verdict names the core coredumpctl found"),
    ("service.reload", "`systemctl reload` keeps the process, and it still traces"),
    ("service.restart", "`systemctl restart` while PID 1 is healthy: a new process and run, still tracing"),
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
    ("service.outlives-pid1", "after PID 1's freeze the same crashtrace process runs and logs verdicts"),
    ("journal.entries", "journald holds one entry per verdict, found by `journalctl MESSAGE_ID=…`"),
];

/// Checks that fail today because of known crashtrace bugs, keyed by
/// (release, check id), with the reason. A listed check that fails does not
/// fail the tier; one that passes is reported as XPASS so the entry can go.
///
/// Empty: every crashtrace bug this tier found is fixed. A new entry is
/// `(release, check id, reason)`, the reason naming the bug.
pub(super) const EXPECTED_FAILURES: &[(&str, &str, &str)] = &[
    // systemd-coredumpd (sid-coredumpd): the kernel hands cores to
    // coredumpd's @@ socket, a service of its own, so a crash's collection
    // no longer involves PID 1 and `--pid 1` leaves it out.
    ("sid-coredumpd", "a.stored", "--pid 1 leaves out crashes collected through coredumpd's @@ socket"),
    ("sid-coredumpd", "a.core-location", "--pid 1 leaves out crashes collected through coredumpd's @@ socket"),
    ("sid-coredumpd", "service.reload", "--pid 1 leaves out crashes collected through coredumpd's @@ socket"),
    ("sid-coredumpd", "service.restart", "--pid 1 leaves out crashes collected through coredumpd's @@ socket"),
    ("sid-coredumpd", "c.verdict", "--pid 1 leaves out crashes collected through coredumpd's @@ socket"),
    ("sid-coredumpd", "d.verdict", "--pid 1 leaves out crashes collected through coredumpd's @@ socket"),
    ("sid-coredumpd", "service.outlives-pid1", "--pid 1 leaves out crashes collected through coredumpd's @@ socket"),
    ("sid-coredumpd", "b.child-linked", "the end of a dump into an @@ socket is not seen: the stored core is called `unknown`"),
    ("sid-coredumpd", "e.doctor-exit", "doctor exits 1 (loss) with PID 1 frozen, though coredumpd still stores every core"),
    ("sid-coredumpd", "e.doctor-after-restore", "doctor exits 1 (loss) with PID 1 frozen, though coredumpd still stores every core"),
];

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
    /// The journal's crashtrace entries (`journalctl -o json MESSAGE_ID=…`
    /// for every verdict's id).
    pub journal: Vec<Value>,
    /// Set when the guest produced no results at all.
    pub missing: Option<String>,
}

/// `journalctl -o json` output: one object per line.
pub(super) fn parse_journal(text: &str) -> Vec<Value> {
    parse_records(text).0
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

/// The packaged configuration file.
const CONFFILE: &str = "/etc/crashtrace/crashtrace.toml";

/// Whether every verdict record has its journal entry (same MESSAGE_ID,
/// verdict and crasher pid) and the journal holds no other crashtrace
/// verdict entries.
fn journal_matches(ev: &Evidence) -> (bool, String) {
    let verdicts: Vec<&Value> = ev.of_type("verdict").collect();
    let entry_of = |v: &Value, used: &[bool]| {
        let verdict = v["verdict"].as_str()?;
        let id = crashtrace::sink::journal::message_id(verdict.parse().ok()?);
        let pid = v["crasher"]["pid"].as_u64()?.to_string();
        ev.journal.iter().enumerate().position(|(i, e)| {
            !used[i]
                && e["MESSAGE_ID"].as_str() == Some(id)
                && e["CRASHTRACE_VERDICT"].as_str() == Some(verdict)
                && e["CRASHTRACE_CRASHER_PID"].as_str() == Some(pid.as_str())
        })
    };
    let mut used = vec![false; ev.journal.len()];
    let mut missing = Vec::new();
    for v in &verdicts {
        // A second chain of the same pid and verdict needs an entry of its own.
        match entry_of(v, &used) {
            Some(i) => used[i] = true,
            None => missing.push(summary(v)),
        }
    }
    let extra = used.iter().filter(|u| !**u).count();
    let pass = !verdicts.is_empty() && missing.is_empty() && extra == 0;
    let mut detail = format!("{} verdict records, {} journal entries", verdicts.len(), ev.journal.len());
    if !missing.is_empty() {
        detail.push_str(&format!("; no entry for {}", missing.join(", ")));
    }
    if extra > 0 {
        detail.push_str(&format!("; {extra} entries match no verdict record"));
    }
    (pass, detail)
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
    let yes = |k: &str| ev.fact(k) == Some("yes");
    let num = |k: &str| ev.fact(k).and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0);
    let get = |k: &str| ev.fact(k).unwrap_or("(not recorded)");
    put(
        "install",
        Some(
            ev.fact("install.dpkg_rc") == Some("0")
                && ev.fact("install.enable_rc") == Some("0")
                && ev.fact("install.variant_enable_rc").is_none_or(|rc| rc == "0"),
        ),
        format!("dpkg -i rc {}, systemctl enable rc {}", get("install.dpkg_rc"), get("install.enable_rc")),
    );
    put(
        "conffile",
        Some(ev.fact("install.conffile") == Some(CONFFILE) && ev.fact("install.config_keys") == Some("2")),
        format!("conffiles {}; {} of the 2 keys set", get("install.conffile"), get("install.config_keys")),
    );
    put(
        "service.notify",
        Some(ev.fact("unit_type") == Some("notify") && ev.fact("active_state") == Some("active")),
        format!("Type={}, {}", get("unit_type"), get("active_state")),
    );
    let early = match (num("crashtrace_active_us"), num("sysinit_active_us"), num("default_active_us")) {
        (Some(c), Some(s), Some(d)) => c <= s && c < d,
        _ => false,
    };
    put(
        "service.early",
        Some(early),
        format!(
            "active at {} µs, sysinit.target at {}, {} at {}",
            get("crashtrace_active_us"),
            get("sysinit_active_us"),
            get("default_target"),
            get("default_active_us")
        ),
    );
    let header = ev.of_type("header").next();
    put(
        "crashtrace-started",
        Some(header.is_some() && ev.fact("crashtrace_ready").is_some_and(|v| v != "no")),
        match header {
            Some(h) => format!("dump_mode {}", h["dump_mode"].as_str().unwrap_or("?")),
            None => "no header record in /var/log/crashtrace.jsonl".into(),
        },
    );

    // The unit's capability set and sandbox must not cost a hook: a hook
    // the kernel lacks is the kernel's business, a refused one is the unit's.
    let refused: Vec<String> = header
        .and_then(|h| h["hooks"].as_array())
        .into_iter()
        .flatten()
        .filter(|h| h["state"] != "attached")
        .filter(|h| h["detail"].as_str().is_some_and(|d| ["Permission denied", "Operation not permitted", "EACCES", "EPERM"].iter().any(|w| d.contains(w))))
        .map(|h| format!("{}: {}", h["name"].as_str().unwrap_or("?"), h["detail"].as_str().unwrap_or("")))
        .collect();
    let hooks = header.and_then(|h| h["hooks"].as_array()).map_or(0, Vec::len);
    put(
        "service.hooks",
        Some(hooks > 0 && refused.is_empty()),
        if refused.is_empty() { format!("{hooks} hooks in the header, none refused") } else { format!("refused: {}", refused.join("; ")) },
    );

    // a. healthy
    let a = ev.pid("a.crasher_pid").and_then(|p| ev.verdict_of(p));
    put("a.stored", Some(a.is_some_and(|v| v["verdict"] == "stored")), a.map(summary).unwrap_or_else(|| "no verdict for the crasher".into()));
    let a_storage = ev.fact("a.coredumpctl_storage");
    put("a.coredumpctl", Some(a_storage.is_some_and(|s| s.starts_with('/'))), format!("Storage: {}", a_storage.unwrap_or("none")));
    // coredumpctl prints "Storage: <path> (present)"; the verdict's core
    // object names the file.
    let a_path = a.and_then(|v| v["core"]["path"].as_str());
    let a_file = a_storage.and_then(|s| s.split_whitespace().next());
    put(
        "a.core-location",
        Some(a_path.is_some() && a_path == a_file),
        format!("verdict core {}, coredumpctl {}", a.map(|v| v["core"].to_string()).unwrap_or_else(|| "-".into()), a_file.unwrap_or("none")),
    );
    put(
        "service.reload",
        Some(ev.fact("reload_rc") == Some("0") && num("main_pid_start").is_some() && ev.fact("main_pid_after_reload") == ev.fact("main_pid_start") && yes("r.verdict_seen")),
        format!("reload rc {}, MainPID {} -> {}, verdict after: {}", get("reload_rc"), get("main_pid_start"), get("main_pid_after_reload"), get("r.verdict_seen")),
    );
    put(
        "service.restart",
        Some(
            ev.fact("restart_rc") == Some("0")
                && ev.fact("active_after_restart") == Some("active")
                && num("main_pid_after_restart").is_some()
                && ev.fact("main_pid_after_restart") != ev.fact("main_pid_start")
                && num("headers_in_log").is_some_and(|n| n >= 2)
                && yes("s.verdict_seen"),
        ),
        format!(
            "restart rc {}, {}, MainPID {} -> {}, {} header records, verdict after: {}",
            get("restart_rc"),
            get("active_after_restart"),
            get("main_pid_start"),
            get("main_pid_after_restart"),
            get("headers_in_log"),
            get("s.verdict_seen")
        ),
    );

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

    // e. doctor: exit 1 when cores are being lost, which the next crash
    // shows (with coredumpd's @@ socket they are still stored).
    let rc = ev.fact("e.doctor_rc").unwrap_or("?");
    let want = if c_stored { "0" } else { "1" };
    put("e.doctor-exit", Some(rc == want), format!("exit {rc}, expected {want} (the next crash's core {})", if c_stored { "was stored" } else { "was lost" }));
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
    if d_stored {
        put("e.doctor-after-restore", Some(rc == "0"), format!("exit {rc}, expected 0: the crash after the pattern was restored was stored"));
    } else if ev.fact("d.coredump_socket").is_some_and(|s| s != "connectable") {
        put(
            "e.doctor-after-restore",
            Some(rc == "1" && names_socket),
            format!("exit {rc}; dead socket {}", if names_socket { "named" } else { "NOT named" }),
        );
    } else {
        put("e.doctor-after-restore", None, "the coredump socket still takes connections".into());
    }

    put(
        "service.outlives-pid1",
        Some(yes("alive_after_freeze") && yes("alive_at_end") && yes("c.verdict_seen") && yes("d.verdict_seen")),
        format!(
            "alive after the freeze: {}, at the end: {}; verdicts after the freeze: {}, {}",
            get("alive_after_freeze"),
            get("alive_at_end"),
            get("c.verdict_seen"),
            get("d.verdict_seen")
        ),
    );
    let (pass, detail) = journal_matches(ev);
    put("journal.entries", Some(pass), detail);

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
        use super::super::release::{RELEASES, VARIANTS};
        for (release, id, why) in EXPECTED_FAILURES {
            assert!(CHECKS.iter().any(|(c, _)| c == id), "{id} is not a check");
            assert!(RELEASES.iter().chain(VARIANTS).any(|r| r.name == *release), "{release} is not a release");
            assert!(!why.is_empty());
        }
    }

    /// A run the way it should go on systemd 252: every check passes.
    fn good_run() -> Evidence {
        let facts = "\
done=99
install.dpkg_rc=0
install.enable_rc=0
install.conffile=/etc/crashtrace/crashtrace.toml
install.config_keys=2
unit_type=notify
active_state=active
crashtrace_active_us=2100000
sysinit_active_us=2300000
default_target=multi-user.target
default_active_us=9000000
main_pid_start=210
reload_rc=0
main_pid_after_reload=210
r.verdict_seen=yes
restart_rc=0
main_pid_after_restart=720
active_after_restart=active
headers_in_log=2
s.verdict_seen=yes
alive_after_freeze=yes
alive_at_end=yes
c.verdict_seen=yes
d.verdict_seen=yes
crashtrace_ready=40
a.crasher_pid=500
a.coredumpctl_storage=/var/lib/systemd/coredump/core.vmtool.0.1.500.1.zst (present)
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
        let records = r#"{"v":1,"type":"header","dump_mode":"fentry","hooks":[{"name":"tp_btf/signal_generate","state":"attached"},{"name":"tracepoint/syscalls/sys_enter_connect","state":"attached"}]}
{"v":1,"type":"verdict","id":1,"crasher":{"pid":500,"comm":"vmtool"},"verdict":"stored","reason":"r","core":{"path":"/var/lib/systemd/coredump/core.vmtool.0.1.500.1.zst"}}
{"v":1,"type":"watched","pid":1,"state":"handling-crash"}
{"v":1,"type":"verdict","id":2,"crasher":{"pid":1,"comm":"systemd"},"origin":"fault","code":1,"fault_addr":0,"verdict":"handled"}
{"v":1,"type":"event","event":"sysctl-write","task":{"pid":601,"comm":"systemd-coredum"},"name":"kernel/core_pattern","old_value":"|/lib/systemd/systemd-coredump %P","new_value":"|/bin/false"}
{"v":1,"type":"verdict","id":3,"crasher":{"pid":600,"comm":"systemd"},"linked_to":2,"verdict":"stored"}
{"v":1,"type":"watched","pid":1,"state":"frozen-in-crash-handler"}
{"v":1,"type":"verdict","id":4,"crasher":{"pid":700,"comm":"vmtool"},"verdict":"dropped:core-pattern-discards","kernel_said_dumped":true,"core_pattern_set_by":{"writer":{"pid":601,"comm":"systemd-coredum"},"new_value":"|/bin/false"}}
{"v":1,"type":"verdict","id":5,"crasher":{"pid":800,"comm":"vmtool"},"verdict":"dropped:collector-unreachable-pid1","kernel_said_dumped":true,"collector":{"connects":[{"result":"ECONNREFUSED"}]}}
"#;
        let (records, bad_lines) = parse_records(records);
        let journal = parse_journal(
            &[("stored", 500), ("handled", 1), ("stored", 600), ("dropped:core-pattern-discards", 700), ("dropped:collector-unreachable-pid1", 800)]
                .iter()
                .map(|(v, pid)| journal_entry(v, *pid))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        Evidence {
            journal,
            facts: parse_facts(facts),
            records,
            bad_lines,
            doctor: "core_pattern \"|/bin/false\" discards every core\n/run/systemd/coredump: the socket file exists, but no process listens on it (ECONNREFUSED)\n".into(),
            doctor_after_restore: "LOSS  collector-socket-unreachable\n  cause    the socket file /run/systemd/coredump exists, but no process listens on it\n".into(),
            missing: None,
        }
    }

    fn journal_entry(verdict: &str, pid: u64) -> String {
        let id = crashtrace::sink::journal::message_id(verdict.parse().unwrap());
        format!(r#"{{"MESSAGE_ID":"{id}","CRASHTRACE_VERDICT":"{verdict}","CRASHTRACE_CRASHER_PID":"{pid}","SYSLOG_IDENTIFIER":"crashtrace"}}"#)
    }

    #[test]
    fn journal_entries_must_match_the_verdicts_one_to_one() {
        let mut ev = good_run();
        assert_eq!(by_id(&evaluate("unlisted", &ev), "journal.entries").status, Status::Pass);
        // One verdict without its entry.
        let lost = ev.journal.pop();
        let checks = evaluate("unlisted", &ev);
        assert_eq!(by_id(&checks, "journal.entries").status, Status::Fail);
        assert!(by_id(&checks, "journal.entries").detail.contains("vmtool[800]"), "{}", by_id(&checks, "journal.entries").detail);
        // An entry with the wrong MESSAGE_ID for its verdict.
        let mut wrong = lost.unwrap();
        wrong["MESSAGE_ID"] = Value::from(crashtrace::sink::journal::message_id("stored".parse().unwrap()));
        ev.journal.push(wrong);
        assert_eq!(by_id(&evaluate("unlisted", &ev), "journal.entries").status, Status::Fail);
        // An entry no verdict record accounts for.
        let mut ev = good_run();
        ev.journal.push(parse_journal(&journal_entry("stored", 999))[0].clone());
        assert_eq!(by_id(&evaluate("unlisted", &ev), "journal.entries").status, Status::Fail);
        // No verdicts and no entries is not a pass.
        let ev = Evidence { facts: good_run().facts, ..Default::default() };
        assert_eq!(by_id(&evaluate("unlisted", &ev), "journal.entries").status, Status::Fail);
    }

    #[test]
    fn each_broken_service_promise_fails_its_check() {
        let cases = [
            ("crashtrace_active_us", "9500000", "service.early"),
            ("unit_type", "simple", "service.notify"),
            ("main_pid_after_reload", "230", "service.reload"),
            ("main_pid_after_restart", "210", "service.restart"),
            ("headers_in_log", "1", "service.restart"),
            ("alive_at_end", "no", "service.outlives-pid1"),
            ("d.verdict_seen", "no", "service.outlives-pid1"),
            ("install.conffile", "", "conffile"),
            ("install.config_keys", "1", "conffile"),
            ("install.dpkg_rc", "1", "install"),
        ];
        for (key, value, id) in cases {
            let mut ev = good_run();
            ev.facts.insert(key.into(), value.into());
            let failed: Vec<&str> = evaluate("unlisted", &ev).into_iter().filter(|c| c.status == Status::Fail).map(|c| c.id).collect();
            assert_eq!(failed, [id], "{key}={value}");
        }
    }

    #[test]
    fn a_hook_the_sandbox_refused_fails() {
        let mut ev = good_run();
        let header = ev.records.iter_mut().find(|r| r["type"] == "header").unwrap();
        header["hooks"][1] = serde_json::json!({"name": "tracepoint/syscalls/sys_enter_connect", "state": "unavailable", "detail": "`perf_event_open_trace_point` failed: Permission denied (os error 13)"});
        let checks = evaluate("unlisted", &ev);
        assert_eq!(by_id(&checks, "service.hooks").status, Status::Fail);
        assert!(by_id(&checks, "service.hooks").detail.contains("sys_enter_connect"));
        // A hook the kernel lacks is not the unit's fault.
        let header = ev.records.iter_mut().find(|r| r["type"] == "header").unwrap();
        header["hooks"][1] = serde_json::json!({"name": "tp_btf/coredump", "state": "unavailable", "detail": "the kernel has no coredump tracepoint"});
        assert_eq!(by_id(&evaluate("unlisted", &ev), "service.hooks").status, Status::Pass);
    }

    #[test]
    fn a_core_elsewhere_than_coredumpctl_says_fails() {
        let mut ev = good_run();
        ev.facts.insert("a.coredumpctl_storage".into(), "/var/lib/systemd/coredump/core.other.zst (present)".into());
        assert_eq!(by_id(&evaluate("unlisted", &ev), "a.core-location").status, Status::Fail);
    }

    #[test]
    fn the_script_records_every_fact_the_checks_read() {
        let script = super::super::image::SCENARIOS;
        for key in good_run().facts.keys() {
            let recorded = match key.split_once('.') {
                // A crash step's facts come from `crash STEP` and the helpers
                // it calls with the step as $1.
                Some((step, name)) if step.len() == 1 => {
                    script.contains(&format!("fact {key} "))
                        || ((script.contains(&format!("crash {step}")) || script.contains(&format!("pid1_facts {step}")))
                            && (script.contains(&format!("\"$1.{name}\"")) || script.contains(&format!("\"$step.{name}\""))))
                }
                _ => script.contains(&format!("fact {key} ")),
            };
            assert!(recorded, "scenarios.sh does not record {key}");
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
        // Cores are still stored, so doctor exiting 1 (loss) is wrong too.
        assert_eq!(by_id(&checks, "e.doctor-exit").status, Status::Fail);
        ev.facts.insert("e.doctor_rc".into(), "0".into());
        assert_eq!(by_id(&evaluate("unlisted", &ev), "e.doctor-exit").status, Status::Pass);
    }

    #[test]
    fn nested_event_fields_are_found() {
        let v: Value = serde_json::from_str(r#"{"type":"event","event":"sysctl-write","sysctl-write":{"name":"kernel/core_pattern","new_value":"|/bin/false"},"task":{"pid":9,"comm":"systemd-coredum"}}"#).unwrap();
        let ev = Evidence { records: vec![v], ..Default::default() };
        assert_eq!(ev.pattern_writes("|/bin/false"), ["systemd-coredum[9]"]);
    }
}

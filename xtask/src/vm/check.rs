//! Judging one guest run. The guest (xtask/vm/init) reports raw facts on its
//! results port; this module parses them and decides, per hook mode and per
//! crash scenario, what passed. Pure: text in, checks out.

use std::collections::BTreeMap;

use serde_json::Value;

/// crashtrace's `--coredump-hook` values the guest runs, and the
/// `dump.hook` each must record in a chain. `auto` must pick fentry: the
/// Debian kernels have it.
pub(super) const MODES: &[(&str, &str)] = &[("auto", "fentry"), ("fentry", "fentry"), ("kprobe", "kprobe"), ("infer", "inferred")];

/// A crash scenario the guest runs, and what must come of it.
pub(super) struct Scenario {
    pub name: &'static str,
    pub verdict: &'static str,
    /// Whether a core file (or the collector's copy) must exist; None when
    /// the scenario has nowhere to put one.
    pub core: Option<bool>,
    /// The first kernel (major, minor) that has the scenario's mechanism.
    pub since: (u32, u32),
}

pub(super) const SCENARIOS: &[Scenario] = &[
    Scenario { name: "file", verdict: "stored", core: Some(true), since: (0, 0) },
    Scenario { name: "rlimit-core-0", verdict: "dropped:rlimit-core", core: Some(false), since: (0, 0) },
    Scenario { name: "pipe-bin-false", verdict: "dropped:core-pattern-discards", core: None, since: (0, 0) },
    Scenario { name: "pipe-collector-unreachable", verdict: "dropped:collector-unreachable-pid1", core: None, since: (0, 0) },
    Scenario { name: "pipe-collector-stores", verdict: "stored", core: Some(true), since: (0, 0) },
    Scenario { name: "socket-listener", verdict: "stored", core: Some(true), since: (6, 16) },
    Scenario { name: "socket-no-listener", verdict: "dropped:socket-unreachable", core: None, since: (6, 16) },
];

/// What the guest wrote, parsed.
#[derive(Debug, Default)]
pub(super) struct GuestReport {
    pub info: Vec<(String, String)>,
    pub mode_info: BTreeMap<String, BTreeMap<String, String>>,
    pub sections: BTreeMap<String, Section>,
    pub runs: Vec<Run>,
    pub done: bool,
}

#[derive(Debug, Default, Clone)]
pub(super) struct Section {
    pub lines: Vec<String>,
    /// None when the guest never finished the section.
    pub rc: Option<i32>,
}

/// One scenario run in one mode.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Run {
    pub mode: String,
    pub name: String,
    pub pid: u32,
    pub status: i32,
    pub core: bool,
    pub core_size: Option<u64>,
    pub error: Option<String>,
}

fn key_values(text: &str) -> BTreeMap<String, String> {
    text.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn parse(text: &str) -> GuestReport {
    let mut r = GuestReport::default();
    let mut open: Option<(String, Section)> = None;
    for line in text.lines() {
        if let Some((name, section)) = &mut open {
            if let Some(rest) = line.strip_prefix("@@END ") {
                let kv = key_values(rest);
                if rest.split_whitespace().next() == Some(name.as_str()) {
                    section.rc = kv.get("rc").and_then(|v| v.parse().ok());
                    let (name, section) = open.take().unwrap_or_default();
                    r.sections.insert(name, section);
                    continue;
                }
            }
            section.lines.push(line.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("@@BEGIN ") {
            open = Some((rest.trim().to_string(), Section::default()));
        } else if let Some(rest) = line.strip_prefix("@@INFO ") {
            if rest.starts_with("mode=") {
                let mut kv = key_values(rest);
                let mode = kv.remove("mode").unwrap_or_default();
                let entry = r.mode_info.entry(mode).or_default();
                for t in rest.split_whitespace().skip(1) {
                    // Flags without a value, e.g. "crashtrace-did-not-attach".
                    if !t.contains('=') {
                        entry.insert(t.to_string(), String::new());
                    }
                }
                entry.extend(kv);
            } else if let Some((k, v)) = rest.split_once('=') {
                r.info.push((k.to_string(), v.to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("@@SCENARIO ") {
            let kv = key_values(rest);
            r.runs.push(Run {
                mode: kv.get("mode").cloned().unwrap_or_default(),
                name: kv.get("name").cloned().unwrap_or_default(),
                pid: kv.get("pid").and_then(|v| v.parse().ok()).unwrap_or(0),
                status: kv.get("status").and_then(|v| v.parse().ok()).unwrap_or(-1),
                core: kv.get("core").map(|v| v == "present").unwrap_or(false),
                core_size: kv.get("size").and_then(|v| v.parse().ok()),
                error: kv.get("error").cloned(),
            });
        } else if line.trim() == "@@DONE" {
            r.done = true;
        }
    }
    if let Some((name, section)) = open {
        r.sections.insert(name, section);
    }
    r
}

impl GuestReport {
    pub(super) fn info(&self, key: &str) -> Option<&str> {
        self.info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// (major, minor) of a release string such as "6.1.0-56-cloud-amd64".
pub(super) fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-', '+']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The kernel's core-dump entry point: renamed in 6.17.
pub(super) fn dump_function(version: (u32, u32)) -> &'static str {
    if version >= (6, 17) { "vfs_coredump" } else { "do_coredump" }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Check {
    /// A scenario name, or "guest", "crashtrace" or "kernel-health".
    pub subject: String,
    pub mode: Option<String>,
    pub pass: bool,
    pub detail: String,
}

/// Per hook mode: what crashtrace said about itself.
#[derive(Debug, Clone, Default)]
pub(super) struct ModeOutcome {
    pub mode: String,
    pub attached: bool,
    pub dump_mode: Option<String>,
    /// Seconds from start to "attached", guest uptime.
    pub attach_secs: Option<f64>,
    pub unavailable_hooks: Vec<String>,
    /// crashtrace's stderr when it did not attach: the exact error.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub kernel: Option<String>,
    pub modes: Vec<ModeOutcome>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl Outcome {
    pub(super) fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.pass)
    }

    fn check(&mut self, subject: &str, mode: Option<&str>, pass: bool, detail: impl Into<String>) {
        self.checks.push(Check { subject: subject.into(), mode: mode.map(Into::into), pass, detail: detail.into() });
    }
}

/// Kernel log lines that mean the kernel is not healthy.
fn unhealthy(line: &str) -> bool {
    ["WARNING:", "BUG:", "Oops", "Call Trace:", "general protection fault", "Kernel panic", "RCU stall", "soft lockup", "hung_task"]
        .iter()
        .any(|m| line.contains(m))
}

/// A hook's failure detail in a few lines: a verifier log runs to hundreds,
/// and only its head (the syscall's error) and tail (why) matter here.
pub(super) fn summarize_detail(detail: &str) -> String {
    let lines: Vec<&str> = detail.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let head = lines.first().copied().unwrap_or("");
    let head = head.split("Verifier output:").next().unwrap_or(head).trim();
    if lines.len() <= 1 {
        return head.chars().take(300).collect();
    }
    let tail: Vec<&str> = lines.iter().rev().take(4).rev().copied().collect();
    format!("{head} [verifier log, {} lines, ends:] {}", lines.len(), tail.join(" | "))
}

/// Fields of a chain that every hook mode must agree on.
fn chain_shape(chain: &Value) -> Value {
    let get = |path: &[&str]| {
        let mut v = chain;
        for p in path {
            v = v.get(p).unwrap_or(&Value::Null);
        }
        v.clone()
    };
    let connects: Vec<Value> = chain
        .pointer("/collector/connects")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|c| serde_json::json!({"path": c.get("path"), "ret": c.get("ret")})).collect())
        .unwrap_or_default();
    serde_json::json!({
        "signal": get(&["signal"]),
        "origin": get(&["origin"]),
        "disposition": get(&["disposition"]),
        "dump.mode": get(&["dump", "mode"]),
        "dump.core_pattern": get(&["dump", "core_pattern"]),
        "dump.rlimit_core": get(&["dump", "rlimit_core"]),
        "dump.dumpable": get(&["dump", "dumpable"]),
        "collector.filename": get(&["collector", "filename"]),
        "collector.exit_code": get(&["collector", "exit_code"]),
        "collector.connects": connects,
        "sigpipe_during_dump": get(&["sigpipe_during_dump"]),
        "exit_code": get(&["exit_code"]),
        "sigchld": get(&["sigchld"]),
        "kernel_said_dumped": get(&["kernel_said_dumped"]),
        "verdict": get(&["verdict"]),
    })
}

/// Fields where two chain shapes differ, "field: a vs b".
fn shape_diff(a: &Value, b: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return vec!["not objects".into()] };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} vs {}", b.get(k).unwrap_or(&Value::Null)))
        .collect()
}

/// How the boot ended, for a guest that did not finish.
pub(super) struct BootEnd<'a> {
    pub timed_out: bool,
    pub exit: Option<String>,
    pub console: &'a str,
}

pub(super) fn evaluate(report: &GuestReport, boot: &BootEnd) -> Outcome {
    let mut o = Outcome { kernel: report.info("kernel").map(str::to_string), ..Default::default() };

    if !report.done {
        let tail: Vec<&str> = boot.console.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        let how = if boot.timed_out {
            "qemu was killed at the time limit".to_string()
        } else {
            format!("qemu exited ({})", boot.exit.as_deref().unwrap_or("unknown status"))
        };
        o.check(
            "guest",
            None,
            false,
            format!("the guest did not finish its report (no @@DONE): {how}; last console lines:\n      {}", tail.join("\n      ")),
        );
    } else {
        o.check("guest", None, true, "the guest ran every mode and reported");
    }
    let Some(version) = o.kernel.as_deref().and_then(kernel_version) else {
        o.check("guest", None, false, "the guest never reported its kernel version");
        return o;
    };
    let function = dump_function(version);
    if let Some(modes) = report.info("core_modes") {
        o.notes.push(format!("/proc/sys/kernel/core_modes: {}", modes.trim()));
    }
    if let Some(tp) = report.sections.get("tracepoints-coredump") {
        if tp.lines.iter().any(|l| !l.trim().is_empty()) {
            o.notes.push(format!("coredump tracepoints offered: {}", tp.lines.join(", ")));
        } else {
            o.notes.push("no coredump tracepoint in available_events".into());
        }
    }
    for (name, section) in report.sections.iter().filter(|(n, _)| n.starts_with("tracepoint-format-")) {
        let fields: Vec<&str> = section
            .lines
            .iter()
            .filter_map(|l| l.trim().strip_prefix("field:"))
            .filter(|f| !f.contains("common_"))
            .filter_map(|f| f.split(';').next())
            .collect();
        o.notes.push(format!("{} fields: {}", name.trim_start_matches("tracepoint-format-"), fields.join("; ")));
    }

    let scenarios: Vec<&Scenario> = SCENARIOS.iter().filter(|s| version >= s.since).collect();
    // scenario -> [(mode, chain)]
    let mut chains: BTreeMap<&str, Vec<(String, Value)>> = BTreeMap::new();

    // A kernel with the coredump tracepoint (7.3+) also runs that rung.
    let mut modes: Vec<(&str, &str)> = MODES.to_vec();
    if report.info("coredump_tracepoint") == Some("yes") {
        modes.push(("tracepoint", "tracepoint"));
    }
    for (mode, expected_hook) in modes.iter() {
        let info = report.mode_info.get(*mode).cloned().unwrap_or_default();
        let stdout = report.sections.get(&format!("stdout-{mode}"));
        let stderr = report.sections.get(&format!("stderr-{mode}"));
        let mut m = ModeOutcome { mode: mode.to_string(), ..Default::default() };
        m.attached = stderr.map(|s| s.lines.iter().any(|l| l.contains("attached in"))).unwrap_or(false);
        if let (Some(a), Some(b)) = (
            info.get("start_uptime").and_then(|v| v.parse::<f64>().ok()),
            info.get("attached_uptime").and_then(|v| v.parse::<f64>().ok()),
        ) {
            m.attach_secs = Some(b - a);
        }
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            m.error = Some("the guest reported no output for this mode".into());
            o.check("crashtrace", Some(mode), false, "the guest reported no output for this mode");
            o.modes.push(m);
            continue;
        };
        if !m.attached {
            let err = stderr.lines.join("\n");
            m.error = Some(err.clone());
            o.check(
                "crashtrace",
                Some(mode),
                false,
                format!("crashtrace did not attach (exit {}): {}", info.get("crashtrace_exit").map(String::as_str).unwrap_or("?"), err.trim()),
            );
            o.modes.push(m);
            continue;
        }
        let mut records = Vec::new();
        let mut bad_lines = Vec::new();
        for line in stdout.lines.iter().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => records.push(v),
                Err(e) => bad_lines.push(format!("{e}: {}", line.chars().take(120).collect::<String>())),
            }
        }
        let of_type = |t: &'static str| records.iter().filter(move |r| r.get("type").and_then(Value::as_str) == Some(t));
        let mut problems = Vec::new();
        let mut verifier: Option<Vec<String>> = None;
        if !bad_lines.is_empty() {
            problems.push(format!("{} stdout lines are not JSON, first: {}", bad_lines.len(), bad_lines[0]));
        }
        match of_type("header").next() {
            None => problems.push("no header record".into()),
            Some(h) => {
                let dump_mode = h.get("dump_mode").and_then(Value::as_str).unwrap_or("").to_string();
                let want = if *expected_hook == "inferred" {
                    vec!["inferred".to_string()]
                } else if *expected_hook == "tracepoint" {
                    vec!["tracepoint/coredump/coredump".to_string()]
                } else {
                    [':', '/'].iter().map(|sep| format!("{expected_hook}{sep}{function}")).collect()
                };
                if !want.contains(&dump_mode) {
                    problems.push(format!(
                        "header dump_mode is {dump_mode:?}, expected {} ({})",
                        want.join(" or "),
                        h.get("dump_mode_reason").and_then(Value::as_str).unwrap_or("")
                    ));
                }
                let unavailable: Vec<(&str, &str)> = h
                    .get("hooks")
                    .and_then(Value::as_array)
                    .map(|hooks| {
                        hooks
                            .iter()
                            .filter(|k| k.get("state").and_then(Value::as_str) == Some("unavailable"))
                            .map(|k| {
                                (
                                    k.get("name").and_then(Value::as_str).unwrap_or("?"),
                                    k.get("detail").and_then(Value::as_str).unwrap_or(""),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                m.unavailable_hooks = unavailable.iter().map(|(n, d)| format!("{n}: {}", summarize_detail(d))).collect();
                // A program the kernel's verifier rejects is a bug in the
                // program, whatever the fallback makes of it, unless the
                // verifier's reason is a helper this kernel does not have
                // (an optional hook needing a newer kernel): that is noted.
                let missing_helper = |d: &str| d.contains("unknown func") || d.contains("invalid func");
                for (n, d) in unavailable.iter().filter(|(_, d)| missing_helper(d)) {
                    let helper = d
                        .split(" | ")
                        .find(|part| part.contains("unknown func") || part.contains("invalid func"))
                        .unwrap_or("a helper");
                    let note = format!("{n}: unavailable on this kernel ({})", helper.trim());
                    if !o.notes.contains(&note) {
                        o.notes.push(note);
                    }
                }
                let rejected: Vec<String> = unavailable
                    .iter()
                    .filter(|(_, d)| (d.contains("Verifier output") || d.contains("verifier")) && !missing_helper(d))
                    .map(|(n, _)| n.to_string())
                    .collect();
                verifier = Some(rejected);
                m.dump_mode = Some(dump_mode);
            }
        }
        match of_type("summary").next() {
            None => problems.push("no summary record: crashtrace did not stop cleanly on SIGTERM".into()),
            Some(s) => {
                for field in ["lost_kernel", "decode_errors"] {
                    let n = s.get(field).and_then(Value::as_u64).unwrap_or(0);
                    if n != 0 {
                        problems.push(format!("summary {field} = {n}"));
                    }
                }
            }
        }
        if let Some(rc) = info.get("crashtrace_exit").filter(|rc| *rc != "0") {
            problems.push(format!("crashtrace exited with status {rc}"));
        }
        if info.contains_key("crashtrace-hung-after-sigterm") {
            problems.push("crashtrace did not stop within 30 s of SIGTERM".into());
        }
        let detail = if problems.is_empty() {
            format!("dump_mode {}", m.dump_mode.as_deref().unwrap_or("?"))
        } else {
            problems.join("; ")
        };
        o.check("crashtrace", Some(mode), problems.is_empty(), detail);
        if let Some(rejected) = verifier {
            let pass = rejected.is_empty();
            let detail = if pass {
                "every program loaded".to_string()
            } else {
                format!("the verifier rejected {} (reason under `hook`)", rejected.join(", "))
            };
            o.check("verifier", Some(mode), pass, detail);
        }

        let verdicts: Vec<&Value> = of_type("verdict").collect();
        for s in &scenarios {
            let Some(run) = report.runs.iter().find(|r| r.mode == *mode && r.name == s.name) else {
                o.check(s.name, Some(mode), false, "the guest did not run this scenario");
                continue;
            };
            if let Some(e) = &run.error {
                o.check(s.name, Some(mode), false, format!("the guest could not set the scenario up: {e}"));
                continue;
            }
            let mine: Vec<&Value> = verdicts
                .iter()
                .copied()
                .filter(|v| v.pointer("/crasher/tgid").and_then(Value::as_u64) == Some(u64::from(run.pid)))
                .collect();
            let mut problems = Vec::new();
            let chain = match mine.as_slice() {
                [] => {
                    problems.push(format!("no verdict for crasher pid {}", run.pid));
                    None
                }
                [one] => Some(*one),
                many => {
                    problems.push(format!("{} chains for crasher pid {}", many.len(), run.pid));
                    Some(many[0])
                }
            };
            let mut verdict = "none".to_string();
            if let Some(c) = chain {
                verdict = c.get("verdict").and_then(Value::as_str).unwrap_or("none").to_string();
                if verdict != s.verdict {
                    problems.push(format!(
                        "verdict {verdict}, expected {} (reason: {}; missing: {})",
                        s.verdict,
                        c.get("reason").and_then(Value::as_str).unwrap_or(""),
                        c.get("missing").and_then(Value::as_str).unwrap_or("-")
                    ));
                }
                let hook = c.pointer("/dump/hook").and_then(Value::as_str).unwrap_or("none");
                if hook != *expected_hook {
                    problems.push(format!("dump.hook {hook}, expected {expected_hook}"));
                }
                chains.entry(s.name).or_default().push((mode.to_string(), chain_shape(c)));
            }
            if let Some(want) = s.core.filter(|want| *want != run.core) {
                let word = |present: bool| if present { "present" } else { "absent" };
                problems.push(format!("core file {}, expected {}", word(run.core), word(want)));
            }
            let detail = if problems.is_empty() {
                let hook = chain.and_then(|c| c.pointer("/dump/hook")).and_then(Value::as_str).unwrap_or("?");
                format!("{verdict} (dump.hook {hook}{})", run.core_size.map(|n| format!(", core {n} bytes")).unwrap_or_default())
            } else {
                problems.join("; ")
            };
            o.check(s.name, Some(mode), problems.is_empty(), detail);
        }
        o.modes.push(m);
    }

    // Every hook mode must tell the same story.
    for s in &scenarios {
        let Some(list) = chains.get(s.name) else { continue };
        let Some((first_mode, first)) = list.first() else { continue };
        let mut diffs = Vec::new();
        for (mode, shape) in &list[1..] {
            let d = shape_diff(first, shape);
            if !d.is_empty() {
                diffs.push(format!("{first_mode} vs {mode}: {}", d.join(", ")));
            }
        }
        let modes: Vec<&str> = list.iter().map(|(m, _)| m.as_str()).collect();
        if list.len() < 2 {
            o.check(s.name, Some("all"), false, format!("only {} produced a chain: nothing to compare", modes.join(", ")));
        } else if diffs.is_empty() {
            o.check(s.name, Some("all"), true, format!("same chain and verdict in {}", modes.join(", ")));
        } else {
            o.check(s.name, Some("all"), false, format!("hook modes disagree: {}", diffs.join("; ")));
        }
    }

    match report.sections.get("dmesg") {
        None => o.check("kernel-health", None, false, "the guest reported no dmesg"),
        Some(d) => {
            let bad: Vec<&String> = d.lines.iter().filter(|l| unhealthy(l)).collect();
            if bad.is_empty() {
                let verifier = d.lines.iter().any(|l| l.contains("verifier"));
                let detail = if verifier {
                    "dmesg mentions the BPF verifier".to_string()
                } else {
                    format!("no WARNING/BUG/Oops in {} dmesg lines", d.lines.len())
                };
                o.check("kernel-health", None, !verifier, detail);
            } else {
                o.check(
                    "kernel-health",
                    None,
                    false,
                    format!("dmesg: {}", bad.iter().take(5).map(|s| s.as_str()).collect::<Vec<_>>().join(" | ")),
                );
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dump_mode: &str) -> String {
        format!(r#"{{"v":1,"type":"header","dump_mode":"{dump_mode}","dump_mode_reason":"r","hooks":[{{"name":"kprobe/do_coredump","state":"unavailable","detail":"x"}}]}}"#)
    }

    fn verdict(pid: u32, verdict: &str, hook: &str) -> String {
        format!(
            r#"{{"v":1,"type":"verdict","crasher":{{"pid":{pid},"tgid":{pid},"comm":"vmtool"}},"signal":"SIGSEGV","origin":"fault","disposition":"default","dump":{{"hook":"{hook}","mode":"file"}},"exit_code":139,"kernel_said_dumped":true,"verdict":"{verdict}","reason":"r"}}"#
        )
    }

    const SUMMARY: &str = r#"{"v":1,"type":"summary","events":9,"lost_kernel":0,"decode_errors":0}"#;

    /// A guest report where every mode and scenario of a 6.1 kernel went
    /// right, with `tweak` applied to the `kprobe` mode's file verdict.
    fn report(file_verdict_in_kprobe: &str) -> String {
        let mut s = String::from("@@INFO kernel=6.1.0-56-cloud-amd64\n");
        let mut pid = 100;
        for (mode, hook) in MODES {
            s += &format!("@@INFO mode={mode} start_uptime=1.00 attached_uptime=3.50\n");
            let mut out = vec![header(&if *hook == "inferred" { "inferred".into() } else { format!("{hook}/do_coredump") })];
            for sc in SCENARIOS.iter().filter(|sc| sc.since <= (6, 1)) {
                pid += 1;
                let core = if sc.core == Some(true) { "present size=4096" } else { "absent" };
                s += &format!("@@SCENARIO mode={mode} name={} pid={pid} status=139 core={core}\n", sc.name);
                let v = if *mode == "kprobe" && sc.name == "file" { file_verdict_in_kprobe } else { sc.verdict };
                out.push(verdict(pid, v, hook));
            }
            out.push(SUMMARY.into());
            s += &format!("@@INFO mode={mode} crashtrace_exit=0\n");
            s += &format!("@@BEGIN stdout-{mode}\n{}\n@@END stdout-{mode} rc=0\n", out.join("\n"));
            s += &format!("@@BEGIN stderr-{mode}\ncrashtrace: attached in 123 ns\n@@END stderr-{mode} rc=0\n");
        }
        s += "@@BEGIN dmesg\n[    0.0] Linux version 6.1\n@@END dmesg rc=0\n@@DONE\n";
        s
    }

    fn boot_end() -> BootEnd<'static> {
        BootEnd { timed_out: false, exit: Some("exit status: 0".into()), console: "" }
    }

    #[test]
    fn a_good_run_passes_every_check() {
        let o = evaluate(&parse(&report("stored")), &boot_end());
        let failed: Vec<&Check> = o.checks.iter().filter(|c| !c.pass).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        // guest + 4 modes × (crashtrace + verifier + 5 scenarios) + 5 cross-mode + health
        assert_eq!(o.checks.len(), 1 + 4 * 7 + 5 + 1);
        assert_eq!(o.modes.len(), 4);
        assert_eq!(o.modes[0].dump_mode.as_deref(), Some("fentry/do_coredump"));
        assert!((o.modes[0].attach_secs.unwrap() - 2.5).abs() < 1e-9);
        assert!(o.passed());
    }

    #[test]
    fn a_wrong_verdict_in_one_mode_fails_it_and_the_comparison() {
        let o = evaluate(&parse(&report("unknown")), &boot_end());
        let failed: Vec<(&str, Option<&str>)> =
            o.checks.iter().filter(|c| !c.pass).map(|c| (c.subject.as_str(), c.mode.as_deref())).collect();
        assert_eq!(failed, [("file", Some("kprobe")), ("file", Some("all"))]);
        assert!(!o.passed());
    }

    #[test]
    fn a_guest_that_never_finished_fails() {
        let text = report("stored");
        let cut = &text[..text.find("@@INFO mode=kprobe").unwrap()];
        let o = evaluate(&parse(cut), &BootEnd { timed_out: true, exit: None, console: "Kernel panic - not syncing" });
        assert!(!o.passed());
        assert!(o.checks[0].detail.contains("time limit"));
        assert!(o.checks.iter().any(|c| c.subject == "crashtrace" && c.mode.as_deref() == Some("kprobe") && !c.pass));
    }

    #[test]
    fn crashtrace_start_failure_is_reported_verbatim() {
        let text = report("stored").replace(
            "@@BEGIN stderr-infer\ncrashtrace: attached in 123 ns\n",
            "@@BEGIN stderr-infer\ncrashtrace: kernel BTF: struct mm_struct has no member flags\n",
        );
        let o = evaluate(&parse(&text), &boot_end());
        let c = o.checks.iter().find(|c| c.subject == "crashtrace" && c.mode.as_deref() == Some("infer")).unwrap();
        assert!(!c.pass);
        assert!(c.detail.contains("struct mm_struct has no member flags"), "{}", c.detail);
    }

    #[test]
    fn wrong_dump_mode_and_kernel_warnings_fail() {
        let text = report("stored")
            .replace("kprobe/do_coredump", "inferred")
            .replace("[    0.0] Linux version 6.1", "[   9.1] WARNING: CPU: 0 PID: 1 at kernel/bpf/verifier.c");
        let o = evaluate(&parse(&text), &boot_end());
        let failed: Vec<&str> = o.checks.iter().filter(|c| !c.pass).map(|c| c.subject.as_str()).collect();
        assert!(failed.contains(&"crashtrace"));
        assert!(failed.contains(&"kernel-health"));
    }

    #[test]
    fn a_program_the_verifier_rejects_fails_the_mode() {
        let rejected = r#"{"name":"cgroup_sysctl","state":"unavailable","detail":"the BPF_PROG_LOAD syscall returned Argument list too long (os error 7). Verifier output: 0: R1=ctx\n1: (bf) r8 = r1\nBPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns (limit 1000000)\n: Argument list too long (os error 7)"}"#;
        let text = report("stored").replace(
            r#"{"name":"kprobe/do_coredump","state":"unavailable","detail":"x"}"#,
            rejected,
        );
        let o = evaluate(&parse(&text), &boot_end());
        let failed: Vec<(&str, Option<&str>)> =
            o.checks.iter().filter(|c| !c.pass).map(|c| (c.subject.as_str(), c.mode.as_deref())).collect();
        assert_eq!(failed.len(), 4, "{failed:?}");
        assert!(failed.iter().all(|(s, _)| *s == "verifier"));
        let c = o.checks.iter().find(|c| c.subject == "verifier").unwrap();
        assert!(c.detail.contains("cgroup_sysctl"), "{}", c.detail);
        let hook = &o.modes[0].unavailable_hooks[0];
        assert!(hook.contains("BPF program is too large"), "{hook}");
        assert!(!hook.contains("R1=ctx"), "{hook}");
    }

    #[test]
    fn versions_and_dump_entry() {
        assert_eq!(kernel_version("5.10.0-46-cloud-amd64"), Some((5, 10)));
        assert_eq!(kernel_version("6.18.15+deb13-cloud-amd64"), Some((6, 18)));
        assert_eq!(dump_function((6, 12)), "do_coredump");
        assert_eq!(dump_function((6, 17)), "vfs_coredump");
        assert_eq!(dump_function((7, 3)), "vfs_coredump");
    }
}

//! Judging the .deb's service scenario (deb-scenario.sh) in the distro
//! tier: what the guest recorded, against what the package promises.
//!
//! Not yet run by any tier: the distro tier (`cargo xtask distro-test`,
//! xtask/src/distro*) is being built on another branch. Wiring it in takes:
//! the .deb from `dist::build` on the payload disk, deb-scenario.sh run
//! once per boot by the tier's scenario unit (it installs, enables and
//! reboots on the first boot), gdb in the image, and this module's
//! [`evaluate`] over the results' key=value facts.

use std::collections::BTreeMap;

/// The guest's script, shipped on the payload disk.
pub(crate) const SCRIPT: &str = include_str!("deb-scenario.sh");

/// One check: its id, whether it held, and what was seen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Check {
    pub id: &'static str,
    pub ok: bool,
    pub seen: String,
}

/// key=value lines; the last value of a key wins.
pub(crate) fn parse_facts(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.to_string())).collect()
}

/// Every check of the scenario, in order.
pub(crate) fn evaluate(facts: &BTreeMap<String, String>) -> Vec<Check> {
    let get = |k: &str| facts.get(k).map(String::as_str).unwrap_or("(not recorded)");
    let num = |k: &str| facts.get(k).and_then(|v| v.trim().parse::<u64>().ok()).filter(|n| *n > 0);
    let yes = |k: &str| get(k) == "yes";
    let mut out = Vec::new();
    let mut check = |id: &'static str, ok: bool, seen: String| out.push(Check { id, ok, seen });
    check("install", get("install.dpkg_rc") == "0" && get("install.enable_rc") == "0", format!("dpkg -i rc {}, enable rc {}", get("install.dpkg_rc"), get("install.enable_rc")));
    check("conffile", get("install.conffile") == "/etc/crashtrace/crashtrace.toml", format!("conffiles: {}", get("install.conffile")));
    check("type-notify", get("unit_type") == "notify" && get("active_state") == "active", format!("Type={}, {}", get("unit_type"), get("active_state")));
    let early = match (num("crashtrace_active_us"), num("sysinit_active_us"), num("default_active_us")) {
        (Some(c), Some(s), Some(d)) => c <= s && c < d,
        _ => false,
    };
    check(
        "active-before-default-target",
        early,
        format!(
            "crashtrace active at {} us, sysinit.target {}, {} {}",
            get("crashtrace_active_us"),
            get("sysinit_active_us"),
            get("default_target"),
            get("default_active_us")
        ),
    );
    check("traces", yes("a.verdict_logged"), format!("verdict for pid {}: {}", get("a.crasher_pid"), get("a.verdict_logged")));
    check(
        "reload-keeps-the-process",
        get("reload_rc") == "0" && num("main_pid_start").is_some() && get("main_pid_after_reload") == get("main_pid_start") && yes("r.verdict_logged"),
        format!("reload rc {}, MainPID {} -> {}, verdict after: {}", get("reload_rc"), get("main_pid_start"), get("main_pid_after_reload"), get("r.verdict_logged")),
    );
    check(
        "restart-while-pid1-healthy",
        get("restart_rc") == "0"
            && get("active_after_restart") == "active"
            && num("main_pid_after_restart").is_some()
            && get("main_pid_after_restart") != get("main_pid_start")
            && num("headers_in_log").is_some_and(|n| n >= 2)
            && yes("s.verdict_logged"),
        format!(
            "restart rc {}, {}, MainPID {} -> {}, {} headers, verdict after: {}",
            get("restart_rc"),
            get("active_after_restart"),
            get("main_pid_start"),
            get("main_pid_after_restart"),
            get("headers_in_log"),
            get("s.verdict_logged")
        ),
    );
    check("pid1-froze", get("gdb_rc") == "0" && num("frozen_after").is_some_and(|n| n < 120), format!("gdb rc {}, frozen after {} s", get("gdb_rc"), get("frozen_after")));
    check("pid1-crash-logged", yes("pid1_verdict_logged"), format!("PID 1's verdict: {}", get("pid1_verdict_logged")));
    check(
        "outlives-pid1",
        yes("alive_after_freeze") && yes("alive_at_end") && yes("f.verdict_logged") && yes("g.verdict_logged"),
        format!(
            "alive after the freeze: {}, at the end: {}; verdicts after the freeze: {}, {}",
            get("alive_after_freeze"),
            get("alive_at_end"),
            get("f.verdict_logged"),
            get("g.verdict_logged")
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "install.dpkg_rc=0\ninstall.enable_rc=0\ninstall.conffile=/etc/crashtrace/crashtrace.toml\n\
        unit_type=notify\nactive_state=active\ncrashtrace_active_us=2100000\nsysinit_active_us=2300000\n\
        default_target=graphical.target\ndefault_active_us=9000000\nmain_pid_start=210\na.crasher_pid=700\na.verdict_logged=yes\n\
        reload_rc=0\nmain_pid_after_reload=210\nr.verdict_logged=yes\nrestart_rc=0\nmain_pid_after_restart=720\n\
        active_after_restart=active\nheaders_in_log=2\ns.verdict_logged=yes\ngdb_rc=0\nfrozen_after=3\n\
        pid1_verdict_logged=yes\nalive_after_freeze=yes\nf.verdict_logged=yes\ng.verdict_logged=yes\nalive_at_end=yes\n";

    fn failed(facts: &str) -> Vec<&'static str> {
        evaluate(&parse_facts(facts)).into_iter().filter(|c| !c.ok).map(|c| c.id).collect()
    }

    #[test]
    fn a_good_run_passes_every_check() {
        assert_eq!(failed(GOOD), Vec::<&str>::new());
        assert_eq!(evaluate(&parse_facts(GOOD)).len(), 10);
    }

    #[test]
    fn each_broken_promise_fails_its_check() {
        let with = |k: &str, v: &str| format!("{GOOD}{k}={v}\n");
        assert_eq!(failed(&with("crashtrace_active_us", "9500000")), ["active-before-default-target"]);
        assert_eq!(failed(&with("unit_type", "simple")), ["type-notify"]);
        assert_eq!(failed(&with("main_pid_after_reload", "230")), ["reload-keeps-the-process"]);
        assert_eq!(failed(&with("main_pid_after_restart", "210")), ["restart-while-pid1-healthy"]);
        assert_eq!(failed(&with("alive_at_end", "no")), ["outlives-pid1"]);
        assert_eq!(failed(&with("g.verdict_logged", "no")), ["outlives-pid1"]);
        assert_eq!(failed(&with("install.conffile", "")), ["conffile"]);
        // Nothing recorded is a failure of everything, not a pass.
        assert_eq!(failed("").len(), 10);
    }

    #[test]
    fn the_script_records_every_fact_the_checks_read() {
        for key in parse_facts(GOOD).keys() {
            let (step, name) = key.split_once('.').map(|(s, n)| (Some(s), n)).unwrap_or((None, key.as_str()));
            let recorded = match step {
                Some("install") => SCRIPT.contains(&format!("fact install.{name} ")),
                Some(s) => SCRIPT.contains(&format!("crash {s}")) && SCRIPT.contains(&format!("fact \"$1.{name}\"")),
                None => SCRIPT.contains(&format!("fact {name} ")),
            };
            assert!(recorded, "deb-scenario.sh does not record {key}");
        }
    }
}

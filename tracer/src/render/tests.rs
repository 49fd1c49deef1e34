//! Text a process chose never reaches the terminal raw: every render of a
//! hostile event and chain is checked for control characters.

use super::*;
use crate::{
    chain::Chain,
    core_pattern::CoreSettings,
    correlate::{Config, Correlator},
    event::{Body, CgroupOp, Event, Proc, Role, SigInfo},
    record::Watched,
};

/// A comm that clears the screen, starts a forged line and turns the text
/// around; the kernel keeps 15 bytes of it, but fields like argv and paths
/// have no such limit.
const EVIL: &str = "\x1b[2J\n━━ crash #9 \u{202e}dlrow\u{9b}31m\t\r";

fn evil(pid: u32) -> Proc {
    Proc { pid, tgid: pid, comm: EVIL.into() }
}

fn ev(ts_ms: u64, task: Proc, body: Body) -> Event {
    Event { ts_ns: ts_ms * 1_000_000, cpu: 0, task, cgroup_id: 7, body }
}

/// Fails with the offending text if any line holds a control character or
/// a bidi control (a line's own trailing newline excepted).
fn assert_clean(what: &str, text: &str) {
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let bad: Vec<char> = body
            .chars()
            .filter(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
            .collect();
        assert!(bad.is_empty(), "{what}: raw {bad:?} in {body:?}");
    }
}

fn hostile_events() -> Vec<Event> {
    let pattern = format!("|/usr/lib/{EVIL} %P");
    vec![
        ev(0, Proc::default(), Body::CoreSettings(CoreSettings {
            core_pattern: pattern.clone(),
            core_pipe_limit: 0,
            core_uses_pid: false,
            helper_executable: Some(true),
            set_by: None,
        })),
        ev(1, evil(50), Body::SysctlWrite { name: format!("kernel/{EVIL}"), old_value: EVIL.into(), new_value: pattern }),
        ev(2, evil(50), Body::Cgroup {
            op: CgroupOp::Rmdir,
            root: 0,
            id: 7,
            level: 2,
            populated: None,
            path: format!("/x/{EVIL}"),
            zombies: vec![evil(51)],
        }),
        ev(3, evil(100), Body::SignalGenerate {
            sig: 11,
            code: 1,
            errno: 0,
            group: 0,
            result: 0,
            info: SigInfo::Full,
            target: evil(100),
            target_ppid: 1,
            target_handler: 0,
            target_blocked: false,
            fault_addr: Some(0x10),
            si_pid: None,
            si_uid: None,
        }),
        ev(4, evil(100), Body::SignalDeliver {
            sig: 11,
            code: 1,
            errno: 0,
            info: SigInfo::Full,
            sa_handler: 0,
            sa_flags: 0,
            fault_addr: Some(0x10),
            si_pid: None,
            rlimit_core: None,
            ppid: 1,
            dumpable: Some(1),
            pidns: None,
            ns_pid: None,
        }),
        ev(5, evil(200), Body::HelperExec { filename: format!("/usr/lib/{EVIL}"), argv: vec![EVIL.into(), "100".into()], args_truncated: false }),
        ev(6, evil(200), Body::HelperConnect { family: 1, path: format!("/run/{EVIL}"), ret: -111 }),
        ev(7, evil(100), Body::ProcessExit { exit_code: 0x8b, ppid: 1, roles: vec![Role::Crasher] }),
        ev(8, evil(200), Body::ProcessExit { exit_code: 0x100, ppid: 2, roles: vec![Role::Helper] }),
        ev(9, evil(60), Body::ProcessFork { child: 61 }),
    ]
}

fn hostile_chain() -> Chain {
    let mut c = Correlator::new(Config::default());
    let mut done = Vec::new();
    for e in hostile_events() {
        done.extend(c.feed(&e));
    }
    done.extend(c.flush());
    let mut chain = done.into_iter().next().expect("the crash makes a chain");
    chain.evidence.push(format!("wchan of {EVIL}"));
    chain.missing = Some(EVIL.into());
    chain.cgroup_path = Some(format!("/x/{EVIL}"));
    chain
}

#[test]
fn event_lines_escape_what_a_process_named() {
    for color in [false, true] {
        for e in hostile_events() {
            let line = event_line(&e, 0, Style { color });
            // Colour codes are ours and allowed; strip the ones we write.
            let ours = line.replace("\x1b[2m", "").replace("\x1b[0m", "");
            assert_clean(e.body.name(), &ours);
            assert!(!line.contains('\n'), "one event is one line: {line:?}");
        }
    }
}

#[test]
fn verdict_blocks_escape_what_a_process_named() {
    let chain = hostile_chain();
    assert!(chain.collector.is_some() && !chain.cgroup_context.is_empty(), "the fixture reaches every section: {chain:#?}");
    let text = verdict_block(&chain, 0, Style::default());
    assert_clean("verdict block", &text);
    assert!(text.contains("\\x1b[2J\\n━━ crash #9 \\u{202e}dlrow\\u{9b}31m\\t\\r"), "the name is shown, escaped:\n{text}");
    // Only our own title line starts with the block's rule.
    assert_eq!(text.lines().filter(|l| l.starts_with("━━")).count(), 1);
}

#[test]
fn records_escape_what_a_process_named() {
    let w = Watched { ts_ns: 0, pid: 5, state: crate::watched::State::Running, evidence: vec![format!("in {EVIL}")] };
    assert_clean("watched", &watched_text(&w, 0, Style::default()));
}

//! The correlator fed with sequences recorded from real crashes on this
//! machine (tests/fixtures, re-recorded by tests/fixtures/record.sh), and with
//! hand-built sequences for the verdicts a single host cannot produce on
//! demand (a collector that succeeds, a vanished reader, a full pipe limit).

use super::*;
use crate::{
    event::SigInfo,
    record::{Line, Record},
    verdict::Verdict,
};

const MS: u64 = 1_000_000;

fn fixture(name: &str) -> Vec<Line> {
    let path = format!("{}/tests/fixtures/{name}.jsonl", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}:{}: {e}", i + 1)))
        .collect()
}

/// Replays the fixture's events the way `crashtrace report` does and returns
/// (rebuilt chains, verdict records the live tracer printed).
fn replay(name: &str) -> (Vec<Chain>, Vec<Chain>) {
    let mut c = Correlator::new(Config::default());
    let mut rebuilt = Vec::new();
    let mut recorded = Vec::new();
    for line in fixture(name) {
        match line.record {
            Record::Event(e) => {
                rebuilt.extend(c.feed(&e.event));
                check_indexes(&c);
                rebuilt.extend(c.tick(e.event.ts_ns));
                check_after_tick(&c);
            }
            Record::Verdict(chain) => recorded.push(*chain),
            _ => {}
        }
    }
    rebuilt.extend(c.flush());
    (rebuilt, recorded)
}

/// The chain of the test's own crashing program (the fixtures also hold
/// other processes' deaths: this machine is shared).
fn chain_of<'a>(chains: &'a [Chain], comm: &str) -> &'a Chain {
    chains
        .iter()
        .find(|c| c.crasher.comm == comm)
        .unwrap_or_else(|| panic!("no chain for {comm} in {:?}", chains.iter().map(|c| &c.crasher).collect::<Vec<_>>()))
}

/// Replay gives the verdict the live tracer printed, and the one expected.
fn check_fixture(name: &str, comm: &str, expected: Verdict) -> Chain {
    let (rebuilt, recorded) = replay(name);
    for live in &recorded {
        let again = rebuilt
            .iter()
            .find(|c| c.crasher.tgid == live.crasher.tgid)
            .unwrap_or_else(|| panic!("{name}: live chain for {} not rebuilt", live.crasher));
        assert_eq!(again.verdict, live.verdict, "{name}: {} verdict differs from live", live.crasher);
    }
    let chain = chain_of(&rebuilt, comm).clone();
    assert_eq!(chain.verdict, Some(expected), "{name}: reason {:?}", chain.reason);
    chain
}

#[test]
fn recorded_file_pattern_fault_is_stored() {
    let c = check_fixture("file-stored", "crash", Verdict::Stored);
    assert_eq!(c.origin, Origin::Fault);
    assert_eq!(c.fault_addr, Some(0));
    assert!(c.kernel_said_dumped);
    assert_eq!(c.disposition, Some(Disposition::Default));
    assert_eq!(c.sigchld.as_deref(), Some("CLD_DUMPED"));
}

#[test]
fn recorded_rlimit_zero_abort_is_dropped_rlimit_core() {
    let c = check_fixture("rlimit-core", "crash", Verdict::RlimitCore);
    assert_eq!(c.origin, Origin::Tkill);
    assert!(!c.kernel_said_dumped);
    assert_eq!(c.dump.as_ref().unwrap().rlimit_core, Some(0));
}

#[test]
fn recorded_systemd_coredump_without_pid1_is_unreachable_pid1() {
    let c = check_fixture("systemd-no-pid1", "crash", Verdict::CollectorUnreachablePid1);
    assert!(c.kernel_said_dumped, "the kernel said core dumped");
    assert!(c.misleading_core_dumped());
    let collector = c.collector.as_ref().expect("collector");
    assert_eq!(collector.filename, "/lib/systemd/systemd-coredump");
    assert_eq!(collector.matched_by, MatchedBy::Argv);
    assert_eq!(collector.argv[1], c.crasher.tgid.to_string());
    assert!(collector.connects.iter().any(|k| k.path == "/run/systemd/coredump" && k.ret == -2));
    assert_eq!(collector.exit_code, Some(1 << 8));
}

#[test]
fn recorded_bin_false_discards() {
    let c = check_fixture("bin-false", "crash", Verdict::CorePatternDiscards);
    assert!(c.misleading_core_dumped());
    assert_eq!(c.collector.as_ref().unwrap().filename, "/bin/false");
}

#[test]
fn recorded_kill_segv_names_the_sender() {
    let c = check_fixture("kill-segv", "crash", Verdict::Stored);
    assert_eq!(c.origin, Origin::Kill);
    let sender = c.sender.as_ref().expect("sender");
    assert_ne!(sender.tgid, c.crasher.tgid);
    assert_eq!(sender.comm, "bash");
}

#[test]
fn recorded_sigkill_is_no_dump() {
    let c = check_fixture("sigkill", "crash", Verdict::NoDump);
    assert!(!c.kernel_said_dumped);
}

#[test]
fn recorded_missing_helper_discards() {
    let c = check_fixture("missing-helper", "crash", Verdict::CorePatternDiscards);
    assert!(c.collector.is_none());
    assert!(c.reason.contains("missing"), "{}", c.reason);
}

#[test]
fn recorded_crash_handler_reraise_links_child_to_parent() {
    let (rebuilt, _) = replay("handled-reraise");
    let parent = rebuilt.iter().find(|c| c.verdict == Some(Verdict::Handled)).expect("handled chain");
    let child = rebuilt
        .iter()
        .find(|c| c.crasher.comm == "handler" && c.verdict == Some(Verdict::Stored))
        .expect("re-raised child chain");
    assert_eq!(child.linked_to, Some(parent.id));
    assert_eq!(child.ppid, Some(parent.crasher.tgid));
    assert_eq!(child.origin, Origin::Kill);
}

// ---- the indexes of open chains ----------------------------------------

/// The indexes of open chains say what a walk over every open chain would:
/// checked after every event and tick of the fixtures and of `run`.
fn check_indexes(c: &Correlator) {
    let mut by_cgroup: HashMap<u64, BTreeSet<u64>> = HashMap::new();
    for (id, o) in &c.open {
        by_cgroup.entry(o.chain.cgroup_id).or_default().insert(*id);
    }
    assert_eq!(c.by_cgroup, by_cgroup, "cgroup index");
    let watched: BTreeSet<u64> = c
        .open
        .iter()
        .filter(|(_, o)| o.complete_at.is_some() || o.chain.collector.as_ref().is_some_and(|h| h.exit_ts_ns.is_some()))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(c.watch, watched, "watched chains");
    for (id, o) in &c.open {
        if !c.watch.contains(id) {
            assert!(c.idle.contains(&(o.idle_key, *id)), "chain {id} is neither watched nor queued for its idle timeout");
            assert!(o.idle_key <= o.chain.last_ts_ns, "chain {id} queued after its last evidence");
        }
    }
    for (key, id) in &c.idle {
        assert_eq!(c.open.get(id).map(|o| o.idle_key), Some(*key), "idle entry ({key}, {id}) of no open chain");
    }
}

/// After a tick, no open chain is one a walk over all of them would have
/// ended (the tick before the indexes), and the indexes still agree.
fn check_after_tick(c: &Correlator) {
    check_indexes(c);
    let now = c.now_ns;
    for (id, o) in &c.open {
        let due = match o.complete_at {
            Some(at) => {
                let after_grace = at.saturating_add(c.cfg.grace_ns);
                now >= after_grace && (!awaits_core(&o.chain) || now >= after_grace.saturating_add(c.cfg.core_wait_ns))
            }
            None if awaiting_handoff(&o.chain) => false,
            None => now >= o.chain.last_ts_ns.saturating_add(c.cfg.idle_timeout_ns),
        };
        assert!(!due, "chain {id} is due at {now} but still open");
    }
}

/// The group's oldest open chain, as the walk found it; a chain that moves
/// to another group (the delivery's, not the fault's) leaves the old one;
/// an ended chain is found among the finished; a new path names only the
/// chains in its group.
#[test]
fn a_cgroup_event_finds_the_oldest_open_chain_of_its_group() {
    let in_group = |mut e: Event, cgroup: u64| {
        e.cgroup_id = cgroup;
        e
    };
    let removed = |cgroup: u64| ev(50, proc(1, "systemd"), Body::Cgroup { op: CgroupOp::Rmdir, root: 0, id: cgroup, level: 1, populated: None, path: format!("/g{cgroup}"), zombies: vec![] });
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("core", 0, None));
    // 10 and 11 in group 7, 12 faults in 7 but is delivered in 8.
    c.feed(&in_group(deliver(1, 10, SEGV, 0, None, Some(1)), 7));
    c.feed(&in_group(deliver(2, 11, SEGV, 0, None, Some(1)), 7));
    c.feed(&in_group(fault(3, 12, SEGV), 7));
    c.feed(&in_group(deliver(3, 12, SEGV, 0, None, Some(1)), 8));
    check_indexes(&c);
    let id_of = |c: &Correlator, tgid: u32| c.by_tgid[&tgid];
    let (first, second, moved) = (id_of(&c, 10), id_of(&c, 11), id_of(&c, 12));
    assert_eq!(c.chain_of_cgroup_event(&removed(7)), Some(first));
    assert_eq!(c.chain_of_cgroup_event(&removed(8)), Some(moved));
    assert_eq!(c.chain_of_cgroup_event(&removed(9)), None);
    c.learn_cgroup_path(8, "/eight".into());
    assert_eq!(c.open[&moved].chain.cgroup_path.as_deref(), Some("/eight"));
    assert_eq!(c.open[&first].chain.cgroup_path, None);
    // The first ends: the group's next open chain, then the finished one.
    c.feed(&in_group(exit(4, proc(10, "app"), 139, Role::Crasher), 7));
    let ended = c.tick((4 + 200 + 3_000) * MS);
    assert!(ended.iter().any(|ch| ch.id == first), "{ended:?}");
    check_after_tick(&c);
    assert_eq!(c.chain_of_cgroup_event(&removed(7)), Some(second));
    c.flush();
    assert_eq!(c.chain_of_cgroup_event(&removed(7)), Some(second), "the newest finished chain of the group");
    assert!(c.by_cgroup.is_empty() && c.watch.is_empty() && c.idle.is_empty());
}

/// A chain is ended by the idle timeout counted from its last evidence,
/// not from when it was first queued; the others around it stay.
#[test]
fn an_idle_chain_ends_at_the_timeout_from_its_last_evidence() {
    let idle = Config::default().idle_timeout_ns / MS;
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("core", 0, None));
    for pid in 100..110 {
        c.feed(&deliver(u64::from(pid), pid, SEGV, 0, None, Some(1)));
    }
    // 105 has news half-way (a stack), so it outlives the others.
    let stack = ev(idle / 2, proc(105, "app"), Body::StackCapture { sig: SEGV, user: vec![0x1000], kernel: vec![], build_ids: vec![], ip: None, sp: None, bp: None, user_errno: None, kernel_errno: None });
    c.feed(&stack);
    assert!(c.tick((100 + idle) * MS - 1).is_empty());
    check_after_tick(&c);
    let ended: Vec<u32> = c.tick((109 + idle) * MS).iter().map(|ch| ch.crasher.tgid).collect();
    assert_eq!(ended, (100..110).filter(|p| *p != 105).collect::<Vec<_>>());
    check_after_tick(&c);
    assert_eq!(c.open_chains(), 1);
    assert!(c.tick((idle / 2 + idle) * MS - 1).is_empty());
    let last: Vec<u32> = c.tick((idle / 2 + idle) * MS).iter().map(|ch| ch.crasher.tgid).collect();
    assert_eq!(last, vec![105]);
    assert_eq!(c.state_size(), c.handled.len() + c.handled_order.len() + c.recent_cgroups.len() + c.cgroup_paths.len() + c.finished_cgroups.len());
}

// ---- hand-built sequences ----------------------------------------------

fn proc(pid: u32, comm: &str) -> Proc {
    Proc { pid, tgid: pid, comm: comm.into() }
}

fn ev(ts_ms: u64, task: Proc, body: Body) -> Event {
    Event { ts_ns: ts_ms * MS, cpu: 0, task, cgroup_id: 1, body }
}

fn settings(pattern: &str, pipe_limit: u32, helper_executable: Option<bool>) -> Event {
    ev(
        0,
        Proc::default(),
        Body::CoreSettings(CoreSettings {
            core_pattern: pattern.into(),
            core_pipe_limit: pipe_limit,
            core_uses_pid: false,
            helper_executable,
            set_by: None,
        }),
    )
}

fn fault(ts: u64, pid: u32, sig: i32) -> Event {
    ev(
        ts,
        proc(pid, "app"),
        Body::SignalGenerate {
            sig,
            code: 1,
            errno: 0,
            group: 0,
            result: 0,
            info: SigInfo::Full,
            target: proc(pid, "app"),
            target_ppid: 1,
            target_handler: 0,
            target_blocked: false,
            fault_addr: Some(0x10),
            si_pid: None,
            si_uid: None,
        },
    )
}

fn deliver(ts: u64, pid: u32, sig: i32, handler: u64, rlimit: Option<u64>, dumpable: Option<u32>) -> Event {
    ev(
        ts,
        proc(pid, "app"),
        Body::SignalDeliver {
            sig,
            code: 1,
            errno: 0,
            info: SigInfo::Full,
            sa_handler: handler,
            sa_flags: 0,
            fault_addr: Some(0x10),
            si_pid: None,
            rlimit_core: rlimit,
            ppid: 1,
            dumpable,
            pidns: None,
            ns_pid: None,
        },
    )
}

fn exit(ts: u64, p: Proc, code: i32, role: Role) -> Event {
    ev(ts, p, Body::ProcessExit { exit_code: code, ppid: 1, roles: vec![role] })
}

fn helper_exec(ts: u64, pid: u32, argv: &[&str]) -> Event {
    ev(
        ts,
        proc(pid, "collector"),
        Body::HelperExec {
            filename: argv[0].into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            args_truncated: false,
        },
    )
}

fn run(events: &[Event]) -> Vec<Chain> {
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    for e in events {
        out.extend(c.feed(e));
        check_indexes(&c);
        out.extend(c.tick(e.ts_ns));
        check_after_tick(&c);
    }
    out.extend(c.flush());
    check_indexes(&c);
    out
}

fn only(chains: Vec<Chain>) -> Chain {
    assert_eq!(chains.len(), 1, "{chains:?}");
    chains.into_iter().next().unwrap()
}

/// runc's init execs the container's program: exec's de_thread SIGKILLs
/// the other threads (no sender, SI_USER, a non-leader thread); the program
/// then faults. One chain, the SIGSEGV's, with its dump.
#[test]
fn an_execs_sigkill_of_other_threads_does_not_swallow_the_crash() {
    let kill = tracer_common::signal::SIGKILL;
    let mut zap = deliver(1, 500, kill, 0, None, Some(1));
    zap.task = Proc { pid: 504, tgid: 500, comm: "runc:[2:INIT]".into() };
    if let Body::SignalDeliver { code, fault_addr, .. } = &mut zap.body {
        (*code, *fault_addr) = (0, None);
    }
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    for e in [settings("core", 0, None), zap, fault(5, 500, SEGV), deliver(5, 500, SEGV, 0, None, Some(1)), exit(9, proc(500, "app"), 139, Role::Crasher)] {
        out.extend(c.feed(&e));
    }
    out.extend(c.flush());
    let chain = only(out);
    assert_eq!((chain.sig, chain.crasher.pid, chain.dump.is_some()), (SEGV, 500, true), "{chain:?}");
    assert!(!chain.timeline.iter().any(|s| s.what.contains("SIGKILL")), "{:?}", chain.timeline);
    assert_eq!(c.stats().exec_zaps_dropped, 1);
}

/// A SIGKILLed process whose exit event was lost (a full ring buffer),
/// and then a new process with the same pid that faults seconds later: two
/// chains, each with its own signal, not one SIGKILL chain swallowing the
/// new crash.
#[test]
fn a_reused_pid_after_a_lost_exit_opens_its_own_chain() {
    let kill = tracer_common::signal::SIGKILL;
    let mut killed = deliver(10, 700, kill, 0, None, Some(1));
    killed.task = proc(700, "rustc");
    if let Body::SignalDeliver { code, fault_addr, .. } = &mut killed.body {
        (*code, *fault_addr) = (0, None);
    }
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    // The same pid's own fault within the bound still belongs to the death
    // (a thread racing into the exit).
    let racing = [settings("core", 0, None), killed, fault(500, 700, SEGV)];
    for e in &racing {
        out.extend(c.feed(e));
        out.extend(c.tick(e.ts_ns));
    }
    assert!(out.is_empty(), "{out:?}");
    for e in [fault(3_000, 700, SEGV), deliver(3_000, 700, SEGV, 0, None, Some(1)), exit(3_005, proc(700, "app"), 139, Role::Crasher)] {
        out.extend(c.feed(&e));
        out.extend(c.tick(e.ts_ns));
    }
    out.extend(c.flush());
    assert_eq!(out.len(), 2, "{out:?}");
    let (old, new) = (&out[0], &out[1]);
    assert_eq!((old.sig, old.crasher.comm.as_str(), old.verdict), (kill, "rustc", Some(Verdict::NoDump)), "{old:?}");
    assert!(old.reason.contains("new process"), "{}", old.reason);
    assert_eq!((new.sig, new.crasher.comm.as_str(), new.dump.is_some(), new.exit_code), (SEGV, "app", true, Some(139)), "{new:?}");
    assert!(!new.timeline.iter().any(|s| s.what.contains("SIGKILL")), "{:?}", new.timeline);
    assert_eq!(c.stats().pids_reused, 1);
}

const SEGV: i32 = tracer_common::signal::SIGSEGV;
const PIPE: &str = "|/usr/lib/collector %P";

#[test]
fn pipe_collector_that_exits_zero_stores() {
    let c = only(run(&[
        settings(PIPE, 0, Some(true)),
        fault(1, 100, SEGV),
        deliver(2, 100, SEGV, 0, None, Some(1)),
        helper_exec(3, 200, &["/usr/lib/collector", "100"]),
        exit(5, proc(100, "app"), 0x8b, Role::Crasher),
        exit(6, proc(200, "collector"), 0, Role::Helper),
    ]));
    assert_eq!(c.verdict, Some(Verdict::Stored));
    assert!(!c.misleading_core_dumped());
}

#[test]
fn pipe_collector_exit_nonzero_is_collector_failed() {
    let c = only(run(&[
        settings(PIPE, 0, Some(true)),
        fault(1, 100, SEGV),
        deliver(2, 100, SEGV, 0, None, Some(1)),
        helper_exec(3, 200, &["/usr/lib/collector", "100"]),
        exit(5, proc(200, "collector"), 3 << 8, Role::Helper),
        exit(6, proc(100, "app"), 0x8b, Role::Crasher),
    ]));
    assert_eq!(c.verdict, Some(Verdict::CollectorFailed));
    assert!(c.reason.contains("status 3"), "{}", c.reason);
    assert!(c.misleading_core_dumped());
}

#[test]
fn sigpipe_during_dump_is_reader_vanished() {
    let c = only(run(&[
        settings(PIPE, 0, Some(true)),
        fault(1, 100, SEGV),
        deliver(2, 100, SEGV, 0, None, Some(1)),
        helper_exec(3, 200, &["/usr/lib/collector", "100"]),
        ev(
            4,
            proc(100, "app"),
            Body::SignalGenerate {
                sig: tracer_common::signal::SIGPIPE,
                code: 0,
                errno: 0,
                group: 0,
                result: 1,
                info: SigInfo::Full,
                target: proc(100, "app"),
                target_ppid: 1,
                target_handler: 0,
                target_blocked: false,
                fault_addr: None,
                si_pid: Some(100),
                si_uid: Some(0),
            },
        ),
        exit(5, proc(200, "collector"), 0, Role::Helper),
        exit(6, proc(100, "app"), 0x8b, Role::Crasher),
    ]));
    assert_eq!(c.verdict, Some(Verdict::ReaderVanished));
    assert!(c.sigpipe_during_dump);
}

#[test]
fn not_dumpable_wins_over_the_pattern() {
    let c = only(run(&[
        settings("/var/crash/core.%p", 0, None),
        fault(1, 100, SEGV),
        deliver(2, 100, SEGV, 0, None, Some(0)),
        exit(3, proc(100, "app"), SEGV, Role::Crasher),
    ]));
    assert_eq!(c.verdict, Some(Verdict::NotDumpable));
}

#[test]
fn rlimit_one_refuses_a_pipe() {
    let c = only(run(&[
        settings(PIPE, 0, Some(true)),
        fault(1, 100, SEGV),
        deliver(2, 100, SEGV, 0, Some(1), Some(1)),
        exit(3, proc(100, "app"), SEGV, Role::Crasher),
    ]));
    assert_eq!(c.verdict, Some(Verdict::RlimitCore));
}

#[test]
fn dumps_over_core_pipe_limit_are_dropped_pipe_limit() {
    // Limit 1: the first dump is in flight (no exit yet) when the second starts.
    let chains = run(&[
        settings(PIPE, 1, Some(true)),
        fault(1, 100, SEGV),
        deliver(2, 100, SEGV, 0, None, Some(1)),
        helper_exec(3, 200, &["/usr/lib/collector", "100"]),
        fault(4, 101, SEGV),
        deliver(5, 101, SEGV, 0, None, Some(1)),
        exit(6, proc(101, "app"), SEGV, Role::Crasher),
        exit(7, proc(200, "collector"), 0, Role::Helper),
        exit(8, proc(100, "app"), 0x8b, Role::Crasher),
    ]);
    let second = chains.iter().find(|c| c.crasher.tgid == 101).unwrap();
    assert_eq!(second.verdict, Some(Verdict::PipeLimit), "{}", second.reason);
    let first = chains.iter().find(|c| c.crasher.tgid == 100).unwrap();
    assert_eq!(first.verdict, Some(Verdict::Stored));
}

#[test]
fn socket_pattern_without_core_dumped_is_socket_unreachable() {
    let c = only(run(&[
        settings("@/run/cores.sock", 0, None),
        fault(1, 100, SEGV),
        deliver(2, 100, SEGV, 0, None, Some(1)),
        exit(3, proc(100, "app"), SEGV, Role::Crasher),
    ]));
    assert_eq!(c.verdict, Some(Verdict::SocketUnreachable));
}

#[test]
fn missing_delivery_is_unknown_and_names_the_step() {
    let c = only(run(&[settings("core", 0, None), fault(1, 100, SEGV)]));
    assert_eq!(c.verdict, Some(Verdict::Unknown));
    assert_eq!(c.missing.as_deref(), Some("signal-deliver"));
}

#[test]
fn exit_without_acting_on_the_signal_is_unknown_with_reason() {
    let c = only(run(&[settings("core", 0, None), fault(1, 100, SEGV), exit(2, proc(100, "app"), 1 << 8, Role::Crasher)]));
    assert_eq!(c.verdict, Some(Verdict::Unknown));
    assert!(c.reason.contains("blocked or still pending"), "{}", c.reason);
}

#[test]
fn helper_matched_by_timing_when_argv_has_no_pid() {
    let c = only(run(&[
        settings("|/usr/lib/collector", 0, Some(true)),
        fault(1, 100, SEGV),
        deliver(2, 100, SEGV, 0, None, Some(1)),
        helper_exec(3, 200, &["/usr/lib/collector"]),
        exit(4, proc(200, "collector"), 0, Role::Helper),
        exit(5, proc(100, "app"), 0x8b, Role::Crasher),
    ]));
    assert_eq!(c.collector.as_ref().unwrap().matched_by, MatchedBy::Timing);
    assert_eq!(c.verdict, Some(Verdict::Stored));
}

#[test]
fn terminating_signal_caught_by_a_handler_opens_no_chain() {
    let chains = run(&[
        settings("core", 0, None),
        ev(
            1,
            proc(5, "sender"),
            Body::SignalGenerate {
                sig: tracer_common::signal::SIGTERM,
                code: 0,
                errno: 0,
                group: 1,
                result: 0,
                info: SigInfo::Full,
                target: proc(100, "daemon"),
                target_ppid: 1,
                target_handler: 0x4000,
                target_blocked: false,
                fault_addr: None,
                si_pid: Some(5),
                si_uid: Some(0),
            },
        ),
    ]);
    assert!(chains.is_empty(), "{chains:?}");
}

/// A SIGTERM the target blocks (udev workers take it through signalfd, a
/// daemon through sigwait): it is read, not acted on, and the worker exits
/// 0. The kernel drops these unless a watched pid is involved; when one is,
/// no chain may open and end "unknown".
#[test]
fn a_blocked_terminating_signal_taken_through_signalfd_opens_no_chain() {
    let chains = run(&[
        settings("core", 0, None),
        ev(
            1,
            proc(5, "systemd-udevd"),
            Body::SignalGenerate {
                sig: tracer_common::signal::SIGTERM,
                code: 0,
                errno: 0,
                group: 1,
                result: 0,
                info: SigInfo::Full,
                target: proc(100, "(udev-worker)"),
                target_ppid: 5,
                target_handler: 0,
                target_blocked: true,
                fault_addr: None,
                si_pid: Some(5),
                si_uid: Some(0),
            },
        ),
        exit(2, proc(100, "(udev-worker)"), 0, Role::Crasher),
    ]);
    assert!(chains.is_empty(), "{chains:?}");
}

/// A blocked signal that is later unblocked and acted on still makes its
/// chain: signal_deliver opens it.
#[test]
fn a_blocked_signal_acted_on_after_unblocking_is_still_a_chain() {
    let term = tracer_common::signal::SIGTERM;
    let chains = run(&[
        settings("core", 0, None),
        ev(
            1,
            proc(5, "sender"),
            Body::SignalGenerate {
                sig: term,
                code: 0,
                errno: 0,
                group: 1,
                result: 0,
                info: SigInfo::Full,
                target: proc(100, "app"),
                target_ppid: 1,
                target_handler: 0,
                target_blocked: true,
                fault_addr: None,
                si_pid: Some(5),
                si_uid: Some(0),
            },
        ),
        deliver(2, 100, term, 0, None, Some(1)),
        exit(3, proc(100, "app"), term, Role::Crasher),
    ]);
    let c = only(chains);
    assert_eq!(c.verdict, Some(Verdict::NoDump), "{c:?}");
}

#[test]
fn a_complete_chain_waits_for_the_grace_period() {
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("core", 0, None));
    c.feed(&fault(1, 100, SEGV));
    c.feed(&deliver(2, 100, SEGV, 0, None, Some(1)));
    c.feed(&exit(3, proc(100, "app"), 0x8b, Role::Crasher));
    assert!(c.tick(3 * MS).is_empty(), "ended before the parent's SIGCHLD could arrive");
    // A chain that would be stored waits for where its core is.
    assert!(c.tick(3 * MS + Config::default().grace_ns).is_empty());
    let asked = c.core_requests();
    assert_eq!(asked.iter().map(|r| (r.chain.crasher.tgid, r.complete_at_ns)).collect::<Vec<_>>(), vec![(100, 3 * MS)]);
    c.feed(&located(4, 100, Some("/cores/core.100")));
    assert!(c.core_requests().is_empty());
    let done = c.tick(4 * MS + Config::default().grace_ns);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].verdict, Some(Verdict::Stored));
    assert_eq!(done[0].core.as_ref().and_then(|l| l.path.as_deref()), Some("/cores/core.100"));
    assert!(done[0].reason.contains("/cores/core.100"), "{}", done[0].reason);
    assert_eq!(c.state_size(), 0);
}

/// A `core-located` event for the crasher `tgid`: found at `path`, or not.
fn located(ts: u64, tgid: u32, path: Option<&str>) -> Event {
    use crate::core_location::{CoreLocation, FoundBy};
    let loc = match path {
        Some(p) => CoreLocation::found(p.into(), Some(8192), false, FoundBy::FilePattern),
        None => CoreLocation::missing(vec!["/var/lib/systemd/coredump".into()], Some("Storage=none (/run/x.conf)".into())),
    };
    ev(ts, proc(tgid, "app"), Body::CoreLocated(loc))
}

#[test]
fn without_a_lookup_a_chain_is_decided_after_the_core_wait() {
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("core", 0, None));
    c.feed(&fault(1, 100, SEGV));
    c.feed(&deliver(2, 100, SEGV, 0, None, Some(1)));
    c.feed(&exit(3, proc(100, "app"), 0x8b, Role::Crasher));
    let cfg = Config::default();
    assert!(c.tick(3 * MS + cfg.grace_ns + cfg.core_wait_ns - 1).is_empty());
    let done = c.tick(3 * MS + cfg.grace_ns + cfg.core_wait_ns);
    assert_eq!(done.len(), 1);
    // An old log: the kernel's word stands.
    assert_eq!((done[0].verdict, done[0].core.is_none()), (Some(Verdict::Stored), true));
}

#[test]
fn a_pipe_collector_that_kept_nothing_is_collector_discarded() {
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h", 0, Some(true)));
    c.feed(&fault(1, 100, SEGV));
    c.feed(&deliver(2, 100, SEGV, 0, None, None));
    c.feed(&ev(3, proc(200, "systemd-coredum"), Body::HelperExec {
        filename: "/lib/systemd/systemd-coredump".into(),
        argv: vec!["/lib/systemd/systemd-coredump".into(), "100".into()],
        args_truncated: false,
    }));
    c.feed(&exit(4, proc(100, "app"), 0x8b, Role::Crasher));
    c.feed(&exit(5, proc(200, "systemd-coredum"), 0, Role::Helper));
    assert_eq!(c.core_requests().len(), 1);
    c.feed(&located(6, 100, None));
    let done = c.tick(6 * MS + Config::default().grace_ns);
    assert_eq!(done.len(), 1, "{:?}", c.core_requests());
    assert_eq!(done[0].verdict, Some(Verdict::CollectorDiscarded));
    assert!(done[0].reason.contains("Storage=none"), "{}", done[0].reason);
    assert!(done[0].misleading_core_dumped());
}

#[test]
fn an_idle_chain_times_out_as_unknown() {
    let mut c = Correlator::new(Config::default());
    c.feed(&settings(PIPE, 0, Some(true)));
    c.feed(&fault(1, 100, SEGV));
    c.feed(&deliver(2, 100, SEGV, 0, None, Some(1)));
    assert!(c.tick(1_000 * MS).is_empty());
    let done = c.tick(2 * MS + Config::default().idle_timeout_ns);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].verdict, Some(Verdict::Unknown));
    assert_eq!(done[0].missing.as_deref(), Some("helper-exec"));
}

#[test]
fn state_stays_bounded_under_a_storm_of_unfinished_crashes() {
    let cfg = Config { max_open: 64, ..Config::default() };
    let mut c = Correlator::new(cfg);
    c.feed(&settings("core", 0, None));
    let mut ended = 0;
    for pid in 1000..11000u32 {
        ended += c.feed(&fault(1, pid, SEGV)).len();
        assert!(c.open_chains() <= 64);
    }
    assert_eq!(ended, 10_000 - 64);
    assert_eq!(c.stats().chains_evicted, 10_000 - 64);
    let rest = c.flush();
    assert_eq!(rest.len(), 64);
    assert_eq!(c.state_size(), 0);
}

#[test]
fn timeline_is_bounded() {
    let mut events = vec![settings("core", 0, None), fault(1, 100, SEGV)];
    for i in 0..200 {
        events.push(ev(
            2 + i,
            proc(7, "killer"),
            Body::SignalGenerate {
                sig: tracer_common::signal::SIGKILL,
                code: 0,
                errno: 0,
                group: 1,
                result: 0,
                info: SigInfo::Full,
                target: proc(100, "app"),
                target_ppid: 1,
                target_handler: 0,
                target_blocked: false,
                fault_addr: None,
                si_pid: Some(7),
                si_uid: Some(0),
            },
        ));
    }
    let c = only(run(&events));
    assert_eq!(c.timeline.len(), crate::chain::TIMELINE_MAX);
    assert!(c.timeline_dropped > 0);
}

#[test]
fn every_verdict_round_trips_through_its_identifier() {
    for v in Verdict::ALL {
        assert_eq!(Verdict::parse(v.as_str()), Some(v));
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, format!("\"{}\"", v.as_str()));
    }
}

#[test]
fn records_round_trip_through_json() {
    for name in ["systemd-no-pid1", "handled-reraise", "file-stored"] {
        for line in fixture(name) {
            let json = line.to_json();
            let back: Line = serde_json::from_str(&json).unwrap();
            assert_eq!(back, line, "{name}: {json}");
        }
    }
}

#[test]
fn collector_gone_but_dump_unfinished_is_a_stall_reported_while_it_happens() {
    // The incident's deadlock: the collector hands the core to PID 1's socket
    // and exits; PID 1 is in its crash handler and never accepts; the crash
    // child blocks writing its core. No exit ever comes.
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("|/lib/systemd/systemd-coredump %P", 16, Some(true)));
    // PID 1's own handler catches the fault...
    c.feed(&fault(1, 1, SEGV));
    c.feed(&deliver(2, 1, SEGV, 0x5555, None, Some(1)));
    let parent = c.tick(200 * MS);
    assert_eq!(parent.len(), 1);
    assert_eq!(parent[0].verdict, Some(Verdict::Handled));
    // ...and its crash child re-raises.
    let mut child_fault = fault(300, 50, SEGV);
    if let Body::SignalGenerate { target_ppid, code, .. } = &mut child_fault.body {
        *target_ppid = 1;
        *code = 0;
    }
    c.feed(&child_fault);
    let mut child_deliver = deliver(301, 50, SEGV, 0, None, Some(1));
    if let Body::SignalDeliver { ppid, .. } = &mut child_deliver.body {
        *ppid = 1;
    }
    c.feed(&child_deliver);
    c.feed(&helper_exec(302, 60, &["/lib/systemd/systemd-coredump", "50"]));
    c.feed(&ev(303, proc(60, "systemd-coredum"), Body::HelperConnect { family: 1, path: "/run/systemd/coredump".into(), ret: 0 }));
    c.feed(&exit(304, proc(60, "systemd-coredum"), 0, Role::Helper));
    assert!(c.tick(304 * MS + Config::default().stall_ns - MS).is_empty(), "too early for a stall");
    let done = c.tick(304 * MS + Config::default().stall_ns + Config::default().grace_ns);
    assert_eq!(done.len(), 1, "the stall is reported without waiting for an exit");
    let child = &done[0];
    assert!(child.stalled);
    assert_eq!(child.linked_to, Some(parent[0].id));
    assert_eq!(child.verdict, Some(Verdict::CollectorUnreachablePid1));
    assert!(child.reason.contains("deadlock"), "{}", child.reason);
}

#[test]
fn a_stall_without_pid1s_socket_is_unknown() {
    let mut c = Correlator::new(Config::default());
    c.feed(&settings(PIPE, 0, Some(true)));
    c.feed(&fault(1, 100, SEGV));
    c.feed(&deliver(2, 100, SEGV, 0, None, Some(1)));
    c.feed(&helper_exec(3, 200, &["/usr/lib/collector", "100"]));
    c.feed(&exit(4, proc(200, "collector"), 0, Role::Helper));
    let done = c.tick(4 * MS + Config::default().stall_ns + Config::default().grace_ns);
    assert_eq!(done.len(), 1);
    assert!(done[0].stalled);
    assert_eq!(done[0].verdict, Some(Verdict::Unknown));
    assert_eq!(done[0].missing.as_deref(), Some("process-exit"));
}

#[test]
fn core_pattern_writer_is_attributed() {
    let chains = run(&[
        settings("core", 0, None),
        ev(
            1,
            proc(77, "sh"),
            Body::SysctlWrite { name: "kernel/core_pattern".into(), old_value: "core".into(), new_value: "|/bin/false".into() },
        ),
        settings("|/bin/false", 0, Some(true)),
        fault(2, 100, SEGV),
        deliver(3, 100, SEGV, 0, None, Some(1)),
        exit(4, proc(100, "app"), 0x8b, Role::Crasher),
    ]);
    let c = only(chains);
    assert_eq!(c.verdict, Some(Verdict::CorePatternDiscards));
    let w = c.core_pattern_set_by.as_ref().expect("writer");
    assert_eq!(w.writer.tgid, 77);
    assert_eq!(w.old_value, "core");
    assert!(c.reason.contains("set by sh[77]"), "{}", c.reason);
}

fn cg(ts: u64, actor: Proc, op: CgroupOp, id: u64, path: &str, populated: Option<bool>, zombies: Vec<Proc>) -> Event {
    ev(ts, actor, Body::Cgroup { op, root: 0, id, level: 2, populated, path: path.into(), zombies })
}

/// The incident's shape: the crasher removes a group that still holds its
/// zombie child, then faults. That removal is a possible cause.
#[test]
fn cgroup_removed_by_the_crasher_with_its_zombie_inside_is_context() {
    let mut crash = fault(10, 100, SEGV);
    crash.cgroup_id = 42;
    let mut d = deliver(11, 100, SEGV, 0, None, Some(1));
    d.cgroup_id = 42;
    let chains = run(&[
        settings("core", 0, None),
        cg(1, proc(5, "mkdir"), CgroupOp::Mkdir, 42, "/init.scope", None, vec![]),
        cg(2, proc(100, "app"), CgroupOp::Mkdir, 43, "/app.slice/unit", None, vec![]),
        cg(3, proc(100, "app"), CgroupOp::Populated, 43, "/app.slice/unit", Some(false), vec![proc(101, "child")]),
        cg(4, proc(100, "app"), CgroupOp::Rmdir, 43, "/app.slice/unit", None, vec![proc(101, "child")]),
        cg(5, proc(9, "other"), CgroupOp::Rmdir, 77, "/unrelated", None, vec![]),
        crash,
        d,
        exit(12, proc(100, "app"), 0x8b, Role::Crasher),
    ]);
    let c = only(chains);
    assert_eq!(c.cgroup_path.as_deref(), Some("/init.scope"));
    let ops: Vec<(CgroupOp, &str)> = c.cgroup_context.iter().map(|n| (n.op, n.path.as_str())).collect();
    assert_eq!(ops, vec![(CgroupOp::Populated, "/app.slice/unit"), (CgroupOp::Rmdir, "/app.slice/unit")]);
    assert!(c.cgroup_context.iter().all(|n| n.why.contains("by the crashing process")), "{:?}", c.cgroup_context);
    assert!(c.timeline.iter().any(|s| s.what.starts_with("possible cause: rmdir /app.slice/unit")));
}

/// Recorded on Debian bookworm with systemd 252 as PID 1: every unit
/// clean-up is a cgroup removal by PID 1, here systemd-coredump's own
/// instance 8 s before PID 1 took SIGSEGV. An empty group that is neither
/// the crasher's nor an ancestor of it, and held none of its zombies, is not
/// a cause; the crasher's own group removed by someone else still is.
#[test]
fn an_ordinary_unit_clean_up_by_pid1_is_not_a_cause_of_its_crash() {
    let systemd = || proc(1, "systemd");
    let unit = "/system.slice/system-systemd\\x2dcoredump.slice/systemd-coredump@0-1234-0.service";
    let mut g = ev(
        9_000,
        proc(4242, "bash"),
        Body::SignalGenerate {
            sig: SEGV,
            code: 0,
            errno: 0,
            group: 1,
            result: 0,
            info: SigInfo::Full,
            target: systemd(),
            target_ppid: 0,
            target_handler: 0x55d0_1000,
            target_blocked: false,
            fault_addr: None,
            si_pid: Some(4242),
            si_uid: Some(0),
        },
    );
    g.cgroup_id = 7;
    let mut d = ev(
        9_001,
        systemd(),
        Body::SignalDeliver {
            sig: SEGV,
            code: 0,
            errno: 0,
            info: SigInfo::Full,
            sa_handler: 0x55d0_1000,
            sa_flags: 0,
            fault_addr: None,
            si_pid: Some(4242),
            rlimit_core: None,
            ppid: 0,
            dumpable: Some(1),
            pidns: None,
            ns_pid: None,
        },
    );
    d.cgroup_id = 7;
    let chains = run(&[
        settings("|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h", 0, Some(true)),
        cg(500, systemd(), CgroupOp::Mkdir, 7, "/init.scope", None, vec![]),
        cg(1_000, systemd(), CgroupOp::Populated, 60, unit, Some(false), vec![]),
        cg(1_001, systemd(), CgroupOp::Rmdir, 60, unit, None, vec![]),
        cg(1_002, systemd(), CgroupOp::Rmdir, 61, "/system.slice/system-systemd\\x2dcoredump.slice", None, vec![]),
        g,
        d,
    ]);
    let c = chains.iter().find(|c| c.crasher.tgid == 1).expect("PID 1's chain");
    assert!(c.cgroup_context.is_empty(), "ordinary clean-ups blamed: {:?}", c.cgroup_context);
    assert!(!c.timeline.iter().any(|s| s.what.starts_with("possible cause")), "{:?}", c.timeline);
}

/// Removing the crasher's own cgroup (or an ancestor) is a cause whoever
/// did it.
#[test]
fn removal_of_the_crashers_own_group_or_an_ancestor_is_context() {
    let mut crash = fault(10, 100, SEGV);
    crash.cgroup_id = 42;
    let mut d = deliver(11, 100, SEGV, 0, None, Some(1));
    d.cgroup_id = 42;
    let chains = run(&[
        settings("core", 0, None),
        cg(1, proc(5, "mkdir"), CgroupOp::Mkdir, 42, "/app.slice/svc.service", None, vec![]),
        cg(2, proc(1, "systemd"), CgroupOp::Rmdir, 40, "/app.slice", None, vec![]),
        cg(3, proc(1, "systemd"), CgroupOp::Rmdir, 41, "/app", None, vec![]),
        crash,
        d,
        exit(12, proc(100, "app"), 0x8b, Role::Crasher),
    ]);
    let c = only(chains);
    let paths: Vec<&str> = c.cgroup_context.iter().map(|n| n.path.as_str()).collect();
    assert_eq!(paths, vec!["/app.slice"], "{:?}", c.cgroup_context);
    assert!(c.cgroup_context[0].why.contains("own cgroup"), "{:?}", c.cgroup_context);
}

#[test]
fn teardown_of_the_crashed_process_cgroup_is_linked_to_its_chain() {
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("core", 0, None));
    let mut f = fault(1, 100, SEGV);
    f.cgroup_id = 42;
    let mut d = deliver(2, 100, SEGV, 0, None, Some(1));
    d.cgroup_id = 42;
    c.feed(&f);
    c.feed(&d);
    c.feed(&exit(3, proc(100, "app"), 0x8b, Role::Crasher));
    c.feed(&located(3, 100, Some("/cores/core.100")));
    let done = c.tick(3 * MS + Config::default().grace_ns);
    assert_eq!(done.len(), 1);
    let rmdir = ev(900, proc(1, "systemd"), Body::Cgroup { op: CgroupOp::Rmdir, root: 0, id: 42, level: 2, populated: None, path: "/app.slice/x".into(), zombies: vec![] });
    assert_eq!(c.chain_of_cgroup_event(&rmdir), Some(done[0].id));
    let other = ev(900, proc(1, "systemd"), Body::Cgroup { op: CgroupOp::Rmdir, root: 0, id: 43, level: 2, populated: None, path: "/y".into(), zombies: vec![] });
    assert_eq!(c.chain_of_cgroup_event(&other), None);
    let mkdir = ev(900, proc(1, "systemd"), Body::Cgroup { op: CgroupOp::Mkdir, root: 0, id: 42, level: 2, populated: None, path: "/app.slice/x".into(), zombies: vec![] });
    assert_eq!(c.chain_of_cgroup_event(&mkdir), None);
}

#[test]
fn a_reused_pid_starts_a_new_chain() {
    // Under churn pids come round within seconds: a new process with the
    // pid of one that just died is a new crash, not more of the old one.
    let chains = run(&[
        settings("core", 0, None),
        fault(1, 100, SEGV),
        deliver(2, 100, SEGV, 0, None, Some(1)),
        exit(3, proc(100, "app"), 0x8b, Role::Crasher),
        fault(4, 100, tracer_common::signal::SIGABRT),
        deliver(5, 100, tracer_common::signal::SIGABRT, 0, Some(0), Some(1)),
        exit(6, proc(100, "app"), tracer_common::signal::SIGABRT, Role::Crasher),
    ]);
    assert_eq!(chains.len(), 2, "{chains:?}");
    assert_eq!(chains[0].verdict, Some(Verdict::Stored));
    assert_eq!(chains[1].signal, "SIGABRT");
    assert_eq!(chains[1].verdict, Some(Verdict::RlimitCore));
}

#[test]
fn loss_marks_the_chains_open_at_the_time() {
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("core", 0, None));
    c.feed(&fault(1, 100, SEGV));
    c.note_loss(2 * MS, 7);
    c.feed(&deliver(3, 100, SEGV, 0, None, Some(1)));
    c.feed(&exit(4, proc(100, "app"), 0x8b, Role::Crasher));
    c.feed(&fault(5, 101, SEGV));
    let done = c.flush();
    let first = done.iter().find(|ch| ch.crasher.tgid == 100).unwrap();
    let second = done.iter().find(|ch| ch.crasher.tgid == 101).unwrap();
    assert!(first.events_lost);
    assert!(first.timeline.iter().any(|s| s.what.contains("7 events lost")));
    assert!(!second.events_lost);
}

/// A crash handed to PID 1's coredump socket by systemd-coredump, whose
/// helper exits at 4 ms while the crasher still dumps.
fn handed_off_to_pid1(c: &mut Correlator) {
    c.feed(&settings("|/lib/systemd/systemd-coredump %P", 16, Some(true)));
    c.feed(&fault(1, 100, SEGV));
    c.feed(&deliver(2, 100, SEGV, 0, None, Some(1)));
    c.feed(&helper_exec(3, 200, &["/lib/systemd/systemd-coredump", "100"]));
    c.feed(&ev(3, proc(200, "systemd-coredum"), Body::HelperConnect { family: 1, path: "/run/systemd/coredump".into(), ret: 0 }));
    c.feed(&exit(4, proc(200, "systemd-coredum"), 0, Role::Helper));
}

#[test]
fn a_slow_but_healthy_handoff_to_pid1_is_not_a_stall() {
    // A socket-activated systemd-coredump@.service can take seconds to start
    // under emulation; PID 1 is running normally, so nothing says it cannot
    // read the core.
    let cfg = Config::default();
    let mut c = Correlator::new(cfg.clone());
    handed_off_to_pid1(&mut c);
    let later = 4 * MS + cfg.stall_ns + cfg.idle_timeout_ns + cfg.grace_ns;
    assert!(c.tick(later).is_empty(), "a healthy hand-off was cut short");
    c.feed(&exit(later / MS + 1, proc(100, "app"), 0x8b, Role::Crasher));
    c.feed(&located(later / MS + 2, 100, Some("/var/lib/systemd/coredump/core.app.100")));
    let done = c.tick(later + 10 * MS + cfg.grace_ns);
    assert_eq!(done.len(), 1);
    assert!(!done[0].stalled);
    assert_eq!(done[0].verdict, Some(Verdict::Stored), "{}", done[0].reason);
}

#[test]
fn a_handoff_that_never_finishes_is_a_stall_after_the_longer_bound() {
    let cfg = Config::default();
    let mut c = Correlator::new(cfg.clone());
    handed_off_to_pid1(&mut c);
    assert!(c.tick(4 * MS + cfg.handoff_stall_ns - MS).is_empty());
    let done = c.tick(4 * MS + cfg.handoff_stall_ns + cfg.grace_ns);
    assert_eq!(done.len(), 1);
    assert!(done[0].stalled);
    assert_eq!(done[0].verdict, Some(Verdict::CollectorUnreachablePid1));
}

#[test]
fn a_handoff_while_pid1_is_in_its_crash_handler_stalls_early() {
    // PID 1 caught a fatal signal: it serves no socket, so the short bound
    // holds even for an unrelated crasher.
    let cfg = Config::default();
    let mut c = Correlator::new(cfg.clone());
    c.feed(&settings("|/lib/systemd/systemd-coredump %P", 16, Some(true)));
    c.feed(&fault(1, 1, SEGV));
    c.feed(&deliver(2, 1, SEGV, 0x5555, None, Some(1)));
    assert_eq!(c.tick(200 * MS).len(), 1);
    c.feed(&fault(300, 100, SEGV));
    c.feed(&deliver(301, 100, SEGV, 0, None, Some(1)));
    c.feed(&helper_exec(302, 200, &["/lib/systemd/systemd-coredump", "100"]));
    c.feed(&ev(303, proc(200, "systemd-coredum"), Body::HelperConnect { family: 1, path: "/run/systemd/coredump".into(), ret: 0 }));
    c.feed(&exit(304, proc(200, "systemd-coredum"), 0, Role::Helper));
    let done = c.tick(304 * MS + cfg.stall_ns + cfg.grace_ns);
    assert_eq!(done.len(), 1);
    assert!(done[0].stalled);
    assert_eq!(done[0].verdict, Some(Verdict::CollectorUnreachablePid1));
}

// ---- bounded state -----------------------------------------------------

/// A collector that retries its connect in a loop keeps its chain's size
/// bounded: the first connects and the latest are kept, the rest counted.
#[test]
fn a_collector_retrying_forever_keeps_a_bounded_list_of_connects() {
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("|/usr/bin/collect %P", 0, Some(true)));
    c.feed(&fault(1, 100, 11));
    c.feed(&deliver(2, 100, 11, 0, None, Some(1)));
    c.feed(&ev(3, proc(200, "collect"), Body::HelperExec { filename: "/usr/bin/collect".into(), argv: vec!["collect".into(), "100".into()], args_truncated: false }));
    let retries = 10_000u32;
    for i in 0..retries {
        let ret = if i + 1 == retries { 0 } else { -111 };
        c.feed(&ev(4, proc(200, "collect"), Body::HelperConnect { family: 1, path: "/run/x".into(), ret }));
    }
    let chain = c.helper_chain(200).expect("the collector's chain is open");
    let collector = chain.collector.as_ref().expect("collector");
    assert_eq!(collector.connects.len(), crate::chain::CONNECTS_MAX);
    assert_eq!(collector.connects_dropped as usize, retries as usize - crate::chain::CONNECTS_MAX);
    assert_eq!(collector.connects.last().map(|k| k.ret), Some(0), "the latest connect is kept");
    assert!(chain.timeline.len() <= crate::chain::TIMELINE_MAX);
}

/// Deliveries to handlers in many distinct processes, all within the link
/// window, leave the correlator's state bounded.
#[test]
fn many_handled_crashes_in_distinct_processes_keep_the_state_bounded() {
    let mut c = Correlator::new(Config::default());
    let n = 3 * HANDLED_MAX as u32;
    let mut peak = 0;
    for i in 0..n {
        // 10 µs apart: all of them inside the 30 s link window.
        let ts_ns = 1_000_000 + i as u64 * 10_000;
        let mut e = deliver(0, 10_000 + i, 11, 0x5555_0000, None, Some(1));
        e.ts_ns = ts_ns;
        c.feed(&e);
        // As report and the live loop do: every 100 ms.
        if i % 10_000 == 0 {
            c.tick(ts_ns);
        }
        peak = peak.max(c.handled.len());
    }
    assert!(peak <= HANDLED_MAX, "{peak} handled processes remembered, more than {HANDLED_MAX}");
    assert!(c.handled_order.len() <= HANDLED_MAX);
    // The newest is still remembered: its handler's child would be linked.
    assert!(c.handled.contains_key(&(10_000 + n - 1)));
}

/// A handled crash's child is still linked when many other processes'
/// handlers caught signals in between (up to the cap).
#[test]
fn a_handled_crash_links_its_child_after_other_handled_crashes() {
    let mut c = Correlator::new(Config::default());
    let mut done = Vec::new();
    done.extend(c.feed(&deliver(1, 500, 11, 0x5555_0000, None, Some(1))));
    for i in 0..(HANDLED_MAX as u32 - 1) {
        done.extend(c.feed(&deliver(2, 10_000 + i, 11, 0x5555_0000, None, Some(1))));
    }
    let mut child = fault(3, 501, 11);
    if let Body::SignalGenerate { target_ppid, .. } = &mut child.body {
        *target_ppid = 500;
    }
    done.extend(c.feed(&child));
    let mut d = deliver(4, 501, 11, 0, None, Some(1));
    if let Body::SignalDeliver { ppid, .. } = &mut d.body {
        *ppid = 500;
    }
    done.extend(c.feed(&d));
    done.extend(c.flush());
    let parent = done.iter().find(|ch| ch.crasher.tgid == 500).expect("parent chain");
    let child = done.iter().find(|ch| ch.crasher.tgid == 501).expect("child chain");
    assert_eq!(child.linked_to, Some(parent.id));
}

/// Pipe dumps in flight are counted from an index, and the count is right
/// as dumps start and their processes exit.
#[test]
fn pipe_dumps_in_flight_follow_starts_and_exits() {
    let mut c = Correlator::new(Config::default());
    c.feed(&settings("|/usr/bin/collect %P", 2, Some(true)));
    for pid in [100, 101, 102] {
        c.feed(&fault(1, pid, 11));
        c.feed(&deliver(2, pid, 11, 0, None, Some(1)));
    }
    assert_eq!(c.pipe_dumps_in_flight(), 3);
    let over: Vec<bool> = [100, 101, 102]
        .iter()
        .map(|p| c.open.values().find(|o| o.chain.crasher.tgid == *p).and_then(|o| o.chain.dump.as_ref()).map(|d| d.over_pipe_limit).unwrap_or_default())
        .collect();
    assert_eq!(over, [false, false, true], "the third dump is over core_pipe_limit=2");
    c.feed(&ev(3, proc(101, "app"), Body::ProcessExit { exit_code: 0x8b, ppid: 1, roles: vec![Role::Crasher] }));
    assert_eq!(c.pipe_dumps_in_flight(), 2);
    c.flush();
    assert_eq!(c.pipe_dumps_in_flight(), 0);
}

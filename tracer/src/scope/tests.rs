use std::path::PathBuf;

use super::*;
use crate::{
    event::Proc,
    record::{Line, Record},
};

/// The verdict record of a recorded fixture, to vary.
fn recorded_chain(name: &str) -> Chain {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|l| match serde_json::from_str::<Line>(l).map(|l| l.record) {
            Ok(Record::Verdict(c)) => Some(*c),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no verdict record in {}", path.display()))
}

fn event(tgid: u32, body: Body) -> Event {
    Event { ts_ns: 1, cpu: 0, task: Proc { pid: tgid, tgid, comm: "p".into() }, cgroup_id: 7, body }
}

/// Answers from fixed values, and counts the cgroup look-ups.
struct Fixed {
    path: Option<String>,
    helper: Option<Chain>,
    asked: std::cell::Cell<u32>,
}

impl Lookup for Fixed {
    fn cgroup_path(&self, _ev: &Event) -> Option<String> {
        self.asked.set(self.asked.get() + 1);
        self.path.clone()
    }
    fn helper_chain(&self, _tgid: u32) -> Option<&Chain> {
        self.helper.as_ref()
    }
}

fn fixed(path: Option<&str>) -> Fixed {
    Fixed { path: path.map(str::to_string), helper: None, asked: 0.into() }
}

#[test]
fn cgroup_prefix_matches_whole_components() {
    assert!(cgroup_under("/system.slice/foo.service", "/system.slice"));
    assert!(cgroup_under("/system.slice", "/system.slice/"));
    assert!(!cgroup_under("/system.slicer", "/system.slice"));
    assert!(cgroup_under("/anything", "/"));
    assert!(!cgroup_under("/user.slice", "/system.slice"));
}

#[test]
fn no_filter_takes_everything_and_asks_nothing() {
    let mut scope = Scope::default();
    let lookup = fixed(Some("/x"));
    assert!(scope.is_everything());
    assert!(scope.event(&event(5, Body::ProcessFork { child: 6 }), &lookup));
    assert!(scope.chain(&recorded_chain("kill-segv")));
    assert_eq!(lookup.asked.get(), 0);
}

#[test]
fn the_watched_pid_follows_its_forks() {
    let mut scope = Scope::new(Some(100), false, None);
    let lookup = fixed(None);
    assert!(!scope.event(&event(200, Body::ProcessFork { child: 201 }), &lookup));
    assert!(scope.event(&event(100, Body::ProcessFork { child: 101 }), &lookup));
    // The child is followed, and so are its own children.
    assert!(scope.event(&event(101, Body::ProcessFork { child: 102 }), &lookup));
    let mut chain = recorded_chain("kill-segv");
    chain.crasher.pid = 102;
    chain.crasher.tgid = 102;
    chain.ppid = None;
    chain.sender = None;
    chain.collector = None;
    assert!(scope.chain(&chain));
    chain.crasher.pid = 300;
    chain.crasher.tgid = 300;
    assert!(!scope.chain(&chain));
}

#[test]
fn report_follows_forks_it_does_not_judge() {
    let mut scope = Scope::new(Some(100), false, None);
    scope.follow(&event(100, Body::ProcessFork { child: 101 }));
    scope.follow(&event(7, Body::ProcessFork { child: 8 }));
    let mut chain = recorded_chain("kill-segv");
    (chain.crasher.pid, chain.crasher.tgid, chain.ppid, chain.sender, chain.collector) = (101, 101, None, None, None);
    assert!(scope.chain(&chain));
    (chain.crasher.pid, chain.crasher.tgid) = (8, 8);
    assert!(!scope.chain(&chain));
}

#[test]
fn a_handled_crash_of_the_watched_pid_links_its_handlers_chain() {
    let mut scope = Scope::new(Some(100), false, None);
    let mut handled = recorded_chain("handled-reraise");
    (handled.id, handled.crasher.tgid, handled.verdict) = (4, 100, Some(Verdict::Handled));
    let mut other = recorded_chain("kill-segv");
    (other.crasher.pid, other.crasher.tgid, other.ppid, other.sender, other.collector) = (500, 500, None, None, None);
    other.linked_to = Some(4);
    assert!(!scope.chain(&other), "linked before the handled crash was seen");
    scope.note_chain(&handled);
    assert!(scope.chain(&other));
    other.linked_to = Some(5);
    assert!(!scope.chain(&other));
}

#[test]
fn a_namespace_init_owns_the_collectors_that_fail_to_reach_it() {
    let mut chain = recorded_chain("kill-segv");
    (chain.crasher.pid, chain.crasher.tgid, chain.ppid, chain.sender, chain.collector) = (500, 500, None, None, None);
    chain.verdict = Some(Verdict::CollectorUnreachablePid1);
    assert!(Scope::new(Some(1), true, None).chain(&chain));
    assert!(!Scope::new(Some(1), false, None).chain(&chain));
}

#[test]
fn the_cgroup_filter_asks_for_paths_only_of_process_events() {
    let mut scope = Scope::new(None, false, Some("/system.slice".into()));
    let inside = fixed(Some("/system.slice/a.service"));
    let outside = fixed(Some("/user.slice"));
    let fork = event(5, Body::ProcessFork { child: 6 });
    assert!(scope.event(&fork, &inside));
    assert!(!scope.event(&fork, &outside));
    let settings = event(0, Body::SysctlWrite { name: "kernel.core_pattern".into(), old_value: "a".into(), new_value: "b".into() });
    assert!(scope.event(&settings, &outside));
    assert_eq!(outside.asked.get(), 1);
    // An unknown path is not a reason to drop an event.
    assert!(scope.event(&fork, &fixed(None)));
    let mut chain = recorded_chain("kill-segv");
    chain.cgroup_path = Some("/system.slice/a.service".into());
    assert!(scope.chain(&chain));
    chain.cgroup_path = None;
    assert!(!scope.chain(&chain));
}

#[test]
fn watched_records_of_another_pid_are_out() {
    assert!(Scope::new(Some(3), false, None).watched_record(3));
    assert!(!Scope::new(Some(3), false, None).watched_record(4));
    assert!(Scope::default().watched_record(4));
}

#[test]
fn container_and_unit_filters_read_the_cgroup_path() {
    let id = "3f4e1b8a9c2d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    let in_container = format!("/system.slice/docker-{id}.scope");
    let mut scope = Scope::new(None, false, None).with_context(Some(id[..12].to_string()), None);
    assert!(!scope.is_everything());
    let fork = event(5, Body::ProcessFork { child: 6 });
    assert!(scope.event(&fork, &fixed(Some(&in_container))));
    assert!(!scope.event(&fork, &fixed(Some("/system.slice/nginx.service"))));
    let mut chain = recorded_chain("kill-segv");
    chain.cgroup_path = Some(in_container.clone());
    assert!(scope.chain(&chain));
    chain.cgroup_path = Some("/system.slice/nginx.service".into());
    assert!(!scope.chain(&chain));
    chain.cgroup_path = None;
    assert!(!scope.chain(&chain), "an unknown path is not the container's");

    let mut units = Scope::new(None, false, None).with_context(None, Some("nginx".into()));
    chain.cgroup_path = Some("/system.slice/nginx.service".into());
    assert!(units.chain(&chain));
    assert!(!units.event(&fork, &fixed(Some(&in_container))));
    // Both filters and --cgroup must all hold.
    let both = Scope::new(None, false, Some("/user.slice".into())).with_context(None, Some("nginx".into()));
    assert!(!both.chain(&chain));
}

/// A watched server that forks a child per request does not grow the
/// scope without bound: the oldest children are forgotten first, never the
/// watched pid, and the newest child's crash is still in scope.
#[test]
fn a_watched_pid_forking_without_end_keeps_the_followed_set_bounded() {
    let mut scope = Scope::new(Some(100), false, None);
    let n = 3 * FOLLOWED_MAX as u32;
    for child in 0..n {
        scope.follow(&event(100, Body::ProcessFork { child: 10_000 + child }));
    }
    let w = scope.watch.as_ref().expect("watching");
    assert!(w.followed.len() <= FOLLOWED_MAX + 1, "{} followed: the watched pid and more children than {FOLLOWED_MAX}", w.followed.len());
    assert!(w.order.len() <= FOLLOWED_MAX);
    assert!(w.followed.contains(&100), "the watched pid is never forgotten");
    let mut newest = recorded_chain("kill-segv");
    newest.crasher.tgid = 10_000 + n - 1;
    newest.crasher.pid = newest.crasher.tgid;
    newest.ppid = Some(100);
    newest.sender = None;
    newest.collector = None;
    assert!(scope.chain(&newest));
    let mut stranger = newest.clone();
    stranger.crasher.tgid = 5;
    stranger.crasher.pid = 5;
    stranger.ppid = Some(4);
    assert!(!scope.chain(&stranger));
}

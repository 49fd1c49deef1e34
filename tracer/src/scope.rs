//! Which events and which chains are in scope: `--pid` and `--cgroup`, with
//! one meaning in live mode and in `report`. Pure: what it needs to know
//! beyond the event (its cgroup path, the chain of a collector) it asks a
//! [`Lookup`], and only when the answer matters.
//!
//! `--pid P` keeps what involves P: P and the processes it forks (its crash
//! handler's children), the chain a handled crash of P's handler is linked to,
//! the collectors of those chains, and, if P is the init of a pid namespace
//! (the process systemd-coredump's socket belongs to), every chain whose
//! collector talks to that socket or cannot reach it. What the watched
//! pid's crash caused is kept too: a write to core_pattern by a collector
//! of a chain in scope (systemd-coredump writes `|/bin/false` when it
//! handles PID 1's crash child), and every chain that write's pattern
//! decided (`core_pattern_set_by`). `--cgroup PATH` keeps what happens in
//! that cgroup subtree.

use std::collections::{HashSet, VecDeque};

use crate::{chain::Chain, core_pattern::SYSTEMD_COREDUMP_SOCKET, event::{Body, Event}, verdict::Verdict};

/// What the scope asks about an event, when it needs to.
pub trait Lookup {
    /// The cgroup v2 path of the event's process, if known.
    fn cgroup_path(&self, ev: &Event) -> Option<String>;
    /// The open chain whose collector is process `tgid`.
    fn helper_chain(&self, tgid: u32) -> Option<&Chain>;
}

/// `--pid` and `--cgroup`, and what following the pid has learnt.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// `--cgroup PATH`: only crashes and events in this cgroup subtree.
    cgroup: Option<String>,
    /// `--container ID|NAME` and `--unit NAME`, read from the cgroup path.
    container: Option<String>,
    unit: Option<String>,
    /// Container names learnt (id → name), newest last, at most
    /// [`NAMES_MAX`]: `--container NAME` matches events of a container once
    /// its name is known.
    names: Vec<(String, String)>,
    watch: Option<Watch>,
}

/// Container names remembered, at most.
const NAMES_MAX: usize = 256;

#[derive(Clone, Debug)]
struct Watch {
    pid: u32,
    /// The watched pid and the children it forked (the newest
    /// [`FOLLOWED_MAX`]).
    followed: HashSet<u32>,
    /// The children in `followed`, oldest first: the first forgotten.
    order: VecDeque<u32>,
    /// The watched pid is PID 1 of some pid namespace: the one
    /// systemd-coredump hands cores to, so a collector that cannot reach it
    /// is its story too.
    is_init: bool,
    /// The chain of a fatal signal the watched pid's own handler caught.
    handled: Option<u64>,
    /// Writes to core_pattern by collectors of chains in scope: (writer
    /// tgid, time), newest last, bounded. A chain whose pattern one of them
    /// set is in scope: the watched pid's crash caused it.
    pattern_writes: Vec<(u32, u64)>,
}

/// Pattern writes remembered, at most: they are rare (one per crash of the
/// watched pid), and the oldest matter least.
const PATTERN_WRITES_MAX: usize = 64;

/// Children of the watched pid followed at most. A server forking a child
/// per request must not grow the scope without bound; a crash comes within
/// seconds of its fork, long before this many newer children.
pub(crate) const FOLLOWED_MAX: usize = 4096;

/// Whether `chain` is a crash of `pid` that its own handler caught.
pub fn is_handled_crash_of(pid: u32, chain: &Chain) -> bool {
    chain.verdict == Some(Verdict::Handled) && chain.crasher.tgid == pid
}

/// Whether cgroup `path` is `prefix` or below it.
pub fn cgroup_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).map(|r| r.starts_with('/')).unwrap_or(false)
}

impl Scope {
    /// `pid_is_init`: whether `pid` is the init of its pid namespace (only
    /// the live tracer can tell; a log does not say).
    pub fn new(pid: Option<u32>, pid_is_init: bool, cgroup: Option<String>) -> Scope {
        let watch = pid.map(|pid| Watch {
            pid,
            followed: [pid].into_iter().collect(),
            order: VecDeque::new(),
            is_init: pid_is_init,
            handled: None,
            pattern_writes: Vec::new(),
        });
        Scope { cgroup, container: None, unit: None, names: Vec::new(), watch }
    }

    /// Adds `--container` and `--unit`: only what runs in that container
    /// or systemd unit, as [`crate::container`] reads its cgroup path.
    pub fn with_context(mut self, container: Option<String>, unit: Option<String>) -> Scope {
        (self.container, self.unit) = (container, unit);
        self
    }

    /// Learns a container's name (from the runtime, or a logged verdict).
    pub fn learn_container_name(&mut self, id: &str, name: &str) {
        if self.names.iter().any(|(i, n)| i == id && n == name) {
            return;
        }
        self.names.retain(|(i, _)| i != id);
        if self.names.len() >= NAMES_MAX {
            self.names.remove(0);
        }
        self.names.push((id.to_string(), name.to_string()));
    }

    /// Whether a cgroup path passes `--cgroup`, `--container` and `--unit`;
    /// `known`: the container as a chain names it (with its name, if known).
    fn path_in(&self, path: &str, known: Option<&crate::container::Container>) -> bool {
        if let Some(prefix) = &self.cgroup
            && !cgroup_under(path, prefix)
        {
            return false;
        }
        if self.container.is_none() && self.unit.is_none() {
            return true;
        }
        let mut ctx = crate::container::parse(path);
        if let Some(c) = ctx.container.as_mut() {
            c.name = known
                .filter(|k| k.id == c.id)
                .and_then(|k| k.name.clone())
                .or_else(|| self.names.iter().find(|(i, _)| *i == c.id).map(|(_, n)| n.clone()));
        }
        self.container.as_deref().is_none_or(|c| crate::container::matches_container(&ctx, c))
            && self.unit.as_deref().is_none_or(|u| crate::container::matches_unit(&ctx, u))
    }

    fn by_path(&self) -> bool {
        self.cgroup.is_some() || self.container.is_some() || self.unit.is_some()
    }

    pub fn watched_pid(&self) -> Option<u32> {
        self.watch.as_ref().map(|w| w.pid)
    }

    /// Whether anything is left out at all.
    pub fn is_everything(&self) -> bool {
        !self.by_path() && self.watch.is_none()
    }

    /// Learns from a finished chain (before it is judged in or out): a
    /// handled crash of the watched pid links the chains its handler starts.
    pub fn note_chain(&mut self, chain: &Chain) {
        if let Some(w) = self.watch.as_mut()
            && is_handled_crash_of(w.pid, chain)
        {
            w.handled = Some(chain.id);
        }
    }

    fn note_pattern_write(&mut self, writer: u32, ts_ns: u64) {
        if let Some(w) = self.watch.as_mut()
            && !w.pattern_writes.contains(&(writer, ts_ns))
        {
            if w.pattern_writes.len() >= PATTERN_WRITES_MAX {
                w.pattern_writes.remove(0);
            }
            w.pattern_writes.push((writer, ts_ns));
        }
    }

    /// Learns from an event that is not judged (as `report` replays them):
    /// the children the watched processes fork.
    pub fn follow(&mut self, ev: &Event) {
        if let (Some(w), Body::ProcessFork { child }) = (self.watch.as_mut(), &ev.body)
            && w.followed.contains(&ev.task.tgid)
            && *child != w.pid
            && w.followed.insert(*child)
        {
            w.order.push_back(*child);
            while w.order.len() > FOLLOWED_MAX {
                if let Some(old) = w.order.pop_front() {
                    w.followed.remove(&old);
                }
            }
        }
    }

    /// Whether the event is in scope, following the watched pid's forks.
    pub fn event(&mut self, ev: &Event, lookup: &dyn Lookup) -> bool {
        if self.by_path() {
            // Every kind is decided here: settings are the host's, not a cgroup's.
            let path = match &ev.body {
                Body::Cgroup { path, .. } => Some(path.clone()),
                Body::CoreSettings(_) | Body::SysctlWrite { .. } => None,
                Body::SignalGenerate { .. }
                | Body::SignalDeliver { .. }
                | Body::DumpStart { .. }
                | Body::HelperExec { .. }
                | Body::HelperConnect { .. }
                | Body::ProcessExit { .. }
                | Body::ProcessFork { .. }
                | Body::StackCapture { .. }
                | Body::CoreLocated(_)
                | Body::StackCopy { .. } => lookup.cgroup_path(ev),
            };
            if let Some(path) = path
                && !self.path_in(&path, None)
            {
                return false;
            }
        }
        if self.watch.is_none() {
            return true;
        }
        self.follow(ev);
        let Some(w) = &self.watch else { return true };
        let involved = |p: u32| w.followed.contains(&p);
        match &ev.body {
            Body::SignalGenerate { target, .. } => involved(ev.task.tgid) || involved(target.tgid),
            // A collector's exit is part of its chain's story: without it in
            // the log, a replay says the collector never exited.
            Body::ProcessExit { ppid, .. } => {
                involved(ev.task.tgid)
                    || involved(*ppid)
                    || lookup.helper_chain(ev.task.tgid).map(|c| self.chain(c)).unwrap_or(false)
            }
            Body::CoreSettings(_) => true,
            Body::HelperExec { .. } | Body::HelperConnect { .. } => {
                lookup.helper_chain(ev.task.tgid).map(|c| self.chain(c)).unwrap_or(false)
            }
            Body::SysctlWrite { name, .. } => {
                if involved(ev.task.tgid) {
                    return true;
                }
                // A collector of a chain in scope changing the pattern (the
                // crash child's systemd-coredump writing |/bin/false).
                let by_collector = lookup.helper_chain(ev.task.tgid).map(|c| self.chain(c)).unwrap_or(false);
                if by_collector && name == "kernel/core_pattern" {
                    self.note_pattern_write(ev.task.tgid, ev.ts_ns);
                }
                by_collector
            }
            Body::SignalDeliver { .. }
            | Body::DumpStart { .. }
            | Body::ProcessFork { .. }
            | Body::Cgroup { .. }
            | Body::StackCapture { .. }
            | Body::CoreLocated(_)
            | Body::StackCopy { .. } => involved(ev.task.tgid),
        }
    }

    /// Whether a chain is in scope.
    pub fn chain(&self, chain: &Chain) -> bool {
        if self.by_path() && !chain.cgroup_path.as_deref().is_some_and(|p| self.path_in(p, chain.container.as_ref())) {
            return false;
        }
        let Some(w) = &self.watch else { return true };
        chain.participants().any(|p| w.followed.contains(&p))
            || (chain.linked_to.is_some() && chain.linked_to == w.handled)
            // A pattern written by a collector in scope decided this chain.
            || chain.core_pattern_set_by.as_ref().is_some_and(|p| w.pattern_writes.contains(&(p.writer.tgid, p.ts_ns)))
            // A PID 1 owns the coredump socket: every collector that talks
            // to it, or fails to, is part of its story.
            || (w.is_init
                && (chain.verdict == Some(Verdict::CollectorUnreachablePid1)
                    || chain
                        .collector
                        .as_ref()
                        .map(|c| c.connects.iter().any(|k| k.path == SYSTEMD_COREDUMP_SOCKET))
                        .unwrap_or(false)))
    }

    /// Whether a `watched` record about `pid` is in scope.
    pub fn watched_record(&self, pid: u32) -> bool {
        self.watch.as_ref().map(|w| w.pid == pid).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests;

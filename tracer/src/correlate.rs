//! The correlator: a pure state machine that turns events into crash chains
//! and ends each chain with a verdict. It knows nothing of aya or tokio; time
//! is the events' own monotonic clock, passed to [`Correlator::tick`].
//!
//! Order of evidence for one crash (kernel/signal.c get_signal()):
//! signal_generate -> signal_deliver (SIG_DFL) -> [dump entry] -> helper exec
//! -> helper connect(s) -> crasher exit -> parent's SIGCHLD -> helper exit.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;
use tracer_common::signal::{
    is_core_signal, is_fatal_by_default, is_fault_signal, CLD_DUMPED, CLD_KILLED, SIGCHLD, SIGKILL, SIGPIPE, SIG_DFL, SIG_IGN,
    SI_QUEUE, SI_TKILL, SI_USER, TRACE_SIGNAL_ALREADY_PENDING, TRACE_SIGNAL_IGNORED,
};

use crate::{
    chain::{describe_exit, CgroupNote, Chain, Collector, Connect, Disposition, Dump, MatchedBy, Origin, PatternWrite},
    core_pattern::{CoreSettings, DumpMode, SYSTEMD_COREDUMP_SOCKET},
    event::{code_name, errno_name, signal_name, Body, CgroupOp, DumpHook, Event, Proc, Role},
    verdict::decide,
};

#[derive(Clone, Debug)]
pub struct Config {
    /// How long a complete chain waits for late evidence (the parent's
    /// SIGCHLD comes after the exit) before its verdict.
    pub grace_ns: u64,
    /// A chain with no new evidence for this long is ended with what it has.
    pub idle_timeout_ns: u64,
    /// Chains in flight at most; the oldest is ended when a new one needs room.
    pub max_open: usize,
    /// A crash in a child of a process whose handler caught a fatal signal
    /// this recently is linked to that crash.
    pub link_window_ns: u64,
    /// cgroup events this long before a crash are shown as its context.
    pub cgroup_window_ns: u64,
    /// A crasher still alive this long after its collector exited is stuck:
    /// nobody is reading the rest of its core. For a collector that handed
    /// the core to PID 1's socket this holds only with evidence that PID 1
    /// cannot read it (see [`Config::handoff_stall_ns`]).
    pub stall_ns: u64,
    /// A collector that handed the core to PID 1's coredump socket leaves
    /// the reading to a socket-activated service, which can take seconds to
    /// start on a slow machine. Without evidence that PID 1 cannot serve it
    /// (PID 1 itself crashing, or the crasher forked from a crash handler),
    /// the dump is called stalled only after this long.
    pub handoff_stall_ns: u64,
    /// How long a complete chain whose verdict would be `stored` waits for
    /// the lookup of where its core is (a `core-located` event) before it
    /// is decided without one. Longer than the live tracer's lookup window
    /// ([`CORE_LOOKUP_WINDOW_NS`]), so live always records one first.
    pub core_wait_ns: u64,
}

/// How long after a dump is over the live tracer keeps looking for its core
/// (a socket-activated systemd-coredump writes it after the helper exits).
pub const CORE_LOOKUP_WINDOW_NS: u64 = 2_000_000_000;

/// What the live tracer needs to look for one chain's core.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreRequest {
    pub chain_id: u64,
    /// The chain, as it stands (its dump, crasher and collector).
    pub chain: Chain,
    /// When the dump was over (the chain complete), monotonic ns.
    pub complete_at_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grace_ns: 100_000_000,
            idle_timeout_ns: 15_000_000_000,
            max_open: 4096,
            link_window_ns: 30_000_000_000,
            cgroup_window_ns: 10_000_000_000,
            stall_ns: 3_000_000_000,
            handoff_stall_ns: 60_000_000_000,
            core_wait_ns: 3_000_000_000,
        }
    }
}

/// Counts for the exit summary and the benchmarks.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    pub events: u64,
    pub chains_opened: u64,
    pub chains_evicted: u64,
    /// Chains dropped as an exec's SIGKILL of the other threads, the
    /// process having taken a fatal signal of its own after it.
    #[serde(skip_serializing_if = "is_zero")]
    pub exec_zaps_dropped: u64,
    /// Chains ended early because their pid acted on a new fatal signal
    /// long after the death they were about (the exit event was lost).
    #[serde(skip_serializing_if = "is_zero")]
    pub pids_reused: u64,
    pub verdicts: BTreeMap<String, u64>,
    pub kernel_said_dumped_but_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

struct Open {
    chain: Chain,
    complete_at: Option<u64>,
    /// When the crasher took a fatal default action (a core dump or plain
    /// termination): from then on it is dying and delivers no new signal.
    dying_since: Option<u64>,
    /// The `last_ts_ns` this chain is queued under in `Correlator::idle`.
    idle_key: u64,
}

/// How long after a fatal default action the same tgid may still show a
/// delivery, or a fault of its own, as part of that death (threads racing
/// into the exit). Later, the pid belongs to a new process whose
/// predecessor's exit was lost; pids come back only after a whole cycle of
/// `pid_max`, which takes seconds even in a crash storm.
const PID_REUSED_AFTER_NS: u64 = 1_000_000_000;

pub struct Correlator {
    cfg: Config,
    settings: Option<CoreSettings>,
    next_id: u64,
    /// Open chains by id; ids grow, so the first entry is the oldest.
    open: BTreeMap<u64, Open>,
    by_tgid: HashMap<u32, u64>,
    by_helper: HashMap<u32, u64>,
    /// Processes whose own handler caught a fatal signal: tgid -> (chain, ts).
    /// Forgotten after the link window, and beyond [`HANDLED_MAX`] the
    /// oldest first: every process on the host may catch a SIGSEGV.
    handled: HashMap<u32, (u64, u64)>,
    /// `handled`'s entries in the order they were made: (tgid, ts). An
    /// entry whose tgid was handled again since is stale and skipped.
    handled_order: VecDeque<(u32, u64)>,
    /// Open chains dumping into a pipe whose process has not exited, by id
    /// (oldest first): the dumps in flight for core_pipe_limit and the ones
    /// a new helper may belong to, without a scan of every open chain.
    pipe_dumping: BTreeSet<u64>,
    /// Open chains by their cgroup id: a cgroup event or a newly learned
    /// path finds its chains without a walk over every open chain.
    by_cgroup: HashMap<u64, BTreeSet<u64>>,
    /// Open chains each tick looks at: the complete ones (grace, core wait)
    /// and those whose collector has exited (stall). Once in, a chain stays
    /// until it ends: neither of those goes back.
    watch: BTreeSet<u64>,
    /// The other open chains can only end by the idle timeout: here by
    /// (`last_ts_ns` when queued, id), so a tick looks at the ones due
    /// only. Lazy: a chain that had evidence since it was queued is
    /// queued again, under its newest, when its old entry comes due.
    idle: BTreeSet<(u64, u64)>,
    stats: Stats,
    now_ns: u64,
    /// The last write to core_pattern seen.
    pattern_write: Option<PatternWrite>,
    /// Recent cgroup removals and emptyings, oldest first (bounded).
    recent_cgroups: VecDeque<CgroupNote>,
    /// cgroup v2 id -> path, learned from events and /proc (bounded).
    cgroup_paths: HashMap<u64, String>,
    /// cgroups of ended chains, newest last: (cgroup id, chain id).
    finished_cgroups: VecDeque<(u64, u64)>,
}

/// Bounds on the cgroup caches: a host churning cgroups must not grow them.
const RECENT_CGROUPS_MAX: usize = 1024;
const CGROUP_PATHS_MAX: usize = 16384;
const CGROUP_CONTEXT_MAX: usize = 8;
/// Processes remembered for linking a crash their handler's child causes.
/// As many as chains in flight: a handler forks its crash child at once.
pub(crate) const HANDLED_MAX: usize = 4096;
/// Zombies kept per cgroup note; the rest are counted in its `why`.
const ZOMBIES_MAX: usize = 16;

impl Correlator {
    pub fn new(cfg: Config) -> Self {
        Correlator {
            cfg,
            settings: None,
            next_id: 1,
            open: BTreeMap::new(),
            by_tgid: HashMap::new(),
            by_helper: HashMap::new(),
            handled: HashMap::new(),
            handled_order: VecDeque::new(),
            pipe_dumping: BTreeSet::new(),
            by_cgroup: HashMap::new(),
            watch: BTreeSet::new(),
            idle: BTreeSet::new(),
            stats: Stats::default(),
            now_ns: 0,
            pattern_write: None,
            recent_cgroups: VecDeque::new(),
            cgroup_paths: HashMap::new(),
            finished_cgroups: VecDeque::new(),
        }
    }

    /// The chain a cgroup event belongs to: the removal or emptying of a
    /// crashed process's own cgroup (its unit's teardown).
    pub fn chain_of_cgroup_event(&self, ev: &Event) -> Option<u64> {
        let Body::Cgroup { op, id, populated, .. } = &ev.body else { return None };
        if !(*op == CgroupOp::Rmdir || *op == CgroupOp::Release || *populated == Some(false)) {
            return None;
        }
        // The oldest open chain in the group, as a walk in id order finds it.
        if let Some(first) = self.by_cgroup.get(id).and_then(|ids| ids.first()) {
            return Some(*first);
        }
        self.finished_cgroups.iter().rev().find(|(cg, _)| cg == id).map(|(_, chain)| *chain)
    }

    /// A cgroup v2 id's path, if known.
    pub fn cgroup_path(&self, id: u64) -> Option<&str> {
        self.cgroup_paths.get(&id).map(String::as_str)
    }

    /// Records the crasher's pid namespace, read from /proc while it lives.
    pub fn learn_pid_namespace(&mut self, tgid: u32, pidns: u64, ns_pid: u32) {
        if let Some(open) = self.live_chain(tgid).and_then(|id| self.open.get_mut(&id)) {
            open.chain.pidns = Some(pidns);
            open.chain.ns_pid = Some(ns_pid);
        }
    }

    /// Records a cgroup v2 id's path learned outside the event stream
    /// (/proc/PID/cgroup), so chains can name cgroups created before start.
    pub fn learn_cgroup_path(&mut self, id: u64, path: String) {
        // Known already: every open chain in that group got the path when
        // it was first learned or when the chain took the group's id. Only
        // a new path is worth the walk over every open chain below, which a
        // crash storm would otherwise pay at each crash (all its crashers
        // share one group).
        if self.cgroup_paths.get(&id) == Some(&path) {
            return;
        }
        if self.cgroup_paths.len() >= CGROUP_PATHS_MAX && !self.cgroup_paths.contains_key(&id) {
            // Forget an arbitrary entry: a cache, not a record.
            if let Some(k) = self.cgroup_paths.keys().next().copied() {
                self.cgroup_paths.remove(&k);
            }
        }
        // Only the open chains in that group: a host making a cgroup per
        // transient unit learns new paths all the time.
        for cid in self.by_cgroup.get(&id).into_iter().flatten() {
            if let Some(o) = self.open.get_mut(cid)
                && o.chain.cgroup_id == id && o.chain.cgroup_path.is_none() {
                    o.chain.cgroup_path = Some(path.clone());
                }
        }
        self.cgroup_paths.insert(id, path);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Chains in flight: the correlation state's size.
    pub fn open_chains(&self) -> usize {
        self.open.len()
    }

    /// Size of all state maps together (bounded: see the benchmarks).
    pub fn state_size(&self) -> usize {
        self.open.len()
            + self.by_tgid.len()
            + self.by_helper.len()
            + self.handled.len()
            + self.handled_order.len()
            + self.pipe_dumping.len()
            + self.by_cgroup.len()
            + self.watch.len()
            + self.idle.len()
            + self.recent_cgroups.len()
            + self.cgroup_paths.len()
            + self.finished_cgroups.len()
    }

    /// The open chain a collector (helper) belongs to.
    pub fn helper_chain(&self, helper_tgid: u32) -> Option<&Chain> {
        self.by_helper.get(&helper_tgid).and_then(|id| self.open.get(id)).map(|o| &o.chain)
    }

    pub fn settings(&self) -> Option<&CoreSettings> {
        self.settings.as_ref()
    }

    /// Feeds one event; returns the chains it ended (by eviction).
    pub fn feed(&mut self, ev: &Event) -> Vec<Chain> {
        self.stats.events += 1;
        self.now_ns = self.now_ns.max(ev.ts_ns);
        let mut done = Vec::new();
        match &ev.body {
            Body::CoreSettings(s) => self.settings = Some(s.clone()),
            Body::CoreLocated(loc) => {
                let tgid = ev.task.tgid;
                // The process's own chain, found by pid; the walk over every
                // open chain only when that one is not it (a pid reused while
                // an older chain still waits for its core).
                let awaits = |o: &Open| o.chain.crasher.tgid == tgid && o.chain.dump.is_some() && o.chain.core.is_none();
                let id = self
                    .by_tgid
                    .get(&tgid)
                    .copied()
                    .filter(|id| self.open.get(id).is_some_and(awaits))
                    .or_else(|| self.open.iter().find(|(_, o)| awaits(o)).map(|(id, _)| *id));
                if let Some(open) = id.and_then(|id| self.open.get_mut(&id)) {
                    let what = match &loc.path {
                        Some(_) => format!("core located: {}", loc.describe()),
                        None => format!("core not found{}", if loc.searched.is_empty() { String::new() } else { format!(" in {}", loc.searched.join(", ")) }),
                    };
                    open.chain.step(ev.ts_ns, what);
                    open.chain.core = Some(loc.clone());
                }
            }
            Body::SignalGenerate {
                sig, code, result, target, target_ppid, target_handler, target_blocked, fault_addr, si_pid, ..
            } => {
                let g = Generated {
                    sig: *sig,
                    code: *code,
                    result: *result,
                    target_ppid: *target_ppid,
                    target_handler: *target_handler,
                    target_blocked: *target_blocked,
                    fault_addr: *fault_addr,
                    si_pid: *si_pid,
                };
                self.on_generate(ev, g, target, &mut done)
            }
            Body::SignalDeliver { sig, code, sa_handler, fault_addr, rlimit_core, ppid, dumpable, pidns, ns_pid, .. } => {
                self.on_deliver(ev, *sig, *code, *sa_handler, *fault_addr, *rlimit_core, *ppid, *dumpable, &mut done);
                if let (Some(ns), Some(pid)) = (pidns, ns_pid) {
                    self.learn_pid_namespace(ev.task.tgid, *ns, *pid);
                }
            }
            Body::DumpStart { sig, hook, rlimit_core, dumpable, fault_addr, code } => {
                let id = self.chain_for(ev.task.clone(), *sig, ev.ts_ns, &mut done);
                if let Some(open) = self.open.get_mut(&id) {
                    let c = &mut open.chain;
                    if c.fault_addr.is_none() {
                        c.fault_addr = *fault_addr;
                        c.code = *code;
                    }
                    if c.disposition.is_none() {
                        c.disposition = Some(Disposition::Default);
                    }
                    let settings = self.settings.clone();
                    let dump = c.dump.get_or_insert_with(|| new_dump(settings.as_ref(), *hook, *rlimit_core, *dumpable));
                    dump.hook = *hook;
                    c.step(ev.ts_ns, format!("dump started (seen by {} on the kernel's dump entry)", hook.as_str()));
                    if is_pipe_dump(c) {
                        self.pipe_dumping.insert(id);
                    }
                }
            }
            Body::HelperExec { filename, argv, .. } => self.on_helper_exec(ev, filename, argv),
            Body::HelperConnect { path, ret, .. } => {
                if let Some(id) = self.by_helper.get(&ev.task.tgid).copied()
                    && let Some(open) = self.open.get_mut(&id) {
                        let what = if *ret == 0 {
                            format!("collector connect {path}: ok")
                        } else {
                            format!("collector connect {path}: {}", errno_name(-*ret))
                        };
                        open.chain.step(ev.ts_ns, what);
                        if let Some(c) = open.chain.collector.as_mut() {
                            c.connect(Connect { path: path.clone(), ret: *ret });
                        }
                    }
            }
            Body::ProcessExit { exit_code, roles, .. } => self.on_exit(ev, *exit_code, roles),
            Body::ProcessFork { .. } => {}
            Body::SysctlWrite { name, old_value, new_value } => {
                if name == "kernel/core_pattern" {
                    self.pattern_write = Some(PatternWrite {
                        writer: ev.task.clone(),
                        ts_ns: ev.ts_ns,
                        old_value: old_value.clone(),
                        new_value: new_value.clone(),
                    });
                }
            }
            Body::Cgroup { op, root, id, path, populated, zombies, .. } => {
                self.on_cgroup(ev, *op, *root, *id, path, *populated, zombies)
            }
            Body::StackCapture { .. } => self.on_stack(ev),
            // Raw stack memory: used by symbolisation, not by the chain.
            Body::StackCopy { .. } => {}
        }
        done
    }

    /// The dying thread's stack joins its process's open chain. The first
    /// one is kept: a later one (a re-raise, another thread) is noted only.
    fn on_stack(&mut self, ev: &Event) {
        let Some(open) = self.live_chain(ev.task.tgid).and_then(|id| self.open.get_mut(&id)) else { return };
        let Some(stack) = crate::stack::Stack::from_event(ev) else { return };
        if open.chain.stack.is_none() {
            open.chain.step(ev.ts_ns, format!("stack of {} captured: {} user frames", ev.task, stack.user.len()));
            open.chain.stack = Some(stack);
        } else {
            open.chain.step(ev.ts_ns, format!("another stack of {} captured (not kept)", ev.task));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_cgroup(&mut self, ev: &Event, op: CgroupOp, root: u32, id: u64, path: &str, populated: Option<bool>, zombies: &[Proc]) {
        if root == 0 && op != CgroupOp::Release {
            self.learn_cgroup_path(id, path.to_string());
        }
        let why = match (op, populated) {
            (CgroupOp::Rmdir, _) => "cgroup removed",
            (CgroupOp::Populated, Some(false)) => "cgroup became empty",
            _ => return,
        };
        if self.recent_cgroups.len() >= RECENT_CGROUPS_MAX {
            self.recent_cgroups.pop_front();
        }
        self.recent_cgroups.push_back(CgroupNote {
            ts_ns: ev.ts_ns,
            op,
            id,
            path: path.to_string(),
            actor: ev.task.clone(),
            why: if zombies.is_empty() {
                why.to_string()
            } else {
                let z: Vec<String> = zombies.iter().take(ZOMBIES_MAX).map(|p| p.to_string()).collect();
                let more = match zombies.len().saturating_sub(ZOMBIES_MAX) {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                format!("{why} while it still held zombie {}{more}", z.join(", "))
            },
            zombies: zombies.iter().take(ZOMBIES_MAX).cloned().collect(),
        });
    }

    /// cgroup events before the crash that may explain it: the crasher's own
    /// cgroup (or an ancestor) removed, by anyone; or a group the crasher
    /// removed or emptied while it still held a zombie (a child the crasher
    /// had not reaped, the incident's shape). That the crasher removed a
    /// group is not enough: a service manager removes one at every unit
    /// clean-up (systemd's PID 1 removing systemd-coredump@'s group).
    fn cgroup_context(&self, chain: &Chain) -> Vec<CgroupNote> {
        let since = chain.first_ts_ns.saturating_sub(self.cfg.cgroup_window_ns);
        let own_path = chain.cgroup_path.clone().unwrap_or_default();
        self.recent_cgroups
            .iter()
            .filter(|n| n.ts_ns >= since && n.ts_ns <= chain.first_ts_ns)
            .filter_map(|n| {
                let by_crasher = n.actor.tgid == chain.crasher.tgid;
                // A live crasher keeps its own groups populated, so an
                // "emptied" of them predates it; only removals count there.
                let own = n.op == CgroupOp::Rmdir
                    && (n.id == chain.cgroup_id
                        || (!n.path.is_empty() && !own_path.is_empty() && crate::scope::cgroup_under(&own_path, &n.path)));
                let why = if own {
                    format!("{}: the crashing process's own cgroup", n.why)
                } else if by_crasher && !n.zombies.is_empty() {
                    format!("{} by the crashing process", n.why)
                } else {
                    return None;
                };
                Some(CgroupNote { why, ..n.clone() })
            })
            .rev()
            .take(CGROUP_CONTEXT_MAX)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }

    /// Ends chains whose grace or idle time has passed at `now_ns`.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Chain> {
        self.now_ns = self.now_ns.max(now_ns);
        let now = self.now_ns;
        // PID 1 caught a fatal signal recently: it is in its crash handler
        // and serves no socket.
        let pid1_in_crash = self.handled.contains_key(&1);
        // Only the watched chains can stall or be complete; with thousands
        // of chains open, walking them all at every tick was what most of
        // a tick cost.
        for id in &self.watch {
            let Some(open) = self.open.get_mut(id) else { continue };
            let c = &mut open.chain;
            let collector_gone_at = c.collector.as_ref().and_then(|h| h.exit_ts_ns);
            if let (None, Some(gone), None) = (open.complete_at, collector_gone_at, c.exit_code) {
                let stall_ns = stall_bound(&self.cfg, c, pid1_in_crash);
                if now >= gone.saturating_add(stall_ns) {
                    // Reported now, while it is happening: waiting longer
                    // cannot bring the core back.
                    c.stalled = true;
                    c.step(now, format!("still dumping {} ms after the collector exited: stalled", stall_ns / 1_000_000));
                    open.complete_at = Some(now.saturating_sub(self.cfg.grace_ns));
                }
            }
        }
        let mut due: BTreeSet<u64> = self
            .watch
            .iter()
            .filter_map(|id| self.open.get(id).map(|o| (id, o)))
            .filter(|(_, o)| match o.complete_at {
                Some(at) => {
                    now >= at.saturating_add(self.cfg.grace_ns)
                        && (!awaits_core(&o.chain) || now >= at.saturating_add(self.cfg.grace_ns).saturating_add(self.cfg.core_wait_ns))
                }
                // A hand-off still within its stall bound is waited for
                // past the idle timeout: the stall check above ends it.
                None if awaiting_handoff(&o.chain) => false,
                None => now >= o.chain.last_ts_ns.saturating_add(self.cfg.idle_timeout_ns),
            })
            .map(|(id, _)| *id)
            .collect();
        // The others: idle for the timeout since their last evidence.
        let idle_timeout = self.cfg.idle_timeout_ns;
        while let Some(&(queued, id)) = self.idle.first()
            && now >= queued.saturating_add(idle_timeout)
        {
            self.idle.pop_first();
            // A watched chain is the loop above's to end.
            if self.watch.contains(&id) {
                continue;
            }
            let Some(open) = self.open.get_mut(&id) else { continue };
            let last = open.chain.last_ts_ns;
            if last > queued {
                // Evidence since: queued again, and due again in this loop
                // if that too is past the timeout.
                open.idle_key = last;
                self.idle.insert((last, id));
                continue;
            }
            due.insert(id);
        }
        // In id order, as a walk over every open chain ended them.
        let mut done: Vec<Chain> = due.into_iter().filter_map(|id| self.finish(id)).collect();
        // Oldest first: only the expired ones are looked at.
        let window = self.cfg.link_window_ns;
        while let Some(&(tgid, ts)) = self.handled_order.front()
            && now >= ts.saturating_add(window)
        {
            self.handled_order.pop_front();
            self.forget_handled(tgid, ts);
        }
        done.sort_by_key(|c| c.id);
        done
    }

    /// Complete chains whose verdict would be `stored` and whose core has
    /// not been looked for yet: the live tracer looks, and feeds a
    /// `core-located` event.
    pub fn core_requests(&self) -> Vec<CoreRequest> {
        // A complete chain is a watched one.
        self.watch
            .iter()
            .filter_map(|id| self.open.get(id).map(|o| (id, o)))
            .filter_map(|(id, o)| {
                let at = o.complete_at?;
                awaits_core(&o.chain).then(|| CoreRequest { chain_id: *id, chain: o.chain.clone(), complete_at_ns: at })
            })
            .collect()
    }

    /// Ends every open chain (end of input, or shutdown).
    pub fn flush(&mut self) -> Vec<Chain> {
        let ids: Vec<u64> = self.open.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.finish(id)).collect()
    }

    /// Remembers that `tgid`'s handler caught a fatal signal (chain `id`),
    /// forgetting the oldest such process beyond [`HANDLED_MAX`].
    fn remember_handled(&mut self, tgid: u32, id: u64, ts: u64) {
        self.handled.insert(tgid, (id, ts));
        self.handled_order.push_back((tgid, ts));
        while self.handled_order.len() > HANDLED_MAX {
            if let Some((old, old_ts)) = self.handled_order.pop_front() {
                self.forget_handled(old, old_ts);
            }
        }
    }

    /// Drops `tgid`'s entry if it is still the one made at `ts`.
    fn forget_handled(&mut self, tgid: u32, ts: u64) {
        if self.handled.get(&tgid).map(|(_, t)| *t) == Some(ts) {
            self.handled.remove(&tgid);
        }
    }

    /// Takes an open chain out of `open` and of every index of open chains.
    fn remove_open(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        self.pipe_dumping.remove(&id);
        unindex_cgroup(&mut self.by_cgroup, id, open.chain.cgroup_id);
        self.watch.remove(&id);
        self.idle.remove(&(open.idle_key, id));
        Some(open)
    }

    fn finish(&mut self, id: u64) -> Option<Chain> {
        let open = self.remove_open(id)?;
        let mut chain = open.chain;
        if self.by_tgid.get(&chain.crasher.tgid) == Some(&id) {
            self.by_tgid.remove(&chain.crasher.tgid);
        }
        if let Some(c) = &chain.collector
            && self.by_helper.get(&c.pid) == Some(&id) {
                self.by_helper.remove(&c.pid);
            }
        if chain.cgroup_path.is_none() {
            chain.cgroup_path = self.cgroup_paths.get(&chain.cgroup_id).cloned();
        }
        chain.cgroup_context = self.cgroup_context(&chain);
        // The root cgroup (id 1) is everyone's: its events say nothing of this crash.
        if chain.cgroup_id > 1 {
            if self.finished_cgroups.len() >= RECENT_CGROUPS_MAX {
                self.finished_cgroups.pop_front();
            }
            self.finished_cgroups.push_back((chain.cgroup_id, chain.id));
        }
        for note in chain.cgroup_context.clone() {
            chain.step(note.ts_ns, format!("possible cause: {} {} by {} ({})", note.op, note.path, note.actor, note.why));
        }
        chain.timeline.sort_by_key(|s| s.ts_ns);
        let decision = decide(&chain);
        chain.verdict = Some(decision.verdict);
        chain.reason = decision.reason;
        chain.missing = decision.missing;
        *self.stats.verdicts.entry(decision.verdict.as_str().to_string()).or_default() += 1;
        if chain.misleading_core_dumped() {
            self.stats.kernel_said_dumped_but_dropped += 1;
        }
        Some(chain)
    }

    /// Marks every open chain: the kernel lost events while it was open.
    pub fn note_loss(&mut self, ts_ns: u64, lost: u64) {
        for open in self.open.values_mut() {
            if !open.chain.events_lost {
                open.chain.events_lost = true;
                open.chain.step(ts_ns, format!("{lost} events lost while this chain was open"));
            }
        }
    }

    /// The open chain of a process that has not exited yet. A chain whose
    /// process is gone stays reachable by pid only for its parent's SIGCHLD:
    /// pids are reused within seconds under churn, and a new process with
    /// the same pid is a new crash.
    /// Drops the open chain of `tgid` if it is only a SIGKILL that no one
    /// sent, taken by a thread other than the leader, with no dump: what
    /// exec (de_thread) does to a process's other threads. A process that
    /// then takes another fatal signal lived through it (runc's init execs
    /// the container's program that way), so that chain was no crash and
    /// must not swallow the real one.
    fn forget_exec_zap(&mut self, tgid: u32, sig: i32) {
        if sig == SIGKILL {
            return;
        }
        let Some(id) = self.live_chain(tgid) else { return };
        let Some(open) = self.open.get(&id) else { return };
        let c = &open.chain;
        let zap = c.sig == SIGKILL
            && c.sender.is_none()
            && c.code == 0
            && c.crasher.pid != c.crasher.tgid
            && c.dump.is_none()
            && c.disposition == Some(Disposition::Default);
        if zap {
            self.remove_open(id);
            self.by_tgid.remove(&tgid);
            self.stats.exec_zaps_dropped += 1;
        }
    }

    /// Ends the open chain of `tgid` when its process took a fatal default
    /// action long before `ts_ns`: an event of a new process that got the
    /// same pid (the old one's exit was lost) must not join it.
    fn retire_reused(&mut self, tgid: u32, ts_ns: u64, done: &mut Vec<Chain>) {
        let Some(id) = self.live_chain(tgid) else { return };
        let Some(since) = self.open.get(&id).and_then(|o| o.dying_since) else { return };
        if ts_ns <= since.saturating_add(PID_REUSED_AFTER_NS) {
            return;
        }
        self.stats.pids_reused += 1;
        if let Some(mut c) = self.finish(id) {
            c.reason = format!(
                "{} (ended early: pid {tgid} acted on a new fatal signal {} ms after this death, so it belongs to a new process; this one's exit was not seen)",
                c.reason,
                (ts_ns - since) / 1_000_000
            );
            done.push(c);
        }
    }

    fn live_chain(&self, tgid: u32) -> Option<u64> {
        let id = *self.by_tgid.get(&tgid)?;
        let open = self.open.get(&id)?;
        open.chain.exit_code.is_none().then_some(id)
    }

    /// The open chain of `task`'s process, opened if there is none.
    fn chain_for(&mut self, task: Proc, sig: i32, ts_ns: u64, done: &mut Vec<Chain>) -> u64 {
        if let Some(id) = self.live_chain(task.tgid) {
            return id;
        }
        if self.open.len() >= self.cfg.max_open
            && let Some(oldest) = self.open.keys().next().copied() {
                self.stats.chains_evicted += 1;
                if let Some(mut c) = self.finish(oldest) {
                    c.reason = format!("{} (ended early: more than {} chains in flight)", c.reason, self.cfg.max_open);
                    done.push(c);
                }
            }
        let id = self.next_id;
        self.next_id += 1;
        self.stats.chains_opened += 1;
        let tgid = task.tgid;
        let chain = Chain::new(id, task, sig, ts_ns);
        self.by_cgroup.entry(chain.cgroup_id).or_default().insert(id);
        self.idle.insert((chain.last_ts_ns, id));
        let idle_key = chain.last_ts_ns;
        self.open.insert(id, Open { chain, complete_at: None, dying_since: None, idle_key });
        self.by_tgid.insert(tgid, id);
        id
    }

    fn link(&mut self, id: u64, ppid: u32) {
        let Some(&(parent_chain, ts)) = self.handled.get(&ppid) else { return };
        let window = self.cfg.link_window_ns;
        if let Some(open) = self.open.get_mut(&id)
            && open.chain.linked_to.is_none() && open.chain.first_ts_ns < ts.saturating_add(window) {
                open.chain.linked_to = Some(parent_chain);
                open.chain.step(open.chain.first_ts_ns, format!("forked by crash handler of pid {ppid} (chain #{parent_chain})"));
            }
    }

    fn on_generate(
        &mut self,
        ev: &Event,
        g: Generated,
        target: &Proc,
        done: &mut Vec<Chain>,
    ) {
        let Generated { sig, code, result, target_ppid, target_handler, target_blocked, fault_addr, si_pid } = g;
        if sig == SIGCHLD {
            // The parent learns how its child died; si_pid is the child.
            let child = si_pid.unwrap_or(0);
            if let Some(id) = self.by_tgid.get(&child).copied()
                && let Some(open) = self.open.get_mut(&id) {
                    let name = code_name(sig, code);
                    if code == CLD_DUMPED {
                        open.chain.kernel_said_dumped = true;
                    }
                    if code == CLD_DUMPED || code == CLD_KILLED {
                        open.chain.sigchld = Some(name.clone());
                        open.chain.step(ev.ts_ns, format!("parent {target} got SIGCHLD {name}"));
                    }
                }
            return;
        }
        if sig == SIGPIPE
            && let Some(id) = self.by_tgid.get(&target.tgid).copied()
                && let Some(open) = self.open.get_mut(&id)
                    && open.chain.dump.is_some() && open.chain.exit_code.is_none() {
                        open.chain.sigpipe_during_dump = true;
                        open.chain.step(ev.ts_ns, "SIGPIPE while dumping: the core's reader went away");
                        return;
                    }
        if !is_fatal_by_default(sig) || result == TRACE_SIGNAL_IGNORED || result == TRACE_SIGNAL_ALREADY_PENDING {
            return;
        }
        // A blocked signal that no fault forced is not acted on now: the
        // target takes it through sigwait/signalfd (and exits normally), or
        // acts on it once it unblocks it, and then signal_deliver opens the
        // chain. (The kernel side drops these unless a watched pid is involved.)
        if target_blocked && sig != SIGKILL && !(code > 0 && is_fault_signal(sig)) {
            return;
        }
        // A terminating (non-core) signal with a handler is ordinary life
        // (SIGTERM to a daemon), not a crash.
        if !is_core_signal(sig) && sig != SIGKILL && target_handler != SIG_DFL {
            return;
        }
        self.forget_exec_zap(target.tgid, sig);
        // A dying process faults no more: a fault of its own is a new one's.
        if ev.task.tgid == target.tgid && code > 0 && is_fault_signal(sig) {
            self.retire_reused(target.tgid, ev.ts_ns, done);
        }
        if let Some(id) = self.live_chain(target.tgid) {
            // A second fatal signal while the first is acted on.
            if let Some(open) = self.open.get_mut(&id)
                && (open.chain.disposition.is_some() || open.chain.sig != sig) {
                    open.chain.step(ev.ts_ns, format!("also {} from {}", signal_name(sig), ev.task));
                    return;
                }
        }
        let id = self.chain_for(target.clone(), sig, ev.ts_ns, done);
        let origin = origin(sig, code, &ev.task, target);
        if let Some(open) = self.open.get_mut(&id) {
            let c = &mut open.chain;
            c.code = code;
            c.fault_addr = fault_addr;
            c.ppid = Some(target_ppid);
            c.origin = origin;
            if ev.task.tgid == target.tgid && origin == Origin::Fault {
                move_cgroup(&mut self.by_cgroup, id, c.cgroup_id, ev.cgroup_id);
                c.cgroup_id = ev.cgroup_id;
                if c.cgroup_path.is_none() {
                    c.cgroup_path = self.cgroup_paths.get(&ev.cgroup_id).cloned();
                }
            }
            c.sender = Some(ev.task.clone());
            let how = match (origin, fault_addr) {
                (Origin::Fault, Some(addr)) => format!("{} at {addr:#x}", code_name(sig, code)),
                _ => code_name(sig, code),
            };
            let from = match si_pid {
                Some(p) if p != ev.task.tgid && p != 0 => format!("{} (si_pid {p})", ev.task),
                _ => ev.task.to_string(),
            };
            c.step(ev.ts_ns, format!("{} {how} to {target}, {origin} by {from}", signal_name(sig)));
        }
        self.link(id, target_ppid);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_deliver(
        &mut self,
        ev: &Event,
        sig: i32,
        code: i32,
        sa_handler: u64,
        fault_addr: Option<u64>,
        rlimit_core: Option<u64>,
        ppid: u32,
        dumpable: Option<u32>,
        done: &mut Vec<Chain>,
    ) {
        if !is_fatal_by_default(sig) {
            return;
        }
        if sa_handler != SIG_DFL && !is_core_signal(sig) {
            return;
        }
        self.forget_exec_zap(ev.task.tgid, sig);
        self.retire_reused(ev.task.tgid, ev.ts_ns, done);
        if let Some(id) = self.live_chain(ev.task.tgid)
            && let Some(open) = self.open.get(&id) {
                // SIGKILL reaching the other threads of a process already
                // dying of its first signal adds nothing.
                if sig == SIGKILL && open.chain.disposition.is_some() {
                    return;
                }
            }
        let id = self.chain_for(ev.task.clone(), sig, ev.ts_ns, done);
        let settings = self.settings.clone();
        let in_flight = self.pipe_dumps_in_flight();
        let pattern_write = self.pattern_write.clone();
        let Some(open) = self.open.get_mut(&id) else { return };
        let c = &mut open.chain;
        if c.sig != sig && c.disposition.is_none() {
            // The signal acted on is not the first one generated (e.g. a
            // SIGKILL overtook a SIGTERM): the acted-on one decides.
            c.sig = sig;
            c.signal = signal_name(sig);
        }
        c.crasher = ev.task.clone();
        c.ppid = Some(ppid);
        move_cgroup(&mut self.by_cgroup, id, c.cgroup_id, ev.cgroup_id);
        c.cgroup_id = ev.cgroup_id;
        if c.cgroup_path.is_none() {
            c.cgroup_path = self.cgroup_paths.get(&ev.cgroup_id).cloned();
        }
        if c.fault_addr.is_none() {
            c.fault_addr = fault_addr;
        }
        if c.origin == Origin::Unknown {
            c.code = code;
            c.origin = origin(sig, code, &ev.task, &ev.task);
        }
        let limit = match rlimit_core {
            None => "unlimited".to_string(),
            Some(v) => v.to_string(),
        };
        let dumpable_s = dumpable.map(|d| d.to_string()).unwrap_or_else(|| "?".into());
        if sa_handler == SIG_IGN {
            c.disposition = Some(Disposition::Ignored);
            c.step(ev.ts_ns, format!("{} delivered to {}: ignored", c.signal, ev.task));
            open.complete_at = Some(ev.ts_ns);
            self.watch.insert(id);
        } else if sa_handler != SIG_DFL {
            c.disposition = Some(Disposition::Handler);
            c.handler = Some(sa_handler);
            c.step(ev.ts_ns, format!("{} caught by handler {sa_handler:#x} in {}", c.signal, ev.task));
            open.complete_at = Some(ev.ts_ns);
            self.watch.insert(id);
            // Remember it now: the handler may fork its crash child at once.
            self.remember_handled(ev.task.tgid, id, ev.ts_ns);
        } else if is_core_signal(sig) {
            open.dying_since.get_or_insert(ev.ts_ns);
            c.disposition = Some(Disposition::Default);
            let dump = c.dump.get_or_insert_with(|| new_dump(settings.as_ref(), DumpHook::Inferred, rlimit_core, dumpable));
            dump.rlimit_core = rlimit_core;
            dump.dumpable = dumpable;
            if matches!(dump.mode, DumpMode::Pipe { .. }) {
                let limit = settings.as_ref().map(|s| s.core_pipe_limit).unwrap_or(0);
                dump.over_pipe_limit = limit > 0 && in_flight >= limit as usize;
            }
            c.core_pattern_set_by = match (pattern_write, settings.as_ref()) {
                (Some(w), Some(s)) if w.new_value == s.core_pattern => Some(w),
                _ => None,
            };
            let pattern = dump.core_pattern.clone();
            c.step(
                ev.ts_ns,
                format!("{} default action in {}: core dump (pattern {pattern:?}, RLIMIT_CORE={limit}, dumpable={dumpable_s})", c.signal, ev.task),
            );
            if is_pipe_dump(c) {
                self.pipe_dumping.insert(id);
            }
        } else {
            open.dying_since.get_or_insert(ev.ts_ns);
            c.disposition = Some(Disposition::Default);
            c.step(ev.ts_ns, format!("{} default action in {}: terminate, no core", c.signal, ev.task));
        }
        self.link(id, ppid);
    }

    fn pipe_dumps_in_flight(&self) -> usize {
        self.pipe_dumping.len()
    }

    fn on_helper_exec(&mut self, ev: &Event, filename: &str, argv: &[String]) {
        // The helper's argv names the crasher where the pattern has %P/%p/%i/%I;
        // otherwise the oldest dump waiting for a helper gets it (the kernel
        // starts helpers in dump order, and the dumper blocks until exec).
        // Only the pipe dumps in flight are candidates (an index, oldest
        // first), not every open chain.
        let waiting: Vec<(u64, &Chain)> = self
            .pipe_dumping
            .iter()
            .filter_map(|id| self.open.get(id).map(|o| (*id, &o.chain)))
            .filter(|(_, c)| c.collector.is_none())
            .collect();
        let numbers: Vec<u32> = argv.iter().skip(1).filter_map(|a| a.parse::<u32>().ok()).collect();
        let by_argv = waiting
            .iter()
            .find(|(_, c)| numbers.iter().any(|n| *n == c.crasher.tgid || *n == c.crasher.pid))
            .map(|(id, _)| *id);
        let (id, matched_by) = match by_argv {
            Some(id) => (id, MatchedBy::Argv),
            None => match waiting.first().map(|(id, _)| *id) {
                Some(id) => (id, MatchedBy::Timing),
                None => return,
            },
        };
        self.by_helper.insert(ev.task.tgid, id);
        if let Some(open) = self.open.get_mut(&id) {
            open.chain.step(ev.ts_ns, format!("collector {} exec'd: {}", ev.task, argv.join(" ")));
            open.chain.collector = Some(Collector {
                pid: ev.task.tgid,
                comm: ev.task.comm.clone(),
                filename: filename.to_string(),
                argv: argv.to_vec(),
                matched_by,
                connects: Vec::new(),
                connects_dropped: 0,
                exit_code: None,
                exit_ts_ns: None,
            });
        }
    }

    fn on_exit(&mut self, ev: &Event, exit_code: i32, roles: &[Role]) {
        let tgid = ev.task.tgid;
        if roles.contains(&Role::Helper)
            && let Some(id) = self.by_helper.get(&tgid).copied()
                && let Some(open) = self.open.get_mut(&id) {
                    open.chain.step(ev.ts_ns, format!("collector {} exited: {}", ev.task, describe_exit(exit_code)));
                    if let Some(c) = open.chain.collector.as_mut() {
                        c.exit_code = Some(exit_code);
                        c.exit_ts_ns = Some(ev.ts_ns);
                    }
                    if open.chain.exit_code.is_some() {
                        open.complete_at = Some(ev.ts_ns);
                    }
                    // Complete, or a stall to watch for.
                    self.watch.insert(id);
                }
        if let Some(id) = self.live_chain(tgid)
            && let Some(open) = self.open.get_mut(&id) {
                self.pipe_dumping.remove(&id);
                let c = &mut open.chain;
                c.exit_code = Some(exit_code);
                if exit_code & 0x80 != 0 {
                    c.kernel_said_dumped = true;
                }
                c.step(ev.ts_ns, format!("{} exited: {}", ev.task, describe_exit(exit_code)));
                let waits_for_collector = c.collector.as_ref().map(|h| h.exit_code.is_none()).unwrap_or(false);
                if !waits_for_collector || c.disposition != Some(Disposition::Default) {
                    open.complete_at = Some(ev.ts_ns);
                    self.watch.insert(id);
                }
            }
    }
}

/// What a signal_generate event says of the signal, for [`Correlator::on_generate`].
#[derive(Clone, Copy)]
struct Generated {
    sig: i32,
    code: i32,
    result: i32,
    target_ppid: u32,
    target_handler: u64,
    target_blocked: bool,
    fault_addr: Option<u64>,
    si_pid: Option<u32>,
}

/// Moves open chain `id` from cgroup `from` to `to` in the cgroup index.
fn move_cgroup(index: &mut HashMap<u64, BTreeSet<u64>>, id: u64, from: u64, to: u64) {
    if from != to {
        unindex_cgroup(index, id, from);
        index.entry(to).or_default().insert(id);
    }
}

/// Takes open chain `id` out of cgroup `cgroup` in the cgroup index; an
/// emptied group goes, so the index holds only groups with open chains.
fn unindex_cgroup(index: &mut HashMap<u64, BTreeSet<u64>>, id: u64, cgroup: u64) {
    if let Some(ids) = index.get_mut(&cgroup) {
        ids.remove(&id);
        if ids.is_empty() {
            index.remove(&cgroup);
        }
    }
}

/// A dump into a pipe by a process that has not exited: in flight.
fn is_pipe_dump(c: &Chain) -> bool {
    c.exit_code.is_none() && c.dump.as_ref().map(|d| matches!(d.mode, DumpMode::Pipe { .. })).unwrap_or(false)
}

/// A chain whose verdict, as the evidence stands, is `stored`, and whose
/// core has not been looked for.
/// The collector handed the core to PID 1's coredump socket and exited,
/// and the crasher is still dumping: the socket's service is reading.
fn awaiting_handoff(chain: &Chain) -> bool {
    chain.exit_code.is_none()
        && chain.collector.as_ref().is_some_and(|h| {
            h.exit_ts_ns.is_some() && h.connects.iter().any(|c| c.ret == 0 && c.path == SYSTEMD_COREDUMP_SOCKET)
        })
}

/// How long after its collector exited an unfinished dump is a stall. A
/// hand-off to PID 1's socket gets the short bound only with evidence that
/// PID 1 cannot read the core: PID 1 is the crasher, PID 1 is in its crash
/// handler, or the crasher was forked from a crash handler (which waits for
/// it). Otherwise a slow but healthy socket-activated collector is waited for.
fn stall_bound(cfg: &Config, chain: &Chain, pid1_in_crash: bool) -> u64 {
    let pid1_cannot_read = chain.crasher.tgid == 1 || pid1_in_crash || chain.linked_to.is_some();
    if awaiting_handoff(chain) && !pid1_cannot_read {
        cfg.handoff_stall_ns.max(cfg.stall_ns)
    } else {
        cfg.stall_ns
    }
}

fn awaits_core(chain: &Chain) -> bool {
    chain.core.is_none() && chain.dump.is_some() && decide(chain).verdict == crate::verdict::Verdict::Stored
}

fn new_dump(settings: Option<&CoreSettings>, hook: DumpHook, rlimit_core: Option<u64>, dumpable: Option<u32>) -> Dump {
    let (mode, pattern, helper_executable) = match settings {
        Some(s) => (s.mode(), s.core_pattern.clone(), s.helper_executable),
        None => (DumpMode::Empty, String::new(), None),
    };
    Dump { hook, mode, core_pattern: pattern, rlimit_core, dumpable, helper_executable, over_pipe_limit: false }
}

/// How a signal arose, from its si_code and who sent it.
fn origin(sig: i32, code: i32, sender: &Proc, target: &Proc) -> Origin {
    match code {
        SI_USER => Origin::Kill,
        SI_TKILL => Origin::Tkill,
        SI_QUEUE => Origin::Queue,
        c if c > 0 && sender.tgid == target.tgid && is_fault_signal(sig) => Origin::Fault,
        c if c > 0 => Origin::Kernel,
        _ => Origin::Unknown,
    }
}

#[cfg(test)]
mod tests;

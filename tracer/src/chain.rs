//! A crash chain: everything known about one fatal signal, from its
//! generation to the collector's result, and the verdict that ends it (the
//! identifiers; [`crate::verdict`] holds the rules that pick one).

use serde::{Deserialize, Serialize};

use crate::{
    core_pattern::DumpMode,
    event::{CgroupOp, DumpHook, Proc},
};

/// How many timeline steps a chain keeps; a storm of signals to one process
/// must not grow it without bound.
pub const TIMELINE_MAX: usize = 48;

/// How many connects of a collector a chain keeps: a collector retrying in
/// a loop must not grow its chain without bound. The rest are counted.
pub const CONNECTS_MAX: usize = 32;

tracer_common::named_enum! {
    serde
    /// How a chain ended. The names are stable identifiers (JSON, `report
    /// --verdict`); every `dropped:` one is a core the kernel did not store.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Verdict {
        Stored => "stored",
        CollectorUnreachablePid1 => "dropped:collector-unreachable-pid1",
        CorePatternDiscards => "dropped:core-pattern-discards",
        CollectorFailed => "dropped:collector-failed",
        CollectorDiscarded => "dropped:collector-discarded",
        ReaderVanished => "dropped:reader-vanished",
        RlimitCore => "dropped:rlimit-core",
        NotDumpable => "dropped:not-dumpable",
        PipeLimit => "dropped:pipe-limit",
        SocketUnreachable => "dropped:socket-unreachable",
        NoDump => "no-dump",
        Handled => "handled",
        Unknown => "unknown",
    }
}

impl Verdict {
    /// A verdict by its name; `None` for any other text.
    pub fn parse(s: &str) -> Option<Verdict> {
        s.parse().ok()
    }

    pub fn is_dropped(self) -> bool {
        self.as_str().starts_with("dropped:")
    }
}

tracer_common::named_enum! {
    serde
    /// How a signal arose, from its si_code and who sent it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Origin {
        /// A fault in the thread itself (si_code > 0, a fault signal).
        Fault => "fault",
        /// kill(2) (SI_USER).
        Kill => "kill",
        /// tkill(2)/tgkill(2) (SI_TKILL).
        Tkill => "tkill",
        /// sigqueue(3) (SI_QUEUE).
        Queue => "queue",
        /// Raised by the kernel for another reason (si_code > 0).
        Kernel => "kernel",
        Unknown => "unknown",
    }
}

tracer_common::named_enum! {
    serde
    /// What the receiving thread did with the signal.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Disposition {
        /// SIG_DFL: the default action (terminate, or dump core).
        Default => "default",
        /// A user handler caught it.
        Handler => "handler",
        /// SIG_IGN.
        Ignored => "ignored",
    }
}

tracer_common::named_enum! {
    serde
    /// How a collector was tied to its crash.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum MatchedBy {
        /// The helper's arguments named the crasher (%P, %p, %i or %I).
        Argv => "argv",
        /// The oldest dump waiting for a helper got it.
        Timing => "timing",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub ts_ns: u64,
    pub what: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    pub hook: DumpHook,
    #[serde(flatten)]
    pub mode: DumpMode,
    pub core_pattern: String,
    pub rlimit_core: Option<u64>,
    pub dumpable: Option<u32>,
    /// For a pipe: whether the helper existed and was executable at the time.
    pub helper_executable: Option<bool>,
    pub over_pipe_limit: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connect {
    pub path: String,
    pub ret: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Collector {
    pub pid: u32,
    pub comm: String,
    pub filename: String,
    pub argv: Vec<String>,
    pub matched_by: MatchedBy,
    /// The first connects and the latest, [`CONNECTS_MAX`] at most.
    pub connects: Vec<Connect>,
    /// Connects not kept because `connects` was full.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub connects_dropped: u32,
    /// Raw wait status of the helper (status << 8, or the killing signal).
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub exit_ts_ns: Option<u64>,
}

impl Collector {
    /// The helper's name for messages: its program's file name (comm is cut
    /// to 15 bytes by the kernel).
    pub fn name(&self) -> &str {
        match self.filename.rsplit('/').next() {
            Some(base) if !base.is_empty() => base,
            _ => &self.comm,
        }
    }

    /// Keeps a connect. Once [`CONNECTS_MAX`] are kept, the newest takes
    /// the last place and the one it replaces is counted: the first ones
    /// and the latest stay, as the verdict rules read the latest failure.
    pub fn connect(&mut self, connect: Connect) {
        if self.connects.len() < CONNECTS_MAX {
            self.connects.push(connect);
        } else if let Some(last) = self.connects.last_mut() {
            *last = connect;
            self.connects_dropped = self.connects_dropped.saturating_add(1);
        }
    }

    /// Exited non-zero or by a signal.
    pub fn exit_failed(&self) -> bool {
        self.exit_code.map(|c| c != 0).unwrap_or(false)
    }

    pub fn exit_description(&self) -> String {
        match self.exit_code {
            None => "no exit seen".into(),
            Some(c) => describe_exit(c),
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// "status 1", "SIGSEGV", "SIGSEGV, core dumped".
pub fn describe_exit(code: i32) -> String {
    let sig = code & 0x7f;
    if sig == 0 {
        format!("status {}", (code >> 8) & 0xff)
    } else if code & 0x80 != 0 {
        format!("{}, core dumped", crate::event::signal_name(sig))
    } else {
        crate::event::signal_name(sig)
    }
}

/// A write to core_pattern seen by the tracer: who set the pattern in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatternWrite {
    pub writer: Proc,
    pub ts_ns: u64,
    pub old_value: String,
    pub new_value: String,
}

/// A cgroup event shown in a crash's timeline as a possible cause.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CgroupNote {
    pub ts_ns: u64,
    pub op: CgroupOp,
    pub id: u64,
    pub path: String,
    pub actor: Proc,
    /// Why it is shown: "removed by the crasher", "crasher's cgroup emptied", ...
    pub why: String,
    /// Zombies the group still held at the time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zombies: Vec<Proc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chain {
    pub id: u64,
    /// The thread that took the signal; `tgid` is its process.
    pub crasher: Proc,
    pub ppid: Option<u32>,
    pub cgroup_id: u64,
    /// The crasher's cgroup v2 path, from cgroup events or /proc.
    #[serde(default)]
    pub cgroup_path: Option<String>,
    /// The container, pod and systemd unit its cgroup path names
    /// ([`crate::container`]), set when the chain ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::container::Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<crate::container::Pod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The crasher's pid namespace (inode of /proc/PID/ns/pid) and its pid
    /// as seen inside that namespace.
    #[serde(default)]
    pub pidns: Option<u64>,
    #[serde(default)]
    pub ns_pid: Option<u32>,
    /// cgroup events shortly before the crash that may explain it (a hint).
    #[serde(default)]
    pub cgroup_context: Vec<CgroupNote>,
    pub sig: i32,
    pub signal: String,
    pub code: i32,
    pub origin: Origin,
    pub fault_addr: Option<u64>,
    pub sender: Option<Proc>,
    /// None until delivery is seen.
    pub disposition: Option<Disposition>,
    pub handler: Option<u64>,
    pub dump: Option<Dump>,
    pub collector: Option<Collector>,
    pub sigpipe_during_dump: bool,
    pub exit_code: Option<i32>,
    pub sigchld: Option<String>,
    /// The kernel's exit status said "core dumped" (0x80, or CLD_DUMPED).
    pub kernel_said_dumped: bool,
    /// The chain of the crash handler this process was forked from.
    pub linked_to: Option<u64>,
    pub core_pattern_set_by: Option<PatternWrite>,
    /// The collector is gone but the crasher never finished its dump.
    #[serde(default)]
    pub stalled: bool,
    /// The kernel lost events while this chain was open: its verdict may
    /// rest on missing evidence.
    #[serde(default)]
    pub events_lost: bool,
    /// What the host showed when the chain ended (kernel waits from /proc).
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Where the core is (or where it was looked for): looked up when the
    /// dump is over, recorded in the log as a `core-located` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core: Option<crate::core_location::CoreLocation>,
    /// The crashing thread's stack, captured at the fatal signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<crate::stack::Stack>,
    pub verdict: Option<Verdict>,
    pub reason: String,
    pub missing: Option<String>,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub timeline: Vec<Step>,
    /// Steps not kept because the timeline was full.
    pub timeline_dropped: u32,
}

impl Chain {
    pub fn new(id: u64, crasher: Proc, sig: i32, ts_ns: u64) -> Chain {
        Chain {
            id,
            crasher,
            ppid: None,
            cgroup_id: 0,
            cgroup_path: None,
            container: None,
            pod: None,
            unit: None,
            pidns: None,
            ns_pid: None,
            cgroup_context: Vec::new(),
            sig,
            signal: crate::event::signal_name(sig),
            code: 0,
            origin: Origin::Unknown,
            fault_addr: None,
            sender: None,
            disposition: None,
            handler: None,
            dump: None,
            collector: None,
            sigpipe_during_dump: false,
            exit_code: None,
            sigchld: None,
            kernel_said_dumped: false,
            linked_to: None,
            core_pattern_set_by: None,
            stalled: false,
            events_lost: false,
            evidence: Vec::new(),
            core: None,
            stack: None,
            verdict: None,
            reason: String::new(),
            missing: None,
            first_ts_ns: ts_ns,
            last_ts_ns: ts_ns,
            timeline: Vec::new(),
            timeline_dropped: 0,
        }
    }

    pub fn step(&mut self, ts_ns: u64, what: impl Into<String>) {
        self.last_ts_ns = self.last_ts_ns.max(ts_ns);
        if self.timeline.len() < TIMELINE_MAX {
            self.timeline.push(Step { ts_ns, what: what.into() });
        } else {
            self.timeline_dropped = self.timeline_dropped.saturating_add(1);
        }
    }

    /// A "core dumped" from the kernel on a chain whose core was not stored.
    /// Sets `container`, `pod` and `unit` from the cgroup path.
    pub fn learn_context(&mut self) {
        let mut ctx = self.cgroup_path.as_deref().map(crate::container::parse).unwrap_or_default();
        // A name learnt from the runtime (live) or read from the log stays.
        if let (Some(new), Some(old)) = (ctx.container.as_mut(), self.container.as_ref())
            && new.id == old.id
        {
            new.name = old.name.clone();
        }
        (self.container, self.pod, self.unit) = (ctx.container, ctx.pod, ctx.unit);
    }

    pub fn misleading_core_dumped(&self) -> bool {
        self.kernel_said_dumped && self.verdict.map(|v| v.is_dropped()).unwrap_or(false)
    }

    /// Whether `pid` (a thread-group id) takes part in this chain.
    pub fn involves(&self, pid: u32) -> bool {
        self.participants().any(|p| p == pid)
    }

    /// The processes (and the crashing thread) taking part: the crasher,
    /// its parent, the sender and the collector. A scope asks its set about
    /// each of these, instead of asking the chain about each pid it follows.
    pub fn participants(&self) -> impl Iterator<Item = u32> + '_ {
        [self.crasher.tgid, self.crasher.pid]
            .into_iter()
            .chain(self.ppid)
            .chain(self.sender.as_ref().map(|s| s.tgid))
            .chain(self.collector.as_ref().map(|c| c.pid))
    }
}

//! The one table of crashtrace's hooks: every eBPF program, where it attaches,
//! what it needs, which kernel it needs, and what is lost without it.
//!
//! The loader walks [`HOOKS`] in order to attach them, doctor takes what it
//! probes from it, and the README's hook tables are rendered from it
//! ([`markdown_table`]; `cargo xtask readme` rewrites them, and a unit test
//! fails when they are stale). Adding a hook is one entry here, plus its
//! program, wire type and decoder. Pure: no aya, no I/O.

use std::fmt::{self, Write as _};

use tracer_common::config::KernelOffsets;

/// The kernel's core-dump entry, newest name first: Linux 6.17 renamed
/// `do_coredump` to `vfs_coredump`, same signature.
/// https://elixir.bootlin.com/linux/v6.17/source/fs/coredump.c
pub const DUMP_ENTRY: &[&str] = &["vfs_coredump", "do_coredump"];

/// The kprobe PMU, which perf-event kprobes (aya's) need.
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// A kernel release, (major, minor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kernel(pub u32, pub u32);

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The oldest kernel crashtrace supports (the VM tier's oldest).
pub const OLDEST_SUPPORTED: Kernel = Kernel(5, 10);

/// Where and how a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// A BTF-typed raw tracepoint, `tp_btf/<name>`.
    TpBtf(&'static str),
    /// A classic tracepoint, `tracepoint/<category>/<name>`; its field
    /// offsets come from tracefs.
    Tracepoint { category: &'static str, name: &'static str },
    /// fentry on the first of these kernel functions the kernel's BTF has.
    Fentry(&'static [&'static str]),
    /// kprobe on the first of these kernel functions the kernel's BTF has.
    Kprobe(&'static [&'static str]),
    /// A cgroup/sysctl program on the cgroup v2 root.
    CgroupSysctl,
}

impl Attach {
    /// The kind, as the README names it.
    pub fn kind(self) -> &'static str {
        match self {
            Attach::TpBtf(_) => "tp_btf",
            Attach::Tracepoint { .. } => "tracepoint",
            Attach::Fentry(_) => "fentry",
            Attach::Kprobe(_) => "kprobe",
            Attach::CgroupSysctl => "cgroup_sysctl",
        }
    }

    /// The kernel functions it may land on, for function attaches.
    pub fn functions(self) -> Option<&'static [&'static str]> {
        match self {
            Attach::Fentry(f) | Attach::Kprobe(f) => Some(f),
            _ => None,
        }
    }
}

/// What part of a crash a hook sees; the README groups hooks by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Signals,
    Dump,
    Collector,
    Process,
    Cgroups,
    Config,
    Stack,
}

impl Family {
    pub const ALL: [Family; 7] =
        [Family::Signals, Family::Dump, Family::Collector, Family::Process, Family::Cgroups, Family::Config, Family::Stack];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Signals => "signals",
            Family::Dump => "dump",
            Family::Collector => "collector",
            Family::Process => "process",
            Family::Cgroups => "cgroups",
            Family::Config => "config",
            Family::Stack => "stack",
        }
    }

    /// What the family's programs do with what they see (README text).
    pub fn notes(self) -> &'static str {
        match self {
            Family::Signals => "filtered in the kernel: core signals, default-fatal signals to tasks without a handler, SIGCHLD with CLD_KILLED/CLD_DUMPED, SIGPIPE to a dying task, anything to or from a watched pid",
            Family::Dump => "inferred = `signal_deliver` with SIG_DFL for a core signal, then the helper's exec, then the exit status. The mode in use is printed at start and recorded in the header record",
            Family::Collector => "the exec of a task whose parent is kthreadd with RLIMIT_CORE 1 marks the core_pattern helper; argv `%P` ties the helper to the crash, else timing; its connect() result and exit follow it",
            Family::Process => "only for crashers, helpers and watched pids",
            Family::Cgroups => "v1 and v2; `--cgroup PATH` filters by path prefix before any ring-buffer space is taken",
            Family::Config => "writes to `kernel/core_*` and `fs/suid_dumpable`: writer, old and new value; it never denies a write",
            Family::Stack => "`bpf_get_stack` (user frames, and their build-ids; kernel frames only with `--kernel-stack`) and `bpf_task_pt_regs` at `signal_deliver`, only for fatal signals taking the default action, and for the watched pid",
        }
    }
}

/// The rungs of the dump-entry ladder, in the order they are tried.
/// `--coredump-hook` picks one; `auto` climbs down from the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rung {
    Fentry,
    Kprobe,
    Tracepoint,
    /// No hook: dump starts are inferred from signal_deliver, the helper's
    /// exec and the exit status.
    Inferred,
}

impl Rung {
    /// The first half of the header's `dump_mode_reason` when this rung
    /// attached.
    pub fn reason(self) -> &'static str {
        match self {
            Rung::Fentry => "fentry attached to the kernel's dump entry",
            Rung::Kprobe => "kprobe attached to the kernel's dump entry",
            Rung::Tracepoint => "the kernel's coredump tracepoint",
            Rung::Inferred => "no direct hook on the dump entry",
        }
    }
}

/// The end of `dump_mode_reason` when no rung attached.
pub const INFERRED_HOW: &str =
    "dumps are inferred from signal_deliver (SIG_DFL + core signal), the helper's exec and the exit status";

/// A classic-tracepoint field whose offset the program reads, from the
/// event's tracefs `format` file, stored into the programs' globals.
#[derive(Clone, Copy)]
pub struct TracefsField {
    pub system: &'static str,
    pub event: &'static str,
    pub field: &'static str,
    pub store: fn(&mut KernelOffsets, u32),
}

/// Tracefs fields some hooks cannot run without; read once before loading.
pub struct TracefsNeed {
    pub fields: &'static [TracefsField],
    pub when_missing: WhenMissing,
}

impl TracefsNeed {
    /// The tracefs events (system, event) the fields come from, each once.
    pub fn events(&self) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for f in self.fields {
            if !out.contains(&(f.system, f.event)) {
                out.push((f.system, f.event));
            }
        }
        out
    }
}

impl TracefsNeed {
    /// The tracefs systems (directories under `events/`), each once.
    pub fn systems(&self) -> Vec<&'static str> {
        let mut out: Vec<&str> = Vec::new();
        for f in self.fields {
            if !out.contains(&f.system) {
                out.push(f.system);
            }
        }
        out
    }

    /// The kernel option the events come with, where the table names one.
    pub fn config(&self) -> Option<&'static str> {
        match self.when_missing {
            WhenMissing::Record { config, .. } => Some(config),
            WhenMissing::Fail { .. } => None,
        }
    }
}

/// What the header says when a [`TracefsNeed`] is not met.
pub enum WhenMissing {
    /// One `unavailable` record for every hook that needs the fields, at
    /// the head of the list; the hooks are then not tried.
    Record { name: &'static str, config: &'static str },
    /// Each hook is reported unavailable, as "no {what} in this kernel".
    Fail { what: &'static str },
}

/// The connect() pair: the enter side remembers the address, the exit side
/// reports it with the result, so one is useless without the other.
pub static CONNECT_FIELDS: TracefsNeed = TracefsNeed {
    fields: &[
        TracefsField {
            system: "syscalls",
            event: "sys_enter_connect",
            field: "uservaddr",
            store: |o, v| o.connect_enter_uservaddr = v,
        },
        TracefsField { system: "syscalls", event: "sys_exit_connect", field: "ret", store: |o, v| o.connect_exit_ret = v },
    ],
    when_missing: WhenMissing::Record {
        name: "tracepoint/syscalls/sys_{enter,exit}_connect",
        config: "CONFIG_FTRACE_SYSCALLS",
    },
};

/// The coredump tracepoint proposed upstream, first in 7.3.
pub static COREDUMP_FIELDS: TracefsNeed = TracefsNeed {
    fields: &[TracefsField { system: "coredump", event: "coredump", field: "sig", store: |o, v| o.coredump_tp_sig = v }],
    when_missing: WhenMissing::Fail { what: "coredump tracepoint" },
};

/// One hook: a program of the eBPF object and where it goes.
pub struct HookSpec {
    /// The program's name in the eBPF object (its function in tracer-ebpf).
    pub program: &'static str,
    pub attach: Attach,
    /// Told apart in the hook's name where two programs share an attach point.
    pub role: Option<&'static str>,
    pub family: Family,
    /// Its rung on the dump-entry ladder; such hooks are tried by the ladder.
    pub rung: Option<Rung>,
    /// crashtrace does not start without it.
    pub required: bool,
    /// The oldest kernel it works on.
    pub since: Kernel,
    /// What is lost when it is unavailable (also the header's detail text).
    pub without: &'static str,
    /// Tracefs fields read before loading.
    pub needs: Option<&'static TracefsNeed>,
    /// A program it must be attached after: programs on one attach point run
    /// in attach order, and this one's events must follow that one's.
    pub after: Option<&'static str>,
}

impl HookSpec {
    /// The name in the header, e.g. `tp_btf/signal_generate`; a function
    /// attach names the function it landed on (`dump_entry`).
    pub fn name(&self, dump_entry: &str) -> String {
        let base = match self.attach {
            Attach::TpBtf(tp) => format!("tp_btf/{tp}"),
            Attach::Tracepoint { category, name } => format!("tracepoint/{category}/{name}"),
            Attach::Fentry(_) => format!("fentry/{dump_entry}"),
            Attach::Kprobe(_) => format!("kprobe/{dump_entry}"),
            Attach::CgroupSysctl => "cgroup_sysctl".to_string(),
        };
        match self.role {
            Some(role) => format!("{base} ({role})"),
            None => base,
        }
    }

    /// The name for documentation: every function it may land on.
    pub fn doc_name(&self) -> String {
        match self.attach.functions() {
            Some(fs) => fs.iter().map(|f| format!("`{}`", self.name(f))).collect::<Vec<_>>().join(" or "),
            None => format!("`{}`", self.name("")),
        }
    }

    /// What a required hook's attach failure should tell the user to check.
    pub fn required_hint(&self) -> &'static str {
        match self.attach {
            Attach::TpBtf(_) => "this tracepoint is required; check that the kernel has BTF and tracepoint support (CONFIG_DEBUG_INFO_BTF, CONFIG_TRACEPOINTS)",
            Attach::Tracepoint { .. } => "this tracepoint is required; check that tracefs is mounted and the kernel has CONFIG_TRACEPOINTS",
            Attach::Fentry(_) => "this hook is required; check that the kernel has BTF and allows fentry (CONFIG_DEBUG_INFO_BTF, CONFIG_FUNCTION_TRACER)",
            Attach::Kprobe(_) => "this hook is required; check that the kernel has CONFIG_KPROBES",
            Attach::CgroupSysctl => "this hook is required; check that cgroup v2 is mounted",
        }
    }

    /// What it needs besides the program loading, for the README.
    pub fn needs_text(&self) -> String {
        let mut needs: Vec<String> = Vec::new();
        match self.attach {
            Attach::TpBtf(_) => needs.push("kernel BTF".into()),
            // Its tracefs fields, below, say it.
            Attach::Tracepoint { .. } if self.needs.is_some() => {}
            Attach::Tracepoint { .. } => needs.push("tracefs".into()),
            Attach::Fentry(fs) => needs.push(format!("BTF function {}", fs.join(" or "))),
            Attach::Kprobe(fs) => needs.push(format!("BTF function {}, kprobe PMU", fs.join(" or "))),
            Attach::CgroupSysctl => needs.push("cgroup v2 mounted".into()),
        }
        if let Some(need) = self.needs {
            let fields: Vec<String> = need.fields.iter().map(|f| format!("{}:{}", f.event, f.field)).collect();
            needs.push(format!("tracefs fields {}", fields.join(", ")));
        }
        if let Some(after) = self.after {
            needs.push(format!("attached after `{after}`"));
        }
        needs.join("; ")
    }
}

const CGROUPS_LOST: &str = "crashes will show no cgroup events";
const CONNECT_LOST: &str = "collector connect() results will not be seen";
const DUMP_RUNG_LOST: &str = "the next rung of the dump-entry ladder is tried";

/// Every hook, in attach order. Order matters: programs on one attach point
/// run in attach order (`after`), and the dump rungs are tried top down.
pub static HOOKS: &[HookSpec] = &[
    HookSpec {
        program: "signal_generate",
        attach: Attach::TpBtf("signal_generate"),
        role: None,
        family: Family::Signals,
        rung: None,
        required: true,
        since: OLDEST_SUPPORTED,
        without: "crashtrace cannot start: it sees no signals",
        needs: None,
        after: None,
    },
    HookSpec {
        program: "signal_deliver",
        attach: Attach::TpBtf("signal_deliver"),
        role: None,
        family: Family::Signals,
        rung: None,
        required: true,
        since: OLDEST_SUPPORTED,
        without: "crashtrace cannot start: it does not see fatal signals taken",
        needs: None,
        after: None,
    },
    HookSpec {
        program: "helper_exec",
        attach: Attach::TpBtf("sched_process_exec"),
        role: None,
        family: Family::Collector,
        rung: None,
        required: true,
        since: OLDEST_SUPPORTED,
        without: "crashtrace cannot start: it does not see the core_pattern helper start",
        needs: None,
        after: None,
    },
    HookSpec {
        program: "process_exit",
        attach: Attach::TpBtf("sched_process_exit"),
        role: None,
        family: Family::Process,
        rung: None,
        required: true,
        since: OLDEST_SUPPORTED,
        without: "crashtrace cannot start: it does not see crashers and helpers exit",
        needs: None,
        after: None,
    },
    HookSpec {
        program: "process_fork",
        attach: Attach::TpBtf("sched_process_fork"),
        role: None,
        family: Family::Process,
        rung: None,
        required: true,
        since: OLDEST_SUPPORTED,
        without: "crashtrace cannot start: it does not see a watched pid's children",
        needs: None,
        after: None,
    },
    HookSpec {
        program: "stack_capture",
        attach: Attach::TpBtf("signal_deliver"),
        role: Some("stack capture"),
        family: Family::Stack,
        rung: None,
        required: false,
        since: Kernel(5, 15),
        without: "crashes will carry no stack (bpf_get_current_task_btf needs 5.11, bpf_task_pt_regs 5.15)",
        needs: None,
        // Its stack event must follow signal_deliver's event for the same signal.
        after: Some("signal_deliver"),
    },
    HookSpec {
        program: "helper_connect_enter",
        attach: Attach::Tracepoint { category: "syscalls", name: "sys_enter_connect" },
        role: None,
        family: Family::Collector,
        rung: None,
        required: false,
        since: OLDEST_SUPPORTED,
        without: CONNECT_LOST,
        needs: Some(&CONNECT_FIELDS),
        after: None,
    },
    HookSpec {
        program: "helper_connect_exit",
        attach: Attach::Tracepoint { category: "syscalls", name: "sys_exit_connect" },
        role: None,
        family: Family::Collector,
        rung: None,
        required: false,
        since: OLDEST_SUPPORTED,
        without: CONNECT_LOST,
        needs: Some(&CONNECT_FIELDS),
        after: None,
    },
    HookSpec {
        program: "cgroup_mkdir",
        attach: Attach::TpBtf("cgroup_mkdir"),
        role: None,
        family: Family::Cgroups,
        rung: None,
        required: false,
        since: OLDEST_SUPPORTED,
        without: CGROUPS_LOST,
        needs: None,
        after: None,
    },
    HookSpec {
        program: "cgroup_rmdir",
        attach: Attach::TpBtf("cgroup_rmdir"),
        role: None,
        family: Family::Cgroups,
        rung: None,
        required: false,
        since: OLDEST_SUPPORTED,
        without: CGROUPS_LOST,
        needs: None,
        after: None,
    },
    HookSpec {
        program: "cgroup_release",
        attach: Attach::TpBtf("cgroup_release"),
        role: None,
        family: Family::Cgroups,
        rung: None,
        required: false,
        since: OLDEST_SUPPORTED,
        without: CGROUPS_LOST,
        needs: None,
        after: None,
    },
    HookSpec {
        program: "cgroup_populated",
        attach: Attach::TpBtf("cgroup_notify_populated"),
        role: None,
        family: Family::Cgroups,
        rung: None,
        required: false,
        since: OLDEST_SUPPORTED,
        without: CGROUPS_LOST,
        needs: None,
        after: None,
    },
    HookSpec {
        program: "sysctl_write",
        attach: Attach::CgroupSysctl,
        role: None,
        family: Family::Config,
        rung: None,
        required: false,
        // 5.10's verifier refuses bpf_get_current_pid_tgid in cgroup/sysctl programs.
        since: Kernel(6, 1),
        without: "writes to core_pattern will not be attributed to their writer (cgroup/sysctl programs may call bpf_get_current_pid_tgid only on newer kernels)",
        needs: None,
        after: None,
    },
    HookSpec {
        program: "coredump_fentry",
        attach: Attach::Fentry(DUMP_ENTRY),
        role: None,
        family: Family::Dump,
        rung: Some(Rung::Fentry),
        required: false,
        since: OLDEST_SUPPORTED,
        without: DUMP_RUNG_LOST,
        needs: None,
        after: None,
    },
    HookSpec {
        program: "coredump_kprobe",
        attach: Attach::Kprobe(DUMP_ENTRY),
        role: None,
        family: Family::Dump,
        rung: Some(Rung::Kprobe),
        required: false,
        since: OLDEST_SUPPORTED,
        without: DUMP_RUNG_LOST,
        needs: None,
        after: None,
    },
    HookSpec {
        program: "coredump_tracepoint",
        attach: Attach::Tracepoint { category: "coredump", name: "coredump" },
        role: None,
        family: Family::Dump,
        rung: Some(Rung::Tracepoint),
        required: false,
        since: Kernel(7, 3),
        without: "dump starts are inferred from signal_deliver, the helper's exec and the exit status",
        needs: Some(&COREDUMP_FIELDS),
        after: None,
    },
];

/// The hook a program is attached by.
pub fn by_program(program: &str) -> Option<&'static HookSpec> {
    HOOKS.iter().find(|h| h.program == program)
}

/// The dump-entry ladder's hooks, in the order they are tried.
pub fn ladder() -> impl Iterator<Item = &'static HookSpec> {
    HOOKS.iter().filter(|h| h.rung.is_some())
}

/// The hook on a rung.
pub fn rung(rung: Rung) -> Option<&'static HookSpec> {
    HOOKS.iter().find(|h| h.rung == Some(rung))
}

/// The required tp_btf tracepoints: doctor tries the first to tell whether
/// crashtrace can start at all.
pub fn required_tp_btf() -> impl Iterator<Item = &'static str> {
    HOOKS.iter().filter(|h| h.required).filter_map(|h| match h.attach {
        Attach::TpBtf(tp) => Some(tp),
        _ => None,
    })
}

/// "neither vfs_coredump nor do_coredump", for a list of candidates.
pub fn neither(functions: &[&str]) -> String {
    match functions {
        [] => "no function".into(),
        [one] => format!("no {one}"),
        [init @ .., last] => format!("neither {} nor {last}", init.join(" nor ")),
    }
}

/// The README's hook section: the families with their hooks, then every
/// hook with what it needs and what is lost without it.
pub fn markdown_table() -> String {
    let mut s = String::new();
    s.push_str("| family | hooks | notes |\n| --- | --- | --- |\n");
    for family in Family::ALL {
        let hooks: Vec<&HookSpec> = HOOKS.iter().filter(|h| h.family == family).collect();
        if hooks.is_empty() {
            continue;
        }
        let list = if family == Family::Dump {
            let mut rungs: Vec<String> = hooks.iter().map(|h| format!("{} ({}+)", h.doc_name(), h.since)).collect();
            rungs.push("inferred".into());
            rungs.join(", else ")
        } else {
            hooks.iter().map(|h| h.doc_name()).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(s, "| {} | {list} | {} |", family.as_str(), family.notes());
    }
    s.push_str("\nEvery hook, in attach order (`crashtrace` prints the same names at start, and the header record lists them with their state):\n\n");
    s.push_str("| hook | program | required | oldest kernel | needs | without it |\n| --- | --- | --- | --- | --- | --- |\n");
    for h in HOOKS {
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} | {} | {} |",
            h.doc_name(),
            h.program,
            if h.required { "yes" } else { "no" },
            h.since,
            h.needs_text(),
            h.without
        );
    }
    s
}

/// The markers around the generated region of README.md.
pub const README_BEGIN: &str = "<!-- hooks:begin -->";
pub const README_END: &str = "<!-- hooks:end -->";

/// README.md with its hook region replaced by [`markdown_table`]; `None`
/// when the markers are missing or out of order.
pub fn with_readme_region(readme: &str) -> Option<String> {
    let start = readme.find(README_BEGIN)?;
    let end = readme.find(README_END)?;
    if end < start {
        return None;
    }
    Some(format!(
        "{}{README_BEGIN}\n<!-- generated from tracer/src/hooks.rs by `cargo xtask readme`; edits here are overwritten -->\n\n{}\n{}",
        &readme[..start],
        markdown_table(),
        &readme[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_unique_and_after_comes_first() {
        for (i, h) in HOOKS.iter().enumerate() {
            assert_eq!(HOOKS.iter().filter(|o| o.program == h.program).count(), 1, "{} twice", h.program);
            if let Some(after) = h.after {
                let pos = HOOKS.iter().position(|o| o.program == after);
                assert!(pos.is_some_and(|p| p < i), "{} must come after {after} in HOOKS", h.program);
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let names: Vec<String> = HOOKS.iter().map(|h| h.name("vfs_coredump")).collect();
        for n in &names {
            assert_eq!(names.iter().filter(|m| *m == n).count(), 1, "{n} twice");
        }
        assert_eq!(by_program("stack_capture").unwrap().name(""), "tp_btf/signal_deliver (stack capture)");
        assert_eq!(rung(Rung::Kprobe).unwrap().name("do_coredump"), "kprobe/do_coredump");
    }

    #[test]
    fn ladder_is_in_rung_order_and_last() {
        let rungs: Vec<Rung> = ladder().filter_map(|h| h.rung).collect();
        assert_eq!(rungs, vec![Rung::Fentry, Rung::Kprobe, Rung::Tracepoint]);
        // The dump rungs are attached last, after everything the verdicts need.
        let first = HOOKS.iter().position(|h| h.rung.is_some()).unwrap();
        assert!(HOOKS[first..].iter().all(|h| h.rung.is_some() && h.family == Family::Dump));
        assert!(ladder().all(|h| !h.required), "a rung cannot be required: the ladder falls through");
    }

    #[test]
    fn required_hooks_are_old_enough() {
        for h in HOOKS.iter().filter(|h| h.required) {
            assert!(h.since <= OLDEST_SUPPORTED, "{} is required but needs {}", h.program, h.since);
            assert!(h.needs.is_none(), "{}: a required hook with tracefs needs would stop crashtrace on a kernel without tracefs", h.program);
        }
        assert_eq!(required_tp_btf().next(), Some("signal_generate"));
    }

    #[test]
    fn tracefs_needs() {
        assert_eq!(CONNECT_FIELDS.events(), vec![("syscalls", "sys_enter_connect"), ("syscalls", "sys_exit_connect")]);
        assert_eq!(CONNECT_FIELDS.systems(), vec!["syscalls"]);
        assert_eq!((CONNECT_FIELDS.config(), COREDUMP_FIELDS.config()), (Some("CONFIG_FTRACE_SYSCALLS"), None));
        let mut o = KernelOffsets::default();
        for f in CONNECT_FIELDS.fields.iter().chain(COREDUMP_FIELDS.fields) {
            (f.store)(&mut o, 8);
        }
        assert_eq!((o.connect_enter_uservaddr, o.connect_exit_ret, o.coredump_tp_sig), (8, 8, 8));
        // Every hook on a classic tracepoint has its field offsets read first.
        for h in HOOKS.iter().filter(|h| matches!(h.attach, Attach::Tracepoint { .. })) {
            assert!(h.needs.is_some(), "{} reads fields at offsets nobody looks up", h.program);
        }
    }

    #[test]
    fn neither_names_every_candidate() {
        assert_eq!(neither(DUMP_ENTRY), "neither vfs_coredump nor do_coredump");
        assert_eq!(neither(&["a"]), "no a");
    }

    #[test]
    fn table_lists_every_hook_once() {
        let t = markdown_table();
        for h in HOOKS {
            assert_eq!(t.matches(&format!("| `{}` |", h.program)).count(), 1, "{}", h.program);
        }
        assert!(t.contains("| dump | `fentry/vfs_coredump` or `fentry/do_coredump` (5.10+), else"), "{t}");
    }

    #[test]
    fn readme_region_is_replaced_between_markers() {
        let doc = format!("a\n{README_BEGIN}\nstale text\n{README_END}\nb\n");
        let new = with_readme_region(&doc).unwrap();
        assert!(new.starts_with(&format!("a\n{README_BEGIN}\n")) && new.ends_with(&format!("{README_END}\nb\n")));
        assert!(!new.contains("stale text") && new.contains(&markdown_table()));
        assert_eq!(with_readme_region(&new).as_deref(), Some(new.as_str()), "rendering twice changes nothing");
        assert_eq!(with_readme_region("no markers"), None);
        assert_eq!(with_readme_region(&format!("{README_END}{README_BEGIN}")), None);
    }

    /// README.md's hook region is what the table renders; set
    /// CRASHTRACE_UPDATE_README=1 (or run `cargo xtask readme`) to rewrite it.
    #[test]
    fn readme_hook_section_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let want = with_readme_region(&readme)
            .unwrap_or_else(|| panic!("{} has no {README_BEGIN} ... {README_END} region", path.display()));
        if readme == want {
            return;
        }
        if std::env::var_os("CRASHTRACE_UPDATE_README").is_some() {
            std::fs::write(&path, &want).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            return;
        }
        panic!("README.md's hook section is stale: run `cargo xtask readme` to regenerate it from tracer/src/hooks.rs");
    }
}

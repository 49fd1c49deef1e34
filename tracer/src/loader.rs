//! Loading and attaching the eBPF programs: privilege checks, kernel layout,
//! tracefs, and the core-dump hook ladder (fentry -> kprobe -> inference).
//! Every failure names the hook, the reason, and what the user can do.

use std::path::{Path, PathBuf};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, FEntry, KProbe, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use tracer_common::{
    config::{Settings, SETTING_NAIVE_ALL_SIGNALS},
    maps, EventKind,
};

use crate::{cli::CoredumpHook, layout, record::Hook};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "root, or CAP_BPF and CAP_PERFMON, is needed to load eBPF programs; try: sudo crashtrace"
    )]
    NotPrivileged,
    #[error("{0}")]
    Layout(#[from] layout::LayoutError),
    #[error("cannot parse kernel BTF for the loader: {0}; the kernel needs CONFIG_DEBUG_INFO_BTF=y")]
    AyaBtf(#[source] aya::BtfError),
    #[error("this crashtrace binary was built without its eBPF object; build it with `cargo xtask build`, or pass --bpf-object PATH")]
    NoObject,
    #[error("cannot read the eBPF object {path}: {source}")]
    ReadObject { path: PathBuf, source: std::io::Error },
    #[error("loading the eBPF object failed: {0}; check `dmesg` and that the kernel allows BPF (kernel.unprivileged_bpf_disabled, lockdown)")]
    Load(#[source] aya::EbpfError),
    #[error("hook {hook}: {what} failed: {detail}; {hint}")]
    Hook { hook: String, what: &'static str, detail: String, hint: String },
    #[error("map {0} is missing from the eBPF object; rebuild it with `cargo xtask build`")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
}

pub struct LoadOptions<'a> {
    pub object: &'a [u8],
    pub coredump_hook: CoredumpHook,
    pub ring_buffer_size: u32,
    pub naive_all_signals: bool,
    /// `--stack-copy`: bytes of user stack to copy at a fatal signal.
    pub stack_copy: u32,
    pub watched: Option<u32>,
    /// `--cgroup PATH`: only cgroup events under this path.
    pub cgroup_prefix: Option<String>,
}

/// What is attached, and how the core dump is seen.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
    pub hooks: Vec<Hook>,
    pub dump_mode: String,
    pub dump_mode_reason: String,
}

/// Effective capabilities from /proc/self/status.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn check_privileges() -> Result<(), LoadError> {
    const CAP_SYS_ADMIN: u64 = 21;
    const CAP_PERFMON: u64 = 38;
    const CAP_BPF: u64 = 39;
    let caps = effective_caps();
    let has = |c: u64| caps & (1 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(LoadError::NotPrivileged)
    }
}

/// Finds tracefs, mounting it at /sys/kernel/tracing if it is not mounted.
/// Returns why not, when it cannot be had.
pub fn ensure_tracefs() -> Result<PathBuf, String> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: plain mount(2) with static NUL-terminated strings.
    let rc = unsafe { libc::mount(c"nodev".as_ptr(), target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null()) };
    if rc == 0 && Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok(PathBuf::from("/sys/kernel/tracing"));
    }
    Err(format!(
        "tracefs is not mounted and mounting it failed ({}); mount it with `mount -t tracefs nodev /sys/kernel/tracing`",
        std::io::Error::last_os_error()
    ))
}

fn hook(name: &str, state: &str, detail: Option<String>) -> Hook {
    Hook { name: name.into(), state: state.into(), detail }
}

fn btf_tracepoint(ebpf: &mut Ebpf, btf: &Btf, program: &str, tracepoint: &str) -> Result<(), LoadError> {
    btf_tracepoint_with(ebpf, btf, program, tracepoint, "this tracepoint is required; check that the kernel has BTF and tracepoint support (CONFIG_DEBUG_INFO_BTF, CONFIG_TRACEPOINTS)")
}

/// An optional tp_btf program: the caller says what is lost without it.
fn optional_btf_tracepoint(ebpf: &mut Ebpf, btf: &Btf, program: &str, tracepoint: &str) -> Result<(), String> {
    btf_tracepoint_with(ebpf, btf, program, tracepoint, "").map_err(|e| match e {
        LoadError::Hook { what, detail, .. } => format!("{what} failed: {detail}"),
        other => other.to_string(),
    })
}

fn btf_tracepoint_with(ebpf: &mut Ebpf, btf: &Btf, program: &str, tracepoint: &str, hint: &str) -> Result<(), LoadError> {
    let fail = |what: &'static str, detail: String| LoadError::Hook {
        hook: format!("tp_btf/{tracepoint}"),
        what,
        detail,
        hint: hint.to_string(),
    };
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| fail("lookup", format!("program {program} is missing from the object")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| fail("lookup", e.to_string()))?;
    prog.load(tracepoint, btf).map_err(|e| fail("load", error_chain(&e)))?;
    prog.attach().map_err(|e| fail("attach", error_chain(&e)))?;
    Ok(())
}

fn classic_tracepoint(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<(), String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} is missing from the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| error_chain(&e))?;
    prog.attach(category, name).map_err(|e| error_chain(&e))?;
    Ok(())
}

/// Error text with its sources, so the kernel's errno is not hidden. A
/// verifier log is cut to its first and last lines: the full log can be
/// thousands of lines, and its end says why the program was rejected.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        // Messages that already quote their source (`{source}`) say it once.
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    let lines: Vec<&str> = s.lines().collect();
    if lines.len() > 8 {
        // The verifier ends with statistics ("verification time", "processed
        // N insns"); the line that says why it refused comes just before.
        let stats = lines
            .iter()
            .position(|l| l.starts_with("verification time") || l.starts_with("processed "))
            .unwrap_or(lines.len());
        let from = stats.saturating_sub(2).max(1);
        let to = (stats + 2).min(lines.len());
        s = format!("{} | … | {}", lines[0], lines[from..to].join(" | "));
    }
    s
}

pub fn load(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    check_privileges()?;
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };

    // Everything wanted from btf-rs's view of the BTF is taken here, and the
    // view dropped before aya parses the same BTF: the two parsed copies are
    // never alive at once, which keeps the start-up memory peak down.
    let (mut offsets, dump_function) = {
        let kbtf = layout::KernelBtf::open(Path::new(layout::VMLINUX_BTF))?;
        // Linux 6.17 renamed do_coredump to vfs_coredump, same signature.
        let dump_function = ["vfs_coredump", "do_coredump"].into_iter().find(|f| kbtf.has_function(f));
        (kbtf.kernel_offsets()?, dump_function)
    };
    let mut hooks = Vec::new();

    let tracefs = ensure_tracefs();
    // The coredump tracepoint (7.3+) is the third rung of the dump-hook ladder.
    let coredump_tracepoint = match &tracefs {
        Ok(dir) => layout::tracepoint_field_offset(dir, "coredump", "coredump", "sig")
            .map(|off| offsets.coredump_tp_sig = off)
            .map_err(|e| format!("no coredump tracepoint in this kernel ({e})")),
        Err(why) => Err(why.clone()),
    };
    let mut connect_ok = false;
    match &tracefs {
        Ok(dir) => {
            let enter = layout::tracepoint_field_offset(dir, "syscalls", "sys_enter_connect", "uservaddr");
            let exit = layout::tracepoint_field_offset(dir, "syscalls", "sys_exit_connect", "ret");
            match (enter, exit) {
                (Ok(a), Ok(r)) => {
                    offsets.connect_enter_uservaddr = a;
                    offsets.connect_exit_ret = r;
                    connect_ok = true;
                }
                (Err(e), _) | (_, Err(e)) => hooks.push(hook(
                    "tracepoint/syscalls/sys_{enter,exit}_connect",
                    "unavailable",
                    Some(format!("{e}; collector connect() results will not be seen (needs CONFIG_FTRACE_SYSCALLS)")),
                )),
            }
        }
        Err(why) => hooks.push(hook(
            "tracepoint/syscalls/sys_{enter,exit}_connect",
            "unavailable",
            Some(format!("{why}; collector connect() results will not be seen")),
        )),
    }

    let mut settings = Settings::zeroed();
    if opts.naive_all_signals {
        settings.flags |= SETTING_NAIVE_ALL_SIGNALS;
    }
    if opts.watched.is_some() {
        settings.flags |= tracer_common::config::SETTING_WATCHING;
    }
    settings.stack_copy_bytes = opts.stack_copy;
    if let Some(prefix) = &opts.cgroup_prefix {
        let bytes = prefix.as_bytes();
        if bytes.len() > settings.cgroup_prefix.len() {
            return Err(LoadError::Hook {
                hook: "cgroup filter".into(),
                what: "setup",
                detail: format!("--cgroup path is {} bytes long", bytes.len()),
                hint: format!("give a path of at most {} bytes", settings.cgroup_prefix.len()),
            });
        }
        settings.cgroup_prefix[..bytes.len()].copy_from_slice(bytes);
        settings.cgroup_prefix_len = bytes.len() as u32;
    }
    let btf = Btf::from_sys_fs().map_err(LoadError::AyaBtf)?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .override_global(maps::OFFSETS, &offsets, true)
        .override_global(maps::SETTINGS, &settings, true)
        .map_max_entries(maps::EVENTS, opts.ring_buffer_size)
        .load(opts.object)
        .map_err(LoadError::Load)?;

    for (program, tp) in [
        ("signal_generate", "signal_generate"),
        ("signal_deliver", "signal_deliver"),
        ("helper_exec", "sched_process_exec"),
        ("process_exit", "sched_process_exit"),
        ("process_fork", "sched_process_fork"),
    ] {
        btf_tracepoint(&mut ebpf, &btf, program, tp)?;
        hooks.push(hook(&format!("tp_btf/{tp}"), "attached", None));
    }
    // Attached after signal_deliver, so the stack follows its SignalDeliver
    // event. Optional: it needs helpers from 5.11 and 5.15.
    match optional_btf_tracepoint(&mut ebpf, &btf, "stack_capture", "signal_deliver") {
        Ok(()) => hooks.push(hook("tp_btf/signal_deliver (stack capture)", "attached", None)),
        Err(e) => hooks.push(hook(
            "tp_btf/signal_deliver (stack capture)",
            "unavailable",
            Some(format!("{e}; crashes will carry no stack (bpf_get_current_task_btf needs 5.11, bpf_task_pt_regs 5.15)")),
        )),
    }

    if connect_ok {
        for (program, name) in [("helper_connect_enter", "sys_enter_connect"), ("helper_connect_exit", "sys_exit_connect")] {
            match classic_tracepoint(&mut ebpf, program, "syscalls", name) {
                Ok(()) => hooks.push(hook(&format!("tracepoint/syscalls/{name}"), "attached", None)),
                Err(e) => hooks.push(hook(
                    &format!("tracepoint/syscalls/{name}"),
                    "unavailable",
                    Some(format!("{e}; collector connect() results will not be seen")),
                )),
            }
        }
    }

    // cgroup events give crashes their context; without them chains still work.
    for (program, tp) in [
        ("cgroup_mkdir", "cgroup_mkdir"),
        ("cgroup_rmdir", "cgroup_rmdir"),
        ("cgroup_release", "cgroup_release"),
        ("cgroup_populated", "cgroup_notify_populated"),
    ] {
        match optional_btf_tracepoint(&mut ebpf, &btf, program, tp) {
            Ok(()) => hooks.push(hook(&format!("tp_btf/{tp}"), "attached", None)),
            Err(e) => hooks.push(hook(&format!("tp_btf/{tp}"), "unavailable", Some(format!("{e}; crashes will show no cgroup events")))),
        }
    }
    match attach_sysctl(&mut ebpf) {
        Ok(root) => hooks.push(hook("cgroup_sysctl", "attached", Some(format!("on {}", root.display())))),
        Err(e) => hooks.push(hook(
            "cgroup_sysctl",
            "unavailable",
            Some(format!(
                "{e}; writes to core_pattern will not be attributed to their writer (cgroup/sysctl programs may call bpf_get_current_pid_tgid only on newer kernels)"
            )),
        )),
    }

    let (dump_mode, dump_mode_reason) = attach_dump_hook(&mut ebpf, &btf, dump_function, coredump_tracepoint, opts.coredump_hook, &mut hooks);

    if let Some(pid) = opts.watched {
        let map = ebpf.map_mut(maps::WATCHED).ok_or(LoadError::MissingMap(maps::WATCHED))?;
        let mut watched: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(|source| LoadError::Map { name: maps::WATCHED, source })?;
        watched.insert(pid, 1, 0).map_err(|source| LoadError::Map { name: maps::WATCHED, source })?;
    }

    let events = ebpf.take_map(maps::EVENTS).ok_or(LoadError::MissingMap(maps::EVENTS))?;
    let events = RingBuf::try_from(events).map_err(|source| LoadError::Map { name: maps::EVENTS, source })?;
    let lost = ebpf.take_map(maps::LOST).ok_or(LoadError::MissingMap(maps::LOST))?;
    let lost = PerCpuArray::try_from(lost).map_err(|source| LoadError::Map { name: maps::LOST, source })?;
    Ok(Loaded { ebpf, events, lost, hooks, dump_mode, dump_mode_reason })
}

/// The cgroup v2 mount, from /proc/self/mounts.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// Attaches the sysctl-write watcher to the cgroup v2 root, which every task
/// on the host is under. It attaches as a bpf link, and links always coexist
/// with other programs on the same hook, so nobody else's is displaced.
fn attach_sysctl(ebpf: &mut Ebpf) -> Result<PathBuf, String> {
    let root = cgroup2_mount().ok_or("no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)")?;
    let dir = std::fs::File::open(&root).map_err(|e| format!("cannot open {}: {e}", root.display()))?;
    let prog: &mut aya::programs::CgroupSysctl = ebpf
        .program_mut("sysctl_write")
        .ok_or("program sysctl_write is missing")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| error_chain(&e))?;
    prog.attach(&dir, aya::programs::CgroupAttachMode::Single).map_err(|e| error_chain(&e))?;
    Ok(root)
}

/// The ladder: fentry, else kprobe, on the kernel's dump entry; else the
/// coredump tracepoint (7.3+); else infer. `--coredump-hook` picks one rung.
fn attach_dump_hook(
    ebpf: &mut Ebpf,
    btf: &Btf,
    function: Option<&'static str>,
    tracepoint: Result<(), String>,
    choice: CoredumpHook,
    hooks: &mut Vec<Hook>,
) -> (String, String) {
    if choice == CoredumpHook::Infer {
        hooks.push(hook("coredump hooks", "disabled", Some("--coredump-hook=infer".into())));
        return ("inferred".into(), "direct hooks switched off with --coredump-hook=infer".into());
    }
    let wants = |rung: CoredumpHook| choice == CoredumpHook::Auto || choice == rung;
    let mut failures = Vec::new();
    let attempt = |name: String, result: Result<(), String>, hooks: &mut Vec<Hook>, failures: &mut Vec<String>| match result {
        Ok(()) => {
            hooks.push(hook(&name, "attached", None));
            true
        }
        Err(e) => {
            hooks.push(hook(&name, "unavailable", Some(e.clone())));
            failures.push(format!("{name}: {e}"));
            false
        }
    };
    let because = |failures: &[String]| if failures.is_empty() { String::new() } else { format!(" ({})", failures.join("; ")) };
    match function {
        None => failures.push("the kernel's BTF has neither vfs_coredump nor do_coredump".into()),
        Some(function) => {
            if wants(CoredumpHook::Fentry) {
                let name = format!("fentry/{function}");
                let result = (|| -> Result<(), String> {
                    let prog: &mut FEntry = ebpf
                        .program_mut("coredump_fentry")
                        .ok_or("program coredump_fentry is missing")?
                        .try_into()
                        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
                    prog.load(function, btf).map_err(|e| error_chain(&e))?;
                    prog.attach().map_err(|e| error_chain(&e))?;
                    Ok(())
                })();
                if attempt(name.clone(), result, hooks, &mut failures) {
                    return (name, "fentry attached to the kernel's dump entry".into());
                }
            }
            if wants(CoredumpHook::Kprobe) {
                let name = format!("kprobe/{function}");
                let result = (|| -> Result<(), String> {
                    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
                        return Err("the kernel has no kprobe PMU (CONFIG_KPROBES off)".into());
                    }
                    let prog: &mut KProbe = ebpf
                        .program_mut("coredump_kprobe")
                        .ok_or("program coredump_kprobe is missing")?
                        .try_into()
                        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
                    prog.load().map_err(|e| error_chain(&e))?;
                    prog.attach(function, 0).map_err(|e| error_chain(&e))?;
                    Ok(())
                })();
                if attempt(name.clone(), result, hooks, &mut failures) {
                    return (name, format!("kprobe attached to the kernel's dump entry{}", because(&failures)));
                }
            }
        }
    }
    if wants(CoredumpHook::Tracepoint) {
        let name = "tracepoint/coredump/coredump".to_string();
        let result = tracepoint.and_then(|()| classic_tracepoint(ebpf, "coredump_tracepoint", "coredump", "coredump"));
        if attempt(name.clone(), result, hooks, &mut failures) {
            return (name, format!("the kernel's coredump tracepoint{}", because(&failures)));
        }
    }
    (
        "inferred".into(),
        format!(
            "no direct hook on the dump entry{}; dumps are inferred from signal_deliver (SIG_DFL + core signal), the helper's exec and the exit status",
            because(&failures)
        ),
    )
}

/// Sums the per-CPU loss counters: (event kind name, total) for every kind.
pub fn read_lost(lost: &PerCpuArray<MapData, u64>) -> Vec<(&'static str, u64)> {
    EventKind::ALL
        .iter()
        .map(|k| {
            let total = lost.get(&(*k as u32), 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
            (k.as_str(), total)
        })
        .collect()
}

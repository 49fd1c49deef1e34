//! Loading and attaching the eBPF programs: privilege checks, kernel layout,
//! tracefs, and a walk over [`hooks::HOOKS`], which holds every hook, in
//! order, with the core-dump ladder (fentry -> kprobe -> tracepoint ->
//! inference) among them.
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

use crate::{
    cli::CoredumpHook,
    hooks::{self, Attach, HookSpec, Rung, TracefsNeed, WhenMissing},
    layout,
    record::{Hook, HookState},
};

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
    /// `--kernel-stack`: walk the kernel stack at a fatal signal too.
    pub kernel_stack: bool,
    /// Take no stack at all (the bench-only baseline binary's
    /// `--no-stack-capture`).
    pub no_stack_capture: bool,
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

/// Why a hook did not attach. `what` names the step for tp_btf programs
/// ("lookup", "load", "attach"), whose failures have always said it.
struct Failure {
    what: Option<&'static str>,
    detail: String,
}

impl Failure {
    fn plain(detail: impl Into<String>) -> Failure {
        Failure { what: None, detail: detail.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.what {
            Some(what) => write!(f, "{what} failed: {}", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

fn missing(program: &str) -> String {
    format!("program {program} is missing from the object")
}

fn btf_tracepoint(ebpf: &mut Ebpf, btf: &Btf, program: &str, tracepoint: &str) -> Result<(), Failure> {
    let fail = |what: &'static str, detail: String| Failure { what: Some(what), detail };
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| fail("lookup", missing(program)))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| fail("lookup", e.to_string()))?;
    prog.load(tracepoint, btf).map_err(|e| fail("load", error_chain(&e)))?;
    prog.attach().map_err(|e| fail("attach", error_chain(&e)))?;
    Ok(())
}

fn classic_tracepoint(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<(), String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| missing(program))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| error_chain(&e))?;
    prog.attach(category, name).map_err(|e| error_chain(&e))?;
    Ok(())
}

fn fentry(ebpf: &mut Ebpf, btf: &Btf, program: &str, function: &str) -> Result<(), String> {
    let prog: &mut FEntry = ebpf
        .program_mut(program)
        .ok_or_else(|| missing(program))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load(function, btf).map_err(|e| error_chain(&e))?;
    prog.attach().map_err(|e| error_chain(&e))?;
    Ok(())
}

fn kprobe(ebpf: &mut Ebpf, program: &str, function: &str) -> Result<(), String> {
    if !Path::new(hooks::KPROBE_PMU).exists() {
        return Err("the kernel has no kprobe PMU (CONFIG_KPROBES off)".into());
    }
    let prog: &mut KProbe = ebpf
        .program_mut(program)
        .ok_or_else(|| missing(program))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| error_chain(&e))?;
    prog.attach(function, 0).map_err(|e| error_chain(&e))?;
    Ok(())
}

/// Attaches one hook of the table. `Ok` carries the detail an attached hook
/// reports (where it went, when that is not in its name).
fn attach(ebpf: &mut Ebpf, btf: &Btf, spec: &HookSpec, dump_entry: Option<&str>) -> Result<Option<String>, Failure> {
    let function = || {
        let functions = spec.attach.functions().unwrap_or_default();
        dump_entry
            .filter(|f| functions.contains(f))
            .ok_or_else(|| Failure::plain(format!("the kernel's BTF has {}", hooks::neither(functions))))
    };
    match spec.attach {
        Attach::TpBtf(tracepoint) => btf_tracepoint(ebpf, btf, spec.program, tracepoint).map(|()| None),
        Attach::Tracepoint { category, name } => {
            classic_tracepoint(ebpf, spec.program, category, name).map(|()| None).map_err(Failure::plain)
        }
        Attach::Fentry(_) => fentry(ebpf, btf, spec.program, function()?).map(|()| None).map_err(Failure::plain),
        Attach::Kprobe(_) => kprobe(ebpf, spec.program, function()?).map(|()| None).map_err(Failure::plain),
        Attach::CgroupSysctl => {
            attach_sysctl(ebpf, spec.program).map(|root| Some(format!("on {}", root.display()))).map_err(Failure::plain)
        }
    }
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
    let (mut offsets, dump_entry) = {
        let kbtf = layout::KernelBtf::open(Path::new(layout::VMLINUX_BTF))?;
        let dump_entry = hooks::DUMP_ENTRY.iter().copied().find(|f| kbtf.has_function(f));
        (kbtf.kernel_offsets()?, dump_entry)
    };
    let mut hooks = Vec::new();
    let tracefs = ensure_tracefs();
    let needs = read_tracefs_needs(&tracefs, &mut offsets, &mut hooks);

    let mut settings = Settings::zeroed();
    if opts.naive_all_signals {
        settings.flags |= SETTING_NAIVE_ALL_SIGNALS;
    }
    if opts.watched.is_some() {
        settings.flags |= tracer_common::config::SETTING_WATCHING;
    }
    settings.stack_copy_bytes = opts.stack_copy;
    if opts.kernel_stack {
        settings.flags |= tracer_common::config::SETTING_KERNEL_STACK;
    }
    if opts.no_stack_capture {
        settings.flags |= tracer_common::config::SETTING_NO_STACK_CAPTURE;
    }
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
    // EbpfLoader::new parses the kernel BTF itself, and the hooks need a
    // parsed copy of their own after loading (EbpfLoader keeps its copy).
    // The loader's copy is dropped before ours is parsed: two parsed
    // copies (~13 MB each) plus the raw file made most of the start-up
    // memory peak. Parsing twice costs time, not memory.
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    let btf = Btf::from_sys_fs().map_err(LoadError::AyaBtf)?;
    let mut ebpf = loader
        .btf(Some(&btf))
        .override_global(maps::OFFSETS, &offsets, true)
        .override_global(maps::SETTINGS, &settings, true)
        .map_max_entries(maps::EVENTS, opts.ring_buffer_size)
        .load(opts.object)
        .map_err(LoadError::Load)?;

    let mut ladder = Ladder::new(opts.coredump_hook, dump_entry);
    for spec in hooks::HOOKS {
        // Why its tracefs fields could not be read, when they could not.
        let unmet = spec
            .needs
            .and_then(|n| needs.iter().find(|(m, _)| std::ptr::eq(*m, n)))
            .and_then(|(_, read)| read.as_ref().err());
        if spec.rung.is_some() {
            ladder.step(&mut ebpf, &btf, spec, unmet, &mut hooks);
            continue;
        }
        if unmet.is_some() && spec.needs.is_some_and(|n| matches!(n.when_missing, WhenMissing::Record { .. })) {
            // Already reported, once for all the hooks that share the need.
            continue;
        }
        let name = spec.name(dump_entry.unwrap_or_default());
        let result = match unmet {
            Some(why) => Err(Failure::plain(why.clone())),
            None => attach(&mut ebpf, &btf, spec, dump_entry),
        };
        match result {
            Ok(detail) => hooks.push(Hook::new(name, HookState::Attached, detail)),
            Err(f) if spec.required => {
                return Err(LoadError::Hook {
                    hook: name,
                    what: f.what.unwrap_or("attach"),
                    detail: f.detail,
                    hint: spec.required_hint().to_string(),
                })
            }
            Err(f) => hooks.push(Hook::new(name, HookState::Unavailable, Some(format!("{f}; {}", spec.without)))),
        }
    }
    let (dump_mode, dump_mode_reason) = ladder.finish();

    if let Some(pid) = opts.watched {
        let map = ebpf.map_mut(maps::WATCHED).ok_or(LoadError::MissingMap(maps::WATCHED))?;
        let mut watched: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(|source| LoadError::Map { name: maps::WATCHED, source })?;
        watched.insert(pid, 1, 0).map_err(|source| LoadError::Map { name: maps::WATCHED, source })?;
    }

    // The parsed BTF goes back to the kernel before the ring buffer is
    // mapped: the ring is resident from its mmap on (its data pages twice),
    // so mapping it while the BTF is still held would add the two peaks.
    drop(loader);
    drop(btf);
    release_freed_memory();
    let events = ebpf.take_map(maps::EVENTS).ok_or(LoadError::MissingMap(maps::EVENTS))?;
    let events = RingBuf::try_from(events).map_err(|source| LoadError::Map { name: maps::EVENTS, source })?;
    let lost = ebpf.take_map(maps::LOST).ok_or(LoadError::MissingMap(maps::LOST))?;
    let lost = PerCpuArray::try_from(lost).map_err(|source| LoadError::Map { name: maps::LOST, source })?;
    Ok(Loaded { ebpf, events, lost, hooks, dump_mode, dump_mode_reason })
}

/// Gives the heap freed after loading (the parsed BTF, the object) back to
/// the kernel, so the tracer's resident size after start is what it uses.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The cgroup v2 mount, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    cgroup2_mount_in(&std::fs::read_to_string("/proc/self/mountinfo").ok()?).map(PathBuf::from)
}

/// Where `mountinfo` has the cgroup2 hierarchy mounted (its root, not a
/// bind of a subtree): /sys/fs/cgroup, or /sys/fs/cgroup/unified on a
/// hybrid host.
pub fn cgroup2_mount_in(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let root = fields.nth(3)?;
        let point = fields.next()?;
        let (_, after) = line.split_once(" - ")?;
        (after.split(' ').next()? == "cgroup2" && root == "/" && !point.contains('\\')).then(|| point.to_string())
    })
}

/// Attaches the sysctl-write watcher to the cgroup v2 root, which every task
/// on the host is under. It attaches as a bpf link, and links always coexist
/// with other programs on the same hook, so nobody else's is displaced.
fn attach_sysctl(ebpf: &mut Ebpf, program: &str) -> Result<PathBuf, String> {
    let root = cgroup2_mount().ok_or("no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)")?;
    let dir = std::fs::File::open(&root).map_err(|e| format!("cannot open {}: {e}", root.display()))?;
    let prog: &mut aya::programs::CgroupSysctl = ebpf
        .program_mut(program)
        .ok_or_else(|| missing(program))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| error_chain(&e))?;
    prog.attach(&dir, aya::programs::CgroupAttachMode::Single).map_err(|e| error_chain(&e))?;
    Ok(root)
}

/// Reads the tracefs fields the table's hooks need, each need once, into
/// `offsets`. A need that is not met and is reported as one record for all
/// its hooks is pushed onto `hooks` now, ahead of every attach; the others
/// fail each hook that needs them.
fn read_tracefs_needs(
    tracefs: &Result<PathBuf, String>,
    offsets: &mut tracer_common::config::KernelOffsets,
    hooks: &mut Vec<Hook>,
) -> Vec<(&'static TracefsNeed, Result<(), String>)> {
    let mut done: Vec<(&'static TracefsNeed, Result<(), String>)> = Vec::new();
    for spec in hooks::HOOKS {
        let Some(need) = spec.needs else { continue };
        if done.iter().any(|(n, _)| std::ptr::eq(*n, need)) {
            continue;
        }
        let read = match tracefs {
            Ok(dir) => need
                .fields
                .iter()
                .map(|f| layout::tracepoint_field_offset(dir, f.system, f.event, f.field).map(|off| (f, off)))
                .collect::<Result<Vec<_>, _>>()
                .map(|found| {
                    for (f, off) in found {
                        (f.store)(offsets, off);
                    }
                })
                .map_err(|e| Some(e.to_string())),
            Err(_) => Err(None),
        };
        let why = tracefs.as_ref().err();
        let result = match (read, &need.when_missing) {
            (Ok(()), _) => Ok(()),
            (Err(field), WhenMissing::Record { name, config }) => {
                let detail = match (field, why) {
                    (Some(e), _) => format!("{e}; {} (needs {config})", spec.without),
                    (None, Some(why)) => format!("{why}; {}", spec.without),
                    (None, None) => spec.without.to_string(),
                };
                hooks.push(Hook::new(*name, HookState::Unavailable, Some(detail.clone())));
                Err(detail)
            }
            (Err(field), WhenMissing::Fail { what }) => Err(match (field, why) {
                (Some(e), _) => format!("no {what} in this kernel ({e})"),
                (None, Some(why)) => why.clone(),
                (None, None) => format!("no {what} in this kernel"),
            }),
        };
        done.push((need, result));
    }
    done
}

/// The dump-entry ladder, climbed down as the table's rungs come: fentry,
/// else kprobe, on the kernel's dump entry; else the coredump tracepoint
/// (7.3+); else inference. `--coredump-hook` picks one rung.
struct Ladder {
    choice: CoredumpHook,
    dump_entry: Option<&'static str>,
    /// The attached rung's (dump_mode, reason).
    attached: Option<(String, String)>,
    /// "name: why" of each rung that was tried and failed.
    failures: Vec<String>,
    no_function_noted: bool,
    disabled_noted: bool,
}

impl Ladder {
    fn new(choice: CoredumpHook, dump_entry: Option<&'static str>) -> Ladder {
        Ladder { choice, dump_entry, attached: None, failures: Vec::new(), no_function_noted: false, disabled_noted: false }
    }

    fn wants(&self, rung: Rung) -> bool {
        match self.choice {
            CoredumpHook::Auto => true,
            CoredumpHook::Fentry => rung == Rung::Fentry,
            CoredumpHook::Kprobe => rung == Rung::Kprobe,
            CoredumpHook::Tracepoint => rung == Rung::Tracepoint,
            CoredumpHook::Infer => false,
        }
    }

    fn because(&self) -> String {
        if self.failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.failures.join("; "))
        }
    }

    /// Tries one rung, unless a higher one attached or it is not wanted.
    /// `need` is why its tracefs fields could not be read.
    fn step(&mut self, ebpf: &mut Ebpf, btf: &Btf, spec: &HookSpec, need: Option<&String>, hooks: &mut Vec<Hook>) {
        let Some(rung) = spec.rung else { return };
        if self.choice == CoredumpHook::Infer {
            if !std::mem::replace(&mut self.disabled_noted, true) {
                hooks.push(Hook::new("coredump hooks", HookState::Disabled, Some("--coredump-hook=infer".into())));
            }
            return;
        }
        if self.attached.is_some() {
            return;
        }
        if let Some(functions) = spec.attach.functions()
            && self.dump_entry.is_none_or(|f| !functions.contains(&f))
        {
            // Said once, whichever rung was asked for: it is why every
            // function rung is out.
            if !std::mem::replace(&mut self.no_function_noted, true) {
                self.failures.push(format!("the kernel's BTF has {}", hooks::neither(functions)));
            }
            return;
        }
        if !self.wants(rung) {
            return;
        }
        let name = spec.name(self.dump_entry.unwrap_or_default());
        let result = match need {
            Some(why) => Err(why.clone()),
            None => attach(ebpf, btf, spec, self.dump_entry).map(|_| ()).map_err(|f| f.to_string()),
        };
        match result {
            Ok(()) => {
                hooks.push(Hook::new(name.clone(), HookState::Attached, None));
                let reason = format!("{}{}", rung.reason(), self.because());
                self.attached = Some((name, reason));
            }
            Err(e) => {
                hooks.push(Hook::new(name.clone(), HookState::Unavailable, Some(e.clone())));
                self.failures.push(format!("{name}: {e}"));
            }
        }
    }

    /// (dump_mode, dump_mode_reason) for the header.
    fn finish(self) -> (String, String) {
        if self.choice == CoredumpHook::Infer {
            return ("inferred".into(), "direct hooks switched off with --coredump-hook=infer".into());
        }
        let because = self.because();
        self.attached.unwrap_or_else(|| {
            ("inferred".into(), format!("{}{because}; {}", Rung::Inferred.reason(), hooks::INFERRED_HOW))
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECT_RECORD: &str = "tracepoint/syscalls/sys_{enter,exit}_connect";

    /// A directory laid out like tracefs, with a format file per (system, event, field, offset).
    fn fake_tracefs(events: &[(&str, &str, &str, u32)]) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("crashtrace-tracefs-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        for (system, event, field, offset) in events {
            let d = dir.join("events").join(system).join(event);
            std::fs::create_dir_all(&d).unwrap();
            let format = format!("name: {event}\nformat:\n\tfield:long {field};\toffset:{offset};\tsize:8;\tsigned:0;\n");
            std::fs::write(d.join("format"), format).unwrap();
        }
        dir
    }

    fn result_of(needs: &[(&'static TracefsNeed, Result<(), String>)], need: &TracefsNeed) -> Result<(), String> {
        needs.iter().find(|(n, _)| std::ptr::eq(*n, need)).map(|(_, r)| r.clone()).expect("every need is read")
    }

    #[test]
    fn tracefs_fields_fill_the_offsets() {
        let dir = fake_tracefs(&[
            ("syscalls", "sys_enter_connect", "uservaddr", 24),
            ("syscalls", "sys_exit_connect", "ret", 16),
            ("coredump", "coredump", "sig", 12),
        ]);
        let (mut offsets, mut hooks) = (Default::default(), Vec::new());
        let needs = read_tracefs_needs(&Ok(dir.clone()), &mut offsets, &mut hooks);
        assert!(hooks.is_empty(), "{hooks:?}");
        assert_eq!(result_of(&needs, &hooks::CONNECT_FIELDS), Ok(()));
        assert_eq!(result_of(&needs, &hooks::COREDUMP_FIELDS), Ok(()));
        let o: tracer_common::config::KernelOffsets = offsets;
        assert_eq!((o.connect_enter_uservaddr, o.connect_exit_ret, o.coredump_tp_sig), (24, 16, 12));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_fields_are_one_record_or_a_failed_rung() {
        // A 6.18 kernel: the connect tracepoints without their exit side, no coredump tracepoint.
        let dir = fake_tracefs(&[("syscalls", "sys_enter_connect", "uservaddr", 24)]);
        let (mut offsets, mut hooks) = (Default::default(), Vec::new());
        let needs = read_tracefs_needs(&Ok(dir.clone()), &mut offsets, &mut hooks);
        let o: tracer_common::config::KernelOffsets = offsets;
        assert_eq!(o.connect_enter_uservaddr, 0, "a half-read pair is not stored");
        assert_eq!(hooks.len(), 1, "{hooks:?}");
        assert_eq!((hooks[0].name.as_str(), hooks[0].state), (CONNECT_RECORD, HookState::Unavailable));
        let detail = hooks[0].detail.clone().unwrap();
        assert!(detail.contains("sys_exit_connect/format"), "{detail}");
        assert!(detail.ends_with("; collector connect() results will not be seen (needs CONFIG_FTRACE_SYSCALLS)"), "{detail}");
        assert_eq!(result_of(&needs, &hooks::CONNECT_FIELDS), Err(detail));
        let coredump = result_of(&needs, &hooks::COREDUMP_FIELDS).unwrap_err();
        assert!(coredump.starts_with("no coredump tracepoint in this kernel (cannot read "), "{coredump}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_tracefs_says_why_once() {
        let why = "tracefs is not mounted and mounting it failed (EPERM)".to_string();
        let (mut offsets, mut hooks) = (Default::default(), Vec::new());
        let needs = read_tracefs_needs(&Err(why.clone()), &mut offsets, &mut hooks);
        assert_eq!(
            hooks,
            vec![Hook::new(CONNECT_RECORD, HookState::Unavailable, Some(format!("{why}; collector connect() results will not be seen")))]
        );
        assert_eq!(result_of(&needs, &hooks::COREDUMP_FIELDS), Err(why));
        assert_eq!(needs.len(), 2, "each need is read once, however many hooks share it");
    }
}

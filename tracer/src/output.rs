//! Human-readable text for events, verdict blocks and the summary. The JSON
//! form is [`crate::record`]; both print the same facts.

use std::fmt::Write as _;

use crate::{
    chain::{describe_exit, Chain},
    core_pattern::DumpMode,
    event::{code_name, errno_name, signal_name, Body, Event},
    record::{Header, Loss, Summary},
};

#[derive(Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("1;32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("1;33", s)
    }
}

/// HH:MM:SS.mmm in UTC from wall-clock nanoseconds.
pub fn clock(wall_ns: u64) -> String {
    let secs = wall_ns / 1_000_000_000;
    let ms = (wall_ns / 1_000_000) % 1000;
    format!("{:02}:{:02}:{:02}.{ms:03}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

fn rlimit(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "unlimited".into())
}

fn handler(h: u64) -> String {
    match h {
        0 => "SIG_DFL".into(),
        1 => "SIG_IGN".into(),
        h => format!("{h:#x}"),
    }
}

/// One line for one event.
pub fn event_line(ev: &Event, wall_ns: u64, style: Style) -> String {
    let what = match &ev.body {
        Body::SignalGenerate { sig, code, result, target, fault_addr, si_pid, target_handler, .. } => {
            let mut s = format!("{} {} -> {} from {}", signal_name(*sig), code_name(*sig, *code), target, ev.task);
            if let Some(a) = fault_addr {
                let _ = write!(s, " addr={a:#x}");
            }
            if let Some(p) = si_pid {
                let _ = write!(s, " si_pid={p}");
            }
            if *target_handler != 0 {
                let _ = write!(s, " handler={}", handler(*target_handler));
            }
            if *result != 0 {
                let r = ["delivered", "ignored", "already-pending", "overflow", "info-lost"];
                let _ = write!(s, " result={}", r.get(*result as usize).copied().unwrap_or("?"));
            }
            s
        }
        Body::SignalDeliver { sig, sa_handler, rlimit_core, dumpable, .. } => format!(
            "{} {} handler={} RLIMIT_CORE={} dumpable={}",
            ev.task,
            signal_name(*sig),
            handler(*sa_handler),
            rlimit(*rlimit_core),
            dumpable.map(|d| d.to_string()).unwrap_or_else(|| "?".into())
        ),
        Body::DumpStart { sig, hook, .. } => format!("{} {} dump entry ({})", ev.task, signal_name(*sig), hook.as_str()),
        Body::HelperExec { argv, args_truncated, .. } => {
            format!("{} {}{}", ev.task, argv.join(" "), if *args_truncated { " …" } else { "" })
        }
        Body::HelperConnect { path, ret, .. } => {
            let r = if *ret == 0 { "ok".to_string() } else { errno_name(-*ret) };
            format!("{} connect {path} -> {r}", ev.task)
        }
        Body::ProcessExit { exit_code, roles, .. } => format!("{} exited: {} [{}]", ev.task, describe_exit(*exit_code), roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")),
        Body::ProcessFork { child } => format!("{} forked {child}", ev.task),
        Body::CoreSettings(s) => format!("core_pattern={:?} core_pipe_limit={}", s.core_pattern, s.core_pipe_limit),
        Body::SysctlWrite { name, old_value, new_value } => {
            format!("{} wrote {name}: {old_value:?} -> {new_value:?}", ev.task)
        }
        Body::Cgroup { op, root, id, path, populated, .. } => {
            let v = if *root == 0 { "v2".to_string() } else { format!("v1#{root}") };
            let pop = match populated {
                Some(true) => " populated",
                Some(false) => " empty",
                None => "",
            };
            format!("{op}{pop} {path} (id {id}, {v}) by {}", ev.task)
        }
        Body::StackCapture { sig, user, kernel, ip, .. } => {
            let ip = ip.map(|ip| format!(" ip={ip:#x}")).unwrap_or_default();
            format!("{} {} stack: {} user frames, {} kernel frames{ip}", ev.task, signal_name(*sig), user.len(), kernel.len())
        }
        Body::StackCopy { sp, data } => format!("{} {} bytes of user stack from {sp:#x}", ev.task, data.len()),
    };
    format!("{} {:<15} {what}", style.dim(&clock(wall_ns)), ev.body.name())
}

/// The block printed when a chain ends.
pub fn verdict_block(chain: &Chain, mono_to_wall: i128, style: Style) -> String {
    let verdict = chain.verdict.map(|v| v.as_str()).unwrap_or("unknown");
    let painted = match chain.verdict {
        Some(v) if v.is_dropped() => style.red(verdict),
        Some(crate::verdict::Verdict::Stored) => style.green(verdict),
        Some(crate::verdict::Verdict::Unknown) | None => style.yellow(verdict),
        Some(_) => style.bold(verdict),
    };
    let mut how = code_name(chain.sig, chain.code);
    if let Some(a) = chain.fault_addr {
        let _ = write!(how, " at {a:#x}");
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} crash #{}: {} {} ({how}, {})",
        style.bold("━━"),
        chain.id,
        style.bold(&chain.crasher.to_string()),
        signal_name(chain.sig),
        chain.origin
    );
    let _ = writeln!(s, "   verdict    {painted}");
    let _ = writeln!(s, "   why        {}", chain.reason);
    if let Some(m) = &chain.missing {
        let _ = writeln!(s, "   missing    {m}");
    }
    if chain.events_lost {
        let _ = writeln!(s, "   {}", style.yellow("NOTE       events were lost while this chain was open; the verdict may rest on missing evidence"));
    }
    if chain.stalled {
        let _ = writeln!(s, "   {}", style.red("STALLED    the collector is gone but the dump never finished"));
    }
    for e in &chain.evidence {
        let _ = writeln!(s, "   evidence   {e}");
    }
    if chain.misleading_core_dumped() {
        let _ = writeln!(s, "   {}", style.red("WARNING    the kernel reported \"core dumped\", but the core was not stored"));
    }
    if let Some(d) = &chain.dump {
        let mode = match &d.mode {
            DumpMode::File { .. } => "file",
            DumpMode::Pipe { .. } => "pipe",
            DumpMode::Socket { .. } => "socket",
            DumpMode::Empty => "none",
        };
        let _ = writeln!(
            s,
            "   dump       {mode} {:?} (seen: {}), RLIMIT_CORE={}",
            d.core_pattern,
            d.hook.as_str(),
            rlimit(d.rlimit_core)
        );
    }
    if let Some(c) = &chain.collector {
        let _ = writeln!(s, "   collector  {}[{}] {} exit: {}", c.comm, c.pid, c.filename, c.exit_description());
        for conn in &c.connects {
            let r = if conn.ret == 0 { "ok".to_string() } else { errno_name(-conn.ret) };
            let _ = writeln!(s, "              connect {} -> {r}", conn.path);
        }
    }
    if let Some(p) = chain.linked_to {
        let _ = writeln!(s, "   linked to  crash #{p} (its crash handler forked this process)");
    }
    if let Some(w) = &chain.core_pattern_set_by {
        let wall = (w.ts_ns as i128 + mono_to_wall).max(0) as u64;
        let _ = writeln!(s, "   pattern    set to {:?} by {} at {} (was {:?})", w.new_value, w.writer, clock(wall), w.old_value);
    }
    if let Some(p) = &chain.cgroup_path {
        let _ = writeln!(s, "   cgroup     {p} (id {})", chain.cgroup_id);
    }
    if let (Some(ns), Some(pid)) = (chain.pidns, chain.ns_pid) {
        if pid != chain.crasher.tgid {
            let _ = writeln!(s, "   pid ns     pid:[{ns}], where it is pid {pid}");
        }
    }
    for note in &chain.cgroup_context {
        let wall = (note.ts_ns as i128 + mono_to_wall).max(0) as u64;
        let _ = writeln!(
            s,
            "   possible cause  {} cgroup {} {} by {} ({})",
            clock(wall),
            note.op,
            note.path,
            note.actor,
            note.why
        );
    }
    let _ = writeln!(s, "   timeline");
    for step in &chain.timeline {
        let wall = (step.ts_ns as i128 + mono_to_wall).max(0) as u64;
        let _ = writeln!(s, "     {} {}", style.dim(&clock(wall)), step.what);
    }
    if chain.timeline_dropped > 0 {
        let _ = writeln!(s, "     … {} more steps not kept", chain.timeline_dropped);
    }
    if let Some(stack) = &chain.stack {
        s.push_str(&crate::stack::text(stack));
    }
    s
}

pub fn header_text(h: &Header) -> String {
    let mut s = format!("crashtrace {} on {} (kernel {})\n", h.tracer_version, h.hostname, h.kernel);
    let _ = writeln!(s, "dump detection: {} — {}", h.dump_mode, h.dump_mode_reason);
    for hook in &h.hooks {
        let _ = writeln!(
            s,
            "  hook {:<36} {}{}",
            hook.name,
            hook.state,
            hook.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
        );
    }
    if let Some(c) = &h.core_settings {
        let _ = writeln!(s, "core_pattern: {:?}  core_pipe_limit: {}", c.core_pattern, c.core_pipe_limit);
    }
    if let Some(p) = h.watched_pid {
        let _ = writeln!(s, "watching pid {p}");
    }
    s
}

pub fn watched_text(w: &crate::record::Watched, mono_to_wall: i128, style: Style) -> String {
    let wall = (w.ts_ns as i128 + mono_to_wall).max(0) as u64;
    let state = if w.state == crate::watched::State::FrozenInCrashHandler { style.red(w.state.as_str()) } else { style.bold(w.state.as_str()) };
    let mut s = format!("{} watched pid {} is {state}\n", style.dim(&clock(wall)), w.pid);
    for e in &w.evidence {
        let _ = writeln!(s, "   - {e}");
    }
    s
}

pub fn loss_text(l: &Loss, style: Style) -> String {
    let parts: Vec<String> = l.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    style.red(&format!("LOST {} events ({}): {}", l.total, l.source, parts.join(" ")))
}

pub fn summary_text(s: &Summary) -> String {
    let mut out = format!(
        "summary: {} events, {} crash chains, {} events lost in the kernel, {} undecodable",
        s.events, s.chains, s.lost_kernel, s.decode_errors
    );
    if s.log_write_failures > 0 {
        let _ = write!(out, ", {} records not written to the log", s.log_write_failures);
    }
    out.push('\n');
    for (v, n) in &s.verdicts {
        let _ = writeln!(out, "  {v:<36} {n}");
    }
    if s.kernel_said_dumped_but_dropped > 0 {
        let _ = writeln!(out, "  {} crashes reported \"core dumped\" by the kernel were dropped", s.kernel_said_dumped_but_dropped);
    }
    out
}

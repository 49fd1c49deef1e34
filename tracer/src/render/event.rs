//! One line of text per event, escaped (see [`super::escape`]).

use std::fmt::Write as _;

use super::{clock, handler, rlimit, Escaped, Quoted, Style};
use crate::{
    chain::describe_exit,
    event::{code_name, errno_name, signal_name, Body, Event},
};

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
        Body::CoreSettings(s) => format!("core_pattern={} core_pipe_limit={}", Quoted(&s.core_pattern), s.core_pipe_limit),
        Body::CoreLocated(l) => match &l.path {
            Some(_) => format!("core at {}", l.describe()),
            None => format!("no core found (searched {})", l.searched.join(", ")),
        },
        Body::SysctlWrite { name, old_value, new_value } => {
            format!("{} wrote {name}: {} -> {}", ev.task, Quoted(old_value), Quoted(new_value))
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
    // Built unstyled, so that everything in it is escaped at once: comms,
    // argv, paths and values are all the process's own text.
    format!("{} {:<15} {}", style.dim(&clock(wall_ns)), ev.body.name(), Escaped(&what))
}

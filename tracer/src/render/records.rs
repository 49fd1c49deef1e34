//! Text for the records around the events and verdicts: the header, the
//! watched pid's state, a loss and the summary.

use std::fmt::Write as _;

use super::{clock, wall, Escaped, Quoted, Style};
use crate::record::{Header, Loss, Summary, Watched};

pub fn header_text(h: &Header) -> String {
    // Event lines show only the time of day; the zone is said once, here.
    let mut s = format!(
        "crashtrace {} on {} (kernel {}), started {} UTC; times are UTC\n",
        h.tracer_version,
        h.hostname,
        h.kernel,
        clock(h.start_wall_ns)
    );
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
        let _ = writeln!(s, "core_pattern: {}  core_pipe_limit: {}", Quoted(&c.core_pattern), c.core_pipe_limit);
    }
    if let Some(p) = h.watched_pid {
        let _ = writeln!(s, "watching pid {p}");
    }
    s
}

pub fn watched_text(w: &Watched, mono_to_wall: i128, style: Style) -> String {
    let wall = wall(w.ts_ns, mono_to_wall);
    let state = if w.state == crate::watched::State::FrozenInCrashHandler { style.red(w.state.as_str()) } else { style.bold(w.state.as_str()) };
    let mut s = format!("{} watched pid {} is {state}\n", style.dim(&clock(wall)), w.pid);
    for e in &w.evidence {
        let _ = writeln!(s, "   - {}", Escaped(e));
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
    if s.chains_out_of_scope > 0 {
        let _ = write!(out, " ({} more crash chains outside --pid/--cgroup, not shown)", s.chains_out_of_scope);
    }
    if s.log_write_failures > 0 {
        let _ = write!(out, ", {} records not written to the log", s.log_write_failures);
    }
    if s.journal_failures > 0 {
        let _ = write!(out, ", {} verdicts not sent to the journal", s.journal_failures);
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

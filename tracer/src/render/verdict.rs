//! The verdict block printed when a chain ends, built from named sections so
//! that `report` can add its own (where the verdict came from, where the core
//! is) or replace one, instead of editing text.

use std::fmt::Write as _;

use super::{clock, esc, escape_lines, rlimit, wall, Escaped, Quoted, Style};
use crate::{
    chain::Chain,
    core_pattern::DumpMode,
    event::{code_name, errno_name, signal_name},
    verdict::Verdict,
};

/// The sections of a verdict block, in the order they are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// `━━ crash #N: process SIGNAL (how, origin)`.
    Title,
    Verdict,
    Why,
    Missing,
    /// Events were lost while the chain was open.
    Lost,
    Stalled,
    Evidence,
    /// The kernel said "core dumped" but the core was not stored.
    Warning,
    Dump,
    Collector,
    Linked,
    Pattern,
    Cgroup,
    PidNs,
    PossibleCause,
    /// `report`: the verdict record or the rebuild this block shows.
    Source,
    /// Where the core is (the live lookup), or, in `report`, what the
    /// stores hold now.
    Core,
    Timeline,
    Stack,
}

/// A verdict block: its sections' lines (each ending in a newline), in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    sections: Vec<(Section, String)>,
}

impl Block {
    /// The block of a finished chain, as live output prints it.
    pub fn of_chain(chain: &Chain, mono_to_wall: i128, style: Style) -> Block {
        let mut b = Block::default();
        let verdict = chain.verdict.map(|v| v.as_str()).unwrap_or("unknown");
        let painted = match chain.verdict {
            Some(v) if v.is_dropped() => style.red(verdict),
            Some(Verdict::Stored) => style.green(verdict),
            Some(Verdict::Unknown) | None => style.yellow(verdict),
            Some(_) => style.bold(verdict),
        };
        let mut how = code_name(chain.sig, chain.code);
        if let Some(a) = chain.fault_addr {
            let _ = write!(how, " at {a:#x}");
        }
        b.line(
            Section::Title,
            format_args!(
                "{} crash #{}: {} {} ({how}, {})",
                style.bold("━━"),
                chain.id,
                style.bold(&esc(&chain.crasher)),
                signal_name(chain.sig),
                chain.origin
            ),
        );
        b.line(Section::Verdict, format_args!("   verdict    {painted}"));
        b.line(Section::Why, format_args!("   why        {}", Escaped(&chain.reason)));
        if let Some(m) = &chain.missing {
            b.line(Section::Missing, format_args!("   missing    {}", Escaped(m)));
        }
        if chain.events_lost {
            let note = "NOTE       events were lost while this chain was open; the verdict may rest on missing evidence";
            b.line(Section::Lost, format_args!("   {}", style.yellow(note)));
        }
        if chain.stalled {
            b.line(Section::Stalled, format_args!("   {}", style.red("STALLED    the collector is gone but the dump never finished")));
        }
        for e in &chain.evidence {
            b.line(Section::Evidence, format_args!("   evidence   {}", Escaped(e)));
        }
        if chain.misleading_core_dumped() {
            let warning = "WARNING    the kernel reported \"core dumped\", but the core was not stored";
            b.line(Section::Warning, format_args!("   {}", style.red(warning)));
        }
        if let Some(d) = &chain.dump {
            let mode = match &d.mode {
                DumpMode::File { .. } => "file",
                DumpMode::Pipe { .. } => "pipe",
                DumpMode::Socket { .. } => "socket",
                DumpMode::Empty => "none",
            };
            b.line(
                Section::Dump,
                format_args!("   dump       {mode} {} (seen: {}), RLIMIT_CORE={}", Quoted(&d.core_pattern), d.hook.as_str(), rlimit(d.rlimit_core)),
            );
        }
        if let Some(c) = &chain.collector {
            b.line(Section::Collector, format_args!("   collector  {}[{}] {} exit: {}", Escaped(&c.comm), c.pid, Escaped(&c.filename), c.exit_description()));
            for conn in &c.connects {
                let r = if conn.ret == 0 { "ok".to_string() } else { errno_name(-conn.ret) };
                b.line(Section::Collector, format_args!("              connect {} -> {r}", Escaped(&conn.path)));
            }
            if c.connects_dropped > 0 {
                b.line(Section::Collector, format_args!("              … {} more connects not kept", c.connects_dropped));
            }
        }
        if let Some(core) = &chain.core {
            match &core.path {
                Some(_) => b.line(Section::Core, format_args!("   core       {}", core.describe())),
                None if !core.searched.is_empty() => b.line(Section::Core, format_args!("   core       not found in {}", core.searched.join(", "))),
                None => {}
            }
            if let Some(d) = &core.discarded {
                b.line(Section::Core, format_args!("              collector's reason: {d}"));
            }
            if let Some(n) = &core.note {
                b.line(Section::Core, format_args!("              {n}"));
            }
            if core.truncated {
                let warning = "WARNING    the core is truncated: the collector or RLIMIT_CORE cut it short";
                b.line(Section::Warning, format_args!("   {}", style.red(warning)));
            }
        }
        if let Some(p) = chain.linked_to {
            b.line(Section::Linked, format_args!("   linked to  crash #{p} (its crash handler forked this process)"));
        }
        if let Some(w) = &chain.core_pattern_set_by {
            let at = clock(wall(w.ts_ns, mono_to_wall));
            b.line(Section::Pattern, format_args!("   pattern    set to {} by {} at {at} (was {})", Quoted(&w.new_value), esc(&w.writer), Quoted(&w.old_value)));
        }
        if let Some(p) = &chain.cgroup_path {
            b.line(Section::Cgroup, format_args!("   cgroup     {} (id {})", Escaped(p), chain.cgroup_id));
        }
        if let (Some(ns), Some(pid)) = (chain.pidns, chain.ns_pid)
            && pid != chain.crasher.tgid
        {
            b.line(Section::PidNs, format_args!("   pid ns     pid:[{ns}], where it is pid {pid}"));
        }
        for note in &chain.cgroup_context {
            let at = clock(wall(note.ts_ns, mono_to_wall));
            b.line(
                Section::PossibleCause,
                format_args!("   possible cause  {at} cgroup {} {} by {} ({})", note.op, Escaped(&note.path), esc(&note.actor), Escaped(&note.why)),
            );
        }
        b.line(Section::Timeline, format_args!("   timeline"));
        for step in &chain.timeline {
            let at = clock(wall(step.ts_ns, mono_to_wall));
            b.line(Section::Timeline, format_args!("     {} {}", style.dim(&at), Escaped(&step.what)));
        }
        if chain.timeline_dropped > 0 {
            b.line(Section::Timeline, format_args!("     … {} more steps not kept", chain.timeline_dropped));
        }
        if let Some(stack) = &chain.stack {
            // Symbol and module names come from the crashed process's files.
            b.set(Section::Stack, escape_lines(&crate::stack::text(stack)));
        }
        b
    }

    /// Appends one line to `section`, which goes where its kind belongs.
    pub fn line(&mut self, section: Section, line: std::fmt::Arguments<'_>) {
        // Formatted in place: `report` prints millions of these lines.
        let _ = writeln!(self.text_of(section), "{line}");
    }

    /// Appends text (whole lines) to `section`.
    pub fn append(&mut self, section: Section, text: &str) {
        self.text_of(section).push_str(text);
    }

    /// `section`'s text, made empty where its kind belongs if it is new.
    fn text_of(&mut self, section: Section) -> &mut String {
        let at = match self.sections.iter().position(|(s, _)| *s == section) {
            Some(at) => at,
            None => {
                let at = self.sections.iter().position(|(s, _)| *s > section).unwrap_or(self.sections.len());
                self.sections.insert(at, (section, String::new()));
                at
            }
        };
        &mut self.sections[at].1
    }

    /// Replaces `section`'s text (whole lines), or adds it.
    pub fn set(&mut self, section: Section, text: String) {
        self.remove(section);
        self.append(section, &text);
    }

    /// Leaves `section` out.
    pub fn remove(&mut self, section: Section) {
        self.sections.retain(|(s, _)| *s != section);
    }

    /// The text of `section`, if the block has it.
    pub fn get(&self, section: Section) -> Option<&str> {
        self.sections.iter().find(|(s, _)| *s == section).map(|(_, t)| t.as_str())
    }

    pub fn render(&self) -> String {
        self.sections.iter().map(|(_, t)| t.as_str()).collect()
    }
}

/// The block printed when a chain ends.
pub fn verdict_block(chain: &Chain, mono_to_wall: i128, style: Style) -> String {
    Block::of_chain(chain, mono_to_wall, style).render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_location::{CoreLocation, FoundBy};

    #[test]
    fn a_truncated_core_is_shown_with_a_warning_and_a_discarded_one_with_its_reason() {
        let mut c = Chain::new(1, crate::event::Proc { pid: 7, tgid: 7, comm: "app".into() }, 11, 0);
        c.verdict = Some(Verdict::Stored);
        c.core = Some(CoreLocation::found("/cores/core.7".into(), Some(61440), true, FoundBy::FilePattern));
        let text = Block::of_chain(&c, 0, Style::default()).render();
        assert!(text.contains("   core       /cores/core.7 (61440 bytes, truncated, found by file-pattern)\n"), "{text}");
        assert!(text.contains("WARNING    the core is truncated"), "{text}");
        c.core = Some(CoreLocation::missing(vec!["/var/lib/systemd/coredump".into()], Some("Storage=none (/run/x.conf)".into())));
        c.verdict = Some(Verdict::CollectorDiscarded);
        let text = Block::of_chain(&c, 0, Style::default()).render();
        assert!(text.contains("   core       not found in /var/lib/systemd/coredump\n              collector's reason: Storage=none (/run/x.conf)\n"), "{text}");
        assert!(!text.contains("truncated"), "{text}");
    }

    #[test]
    fn sections_go_where_their_kind_belongs_whatever_the_order_added() {
        let mut b = Block::default();
        b.line(Section::Timeline, format_args!("   timeline"));
        b.line(Section::Title, format_args!("━━ crash #1"));
        b.line(Section::Core, format_args!("   core       /x"));
        b.line(Section::Source, format_args!("   source     y"));
        b.line(Section::Timeline, format_args!("     step"));
        assert_eq!(b.render(), "━━ crash #1\n   source     y\n   core       /x\n   timeline\n     step\n");
        b.set(Section::Core, "   core       /z\n".into());
        assert_eq!(b.get(Section::Core), Some("   core       /z\n"));
        b.remove(Section::Source);
        assert_eq!(b.render(), "━━ crash #1\n   core       /z\n   timeline\n     step\n");
    }
}

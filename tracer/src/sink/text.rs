//! Text on stdout for people: one line per event, a block per verdict; the
//! summary goes to stderr, so it stays visible when stdout is piped.

use super::{Emitted, Sink, Stdout};
use crate::{
    record::Record,
    render::{self, Style},
};

pub struct TextSink {
    stdout: Stdout,
    style: Style,
    /// `--verdicts-only`: no line per event.
    verdicts_only: bool,
    /// From the header: wall-clock ns minus monotonic ns.
    mono_to_wall: i128,
}

impl TextSink {
    pub fn new(style: Style, verdicts_only: bool) -> TextSink {
        TextSink { stdout: Stdout::default(), style, verdicts_only, mono_to_wall: 0 }
    }

    /// The text of one record, if it has one on stdout.
    pub fn text(&mut self, record: &Record) -> Option<String> {
        Some(match record {
            Record::Header(h) => {
                self.mono_to_wall = h.start_wall_ns as i128 - h.start_mono_ns as i128;
                render::header_text(h)
            }
            Record::Event(_) if self.verdicts_only => return None,
            Record::Event(e) => {
                let what = if matches!(e.event.body, crate::event::Body::Cgroup { .. }) { "cgroup of crash" } else { "crash" };
                let link = e.chain.map(|id| format!(" [{what} #{id}]")).unwrap_or_default();
                render::event_line(&e.event, e.wall_ns, self.style) + &link + "\n"
            }
            Record::Verdict(chain) => render::verdict_block(chain, self.mono_to_wall, self.style),
            Record::Loss(l) => render::loss_text(l, self.style) + "\n",
            Record::Watched(w) => render::watched_text(w, self.mono_to_wall, self.style),
            // Liveness for readers of the log, not news for a person.
            Record::Heartbeat(_) => return None,
            Record::Summary(s) => {
                super::warn(&render::summary_text(s));
                return None;
            }
        })
    }
}

impl Sink for TextSink {
    fn write(&mut self, out: &Emitted) {
        if let Some(text) = self.text(out.record()) {
            self.stdout.print(&text);
        }
    }

    fn prime(&mut self, preamble: &Emitted) {
        // Only the clock: the header was shown when tracing began.
        if let Record::Header(h) = preamble.record() {
            self.mono_to_wall = h.start_wall_ns as i128 - h.start_mono_ns as i128;
        }
    }

    fn started(&mut self, attach_ns: u64) {
        self.stdout.print(&format!("all hooks attached in {:.1} ms; tracing (Ctrl-C to stop)\n", attach_ns as f64 / 1e6));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Body, Event, Proc},
        record::{EventRecord, Header, Watched},
    };

    fn header(start_wall_ns: u64, start_mono_ns: u64) -> Record {
        Record::Header(Header {
            tracer_version: "0.1.0".into(),
            kernel: "6.18".into(),
            hostname: "vm".into(),
            boot_id: "b".into(),
            start_wall_ns,
            start_mono_ns,
            dump_mode: "inferred".into(),
            dump_mode_reason: "test".into(),
            hooks: vec![],
            core_settings: None,
            watched_pid: Some(7),
        })
    }

    fn fork() -> Record {
        let event = Event { ts_ns: 1, cpu: 0, task: Proc { pid: 7, tgid: 7, comm: "init".into() }, cgroup_id: 1, body: Body::ProcessFork { child: 8 } };
        Record::Event(EventRecord { wall_ns: 3_723_004_000_000, chain: Some(2), event })
    }

    #[test]
    fn the_header_sets_the_clock_of_later_records() {
        let mut sink = TextSink::new(Style::default(), false);
        let head = sink.text(&header(3_600_000_000_000, 1_000_000_000)).unwrap();
        assert!(head.ends_with("watching pid 7\n"), "{head}");
        assert!(head.starts_with("crashtrace 0.1.0 on vm (kernel 6.18), started 01:00:00.000 UTC; times are UTC\n"), "{head}");
        // 1 s monotonic + (3600 s - 1 s) = 01:00:00.000 wall.
        let watched = Record::Watched(Watched { ts_ns: 1_000_000_000, pid: 7, state: crate::watched::State::Running, evidence: vec![] });
        assert_eq!(sink.text(&watched).unwrap(), "01:00:00.000 watched pid 7 is running\n");
        let line = sink.text(&fork()).unwrap();
        assert!(line.starts_with("01:02:03.004 process-fork"), "{line}");
        // Not a cgroup event: the link names the crash only.
        assert!(line.ends_with("init[7] forked 8 [crash #2]\n"), "{line}");
    }

    #[test]
    fn verdicts_only_leaves_out_events_and_the_summary_is_not_on_stdout() {
        let mut sink = TextSink::new(Style::default(), true);
        assert_eq!(sink.text(&fork()), None);
        assert_eq!(sink.text(&Record::Summary(Default::default())), None);
    }
}

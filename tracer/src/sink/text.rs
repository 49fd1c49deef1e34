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
                let link = e.chain.map(|id| format!(" [cgroup of crash #{id}]")).unwrap_or_default();
                render::event_line(&e.event, e.wall_ns, self.style) + &link + "\n"
            }
            Record::Verdict(chain) => render::verdict_block(chain, self.mono_to_wall, self.style),
            Record::Loss(l) => render::loss_text(l, self.style) + "\n",
            Record::Watched(w) => render::watched_text(w, self.mono_to_wall, self.style),
            Record::Summary(s) => {
                eprint!("{}", render::summary_text(s));
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

    fn started(&mut self, attach_ns: u64) {
        self.stdout.print(&format!("all hooks attached in {:.1} ms; tracing (Ctrl-C to stop)\n", attach_ns as f64 / 1e6));
    }
}

//! The text forms, shared by the live sinks and `report`: one line
//! per event ([`event`]), the verdict block as named sections ([`verdict`]),
//! and the header, watched, loss and summary texts ([`records`]). The JSON
//! forms are [`crate::record`]; both print the same facts.

pub mod escape;
pub mod event;
pub mod records;
pub mod verdict;

pub use self::{
    escape::{esc, escape_lines, Escaped, Quoted},
    event::event_line,
    records::{header_text, loss_text, summary_text, watched_text},
    verdict::{verdict_block, Block, Section},
};

/// Whether text is coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn paint(&self, code: &str, s: &str) -> String {
        if self.color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("1;32", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("1;33", s)
    }
}

/// HH:MM:SS.mmm in UTC from wall-clock nanoseconds.
pub fn clock(wall_ns: u64) -> String {
    let secs = wall_ns / 1_000_000_000;
    let ms = (wall_ns / 1_000_000) % 1000;
    format!("{:02}:{:02}:{:02}.{ms:03}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

/// Wall-clock ns of a monotonic stamp, given the run's offset between the two.
pub fn wall(ts_ns: u64, mono_to_wall: i128) -> u64 {
    (ts_ns as i128 + mono_to_wall).max(0) as u64
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

#[cfg(test)]
mod tests;

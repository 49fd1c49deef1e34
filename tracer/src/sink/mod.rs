//! Where records go. Each output format is one [`Sink`], chosen once at
//! start from the configuration ([`crate::live::config`]); the live loop
//! hands every record to its list of sinks and does not know which formats
//! exist. A new format is one new file here, a [`SinkSpec`] variant, and its
//! selection in the configuration.

pub mod jsonl;
pub mod log;
pub mod text;

use std::{cell::OnceCell, io::Write as _, path::PathBuf};

use crate::{
    log::{LogError, LogOptions},
    record::{Line, Record},
    render::Style,
};

/// One record on its way out, with its JSON form made at most once however
/// many sinks want it.
pub struct Emitted {
    line: Line,
    json: OnceCell<String>,
}

impl Emitted {
    pub fn new(record: Record) -> Emitted {
        Emitted::from_line(Line::new(record))
    }

    /// A line already made, e.g. stamped with the run's identity.
    pub fn from_line(line: Line) -> Emitted {
        Emitted { line, json: OnceCell::new() }
    }

    pub fn record(&self) -> &Record {
        &self.line.record
    }

    /// The record's JSON Lines form (without the newline).
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| self.line.to_json())
    }
}

/// An output of the live tracer.
pub trait Sink {
    /// Takes one record, in the order they happen.
    fn write(&mut self, out: &Emitted);
    /// Tracing began; attaching took `attach_ns`.
    fn started(&mut self, _attach_ns: u64) {}
    /// Records this sink could not write, for the summary.
    fn failures(&self) -> u64 {
        0
    }
    /// fsyncs this sink could not do, for the summary.
    fn sync_failures(&self) -> u64 {
        0
    }
    /// Why the tracer must stop, if this sink says it must (`--log-full=stop`).
    fn fatal(&self) -> Option<String> {
        None
    }
}

/// A sink as the configuration names it, before it is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    /// Human-readable text on stdout.
    Text { style: Style, verdicts_only: bool },
    /// JSON Lines on stdout.
    JsonLines,
    /// JSON Lines appended to a log file (`--log`).
    Log { path: PathBuf, options: LogOptions },
}

impl SinkSpec {
    pub fn open(&self) -> Result<Box<dyn Sink>, LogError> {
        Ok(match self {
            SinkSpec::Text { style, verdicts_only } => Box::new(text::TextSink::new(*style, *verdicts_only)),
            SinkSpec::JsonLines => Box::new(jsonl::JsonLinesSink::default()),
            SinkSpec::Log { path, options } => Box::new(log::LogSink::open(path, *options)?),
        })
    }
}

/// Standard output, shared by the sinks that print: a closed pipe
/// (`crashtrace | head`) ends output, and is not the tracer's duty to log.
#[derive(Debug, Default)]
pub struct Stdout {
    closed: bool,
}

impl Stdout {
    pub fn print(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush())
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.closed = true;
        }
    }
}

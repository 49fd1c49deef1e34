//! Where records go. Each output format is one [`Sink`], chosen once at
//! start from the configuration ([`crate::live::config`]); the live loop
//! hands every record to its list of sinks and does not know which formats
//! exist. A new format is one new file here, a [`SinkSpec`] variant, and its
//! selection in the configuration.

pub mod journal;
pub mod jsonl;
pub mod log;
pub mod metrics;
pub mod text;

use std::{
    cell::OnceCell,
    io::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

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

    /// The whole line: the record and the run's identity stamped on it.
    pub fn line(&self) -> &Line {
        &self.line
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
    /// Records this sink could not write to the log, for the summary.
    fn failures(&self) -> u64 {
        0
    }
    /// A sink opened after tracing began (a reloaded configuration) is
    /// given the header and the latest settings first: by default as
    /// records, so a new log file reads on its own.
    fn prime(&mut self, preamble: &Emitted) {
        self.write(preamble);
    }
    /// SIGHUP: reopen whatever file was renamed away (logrotate).
    fn reopen(&mut self) -> Result<(), LogError> {
        Ok(())
    }
    /// Takes new settings of the same kind of sink without reopening it;
    /// false when it cannot, and must be opened anew from `spec`.
    fn reconfigure(&mut self, _spec: &SinkSpec) -> bool {
        false
    }
    /// Verdicts this sink could not hand to journald, for the summary.
    fn journal_failures(&self) -> u64 {
        0
    }
    /// The loop's running totals, on every tick.
    fn status(&mut self, _status: &Status) {}
    /// fsyncs this sink could not do, for the summary.
    fn sync_failures(&self) -> u64 {
        0
    }
    /// Why the tracer must stop, if this sink says it must (`--log-full=stop`).
    fn fatal(&self) -> Option<String> {
        None
    }
}

/// What the loop counts outside the records, handed to every sink on each
/// tick (the metrics export it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub decode_errors: u64,
    pub log_write_failures: u64,
    pub journal_failures: u64,
    pub open_chains: usize,
    /// Monotonic ns now.
    pub now_ns: u64,
}

/// Why a sink could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
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
    /// Prometheus metrics (`--metrics-listen`, `--metrics-textfile`).
    Metrics { listen: Option<SocketAddr>, textfile: Option<PathBuf>, interval: Duration },
    /// One structured journald entry per verdict (`--journal`).
    Journal { socket: PathBuf },
}

impl SinkSpec {
    /// The same output, perhaps with other settings: a sink can take the
    /// other settings in place.
    pub fn same_output(&self, other: &SinkSpec) -> bool {
        match (self, other) {
            (SinkSpec::Log { path: a, .. }, SinkSpec::Log { path: b, .. }) => a == b,
            _ => self == other,
        }
    }

    pub fn open(&self) -> Result<Box<dyn Sink>, SinkError> {
        Ok(match self {
            SinkSpec::Text { style, verdicts_only } => Box::new(text::TextSink::new(*style, *verdicts_only)),
            SinkSpec::JsonLines => Box::new(jsonl::JsonLinesSink::default()),
            SinkSpec::Log { path, options } => Box::new(log::LogSink::open(path, *options)?),
            SinkSpec::Metrics { listen, textfile, interval } => {
                Box::new(metrics::MetricsSink::open(*listen, textfile.clone(), *interval)?)
            }
            SinkSpec::Journal { socket } => Box::new(journal::JournalSink::new(socket.clone())),
        })
    }
}

/// Writes to stdout or stderr that were dropped because the reader did not
/// keep up (see [`nonblocking_journal_stream`]).
static STDIO_DROPPED: AtomicU64 = AtomicU64::new(0);

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
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => self.closed = true,
            Err(_) => {
                STDIO_DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Prints a message on stderr, never panicking (as `eprintln!` does when
/// the write fails) and never blocking on a non-blocking stream: a message
/// that does not fit is dropped and counted.
pub fn warn(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_stderr(&text);
}

/// Writes `text` to stderr as it is, with [`warn`]'s guarantees.
pub fn write_stderr(text: &str) {
    if std::io::stderr().lock().write_all(text.as_bytes()).is_err() {
        STDIO_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes to stdout and stderr dropped so far.
pub fn stdio_dropped() -> u64 {
    STDIO_DROPPED.load(Ordering::Relaxed)
}

/// Under systemd, stdout and stderr are usually one stream socket to
/// journald (`$JOURNAL_STREAM` names it by device and inode). The tracer
/// must never wait for journald (which may be stuck behind a frozen PID 1),
/// so that stream is made non-blocking: a line journald does not take in
/// time is dropped and counted, while the log file (`--log`) keeps every
/// record. A terminal or a pipe the user chose is left as it is. Returns
/// whether the stream was switched.
pub fn nonblocking_journal_stream() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = value.to_str().and_then(parse_journal_stream) else { return false };
    let mut switched = false;
    for fd in [1, 2] {
        // SAFETY: fstat writes only into the stat buffer it is given.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is a plain integer; fstat fails cleanly on a closed one.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_dev as u64 != dev || st.st_ino as u64 != ino {
            continue;
        }
        // SAFETY: F_GETFL/F_SETFL on an open fd change only its flags.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0 {
                switched = true;
            }
        }
    }
    switched
}

/// `$JOURNAL_STREAM`: `DEVICE:INODE`, both decimal.
pub fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }

    #[test]
    fn a_log_with_other_settings_is_the_same_output() {
        let log = |path: &str, keep| SinkSpec::Log { path: path.into(), options: LogOptions { keep, ..LogOptions::default() } };
        assert!(log("/a", 1).same_output(&log("/a", 2)));
        assert!(!log("/a", 1).same_output(&log("/b", 1)));
        assert!(SinkSpec::JsonLines.same_output(&SinkSpec::JsonLines));
        assert!(!SinkSpec::JsonLines.same_output(&log("/a", 1)));
    }
}

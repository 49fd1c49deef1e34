//! `--log PATH`: every record appended to the log file, synced and rotated
//! as [`crate::log`] says.

use std::path::Path;

use super::{Emitted, Sink, SinkSpec};
use crate::log::{LogError, LogOptions, LogWriter};

pub struct LogSink {
    writer: LogWriter,
}

impl LogSink {
    pub fn open(path: &Path, options: LogOptions) -> Result<LogSink, LogError> {
        Ok(LogSink { writer: LogWriter::open(path, options)? })
    }

    /// Opens the log's path again (after logrotate moved the file away).
    pub fn reopen(&mut self) -> Result<(), LogError> {
        self.writer.reopen()
    }
}

impl Sink for LogSink {
    fn write(&mut self, out: &Emitted) {
        // Synced as --log-sync says (by default: a verdict is on disk
        // before it is shown, as the log sink comes first).
        self.writer.write_line_of(out.line(), out.json());
    }

    fn failures(&self) -> u64 {
        self.writer.failures
    }

    fn reopen(&mut self) -> Result<(), LogError> {
        self.writer.reopen_path().map(|_| ())
    }

    fn reconfigure(&mut self, spec: &SinkSpec) -> bool {
        match spec {
            SinkSpec::Log { path, options } if path == self.writer.path() => {
                self.writer.set_options(*options);
                true
            }
            _ => false,
        }
    }

    fn sync_failures(&self) -> u64 {
        self.writer.sync_failures
    }

    fn fatal(&self) -> Option<String> {
        self.writer.fatal().map(str::to_string)
    }
}

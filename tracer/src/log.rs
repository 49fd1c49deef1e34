//! The event log: JSON Lines appended to a file the tracer owns.
//!
//! - Created 0600 (events hold command lines); a symlink, a file that is not
//!   regular, or a file owned by someone else is refused.
//! - Each record is one whole line, written with one write(2) on an O_APPEND
//!   file, and fsynced as `--log-sync` says: `verdict` (default) syncs before
//!   a verdict, header or summary is shown, `event` after every record,
//!   `none` never.
//! - A write that fails (full disk, I/O error) is reported once and counted;
//!   the live output goes on. A partly written line is cut off again, so the
//!   file stays whole lines.
//! - With `--log-max-size`, the file is rotated before it would grow past the
//!   cap: PATH becomes PATH.1, PATH.1 becomes PATH.2, ... up to `--log-keep`
//!   rotated files; the oldest is deleted. Every new file starts with a copy of
//!   the header record and of the latest core-settings event, so each file can
//!   be read on its own. A file always takes that preamble and one record,
//!   so a cap smaller than those is exceeded by them, never more.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use crate::{event::Body, record::Record};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log {path}: is a symlink; crashtrace refuses to follow it (give the real path)")]
    Symlink { path: PathBuf },
    #[error("log {path}: owned by uid {owner}, not by this user ({me}); choose a path you own")]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("log {path}: is not a regular file; give the path of a regular file (it is created if missing)")]
    NotRegular { path: PathBuf },
    #[error("log {path}: cannot open for appending: {source}; check the directory exists and is writable")]
    Open { path: PathBuf, source: std::io::Error },
}

/// When the log is fsynced (`--log-sync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncPolicy {
    /// Before each verdict, header and summary record is shown.
    #[default]
    Verdict,
    /// After every record.
    Event,
    /// Never; the kernel writes back when it will.
    None,
}

/// How the log is written: sync policy and rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    pub sync: SyncPolicy,
    /// Rotate before the file would grow past this many bytes.
    pub max_size: Option<u64>,
    /// Rotated files kept (PATH.1 ... PATH.keep).
    pub keep: u32,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { sync: SyncPolicy::Verdict, max_size: None, keep: DEFAULT_KEEP }
    }
}

pub const DEFAULT_KEEP: u32 = 5;

/// The smallest `--log-max-size`: a header and a few records must fit.
pub const MIN_MAX_SIZE: u64 = 4096;

/// Parses `--log-max-size`: bytes, or a number with a K, M or G suffix
/// (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size; give bytes, or a number with K, M or G"))?;
    let bytes = n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < MIN_MAX_SIZE {
        return Err(format!("{bytes} bytes is below the minimum of {MIN_MAX_SIZE}"));
    }
    Ok(bytes)
}

/// The name of the `n`th rotated file of `path` (PATH.n).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

pub struct LogWriter {
    path: PathBuf,
    opts: LogOptions,
    /// None after a rotation that could not create the new file; the next
    /// record tries again.
    file: Option<File>,
    /// Bytes in the current file, as far as this writer knows.
    len: u64,
    /// Bytes of the copied header and settings at the start of the file.
    preamble_len: u64,
    /// The header record, re-written at the start of every rotated-in file.
    header: Option<String>,
    /// The latest core-settings event, likewise.
    settings: Option<String>,
    /// A partial line could not be cut off: start the next write with '\n'.
    needs_newline: bool,
    /// Records that could not be written.
    pub failures: u64,
    /// fsyncs that failed (what they covered may be lost).
    pub sync_failures: u64,
    /// fsyncs done, for tests of the policy.
    pub syncs: u64,
    pub rotations: u64,
    reported: bool,
}

impl LogWriter {
    pub fn open(path: &Path, opts: LogOptions) -> Result<LogWriter, LogError> {
        // A clear error first; the checks on the opened file below are the
        // ones that count (no race between check and open).
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_symlink() {
                return Err(LogError::Symlink { path: path.into() });
            }
            if !meta.file_type().is_file() {
                return Err(LogError::NotRegular { path: path.into() });
            }
        }
        let file = open_file(path, false)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut w = LogWriter {
            path: path.into(),
            opts,
            file: Some(file),
            len,
            preamble_len: 0,
            header: None,
            settings: None,
            needs_newline: false,
            failures: 0,
            sync_failures: 0,
            syncs: 0,
            rotations: 0,
            reported: false,
        };
        // A run killed mid-write left a torn last line: end it, so the first
        // record of this run is a line of its own.
        if len > 0 {
            let mut last = [0u8; 1];
            if let Some(f) = &w.file
                && f.read_at(&mut last, len - 1).is_ok()
                && last[0] != b'\n'
            {
                w.needs_newline = true;
            }
        }
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record, rotating first if the cap says so, then syncs as
    /// the policy says. `json` is the record's JSON form.
    pub fn write_record(&mut self, record: &Record, json: &str) {
        match record {
            Record::Header(_) => {
                self.header = Some(json.to_string());
                self.settings = None;
            }
            Record::Event(e) if matches!(e.event.body, Body::CoreSettings(_)) => self.settings = Some(json.to_string()),
            _ => {}
        }
        self.write_line(json);
        let sync = match self.opts.sync {
            SyncPolicy::Event => true,
            SyncPolicy::Verdict => matches!(record, Record::Verdict(_) | Record::Summary(_) | Record::Header(_)),
            SyncPolicy::None => false,
        };
        if sync {
            self.sync();
        }
    }

    /// Appends one line (a single write(2)), rotating first if needed.
    pub fn write_line(&mut self, json: &str) {
        let need = json.len() as u64 + 1;
        if let Some(max) = self.opts.max_size {
            // Rotate only a file with more than the preamble in it, so one
            // record larger than the cap cannot rotate forever.
            if self.len > self.preamble_len && self.len + need > max {
                self.rotate();
            }
        }
        if self.file.is_none() && !self.reopen() {
            self.failures += 1;
            return;
        }
        if !self.append(json) {
            self.failures += 1;
        }
    }

    /// Makes what was written durable.
    pub fn sync(&mut self) {
        let Some(file) = &self.file else { return };
        match file.sync_data() {
            Ok(()) => self.syncs += 1,
            Err(e) => {
                self.sync_failures += 1;
                self.report(&e);
            }
        }
    }

    /// One write(2) of the line; on failure the partial line is cut off.
    fn append(&mut self, json: &str) -> bool {
        let Some(file) = self.file.as_mut() else { return false };
        let mut line = String::with_capacity(json.len() + 2);
        if self.needs_newline {
            line.push('\n');
        }
        line.push_str(json);
        line.push('\n');
        match file.write_all(line.as_bytes()) {
            Ok(()) => {
                self.len += line.len() as u64;
                self.needs_newline = false;
                true
            }
            Err(e) => {
                // write_all may have written part of the line before the
                // disk filled up; cut it so the file stays whole lines.
                if file.set_len(self.len).is_err() {
                    self.needs_newline = true;
                    self.len = file.metadata().map(|m| m.len()).unwrap_or(self.len);
                }
                self.report(&e);
                false
            }
        }
    }

    fn rotate(&mut self) {
        if let Some(file) = self.file.take() {
            // What rotates away must be on disk before it is renamed.
            if self.opts.sync != SyncPolicy::None
                && let Err(e) = file.sync_data()
            {
                self.sync_failures += 1;
                self.report(&e);
            }
        }
        let result = if self.opts.keep == 0 {
            std::fs::remove_file(&self.path)
        } else {
            // PATH.keep-1 -> PATH.keep (replacing the oldest), ..., PATH -> PATH.1.
            for n in (1..self.opts.keep).rev() {
                let from = rotated_path(&self.path, n);
                if let Err(e) = std::fs::rename(&from, rotated_path(&self.path, n + 1))
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    self.report(&e);
                }
            }
            std::fs::rename(&self.path, rotated_path(&self.path, 1))
        };
        if let Err(e) = result
            && e.kind() != std::io::ErrorKind::NotFound
        {
            self.report(&e);
        }
        self.rotations += 1;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            // The renames are durable only once the directory is.
            if self.opts.sync != SyncPolicy::None
                && let Ok(d) = File::open(dir)
            {
                let _ = d.sync_all();
            }
        }
        self.len = 0;
        self.preamble_len = 0;
        self.needs_newline = false;
        self.reopen();
    }

    /// Creates the file anew (after a rotation) and writes the preamble.
    fn reopen(&mut self) -> bool {
        match open_file(&self.path, true) {
            Ok(f) => {
                self.file = Some(f);
                self.len = f_len(self.file.as_ref());
                self.needs_newline = false;
                let preamble: Vec<String> = self.header.iter().chain(self.settings.iter()).cloned().collect();
                for line in preamble {
                    if !self.append(&line) {
                        break;
                    }
                }
                self.preamble_len = self.len;
                true
            }
            Err(e) => {
                self.report(&e);
                false
            }
        }
    }

    fn report(&mut self, e: &dyn std::fmt::Display) {
        if !self.reported {
            self.reported = true;
            crate::diag::line(format_args!(
                "crashtrace: writing log {} failed: {e}; live output goes on, unwritten records are counted",
                self.path.display()
            ));
        }
    }
}

fn f_len(f: Option<&File>) -> u64 {
    f.and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0)
}

/// Opens (or, with `fresh`, creates) the log: 0600, never through a symlink,
/// and only a regular file this user owns.
fn open_file(path: &Path, fresh: bool) -> Result<File, LogError> {
    let mut o = OpenOptions::new();
    // Read access too: the last byte tells whether a previous run was cut off mid-line.
    o.read(true).append(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
    if fresh {
        // Someone who raced a file into place after the rename loses.
        o.create_new(true);
    } else {
        o.create(true);
    }
    let file = match o.open(path) {
        Ok(f) => f,
        // The rename away failed (reported already): append to what is there,
        // but not to a file with other names, which could be anyone's.
        Err(e) if fresh && e.kind() == std::io::ErrorKind::AlreadyExists => {
            let f = open_file(path, false)?;
            if f.metadata().map(|m| m.nlink()).unwrap_or(0) != 1 {
                return Err(LogError::NotRegular { path: path.into() });
            }
            return Ok(f);
        }
        Err(source) if source.raw_os_error() == Some(libc::ELOOP) => return Err(LogError::Symlink { path: path.into() }),
        Err(source) => return Err(LogError::Open { path: path.into(), source }),
    };
    let meta = file.metadata().map_err(|source| LogError::Open { path: path.into(), source })?;
    if !meta.file_type().is_file() {
        return Err(LogError::NotRegular { path: path.into() });
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(LogError::NotOwned { path: path.into(), owner: meta.uid(), me });
    }
    Ok(file)
}

#[cfg(test)]
mod tests;

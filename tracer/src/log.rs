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

use crate::{
    event::Body,
    record::{Line, Loss, Record},
};

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

/// What a full disk (or a cap the log cannot rotate under) does to the
/// tracer (`--log-full`), like auditd's `disk_full_action`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FullPolicy {
    /// Keep tracing: live output goes on, unwritten records are counted,
    /// and a `loss` record with `"source":"log"` says how many once the
    /// log takes records again.
    #[default]
    KeepTracing,
    /// Stop the tracer with an error: for hosts where a crash that is not
    /// on disk must not go unnoticed.
    Stop,
}

/// How the log is written: sync policy, rotation, and what a full disk does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    pub sync: SyncPolicy,
    /// Rotate before the file would grow past this many bytes.
    pub max_size: Option<u64>,
    /// Rotated files kept (PATH.1 ... PATH.keep).
    pub keep: u32,
    pub full: FullPolicy,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { sync: SyncPolicy::Verdict, max_size: None, keep: DEFAULT_KEEP, full: FullPolicy::KeepTracing }
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

/// Failures of each kind: counted, and each kind reported once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Records whose write(2) failed.
    pub write: u64,
    /// fsyncs of the file or its directory that failed.
    pub sync: u64,
    /// Rotations that could not rename the file away.
    pub rotate: u64,
    /// Creations of the file (after a rotation) that failed.
    pub open: u64,
}

/// Which kinds of failure were reported already.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    pub write: bool,
    pub sync: bool,
    pub rotate: bool,
    pub open: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Write,
    Sync,
    Rotate,
    Open,
}

/// Records to wait before retrying a failed rotation: doubled after each
/// failure up to the maximum, so a rename that keeps failing costs a few
/// syscalls, not two per record.
const ROTATE_BACKOFF_START: u64 = 16;
const ROTATE_BACKOFF_MAX: u64 = 1 << 16;

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
    /// Files started after the first (rotations and reopens): the number
    /// the next file's preamble carries, so no two files of a run start
    /// with the same bytes however they came to be.
    files: u64,
    /// The run's identity, from the records it writes: stamped on the
    /// writer's own `loss` notes, so they read on their own too.
    identity: Option<crate::record::Stamp>,
    /// A partial line could not be cut off: start the next write with '\n'.
    needs_newline: bool,
    /// Records that could not be written (write errors and records dropped
    /// at the cap).
    pub failures: u64,
    /// fsyncs that failed (what they covered may be lost).
    pub sync_failures: u64,
    /// fsyncs done, for tests of the policy.
    pub syncs: u64,
    /// Directory fsyncs done (after creating a file).
    pub dir_syncs: u64,
    pub rotations: u64,
    /// Records dropped because the file was at its cap and could not rotate.
    pub dropped: u64,
    pub errors: ErrorCounts,
    pub reported: Reported,
    /// Records lost since the last one written, by cause: said in band (a
    /// `loss` record) as soon as a record can be written again.
    unsaid_unwritten: u64,
    unsaid_over_cap: u64,
    /// After a failed rotation: records to let by before the next try, and
    /// the wait after the next failure.
    rotate_wait: u64,
    rotate_backoff: u64,
    /// Why the tracer must stop (`--log-full=stop`).
    fatal: Option<String>,
}

impl LogWriter {
    pub fn open(path: &Path, opts: LogOptions) -> Result<LogWriter, LogError> {
        // A clear error first; the checks on the opened file below are the
        // ones that count (no race between check and open).
        let existed = match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                if meta.file_type().is_symlink() {
                    return Err(LogError::Symlink { path: path.into() });
                }
                if !meta.file_type().is_file() {
                    return Err(LogError::NotRegular { path: path.into() });
                }
                true
            }
            Err(_) => false,
        };
        let file = open_file(path, false)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut w = LogWriter::with_file(path.into(), opts, file, len);
        if !existed {
            w.sync_dir();
        }
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

    /// A writer on a file already open, `len` bytes long.
    pub(crate) fn with_file(path: PathBuf, opts: LogOptions, file: File, len: u64) -> LogWriter {
        LogWriter {
            path,
            opts,
            file: Some(file),
            len,
            preamble_len: 0,
            header: None,
            settings: None,
            files: 0,
            identity: None,
            needs_newline: false,
            failures: 0,
            sync_failures: 0,
            syncs: 0,
            dir_syncs: 0,
            rotations: 0,
            dropped: 0,
            errors: ErrorCounts::default(),
            reported: Reported::default(),
            unsaid_unwritten: 0,
            unsaid_over_cap: 0,
            rotate_wait: 0,
            rotate_backoff: ROTATE_BACKOFF_START,
            fatal: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes new sync and rotation settings (a reloaded configuration).
    pub fn set_options(&mut self, opts: LogOptions) {
        self.opts = opts;
    }

    /// Follows the path after the file was renamed away or deleted (as
    /// logrotate does before sending SIGHUP): opens PATH, created if missing,
    /// and starts it with the header and settings like a rotated-in file, so
    /// it reads on its own. While PATH is still the open file, nothing
    /// changes. Returns whether another file was opened.
    pub fn reopen_path(&mut self) -> Result<bool, LogError> {
        let same = match (&self.file, std::fs::symlink_metadata(&self.path)) {
            (Some(f), Ok(at_path)) => f.metadata().map(|m| m.dev() == at_path.dev() && m.ino() == at_path.ino()).unwrap_or(false),
            _ => false,
        };
        if same {
            return Ok(false);
        }
        let file = open_file(&self.path, false)?;
        if let Some(old) = self.file.take()
            && self.opts.sync != SyncPolicy::None
            && let Err(e) = old.sync_data()
        {
            // What went to the renamed file may not all be on disk.
            self.sync_failures += 1;
            self.report(Kind::Sync, &e);
        }
        self.len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut last = [0u8; 1];
        self.needs_newline = self.len > 0 && file.read_at(&mut last, self.len - 1).is_ok() && last[0] != b'\n';
        self.file = Some(file);
        self.sync_dir();
        self.write_preamble();
        Ok(true)
    }

    /// Why the tracer must stop, with `--log-full=stop` and a full disk.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Closes the file and opens PATH again (creating it if it is gone),
    /// e.g. after logrotate moved it away; the next record goes to the new
    /// file, which starts with the header and settings like a rotated one.
    pub fn reopen(&mut self) -> Result<(), LogError> {
        let existed = std::fs::symlink_metadata(&self.path).is_ok();
        let file = open_file(&self.path, false)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        self.len = len;
        self.needs_newline = false;
        self.preamble_len = 0;
        if !existed {
            self.sync_dir();
        }
        if len == 0 {
            self.write_preamble();
        }
        Ok(())
    }

    /// Writes one line: as [`LogWriter::write_record`], and its run's
    /// identity is kept for the writer's own records.
    pub fn write_line_of(&mut self, line: &Line, json: &str) {
        if let (Some(run), Some(host)) = (&line.run, &line.host)
            && self.identity.as_ref().is_none_or(|s| &s.run != run || &s.host != host)
        {
            self.identity = Some(crate::record::Stamp::new(run.clone(), host.clone()));
        }
        self.write_record(&line.record, json);
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
                let rotated = if self.rotate_wait > 0 {
                    self.rotate_wait -= 1;
                    false
                } else {
                    self.rotate()
                };
                if !rotated && self.file.is_some() {
                    // The file cannot move away: the cap holds, the record
                    // is dropped and counted.
                    self.dropped = self.dropped.saturating_add(1);
                    self.failures = self.failures.saturating_add(1);
                    self.unsaid_over_cap = self.unsaid_over_cap.saturating_add(1);
                    if self.opts.full == FullPolicy::Stop && self.fatal.is_none() {
                        self.fatal = Some(format!(
                            "log {} is at its --log-max-size cap and cannot be rotated; stopping as --log-full=stop says \
                             (fix the rotation, or use --log-full=keep-tracing)",
                            self.path.display()
                        ));
                    }
                    return;
                }
            }
        }
        if self.file.is_none() && !self.recreate() {
            self.lost_write();
            return;
        }
        if self.unsaid_unwritten > 0 || self.unsaid_over_cap > 0 {
            let note = self.loss_note();
            if !self.append(&note) {
                self.lost_write();
                return;
            }
            self.unsaid_unwritten = 0;
            self.unsaid_over_cap = 0;
        }
        if !self.append(json) {
            self.lost_write();
        }
    }

    fn lost_write(&mut self) {
        self.failures = self.failures.saturating_add(1);
        self.unsaid_unwritten = self.unsaid_unwritten.saturating_add(1);
    }

    /// The `loss` record that says, in band, what the log misses.
    fn loss_note(&self) -> String {
        let mut counts = std::collections::BTreeMap::new();
        if self.unsaid_unwritten > 0 {
            counts.insert("unwritten".to_string(), self.unsaid_unwritten);
        }
        if self.unsaid_over_cap > 0 {
            counts.insert("over-cap".to_string(), self.unsaid_over_cap);
        }
        let total = self.unsaid_unwritten.saturating_add(self.unsaid_over_cap);
        let record = Record::Loss(Loss { ts_ns: monotonic_ns(), source: "log".into(), counts, total });
        match &self.identity {
            Some(stamp) => stamp.unsequenced(record, realtime_ns()).to_json(),
            None => Line::new(record).to_json(),
        }
    }

    /// Makes what was written durable.
    pub fn sync(&mut self) {
        let Some(file) = &self.file else { return };
        match file.sync_data() {
            Ok(()) => self.syncs += 1,
            Err(e) => {
                self.sync_failures = self.sync_failures.saturating_add(1);
                self.report(Kind::Sync, &e);
            }
        }
    }

    /// Makes a new name in the log's directory durable (a created file, a
    /// rename): an fsync of the file does not cover its directory entry.
    fn sync_dir(&mut self) {
        if self.opts.sync == SyncPolicy::None {
            return;
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match File::open(dir).and_then(|d| d.sync_all()) {
            Ok(()) => self.dir_syncs += 1,
            Err(e) => {
                self.sync_failures = self.sync_failures.saturating_add(1);
                self.report(Kind::Sync, &e);
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
                    // Only a file that grew holds a partial line to end.
                    let now = file.metadata().map(|m| m.len()).unwrap_or(self.len);
                    if now > self.len {
                        self.needs_newline = true;
                        self.len = now;
                    }
                }
                self.errors.write = self.errors.write.saturating_add(1);
                let full = matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
                if full && self.opts.full == FullPolicy::Stop && self.fatal.is_none() {
                    self.fatal = Some(format!(
                        "log {}: {e}; stopping as --log-full=stop says (free space, or use --log-full=keep-tracing)",
                        self.path.display()
                    ));
                }
                self.report(Kind::Write, &e);
                false
            }
        }
    }

    /// Renames the file away and starts a new one; false if the file could
    /// not be moved (it is kept, and the next try waits: see the backoff).
    fn rotate(&mut self) -> bool {
        // What rotates away must be on disk before it is renamed.
        if self.opts.sync != SyncPolicy::None
            && let Some(file) = &self.file
            && let Err(e) = file.sync_data()
        {
            self.sync_failures = self.sync_failures.saturating_add(1);
            self.report(Kind::Sync, &e);
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
                    self.report(Kind::Rotate, &e);
                }
            }
            std::fs::rename(&self.path, rotated_path(&self.path, 1))
        };
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                self.errors.rotate = self.errors.rotate.saturating_add(1);
                self.report(Kind::Rotate, &e);
                self.rotate_wait = self.rotate_backoff;
                self.rotate_backoff = (self.rotate_backoff * 2).min(ROTATE_BACKOFF_MAX);
                return false;
            }
            _ => {}
        }
        self.rotate_wait = 0;
        self.rotate_backoff = ROTATE_BACKOFF_START;
        self.file = None;
        self.rotations += 1;
        self.len = 0;
        self.preamble_len = 0;
        self.needs_newline = false;
        self.recreate();
        true
    }

    /// Creates the file anew (after a rotation) and writes the preamble;
    /// then syncs the directory, which makes the renames and the new name
    /// durable.
    fn recreate(&mut self) -> bool {
        match open_file(&self.path, true) {
            Ok(f) => {
                self.file = Some(f);
                self.len = f_len(self.file.as_ref());
                self.needs_newline = false;
                self.write_preamble();
                self.sync_dir();
                true
            }
            Err(e) => {
                self.errors.open = self.errors.open.saturating_add(1);
                self.report(Kind::Open, &e);
                false
            }
        }
    }

    /// The header and settings at the start of a new file, so it can be
    /// read on its own. The copies carry the file's number in the run, so
    /// no two files of a set start with the same bytes (log shippers tell
    /// files apart by their first bytes).
    fn write_preamble(&mut self) {
        self.files = self.files.saturating_add(1);
        let n = self.files;
        let preamble: Vec<String> = self.header.iter().chain(self.settings.iter()).map(|l| mark_file(l, n)).collect();
        for line in preamble {
            if !self.append(&line) {
                break;
            }
        }
        self.preamble_len = self.len;
    }

    fn report(&mut self, kind: Kind, e: &dyn std::fmt::Display) {
        let (seen, what) = match kind {
            Kind::Write => (&mut self.reported.write, "writing"),
            Kind::Sync => (&mut self.reported.sync, "syncing"),
            Kind::Rotate => (&mut self.reported.rotate, "rotating"),
            Kind::Open => (&mut self.reported.open, "creating"),
        };
        if !std::mem::replace(seen, true) {
            let goes_on = match kind {
                Kind::Rotate => "; the file is kept at its cap (records past it are dropped and counted) and the rotation is retried",
                Kind::Sync => "; records may not be on disk yet; failures are counted in the summary",
                _ => "; live output goes on, unwritten records are counted",
            };
            crate::sink::warn(&format!(
                "crashtrace: {what} log {} failed: {e}{goes_on} (further {what} failures are counted, not printed)",
                self.path.display()
            ));
        }
    }
}

/// A record's JSON with `"file":N` added after the version: the rotated-in
/// file's number within the run, which marks the record as a copy (readers
/// skip it in sequence checks) and makes each file's first bytes its own.
fn mark_file(header: &str, n: u64) -> String {
    let head = format!("{{\"v\":{},", crate::event::SCHEMA_VERSION);
    match header.strip_prefix(&head) {
        Some(rest) if !rest.starts_with("\"file\":") => format!("{head}\"file\":{n},{rest}"),
        _ => header.to_string(),
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and out-pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

fn realtime_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
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

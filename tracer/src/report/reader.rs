//! Reading logs: the files of a rotated set in order, lines with a length
//! cap (a 1 GB line costs no more memory than the cap), and each line parsed
//! into a record or an error that says what is wrong with it.

use std::{
    fs::File,
    io::{self, Read},
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{event::SCHEMA_VERSION, log::rotated_path, record::Line};

/// Longest line kept. A verdict record with a full timeline and long helper
/// argv is a few KiB; anything near this is not a record crashtrace wrote.
pub const MAX_LINE: usize = 1 << 20;

/// Record types of schema version 1.
const KNOWN_TYPES: [&str; 7] = ["header", "event", "verdict", "loss", "summary", "watched", "heartbeat"];

/// What [`LineReader::next`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawLine {
    /// A line, now in [`LineReader::line`]; `terminated` is false for a last
    /// line with no newline.
    Line { terminated: bool },
    /// A line longer than the cap: skipped, `len` bytes without the newline.
    TooLong { len: u64, terminated: bool },
    Eof,
}

/// Lines of a [`Read`], at most `cap` bytes each held in memory.
///
/// The input is read in blocks straight into one buffer of `cap + 1` bytes
/// and each line is handed out as a slice of it, not copied: a report reads
/// gigabytes, and copying every line out of a `BufReader` cost as much as
/// finding them. Only the start of a line a block cut off is moved, to the
/// front of the buffer, before the next block is read after it.
pub struct LineReader<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Bytes of `buf` read from the input.
    filled: usize,
    /// Where the next line starts in `buf`.
    pos: usize,
    /// The last line returned, as a range of `buf`.
    line: (usize, usize),
    eof: bool,
    cap: usize,
    /// Number of the line last returned (1-based).
    pub line_no: u64,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, cap: usize) -> LineReader<R> {
        // One more than the cap: a line of exactly `cap` bytes and its
        // newline fit, and a partial line that fills the buffer is too long.
        LineReader { inner, buf: vec![0; cap + 1].into_boxed_slice(), filled: 0, pos: 0, line: (0, 0), eof: false, cap, line_no: 0 }
    }

    /// The bytes of the last [`RawLine::Line`], without its newline.
    pub fn line(&self) -> &[u8] {
        &self.buf[self.line.0..self.line.1]
    }

    /// Bytes held for the line buffer (the cap, and one for the newline).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Reads more input after what is held, moving the unread part to the
    /// front first. False at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        loop {
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.filled += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn next_line(&mut self) -> io::Result<RawLine> {
        // Where the newline search resumes: bytes before it were searched.
        let mut searched = self.pos;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..self.filled]) {
                let end = searched + i;
                self.line = (self.pos, end);
                self.pos = end + 1;
                self.line_no += 1;
                return Ok(RawLine::Line { terminated: true });
            }
            let partial = self.filled - self.pos;
            if partial > self.cap {
                return self.skip_long(partial as u64);
            }
            searched = self.filled - self.pos;
            let more = self.fill()?;
            searched += self.pos;
            if !more {
                if self.pos == self.filled {
                    return Ok(RawLine::Eof);
                }
                self.line = (self.pos, self.filled);
                self.pos = self.filled;
                self.line_no += 1;
                return Ok(RawLine::Line { terminated: false });
            }
        }
    }

    /// Skips the rest of a line longer than the cap, `held` bytes of which
    /// are in the buffer; only its length is kept.
    fn skip_long(&mut self, held: u64) -> io::Result<RawLine> {
        let mut total = held;
        self.pos = self.filled;
        loop {
            if !self.fill()? {
                self.line_no += 1;
                return Ok(RawLine::TooLong { len: total, terminated: false });
            }
            if let Some(i) = memchr::memchr(b'\n', &self.buf[..self.filled]) {
                total += i as u64;
                self.pos = i + 1;
                self.line_no += 1;
                return Ok(RawLine::TooLong { len: total, terminated: true });
            }
            total += self.filled as u64;
            self.pos = self.filled;
        }
    }
}

/// Why a line is not a record crashtrace can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadLine {
    #[error("empty line")]
    Empty,
    #[error("not UTF-8 text (bad byte at column {column}): binary junk, not a crashtrace record")]
    NotUtf8 { column: usize },
    #[error("line of {len} bytes is longer than the {cap}-byte limit: not a crashtrace record, skipped")]
    TooLong { len: u64, cap: usize },
    #[error("not a JSON record: {0}")]
    NotJson(String),
    #[error("truncated record ({len} bytes): its write was cut off (tracer killed, or disk full)")]
    Truncated { len: usize },
    #[error("no schema version \"v\": not a crashtrace record")]
    NoVersion,
    #[error("schema version {0}, but this crashtrace reads version {SCHEMA_VERSION}: read it with the crashtrace that wrote it")]
    Version(String),
    #[error("unknown record type {0:?} for schema version {SCHEMA_VERSION}")]
    UnknownType(String),
    #[error("bad {kind} record: {msg}")]
    BadRecord { kind: String, msg: String },
}

#[derive(Deserialize)]
struct Probe {
    v: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
}

/// Parses one line (without its newline) into a record.
pub fn parse_line(bytes: &[u8]) -> Result<Line, BadLine> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BadLine::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| BadLine::NotUtf8 { column: e.valid_up_to() + 1 })?;
    // Most lines are events and verdicts: parsed without serde's buffering
    // when that gives the same record; everything else, the general way.
    if let Some(line) = super::fast::parse(text) {
        return Ok(line);
    }
    parse_general(text)
}

/// Parses one line of UTF-8 text the general way (every record type, and
/// the reason a line is bad).
pub(crate) fn parse_general(text: &str) -> Result<Line, BadLine> {
    match serde_json::from_str::<Line>(text) {
        // Older versions are read (their records are a subset); a record
        // with no `v` parsed as version 1.
        Ok(line) if (1..=SCHEMA_VERSION).contains(&line.v) => Ok(line),
        Ok(line) => Err(BadLine::Version(line.v.to_string())),
        Err(e) => Err(diagnose(text, e)),
    }
}

/// Says why a line did not parse: the cheap typed parse failed, so look at
/// it again loosely.
fn diagnose(text: &str, typed: serde_json::Error) -> BadLine {
    match serde_json::from_str::<Probe>(text) {
        Err(e) if e.classify() == serde_json::error::Category::Eof => BadLine::Truncated { len: text.len() },
        Err(e) => BadLine::NotJson(e.to_string()),
        Ok(probe) => match probe.v {
            None => BadLine::NoVersion,
            Some(v) if !v.as_u64().is_some_and(|v| (1..=SCHEMA_VERSION as u64).contains(&v)) => BadLine::Version(short(&v.to_string())),
            Some(_) => match probe.kind {
                Some(serde_json::Value::String(k)) if !KNOWN_TYPES.contains(&k.as_str()) => BadLine::UnknownType(short(&k)),
                Some(serde_json::Value::String(k)) => BadLine::BadRecord { kind: k, msg: typed.to_string() },
                _ => BadLine::BadRecord { kind: "untyped".into(), msg: "no string \"type\" field".into() },
            },
        },
    }
}

/// At most 40 characters of something quoted from the input.
fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The files of the set named `path`, oldest first: PATH.N ... PATH.1, PATH.
/// Only rotated names with a plain number are taken. `path` itself comes
/// last even if missing, so that its absence is reported.
pub fn rotated_set(path: &Path) -> Vec<PathBuf> {
    let mut numbered: Vec<(u64, PathBuf)> = Vec::new();
    if let (Some(name), dir) = (path.file_name(), path.parent()) {
        let dir = match dir {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // Bytes, not text: a log name need not be UTF-8, and its rotated
        // names are the same bytes with ".N" added.
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(b'.');
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let entry_name = entry.file_name();
                let Some(num) = entry_name.as_bytes().strip_prefix(prefix.as_slice()) else { continue };
                let Ok(num) = std::str::from_utf8(num) else { continue };
                if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 9 {
                    continue;
                }
                // PATH.01 is not a name the writer makes.
                if let Ok(n) = num.parse::<u32>().map_err(|_| ()).and_then(|n| if n.to_string() == num { Ok(n) } else { Err(()) }) {
                    numbered.push((n as u64, rotated_path(path, n)));
                }
            }
        }
    }
    numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    numbered.into_iter().map(|(_, p)| p).chain(std::iter::once(path.to_path_buf())).collect()
}

/// Why a file given as (or found as part of) a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("is a symlink; report does not follow symlinks in a log set (they could point anywhere, e.g. /dev/zero): give the real path")]
    Symlink,
    #[error("not a regular file ({0}); a log is a regular file: give the path of one")]
    NotRegular(&'static str),
    #[error("cannot read: {0}; check the path and its permissions")]
    Io(io::Error),
}

/// Opens a log file for reading: never through a symlink, never blocking
/// (a FIFO would wait forever for a writer), and only a regular file, as
/// fstat on the opened file says (no race between check and use). A
/// regular file also bounds what the read costs: /dev/zero and the like
/// are refused here.
pub fn open_log(path: &Path) -> Result<File, OpenError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| if e.raw_os_error() == Some(libc::ELOOP) { OpenError::Symlink } else { OpenError::Io(e) })?;
    let kind = file.metadata().map_err(OpenError::Io)?.file_type();
    if !kind.is_file() {
        return Err(OpenError::NotRegular(file_kind(&kind)));
    }
    Ok(file)
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

//! The event log: JSON Lines appended to a file the tracer owns.
//! Created 0600 (events hold command lines); a symlink, or a file owned by
//! someone else, is refused. Write failures are reported once and counted.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log {path}: is a symlink; crashtrace refuses to follow it (give the real path)")]
    Symlink { path: PathBuf },
    #[error("log {path}: owned by uid {owner}, not by this user ({me}); choose a path you own")]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("log {path}: cannot open for appending: {source}; check the directory exists and is writable")]
    Open { path: PathBuf, source: std::io::Error },
}

pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// Records that could not be written.
    pub failures: u64,
    reported: bool,
}

impl LogWriter {
    pub fn open(path: &Path) -> Result<LogWriter, LogError> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_symlink() {
                return Err(LogError::Symlink { path: path.into() });
            }
            // SAFETY: geteuid cannot fail.
            let me = unsafe { libc::geteuid() };
            if meta.uid() != me {
                return Err(LogError::NotOwned { path: path.into(), owner: meta.uid(), me });
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| LogError::Open { path: path.into(), source })?;
        Ok(LogWriter { path: path.into(), file, failures: 0, reported: false })
    }

    /// Appends one record as one whole line (a single write(2)).
    pub fn write_line(&mut self, json: &str) {
        let mut line = String::with_capacity(json.len() + 1);
        line.push_str(json);
        line.push('\n');
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            self.fail(e);
        }
    }

    /// Makes what was written durable (called before a verdict is shown).
    pub fn sync(&mut self) {
        if let Err(e) = self.file.sync_data() {
            self.fail(e);
        }
    }

    fn fail(&mut self, e: std::io::Error) {
        self.failures += 1;
        if !self.reported {
            self.reported = true;
            eprintln!(
                "crashtrace: writing log {} failed: {e}; live output goes on, unwritten records are counted",
                self.path.display()
            );
        }
    }
}

//! Machine-wide state the crash benchmarks change: the global lock every
//! crashing or core_pattern-changing job on the machine takes, and a guard
//! that puts core_pattern and core_pipe_limit back however the benchmark ends.

use std::{fs::File, os::fd::AsRawFd, path::Path};

use anyhow::{Context, Result, bail};

pub(super) const LOCK_PATH: &str = "/tmp/crashtrace-global.lock";
const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";
const CORE_PIPE_LIMIT: &str = "/proc/sys/kernel/core_pipe_limit";

/// An exclusive flock on [`LOCK_PATH`], held until dropped.
pub(super) struct GlobalLock {
    _file: File,
}

impl GlobalLock {
    pub(super) fn acquire() -> Result<GlobalLock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .with_context(|| format!("opening {LOCK_PATH}"))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("xtask bench: waiting for {LOCK_PATH} (another crash test or benchmark holds it)");
            // SAFETY: as above; blocking this time.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                bail!("flock {LOCK_PATH}: {}", std::io::Error::last_os_error());
            }
        }
        Ok(GlobalLock { _file: file })
    }
}

fn read(path: &str) -> Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?.trim_end_matches('\n').to_string())
}

fn write(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value:?} to {path} (needs root)"))
}

/// Saves core_pattern and core_pipe_limit; restores both when dropped.
/// Borrowing the lock makes "changed without the lock" a compile error.
pub(super) struct CoreGuard<'lock> {
    pattern: String,
    pipe_limit: String,
    _lock: &'lock GlobalLock,
}

impl<'lock> CoreGuard<'lock> {
    pub(super) fn save(lock: &'lock GlobalLock) -> Result<CoreGuard<'lock>> {
        Ok(CoreGuard { pattern: read(CORE_PATTERN)?, pipe_limit: read(CORE_PIPE_LIMIT)?, _lock: lock })
    }

    pub(super) fn set(&self, pattern: &str, pipe_limit: u32) -> Result<()> {
        write(CORE_PATTERN, pattern)?;
        write(CORE_PIPE_LIMIT, &pipe_limit.to_string())?;
        let now = read(CORE_PATTERN)?;
        if now != pattern {
            bail!("core_pattern reads back as {now:?} after writing {pattern:?}");
        }
        Ok(())
    }
}

impl Drop for CoreGuard<'_> {
    fn drop(&mut self) {
        for (path, value) in [(CORE_PATTERN, &self.pattern), (CORE_PIPE_LIMIT, &self.pipe_limit)] {
            if let Err(e) = write(path, value) {
                eprintln!("xtask bench: could not restore {path}: {e:#}; restore it by hand: echo '{value}' > {path}");
            }
        }
    }
}

/// Makes `dir` (on tmpfs) and returns it; a dir left by an earlier run is
/// emptied first.
pub(super) fn scratch_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

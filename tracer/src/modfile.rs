//! Opening the module files a crashed process mapped, without trusting
//! the paths in its /proc/PID/maps.
//!
//! The paths are the crasher's: an unprivileged user can swap one for a
//! FIFO (an open() that never returns, blocking the tracer), a symlink to
//! /dev/zero (a read that never ends), or another file (wrong names). So a
//! module is opened through /proc/PID/map_files/START-END while the process
//! lives (the very inode that is mapped, whatever the path now names), else
//! by path with O_NOFOLLOW | O_NONBLOCK (a FIFO opens at once and is then
//! refused); either way it must be a regular file with the device and
//! inode the maps named, and at most [`MODULE_BYTES_MAX`] long.
//!
//! The file stays open while it is used: other readers (blazesym) are given
//! `/proc/self/fd/N`, which names this open file and no path.

use std::{
    fs::File,
    io::Read,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    os::unix::io::AsRawFd,
    path::{Path, PathBuf},
};

use crate::procmaps::Mapping;

/// Largest module file read or symbolised. Real libraries are far smaller
/// (a big debug build is a few hundred MiB); a larger "module" is not worth
/// the memory or the time.
pub const MODULE_BYTES_MAX: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("{path} is not a regular file ({kind}); not read")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} is not the file the process mapped (device or inode differ): replaced since; not read")]
    Replaced { path: String },
    #[error("{path} is {size} bytes, over the {MODULE_BYTES_MAX}-byte limit; not read")]
    TooBig { path: String, size: u64 },
}

/// A module file, opened and checked.
#[derive(Debug)]
pub struct ModuleFile {
    file: File,
    pub size: u64,
    pub dev: u64,
    pub inode: u64,
}

impl ModuleFile {
    /// A path naming this open file (not the path it was opened by).
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// The whole file, at most [`MODULE_BYTES_MAX`] bytes of it.
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.size.min(MODULE_BYTES_MAX) as usize);
        (&self.file).take(MODULE_BYTES_MAX).read_to_end(&mut out)?;
        Ok(out)
    }
}

fn kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

/// The device number /proc/PID/maps prints ("fd:01") as `st_dev` holds it.
pub fn dev_from_maps(field: &str) -> Option<u64> {
    let (major, minor) = field.split_once(':')?;
    let (major, minor) = (u32::from_str_radix(major, 16).ok()?, u32::from_str_radix(minor, 16).ok()?);
    Some(libc::makedev(major, minor))
}

/// Opens `path` without following a final symlink and without blocking,
/// and checks it is a regular file of bounded size and, if `expect` is
/// given, the (device, inode) expected.
pub fn open_path(path: &Path, follow: bool, expect: Option<(u64, u64)>) -> Result<ModuleFile, OpenError> {
    let shown = || path.display().to_string();
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|source| OpenError::Open { path: shown(), source })?;
    let meta = file.metadata().map_err(|source| OpenError::Open { path: shown(), source })?;
    if !meta.file_type().is_file() {
        return Err(OpenError::NotRegular { path: shown(), kind: kind(meta.file_type()) });
    }
    if let Some((dev, inode)) = expect
        && (meta.dev() != dev || meta.ino() != inode)
    {
        return Err(OpenError::Replaced { path: shown() });
    }
    if meta.len() > MODULE_BYTES_MAX {
        return Err(OpenError::TooBig { path: shown(), size: meta.len() });
    }
    Ok(ModuleFile { size: meta.len(), dev: meta.dev(), inode: meta.ino(), file })
}

/// Opens the file behind mapping `m` of process `pid`: through its
/// map_files entry while the process lives, else by its path; either way
/// checked against the maps' device and inode.
pub fn open_mapped(pid: Option<u32>, m: &Mapping) -> Result<ModuleFile, OpenError> {
    let expect = m.dev.map(|d| (d, m.inode));
    if let Some(pid) = pid {
        // A magic link to the mapped file itself: following it is the point.
        let entry = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        if let Ok(f) = open_path(Path::new(&entry), true, expect) {
            return Ok(f);
        }
    }
    if !m.is_file() {
        // Deleted since it was mapped: only map_files still reaches it.
        return Err(OpenError::Open {
            path: m.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "deleted after it was mapped, and the process is gone"),
        });
    }
    open_path(Path::new(&m.path), false, expect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procmaps::parse_maps;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("crashtrace-modfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let p = scratch("fifo");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = open_path(&p, false, None).unwrap_err();
        assert!(matches!(err, OpenError::NotRegular { kind: "a FIFO", .. }), "{err}");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_symlink_is_not_followed_and_a_device_is_refused() {
        let p = scratch("zero");
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        assert!(matches!(open_path(&p, false, None), Err(OpenError::Open { .. })));
        let err = open_path(Path::new("/dev/zero"), false, None).unwrap_err();
        assert!(matches!(err, OpenError::NotRegular { kind: "a character device", .. }), "{err}");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_file_with_another_inode_is_refused() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let meta = std::fs::metadata(&exe).unwrap();
        let ok = open_path(&exe, false, Some((meta.dev(), meta.ino()))).unwrap();
        assert_eq!(ok.read_all().unwrap().len() as u64, meta.len());
        assert!(std::fs::metadata(ok.fd_path()).unwrap().ino() == meta.ino());
        let err = open_path(&exe, false, Some((meta.dev(), meta.ino() + 1))).unwrap_err();
        assert!(matches!(err, OpenError::Replaced { .. }), "{err}");
    }

    #[test]
    fn own_mappings_open_and_match_their_inode() {
        let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let m = maps.iter().find(|m| m.is_file()).expect("a file mapping");
        assert!(m.dev.is_some(), "{m:?}");
        let f = open_mapped(Some(std::process::id()), m).unwrap();
        assert_eq!(f.inode, m.inode);
        // The same, by path alone (as after the process is gone).
        assert_eq!(open_mapped(None, m).unwrap().inode, m.inode);
    }

    #[test]
    fn maps_device_numbers_decode() {
        assert_eq!(dev_from_maps("fd:01"), Some(libc::makedev(0xfd, 1)));
        assert_eq!(dev_from_maps("00:00"), Some(0));
        assert_eq!(dev_from_maps("x"), None);
    }
}

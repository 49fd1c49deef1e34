//! A writer for the cpio "newc" format, the one the kernel unpacks as an
//! initramfs. Writing the archive ourselves lets it hold device nodes
//! (/dev/console) and root-owned files without root or mknod on the host.

use std::collections::BTreeSet;

/// An in-memory newc archive. Parent directories are added on demand, so
/// every entry's directory precedes it, as the kernel's unpacker requires.
#[derive(Default)]
pub(super) struct Archive {
    data: Vec<u8>,
    dirs: BTreeSet<String>,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Archive {
    pub(super) fn new() -> Archive {
        Archive { next_ino: 1, ..Default::default() }
    }

    /// Adds a directory (and its parents) with mode 0755.
    pub(super) fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.to_string());
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), &[]);
    }

    pub(super) fn file(&mut self, path: &str, perm: u32, contents: &[u8]) {
        let path = self.parent_of(path);
        self.entry(&path, S_IFREG | (perm & 0o7777), 1, (0, 0), contents);
    }

    pub(super) fn symlink(&mut self, path: &str, target: &str) {
        let path = self.parent_of(path);
        self.entry(&path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub(super) fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        let path = self.parent_of(path);
        self.entry(&path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[]);
    }

    /// The finished archive, with its trailer.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        // The kernel reads the archive in 512-byte blocks; pad like cpio(1).
        while !self.data.len().is_multiple_of(512) {
            self.data.push(0);
        }
        self.data
    }

    /// Makes sure the entry's directory exists; returns the path without
    /// its leading slash.
    fn parent_of(&mut self, path: &str) -> String {
        let path = path.trim_start_matches('/').to_string();
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        path
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), contents: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let name_size = name.len() + 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so the archive is reproducible
            contents.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name_size as u32,
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for f in fields {
            self.data.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad4();
        self.data.extend_from_slice(contents);
        self.pad4();
    }

    fn pad4(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(header: &[u8], index: usize) -> u32 {
        let start = 6 + index * 8;
        u32::from_str_radix(std::str::from_utf8(&header[start..start + 8]).unwrap(), 16).unwrap()
    }

    /// Walks the archive the way the kernel does: (name, mode, contents).
    fn entries(data: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let header = &data[pos..pos + 110];
            assert_eq!(&header[..6], b"070701");
            let mode = field(header, 1);
            let size = field(header, 6) as usize;
            let name_size = field(header, 11) as usize;
            let name = String::from_utf8(data[pos + 110..pos + 110 + name_size - 1].to_vec()).unwrap();
            pos = (pos + 110 + name_size).next_multiple_of(4);
            let contents = data[pos..pos + size].to_vec();
            pos = (pos + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                return out;
            }
            out.push((name, mode, contents));
        }
    }

    #[test]
    fn parents_come_first_and_contents_round_trip() {
        let mut a = Archive::new();
        a.file("/bin/tool", 0o755, b"abc");
        a.symlink("/bin/sh", "busybox");
        a.char_device("/dev/console", 0o600, 5, 1);
        let data = a.finish();
        assert_eq!(data.len() % 512, 0);
        let e = entries(&data);
        let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["bin", "bin/tool", "bin/sh", "dev", "dev/console"]);
        assert_eq!(e[1].1, S_IFREG | 0o755);
        assert_eq!(e[1].2, b"abc");
        assert_eq!(e[2].1, S_IFLNK | 0o777);
        assert_eq!(e[2].2, b"busybox");
        assert_eq!(e[4].1, S_IFCHR | 0o600);
    }

    #[test]
    fn device_numbers_are_recorded() {
        let mut a = Archive::new();
        a.char_device("dev/console", 0o600, 5, 1);
        let data = a.finish();
        // The second entry ("dev" is first) holds the device.
        let second = (110 + "dev".len() + 1).next_multiple_of(4);
        assert_eq!(field(&data[second..], 9), 5);
        assert_eq!(field(&data[second..], 10), 1);
    }
}

//! One process's executable mappings, from the text of /proc/PID/maps:
//! what [`crate::symbolize`] names frames with and [`crate::unwind`] finds
//! unwind tables with. Pure parsing; the read itself is the caller's (in the
//! live tracer, [`crate::live::enrich`]).

/// One executable mapping of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    pub inode: u64,
    /// The file's device as `st_dev` holds it (None: not parsed).
    pub dev: Option<u64>,
    /// The file, or a special mapping such as `[vdso]`. A file deleted
    /// since it was mapped ends in " (deleted)", as the kernel prints it.
    pub path: String,
}

impl Mapping {
    /// A mapping of a file still on disk (not `[vdso]`, not deleted).
    pub fn is_file(&self) -> bool {
        self.path.starts_with('/') && !self.path.ends_with(" (deleted)")
    }
}

/// The executable, named mappings in the text of /proc/PID/maps. Lines that
/// do not parse are skipped: the file is the kernel's, its format stable.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode [path]; the path may hold spaces.
            let mut rest = line;
            let mut field = || {
                let s = rest.trim_start();
                let end = s.find(char::is_whitespace).unwrap_or(s.len());
                let (f, r) = s.split_at(end);
                rest = r;
                f
            };
            let range = field();
            let perms = field();
            let offset = field();
            let dev = field();
            let inode = field();
            let path = rest.trim();
            if !perms.contains('x') || path.is_empty() {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                inode: inode.parse().ok()?,
                dev: crate::modfile::dev_from_maps(dev),
                path: path.to_string(),
            })
        })
        .collect()
}

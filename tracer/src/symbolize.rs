//! Symbolisation of captured stacks, after the fact and off the event path.
//!
//! When a `StackCapture` arrives the process is still acting on its signal,
//! so its executable mappings are read from /proc/PID/maps then (by the
//! caller) and kept ([`Symbolizer::remember_maps`], bounded cache by
//! process). When the chain ends, each user frame is turned into module + file offset with those
//! mappings, and the module's ELF symbols (and DWARF, where present) name
//! it through `blazesym`. Kernel frames are named from /proc/kallsyms.
//!
//! If the process was gone before its maps could be read, the build-ids and
//! file offsets the kernel resolved for each frame are used instead: the
//! module is found through a build-id seen earlier or under
//! /usr/lib/debug/.build-id. A module whose build-id on disk differs from
//! the kernel's (replaced since the crash) is not named: a wrong name is
//! worse than none.
//!
//! Results are cached by (module identity, file offset), so a crash storm of
//! one bug symbolises once.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
};

use blazesym::{
    symbolize::{
        source::{Elf, Kernel, Source},
        Input, Symbolized, Symbolizer as Blaze,
    },
    MaybeDefault,
};

pub use crate::procmaps::{parse_maps, Mapping};
use crate::{
    event::hex,
    stack::{Frame, Stack},
};

/// Processes whose maps are kept while their chains are open.
const MAPS_MAX: usize = 256;
/// Stack copies kept (each up to 32 KiB) while their chains are open.
const COPIES_MAX: usize = 64;
/// Symbolised frames kept, by (module, offset).
const SYMBOLS_MAX: usize = 65_536;
/// Build-ids remembered with a path that had them, and files whose
/// build-id was read.
const BUILD_IDS_MAX: usize = 4096;
/// Distinct ELF files blazesym may hold open (mapped, parsed) before its
/// caches are dropped and rebuilt.
const OPEN_MODULES_MAX: usize = 64;

/// Where separate debug files are found by build-id.
const DEBUG_BUILD_ID_DIR: &str = "/usr/lib/debug/.build-id";

/// The PT_LOAD segment holding file offset `offset` of the ELF file at
/// `path`, from the headers at its start: (p_offset, p_vaddr, p_filesz).
fn load_segment(path: &Path, offset: u64) -> Option<(u64, u64, u64)> {
    use object::read::elf::{FileHeader, ProgramHeader};
    use std::io::Read;
    // ELF and program headers sit at the start of the file.
    let mut head = Vec::new();
    std::fs::File::open(path).ok()?.take(64 * 1024).read_to_end(&mut head).ok()?;
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&*head).ok()?;
    let endian = header.endian().ok()?;
    header.program_headers(endian, &*head).ok()?.iter().find_map(|ph| {
        let (off, size) = (ph.p_offset(endian), ph.p_filesz(endian));
        (ph.p_type(endian) == object::elf::PT_LOAD && off <= offset && offset < off + size).then(|| (off, ph.p_vaddr(endian), size))
    })
}

/// The virtual address (as the ELF file's program headers place it) of
/// file offset `offset`.
fn offset_to_vaddr(path: &Path, offset: u64) -> Option<u64> {
    let (off, vaddr, _) = load_segment(path, offset)?;
    Some(offset - off + vaddr)
}

/// The mapping a process must have had for `addr` to be at file offset
/// `offset` of the file open at `fd`: the segment's pages, placed so that
/// the offset lands on the address.
fn mapping_for(fd: &Path, path: &str, dev: u64, inode: u64, addr: u64, offset: u64) -> Option<Mapping> {
    const PAGE: u64 = 4096;
    let (off, _, size) = load_segment(fd, offset)?;
    let off_page = off & !(PAGE - 1);
    let start = addr.checked_sub(offset - off_page)?;
    let end = start.checked_add((off + size - off_page).div_ceil(PAGE) * PAGE)?;
    Some(Mapping { start, end, offset: off_page, inode, dev: Some(dev), path: path.to_string() })
}

/// "xx/yyyy" for a build-id under [`DEBUG_BUILD_ID_DIR`]. The kernel pads
/// build-ids to 20 bytes with zeros; GNU's are 20 bytes (SHA-1), so the
/// padding is only stripped from a shorter one.
fn build_id_subpath(build_id: &str) -> Option<String> {
    let mut id = build_id;
    if id.len() == 40 && id.ends_with("00000000") {
        id = id.trim_end_matches('0');
        if id.len() % 2 == 1 {
            id = &build_id[..id.len() + 1];
        }
    }
    if id.len() < 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.contains('/') {
        return None;
    }
    Some(format!("{}/{}", &id[..2], &id[2..]))
}

/// What reading a process's maps gave.
#[derive(Clone, Debug)]
enum Maps {
    Read(Vec<Mapping>),
    /// The reason they could not be read (usually: the process was gone).
    Failed(String),
}

/// A name found for one (module, offset).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Named {
    function: String,
    /// Offset of the looked-up address from the symbol's start.
    offset: u64,
    source: Option<String>,
}

/// What makes a module the same module: its build-id, else its path and
/// inode (a rebuilt binary at the same path gets a new inode).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ModuleKey {
    BuildId(String),
    File(String, u64),
    Kernel,
}

/// Counts for the summary and the benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub stacks: u64,
    pub frames: u64,
    /// Frames answered from the cache.
    pub cache_hits: u64,
}

/// The symboliser the live tracer keeps for its whole run.
pub struct Symbolizer {
    /// What was kept for stacks not yet symbolised.
    pub pending: Pending,
    unwinder: crate::unwind::StackUnwinder,
    /// build-id -> a file that had it.
    build_id_paths: HashMap<String, String>,
    /// (path, inode) -> the file's build-id, if it has one.
    file_build_ids: HashMap<(String, u64), Option<String>>,
    symbols: HashMap<(ModuleKey, u64), Option<Named>>,
    blaze: Blaze,
    /// Module files opened (and checked) since blazesym was last rebuilt,
    /// by (device, inode); blazesym reads them as /proc/self/fd/N, so they
    /// stay open as long as it may.
    files: HashMap<(u64, u64), crate::modfile::ModuleFile>,
    /// Whether this process's own modules (the C library and loader most
    /// crashers share) were added to `build_id_paths`.
    learned_own: bool,
    pub stats: Stats,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new()
    }
}

fn new_blaze() -> Blaze {
    Blaze::builder().enable_code_info(true).enable_inlined_fns(false).enable_demangling(true).build()
}

/// The file's build-id as the kernel reports it: 20 bytes, zero-padded.
fn padded(build_id: &str) -> String {
    let mut s = build_id.to_string();
    while s.len() < 40 {
        s.push('0');
    }
    s
}

/// What is kept for a stack between its capture and its symbolisation:
/// the process's maps (read while it lived) and the stack copy. Bounded,
/// by process; cheap to fill on the event loop.
#[derive(Default)]
pub struct Pending {
    maps: HashMap<u32, Maps>,
    maps_order: VecDeque<u32>,
    /// Stack copies by process: (SP, bytes from SP up).
    copies: HashMap<u32, (u64, Vec<u8>)>,
    copies_order: VecDeque<u32>,
    pub maps_read: u64,
    pub maps_failed: u64,
}

/// What [`Pending::take`] gives for one process.
#[derive(Debug, Default)]
pub struct Taken {
    maps: Option<Maps>,
    copy: Option<(u64, Vec<u8>)>,
}

impl Pending {
    /// Keeps the text of /proc/TGID/maps, read while the process lived (by
    /// [`crate::live::enrich`]), for a later [`Symbolizer::symbolize`]; `Err`
    /// says why it could not be read. Cheap: a parse.
    pub fn remember_maps(&mut self, tgid: u32, read: Result<String, String>) {
        let maps = match read {
            Ok(text) => {
                let maps = parse_maps(&text);
                if maps.is_empty() {
                    // An exiting process has already dropped its mm.
                    Maps::Failed("the process had no mappings left (already exiting)".into())
                } else {
                    Maps::Read(maps)
                }
            }
            Err(why) => Maps::Failed(why),
        };
        match &maps {
            Maps::Read(_) => self.maps_read += 1,
            Maps::Failed(_) => self.maps_failed += 1,
        }
        self.insert_maps(tgid, maps);
    }

    /// Uses `mappings` for process `tgid`, as if read from its maps.
    pub fn set_maps(&mut self, tgid: u32, mappings: Vec<Mapping>) {
        self.insert_maps(tgid, Maps::Read(mappings));
    }

    /// Keeps the copy of a dying thread's stack (`--stack-copy`) for
    /// unwinding when its chain ends.
    pub fn remember_stack_copy(&mut self, tgid: u32, sp: u64, data: Vec<u8>) {
        if self.copies.insert(tgid, (sp, data)).is_none() {
            self.copies_order.push_back(tgid);
        }
        while self.copies_order.len() > COPIES_MAX {
            if let Some(old) = self.copies_order.pop_front() {
                self.copies.remove(&old);
            }
        }
    }

    fn insert_maps(&mut self, tgid: u32, maps: Maps) {
        if self.maps.insert(tgid, maps).is_none() {
            self.maps_order.push_back(tgid);
        }
        while self.maps_order.len() > MAPS_MAX {
            if let Some(old) = self.maps_order.pop_front() {
                self.maps.remove(&old);
            }
        }
    }

    fn forget_maps(&mut self, tgid: u32) -> Option<Maps> {
        let maps = self.maps.remove(&tgid)?;
        self.maps_order.retain(|t| *t != tgid);
        Some(maps)
    }

    /// Takes (and forgets) what was kept for process `tgid`.
    pub fn take(&mut self, tgid: u32) -> Taken {
        let maps = self.forget_maps(tgid);
        let copy = self.copies.remove(&tgid);
        if copy.is_some() {
            self.copies_order.retain(|t| *t != tgid);
        }
        Taken { maps, copy }
    }
}

impl Symbolizer {
    pub fn new() -> Symbolizer {
        Symbolizer {
            pending: Pending::default(),
            unwinder: crate::unwind::StackUnwinder::new(),
            build_id_paths: HashMap::new(),
            file_build_ids: HashMap::new(),
            symbols: HashMap::new(),
            blaze: new_blaze(),
            files: HashMap::new(),
            learned_own: false,
            stats: Stats::default(),
        }
    }

    /// See [`Pending::remember_maps`].
    pub fn remember_maps(&mut self, tgid: u32, read: Result<String, String>) {
        self.pending.remember_maps(tgid, read);
    }

    /// See [`Pending::set_maps`].
    pub fn set_maps(&mut self, tgid: u32, mappings: Vec<Mapping>) {
        self.pending.set_maps(tgid, mappings);
    }

    /// See [`Pending::remember_stack_copy`].
    pub fn remember_stack_copy(&mut self, tgid: u32, sp: u64, data: Vec<u8>) {
        self.pending.remember_stack_copy(tgid, sp, data);
    }

    /// Processes whose maps are held.
    pub fn held_maps(&self) -> usize {
        self.pending.maps.len()
    }

    /// Merges the frame-pointer frames with an `.eh_frame` unwind over the
    /// stack copy: see [`crate::unwind::merge`].
    fn unwind_copy(&mut self, pid: Option<u32>, stack: &mut Stack, copy: Option<(u64, Vec<u8>)>, mappings: &[Mapping]) {
        let Some((copy_sp, data)) = copy else {
            stack.notes.push("no stack copy arrived (lost, or none taken): the frame-pointer walk alone".into());
            return;
        };
        let (Some(ip), Some(sp), Some(bp)) = (stack.ip, stack.sp, stack.bp) else { return };
        let unwound = self.unwinder.unwind(pid, ip, sp, bp, copy_sp, &data, mappings);
        let fp: Vec<u64> = stack.user.iter().map(|f| f.addr).collect();
        let (frames, by) = crate::unwind::merge(&fp, &unwound.frames, unwound.stopped.is_none());
        let stopped = unwound.stopped.as_deref().map(|s| format!(" (it stopped: {s})")).unwrap_or_default();
        stack.notes.push(format!(
            "the .eh_frame unwind over {} bytes of stack gave {} frames, the frame-pointer walk {}; kept {} ({}){stopped}",
            data.len(),
            unwound.frames.len(),
            fp.len(),
            frames.len(),
            by.name()
        ));
        if frames != fp {
            let old = std::mem::take(&mut stack.user);
            stack.user = frames
                .iter()
                .map(|&addr| old.iter().find(|f| f.addr == addr).cloned().unwrap_or_else(|| Frame::raw(addr)))
                .collect();
        }
        stack.unwound_by = Some(by.name().into());
    }

    /// Fills in modules, offsets, build-ids and names for `stack`, taken
    /// from process `tgid`, and forgets that process's maps.
    pub fn symbolize(&mut self, tgid: u32, stack: &mut Stack) {
        let taken = self.pending.take(tgid);
        self.symbolize_taken(tgid, stack, taken);
    }

    /// [`Symbolizer::symbolize`] with what was kept for the process given
    /// (taken from a [`Pending`] elsewhere: the live tracer keeps it on its
    /// event loop and symbolises on a worker thread).
    pub fn symbolize_taken(&mut self, tgid: u32, stack: &mut Stack, taken: Taken) {
        self.stats.stacks += 1;
        let Taken { maps, copy } = taken;
        // map_files while the process lives; its paths (checked) after.
        let mut pid = Some(tgid);
        let synthetic: Vec<Mapping>;
        let mappings = match &maps {
            Some(Maps::Read(m)) => {
                stack.symbolized_from = Some("proc-maps".into());
                Some(m.as_slice())
            }
            other => {
                stack.notes.push(match other {
                    Some(Maps::Failed(why)) => format!("no mappings: {why}"),
                    _ => "no mappings were read for this process".into(),
                });
                // Gone before its maps were read: where its modules were,
                // from the kernel's build-id + file offset of each frame
                // and a file known to have that build-id.
                synthetic = self.mappings_from_build_ids(stack);
                pid = None;
                (!synthetic.is_empty()).then(|| {
                    stack.symbolized_from = Some("build-id".into());
                    synthetic.as_slice()
                })
            }
        };
        if let Some(mappings) = mappings {
            for m in mappings {
                self.learn_build_id(pid, m);
            }
            self.unwind_copy(pid, stack, copy, mappings);
            stack.end_at_unmapped(|a| mappings.iter().any(|m| m.start <= a && a < m.end));
        } else if copy.is_some() {
            stack.notes.push("a stack copy was taken, but without the process's mappings it cannot be unwound".into());
        }
        let mut notes = Vec::new();
        let mut used_build_ids = false;
        for i in 0..stack.user.len() {
            // A return address points after its call; look up the call.
            let adjust = if i == 0 { 0 } else { 1 };
            let frame = &mut stack.user[i];
            let mut located = mappings.and_then(|m| self.locate_in_maps(pid, frame, m, &mut notes));
            if located.is_none() && frame.module.is_none() {
                // Gone before its maps were read, or outside them: the
                // kernel's build-id and file offset.
                located = self.locate_by_build_id(frame);
                used_build_ids |= frame.build_id.is_some();
            }
            if let Some((key, fd)) = located {
                self.name_frame(frame, key, &fd, adjust);
            }
        }
        if mappings.is_none() && used_build_ids {
            stack.symbolized_from = Some("build-id".into());
        }
        for i in 0..stack.kernel.len() {
            let adjust = if i == 0 { 0 } else { 1 };
            self.name_kernel_frame(&mut stack.kernel[i], adjust);
        }
        // The walk starts inside crashtrace's own program and the
        // tracepoint's dispatch; those frames say nothing of the crash.
        let ours = stack.kernel.iter().take_while(|f| f.function.as_deref().is_some_and(is_tracing_frame)).count();
        stack.kernel.drain(..ours);
        notes.dedup();
        stack.notes.extend(notes);
        if stack.user.iter().all(|f| f.function.is_none()) && !stack.user.is_empty() {
            stack.notes.push("no user frame could be named (see the notes above; module, offset and build-id are kept)".into());
        }
        if self.files.len() > OPEN_MODULES_MAX {
            // blazesym keeps every file it opened mapped, and the files are
            // held open for it; start afresh rather than grow without bound.
            // Names already found stay cached.
            self.blaze = new_blaze();
            self.files.clear();
        }
    }

    /// Opens the file behind mapping `m` (see [`crate::modfile`]) and keeps
    /// it open while blazesym may read it; returns a path naming the open
    /// file, never the crasher's path.
    fn open_mapped(&mut self, pid: Option<u32>, m: &Mapping) -> Result<PathBuf, String> {
        let f = crate::modfile::open_mapped(pid, m).map_err(|e| e.to_string())?;
        Ok(self.keep(f))
    }

    fn keep(&mut self, f: crate::modfile::ModuleFile) -> PathBuf {
        let key = (f.dev, f.inode);
        self.files.entry(key).or_insert(f).fd_path()
    }

    fn learn_build_id(&mut self, pid: Option<u32>, m: &Mapping) {
        if !m.is_file() {
            return;
        }
        let Ok(fd) = self.open_mapped(pid, m) else { return };
        if let Some(Some(id)) = self.file_build_id(&fd, &m.path, m.inode) {
            bounded_insert(&mut self.build_id_paths, padded(&id), m.path.clone(), BUILD_IDS_MAX);
        }
    }

    /// The build-id of the open file `fd` (cached by its path and inode).
    fn file_build_id(&mut self, fd: &Path, path: &str, inode: u64) -> Option<Option<String>> {
        let key = (path.to_string(), inode);
        if let Some(id) = self.file_build_ids.get(&key) {
            return Some(id.clone());
        }
        let id = match blazesym::helper::read_elf_build_id(fd) {
            Ok(id) => id.map(|b| hex(&b)),
            // Unreadable (not ELF, truncated): no answer, not "none".
            Err(_) => return None,
        };
        bounded_insert(&mut self.file_build_ids, key, id.clone(), BUILD_IDS_MAX);
        Some(id)
    }

    /// Module, file offset and build-id of `frame` from the process's
    /// mappings. Returns the key and the open file to name it with, if it
    /// can be.
    fn locate_in_maps(
        &mut self,
        pid: Option<u32>,
        frame: &mut Frame,
        mappings: &[Mapping],
        notes: &mut Vec<String>,
    ) -> Option<(ModuleKey, PathBuf)> {
        // Outside every mapping, the kernel's build-id and offset (if any)
        // are all there is, and stay.
        let m = mappings.iter().find(|m| m.start <= frame.addr && frame.addr < m.end)?;
        let kernel_id = frame.build_id.take();
        frame.module = Some(m.path.clone());
        if !m.path.starts_with('/') {
            // [vdso] and the like: no file to read symbols from.
            frame.build_id = kernel_id;
            return None;
        }
        frame.file_offset = Some(frame.addr - m.start + m.offset);
        let fd = match self.open_mapped(pid, m) {
            Ok(fd) => fd,
            Err(why) => {
                frame.build_id = kernel_id;
                notes.push(format!("{}: its frames are not named: {why}", m.path));
                return None;
            }
        };
        let disk_id = self.file_build_id(&fd, &m.path, m.inode).flatten();
        frame.build_id = kernel_id.clone().or_else(|| disk_id.clone());
        if let (Some(k), Some(d)) = (&kernel_id, &disk_id)
            && padded(d) != *k
        {
            notes.push(format!("{} was replaced since the crash (build-id {d}, was {k}); its frames are not named", m.path));
            return None;
        }
        let key = match &disk_id {
            Some(id) => ModuleKey::BuildId(padded(id)),
            None => ModuleKey::File(m.path.clone(), m.inode),
        };
        Some((key, fd))
    }

    /// Module of `frame` from the kernel's build-id alone (the process was
    /// gone): a file seen earlier with that build-id. A separate debug file
    /// (/usr/lib/debug/.build-id) is not enough on its own: its program
    /// headers do not keep the file offsets the kernel's offset is relative
    /// to (see [`Symbolizer::name_from_debug_file`]).
    fn locate_by_build_id(&mut self, frame: &mut Frame) -> Option<(ModuleKey, PathBuf)> {
        let id = frame.build_id.clone()?;
        let (path, fd, _) = self.file_by_build_id(&id)?;
        frame.module = Some(path);
        Some((ModuleKey::BuildId(id), fd))
    }

    /// A file that has build-id `id` (as the kernel pads it): seen in an
    /// earlier process's maps, mapped by this process, or linked from the
    /// debug directory. Returns its path, the open file, and the file.
    fn file_by_build_id(&mut self, id: &str) -> Option<(String, PathBuf, (u64, u64))> {
        if !self.build_id_paths.contains_key(id) && !self.learned_own {
            // Once, and only when needed: most crashers share libc and the
            // loader with this process, so its own maps name those.
            self.learned_own = true;
            let own = std::fs::read_to_string("/proc/self/maps").map(|t| parse_maps(&t)).unwrap_or_default();
            let me = std::process::id();
            for m in &own {
                self.learn_build_id(Some(me), m);
            }
        }
        let path = match self.build_id_paths.get(id) {
            Some(p) => p.clone(),
            // The binary itself, linked from the debug directory by its
            // build-id (as Fedora's packages do: .build-id/xx/yyyy -> the
            // installed file).
            None => format!("{DEBUG_BUILD_ID_DIR}/{}", build_id_subpath(id)?),
        };
        // Only a regular file that still has this build-id may name a frame.
        let follow = path.starts_with(DEBUG_BUILD_ID_DIR);
        let f = crate::modfile::open_path(Path::new(&path), follow, None).ok()?;
        let file = (f.dev, f.inode);
        let fd = self.keep(f);
        match self.file_build_id(&fd, &path, file.1).flatten() {
            Some(d) if padded(&d) == id => Some((path, fd, file)),
            _ => None,
        }
    }

    /// Mappings rebuilt from the kernel's build-id + file offset of each
    /// frame, for a process gone before its maps were read: enough to
    /// unwind the stack copy and name frames as if the maps had been read.
    fn mappings_from_build_ids(&mut self, stack: &Stack) -> Vec<Mapping> {
        let mut out: Vec<Mapping> = Vec::new();
        for f in &stack.user {
            let (Some(id), Some(offset)) = (&f.build_id, f.file_offset) else { continue };
            if out.iter().any(|m| m.start <= f.addr && f.addr < m.end) {
                continue;
            }
            let Some((path, fd, (dev, inode))) = self.file_by_build_id(id) else { continue };
            if let Some(m) = mapping_for(&fd, &path, dev, inode, f.addr, offset) {
                out.push(m);
            }
        }
        out
    }

    fn name_frame(&mut self, frame: &mut Frame, key: ModuleKey, fd: &Path, adjust: u64) {
        self.stats.frames += 1;
        let Some(offset) = frame.file_offset else { return };
        let lookup = offset.saturating_sub(adjust);
        let cache_key = (key, lookup);
        let named = match self.symbols.get(&cache_key) {
            Some(n) => {
                self.stats.cache_hits += 1;
                n.clone()
            }
            None => {
                let src = Source::Elf(Elf::new(fd.to_path_buf()));
                let mut n = self.lookup(&src, Input::FileOffset(lookup));
                if n.is_none()
                    && let Some(id) = frame.build_id.clone()
                {
                    n = self.name_from_debug_file(fd, &id, lookup);
                }
                bounded_insert(&mut self.symbols, cache_key, n.clone(), SYMBOLS_MAX);
                n
            }
        };
        if let Some(n) = named {
            frame.function = Some(n.function);
            frame.function_offset = Some(n.offset + adjust);
            frame.source = n.source;
        }
    }

    /// A name for file offset `offset` of the (stripped) module open at
    /// `module` from its separate debug file, found by build-id under
    /// [`DEBUG_BUILD_ID_DIR`]: the module's program headers turn the offset
    /// into an address, which the debug file's symbols name.
    fn name_from_debug_file(&mut self, module: &Path, build_id: &str, offset: u64) -> Option<Named> {
        let path = PathBuf::from(format!("{DEBUG_BUILD_ID_DIR}/{}.debug", build_id_subpath(build_id)?));
        // The debug directory is root's: its symlinks are followed.
        let f = crate::modfile::open_path(&path, true, None).ok()?;
        let debug = self.keep(f);
        let vaddr = offset_to_vaddr(module, offset)?;
        self.lookup(&Source::Elf(Elf::new(debug)), Input::VirtOffset(vaddr))
    }

    fn name_kernel_frame(&mut self, frame: &mut Frame, adjust: u64) {
        self.stats.frames += 1;
        frame.module = Some("[kernel]".into());
        let lookup = frame.addr.saturating_sub(adjust);
        let cache_key = (ModuleKey::Kernel, lookup);
        let named = match self.symbols.get(&cache_key) {
            Some(n) => {
                self.stats.cache_hits += 1;
                n.clone()
            }
            None => {
                let src = Source::Kernel(Kernel {
                    kallsyms: MaybeDefault::Default,
                    // Searching for and parsing a vmlinux image costs far more
                    // than a crash report is worth; kallsyms names functions.
                    vmlinux: MaybeDefault::None,
                    debug_syms: false,
                    ..Kernel::default()
                });
                let n = self.lookup(&src, Input::AbsAddr(lookup));
                bounded_insert(&mut self.symbols, cache_key, n.clone(), SYMBOLS_MAX);
                n
            }
        };
        if let Some(n) = named {
            frame.function = Some(n.function);
            frame.function_offset = Some(n.offset + adjust);
        }
    }

    /// Names `file_offset` in the ELF file at `path`: how a stack recorded
    /// on one machine (module build-id + file offset) is symbolised on
    /// another, against a copy of the module with the same build-id.
    /// `return_address`: the offset is a return address (every frame but
    /// the first), so the call before it is looked up. Returns the function
    /// and the offset's distance from its start.
    pub fn name_in_file(&mut self, path: &Path, file_offset: u64, return_address: bool) -> Option<(String, u64)> {
        let adjust = u64::from(return_address);
        let src = Source::Elf(Elf::new(path.to_path_buf()));
        let named = self.lookup(&src, Input::FileOffset(file_offset.checked_sub(adjust)?))?;
        Some((named.function, named.offset + adjust))
    }

    fn lookup(&self, src: &Source, input: Input<u64>) -> Option<Named> {
        let found = match self.blaze.symbolize_single(src, input) {
            Ok(found) => found,
            // Unreadable debug info (an unsupported compression, a broken
            // debug link) must not cost the name the symbol table gives.
            Err(_) => match src {
                Source::Elf(elf) => {
                    let plain = Source::Elf(Elf { debug_syms: false, ..Elf::new(elf.path.clone()) });
                    self.blaze.symbolize_single(&plain, input).ok()?
                }
                _ => return None,
            },
        };
        match found {
            Symbolized::Sym(sym) => Some(Named {
                function: sym.name.to_string(),
                offset: sym.offset as u64,
                source: sym.code_info.as_ref().map(|c| match c.line {
                    Some(line) => format!("{}:{line}", c.file.to_string_lossy()),
                    None => c.file.to_string_lossy().into_owned(),
                }),
            }),
            Symbolized::Unknown(_) => None,
        }
    }
}

/// Frames of the BPF program and the tracepoint machinery that ran it.
fn is_tracing_frame(function: &str) -> bool {
    function.starts_with("bpf_prog_")
        || function.starts_with("bpf_trace_run")
        || function.starts_with("__bpf_trace_")
        || function.starts_with("bpf_get_stack")
        || function.starts_with("__traceiter_")
        || function == "bpf_trampoline"
}

/// Inserts into a cache map, first dropping an arbitrary entry when full:
/// a cache, not a record, so any entry may go.
fn bounded_insert<K: std::hash::Hash + Eq + Clone, V>(map: &mut HashMap<K, V>, key: K, value: V, max: usize) {
    if map.len() >= max
        && !map.contains_key(&key)
        && let Some(k) = map.keys().next().cloned()
    {
        map.remove(&k);
    }
    map.insert(key, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c9a1c000-55d0c9a1d000 r--p 00000000 fe:01 1234                       /tmp/dir with space/deep
55d0c9a1d000-55d0c9a1e000 r-xp 00001000 fe:01 1234                       /tmp/dir with space/deep
55d0c9a20000-55d0c9a41000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000028000 r--p 00000000 fe:01 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000028000-7f000019d000 r-xp 00028000 fe:01 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f00001a0000-7f00001a1000 r-xp 00000000 00:00 0 
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
7ffd00010000-7ffd00011000 r-xp 00002000 fe:01 77                         /opt/old (deleted)
garbage line
";

    #[test]
    fn parses_executable_named_mappings() {
        let m = parse_maps(MAPS);
        let paths: Vec<&str> = m.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, vec!["/tmp/dir with space/deep", "/usr/lib/x86_64-linux-gnu/libc.so.6", "[vdso]", "/opt/old (deleted)"]);
        assert_eq!(m[0], Mapping { start: 0x55d0c9a1d000, end: 0x55d0c9a1e000, offset: 0x1000, inode: 1234, dev: Some(libc::makedev(0xfe, 1)), path: "/tmp/dir with space/deep".into() });
        assert!(!m[3].is_file());
    }

    #[test]
    fn frames_get_modules_and_file_offsets_from_maps() {
        let mut s = Symbolizer::new();
        s.set_maps(42, parse_maps(MAPS));
        let mut stack = Stack {
            user: vec![
                Frame::raw(0x55d0c9a1d139),
                Frame::raw(0x7f0000029000),
                Frame::raw(0x7ffd00000100),
                Frame::raw(0x7ffd00010010),
                Frame { addr: 0x1234, build_id: Some("cd".repeat(20)), file_offset: Some(0x40), ..Frame::default() },
            ],
            ..Stack::default()
        };
        s.symbolize(42, &mut stack);
        assert_eq!(stack.symbolized_from.as_deref(), Some("proc-maps"));
        let u = &stack.user;
        assert_eq!(u[0].module.as_deref(), Some("/tmp/dir with space/deep"));
        assert_eq!(u[0].file_offset, Some(0x1139));
        // The files do not exist here: modules and offsets, but no names.
        assert_eq!(u[0].function, None);
        assert_eq!(u[1].file_offset, Some(0x29000));
        assert_eq!(u[2].module.as_deref(), Some("[vdso]"));
        assert_eq!(u[2].file_offset, None);
        assert_eq!(u[3].module.as_deref(), Some("/opt/old (deleted)"));
        assert_eq!(u[3].file_offset, Some(0x2010));
        assert_eq!(u[4].module, None, "an address outside every mapping has no module");
        assert_eq!(u[4].build_id, Some("cd".repeat(20)), "the kernel's build-id stays");
        assert_eq!(u[4].file_offset, Some(0x40));
        assert!(stack.notes.iter().any(|n| n.contains("/opt/old (deleted): its frames are not named: cannot open /opt/old (deleted): deleted after it was mapped")), "{:?}", stack.notes);
        // A file at the path with another inode than the maps say is not read.
        assert!(stack.notes.iter().any(|n| n.contains("libc.so.6 is not the file the process mapped")), "{:?}", stack.notes);
        assert_eq!(s.held_maps(), 0, "maps are forgotten once used");
    }

    #[test]
    fn missing_maps_are_said_and_build_ids_kept() {
        let mut s = Symbolizer::new();
        let id = "ab".repeat(20);
        let mut stack = Stack {
            user: vec![Frame { addr: 0x55d0c9a1d139, build_id: Some(id.clone()), file_offset: Some(0x1139), ..Frame::default() }],
            ..Stack::default()
        };
        s.symbolize(7, &mut stack);
        assert_eq!(stack.user[0].build_id.as_deref(), Some(id.as_str()));
        assert_eq!(stack.user[0].file_offset, Some(0x1139));
        assert_eq!(stack.user[0].function, None);
        assert_eq!(stack.symbolized_from.as_deref(), Some("build-id"));
        assert!(stack.notes.iter().any(|n| n.contains("no mappings were read")), "{:?}", stack.notes);
    }

    #[test]
    fn names_a_function_of_this_test_binary() {
        // This test's own executable has symbols: map it as a process would
        // and look up the address of a known function.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let addr = bounded_insert::<u8, u8> as *const () as u64;
        assert!(maps.iter().any(|m| m.start <= addr && addr < m.end && Path::new(&m.path) == exe), "own code is mapped from {exe:?}");
        let mut s = Symbolizer::new();
        s.set_maps(1, maps);
        let mut stack = Stack { user: vec![Frame::raw(addr)], ..Stack::default() };
        s.symbolize(1, &mut stack);
        let f = &stack.user[0];
        assert!(f.function.as_deref().unwrap_or("").contains("bounded_insert"), "{f:?}");
        assert_eq!(f.function_offset, Some(0));
        assert!(f.build_id.is_some(), "cargo links with a build-id: {f:?}");
        // The same frame again comes from the cache.
        s.set_maps(1, parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap()));
        let mut again = Stack { user: vec![Frame::raw(addr)], ..Stack::default() };
        s.symbolize(1, &mut again);
        assert_eq!(again.user[0], stack.user[0]);
        assert_eq!(s.stats.cache_hits, 1);
    }

    #[test]
    fn build_id_alone_names_a_module_this_process_also_maps() {
        // The crasher is gone (no maps), but the kernel gave build-id + file
        // offset, and the module is one this process maps too.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let addr = bounded_insert::<u16, u16> as *const () as u64;
        let m = maps.iter().find(|m| m.start <= addr && addr < m.end).expect("own code is mapped");
        let id = hex(&blazesym::helper::read_elf_build_id(&exe).unwrap().expect("cargo links with a build-id"));
        let offset = addr - m.start + m.offset;
        let mut s = Symbolizer::new();
        let mut stack = Stack {
            user: vec![Frame { addr, build_id: Some(padded(&id)), file_offset: Some(offset), ..Frame::default() }],
            ..Stack::default()
        };
        s.symbolize(99, &mut stack);
        assert_eq!(stack.symbolized_from.as_deref(), Some("build-id"));
        let f = &stack.user[0];
        assert_eq!(f.module.as_deref(), exe.to_str());
        assert!(f.function.as_deref().unwrap_or("").contains("bounded_insert"), "{f:?}");
        // A build-id nobody has stays unnamed.
        let mut other = Stack {
            user: vec![Frame { addr, build_id: Some("ee".repeat(20)), file_offset: Some(offset), ..Frame::default() }],
            ..Stack::default()
        };
        s.symbolize(98, &mut other);
        assert_eq!(other.user[0].function, None);
        assert_eq!(other.user[0].module, None);
    }

    #[test]
    fn a_module_replaced_since_the_crash_is_not_named() {
        // The kernel saw one build-id at the crash; the file at that path now
        // has another (this test binary's). Its names would be wrong.
        let addr = bounded_insert::<u32, u32> as *const () as u64;
        let mut s = Symbolizer::new();
        s.set_maps(5, parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap()));
        let mut stack = Stack {
            user: vec![Frame { addr, build_id: Some("ee".repeat(20)), file_offset: Some(1), ..Frame::default() }],
            ..Stack::default()
        };
        s.symbolize(5, &mut stack);
        let f = &stack.user[0];
        assert_eq!(f.function, None, "{f:?}");
        assert_eq!(f.build_id, Some("ee".repeat(20)), "the build-id seen at the crash is kept");
        assert!(stack.notes.iter().any(|n| n.contains("was replaced since the crash")), "{:?}", stack.notes);
    }

    #[test]
    fn build_id_paths_keep_sha1_ids_and_drop_the_kernels_padding() {
        let sha1 = "6eeba2cf8765215f6dfaf4b50442547a14d7238c";
        assert_eq!(build_id_subpath(sha1).as_deref(), Some("6e/eba2cf8765215f6dfaf4b50442547a14d7238c"));
        assert_eq!(build_id_subpath(&padded("abcdef12")).as_deref(), Some("ab/cdef12"));
        assert_eq!(build_id_subpath("../../etc"), None);
        assert_eq!(build_id_subpath("ab"), None);
    }

    #[test]
    fn file_offsets_become_addresses_by_the_program_headers() {
        // This test binary: its own code's file offset and address differ
        // by the load bias alone.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let addr = bounded_insert::<u64, u64> as *const () as u64;
        let m = maps.iter().find(|m| m.start <= addr && addr < m.end).expect("own code is mapped");
        let offset = addr - m.start + m.offset;
        let vaddr = offset_to_vaddr(&exe, offset).expect("offset in a PT_LOAD");
        // The bias is a multiple of the page size.
        assert_eq!((addr - vaddr) % 4096, 0, "{addr:#x} {vaddr:#x}");
        assert_eq!(offset_to_vaddr(&exe, u64::MAX / 2), None);
    }

    #[test]
    fn maps_cache_is_bounded() {
        let mut s = Symbolizer::new();
        for pid in 0..(MAPS_MAX as u32 + 50) {
            s.set_maps(pid, Vec::new());
        }
        assert_eq!(s.held_maps(), MAPS_MAX);
    }
}

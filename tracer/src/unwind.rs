//! Unwinding a copied user stack (`--stack-copy`) with the modules' DWARF
//! call-frame information (`.eh_frame`), through `framehop`: the frames of
//! code built without frame pointers, which the kernel's frame-pointer walk
//! cannot follow.
//!
//! Inputs are what was captured at the fatal signal: the user IP, SP and BP,
//! the bytes of stack above SP, and the process's executable mappings. The
//! modules' unwind sections are read from their files (cached by path and
//! inode). The unwind stops where the copy ends, at the outermost frame, or
//! at the first address no module covers.

use std::{
    collections::HashMap,
    num::NonZeroU64,
    ops::Range,
    sync::Arc,
};

use framehop::{
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
    ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder,
};
use object::{Object, ObjectSection, ObjectSegment};

use crate::procmaps::Mapping;

/// Frames an unwind may produce.
const FRAMES_MAX: usize = 128;
/// Modules whose unwind sections are kept.
const MODULES_MAX: usize = 32;

type Bytes = Arc<[u8]>;

/// The parts of one ELF file unwinding needs.
struct ModuleData {
    text: Option<(Range<u64>, Bytes)>,
    eh_frame: Option<(Range<u64>, Bytes)>,
    eh_frame_hdr: Option<(Range<u64>, Bytes)>,
    got: Option<Range<u64>>,
    /// Executable PT_LOAD segments: (file offset, virtual address, file size).
    loads: Vec<(u64, u64, u64)>,
}

impl ModuleData {
    /// The module behind `m`, opened as [`crate::modfile`] does (never a
    /// FIFO, a device or a replaced file; size capped).
    fn read(pid: Option<u32>, m: &Mapping) -> Option<ModuleData> {
        let bytes = crate::modfile::open_mapped(pid, m).ok()?.read_all().ok()?;
        let file = object::File::parse(&*bytes).ok()?;
        let section = |name: &str| {
            let s = file.section_by_name(name)?;
            let data: Bytes = Arc::from(s.data().ok()?);
            Some((s.address()..s.address() + s.size(), data))
        };
        const PF_X: u32 = 1;
        let loads = file
            .segments()
            .filter(|seg| matches!(seg.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0))
            .map(|seg| {
                let (offset, size) = seg.file_range();
                (offset, seg.address(), size)
            })
            .collect();
        Some(ModuleData {
            text: section(".text"),
            eh_frame: section(".eh_frame"),
            eh_frame_hdr: section(".eh_frame_hdr"),
            got: file.section_by_name(".got").map(|s| s.address()..s.address() + s.size()),
            loads,
        })
    }

    /// The load bias of a module from one of its executable mappings:
    /// where the executable segment it maps was put, minus where the file
    /// says. The kernel maps whole pages, so a segment whose file offset is
    /// not page-aligned starts mid-page, at the same in-page offset as its
    /// virtual address.
    fn bias(&self, m: &Mapping) -> Option<u64> {
        const PAGE: u64 = 4096;
        let (offset, vaddr, _) = self
            .loads
            .iter()
            .find(|(off, _, size)| (off & !(PAGE - 1)) <= m.offset && m.offset < off + size)?;
        let page_svma = (vaddr & !(PAGE - 1)).checked_add(m.offset - (offset & !(PAGE - 1)))?;
        m.start.checked_sub(page_svma)
    }
}

/// Unwinds captured stacks; keeps module data between crashes.
#[derive(Default)]
pub struct StackUnwinder {
    modules: HashMap<(String, u64), Option<Arc<ModuleData>>>,
}

/// What an unwind gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unwound {
    /// The IP, then return addresses.
    pub frames: Vec<u64>,
    /// Why it stopped before the outermost frame, if it did.
    pub stopped: Option<String>,
}

impl StackUnwinder {
    pub fn new() -> StackUnwinder {
        StackUnwinder::default()
    }

    fn module(&mut self, pid: Option<u32>, m: &Mapping) -> Option<Arc<ModuleData>> {
        let key = (m.path.clone(), m.inode);
        if let Some(found) = self.modules.get(&key) {
            return found.clone();
        }
        if self.modules.len() >= MODULES_MAX {
            // A cache: start afresh rather than grow.
            self.modules.clear();
        }
        let data = ModuleData::read(pid, m).map(Arc::new);
        self.modules.insert(key, data.clone());
        data
    }

    /// Unwinds from the registers through `stack` (the bytes at `stack_sp`
    /// and up), with the modules of `mappings` (of process `pid`, while it
    /// lives: its files are opened through /proc/PID/map_files).
    #[allow(clippy::too_many_arguments)]
    pub fn unwind(
        &mut self,
        pid: Option<u32>,
        ip: u64,
        sp: u64,
        bp: u64,
        stack_sp: u64,
        stack: &[u8],
        mappings: &[Mapping],
    ) -> Unwound {
        let mut unwinder: UnwinderX86_64<Bytes> = UnwinderX86_64::new();
        let mut added: Vec<&str> = Vec::new();
        for m in mappings.iter().filter(|m| m.path.starts_with('/') && !m.path.ends_with(" (deleted)")) {
            if added.contains(&m.path.as_str()) {
                continue;
            }
            let Some(data) = self.module(pid, m) else { continue };
            let Some(bias) = data.bias(m) else { continue };
            // The module spans all its executable mappings.
            let start = mappings.iter().filter(|o| o.path == m.path).map(|o| o.start).min().unwrap_or(m.start);
            let end = mappings.iter().filter(|o| o.path == m.path).map(|o| o.end).max().unwrap_or(m.end);
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: data.text.as_ref().map(|(r, _)| r.clone()),
                text: data.text.as_ref().map(|(_, d)| d.clone()),
                got_svma: data.got.clone(),
                eh_frame_svma: data.eh_frame.as_ref().map(|(r, _)| r.clone()),
                eh_frame: data.eh_frame.as_ref().map(|(_, d)| d.clone()),
                eh_frame_hdr_svma: data.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
                eh_frame_hdr: data.eh_frame_hdr.as_ref().map(|(_, d)| d.clone()),
                ..Default::default()
            };
            unwinder.add_module(Module::new(m.path.clone(), start..end, bias, info));
            added.push(&m.path);
        }
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let at = addr.checked_sub(stack_sp).ok_or(())? as usize;
            let word = stack.get(at..at.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
        };
        let mut cache = CacheX86_64::new();
        let mut frames = Vec::new();
        let mut iter = unwinder.iter_frames(ip, UnwindRegsX86_64::new(ip, sp, bp), &mut cache, &mut read_stack);
        let stopped = loop {
            if frames.len() >= FRAMES_MAX {
                break Some(format!("stopped after {FRAMES_MAX} frames"));
            }
            match iter.next() {
                Ok(Some(FrameAddress::InstructionPointer(a))) => frames.push(a),
                Ok(Some(FrameAddress::ReturnAddress(a))) => frames.push(NonZeroU64::get(a)),
                Ok(None) => break None,
                Err(e) => break Some(format!("{e}")),
            }
        };
        Unwound { frames, stopped }
    }
}

/// How a stack's user frames were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwoundBy {
    /// All from the `.eh_frame` unwind over the stack copy.
    EhFrame,
    /// All from the kernel's frame-pointer walk.
    FramePointer,
    /// The `.eh_frame` unwind for the innermost frames, then the
    /// frame-pointer walk from where the two meet.
    Mixed,
}

impl UnwoundBy {
    pub fn name(self) -> &'static str {
        match self {
            UnwoundBy::EhFrame => "eh_frame",
            UnwoundBy::FramePointer => "frame-pointer",
            UnwoundBy::Mixed => "mixed",
        }
    }
}

/// The user frames to keep, from the kernel's frame-pointer walk `fp` and
/// the `.eh_frame` unwind `eh` over the stack copy (`eh_complete`: it
/// reached the outermost frame rather than the end of the copy or an
/// address no module covers).
///
/// The frame-pointer walk misses the caller of a function that has no
/// frame of its own (a leaf, an asm string function) and follows garbage
/// through code built without frame pointers; the `.eh_frame` unwind is
/// exact but ends where the copy ends. So the `.eh_frame` frames come first,
/// and where its last frame is also in the frame-pointer walk (the two
/// agree from there outward), the walk's frames beyond it follow.
pub fn merge(fp: &[u64], eh: &[u64], eh_complete: bool) -> (Vec<u64>, UnwoundBy) {
    if eh.len() <= 1 {
        // Nothing past the IP: the copy (or the unwind tables) gave nothing.
        return (fp.to_vec(), UnwoundBy::FramePointer);
    }
    if eh_complete {
        return (eh.to_vec(), UnwoundBy::EhFrame);
    }
    let last = eh[eh.len() - 1];
    if let Some(j) = fp.iter().skip(1).position(|&a| a == last).map(|j| j + 1) {
        let rest = &fp[j + 1..];
        if rest.is_empty() {
            return (eh.to_vec(), UnwoundBy::EhFrame);
        }
        if eh.len() == j + 1 && fp[..=j] == *eh {
            // The two agree frame for frame: the walk alone had it right.
            return (fp.to_vec(), UnwoundBy::FramePointer);
        }
        let mut out = eh.to_vec();
        out.extend_from_slice(rest);
        return (out, UnwoundBy::Mixed);
    }
    // No frame in common: the `.eh_frame` frames are right as far as they
    // go; a walk that is longer may only be following garbage, unless the
    // unwind gave up early, so the longer of the two is kept.
    if fp.len() > eh.len() && fp.first() == eh.first() && fp.get(1) == eh.get(1) {
        return (fp.to_vec(), UnwoundBy::FramePointer);
    }
    (eh.to_vec(), UnwoundBy::EhFrame)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::{
        stack::{Frame, Stack},
        symbolize::{parse_maps, Symbolizer},
    };

    /// The end of the anonymous mapping holding `addr` (this thread's stack).
    fn mapping_end(addr: u64) -> u64 {
        let text = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in text.lines() {
            let range = line.split_whitespace().next().unwrap();
            let (s, e) = range.split_once('-').unwrap();
            let (s, e) = (u64::from_str_radix(s, 16).unwrap(), u64::from_str_radix(e, 16).unwrap());
            if s <= addr && addr < e {
                return e;
            }
        }
        panic!("{addr:#x} is not mapped");
    }

    /// This thread's registers and the top of its stack, as the kernel
    /// would capture them at a signal in this function.
    #[inline(never)]
    fn capture_here() -> (u64, u64, u64, Vec<u8>) {
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers, touches no memory.
        unsafe {
            core::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp", ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp);
        }
        let len = (mapping_end(sp) - sp).min(16 * 1024) as usize;
        // SAFETY: [sp, sp + len) lies in this thread's stack mapping.
        let copy = unsafe { std::slice::from_raw_parts(sp as *const u8, len) }.to_vec();
        (ip, sp, bp, copy)
    }

    #[inline(never)]
    fn unwind_level2() -> (u64, u64, u64, Vec<u8>) {
        let r = capture_here();
        std::hint::black_box(r)
    }

    #[inline(never)]
    fn unwind_level1() -> (u64, u64, u64, Vec<u8>) {
        let r = unwind_level2();
        std::hint::black_box(r)
    }

    #[test]
    fn unwinds_this_threads_stack_from_eh_frame() {
        let (ip, sp, bp, copy) = unwind_level1();
        let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let mut unwinder = StackUnwinder::new();
        let unwound = unwinder.unwind(Some(std::process::id()), ip, sp, bp, sp, &copy, &maps);
        assert!(unwound.frames.len() >= 3, "{unwound:?}");
        assert_eq!(unwound.frames[0], ip);
        // Name the frames the way a crash's are named.
        let mut symbolizer = Symbolizer::new();
        symbolizer.set_maps(1, maps);
        let mut stack = Stack { user: unwound.frames.iter().map(|&a| Frame::raw(a)).collect(), ..Stack::default() };
        symbolizer.symbolize(1, &mut stack);
        let names: Vec<String> = stack.user.iter().map(|f| f.function.clone().unwrap_or_default()).collect();
        let at = |name: &str| names.iter().position(|n| n.ends_with(name)).unwrap_or_else(|| panic!("{name} not in {names:?}"));
        let (here, l2, l1) = (at("capture_here"), at("unwind_level2"), at("unwind_level1"));
        assert!(here < l2 && l2 < l1, "callers out of order: {names:?}");
        assert!(names.iter().any(|n| n.ends_with("unwinds_this_threads_stack_from_eh_frame")), "{names:?}");
    }

    #[test]
    fn a_process_gone_before_its_maps_were_read_is_unwound_by_build_id() {
        // Only what the kernel gives survives such a process: the registers,
        // the stack copy, and frame 0 as build-id + file offset.
        let (ip, sp, bp, copy) = unwind_level1();
        let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let m = maps.iter().find(|m| m.start <= ip && ip < m.end).expect("own code is mapped");
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let id = crate::event::hex(&blazesym::helper::read_elf_build_id(&exe).unwrap().expect("cargo links with a build-id"));
        let mut id40 = id.clone();
        while id40.len() < 40 {
            id40.push('0');
        }
        let frame0 = Frame { addr: ip, build_id: Some(id40), file_offset: Some(ip - m.start + m.offset), ..Frame::default() };
        let mut stack = Stack { user: vec![frame0], ip: Some(ip), sp: Some(sp), bp: Some(bp), ..Stack::default() };
        let mut pending = crate::symbolize::Pending::default();
        pending.remember_stack_copy(77, sp, copy);
        Symbolizer::new().symbolize_taken(77, &mut stack, pending.take(77));
        assert_eq!(stack.symbolized_from.as_deref(), Some("build-id"), "{stack:?}");
        let names: Vec<String> = stack.user.iter().map(|f| f.function.clone().unwrap_or_default()).collect();
        let at = |name: &str| names.iter().position(|n| n.ends_with(name)).unwrap_or_else(|| panic!("{name} not in {names:?}"));
        assert!(at("capture_here") < at("unwind_level2") && at("unwind_level2") < at("unwind_level1"), "{names:?}");
        assert_eq!(stack.unwound_by.as_deref(), Some("eh_frame"), "{stack:?}");
    }

    #[test]
    fn bias_follows_the_executable_segment_mid_page() {
        // As lld lays out Rust binaries: the executable segment starts at
        // file offset 0x250dd0 but virtual address 0x251dd0.
        let data = ModuleData { text: None, eh_frame: None, eh_frame_hdr: None, got: None, loads: vec![(0x250dd0, 0x251dd0, 0x7444f0)] };
        let m = Mapping { start: 0x5600_0003_f000, end: 0x5600_0078_5000, offset: 0x250000, inode: 1, dev: None, path: "/x".into() };
        assert_eq!(data.bias(&m), Some(0x5600_0003_f000 - 0x251000));
        // gcc/ld: offset and address equal.
        let data = ModuleData { loads: vec![(0x1000, 0x1000, 0x2000)], ..data };
        let m = Mapping { start: 0x5555_0000_1000, offset: 0x1000, ..m };
        assert_eq!(data.bias(&m), Some(0x5555_0000_0000));
        let outside = Mapping { offset: 0x9000, ..m };
        assert_eq!(data.bias(&outside), None);
    }

    #[test]
    fn merge_puts_the_eh_frame_callers_first_and_continues_with_the_walk() {
        // A leaf without a frame: the walk skips its caller (0xb).
        let fp = [0xa, 0xc, 0xd, 0xe];
        let (got, by) = merge(&fp, &[0xa, 0xb, 0xc], false);
        assert_eq!((got, by), (vec![0xa, 0xb, 0xc, 0xd, 0xe], UnwoundBy::Mixed));
        // A complete unwind stands alone.
        assert_eq!(merge(&fp, &[0xa, 0xb, 0xc], true), (vec![0xa, 0xb, 0xc], UnwoundBy::EhFrame));
        // Both agree: the walk, which goes further.
        assert_eq!(merge(&fp, &[0xa, 0xc], false), (fp.to_vec(), UnwoundBy::FramePointer));
        // Nothing past the IP: the walk.
        assert_eq!(merge(&fp, &[0xa], false), (fp.to_vec(), UnwoundBy::FramePointer));
        // No frame pointers: the walk is garbage after the IP; no frame in common.
        assert_eq!(merge(&[0xa, 0x1], &[0xa, 0xb, 0xc], false), (vec![0xa, 0xb, 0xc], UnwoundBy::EhFrame));
        // The IP alone in common does not count as agreement.
        assert_eq!(merge(&[0xa, 0x7, 0x8, 0x9, 0x10], &[0xa, 0xb], false).1, UnwoundBy::EhFrame);
    }

    #[test]
    fn an_empty_copy_gives_only_the_ip() {
        let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let ip = capture_here as *const () as u64;
        let unwound = StackUnwinder::new().unwind(None, ip, 0x1000, 0, 0x1000, &[], &maps);
        assert_eq!(unwound.frames.first(), Some(&ip));
        assert!(unwound.frames.len() <= 2, "frames past an empty copy: {unwound:?}");
    }
}

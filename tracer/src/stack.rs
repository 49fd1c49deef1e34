//! The dying thread's stack in user space: the [`Stack`] a crash chain keeps
//! (raw addresses plus whatever symbolisation found), built from a decoded
//! [`Body::StackCapture`], and its coredumpctl-like text. The wire record is
//! decoded in [`crate::decode`].
//!
//! Raw addresses, module paths, file offsets and build-ids are always kept,
//! so a stack can be symbolised again on another machine. A name is only
//! ever one the module's own symbols gave: a stripped binary shows its
//! module, offset and build-id, never a guess.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::event::{Body, Event};

/// One frame: its raw address and what is known about it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub addr: u64,
    /// The mapped file (full path), or a special mapping such as `[vdso]`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub module: Option<String>,
    /// Offset of `addr` in `module`'s file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub build_id: Option<String>,
    /// The enclosing symbol, from the module's symbol table or DWARF.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function: Option<String>,
    /// `addr`'s offset from the start of `function`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function_offset: Option<u64>,
    /// "file:line" where DWARF has it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    /// Why this frame cannot be a real one (an address no user mapping can
    /// hold, a build-id offset that wrapped), in words; None if plausible.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub invalid: Option<String>,
}

impl Frame {
    pub fn raw(addr: u64) -> Frame {
        Frame { addr, ..Frame::default() }
    }
}

/// The stack a chain keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// The thread whose stack this is.
    pub tid: u32,
    pub ts_ns: u64,
    pub sig: i32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ip: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bp: Option<u64>,
    /// Frame 0 is the IP; the rest are return addresses, innermost first,
    /// as `unwound_by` says they were found.
    pub user: Vec<Frame>,
    pub kernel: Vec<Frame>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_errno: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kernel_errno: Option<i32>,
    /// How modules were found: "proc-maps" (the process's maps, read while it
    /// lived) or "build-id" (the kernel's build-ids only: the process was
    /// gone). None: not symbolised.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub symbolized_from: Option<String>,
    /// How `user` was unwound: "frame-pointer" (the kernel's walk alone),
    /// "eh_frame" (DWARF call-frame information over the stack copy), or
    /// "mixed" (`.eh_frame` for the innermost frames, then the walk from
    /// where the two meet): see [`crate::unwind::merge`].
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unwound_by: Option<String>,
    /// What limited symbolisation, in words.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
}

impl Stack {
    /// The stack a `StackCapture` event carries; None for other events.
    pub fn from_event(ev: &Event) -> Option<Stack> {
        let Body::StackCapture { sig, user, kernel, build_ids, ip, sp, bp, user_errno, kernel_errno } = &ev.body else {
            return None;
        };
        let mut notes = Vec::new();
        let mut frames = Vec::with_capacity(user.len());
        for (i, &addr) in user.iter().enumerate() {
            let mut f = Frame::raw(addr);
            if let Some(Some(b)) = build_ids.get(i) {
                f.build_id = Some(b.build_id.clone());
                f.file_offset = Some(b.file_offset);
            }
            f.invalid = implausible(&f);
            if f.invalid.is_some() {
                // A build-id made up for an address that cannot be code is
                // not evidence: drop it so nothing symbolises by it.
                f.build_id = None;
                f.file_offset = None;
            }
            let stop = i > 0 && f.invalid.is_some();
            if stop {
                notes.push(format!(
                    "the frame-pointer walk stopped at frame {i} ({:#x}): {}",
                    addr,
                    f.invalid.as_deref().unwrap_or("invalid")
                ));
            }
            frames.push(f);
            if stop {
                // Past a return address that cannot be, the walk follows
                // junk: every later frame is as made up.
                break;
            }
        }
        Some(Stack {
            tid: ev.task.pid,
            ts_ns: ev.ts_ns,
            sig: *sig,
            ip: *ip,
            sp: *sp,
            bp: *bp,
            user: frames,
            kernel: kernel.iter().map(|&a| Frame::raw(a)).collect(),
            user_errno: *user_errno,
            kernel_errno: *kernel_errno,
            symbolized_from: None,
            unwound_by: Some(crate::unwind::UnwoundBy::FramePointer.name().into()),
            notes,
        })
    }
}

impl Stack {
    /// Marks user frames whose address lies in no mapping of the process
    /// (`mapped` answers from its maps, read while it lived): frame 0 stays
    /// (it is where the thread was, even if that is nowhere), but a return
    /// address in no mapping is junk the walk read, and the frames after it
    /// are dropped. Frames the kernel found a build-id for are left alone.
    pub fn end_at_unmapped(&mut self, mapped: impl Fn(u64) -> bool) {
        for i in 0..self.user.len() {
            let f = &mut self.user[i];
            // A build-id the kernel read at the capture is its own proof
            // that a file was mapped there, whatever the maps say.
            if f.invalid.is_some() || f.build_id.is_some() || mapped(f.addr) {
                continue;
            }
            f.invalid = Some(format!("{:#x} is in no mapping of the process", f.addr));
            f.build_id = None;
            f.file_offset = None;
            if i > 0 {
                self.notes.push(format!("the walk stopped at frame {i} ({:#x}): it is in no mapping of the process", f.addr));
                self.user.truncate(i + 1);
                return;
            }
        }
    }
}

/// The lowest address a user mapping can start at (mmap_min_addr is at
/// least a page), and the first one past x86_64's user half (47 bits).
const LOWEST_USER_ADDR: u64 = 4096;
const USER_ADDR_END: u64 = 0x0000_8000_0000_0000;

/// Why a user frame cannot be a real one, if so. Frame 0 is the fault ip
/// and kept even then (a jump through a null pointer leaves ip 0), but it
/// is still no code address.
fn implausible(f: &Frame) -> Option<String> {
    if f.addr < LOWEST_USER_ADDR {
        return Some(format!("{:#x} is below the lowest address a mapping can have", f.addr));
    }
    if f.addr >= USER_ADDR_END {
        return Some(format!("{:#x} is outside user space", f.addr));
    }
    // No file is as large as the user address space: an offset that big
    // is the kernel's ip - vm_start + pgoff wrapped around.
    if let Some(off) = f.file_offset.filter(|&o| o >= USER_ADDR_END) {
        return Some(format!("its build-id offset {off:#x} wrapped around"));
    }
    None
}

/// The last path component, as coredumpctl shows modules.
fn short_module(module: &str) -> &str {
    if module.starts_with('[') {
        return module;
    }
    module.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(module)
}

fn frame_line(out: &mut String, n: usize, f: &Frame) {
    if let Some(why) = &f.invalid {
        let _ = writeln!(out, "     #{n:<2} {:#018x} n/a (invalid: {why})", f.addr);
        return;
    }
    let what = match (&f.function, f.function_offset) {
        (Some(name), Some(off)) => format!("{name}+{off:#x}"),
        (Some(name), None) => name.clone(),
        (None, _) => "n/a".to_string(),
    };
    let module = match (&f.module, f.file_offset, &f.function) {
        (Some(m), _, Some(_)) => format!(" ({})", short_module(m)),
        // No name: the module and offset are what can be looked up later.
        (Some(m), Some(off), None) => format!(" ({} + {off:#x})", short_module(m)),
        (Some(m), None, None) => format!(" ({})", short_module(m)),
        (None, Some(off), _) => match &f.build_id {
            Some(b) => format!(" (build-id {b} + {off:#x})"),
            None => format!(" (+ {off:#x})"),
        },
        (None, None, _) => String::new(),
    };
    let source = f.source.as_ref().map(|s| format!(" at {s}")).unwrap_or_default();
    let _ = writeln!(out, "     #{n:<2} {:#018x} {what}{module}{source}", f.addr);
}

/// The stack as the verdict block shows it, after coredumpctl's
/// "Stack trace of thread N:".
pub fn text(stack: &Stack) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "   Stack trace of thread {}:", stack.tid);
    if stack.user.is_empty() {
        let why = match stack.user_errno {
            Some(e) => format!("the kernel's walk failed: {}", crate::event::errno_name(e)),
            None => "no user frames (a kernel thread, or no user stack)".into(),
        };
        let _ = writeln!(s, "     (no user frames: {why})");
    }
    for (i, f) in stack.user.iter().enumerate() {
        frame_line(&mut s, i, f);
    }
    if let (Some(ip), Some(sp), Some(bp)) = (stack.ip, stack.sp, stack.bp) {
        let _ = writeln!(s, "     registers  ip {ip:#x}  sp {sp:#x}  bp {bp:#x}");
    }
    match (&stack.unwound_by, &stack.symbolized_from) {
        (Some(u), Some(f)) => {
            let _ = writeln!(s, "     unwound by {u}, modules from {f}");
        }
        (Some(u), None) => {
            let _ = writeln!(s, "     unwound by {u}, not symbolised");
        }
        _ => {}
    }
    if !stack.kernel.is_empty() {
        let _ = writeln!(s, "   Kernel stack:");
        for (i, f) in stack.kernel.iter().enumerate() {
            frame_line(&mut s, i, f);
        }
    }
    for note in &stack.notes {
        let _ = writeln!(s, "     note: {note}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_functions_and_falls_back_to_module_offsets() {
        let stack = Stack {
            tid: 43,
            sig: 11,
            ip: Some(0x1139),
            sp: Some(0x20),
            bp: Some(0x30),
            user: vec![
                Frame {
                    addr: 0x5555_0000_1139,
                    module: Some("/tmp/x/deep".into()),
                    file_offset: Some(0x1139),
                    function: Some("crash_level3".into()),
                    function_offset: Some(0x10),
                    source: Some("deep.c:12".into()),
                    ..Frame::default()
                },
                Frame {
                    addr: 0x5555_0000_1160,
                    module: Some("/tmp/x/stripped".into()),
                    file_offset: Some(0x1160),
                    build_id: Some("ab12".into()),
                    ..Frame::default()
                },
                Frame { addr: 0x7f00, file_offset: Some(0x40), build_id: Some("cd34".into()), ..Frame::default() },
                Frame::raw(0x99),
            ],
            kernel: vec![Frame {
                addr: 0xffff_ffff_8100_0000,
                module: Some("[kernel]".into()),
                function: Some("get_signal".into()),
                function_offset: Some(0x1a),
                ..Frame::default()
            }],
            ..Stack::default()
        };
        let t = text(&stack);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "   Stack trace of thread 43:");
        assert_eq!(lines[1], "     #0  0x0000555500001139 crash_level3+0x10 (deep) at deep.c:12");
        assert_eq!(lines[2], "     #1  0x0000555500001160 n/a (stripped + 0x1160)");
        assert_eq!(lines[3], "     #2  0x0000000000007f00 n/a (build-id cd34 + 0x40)");
        assert_eq!(lines[4], "     #3  0x0000000000000099 n/a");
        assert_eq!(lines[5], "     registers  ip 0x1139  sp 0x20  bp 0x30");
        assert_eq!(lines[6], "   Kernel stack:");
        assert_eq!(lines[7], "     #0  0xffffffff81000000 get_signal+0x1a ([kernel])");
    }

    fn capture(user: Vec<u64>, build_ids: Vec<Option<crate::event::BuildIdRef>>) -> Event {
        Event {
            ts_ns: 5,
            cpu: 0,
            task: crate::event::Proc { pid: 1, tgid: 1, comm: "systemd".into() },
            cgroup_id: 1,
            body: Body::StackCapture {
                sig: 11,
                user,
                kernel: vec![],
                build_ids,
                ip: Some(0),
                sp: Some(0x7ffc_0000_1000),
                bp: Some(0x7ffc_0000_1100),
                user_errno: None,
                kernel_errno: None,
            },
        }
    }

    fn bid(off: u64) -> Option<crate::event::BuildIdRef> {
        Some(crate::event::BuildIdRef { build_id: "ab12cd".into(), file_offset: off })
    }

    /// Recorded from systemd 252 as PID 1 after a debugger set its pc to 0:
    /// frame 0 at 0 came with a build-id and an offset that wrapped below the
    /// mapping's start, and frame 1 was the junk return address 0xffffffff.
    #[test]
    fn frames_that_cannot_be_are_marked_and_end_the_walk() {
        let ev = capture(
            vec![0, 0xffff_ffff, 0x7f3a_0000_1234, 0x5555_0000_2000],
            vec![bid(0u64.wrapping_sub(0x5555_0000_0000)), None, bid(0x1234), bid(0x2000)],
        );
        let mut stack = Stack::from_event(&ev).expect("a stack");
        // 0xffffffff is a user address, but the process had nothing mapped
        // there: the maps, read while it lived, say so.
        stack.end_at_unmapped(|a| (0x7f3a_0000_0000..0x7f3a_0001_0000).contains(&a) || (0x5555_0000_0000..0x5555_0001_0000).contains(&a));
        // The fault ip is kept (it is where the thread was), without the
        // build-id the kernel made up for it.
        assert_eq!(stack.user[0].addr, 0);
        assert_eq!((stack.user[0].build_id.as_deref(), stack.user[0].file_offset), (None, None));
        assert!(stack.user[0].invalid.is_some(), "{:?}", stack.user[0]);
        // The walk stops at the first return address that cannot be.
        assert_eq!(stack.user.len(), 2, "{:?}", stack.user);
        assert_eq!(stack.user[1].addr, 0xffff_ffff);
        assert!(stack.user[1].invalid.is_some(), "{:?}", stack.user[1]);
        assert!(stack.notes.iter().any(|n| n.contains("frame 1")), "{:?}", stack.notes);
        let t = text(&stack);
        assert!(t.contains("#0  0x0000000000000000 n/a (invalid: "), "{t}");
        assert!(!t.contains("build-id ab12cd"), "{t}");
    }

    #[test]
    fn plausible_frames_are_kept_and_bad_ones_are_caught() {
        let ok = capture(vec![0x5555_0000_1139, 0x7f3a_0000_1234], vec![bid(0x1139), bid(0x1234)]);
        let stack = Stack::from_event(&ok).expect("a stack");
        assert_eq!(stack.user.len(), 2);
        assert!(stack.user.iter().all(|f| f.invalid.is_none() && f.build_id.is_some()), "{:?}", stack.user);
        assert!(stack.notes.is_empty());
        for bad in [0u64, 0x10, 0xfff, 0x0000_8000_0000_0000, u64::MAX] {
            let ev = capture(vec![0x5555_0000_1139, bad, 0x7f3a_0000_1234], vec![bid(0x1139), None, None]);
            let s = Stack::from_event(&ev).expect("a stack");
            assert_eq!(s.user.len(), 2, "return address {bad:#x}: {:?}", s.user);
            assert!(s.user[1].invalid.is_some(), "return address {bad:#x}");
        }
        // A build-id offset larger than any file: the kernel's arithmetic wrapped.
        let wrapped = capture(vec![0x5555_0000_1139], vec![bid(u64::MAX - 7)]);
        let s = Stack::from_event(&wrapped).expect("a stack");
        assert!(s.user[0].invalid.is_some() && s.user[0].build_id.is_none(), "{:?}", s.user[0]);
    }

    #[test]
    fn text_says_how_the_stack_was_unwound() {
        let stack = Stack { tid: 7, unwound_by: Some("mixed".into()), symbolized_from: Some("build-id".into()), ..Stack::default() };
        assert!(text(&stack).contains("     unwound by mixed, modules from build-id\n"), "{}", text(&stack));
        let raw = Stack { unwound_by: Some("frame-pointer".into()), ..stack };
        assert!(text(&Stack { symbolized_from: None, ..raw }).contains("unwound by frame-pointer, not symbolised"));
    }

    #[test]
    fn text_says_why_there_are_no_frames() {
        let stack = Stack { tid: 7, user_errno: Some(14), ..Stack::default() };
        assert!(text(&stack).contains("(no user frames: the kernel's walk failed: errno 14)"), "{}", text(&stack));
    }
}

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
        let user = user
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let mut f = Frame::raw(addr);
                if let Some(Some(b)) = build_ids.get(i) {
                    f.build_id = Some(b.build_id.clone());
                    f.file_offset = Some(b.file_offset);
                }
                f
            })
            .collect();
        Some(Stack {
            tid: ev.task.pid,
            ts_ns: ev.ts_ns,
            sig: *sig,
            ip: *ip,
            sp: *sp,
            bp: *bp,
            user,
            kernel: kernel.iter().map(|&a| Frame::raw(a)).collect(),
            user_errno: *user_errno,
            kernel_errno: *kernel_errno,
            symbolized_from: None,
            unwound_by: Some(crate::unwind::UnwoundBy::FramePointer.name().into()),
            notes: Vec::new(),
        })
    }
}

/// The last path component, as coredumpctl shows modules.
fn short_module(module: &str) -> &str {
    if module.starts_with('[') {
        return module;
    }
    module.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(module)
}

fn frame_line(out: &mut String, n: usize, f: &Frame) {
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

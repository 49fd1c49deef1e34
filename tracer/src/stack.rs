//! The dying thread's stack in user space: the `StackCapture` wire event
//! decoded to raw frames, the [`Stack`] a crash chain keeps (raw addresses
//! plus whatever symbolisation found), and its coredumpctl-like text.
//!
//! Raw addresses, module paths, file offsets and build-ids are always kept,
//! so a stack can be symbolised again on another machine. A name is only
//! ever one the module's own symbols gave: a stripped binary shows its
//! module, offset and build-id, never a guess.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tracer_common::stack::{
    frames_in, BuildIdFrame, StackCapture, StackCopy, BUILD_ID_STATUS_VALID, KERNEL_FRAMES_MAX, STACK_COPY_MAX,
    STACK_REGS_VALID, USER_FRAMES_MAX,
};

use crate::{
    decode::DecodeError,
    event::{Body, Event},
};

/// A module's build-id (hex) and a file offset in it, as the kernel found
/// them for one user frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildIdRef {
    pub build_id: String,
    pub file_offset: u64,
}

/// Lower-case hex of a build-id, without trailing zero padding beyond the
/// id's length. The kernel pads a 16-byte id (e.g. an md5 one) to 20 bytes
/// with zeroes; those stay, since the id's true length is not on the wire.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn errno_of(ret: i32) -> Option<i32> {
    if ret < 0 { Some(-ret) } else { None }
}

/// The wire event to its [`Body`]. Counts come from `bpf_get_stack`'s
/// results and are clamped to the arrays, so a bogus count cannot overrun.
pub fn decode_capture(e: &StackCapture) -> Body {
    let user_n = frames_in(e.user_ret, 8, USER_FRAMES_MAX);
    let kernel_n = frames_in(e.kernel_ret, 8, KERNEL_FRAMES_MAX);
    let build_n = frames_in(e.build_id_ret, std::mem::size_of::<BuildIdFrame>(), USER_FRAMES_MAX);
    let build_ids: Vec<Option<BuildIdRef>> = e.build_ids[..build_n]
        .iter()
        .map(|f| {
            (f.status == BUILD_ID_STATUS_VALID).then(|| BuildIdRef { build_id: hex(&f.build_id), file_offset: f.offset })
        })
        .collect();
    let regs = e.flags & STACK_REGS_VALID != 0;
    Body::StackCapture {
        sig: e.sig,
        user: e.user[..user_n].to_vec(),
        kernel: e.kernel[..kernel_n].to_vec(),
        // All-unknown says nothing; leave it out of the record.
        build_ids: if build_ids.iter().any(Option::is_some) { build_ids } else { Vec::new() },
        ip: regs.then_some(e.ip),
        sp: regs.then_some(e.sp),
        bp: regs.then_some(e.bp),
        user_errno: errno_of(e.user_ret),
        kernel_errno: errno_of(e.kernel_ret),
    }
}

/// A `StackCopy` record (fixed part, then `len` bytes of stack) to its
/// [`Body`]. The caller has checked the fixed part is there.
pub fn decode_copy(bytes: &[u8]) -> Result<Body, DecodeError> {
    let fixed = std::mem::size_of::<StackCopy>();
    let short = |need: usize| DecodeError::Short { kind: "stack-copy", len: bytes.len(), need };
    if bytes.len() < fixed {
        return Err(short(fixed));
    }
    // SAFETY: length checked; StackCopy is repr(C) integers, valid for any
    // bit pattern; read_unaligned needs no alignment.
    let e: StackCopy = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const StackCopy) };
    let len = e.len as usize;
    if len > STACK_COPY_MAX || bytes.len() < fixed + len {
        return Err(short(fixed.saturating_add(len)));
    }
    Ok(Body::StackCopy { sp: e.sp, data: bytes[fixed..fixed + len].to_vec() })
}

/// Bytes as one lower-case hex string in JSON (stack copies).
pub mod hex_bytes {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("hex bytes of odd length"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| D::Error::custom(format!("not hex at byte {i}")))
            })
            .collect()
    }
}

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
    /// Frame 0 is the IP; the rest are return addresses from the
    /// frame-pointer walk.
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
    /// How `user` was unwound: "frame-pointers" (the kernel's walk) or
    /// "eh-frame" (DWARF call-frame information over a stack copy).
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
            unwound_by: Some("frame-pointers".into()),
            notes: Vec::new(),
        })
    }

    /// The build-id + file offset the kernel gave for each user frame.
    pub fn kernel_build_ids(&self) -> Vec<Option<BuildIdRef>> {
        self.user
            .iter()
            .map(|f| match (&f.build_id, f.file_offset) {
                (Some(b), Some(o)) => Some(BuildIdRef { build_id: b.clone(), file_offset: o }),
                _ => None,
            })
            .collect()
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
    use crate::{decode::{as_bytes, decode}, event::Proc};
    use tracer_common::{
        stack::{BUILD_ID_SIZE, BUILD_ID_STATUS_IP},
        EventHeader, EventKind,
    };

    fn capture() -> StackCapture {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"deep");
        let mut c = StackCapture {
            header: EventHeader { kind: EventKind::StackCapture as u32, cpu: 1, ts_ns: 500, pid: 43, tgid: 42, cgroup_id: 7, comm },
            sig: 11,
            flags: STACK_REGS_VALID,
            user_ret: 3 * 8,
            kernel_ret: 2 * 8,
            build_id_ret: 3 * std::mem::size_of::<BuildIdFrame>() as i32,
            _pad0: 0,
            ip: 0x5555_0000_1139,
            sp: 0x7ffc_0000_0010,
            bp: 0x7ffc_0000_0020,
            user: [0; USER_FRAMES_MAX],
            kernel: [0; KERNEL_FRAMES_MAX],
            build_ids: [BuildIdFrame::zeroed(); USER_FRAMES_MAX],
        };
        c.user[..3].copy_from_slice(&[0x5555_0000_1139, 0x5555_0000_1160, 0x7f00_0000_2000]);
        c.kernel[..2].copy_from_slice(&[0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100]);
        c.build_ids[0] = BuildIdFrame { status: BUILD_ID_STATUS_VALID, build_id: [0xab; BUILD_ID_SIZE], offset: 0x1139 };
        c.build_ids[1] = BuildIdFrame { status: BUILD_ID_STATUS_VALID, build_id: [0xab; BUILD_ID_SIZE], offset: 0x1160 };
        c.build_ids[2] = BuildIdFrame { status: BUILD_ID_STATUS_IP, build_id: [0; BUILD_ID_SIZE], offset: 0x7f00_0000_2000 };
        // Stale bytes past the counts must not show up as frames.
        c.user[3] = 0xdead;
        c.kernel[2] = 0xdead;
        c
    }

    #[test]
    fn decodes_frames_registers_and_build_ids() {
        let ev = decode(&as_bytes(&capture())).unwrap();
        assert_eq!(ev.task, Proc { pid: 43, tgid: 42, comm: "deep".into() });
        match &ev.body {
            Body::StackCapture { sig, user, kernel, build_ids, ip, sp, bp, user_errno, kernel_errno } => {
                assert_eq!(*sig, 11);
                assert_eq!(user, &vec![0x5555_0000_1139, 0x5555_0000_1160, 0x7f00_0000_2000]);
                assert_eq!(kernel, &vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100]);
                assert_eq!(build_ids.len(), 3);
                assert_eq!(build_ids[0], Some(BuildIdRef { build_id: "ab".repeat(20), file_offset: 0x1139 }));
                assert_eq!(build_ids[2], None, "an IP-only entry has no build-id");
                assert_eq!((*ip, *sp, *bp), (Some(0x5555_0000_1139), Some(0x7ffc_0000_0010), Some(0x7ffc_0000_0020)));
                assert_eq!((*user_errno, *kernel_errno), (None, None));
            }
            other => panic!("wrong body {other:?}"),
        }
        let stack = Stack::from_event(&ev).unwrap();
        assert_eq!(stack.tid, 43);
        assert_eq!(stack.user[1].file_offset, Some(0x1160));
        assert_eq!(stack.user[2].build_id, None);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = as_bytes(&capture());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "len {len} decoded");
        }
    }

    #[test]
    fn errors_and_bogus_counts_are_clamped() {
        let mut c = capture();
        c.user_ret = -14; // EFAULT
        c.kernel_ret = i32::MAX;
        c.build_id_ret = 5; // less than one entry
        c.flags = 0;
        match decode(&as_bytes(&c)).unwrap().body {
            Body::StackCapture { user, kernel, build_ids, ip, user_errno, kernel_errno, .. } => {
                assert!(user.is_empty());
                assert_eq!(user_errno, Some(14));
                assert_eq!(kernel.len(), KERNEL_FRAMES_MAX, "a count past the array is clamped");
                assert_eq!(kernel_errno, None);
                assert!(build_ids.is_empty());
                assert_eq!(ip, None, "registers without the valid flag are not shown");
            }
            other => panic!("wrong body {other:?}"),
        }
    }

    #[test]
    fn json_round_trip_keeps_raw_data() {
        let ev = decode(&as_bytes(&capture())).unwrap();
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains("\"event\":\"stack-capture\""), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }

    fn copy_record(data: &[u8]) -> Vec<u8> {
        let c = StackCopy {
            header: EventHeader { kind: EventKind::StackCopy as u32, cpu: 0, ts_ns: 9, pid: 43, tgid: 42, cgroup_id: 1, comm: [0; 16] },
            sp: 0x7ffc_0000_0000,
            len: data.len() as u32,
            ret: 0,
        };
        let mut bytes = as_bytes(&c);
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn decodes_a_stack_copy_and_rejects_short_ones() {
        let data: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
        let bytes = copy_record(&data);
        let ev = decode(&bytes).unwrap();
        assert_eq!(ev.body, Body::StackCopy { sp: 0x7ffc_0000_0000, data: data.clone() });
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "len {len} decoded");
        }
        // A length past the largest copy is refused, whatever follows.
        let mut bogus = copy_record(&data);
        let len_at = std::mem::size_of::<EventHeader>() + 8;
        bogus[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bogus), Err(DecodeError::Short { kind: "stack-copy", .. })));
    }

    #[test]
    fn stack_copy_is_hex_in_json() {
        let ev = decode(&copy_record(&[0x00, 0xab, 0x10])).unwrap();
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains("\"data\":\"00ab10\""), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), ev);
        let odd = json.replace("00ab10", "00ab1");
        assert!(serde_json::from_str::<Event>(&odd).is_err());
        let bad = json.replace("00ab10", "00zz10");
        assert!(serde_json::from_str::<Event>(&bad).is_err());
    }

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
    fn text_says_why_there_are_no_frames() {
        let stack = Stack { tid: 7, user_errno: Some(14), ..Stack::default() };
        assert!(text(&stack).contains("(no user frames: the kernel's walk failed: errno 14)"), "{}", text(&stack));
    }
}

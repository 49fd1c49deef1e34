//! Whether the kernel lets a BTF-attached tracing program attach, tested the
//! cheap way: load a two-instruction program (`r0 = 0; exit`) of the kind
//! crashtrace would use, attach it, and close it again at once. Nothing is
//! left attached, and nothing of crashtrace's own eBPF object is needed.
//!
//! This is what `crashtrace doctor` uses to say whether fentry on the dump
//! entry, and tp_btf on the signal tracepoints, will attach, instead of
//! guessing from kernel config. The raw bpf(2) calls are used because aya
//! loads programs only from an object file.
//! https://elixir.bootlin.com/linux/v6.18/source/include/uapi/linux/bpf.h

use std::{
    ffi::c_long,
    os::fd::{FromRawFd, OwnedFd},
};

use btf_rs::{Btf, Type};

const BPF_PROG_LOAD: c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: c_long = 17;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_RAW_TP: u32 = 23;
const BPF_TRACE_FENTRY: u32 = 24;

/// `r0 = 0` (BPF_ALU64 | BPF_MOV | BPF_K) and `exit` (BPF_JMP | BPF_EXIT).
const RETURN_ZERO: [u64; 2] = [0xb7, 0x95];

/// The BPF_PROG_LOAD part of `union bpf_attr`, up to the fields used here;
/// the tail stays zero, as the kernel requires of fields it knows.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    _tail: [u32; 9],
}

/// The BPF_RAW_TRACEPOINT_OPEN part of `union bpf_attr`. With `name` NULL it
/// attaches a BTF tracing program (fentry, tp_btf) where it was loaded for.
#[repr(C)]
#[derive(Default)]
struct RawTracepointOpenAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
    cookie: u64,
}

/// What trying to attach said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ProbeResult {
    Attached,
    /// The kernel refused; the text names the step and the errno.
    Refused(String),
}

/// A kernel BTF to find attach targets in.
pub(super) struct AttachTargets {
    btf: Btf,
}

impl AttachTargets {
    pub(super) fn open(path: &std::path::Path) -> Result<AttachTargets, String> {
        Btf::from_file(path).map(|btf| AttachTargets { btf }).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    fn id_of(&self, name: &str, want: fn(&Type) -> bool) -> Option<u32> {
        let ids = self.btf.resolve_ids_by_name(name).ok()?;
        ids.into_iter().find(|id| self.btf.resolve_type_by_id(*id).map(|t| want(&t)).unwrap_or(false))
    }

    /// Loads and attaches an fentry program on kernel function `function`.
    pub(super) fn fentry(&self, function: &str) -> ProbeResult {
        match self.id_of(function, |t| matches!(t, Type::Func(_))) {
            Some(id) => attach_tracing(BPF_TRACE_FENTRY, id),
            None => ProbeResult::Refused(format!("the kernel's BTF has no function {function}")),
        }
    }

    /// Loads and attaches a tp_btf program on tracepoint `tracepoint`
    /// (found in BTF as the typedef `btf_trace_<tracepoint>`).
    pub(super) fn tp_btf(&self, tracepoint: &str) -> ProbeResult {
        match self.id_of(&format!("btf_trace_{tracepoint}"), |t| matches!(t, Type::Typedef(_))) {
            Some(id) => attach_tracing(BPF_TRACE_RAW_TP, id),
            None => ProbeResult::Refused(format!("the kernel's BTF has no tracepoint {tracepoint}")),
        }
    }
}

fn bpf(cmd: c_long, attr: *const u8, size: usize) -> Result<OwnedFd, std::io::Error> {
    // SAFETY: `attr` points at `size` initialised bytes that live across the
    // call; the kernel reads them and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size as libc::c_uint) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a successful bpf(2) returned a fresh fd that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn attach_tracing(attach_type: u32, btf_id: u32) -> ProbeResult {
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"ct_doctor");
    let load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_TRACING,
        insn_cnt: RETURN_ZERO.len() as u32,
        insns: RETURN_ZERO.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: attach_type,
        attach_btf_id: btf_id,
        ..Default::default()
    };
    let prog = match bpf(BPF_PROG_LOAD, (&load as *const ProgLoadAttr).cast(), std::mem::size_of::<ProgLoadAttr>()) {
        Ok(fd) => fd,
        Err(e) => return ProbeResult::Refused(format!("loading a test program failed: {}", errno_text(&e))),
    };
    use std::os::fd::AsRawFd;
    let open = RawTracepointOpenAttr { prog_fd: prog.as_raw_fd() as u32, ..Default::default() };
    match bpf(BPF_RAW_TRACEPOINT_OPEN, (&open as *const RawTracepointOpenAttr).cast(), std::mem::size_of::<RawTracepointOpenAttr>()) {
        // Dropping the link fd and then the program fd detaches and unloads.
        Ok(_link) => ProbeResult::Attached,
        Err(e) => ProbeResult::Refused(format!("attaching a test program failed: {}", errno_text(&e))),
    }
}

/// "EPERM (Operation not permitted)".
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!("{} ({text})", crate::event::errno_name(n))
        }
        None => e.to_string(),
    }
}

//! Ring-buffer bytes to [`Event`]s. Pure: no aya, no tokio. Every read is
//! length-checked, so short, unknown or garbage input is an error value,
//! never a panic. The wire types are `bytemuck::Pod`, so bytes become
//! structs without unsafe code.

use bytemuck::Pod;
use tracer_common::{
    cgroup::{CgroupEvent, CGROUP_MKDIR, CGROUP_POPULATED, CGROUP_RELEASE, CGROUP_RMDIR},
    sysctl::SysctlWrite,
    collector::{HelperConnect, HelperExec},
    coredump::{DumpStart, HOOK_FENTRY, HOOK_KPROBE, HOOK_TRACEPOINT},
    process::{ProcessExit, ProcessFork, ROLE_CRASHER, ROLE_HELPER, ROLE_WATCHED, ROLE_WATCHED_CHILD},
    signal::{is_fault_signal, SignalDeliver, SignalGenerate, GENERATE_TARGET_BLOCKED, SIGCHLD, DUMPABLE_UNKNOWN, INFO_NOINFO, INFO_PRIV},
    stack::{
        frames_in, BuildIdFrame, StackCapture, StackCopy, BUILD_ID_STATUS_VALID, KERNEL_FRAMES_MAX, STACK_COPY_MAX,
        STACK_REGS_VALID, USER_FRAMES_MAX,
    },
    EventHeader, EventKind,
};

use crate::event::{hex, Body, BuildIdRef, CgroupOp, DumpHook, Event, Proc, Role, SigInfo};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte header")]
    ShortHeader { len: usize, need: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind} record of {len} bytes, expected {need}")]
    Short { kind: &'static str, len: usize, need: usize },
    #[error("dump-start with unknown hook {0}")]
    UnknownHook(u32),
    #[error("cgroup event with unknown operation {0}")]
    UnknownCgroupOp(u32),
}

/// Reads a `T` from the front of `bytes` (any alignment); `None` if short.
fn read<T: Pod>(bytes: &[u8]) -> Option<T> {
    bytemuck::try_pod_read_unaligned(bytes.get(..size_of::<T>())?).ok()
}

/// Reads the whole event of `kind` from a record already checked to be at
/// least `kind.wire_size()` long.
fn read_event<T: Pod>(kind: EventKind, bytes: &[u8]) -> Result<T, DecodeError> {
    read(bytes).ok_or(DecodeError::Short { kind: kind.as_str(), len: bytes.len(), need: size_of::<T>() })
}

/// A NUL-terminated C string from a fixed buffer, lossily as UTF-8.
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn limit(v: u64) -> Option<u64> {
    // RLIM_INFINITY is ~0UL.
    if v == u64::MAX { None } else { Some(v) }
}

fn dumpable(v: u32) -> Option<u32> {
    if v == DUMPABLE_UNKNOWN { None } else { Some(v) }
}

fn info_kind(kind: u32) -> SigInfo {
    match kind {
        INFO_NOINFO => SigInfo::Noinfo,
        INFO_PRIV => SigInfo::Priv,
        _ => SigInfo::Full,
    }
}

fn nonzero<T: PartialEq + Default>(v: T) -> Option<T> {
    if v == T::default() { None } else { Some(v) }
}

pub fn roles(bits: u32) -> Vec<Role> {
    [(ROLE_CRASHER, Role::Crasher), (ROLE_HELPER, Role::Helper), (ROLE_WATCHED, Role::Watched), (ROLE_WATCHED_CHILD, Role::WatchedChild)]
        .into_iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, role)| role)
        .collect()
}

/// Splits a NUL-separated argv area.
pub fn split_argv(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header: EventHeader = read(bytes).ok_or(DecodeError::ShortHeader {
        len: bytes.len(),
        need: size_of::<EventHeader>(),
    })?;
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let need = kind.wire_size();
    if bytes.len() < need {
        return Err(DecodeError::Short { kind: kind.as_str(), len: bytes.len(), need });
    }
    let body = match kind {
        EventKind::SignalGenerate => {
            let e: SignalGenerate = read_event(kind, bytes)?;
            let full = e.info_kind == 0;
            Body::SignalGenerate {
                sig: e.sig,
                code: e.code,
                errno: e.errno,
                group: e.group,
                result: e.result,
                info: info_kind(e.info_kind),
                target: Proc { pid: e.target_pid, tgid: e.target_tgid, comm: c_str(&e.target_comm) },
                target_ppid: e.target_ppid,
                target_handler: e.target_handler,
                target_blocked: e.flags & GENERATE_TARGET_BLOCKED != 0,
                fault_addr: if full && e.code > 0 && is_fault_signal(e.sig) { Some(e.fault_addr) } else { None },
                si_pid: if full && (e.code <= 0 || e.sig == SIGCHLD) { Some(e.si_pid) } else { None },
                si_uid: if full && (e.code <= 0 || e.sig == SIGCHLD) { Some(e.si_uid) } else { None },
            }
        }
        EventKind::SignalDeliver => {
            let e: SignalDeliver = read_event(kind, bytes)?;
            let full = e.info_kind == 0;
            Body::SignalDeliver {
                sig: e.sig,
                code: e.code,
                errno: e.errno,
                info: info_kind(e.info_kind),
                sa_handler: e.sa_handler,
                sa_flags: e.sa_flags,
                fault_addr: if full && e.code > 0 && is_fault_signal(e.sig) { Some(e.fault_addr) } else { None },
                si_pid: if full && e.code <= 0 { nonzero(e.si_pid) } else { None },
                rlimit_core: limit(e.rlimit_core),
                ppid: e.ppid,
                dumpable: dumpable(e.dumpable),
                pidns: nonzero(e.pidns_inum as u64),
                ns_pid: nonzero(e.ns_tgid),
            }
        }
        EventKind::DumpStart => {
            let e: DumpStart = read_event(kind, bytes)?;
            let hook = match e.hook {
                HOOK_FENTRY => DumpHook::Fentry,
                HOOK_KPROBE => DumpHook::Kprobe,
                HOOK_TRACEPOINT => DumpHook::Tracepoint,
                other => return Err(DecodeError::UnknownHook(other)),
            };
            Body::DumpStart {
                sig: e.sig,
                code: e.code,
                hook,
                rlimit_core: limit(e.rlimit_core),
                dumpable: dumpable(e.dumpable),
                fault_addr: if e.code > 0 && is_fault_signal(e.sig) { Some(e.fault_addr) } else { None },
            }
        }
        EventKind::HelperExec => {
            let e: HelperExec = read_event(kind, bytes)?;
            let len = (e.args_len as usize).min(e.args.len());
            // A full buffer may have cut the last argument.
            let truncated = len == e.args.len() && e.args[len - 1] != 0;
            Body::HelperExec { filename: c_str(&e.filename), argv: split_argv(&e.args[..len]), args_truncated: truncated }
        }
        EventKind::HelperConnect => {
            let e: HelperConnect = read_event(kind, bytes)?;
            let path = if e.path[0] == 0 && e.path[1] != 0 {
                // Abstract socket: shown with a leading '@', as ss does.
                format!("@{}", c_str(&e.path[1..]))
            } else {
                c_str(&e.path)
            };
            Body::HelperConnect { family: e.family, path, ret: e.ret }
        }
        EventKind::ProcessExit => {
            let e: ProcessExit = read_event(kind, bytes)?;
            Body::ProcessExit { exit_code: e.exit_code, ppid: e.ppid, roles: roles(e.role) }
        }
        EventKind::ProcessFork => {
            let e: ProcessFork = read_event(kind, bytes)?;
            Body::ProcessFork { child: e.child_tgid }
        }
        EventKind::SysctlWrite => {
            let e: SysctlWrite = read_event(kind, bytes)?;
            Body::SysctlWrite {
                name: c_str(&e.name),
                old_value: c_str(&e.old_value).trim_end_matches('\n').to_string(),
                new_value: c_str(&e.new_value).trim_end_matches('\n').to_string(),
            }
        }
        EventKind::Cgroup => {
            let e: CgroupEvent = read_event(kind, bytes)?;
            let op = match e.op {
                CGROUP_MKDIR => CgroupOp::Mkdir,
                CGROUP_RMDIR => CgroupOp::Rmdir,
                CGROUP_RELEASE => CgroupOp::Release,
                CGROUP_POPULATED => CgroupOp::Populated,
                other => return Err(DecodeError::UnknownCgroupOp(other)),
            };
            Body::Cgroup {
                op,
                root: e.root,
                id: e.id,
                level: e.level,
                populated: if e.op == CGROUP_POPULATED { Some(e.val != 0) } else { None },
                path: c_str(&e.path),
                zombies: Vec::new(),
            }
        }
        EventKind::StackCapture => decode_capture(&read_event(kind, bytes)?),
        EventKind::StackCopy => decode_copy(bytes)?,
    };
    Ok(Event {
        ts_ns: header.ts_ns,
        cpu: header.cpu,
        task: Proc { pid: header.pid, tgid: header.tgid, comm: c_str(&header.comm) },
        cgroup_id: header.cgroup_id,
        body,
    })
}

fn errno_of(ret: i32) -> Option<i32> {
    if ret < 0 { Some(-ret) } else { None }
}

/// The wire event to its [`Body`]. Counts come from `bpf_get_stack`'s
/// results and are clamped to the arrays, so a bogus count cannot overrun.
fn decode_capture(e: &StackCapture) -> Body {
    let user_n = frames_in(e.user_ret, 8, USER_FRAMES_MAX);
    let kernel_n = frames_in(e.kernel_ret, 8, KERNEL_FRAMES_MAX);
    let build_n = frames_in(e.build_id_ret, size_of::<BuildIdFrame>(), USER_FRAMES_MAX);
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
fn decode_copy(bytes: &[u8]) -> Result<Body, DecodeError> {
    let fixed = size_of::<StackCopy>();
    let short = |need: usize| DecodeError::Short { kind: EventKind::StackCopy.as_str(), len: bytes.len(), need };
    let e: StackCopy = read(bytes).ok_or(short(fixed))?;
    let len = e.len as usize;
    if len > STACK_COPY_MAX || bytes.len() < fixed + len {
        return Err(short(fixed.saturating_add(len)));
    }
    Ok(Body::StackCopy { sp: e.sp, data: bytes[fixed..fixed + len].to_vec() })
}


#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::bytes_of;
    use tracer_common::signal::{SIGSEGV, SIGABRT};

    fn header(kind: EventKind, pid: u32, comm: &str) -> EventHeader {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        EventHeader { kind: kind as u32, cpu: 1, ts_ns: 1000, pid, tgid: pid, cgroup_id: 7, comm: c }
    }

    fn generate_fault() -> SignalGenerate {
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"crash");
        SignalGenerate {
            header: header(EventKind::SignalGenerate, 42, "crash"),
            sig: SIGSEGV,
            errno: 0,
            code: 1,
            group: 0,
            result: 0,
            info_kind: 0,
            target_pid: 42,
            target_tgid: 42,
            target_comm: comm,
            fault_addr: 0,
            si_pid: 0,
            si_uid: 0,
            target_handler: 0,
            target_ppid: 1,
            flags: 0,
        }
    }

    #[test]
    fn decodes_fault_signal() {
        let e = decode(bytes_of(&generate_fault())).unwrap();
        assert_eq!(e.task, Proc { pid: 42, tgid: 42, comm: "crash".into() });
        assert_eq!(e.cgroup_id, 7);
        match e.body {
            Body::SignalGenerate { sig, code, fault_addr, si_pid, target, .. } => {
                assert_eq!(sig, SIGSEGV);
                assert_eq!(code, 1);
                assert_eq!(fault_addr, Some(0));
                assert_eq!(si_pid, None);
                assert_eq!(target.comm, "crash");
            }
            other => panic!("wrong body {other:?}"),
        }
    }

    #[test]
    fn decodes_kill_sender() {
        let mut g = generate_fault();
        g.sig = SIGABRT;
        g.code = tracer_common::signal::SI_TKILL;
        g.si_pid = 42;
        let e = decode(bytes_of(&g)).unwrap();
        match e.body {
            Body::SignalGenerate { fault_addr, si_pid, .. } => {
                assert_eq!(fault_addr, None);
                assert_eq!(si_pid, Some(42));
            }
            other => panic!("wrong body {other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = bytes_of(&generate_fault()).to_vec();
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "len {len} decoded");
        }
    }

    #[test]
    fn unknown_kind_is_reported() {
        let mut bytes = bytes_of(&generate_fault()).to_vec();
        bytes[0] = 99;
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn decodes_helper_exec_argv() {
        let mut e = HelperExec {
            header: header(EventKind::HelperExec, 77, "systemd-coredum"),
            ppid: 2,
            args_len: 0,
            rlimit_core: 1,
            filename: [0; 128],
            args: [0; tracer_common::collector::HELPER_ARGS_MAX],
        };
        let path = b"/lib/systemd/systemd-coredump";
        e.filename[..path.len()].copy_from_slice(path);
        let args = b"/lib/systemd/systemd-coredump\x0042\x000\x0011\x00";
        e.args[..args.len()].copy_from_slice(args);
        e.args_len = args.len() as u32;
        let ev = decode(bytes_of(&e)).unwrap();
        match ev.body {
            Body::HelperExec { filename, argv, args_truncated } => {
                assert_eq!(filename, "/lib/systemd/systemd-coredump");
                assert_eq!(argv, vec!["/lib/systemd/systemd-coredump", "42", "0", "11"]);
                assert!(!args_truncated);
            }
            other => panic!("wrong body {other:?}"),
        }
    }

    #[test]
    fn helper_exec_with_bogus_length_is_clamped() {
        let mut e = HelperExec {
            header: header(EventKind::HelperExec, 77, "x"),
            ppid: 2,
            args_len: u32::MAX,
            rlimit_core: 1,
            filename: [b'a'; 128],
            args: [b'b'; tracer_common::collector::HELPER_ARGS_MAX],
        };
        e.filename[127] = b'c';
        let ev = decode(bytes_of(&e)).unwrap();
        match ev.body {
            Body::HelperExec { filename, argv, args_truncated } => {
                assert_eq!(filename.len(), 128);
                assert_eq!(argv.len(), 1);
                assert!(args_truncated);
            }
            other => panic!("wrong body {other:?}"),
        }
    }

    #[test]
    fn decodes_connect_and_abstract_path() {
        let mut c = HelperConnect {
            header: header(EventKind::HelperConnect, 77, "x"),
            ret: -2,
            family: 1,
            _pad0: 0,
            path: [0; 108],
            _pad1: [0; 4],
        };
        let p = b"/run/systemd/coredump";
        c.path[..p.len()].copy_from_slice(p);
        match decode(bytes_of(&c)).unwrap().body {
            Body::HelperConnect { path, ret, .. } => {
                assert_eq!(path, "/run/systemd/coredump");
                assert_eq!(ret, -2);
            }
            other => panic!("wrong body {other:?}"),
        }
        c.path = [0; 108];
        c.path[1..4].copy_from_slice(b"abs");
        match decode(bytes_of(&c)).unwrap().body {
            Body::HelperConnect { path, .. } => assert_eq!(path, "@abs"),
            other => panic!("wrong body {other:?}"),
        }
    }

    #[test]
    fn decodes_exit_roles_and_unlimited_rlimit() {
        let x = ProcessExit { header: header(EventKind::ProcessExit, 5, "p"), exit_code: 0x8b, role: ROLE_CRASHER | ROLE_WATCHED, ppid: 1, _pad0: 0 };
        match decode(bytes_of(&x)).unwrap().body {
            Body::ProcessExit { exit_code, roles, .. } => {
                assert_eq!(exit_code, 0x8b);
                assert_eq!(roles, vec![Role::Crasher, Role::Watched]);
            }
            other => panic!("wrong body {other:?}"),
        }
        let d = SignalDeliver {
            header: header(EventKind::SignalDeliver, 5, "p"),
            sig: SIGSEGV,
            errno: 0,
            code: 1,
            info_kind: 0,
            sa_handler: 0,
            sa_flags: 0,
            fault_addr: 0x10,
            si_pid: 0,
            si_uid: 0,
            rlimit_core: u64::MAX,
            ppid: 1,
            dumpable: DUMPABLE_UNKNOWN,
            pidns_inum: 0,
            ns_tgid: 0,
        };
        match decode(bytes_of(&d)).unwrap().body {
            Body::SignalDeliver { rlimit_core, dumpable, fault_addr, .. } => {
                assert_eq!(rlimit_core, None);
                assert_eq!(dumpable, None);
                assert_eq!(fault_addr, Some(0x10));
            }
            other => panic!("wrong body {other:?}"),
        }
    }

    #[test]
    fn decodes_dump_start_and_rejects_unknown_hook() {
        let mut d = DumpStart { header: header(EventKind::DumpStart, 5, "p"), sig: SIGSEGV, code: 1, hook: HOOK_KPROBE, dumpable: 1, rlimit_core: 0, fault_addr: 0 };
        match decode(bytes_of(&d)).unwrap().body {
            Body::DumpStart { hook, rlimit_core, .. } => {
                assert_eq!(hook, DumpHook::Kprobe);
                assert_eq!(rlimit_core, Some(0));
            }
            other => panic!("wrong body {other:?}"),
        }
        d.hook = 9;
        assert_eq!(decode(bytes_of(&d)), Err(DecodeError::UnknownHook(9)));
    }

    #[test]
    fn decodes_sysctl_write_and_cgroup() {
        let mut w = SysctlWrite {
            header: header(EventKind::SysctlWrite, 9, "sh"),
            name: [0; 32],
            old_value: [0; 128],
            new_value: [0; 128],
        };
        w.name[..19].copy_from_slice(b"kernel/core_pattern");
        w.old_value[..5].copy_from_slice(b"core\n");
        w.new_value[..12].copy_from_slice(b"|/bin/false\n");
        match decode(bytes_of(&w)).unwrap().body {
            Body::SysctlWrite { name, old_value, new_value } => {
                assert_eq!(name, "kernel/core_pattern");
                assert_eq!(old_value, "core");
                assert_eq!(new_value, "|/bin/false");
            }
            other => panic!("wrong body {other:?}"),
        }
        let mut c = CgroupEvent {
            header: header(EventKind::Cgroup, 9, "rmdir"),
            op: CGROUP_POPULATED,
            root: 0,
            id: 1234,
            level: 2,
            val: 0,
            path: [0; 256],
        };
        c.path[..6].copy_from_slice(b"/a/b/c");
        match decode(bytes_of(&c)).unwrap().body {
            Body::Cgroup { op, id, populated, path, level, .. } => {
                assert_eq!(op, CgroupOp::Populated);
                assert_eq!(id, 1234);
                assert_eq!(level, 2);
                assert_eq!(populated, Some(false));
                assert_eq!(path, "/a/b/c");
            }
            other => panic!("wrong body {other:?}"),
        }
        c.op = 77;
        assert_eq!(decode(bytes_of(&c)), Err(DecodeError::UnknownCgroupOp(77)));
    }

    #[test]
    fn decodes_fork() {
        let f = ProcessFork { header: header(EventKind::ProcessFork, 1, "init"), child_pid: 9, child_tgid: 9 };
        assert_eq!(decode(bytes_of(&f)).unwrap().body, Body::ProcessFork { child: 9 });
    }
}

/// `StackCapture` and `StackCopy` records.
#[cfg(test)]
mod stack_tests {
    use super::*;
    use bytemuck::bytes_of;
    use tracer_common::stack::{BUILD_ID_SIZE, BUILD_ID_STATUS_IP};

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
        let ev = decode(bytes_of(&capture())).unwrap();
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
        let stack = crate::stack::Stack::from_event(&ev).unwrap();
        assert_eq!(stack.tid, 43);
        assert_eq!(stack.user[1].file_offset, Some(0x1160));
        assert_eq!(stack.user[2].build_id, None);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = bytes_of(&capture()).to_vec();
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
        match decode(bytes_of(&c)).unwrap().body {
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
        let ev = decode(bytes_of(&capture())).unwrap();
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
        let mut bytes = bytes_of(&c).to_vec();
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
}

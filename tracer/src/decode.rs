//! Ring-buffer bytes to [`Event`]s. Pure: no aya, no tokio. Every read is
//! length-checked, so short, unknown or garbage input is an error value,
//! never a panic.

use tracer_common::{
    cgroup::{CgroupEvent, CGROUP_MKDIR, CGROUP_POPULATED, CGROUP_RELEASE, CGROUP_RMDIR},
    sysctl::SysctlWrite,
    collector::{HelperConnect, HelperExec},
    coredump::{DumpStart, HOOK_FENTRY, HOOK_KPROBE, HOOK_TRACEPOINT},
    process::{ProcessExit, ProcessFork, ROLE_CRASHER, ROLE_HELPER, ROLE_WATCHED, ROLE_WATCHED_CHILD},
    signal::{is_fault_signal, SignalDeliver, SIGCHLD, SignalGenerate, DUMPABLE_UNKNOWN, INFO_NOINFO, INFO_PRIV},
    EventHeader, EventKind,
};

use crate::event::{Body, CgroupOp, DumpHook, Event, Proc, Role, SigInfo};

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

/// Reads a `T` from the front of `bytes`; `T` must be plain data.
fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; every wire type is repr(C) plain integers and
    // byte arrays, valid for any bit pattern; read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
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
        need: std::mem::size_of::<EventHeader>(),
    })?;
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let need = kind.wire_size();
    if bytes.len() < need {
        return Err(DecodeError::Short { kind: kind.as_str(), len: bytes.len(), need });
    }
    let body = match kind {
        EventKind::SignalGenerate => {
            let e: SignalGenerate = read(bytes).expect("length checked");
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
                fault_addr: if full && e.code > 0 && is_fault_signal(e.sig) { Some(e.fault_addr) } else { None },
                si_pid: if full && (e.code <= 0 || e.sig == SIGCHLD) { Some(e.si_pid) } else { None },
                si_uid: if full && (e.code <= 0 || e.sig == SIGCHLD) { Some(e.si_uid) } else { None },
            }
        }
        EventKind::SignalDeliver => {
            let e: SignalDeliver = read(bytes).expect("length checked");
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
            let e: DumpStart = read(bytes).expect("length checked");
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
            let e: HelperExec = read(bytes).expect("length checked");
            let len = (e.args_len as usize).min(e.args.len());
            // A full buffer may have cut the last argument.
            let truncated = len == e.args.len() && e.args[len - 1] != 0;
            Body::HelperExec { filename: c_str(&e.filename), argv: split_argv(&e.args[..len]), args_truncated: truncated }
        }
        EventKind::HelperConnect => {
            let e: HelperConnect = read(bytes).expect("length checked");
            let path = if e.path[0] == 0 && e.path[1] != 0 {
                // Abstract socket: shown with a leading '@', as ss does.
                format!("@{}", c_str(&e.path[1..]))
            } else {
                c_str(&e.path)
            };
            Body::HelperConnect { family: e.family, path, ret: e.ret }
        }
        EventKind::ProcessExit => {
            let e: ProcessExit = read(bytes).expect("length checked");
            Body::ProcessExit { exit_code: e.exit_code, ppid: e.ppid, roles: roles(e.role) }
        }
        EventKind::ProcessFork => {
            let e: ProcessFork = read(bytes).expect("length checked");
            Body::ProcessFork { child: e.child_tgid }
        }
        EventKind::SysctlWrite => {
            let e: SysctlWrite = read(bytes).expect("length checked");
            Body::SysctlWrite {
                name: c_str(&e.name),
                old_value: c_str(&e.old_value).trim_end_matches('\n').to_string(),
                new_value: c_str(&e.new_value).trim_end_matches('\n').to_string(),
            }
        }
        EventKind::Cgroup => {
            let e: CgroupEvent = read(bytes).expect("length checked");
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
        EventKind::StackCapture => crate::stack::decode_capture(&read(bytes).expect("length checked")),
        EventKind::StackCopy => crate::stack::decode_copy(bytes)?,
    };
    Ok(Event {
        ts_ns: header.ts_ns,
        cpu: header.cpu,
        task: Proc { pid: header.pid, tgid: header.tgid, comm: c_str(&header.comm) },
        cgroup_id: header.cgroup_id,
        body,
    })
}

/// Raw bytes of a wire struct, for tests and fuzzing.
pub fn as_bytes<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: wire types are repr(C) with explicit padding, so every byte is
    // initialised.
    unsafe { std::slice::from_raw_parts(value as *const T as *const u8, std::mem::size_of::<T>()) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
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
            _pad0: 0,
        }
    }

    #[test]
    fn decodes_fault_signal() {
        let e = decode(&as_bytes(&generate_fault())).unwrap();
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
        let e = decode(&as_bytes(&g)).unwrap();
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
        let bytes = as_bytes(&generate_fault());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "len {len} decoded");
        }
    }

    #[test]
    fn unknown_kind_is_reported() {
        let mut bytes = as_bytes(&generate_fault());
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
        let ev = decode(&as_bytes(&e)).unwrap();
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
        let ev = decode(&as_bytes(&e)).unwrap();
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
        match decode(&as_bytes(&c)).unwrap().body {
            Body::HelperConnect { path, ret, .. } => {
                assert_eq!(path, "/run/systemd/coredump");
                assert_eq!(ret, -2);
            }
            other => panic!("wrong body {other:?}"),
        }
        c.path = [0; 108];
        c.path[1..4].copy_from_slice(b"abs");
        match decode(&as_bytes(&c)).unwrap().body {
            Body::HelperConnect { path, .. } => assert_eq!(path, "@abs"),
            other => panic!("wrong body {other:?}"),
        }
    }

    #[test]
    fn decodes_exit_roles_and_unlimited_rlimit() {
        let x = ProcessExit { header: header(EventKind::ProcessExit, 5, "p"), exit_code: 0x8b, role: ROLE_CRASHER | ROLE_WATCHED, ppid: 1, _pad0: 0 };
        match decode(&as_bytes(&x)).unwrap().body {
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
        match decode(&as_bytes(&d)).unwrap().body {
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
        match decode(&as_bytes(&d)).unwrap().body {
            Body::DumpStart { hook, rlimit_core, .. } => {
                assert_eq!(hook, DumpHook::Kprobe);
                assert_eq!(rlimit_core, Some(0));
            }
            other => panic!("wrong body {other:?}"),
        }
        d.hook = 9;
        assert_eq!(decode(&as_bytes(&d)), Err(DecodeError::UnknownHook(9)));
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
        match decode(&as_bytes(&w)).unwrap().body {
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
        match decode(&as_bytes(&c)).unwrap().body {
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
        assert_eq!(decode(&as_bytes(&c)), Err(DecodeError::UnknownCgroupOp(77)));
    }

    #[test]
    fn decodes_fork() {
        let f = ProcessFork { header: header(EventKind::ProcessFork, 1, "init"), child_pid: 9, child_tgid: 9 };
        assert_eq!(decode(&as_bytes(&f)).unwrap().body, Body::ProcessFork { child: 9 });
    }
}

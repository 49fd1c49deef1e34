//! `--journal`: each verdict as one structured journald entry, sent with
//! journald's native protocol (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>).
//!
//! Written here in full rather than taken from a crate: the protocol is a
//! datagram of `NAME=value\n` fields (a length-prefixed form for values
//! with a newline) and, for entries too large for one datagram, a sealed
//! memfd passed with SCM_RIGHTS. `systemd-journal-logger` is a backend for
//! the `log` facade: it would make every verdict a global log call, tie
//! the sink to the process-wide logger, and hide the socket path the tests
//! need to point elsewhere. libsystemd would add a C library to a tracer
//! that is also built static.
//!
//! The socket is non-blocking: a journald that is slow, down or absent
//! (EAGAIN, ECONNREFUSED, ENOENT) costs one counted failure, never a stall
//! of the event loop.
//!
//! Each verdict has a fixed 128-bit `MESSAGE_ID` ([`MESSAGE_IDS`]), the
//! same in every release, so `journalctl MESSAGE_ID=…` finds one kind of
//! verdict on any machine.

use std::{
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::net::UnixDatagram,
    },
    path::{Path, PathBuf},
};

use super::{Emitted, Sink};
use crate::{chain::Chain, core_pattern::DumpMode, record::Record, verdict::Verdict};

/// Where journald listens for native-protocol entries.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Every verdict's `MESSAGE_ID`. Never change one: alerts and saved
/// journalctl queries depend on them. A new verdict gets a new random id.
pub const MESSAGE_IDS: &[(Verdict, &str)] = &[
    (Verdict::Stored, "d50755760d724c04a0b02fb6c85fb671"),
    (Verdict::CollectorUnreachablePid1, "ff04fedc3f094e2aac7a46fb38ffd959"),
    (Verdict::CorePatternDiscards, "b1726b5917c34dcc8a8f25714b77a4a4"),
    (Verdict::CollectorFailed, "4a0813cd34194fd0bbbc905343804c15"),
    (Verdict::CollectorDiscarded, "63c5c4f8cee146feb92942d04f822e43"),
    (Verdict::ReaderVanished, "ac10005042a5499f9d76865d1eac8508"),
    (Verdict::RlimitCore, "c439c017eea941178061d4bef3eaf668"),
    (Verdict::NotDumpable, "d6f4d649ebc2478d81f2771712220acf"),
    (Verdict::PipeLimit, "dae4dfce0364407f9422db726c297b34"),
    (Verdict::SocketUnreachable, "8c95e96b535242bcb56b485476b44a3c"),
    (Verdict::NoDump, "d2962260563241fe8b696dfe14c30f05"),
    (Verdict::Handled, "e9813ce894504d06b5e24576fbfb1d10"),
    (Verdict::Unknown, "3369a8886e5345e3a515f6285e9d2575"),
];

pub fn message_id(verdict: Verdict) -> &'static str {
    MESSAGE_IDS.iter().find(|(v, _)| *v == verdict).map_or(MESSAGE_IDS[MESSAGE_IDS.len() - 1].1, |(_, id)| id)
}

/// syslog priority: err for a lost core, warning when the tracer cannot
/// tell, info when nothing went wrong with the dump.
pub fn priority(verdict: Verdict) -> u8 {
    if verdict.is_dropped() {
        3
    } else if verdict == Verdict::Unknown {
        4
    } else {
        6
    }
}

/// One entry in the native protocol's wire form.
#[derive(Debug, Default)]
pub struct Entry {
    buf: Vec<u8>,
}

impl Entry {
    /// Adds a field. `name` is one of ours (upper case, digits, `_`); the
    /// value may be anything: one with a newline takes the length form, so
    /// a crashing process's comm or path can never inject a field.
    pub fn field(&mut self, name: &str, value: &[u8]) -> &mut Entry {
        debug_assert!(valid_name(name), "{name}");
        self.buf.extend_from_slice(name.as_bytes());
        if value.contains(&b'\n') {
            self.buf.push(b'\n');
            self.buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            self.buf.push(b'=');
        }
        self.buf.extend_from_slice(value);
        self.buf.push(b'\n');
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// journald's rule for field names a client may send.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c == '_' || c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A one-line text: control characters (a newline in a comm) become `?`.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// The entry for one verdict; `chain_uid` is the verdict record's name for
/// the chain across runs and hosts, when the record has one.
pub fn verdict_entry(chain: &Chain, chain_uid: Option<&str>) -> Entry {
    let verdict = chain.verdict.unwrap_or(Verdict::Unknown);
    let comm = &chain.crasher.comm;
    let message = format!(
        "{} (pid {}) {}: {} — {}",
        one_line(comm),
        chain.crasher.tgid,
        chain.signal,
        verdict.as_str(),
        one_line(&chain.reason)
    );
    let mut e = Entry::default();
    e.field("MESSAGE", message.as_bytes())
        .field("MESSAGE_ID", message_id(verdict).as_bytes())
        .field("PRIORITY", priority(verdict).to_string().as_bytes())
        .field("SYSLOG_IDENTIFIER", b"crashtrace")
        .field("CRASHTRACE_VERDICT", verdict.as_str().as_bytes())
        .field("CRASHTRACE_CRASHER_PID", chain.crasher.tgid.to_string().as_bytes())
        .field("CRASHTRACE_CRASHER_COMM", comm.as_bytes())
        .field("CRASHTRACE_SIGNAL", chain.signal.as_bytes())
        .field("CRASHTRACE_REASON", chain.reason.as_bytes())
        .field("CRASHTRACE_CHAIN", chain.id.to_string().as_bytes());
    if let Some(uid) = chain_uid {
        e.field("CRASHTRACE_CHAIN_UID", uid.as_bytes());
    }
    if let Some(c) = &chain.container {
        e.field("CRASHTRACE_CONTAINER_RUNTIME", c.runtime.as_str().as_bytes()).field("CRASHTRACE_CONTAINER_ID", c.id.as_bytes());
    }
    if let Some(p) = &chain.pod {
        e.field("CRASHTRACE_POD_UID", p.uid.as_bytes()).field("CRASHTRACE_POD_QOS", p.qos.as_str().as_bytes());
    }
    if let Some(unit) = &chain.unit {
        e.field("CRASHTRACE_UNIT", unit.as_bytes());
    }
    if let Some(missing) = &chain.missing {
        e.field("CRASHTRACE_MISSING", missing.as_bytes());
    }
    // Where the core was found (a file, socket or journal entry); failing
    // that, the file a file pattern named, when the core was stored.
    if let Some(path) = chain.core.as_ref().and_then(|c| c.path.as_deref()) {
        e.field("CRASHTRACE_CORE_PATH", path.as_bytes());
    } else if verdict == Verdict::Stored
        && let Some(dump) = &chain.dump
        && let DumpMode::File { path } = &dump.mode
    {
        e.field("CRASHTRACE_CORE_PATH", path.as_bytes());
    }
    e
}

/// Why an entry did not reach journald.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journald is not listening on {path}: {source}")]
    Send { path: PathBuf, source: io::Error },
    #[error("cannot pass a large entry through a memfd: {0}")]
    Memfd(io::Error),
}

/// A client of journald's native socket.
pub struct Journal {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Journal {
    pub fn new(path: PathBuf) -> io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Journal { socket, path })
    }

    /// Sends one entry: as one datagram, or through a sealed memfd when
    /// it is larger than the socket takes (EMSGSIZE), as journald allows.
    pub fn send(&self, entry: &Entry) -> Result<(), JournalError> {
        match self.socket.send_to(entry.bytes(), &self.path) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => self.send_memfd(entry.bytes()),
            Err(source) => Err(JournalError::Send { path: self.path.clone(), source }),
        }
    }

    fn send_memfd(&self, data: &[u8]) -> Result<(), JournalError> {
        let fd = sealed_memfd(data).map_err(JournalError::Memfd)?;
        send_fd(&self.socket, &self.path, &fd).map_err(|source| JournalError::Send { path: self.path.clone(), source })
    }
}

/// A memfd holding `data`, sealed against any change: journald accepts an
/// fd only when it cannot change under it.
fn sealed_memfd(data: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated literal; the result is checked.
    let raw = unsafe { libc::memfd_create(c"crashtrace-journal".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    io::Write::write_all(&mut file, data)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor the File owns; the result is checked.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(file))
}

/// sendmsg with one SCM_RIGHTS descriptor and no payload, to `path`.
fn send_fd(socket: &UnixDatagram, path: &Path, fd: &OwnedFd) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path too long"));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // Room for one cmsghdr with one int, aligned as cmsghdr wants.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize;
    debug_assert!(space <= size_of_val(&control));
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `control`, large enough for one header
    // (checked above), so CMSG_FIRSTHDR is non-null and in bounds.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
    }
    // SAFETY: every pointer in msg points at a live local for the call.
    if unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The journal sink: one entry per verdict; failures are counted, and the
/// first few said on stderr.
pub struct JournalSink {
    journal: Option<Journal>,
    failures: u64,
}

/// How many failures are said on stderr before they are only counted.
const FAILURES_PRINTED: u64 = 3;

impl JournalSink {
    pub fn new(socket: PathBuf) -> JournalSink {
        let journal = match Journal::new(socket) {
            Ok(j) => Some(j),
            Err(e) => {
                eprintln!("crashtrace: cannot open a socket for the journal: {e}; verdicts are counted as not sent");
                None
            }
        };
        JournalSink { journal, failures: 0 }
    }
}

impl Sink for JournalSink {
    fn write(&mut self, out: &Emitted) {
        let Record::Verdict(chain) = out.record() else { return };
        let result = match &self.journal {
            Some(j) => j.send(&verdict_entry(chain, out.line().chain_uid.as_deref())),
            None => return self.failures += 1,
        };
        if let Err(e) = result {
            self.failures += 1;
            if self.failures <= FAILURES_PRINTED {
                eprintln!("crashtrace: verdict not sent to the journal: {e}; counted in the summary");
            }
        }
    }

    fn journal_failures(&self) -> u64 {
        self.failures
    }
}

/// A parser of the native protocol, for tests here and in tests/: the
/// fields of one entry in order; `None` if it is malformed.
pub fn parse_entry(mut data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let end = data.iter().position(|b| *b == b'\n' || *b == b'=')?;
        let name = std::str::from_utf8(&data[..end]).ok()?.to_string();
        if data[end] == b'=' {
            let rest = &data[end + 1..];
            let nl = rest.iter().position(|b| *b == b'\n')?;
            fields.push((name, rest[..nl].to_vec()));
            data = &rest[nl + 1..];
        } else {
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
            let value = rest.get(8..8usize.checked_add(len)?)?;
            if rest.get(8 + len) != Some(&b'\n') {
                return None;
            }
            fields.push((name, value.to_vec()));
            data = &rest[8 + len + 1..];
        }
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, time::Duration};

    use super::*;
    use crate::{chain::Dump, core_pattern::DumpMode, event::Proc};

    fn chain(comm: &str, verdict: Verdict) -> Chain {
        let mut c = Chain::new(42, Proc { pid: 7, tgid: 7, comm: comm.into() }, 11, 0);
        c.signal = "SIGSEGV".into();
        c.verdict = Some(verdict);
        c.reason = "the kernel wrote the core".into();
        c
    }

    fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    #[test]
    fn every_verdict_has_its_own_valid_message_id() {
        let ids: HashSet<_> = MESSAGE_IDS.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids.len(), Verdict::ALL.len(), "one distinct id per verdict");
        for v in Verdict::ALL {
            let id = message_id(v);
            assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
            assert!(MESSAGE_IDS.iter().any(|(m, i)| *m == v && *i == id), "{v} missing from the table");
        }
        assert_eq!(message_id(Verdict::Stored), "d50755760d724c04a0b02fb6c85fb671", "ids are fixed across releases");
    }

    #[test]
    fn the_readme_lists_the_same_message_ids() {
        let readme = include_str!("../../../README.md");
        for (verdict, id) in MESSAGE_IDS {
            let row = format!("| `{verdict}` | `{id}` |");
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }

    #[test]
    fn priorities_follow_the_verdict() {
        assert_eq!(priority(Verdict::CorePatternDiscards), 3);
        assert_eq!(priority(Verdict::RlimitCore), 3);
        assert_eq!(priority(Verdict::Unknown), 4);
        assert_eq!(priority(Verdict::Stored), 6);
        assert_eq!(priority(Verdict::Handled), 6);
        assert_eq!(priority(Verdict::NoDump), 6);
    }

    #[test]
    fn a_verdict_entry_carries_the_documented_fields() {
        let mut c = chain("myd", Verdict::Stored);
        let mut dump: Dump = serde_json::from_value(serde_json::json!({
            "hook": "inferred", "mode": "file", "path": "/var/crash/core.7", "core_pattern": "/var/crash/core.%p",
            "rlimit_core": null, "dumpable": 1, "helper_executable": null, "over_pipe_limit": false
        }))
        .unwrap();
        dump.mode = DumpMode::File { path: "/var/crash/core.7".into() };
        c.dump = Some(dump);
        c.cgroup_path = Some("/system.slice/nginx.service".into());
        c.learn_context();
        let e = verdict_entry(&c, Some("abababababababababababababababab-42"));
        let fields = parse_entry(e.bytes()).expect("well-formed");
        let want: &[(&str, &[u8])] = &[
            ("MESSAGE", "myd (pid 7) SIGSEGV: stored — the kernel wrote the core".as_bytes()),
            ("MESSAGE_ID", b"d50755760d724c04a0b02fb6c85fb671"),
            ("PRIORITY", b"6"),
            ("SYSLOG_IDENTIFIER", b"crashtrace"),
            ("CRASHTRACE_VERDICT", b"stored"),
            ("CRASHTRACE_CRASHER_PID", b"7"),
            ("CRASHTRACE_CRASHER_COMM", b"myd"),
            ("CRASHTRACE_SIGNAL", b"SIGSEGV"),
            ("CRASHTRACE_REASON", b"the kernel wrote the core"),
            ("CRASHTRACE_CHAIN", b"42"),
            ("CRASHTRACE_CHAIN_UID", b"abababababababababababababababab-42"),
            ("CRASHTRACE_CORE_PATH", b"/var/crash/core.7"),
            ("CRASHTRACE_UNIT", b"nginx.service"),
        ];
        for (name, value) in want {
            assert_eq!(field(&fields, name), Some(*value), "{name}");
        }
        for (name, _) in &fields {
            assert!(valid_name(name), "{name}");
        }
    }

    #[test]
    fn a_newline_in_a_value_takes_the_length_form_and_cannot_inject_a_field() {
        let c = chain("evil\nPRIORITY=0", Verdict::CorePatternDiscards);
        let e = verdict_entry(&c, None);
        let raw = e.bytes();
        let at = raw.windows(b"CRASHTRACE_CRASHER_COMM\n".len()).position(|w| w == b"CRASHTRACE_CRASHER_COMM\n").unwrap();
        let len = &raw[at + 24..at + 32];
        assert_eq!(u64::from_le_bytes(len.try_into().unwrap()), "evil\nPRIORITY=0".len() as u64);
        let fields = parse_entry(raw).unwrap();
        assert_eq!(field(&fields, "CRASHTRACE_CRASHER_COMM"), Some(&b"evil\nPRIORITY=0"[..]));
        let priorities: Vec<_> = fields.iter().filter(|(n, _)| n == "PRIORITY").collect();
        assert_eq!(priorities.len(), 1, "{fields:?}");
        assert_eq!(field(&fields, "PRIORITY"), Some(&b"3"[..]));
        let message = field(&fields, "MESSAGE").unwrap();
        assert!(!message.contains(&b'\n') && message.starts_with(b"evil?PRIORITY=0 (pid 7)"), "{message:?}");
        assert!(field(&fields, "CRASHTRACE_CORE_PATH").is_none(), "no core path without a stored core");
    }

    #[test]
    fn field_names_follow_journald_rules() {
        assert!(valid_name("CRASHTRACE_CHAIN"));
        assert!(!valid_name("_PID") && !valid_name("1X") && !valid_name("lower") && !valid_name(""));
    }

    #[test]
    fn malformed_entries_do_not_parse() {
        assert_eq!(parse_entry(b"A=1\n"), Some(vec![("A".into(), b"1".to_vec())]));
        assert_eq!(parse_entry(b"A=1"), None);
        assert_eq!(parse_entry(b"A\n\x05\0\0\0\0\0\0\0ab"), None);
        assert_eq!(parse_entry(b"A\n\xff\xff\xff\xff\xff\xff\xff\xffab\n"), None);
    }

    fn temp_socket(name: &str) -> (PathBuf, UnixDatagram) {
        let path = std::env::temp_dir().join(format!("crashtrace-journal-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (path, server)
    }

    #[test]
    fn entries_reach_a_listening_socket_and_failures_are_counted() {
        let (path, server) = temp_socket("ok");
        let mut sink = JournalSink::new(path.clone());
        sink.write(&Emitted::new(Record::Verdict(Box::new(chain("a", Verdict::NoDump)))));
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf).unwrap();
        let fields = parse_entry(&buf[..n]).unwrap();
        assert_eq!(field(&fields, "CRASHTRACE_VERDICT"), Some(&b"no-dump"[..]));
        assert_eq!(sink.journal_failures(), 0);
        drop(server);
        std::fs::remove_file(&path).unwrap();
        // Now nobody listens: ENOENT, counted, and the sink carries on.
        sink.write(&Emitted::new(Record::Verdict(Box::new(chain("a", Verdict::NoDump)))));
        sink.write(&Emitted::new(Record::Verdict(Box::new(chain("a", Verdict::NoDump)))));
        assert_eq!(sink.journal_failures(), 2);
    }

    #[test]
    fn an_entry_too_large_for_a_datagram_goes_through_a_sealed_memfd() {
        let (path, server) = temp_socket("big");
        let journal = Journal::new(path.clone()).unwrap();
        let mut c = chain("big", Verdict::Unknown);
        c.reason = "x".repeat(4 << 20);
        journal.send(&verdict_entry(&c, None)).unwrap();
        let (data, fd_seals) = recv_with_fd(&server);
        let fields = parse_entry(&data).unwrap();
        assert_eq!(field(&fields, "CRASHTRACE_REASON").map(<[u8]>::len), Some(4 << 20));
        let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        assert_eq!(fd_seals & want, want);
        std::fs::remove_file(&path).unwrap();
    }

    /// Receives a datagram with an SCM_RIGHTS fd, as journald does: the
    /// fd's contents and its seals.
    fn recv_with_fd(server: &UnixDatagram) -> (Vec<u8>, i32) {
        let mut payload = [0u8; 16];
        let mut iov = libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() };
        let mut control = [0u64; 8];
        // SAFETY: plain data.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        // SAFETY: all pointers point at live locals.
        let n = unsafe { libc::recvmsg(server.as_raw_fd(), &mut msg, 0) };
        assert!(n >= 0, "{}", io::Error::last_os_error());
        // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR stays in it.
        let fd = unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            assert!(!cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS);
            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>())
        };
        // SAFETY: the descriptor was just received and is ours.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: fcntl on a live fd.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        // The sender's write left the shared offset at the end; journald
        // maps the fd, so read from the start.
        let mut data = Vec::new();
        io::Seek::seek(&mut &file, io::SeekFrom::Start(0)).unwrap();
        io::Read::read_to_end(&mut &file, &mut data).unwrap();
        (data, seals)
    }
}

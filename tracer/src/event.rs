//! The events user space works with: decoded from the wire, written to JSON
//! Lines, and read back by `crashtrace report`. One schema for all of them.
//!
//! The bottom of the model: `decode` produces these, `stack`, `chain` and
//! `correlate` consume them, and this module depends on none of them.

use serde::{Deserialize, Serialize};
use tracer_common::EventKind;

/// Bumped whenever a record changes incompatibly. Every JSON record has it.
pub const SCHEMA_VERSION: u32 = 1;

/// A process as an event saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
}

impl std::fmt::Display for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid == self.tgid {
            write!(f, "{}[{}]", self.comm, self.tgid)
        } else {
            write!(f, "{}[{}/{}]", self.comm, self.tgid, self.pid)
        }
    }
}

/// One event: who was running (`task`) and what happened (`body`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds, from the kernel.
    pub ts_ns: u64,
    pub cpu: u32,
    pub task: Proc,
    pub cgroup_id: u64,
    #[serde(flatten)]
    pub body: Body,
}

tracer_common::named_enum! {
    serde
    /// Where the dump start was seen.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum DumpHook {
        Fentry => "fentry",
        Kprobe => "kprobe",
        Tracepoint => "tracepoint",
        /// No direct hook: derived from signal_deliver (SIG_DFL + core signal).
        Inferred => "inferred",
    }
}

tracer_common::named_enum! {
    serde
    /// What happened to a cgroup (the `cgroup:*` tracepoint that fired).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum CgroupOp {
        Mkdir => "mkdir",
        Rmdir => "rmdir",
        Release => "release",
        /// Became populated or empty (`cgroup_notify_populated`).
        Populated => "populated",
    }
}

tracer_common::named_enum! {
    serde
    /// Why the kernel side followed a process to its exit.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Role {
        Crasher => "crasher",
        /// A core_pattern pipe helper (collector).
        Helper => "helper",
        Watched => "watched",
        WatchedChild => "watched-child",
    }
}

tracer_common::named_enum! {
    serde
    /// What the kernel passed as siginfo.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum SigInfo {
        /// A real siginfo.
        Full => "full",
        /// SEND_SIG_NOINFO: a plain kill from the kernel.
        Noinfo => "noinfo",
        /// SEND_SIG_PRIV: a kernel-internal signal.
        Priv => "priv",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Body {
    /// A signal generated for `target`; the event's task is the sender.
    SignalGenerate {
        sig: i32,
        code: i32,
        errno: i32,
        group: i32,
        /// 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 info lost.
        result: i32,
        info: SigInfo,
        target: Proc,
        target_ppid: u32,
        /// The target's sa_handler for this signal when it was generated.
        target_handler: u64,
        /// The target blocked the signal when it was generated (it waits in
        /// sigwait/signalfd, or acts on it only once unblocked).
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        target_blocked: bool,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        fault_addr: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        si_pid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        si_uid: Option<u32>,
    },
    /// The receiving thread acts on a signal; the event's task is the receiver.
    SignalDeliver {
        sig: i32,
        code: i32,
        errno: i32,
        info: SigInfo,
        sa_handler: u64,
        sa_flags: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        fault_addr: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        si_pid: Option<u32>,
        /// None: unlimited.
        rlimit_core: Option<u64>,
        ppid: u32,
        /// None: unknown (no mm).
        dumpable: Option<u32>,
        /// The receiver's pid namespace inode and its pid inside it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pidns: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        ns_pid: Option<u32>,
    },
    /// A direct hook saw the kernel's core-dump entry.
    DumpStart {
        sig: i32,
        code: i32,
        hook: DumpHook,
        rlimit_core: Option<u64>,
        dumpable: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        fault_addr: Option<u64>,
    },
    /// The kernel exec'd a core_pattern pipe helper (the event's task).
    HelperExec { filename: String, argv: Vec<String>, args_truncated: bool },
    /// A helper's connect(): `ret` is 0 or -errno.
    HelperConnect {
        family: u16,
        path: String,
        ret: i32,
    },
    /// A followed process exited.
    ProcessExit {
        exit_code: i32,
        ppid: u32,
        roles: Vec<Role>,
    },
    /// A watched process forked.
    ProcessFork { child: u32 },
    /// The core-dump settings in force (read from /proc by user space).
    CoreSettings(crate::core_pattern::CoreSettings),
    /// Where a dumped core was found (or not), looked up by user space when
    /// the dump was over; the event's task is the crasher.
    CoreLocated(crate::core_location::CoreLocation),
    /// A write to a core-dump sysctl; the event's task is the writer.
    SysctlWrite { name: String, old_value: String, new_value: String },
    /// A cgroup changed; the event's task is the one acting.
    Cgroup {
        op: CgroupOp,
        /// Hierarchy id; 0 is cgroup v2.
        root: u32,
        id: u64,
        level: u32,
        /// For [`CgroupOp::Populated`]: populated or emptied.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        populated: Option<bool>,
        path: String,
        /// Zombies still charged to the group when it was emptied or removed
        /// (cgroup v2 keeps a zombie in its group until it is reaped). Filled
        /// in by user space from /proc.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        zombies: Vec<Proc>,
    },
    /// The stack of the thread acting on a fatal signal (the event's task),
    /// taken in the kernel at delivery. Raw addresses; [`crate::stack::Stack`]
    /// is what a chain keeps of it.
    StackCapture {
        sig: i32,
        /// User frames: the IP, then return addresses (frame-pointer walk).
        user: Vec<u64>,
        kernel: Vec<u64>,
        /// The user frames as build-id + file offset, where the kernel
        /// could read the build-id; same order as `user`.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        build_ids: Vec<Option<BuildIdRef>>,
        /// User registers when the thread entered the kernel.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        ip: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        sp: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        bp: Option<u64>,
        /// Why a walk gave nothing: the errno `bpf_get_stack` returned.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        user_errno: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        kernel_errno: Option<i32>,
    },
    /// The top of that thread's user stack (`--stack-copy`), from `sp` up,
    /// for unwinding from `.eh_frame`. `data` is hex in JSON.
    StackCopy {
        sp: u64,
        #[serde(with = "hex_bytes")]
        data: Vec<u8>,
    },
}

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
    // By table, not `write!("{:02x}")`: a crash storm's stack copies are
    // kilobytes each, and formatting them byte by byte through fmt was the
    // largest single cost of `--json` output in a full-speed storm.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// Bytes as one lower-case hex string in JSON (stack copies).
pub mod hex_bytes {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        decode(&text).map_err(D::Error::custom)
    }

    /// Why [`decode`] refused a string.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum HexError {
        #[error("hex bytes of odd length")]
        OddLength,
        #[error("not hex at byte {0}")]
        NotHex(usize),
    }

    /// Hex text to bytes, accepting exactly what parsing each pair with
    /// `u8::from_str_radix(pair, 16)` accepts (which includes a pair like
    /// "+f"), with the same errors: logs keep reading the same way. A report
    /// over a crash storm's log decodes megabytes of stack copies, and
    /// `from_str_radix` per pair was most of what that cost: 32 digits at a
    /// time here, without branches the compiler cannot vectorise, and the
    /// per-pair parse only for a block with something else in it.
    pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
        const BLOCK: usize = 32;
        if !text.len().is_multiple_of(2) {
            return Err(HexError::OddLength);
        }
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len() / 2);
        let mut blocks = bytes.chunks_exact(BLOCK);
        for (n, block) in blocks.by_ref().enumerate() {
            let mut nibbles = [0u8; BLOCK];
            let mut bad = false;
            for (nib, &b) in nibbles.iter_mut().zip(block) {
                let digit = b.wrapping_sub(b'0');
                // 'a'..='f' and 'A'..='F' (only those two ranges land here).
                let letter = (b | 0x20).wrapping_sub(b'a');
                *nib = if digit < 10 { digit } else { letter.wrapping_add(10) };
                bad |= digit >= 10 && letter >= 6;
            }
            if bad {
                pairs(text, n * BLOCK, block.len(), &mut out)?;
                continue;
            }
            let mut packed = [0u8; BLOCK / 2];
            for (p, pair) in packed.iter_mut().zip(nibbles.chunks_exact(2)) {
                *p = (pair[0] << 4) | pair[1];
            }
            out.extend_from_slice(&packed);
        }
        let tail = blocks.remainder().len();
        pairs(text, bytes.len() - tail, tail, &mut out)?;
        Ok(out)
    }

    /// `len` bytes of `text` from `at`, pair by pair, as the format was
    /// always read.
    fn pairs(text: &str, at: usize, len: usize, out: &mut Vec<u8>) -> Result<(), HexError> {
        for i in (at..at + len).step_by(2) {
            match text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()) {
                Some(b) => out.push(b),
                None => return Err(HexError::NotHex(i)),
            }
        }
        Ok(())
    }
}


/// The `event` tags of the record kinds that do not come off the wire.
const CORE_SETTINGS_NAME: &str = "core-settings";
const CORE_LOCATED_NAME: &str = "core-located";

impl Body {
    /// The wire kind this body was decoded from; `None` for what user space
    /// makes itself ([`Body::CoreSettings`]).
    pub fn kind(&self) -> Option<EventKind> {
        Some(match self {
            Body::SignalGenerate { .. } => EventKind::SignalGenerate,
            Body::SignalDeliver { .. } => EventKind::SignalDeliver,
            Body::DumpStart { .. } => EventKind::DumpStart,
            Body::HelperExec { .. } => EventKind::HelperExec,
            Body::HelperConnect { .. } => EventKind::HelperConnect,
            Body::ProcessExit { .. } => EventKind::ProcessExit,
            Body::ProcessFork { .. } => EventKind::ProcessFork,
            Body::CoreSettings(_) | Body::CoreLocated(_) => return None,
            Body::SysctlWrite { .. } => EventKind::SysctlWrite,
            Body::Cgroup { .. } => EventKind::Cgroup,
            Body::StackCapture { .. } => EventKind::StackCapture,
            Body::StackCopy { .. } => EventKind::StackCopy,
        })
    }

    /// The record's `event` tag. Serde derives the tag from the variant's
    /// name by the same kebab-case rule the [`EventKind`] table follows; a
    /// test pins the two together.
    pub fn name(&self) -> &'static str {
        match self {
            Body::CoreLocated(_) => CORE_LOCATED_NAME,
            _ => self.kind().map(EventKind::as_str).unwrap_or(CORE_SETTINGS_NAME),
        }
    }
}

/// Signal names for display.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        16 => "SIGSTKFLT",
        17 => "SIGCHLD",
        18 => "SIGCONT",
        19 => "SIGSTOP",
        20 => "SIGTSTP",
        21 => "SIGTTIN",
        22 => "SIGTTOU",
        23 => "SIGURG",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        26 => "SIGVTALRM",
        27 => "SIGPROF",
        28 => "SIGWINCH",
        29 => "SIGIO",
        30 => "SIGPWR",
        31 => "SIGSYS",
        n if (34..=64).contains(&n) => return format!("SIGRT{}", n - 34),
        n => return format!("SIG{n}"),
    };
    name.to_string()
}

/// Names for errno values crashtrace shows (connect results mostly).
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        11 => "EAGAIN",
        13 => "EACCES",
        22 => "EINVAL",
        32 => "EPIPE",
        91 => "EPROTOTYPE",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        115 => "EINPROGRESS",
        n => return format!("errno {n}"),
    };
    name.to_string()
}

/// A human description of si_code for the signal.
pub fn code_name(sig: i32, code: i32) -> String {
    use tracer_common::signal::*;
    let s = match (sig, code) {
        (_, SI_USER) => "SI_USER",
        (_, SI_KERNEL) => "SI_KERNEL",
        (_, SI_QUEUE) => "SI_QUEUE",
        (_, SI_TKILL) => "SI_TKILL",
        (SIGSEGV, 1) => "SEGV_MAPERR",
        (SIGSEGV, 2) => "SEGV_ACCERR",
        (SIGBUS, 1) => "BUS_ADRALN",
        (SIGBUS, 2) => "BUS_ADRERR",
        (SIGILL, 1) => "ILL_ILLOPC",
        (SIGILL, 2) => "ILL_ILLOPN",
        (SIGFPE, 1) => "FPE_INTDIV",
        (SIGFPE, 2) => "FPE_INTOVF",
        (SIGTRAP, 1) => "TRAP_BRKPT",
        (SIGCHLD, CLD_EXITED) => "CLD_EXITED",
        (SIGCHLD, CLD_KILLED) => "CLD_KILLED",
        (SIGCHLD, CLD_DUMPED) => "CLD_DUMPED",
        (_, c) => return format!("code {c}"),
    };
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte_and_reads_back() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = hex(&bytes);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(&text[text.len() - 6..], "fdfeff");
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
        let back: Vec<u8> = hex_bytes::deserialize(serde_json::Value::String(text)).unwrap();
        assert_eq!(back, bytes);
    }

    /// The decoder as it was before the table: every pair through
    /// `from_str_radix`.
    fn decode_by_pairs(text: &str) -> Result<Vec<u8>, hex_bytes::HexError> {
        if !text.len().is_multiple_of(2) {
            return Err(hex_bytes::HexError::OddLength);
        }
        (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()).ok_or(hex_bytes::HexError::NotHex(i)))
            .collect()
    }

    #[test]
    fn hex_decodes_as_the_pair_by_pair_parse_did_errors_included() {
        let long = hex(&(0..=255).cycle().take(1000).collect::<Vec<u8>>());
        let mut cases: Vec<String> = vec![
            String::new(),
            "0".into(),
            "0f".into(),
            "0F".into(),
            long.clone(),
            long.to_uppercase(),
            format!("{long}0"),
        ];
        // Something odd at every place of a block and of the tail:
        // '+' and '-' (a sign from_str_radix takes or refuses), letters
        // past 'f', a byte that |0x20 maps near 'a', a NUL, multibyte UTF-8.
        for bad in ["+", "-", "g", "G", "@", "`", "\u{0}", "é", "€", " "] {
            for at in [0, 1, 2, 15, 31, 32, 33, 63, 64, 65, 998, 999] {
                let mut t = long[..1000].to_string();
                t.replace_range(at..at + 1, bad);
                cases.push(t);
            }
        }
        // "+f" is a byte to from_str_radix; "+" then a non-digit is not.
        cases.push(format!("{}+f{}", &long[..40], &long[..40]));
        cases.push(format!("{}+f", &long[..62]));
        for text in cases {
            assert_eq!(hex_bytes::decode(&text), decode_by_pairs(&text), "on {text:?}");
        }
        assert_eq!(hex_bytes::decode("0g"), Err(hex_bytes::HexError::NotHex(0)));
        assert_eq!(hex_bytes::decode(&format!("{}zz", &long[..64])), Err(hex_bytes::HexError::NotHex(64)));
        assert_eq!(hex_bytes::decode("+f+1"), Ok(vec![0x0f, 0x01]));
    }

    /// One body of each wire kind; the exhaustive match makes a new kind add
    /// its sample here.
    fn sample(kind: EventKind) -> Body {
        let signal = |sig| Body::SignalDeliver {
            sig,
            code: 1,
            errno: 0,
            info: SigInfo::Full,
            sa_handler: 0,
            sa_flags: 0,
            fault_addr: None,
            si_pid: None,
            rlimit_core: None,
            ppid: 1,
            dumpable: None,
            pidns: None,
            ns_pid: None,
        };
        match kind {
            EventKind::SignalGenerate => Body::SignalGenerate {
                sig: 11,
                code: 1,
                errno: 0,
                group: 0,
                result: 0,
                info: SigInfo::Noinfo,
                target: Proc::default(),
                target_ppid: 1,
                target_handler: 0,
                target_blocked: false,
                fault_addr: None,
                si_pid: None,
                si_uid: None,
            },
            EventKind::SignalDeliver => signal(11),
            EventKind::DumpStart => Body::DumpStart { sig: 11, code: 1, hook: DumpHook::Tracepoint, rlimit_core: None, dumpable: None, fault_addr: None },
            EventKind::HelperExec => Body::HelperExec { filename: "/x".into(), argv: vec![], args_truncated: false },
            EventKind::HelperConnect => Body::HelperConnect { family: 1, path: "/s".into(), ret: 0 },
            EventKind::ProcessExit => Body::ProcessExit { exit_code: 0, ppid: 1, roles: vec![Role::WatchedChild] },
            EventKind::ProcessFork => Body::ProcessFork { child: 2 },
            EventKind::SysctlWrite => Body::SysctlWrite { name: "kernel/core_pattern".into(), old_value: String::new(), new_value: "core".into() },
            EventKind::Cgroup => Body::Cgroup { op: CgroupOp::Release, root: 0, id: 9, level: 1, populated: None, path: "/a".into(), zombies: vec![] },
            EventKind::StackCapture => Body::StackCapture { sig: 11, user: vec![], kernel: vec![], build_ids: vec![], ip: None, sp: None, bp: None, user_errno: None, kernel_errno: None },
            EventKind::StackCopy => Body::StackCopy { sp: 8, data: vec![1] },
        }
    }

    fn event(body: Body) -> Event {
        Event { ts_ns: 1, cpu: 0, task: Proc::default(), cgroup_id: 1, body }
    }

    /// The serde tag and the name table are one spelling: they must agree.
    #[test]
    fn json_tag_is_the_kind_name_and_round_trips() {
        for kind in EventKind::ALL {
            let ev = event(sample(kind));
            assert_eq!(ev.body.kind(), Some(kind));
            let json = serde_json::to_value(&ev).unwrap();
            assert_eq!(json["event"], kind.as_str(), "{json}");
            assert_eq!(ev.body.name(), kind.as_str());
            assert_eq!(serde_json::from_value::<Event>(json).unwrap(), ev);
        }
        let settings = event(Body::CoreSettings(crate::core_pattern::CoreSettings {
            core_pattern: "core".into(),
            core_pipe_limit: 0,
            core_uses_pid: false,
            helper_executable: None,
            set_by: None,
        }));
        assert_eq!(settings.body.kind(), None);
        assert_eq!(serde_json::to_value(&settings).unwrap()["event"], settings.body.name());
    }

    #[test]
    fn typed_values_are_their_names_in_json() {
        let ev = event(sample(EventKind::ProcessExit));
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains(r#""roles":["watched-child"]"#), "{json}");
        let cg = serde_json::to_string(&event(sample(EventKind::Cgroup))).unwrap();
        assert!(cg.contains(r#""op":"release""#), "{cg}");
        let bad = cg.replace(r#""op":"release""#, r#""op":"chmod""#);
        let err = serde_json::from_str::<Event>(&bad).unwrap_err().to_string();
        assert!(err.contains("chmod"), "{err}");
    }
}

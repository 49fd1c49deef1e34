//! The fast way to read the two records a log is made of (`event` and
//! `verdict`), without serde's `flatten` and internally tagged enums: those
//! buffer every line into a tree of owned values before the typed parse
//! starts, and that buffering was most of what `report` spent per line.
//!
//! The contract, which keeps this safe to get wrong: [`parse`] returns a
//! [`Line`] only when the general parse ([`super::reader::parse_line`]'s slow
//! path) would return the same `Line`; for anything else (another record or
//! event type, a missing, null or ill-typed field, a duplicate key, another
//! supported schema version, or none: the general parse defaults it) it
//! returns `None` and the caller parses the line the
//! general way, which also says what is wrong with it. So error messages,
//! and every record type or event kind not handled here, are unchanged.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

use crate::{
    chain::Chain,
    event::{hex_bytes, Body, BuildIdRef, CgroupOp, DumpHook, Event, Proc, Role, SCHEMA_VERSION, SigInfo},
    record::{EventRecord, Host, Line, Record},
};

/// A field that is not `Option` in the model but may be missing here: a
/// present value must have the model's type (null is not `None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The fields a [`Line`] has besides its record, and the record's type.
#[derive(Deserialize)]
struct Meta<'a> {
    v: u32,
    #[serde(default)]
    file: Option<u64>,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    host: Option<Host>,
    #[serde(default)]
    chain_uid: Option<String>,
    #[serde(default)]
    linked_chain_uid: Option<String>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// An `event` record of one of the common kinds, flat: every field any of
/// those kinds has, checked against the kind afterwards ([`FlatEvent::body`]).
/// Fields of other kinds are ignored, as the general parse ignores them.
#[derive(Deserialize)]
struct FlatEvent<'a> {
    v: u32,
    #[serde(default)]
    file: Option<u64>,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    host: Option<Host>,
    #[serde(default)]
    chain_uid: Option<String>,
    #[serde(default)]
    linked_chain_uid: Option<String>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    wall_ns: u64,
    #[serde(default)]
    chain: Option<u64>,
    ts_ns: u64,
    cpu: u32,
    task: Proc,
    cgroup_id: u64,
    #[serde(borrow)]
    event: Cow<'a, str>,
    // Model fields that are not `Option`: `present`, so null is refused.
    #[serde(default, deserialize_with = "present")]
    sig: Option<i32>,
    #[serde(default, deserialize_with = "present")]
    code: Option<i32>,
    #[serde(default, deserialize_with = "present")]
    errno: Option<i32>,
    #[serde(default, deserialize_with = "present")]
    group: Option<i32>,
    #[serde(default, deserialize_with = "present")]
    result: Option<i32>,
    #[serde(default, deserialize_with = "present")]
    info: Option<SigInfo>,
    #[serde(default, deserialize_with = "present")]
    target: Option<Proc>,
    #[serde(default, deserialize_with = "present")]
    target_ppid: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    target_handler: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    target_blocked: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    sa_handler: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    sa_flags: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    ppid: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    hook: Option<DumpHook>,
    #[serde(default, deserialize_with = "present")]
    filename: Option<String>,
    #[serde(default, deserialize_with = "present")]
    argv: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    args_truncated: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    family: Option<u16>,
    #[serde(default, deserialize_with = "present")]
    path: Option<String>,
    #[serde(default, deserialize_with = "present")]
    ret: Option<i32>,
    #[serde(default, deserialize_with = "present")]
    exit_code: Option<i32>,
    #[serde(default, deserialize_with = "present")]
    roles: Option<Vec<Role>>,
    #[serde(default, deserialize_with = "present")]
    child: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    op: Option<CgroupOp>,
    #[serde(default, deserialize_with = "present")]
    root: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    id: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    level: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    zombies: Option<Vec<Proc>>,
    #[serde(default, deserialize_with = "present")]
    user: Option<Vec<u64>>,
    #[serde(default, deserialize_with = "present")]
    kernel: Option<Vec<u64>>,
    #[serde(default, deserialize_with = "present")]
    build_ids: Option<Vec<Option<BuildIdRef>>>,
    /// A stack copy's bytes, hex: borrowed, decoded without a copy of the
    /// text (kilobytes a line in a crash storm's log). Null, or a string
    /// with escapes (which cannot be borrowed), declines.
    #[serde(default, borrow)]
    data: Option<&'a str>,
    // Model fields that are `Option`: missing and null are both `None`.
    // (`sp` is not `Option` for a stack copy: `None` there declines.)
    #[serde(default)]
    sp: Option<u64>,
    #[serde(default)]
    ip: Option<u64>,
    #[serde(default)]
    bp: Option<u64>,
    #[serde(default)]
    user_errno: Option<i32>,
    #[serde(default)]
    kernel_errno: Option<i32>,
    #[serde(default)]
    fault_addr: Option<u64>,
    #[serde(default)]
    si_pid: Option<u32>,
    #[serde(default)]
    si_uid: Option<u32>,
    #[serde(default)]
    rlimit_core: Option<u64>,
    #[serde(default)]
    dumpable: Option<u32>,
    #[serde(default)]
    pidns: Option<u64>,
    #[serde(default)]
    ns_pid: Option<u32>,
    #[serde(default)]
    populated: Option<bool>,
}

impl FlatEvent<'_> {
    /// The body of the kind the `event` tag names, if it is one handled here
    /// and every field it needs is there.
    fn body(&mut self) -> Option<Body> {
        Some(match &*self.event {
            "signal-generate" => Body::SignalGenerate {
                sig: self.sig?,
                code: self.code?,
                errno: self.errno?,
                group: self.group?,
                result: self.result?,
                info: self.info?,
                target: self.target.take()?,
                target_ppid: self.target_ppid?,
                target_handler: self.target_handler?,
                target_blocked: self.target_blocked.unwrap_or(false),
                fault_addr: self.fault_addr,
                si_pid: self.si_pid,
                si_uid: self.si_uid,
            },
            "signal-deliver" => Body::SignalDeliver {
                sig: self.sig?,
                code: self.code?,
                errno: self.errno?,
                info: self.info?,
                sa_handler: self.sa_handler?,
                sa_flags: self.sa_flags?,
                fault_addr: self.fault_addr,
                si_pid: self.si_pid,
                rlimit_core: self.rlimit_core,
                ppid: self.ppid?,
                dumpable: self.dumpable,
                pidns: self.pidns,
                ns_pid: self.ns_pid,
            },
            "dump-start" => Body::DumpStart {
                sig: self.sig?,
                code: self.code?,
                hook: self.hook?,
                rlimit_core: self.rlimit_core,
                dumpable: self.dumpable,
                fault_addr: self.fault_addr,
            },
            "helper-exec" => Body::HelperExec {
                filename: self.filename.take()?,
                argv: self.argv.take()?,
                args_truncated: self.args_truncated?,
            },
            "helper-connect" => Body::HelperConnect { family: self.family?, path: self.path.take()?, ret: self.ret? },
            "process-exit" => Body::ProcessExit { exit_code: self.exit_code?, ppid: self.ppid?, roles: self.roles.take()? },
            "process-fork" => Body::ProcessFork { child: self.child? },
            "cgroup" => Body::Cgroup {
                op: self.op?,
                root: self.root?,
                id: self.id?,
                level: self.level?,
                populated: self.populated,
                path: self.path.take()?,
                zombies: self.zombies.take().unwrap_or_default(),
            },
            "stack-capture" => Body::StackCapture {
                sig: self.sig?,
                user: self.user.take()?,
                kernel: self.kernel.take()?,
                build_ids: self.build_ids.take().unwrap_or_default(),
                ip: self.ip,
                sp: self.sp,
                bp: self.bp,
                user_errno: self.user_errno,
                kernel_errno: self.kernel_errno,
            },
            // Bad hex declines: the general parse says what is wrong.
            "stack-copy" => Body::StackCopy { sp: self.sp?, data: hex_bytes::decode(self.data?).ok()? },
            // Rare kinds (settings, core locations, sysctl writes)
            // take the general parse.
            _ => return None,
        })
    }
}

/// Where in a line its `"type"` says what it is, guessed from the bytes;
/// the typed parse then checks the guess.
fn guess(text: &str) -> Option<&'static str> {
    // Built once: building a finder per line cost more than the search.
    static TYPE_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"type\":\""));
    let at = TYPE_KEY.find(text.as_bytes())?;
    let rest = &text.as_bytes()[at + 8..];
    if rest.starts_with(b"event\"") {
        Some("event")
    } else if rest.starts_with(b"verdict\"") {
        Some("verdict")
    } else {
        None
    }
}

/// A stack copy's line with its hex bytes taken out.
struct Split<'a> {
    /// The line with `"data":""`.
    rest: String,
    /// What was between those quotes.
    data: &'a str,
}

/// Takes the value of `"data":"..."` out of a line, so the JSON parse does
/// not walk the kilobytes of a stack copy's hex (the hex decoder checks
/// every byte of it anyway). Only on a line with no backslash at all (so
/// no key is spelt with escapes, and the first quote after the value's
/// opening one ends it) and with `"data"` in it once, right before `:"`:
/// any `data` key the parse finds is then that one, and the parse must
/// find it, empty, at the top level. What the value held is checked by the
/// hex decoder: a quote-free string of hex digits decodes, anything else
/// (control characters included, which JSON refuses) declines.
fn split_data(text: &str) -> Option<Split<'_>> {
    static DATA_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"data\""));
    // Short lines are not worth it.
    if text.len() < 1024 {
        return None;
    }
    let bytes = text.as_bytes();
    let key = DATA_KEY.find(bytes)?;
    if !bytes[key + 6..].starts_with(b":\"") {
        return None;
    }
    let start = key + 8;
    let end = start + memchr::memchr(b'"', &bytes[start..])?;
    if memchr::memchr(b'\\', bytes).is_some() || DATA_KEY.find(&bytes[key + 6..]).is_some() {
        return None;
    }
    let mut rest = String::with_capacity(text.len() - (end - start));
    rest.push_str(&text[..start]);
    rest.push_str(&text[end..]);
    Some(Split { rest, data: &text[start..end] })
}

/// The line as a record, when it is an `event` of a common kind or a
/// `verdict`, and the general parse would give the same; else `None`.
pub(crate) fn parse(text: &str) -> Option<Line> {
    match guess(text)? {
        "event" => {
            let split = split_data(text);
            let split_parse = split.as_ref().and_then(|split| match serde_json::from_str::<FlatEvent>(&split.rest) {
                // The value taken out was the top-level `data` only if the
                // parse found an empty one there (see `split_data`).
                Ok(mut f) if f.data == Some("") && f.event == "stack-copy" => {
                    f.data = Some(split.data);
                    Some(f)
                }
                // Anything else: the whole line, as if not split.
                _ => None,
            });
            let mut f = match split_parse {
                Some(f) => f,
                None => serde_json::from_str::<FlatEvent>(text).ok()?,
            };
            if !(1..=SCHEMA_VERSION).contains(&f.v) || f.kind != "event" {
                return None;
            }
            let body = f.body()?;
            let event = Event { ts_ns: f.ts_ns, cpu: f.cpu, task: f.task, cgroup_id: f.cgroup_id, body };
            let record = Record::Event(EventRecord { wall_ns: f.wall_ns, chain: f.chain, event });
            Some(Line {
                v: f.v,
                file: f.file,
                run: f.run,
                seq: f.seq,
                time: f.time,
                host: f.host,
                chain_uid: f.chain_uid,
                linked_chain_uid: f.linked_chain_uid,
                record,
            })
        }
        _ => {
            let meta = serde_json::from_str::<Meta>(text).ok()?;
            if !(1..=SCHEMA_VERSION).contains(&meta.v) || meta.kind != "verdict" {
                return None;
            }
            // A chain has none of the line's own fields, and ignores them.
            let chain = serde_json::from_str::<Chain>(text).ok()?;
            let record = Record::Verdict(Box::new(chain));
            Some(Line {
                v: meta.v,
                file: meta.file,
                run: meta.run,
                seq: meta.seq,
                time: meta.time,
                host: meta.host,
                chain_uid: meta.chain_uid,
                linked_chain_uid: meta.linked_chain_uid,
                record,
            })
        }
    }
}

#[cfg(test)]
mod tests;

//! What the kernel says about crashtrace's BPF programs, read from the
//! tracer's /proc/PID/fdinfo (and each program's name, from the kernel's
//! program info): run counts and time spent in each program
//! (with kernel.bpf_stats_enabled on), and recursion misses (runs the kernel
//! skipped because the program was already running on that CPU; events lost
//! that way never reach the ring buffer's loss counters).

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::global::GlobalLock;

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns BPF run-time statistics on; back to what they were when dropped.
pub(super) struct StatsOn<'lock> {
    before: String,
    _lock: &'lock GlobalLock,
}

impl<'lock> StatsOn<'lock> {
    pub(super) fn enable(lock: &'lock GlobalLock) -> Result<StatsOn<'lock>> {
        let before = std::fs::read_to_string(STATS_SYSCTL).with_context(|| format!("reading {STATS_SYSCTL}"))?;
        std::fs::write(STATS_SYSCTL, "1").with_context(|| format!("writing 1 to {STATS_SYSCTL}"))?;
        Ok(StatsOn { before: before.trim().to_string(), _lock: lock })
    }
}

impl Drop for StatsOn<'_> {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(STATS_SYSCTL, &self.before) {
            eprintln!(
                "xtask bench: could not restore {STATS_SYSCTL}: {e}; restore it by hand: echo {} > {STATS_SYSCTL}",
                self.before
            );
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Prog {
    /// "program (attach point)": the program's name from the kernel, and the
    /// tracepoint (or other attach point) its link names.
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
    pub recursion_misses: u64,
}

fn fields(text: &str) -> BTreeMap<&str, &str> {
    text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect()
}

/// The name the kernel holds for the BPF program behind descriptor `fd` of
/// process `pid`: the descriptor is copied over with pidfd_getfd(2), then
/// asked with BPF_OBJ_GET_INFO_BY_FD. `None` if any step is refused.
fn prog_name(pid: u32, fd: i32) -> Option<String> {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    /// Offset of `name` in `struct bpf_prog_info` (UAPI, stable).
    const NAME_AT: usize = 64;
    const NAME_LEN: usize = 16;
    // SAFETY: plain system calls on descriptors this function owns and
    // closes; the info buffer outlives the bpf call and is zeroed, as the
    // kernel requires of bytes it does not know.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) as i32;
        if pidfd < 0 {
            return None;
        }
        let ours = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        libc::close(pidfd);
        if ours < 0 {
            return None;
        }
        let mut info = [0u8; 128];
        #[repr(C)]
        struct InfoAttr {
            bpf_fd: u32,
            info_len: u32,
            info: u64,
        }
        let mut attr = InfoAttr { bpf_fd: ours as u32, info_len: info.len() as u32, info: info.as_mut_ptr() as u64 };
        let r = libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>() as libc::c_uint,
        );
        libc::close(ours);
        if r != 0 {
            return None;
        }
        let raw = &info[NAME_AT..NAME_AT + NAME_LEN];
        let end = raw.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
        Some(String::from_utf8_lossy(&raw[..end]).into_owned()).filter(|n| !n.is_empty())
    }
}

/// The BPF programs `pid` holds, by program id.
pub(super) fn read(pid: u32) -> Result<BTreeMap<u64, Prog>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut progs: BTreeMap<u64, Prog> = BTreeMap::new();
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    let mut prog_names: BTreeMap<u64, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let entry = entry?;
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let fd: Option<i32> = entry.file_name().to_str().and_then(|n| n.parse().ok());
        let f = fields(&text);
        let Some(id) = f.get("prog_id").and_then(|v| v.parse::<u64>().ok()) else { continue };
        if let Some(tp) = f.get("tp_name").or_else(|| f.get("attach_type")) {
            names.insert(id, tp.to_string());
        } else if let Some(link) = f.get("link_type") {
            names.entry(id).or_insert_with(|| link.to_string());
        } else {
            if let Some(name) = fd.and_then(|fd| prog_name(pid, fd)) {
                prog_names.insert(id, name);
            }
            let n = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            progs.insert(
                id,
                Prog {
                    name: String::new(),
                    run_cnt: n("run_cnt"),
                    run_time_ns: n("run_time_ns"),
                    recursion_misses: n("recursion_misses"),
                },
            );
        }
    }
    for (id, p) in progs.iter_mut() {
        let attach = names.get(id).cloned();
        p.name = match (prog_names.get(id), attach) {
            (Some(prog), Some(at)) if *prog == at => prog.clone(),
            (Some(prog), Some(at)) => format!("{prog} ({at})"),
            (Some(prog), None) => prog.clone(),
            (None, Some(at)) => at,
            (None, None) => format!("prog {id}"),
        };
    }
    Ok(progs)
}

/// Adds `b` into `a`, program by name.
pub(super) fn accumulate(into: &mut BTreeMap<String, Prog>, progs: &BTreeMap<u64, Prog>) {
    for p in progs.values() {
        let e = into.entry(p.name.clone()).or_insert_with(|| Prog { name: p.name.clone(), ..Default::default() });
        e.run_cnt += p.run_cnt;
        e.run_time_ns += p.run_time_ns;
        e.recursion_misses += p.recursion_misses;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fdinfo_fields() {
        let prog = "pos:\t0\nprog_type:\t26\nprog_id:\t2936\nrun_time_ns:\t500\nrun_cnt:\t10\nrecursion_misses:\t2\n";
        let f = fields(prog);
        assert_eq!(f.get("prog_id"), Some(&"2936"));
        assert_eq!(f.get("recursion_misses"), Some(&"2"));
        let link = "link_type:\traw_tracepoint\nlink_id:\t2151\nprog_id:\t2936\ntp_name:\tsignal_generate\n";
        assert_eq!(fields(link).get("tp_name"), Some(&"signal_generate"));
    }
}

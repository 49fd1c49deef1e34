//! Enrichment: every /proc read (and re-read of the host's settings) the
//! live tracer does, in one place. Events and chains carry what the kernel
//! saw; some facts are only to be had from /proc while the process is still
//! there, or right when a chain ends. Reads are cheap and few, and the one
//! that scans all of /proc (zombies in an emptied cgroup) is rate-limited.
//! `report` never enriches: it replays what was logged.

use tracer_common::signal::{is_core_signal, SIG_DFL};

use crate::{
    chain::Chain,
    core_location::{self, Collector, CoreLocation, FoundBy},
    core_pattern::{self, CoreSettings, DumpMode},
    coredump_conf::CoredumpConf,
    event::{Body, Event},
    report::store,
    watched,
};

/// Zombie scans allowed per second of event time.
const ZOMBIE_SCANS_PER_SEC: u32 = 20;

/// At most `max` actions per second of event time: a cgroup storm must not
/// turn into a storm of /proc scans.
#[derive(Clone, Debug)]
pub struct RateLimit {
    window_start: u64,
    used: u32,
    max: u32,
}

impl RateLimit {
    pub fn per_second(max: u32) -> RateLimit {
        RateLimit { window_start: 0, used: 0, max }
    }

    pub fn allow(&mut self, now_ns: u64) -> bool {
        if now_ns.saturating_sub(self.window_start) >= 1_000_000_000 {
            self.window_start = now_ns;
            self.used = 0;
        }
        self.used += 1;
        self.used <= self.max
    }
}

/// The host as the header describes it.
pub struct Host {
    pub kernel: String,
    pub hostname: String,
    pub boot_id: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn host() -> Host {
    Host {
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
    }
}

pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The core-dump settings as /proc/sys/kernel has them now.
pub fn core_settings() -> Option<CoreSettings> {
    CoreSettings::read().ok()
}

/// The cgroup v2 path of a process, from the "0::" line of /proc/PID/cgroup.
pub fn cgroup_v2_path(tgid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

/// The cgroup v2 path of cgroup `id`, for a crasher gone before its
/// /proc/PID/cgroup could be read: the id is the cgroup directory's kernfs
/// file handle, opened on the cgroup2 mount at `mount` (see
/// [`crate::loader::cgroup2_mount`]) as long as the group exists; the
/// runtime removes a container's some time after its last process.
pub fn cgroup_v2_path_by_id(id: u64, mount: &std::path::Path) -> Option<String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// `struct file_handle` with its 8-byte kernfs id.
    #[repr(C)]
    struct KernfsHandle {
        handle_bytes: u32,
        handle_type: i32,
        id: u64,
    }
    /// FILEID_KERNFS in the kernel's exportfs.h: a kernfs node by id.
    const FILEID_KERNFS: i32 = 0xfe;
    if id <= 1 {
        return (id == 1).then(|| "/".to_string());
    }
    let mount = mount.to_str()?;
    let dir = open_path(mount)?;
    let mut handle = KernfsHandle { handle_bytes: 8, handle_type: FILEID_KERNFS, id };
    // SAFETY: the handle is a valid `struct file_handle` of 8 payload bytes
    // that outlives the call; the mount fd is open.
    let fd = unsafe {
        libc::open_by_handle_at(dir.as_raw_fd(), (&raw mut handle).cast(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd was just opened and is owned here alone.
    let group = unsafe { OwnedFd::from_raw_fd(fd) };
    let full = std::fs::read_link(format!("/proc/self/fd/{}", group.as_raw_fd())).ok()?;
    under_mount(full.to_str()?, mount)
}

/// `path` as the cgroup hierarchy mounted at `mount` names it.
fn under_mount(path: &str, mount: &str) -> Option<String> {
    let rest = path.strip_prefix(mount.trim_end_matches('/'))?;
    match rest {
        "" => Some("/".to_string()),
        r if r.starts_with('/') => Some(r.to_string()),
        _ => None,
    }
}

/// A process's working directory (/proc/TGID/cwd), while it lives.
pub fn cwd(tgid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{tgid}/cwd")).ok()?.to_str().map(str::to_string)
}

/// A crasher's file system when it is not the tracer's: a container's root.
/// The kernel writes a file-pattern core in the crasher's mount namespace
/// (relative to its cwd, or to its root), which the tracer's own paths do
/// not reach, and which may be gone from the host's view once the container
/// stops. The root is held open from the delivery (while the crasher lives)
/// until the core lookup ends, and every path under it is resolved with
/// `RESOLVE_IN_ROOT`: a symlink the container's files hold is resolved as
/// the kernel resolved it for the dump, never against the host's root.
#[derive(Debug)]
pub struct ForeignFs {
    root: std::os::fd::OwnedFd,
    /// The crasher's cwd as its mount namespace names it.
    cwd: Option<String>,
    /// The host path of `root` when it is a container's upper layer taken
    /// from the runtime's records (the crasher was gone before its own
    /// root could be read); None for a root read from /proc.
    host_root: Option<String>,
    /// For a root read from /proc: the host path of its overlay's upper
    /// layer, read from the mount table at delivery. The runtime unmounts
    /// the overlay when the container stops, often before the core is
    /// looked for, and the mount table no longer names it then.
    upper: Option<String>,
}

impl ForeignFs {
    /// The crasher's root, if its mount namespace is not the tracer's; read
    /// while the crasher lives (at delivery).
    pub fn of(tgid: u32) -> Option<ForeignFs> {
        use std::os::unix::fs::MetadataExt;
        let theirs = std::fs::metadata(format!("/proc/{tgid}/ns/mnt")).ok()?;
        let ours = std::fs::metadata("/proc/self/ns/mnt").ok()?;
        if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
            return None;
        }
        let root = open_path(&format!("/proc/{tgid}/root"))?;
        // readlink of another namespace's cwd gives the path from that
        // namespace's root: what the kernel used for a relative pattern.
        let cwd = cwd(tgid);
        let upper = (|| {
            let meta = std::fs::metadata(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&root))).ok()?;
            overlay_upperdir(&std::fs::read_to_string("/proc/self/mountinfo").ok()?, (libc::major(meta.dev()), libc::minor(meta.dev())))
        })();
        Some(ForeignFs { root, cwd, host_root: None, upper })
    }

    /// Whether the runtime's records could add to this root: it lacks the
    /// cwd, or the host path of its upper layer.
    pub fn needs_records(&self) -> bool {
        self.cwd.is_none() || (self.host_root.is_none() && self.upper.is_none())
    }

    /// Fills what the delivery could not read (the crasher exited between
    /// the reads, or its overlay was unmounted) from the runtime's records.
    pub fn complete_from(&mut self, store: &ForeignFs) {
        if self.upper.is_none() {
            self.upper = store.host_root.clone();
        }
    }

    /// A container's upper layer (a host directory named by the runtime's
    /// root-owned records, see [`super::names`]) standing for its root;
    /// `cwd` from its OCI spec. The upper layer holds what the container
    /// wrote, cores included.
    pub fn from_store(upper: &str, cwd: Option<String>) -> Option<ForeignFs> {
        Some(ForeignFs { root: open_path(upper)?, cwd, host_root: Some(upper.to_string()), upper: None })
    }

    /// Whether the crasher's cwd is known: a relative pattern is looked
    /// for only then.
    pub fn knows_cwd(&self) -> bool {
        self.cwd.is_some()
    }

    /// Of the root read at delivery and the one from the runtime's
    /// records, the one that can place the core: the read one when it
    /// knows the cwd (it is the crasher's own), else the records' when they
    /// know it, else whichever there is.
    pub fn best<'a>(read: Option<&'a ForeignFs>, store: Option<&'a ForeignFs>) -> Option<&'a ForeignFs> {
        match (read, store) {
            (Some(r), _) if r.knows_cwd() => Some(r),
            (r, Some(s)) if r.is_none() || s.knows_cwd() => Some(s),
            (r, _) => r,
        }
    }

    /// The directory `dir` (absolute, in the crasher's namespace), opened
    /// O_PATH with the crasher's root as `/`.
    fn open_dir(&self, dir: &str) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let rel = dir.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let c = std::ffi::CString::new(rel).ok()?;
        // SAFETY: open_how is plain data; zeroed is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: a valid dirfd, a NUL-terminated path and a live open_how
        // whose size is passed; the result is a new fd or -1.
        let fd = unsafe {
            libc::syscall(libc::SYS_openat2, self.root.as_raw_fd(), c.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: openat2 returned a new fd that nothing else owns.
        Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// An O_PATH fd on `path`, following it (for /proc/PID/root).
fn open_path(path: &str) -> Option<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(path).ok()?;
    Some(f.into())
}

/// The upper directory on the host of the overlay mount `dev` is (major,
/// minor) of, from the host's mountinfo (never the crasher's: a container
/// can mount what it likes in its own namespace). Only the root of the
/// overlay counts: a core elsewhere in it is under `upperdir` at the same
/// relative path.
pub fn overlay_upperdir(mountinfo: &str, dev: (u32, u32)) -> Option<String> {
    let want = format!("{}:{}", dev.0, dev.1);
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let majmin = fields.nth(2)?;
        let root = fields.next()?;
        let (_, after) = line.split_once(" - ")?;
        let mut after = after.split(' ');
        let fstype = after.next()?;
        let _source = after.next()?;
        let options = after.next()?;
        if majmin != want || root != "/" || fstype != "overlay" {
            return None;
        }
        // Options are comma-separated; mountinfo escapes commas in paths
        // as \054 only in some kernels, so a path with a comma is refused.
        let upper = options.split(',').find_map(|o| o.strip_prefix("upperdir="))?;
        (upper.starts_with('/') && !upper.contains('\\')).then(|| upper.to_string())
    })
}

/// The text of /proc/TGID/maps, for symbolising its stack later.
pub fn maps(tgid: u32) -> Result<String, String> {
    std::fs::read_to_string(format!("/proc/{tgid}/maps")).map_err(|e| format!("/proc/{tgid}/maps: {e}"))
}

/// Whether `pid` is PID 1 of its pid namespace.
pub fn is_namespace_init(pid: u32) -> bool {
    watched::is_namespace_init(pid)
}

/// The watched pid's state as /proc shows it now.
pub fn watched_facts(pid: u32, handled_crash: Option<u64>, handled_signal: Option<String>, crash_child_ended: bool) -> watched::Facts {
    watched::Facts::gather(pid, handled_crash, handled_signal, crash_child_ended)
}

/// The enrichment that keeps state: its rate limit and where the core
/// settings come from.
pub struct Enricher {
    zombie_scans: RateLimit,
    /// The sysctl hook sees every write to the core-dump settings, so they
    /// follow its events; without it they are re-read at each core dump.
    settings_from_writes: bool,
}

impl Enricher {
    pub fn new(settings_from_writes: bool) -> Enricher {
        Enricher { zombie_scans: RateLimit::per_second(ZOMBIE_SCANS_PER_SEC), settings_from_writes }
    }

    /// Adds to an event what only /proc knows, before it is correlated.
    pub fn event(&mut self, ev: &mut Event) {
        if let Body::Cgroup { op, root: 0, populated, path, zombies, .. } = &mut ev.body {
            // cgroup v2 keeps a zombie in its group until it is reaped: say
            // so when a group is emptied or removed with one still in it.
            if (*op == crate::event::CgroupOp::Rmdir || *populated == Some(false)) && self.zombie_scans.allow(ev.ts_ns) {
                *zombies = watched::zombies_in_cgroup(path);
            }
        }
    }

    /// The core settings after `ev`, if it may have changed them: from the
    /// writes the sysctl hook sees, or, without the hook, re-read when a core
    /// dump starts. None when `ev` says nothing about them.
    pub fn settings_after(&self, ev: &Event, current: Option<&CoreSettings>) -> Option<CoreSettings> {
        match &ev.body {
            Body::SysctlWrite { name, new_value, .. } if self.settings_from_writes => current
                .and_then(|s| s.after_write(name, new_value, core_pattern::is_executable))
                .or_else(core_settings),
            Body::SignalDeliver { sig, sa_handler, .. }
                if !self.settings_from_writes && is_core_signal(*sig) && *sa_handler == SIG_DFL =>
            {
                core_settings()
            }
            _ => None,
        }
    }

    /// The evidence of a stall is where the tasks sleep right now.
    /// `waiter` is the process that waits on the crash handler (the watched
    /// pid, else the crasher's parent).
    pub fn stall_evidence(&self, chain: &mut Chain, watched: Option<u32>) {
        if let Some(w) = watched::kernel_wait(chain.crasher.pid) {
            chain.evidence.push(format!("crashing process {}: {w}", chain.crasher));
        }
        let waiter = watched.or(chain.ppid);
        if let Some(w) = waiter.and_then(watched::kernel_wait) {
            chain.evidence.push(format!("pid {} (its crash handler's process): {w}", waiter.unwrap_or(0)));
        }
        if chain.collector.as_ref().map(|c| c.connects.iter().any(|k| k.ret == 0)).unwrap_or(false) {
            chain.evidence.push("the collector's connect succeeded, yet no process accepted and read the core".into());
        }
    }
}

/// Directory entries looked at per store scan, at most.
const CORE_SCAN_MAX: usize = 10_000;
/// Bytes of a core (or an apport report) read to check it.
const CORE_HEAD_MAX: usize = 256 * 1024;
/// How long `journalctl` may take to answer before it is killed.
const JOURNALCTL_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// Kernel log records read per lookup, at most.
const KMSG_MAX: usize = 20_000;
pub const APPORT_DIR: &str = "/var/crash";

/// A regular file opened without following a symlink and without blocking
/// (a FIFO planted in a dump directory must not hang the tracer), and its size.
fn open_regular(path: &std::path::Path) -> Option<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY).open(path).ok()?;
    let meta = f.metadata().ok()?;
    meta.is_file().then_some((f, meta.len()))
}

fn read_head(f: &mut std::fs::File, max: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    let _ = f.take(max as u64).read_to_end(&mut buf);
    buf
}

/// Names in `dir` that `matches`, modified no earlier than `not_before_ns`
/// (wall clock), newest first; at most [`CORE_SCAN_MAX`] entries are read.
/// Entries are not followed: only regular files count.
fn scan(dir: &std::path::Path, not_before_ns: u64, matches: impl Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(u64, std::path::PathBuf)> = rd
        .take(CORE_SCAN_MAX)
        .flatten()
        .filter(|e| e.file_name().to_str().map(&matches).unwrap_or(false))
        // symlink_metadata: the entry itself, never what a link points to.
        .filter_map(|e| e.path().symlink_metadata().ok().filter(|m| m.is_file()).map(|m| (m, e.path())))
        .map(|(m, p)| ((m.mtime().max(0) as u64).saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec().max(0) as u64), p))
        .filter(|(t, _)| *t >= not_before_ns)
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// A file pattern's core looked for in the crasher's own file system
/// (a container's): found through its root, reported by its host path when
/// the container's root is an overlay (its upper layer, where the file
/// stays until the container is removed), else by its path inside.
fn locate_in_foreign(
    f: &ForeignFs,
    pattern: &str,
    ctx: &store::ChainContext,
    not_before: u64,
    rlimit_core: Option<u64>,
    last: bool,
) -> Option<CoreLocation> {
    use std::os::{fd::AsRawFd, unix::fs::MetadataExt};
    let inside = match (&f.cwd, pattern.starts_with('/')) {
        (_, true) => pattern.to_string(),
        (Some(cwd), false) => format!("{}/{pattern}", cwd.trim_end_matches('/')),
        (None, false) => {
            let mut loc = CoreLocation::on_word(FoundBy::FilePattern, None, "the crasher's working directory in its container could not be read: the core's place is unknown");
            loc.found_by = None;
            return last.then_some(loc);
        }
    };
    let (dir, names) = match store::pattern_location(&inside, ctx) {
        Ok(l) => l,
        Err(why) => {
            let mut loc = CoreLocation::on_word(FoundBy::FilePattern, None, &why);
            loc.found_by = None;
            return last.then_some(loc);
        }
    };
    let dir_inside = dir.display().to_string();
    let where_inside = format!("in the crasher's mount namespace (its container's root fs), not the host's: {dir_inside}");
    let Some(dir_fd) = f.open_dir(&dir_inside) else {
        return last.then(|| {
            let mut loc = CoreLocation::missing(vec![dir_inside.clone()], None);
            loc.known_store = false;
            loc.note = Some(format!("{where_inside} does not exist there (or is not a directory), so the kernel could not write the core"));
            loc
        });
    };
    let via = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir_fd.as_raw_fd()));
    // The host's name for the directory: the overlay's upper layer, when
    // the directory is on the container's root file system.
    let host_dir = (|| {
        if let Some(h) = &f.host_root {
            return Some(format!("{}{}", h.trim_end_matches('/'), if dir_inside == "/" { "" } else { dir_inside.as_str() }));
        }
        let dir_meta = std::fs::metadata(&via).ok()?;
        let root_meta = std::fs::metadata(format!("/proc/self/fd/{}", f.root.as_raw_fd())).ok()?;
        if dir_meta.dev() != root_meta.dev() {
            return None;
        }
        let upper = match &f.upper {
            Some(u) => u.clone(),
            None => {
                let dev = (libc::major(dir_meta.dev()), libc::minor(dir_meta.dev()));
                overlay_upperdir(&std::fs::read_to_string("/proc/self/mountinfo").ok()?, dev)?
            }
        };
        Some(format!("{}{}", upper.trim_end_matches('/'), if dir_inside == "/" { "" } else { dir_inside.as_str() }))
    })();
    for p in scan(&via, not_before, |n| names.iter().any(|t| store::glob(t, n))) {
        let Some((mut file, size)) = open_regular(&p) else { continue };
        let head = read_head(&mut file, CORE_HEAD_MAX);
        let truncated = core_location::elf_core_truncated(&head, size).unwrap_or_else(|| rlimit_core.map(|l| size + 4096 > l).unwrap_or(false));
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let inside_path = format!("{}/{name}", dir_inside.trim_end_matches('/'));
        let (path, note) = match &host_dir {
            Some(h) => (
                format!("{h}/{name}"),
                format!(
                    "written at {inside_path} in the crasher's mount namespace (its container's root fs); this is that file in the container's upper layer on the host, kept until the container is removed{}",
                    if f.host_root.is_some() { " (found through the runtime's records: the crasher was gone before its root could be read)" } else { "" }
                ),
            ),
            None => (inside_path.clone(), format!("{inside_path} is in the crasher's mount namespace (its container's root fs), not the host's")),
        };
        let mut loc = CoreLocation::found(path, Some(size), truncated, FoundBy::FilePattern);
        loc.note = Some(note);
        return Some(loc);
    }
    last.then(|| {
        let mut loc = CoreLocation::missing(vec![host_dir.clone().unwrap_or_else(|| dir_inside.clone())], None);
        loc.known_store = false;
        loc.note = Some(format!("{where_inside}; no core there"));
        loc
    })
}

/// One extended attribute of an open file, as text.
fn xattr(f: &std::fs::File, name: &str) -> Option<String> {
    use std::os::fd::AsRawFd;
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 256];
    // SAFETY: the fd is open for the call, the name is NUL-terminated and the
    // buffer's length is passed.
    let n = unsafe { libc::fgetxattr(f.as_raw_fd(), cname.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// systemd-coredump's kernel-log lines since `since_ns` (monotonic) that
/// say why a core was not kept.
fn kmsg_reasons(since_ns: u64) -> Vec<String> {
    use std::{io::Read, os::unix::fs::OpenOptionsExt};
    let Ok(mut f) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg") else { return Vec::new() };
    let mut records = Vec::new();
    let mut buf = vec![0u8; 8192];
    for _ in 0..KMSG_MAX {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => records.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            // EPIPE: a record was overwritten while reading; go on.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    core_location::coredump_kmsg_reasons(records.iter().map(String::as_str), since_ns, 2)
}

/// `journalctl -o json COREDUMP_PID=pid`, bounded in time; None without a
/// journalctl or a journal entry. Blocks up to [`JOURNALCTL_TIMEOUT`]: the
/// live loop calls it only through [`super::journal::JournalWorker`].
pub fn journal_entry(pid: u32) -> Option<core_location::JournalCoredump> {
    use std::{io::Read, process::{Command, Stdio}};
    let exe = ["/usr/bin/journalctl", "/bin/journalctl"].into_iter().find(|p| std::path::Path::new(p).exists())?;
    let mut child = Command::new(exe)
        .args(["-o", "json", "--no-pager", "-q", "-n", "5", &format!("COREDUMP_PID={pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < JOURNALCTL_TIMEOUT => std::thread::sleep(std::time::Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    child.stdout.take()?.take(1 << 20).read_to_string(&mut text).ok()?;
    core_location::parse_journal(&text, pid)
}

/// What the journal said of a crash, for the final lookup of a
/// systemd-coredump core.
#[derive(Clone, Copy, Debug)]
pub enum JournalWord<'a> {
    /// Not asked yet: the lookup stops where it would need the journal.
    Unasked,
    /// Asked (or given up on): its entry, if it had one.
    Answered(Option<&'a core_location::JournalCoredump>),
}

/// The outcome of one look for a core.
#[derive(Clone, Debug, PartialEq)]
pub enum Located {
    /// Found, or (on the last attempt) what was searched and why nothing is there.
    Done(CoreLocation),
    /// Not found yet: look again later.
    Later,
    /// The last attempt needs the journal's entry for the crasher: ask it
    /// (off the loop) and look again with the answer.
    AskJournal,
}

/// Looks for the core of a chain whose dump is over, where its collector
/// (or core_pattern) puts it. `last` is the final attempt, which says what
/// was searched and why nothing is there. `wall_start_ns` is the crash's
/// wall-clock time. Never runs `journalctl` itself: `journal` is its answer
/// if it was asked (see [`Located::AskJournal`]).
/// `foreign`: the crasher's file system when it ran in another mount
/// namespace ([`ForeignFs`]); a file pattern is then looked for there.
pub fn locate_core(chain: &Chain, wall_start_ns: u64, cwd: Option<&str>, foreign: Option<&ForeignFs>, last: bool, journal: JournalWord<'_>) -> Located {
    let mut needs_journal = false;
    match locate(chain, wall_start_ns, cwd, foreign, last, journal, &mut needs_journal) {
        _ if needs_journal => Located::AskJournal,
        Some(loc) => Located::Done(loc),
        None => Located::Later,
    }
}

/// [`locate_core`]'s search; sets `needs_journal` (and gives None) where it
/// needs the journal's answer and has none.
fn locate(
    chain: &Chain,
    wall_start_ns: u64,
    cwd: Option<&str>,
    foreign: Option<&ForeignFs>,
    last: bool,
    journal: JournalWord<'_>,
    needs_journal: &mut bool,
) -> Option<CoreLocation> {
    let dump = chain.dump.as_ref()?;
    let tgid = chain.crasher.tgid;
    let not_before = wall_start_ns.saturating_sub(store::SLACK_NS);
    match &dump.mode {
        DumpMode::Empty => None,
        DumpMode::Socket { path, .. } => Some(CoreLocation::on_word(
            FoundBy::Socket,
            Some(path.clone()),
            "the kernel sent the core to the socket; what its reader kept cannot be seen from here",
        )),
        DumpMode::File { path } => {
            let hostname = read_trimmed("/proc/sys/kernel/hostname");
            let ctx = store::ChainContext {
                chain,
                wall_start_ns,
                hostname: Some(hostname.as_str()).filter(|h| !h.is_empty()),
                boot_id: None,
                core_uses_pid: core_settings().map(|s| s.core_uses_pid),
            };
            if let Some(f) = foreign {
                return locate_in_foreign(f, path, &ctx, not_before, dump.rlimit_core, last);
            }
            // The kernel resolves a relative pattern against the crasher's cwd.
            let path = match cwd {
                Some(cwd) if !path.starts_with('/') => format!("{}/{path}", cwd.trim_end_matches('/')),
                _ => path.clone(),
            };
            let (dir, names) = match store::pattern_location(&path, &ctx) {
                Ok(l) => l,
                Err(why) => {
                    let mut loc = CoreLocation::on_word(FoundBy::FilePattern, None, &why);
                    loc.found_by = None;
                    return last.then_some(loc);
                }
            };
            let candidates = scan(&dir, not_before, |n| names.iter().any(|t| store::glob(t, n)));
            for p in candidates {
                let Some((mut f, size)) = open_regular(&p) else { continue };
                let head = read_head(&mut f, CORE_HEAD_MAX);
                let truncated = core_location::elf_core_truncated(&head, size)
                    // Headers unreadable: a core cut at the limit is at most a page short of it.
                    .unwrap_or_else(|| dump.rlimit_core.map(|l| size + 4096 > l).unwrap_or(false));
                return Some(CoreLocation::found(p.display().to_string(), Some(size), truncated, FoundBy::FilePattern));
            }
            last.then(|| {
                let mut loc = CoreLocation::missing(vec![dir.display().to_string()], None);
                loc.known_store = false;
                loc
            })
        }
        DumpMode::Pipe { helper, .. } => match core_location::collector_of(helper) {
            Collector::SystemdCoredump => {
                let dir = std::path::Path::new(store::SYSTEMD_COREDUMP_DIR);
                for p in scan(dir, not_before, |n| store::systemd_name_matches(n, tgid, None)) {
                    let Some((f, size)) = open_regular(&p) else { continue };
                    // The name can be forged by anyone who can write there;
                    // systemd-coredump's xattrs name the pid it dumped.
                    match xattr(&f, "user.coredump.pid") {
                        Some(pid) if pid.trim() != tgid.to_string() => continue,
                        _ => {}
                    }
                    let mut loc = CoreLocation::found(p.display().to_string(), Some(size), false, FoundBy::SystemdCoredumpFile);
                    loc.note = Some("size is of the compressed file; a truncated core is only reported by the journal".into());
                    return Some(loc);
                }
                if !last {
                    return None;
                }
                let journal = match journal {
                    JournalWord::Answered(j) => j,
                    JournalWord::Unasked => {
                        *needs_journal = true;
                        return None;
                    }
                };
                if let Some(j) = journal
                    && let Some(file) = &j.filename
                    && let Some((_, size)) = open_regular(std::path::Path::new(file))
                {
                    return Some(CoreLocation::found(file.clone(), Some(size), j.truncated, FoundBy::Journal));
                }
                let mut reasons = kmsg_reasons(chain.first_ts_ns);
                if let Some(m) = journal.and_then(|j| j.message.clone()) {
                    reasons.push(m);
                }
                let conf = CoredumpConf::read();
                if let Some(r) = conf.keeps_nothing(None) {
                    reasons.push(format!("coredump.conf has {r}"));
                } else {
                    // The size limits name what the log line only numbers.
                    let limits = conf.limits();
                    if !limits.is_empty() {
                        reasons.push(format!("coredump.conf sets {}", limits.join(", ")));
                    }
                }
                if let Some(j) = journal
                    && j.filename.is_none()
                    && conf.storage.as_ref().map(|s| s.value == "journal").unwrap_or(false)
                {
                    // Storage=journal: the core is a field of the journal entry.
                    let mut loc = CoreLocation::on_word(FoundBy::Journal, Some(format!("journal:COREDUMP_PID={tgid}")), "Storage=journal: the core is in the journal entry");
                    loc.truncated = j.truncated;
                    loc.known_store = true;
                    return Some(loc);
                }
                let reason = (!reasons.is_empty()).then(|| reasons.join("; "));
                Some(CoreLocation::missing(vec![store::SYSTEMD_COREDUMP_DIR.into()], reason))
            }
            Collector::Apport => {
                let dir = std::path::Path::new(APPORT_DIR);
                for p in scan(dir, not_before, |n| n.ends_with(".crash")) {
                    let Some((mut f, size)) = open_regular(&p) else { continue };
                    if core_location::apport_names_pid(&String::from_utf8_lossy(&read_head(&mut f, CORE_HEAD_MAX)), tgid) {
                        return Some(CoreLocation::found(p.display().to_string(), Some(size), false, FoundBy::Apport));
                    }
                }
                last.then(|| CoreLocation::missing(vec![APPORT_DIR.into()], None))
            }
            Collector::Corekeeper => {
                let dir = std::path::Path::new(APPORT_DIR);
                let mut dirs = vec![dir.to_path_buf()];
                if let Ok(rd) = std::fs::read_dir(dir) {
                    // corekeeper keeps one directory per user under /var/crash.
                    dirs.extend(rd.take(256).flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)).map(|e| e.path()));
                }
                for d in &dirs {
                    if let Some(p) = scan(d, not_before, |n| store::has_number(n, tgid)).into_iter().next()
                        && let Some((_, size)) = open_regular(&p)
                    {
                        return Some(CoreLocation::found(p.display().to_string(), Some(size), false, FoundBy::Corekeeper));
                    }
                }
                last.then(|| CoreLocation::missing(vec![APPORT_DIR.into()], None))
            }
            Collector::Other => Some(CoreLocation::on_word(
                FoundBy::CollectorExit,
                None,
                &format!("crashtrace knows no store of {helper}: its exit status is the only word that it kept the core"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_max_per_second_of_event_time() {
        let mut r = RateLimit::per_second(2);
        let s = 5_000_000_000;
        assert!(r.allow(s));
        assert!(r.allow(s + 10));
        assert!(!r.allow(s + 20));
        assert!(!r.allow(s + 999_999_999));
        assert!(r.allow(s + 1_000_000_000));
    }

    /// A file-pattern lookup, which never needs the journal.
    fn locate_core(chain: &Chain, wall_start_ns: u64, cwd: Option<&str>, last: bool) -> Option<CoreLocation> {
        match super::locate_core(chain, wall_start_ns, cwd, None, last, JournalWord::Unasked) {
            Located::Done(loc) => Some(loc),
            Located::Later => None,
            Located::AskJournal => panic!("a file pattern asked for the journal"),
        }
    }

    fn file_chain(pattern: &str, tgid: u32, rlimit: Option<u64>) -> Chain {
        let mut c = Chain::new(1, crate::event::Proc { pid: tgid, tgid, comm: "app".into() }, 11, 0);
        c.dump = Some(crate::chain::Dump {
            hook: crate::event::DumpHook::Inferred,
            mode: core_pattern::parse_core_pattern(pattern),
            core_pattern: pattern.into(),
            rlimit_core: rlimit,
            dumpable: Some(1),
            helper_executable: None,
            over_pipe_limit: false,
        });
        c.kernel_said_dumped = true;
        c
    }

    #[test]
    fn overlay_upper_dirs_come_from_the_mount_of_that_device() {
        let info = "\
24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
512 24 0:77 / /var/lib/containers/storage/overlay/abc/merged rw,nodev,relatime - overlay overlay rw,lowerdir=/var/lib/containers/storage/overlay/l/X,upperdir=/var/lib/containers/storage/overlay/abc/diff,workdir=/var/lib/containers/storage/overlay/abc/work
513 24 0:78 /sub /mnt/x rw - overlay overlay rw,upperdir=/u/diff,workdir=/u/work
514 24 0:79 / /mnt/y rw - tmpfs tmpfs rw
";
        assert_eq!(overlay_upperdir(info, (0, 77)).as_deref(), Some("/var/lib/containers/storage/overlay/abc/diff"));
        assert_eq!(overlay_upperdir(info, (0, 78)), None, "not the overlay's root");
        assert_eq!(overlay_upperdir(info, (0, 79)), None, "not an overlay");
        assert_eq!(overlay_upperdir(info, (8, 1)), None);
        assert_eq!(overlay_upperdir("garbage", (0, 77)), None);
    }

    #[test]
    fn the_cgroup2_mount_is_found_and_paths_are_named_under_it() {
        let hybrid = "\
25 1 8:1 / / rw - ext4 /dev/sda1 rw
30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";
        let cgroup2_mount = crate::loader::cgroup2_mount_in;
        assert_eq!(cgroup2_mount(hybrid).as_deref(), Some("/sys/fs/cgroup/unified"));
        let bound = "40 25 0:27 /sub /mnt/cg rw - cgroup2 cgroup2 rw\n41 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(bound).as_deref(), Some("/sys/fs/cgroup"), "a bind of a subtree is not the hierarchy's root");
        assert_eq!(cgroup2_mount("garbage\n"), None);
        assert_eq!(under_mount("/sys/fs/cgroup/unified/libpod_parent/libpod-ab", "/sys/fs/cgroup/unified").as_deref(), Some("/libpod_parent/libpod-ab"));
        assert_eq!(under_mount("/sys/fs/cgroup", "/sys/fs/cgroup").as_deref(), Some("/"));
        assert_eq!(under_mount("/sys/fs/cgroupX/a", "/sys/fs/cgroup"), None);
        assert_eq!(under_mount("/elsewhere", "/sys/fs/cgroup"), None);
    }

    #[test]
    fn a_cgroup_is_named_by_its_id() {
        use std::os::unix::fs::MetadataExt;
        // A cgroup2 directory's inode number is its cgroup id.
        let mount = crate::loader::cgroup2_mount().expect("a cgroup2 mount");
        let mount = mount.to_str().expect("a UTF-8 mount point");
        let mine = cgroup_v2_path(std::process::id()).expect("our cgroup v2 path");
        let dir = format!("{}{}", mount.trim_end_matches('/'), if mine == "/" { "" } else { mine.as_str() });
        let id = std::fs::metadata(&dir).unwrap().ino();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        // open_by_handle_at needs CAP_DAC_READ_SEARCH: the tracer has it.
        let want = if root { Some(mine) } else { None };
        let by_id = |id| cgroup_v2_path_by_id(id, std::path::Path::new(mount));
        assert_eq!(by_id(id), want, "cgroup id {id} at {dir}");
        assert_eq!(by_id(u64::MAX - 7), None, "no such cgroup");
        assert_eq!(by_id(1).as_deref(), Some("/"));
    }

    #[test]
    fn a_foreign_root_is_searched_inside_and_its_links_stay_inside() {
        // A stand-in for a container's root: the core at /core.4242.1 in it,
        // and /cores a symlink to / (absolute): resolved in the container's
        // root, never the host's.
        let root = std::env::temp_dir().join(format!("crashtrace-foreign-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("core.4242.1"), b"core").unwrap();
        std::os::unix::fs::symlink("/", root.join("cores")).unwrap();
        let f = ForeignFs { root: open_path(&root.display().to_string()).unwrap(), cwd: Some("/".into()), host_root: None, upper: None };
        let mut chain = file_chain("core.%P.%p", 4242, None);
        chain.ns_pid = Some(1);
        let found = match super::locate_core(&chain, 0, None, Some(&f), false, JournalWord::Unasked) {
            Located::Done(loc) => loc,
            other => panic!("not found: {other:?}"),
        };
        assert!(found.path.as_deref().is_some_and(|p| p.ends_with("/core.4242.1")), "{found:?}");
        assert_eq!(found.size, Some(4));
        assert!(found.note.as_deref().is_some_and(|n| n.contains("/core.4242.1") && n.contains("mount namespace")), "{found:?}");
        // Through the absolute link: the container's /, where the core is.
        let mut linked = file_chain("/cores/core.%P.%p", 4242, None);
        linked.ns_pid = Some(1);
        assert!(matches!(super::locate_core(&linked, 0, None, Some(&f), false, JournalWord::Unasked), Located::Done(_)));
        // A directory the container lacks: the kernel could not write.
        let mut absent = file_chain("/nowhere/core", 4242, None);
        absent.ns_pid = Some(1);
        let missing = match super::locate_core(&absent, 0, None, Some(&f), true, JournalWord::Unasked) {
            Located::Done(loc) => loc,
            other => panic!("no answer: {other:?}"),
        };
        assert_eq!((missing.path, missing.searched), (None, vec!["/nowhere".to_string()]));
        assert!(missing.note.as_deref().is_some_and(|n| n.contains("does not exist")), "{:?}", missing.note);
        // The same root taken from the runtime's records (an upper layer):
        // the host path is the layer's, the cwd the OCI spec's.
        let upper = root.display().to_string();
        let g = ForeignFs::from_store(&upper, Some("/".into())).unwrap();
        let found = match super::locate_core(&chain, 0, None, Some(&g), false, JournalWord::Unasked) {
            Located::Done(loc) => loc,
            other => panic!("not found through the store: {other:?}"),
        };
        assert_eq!(found.path, Some(format!("{upper}/core.4242.1")));
        assert!(found.note.as_deref().is_some_and(|n| n.contains("runtime's records")), "{found:?}");
        // A root read at delivery whose cwd was lost (the crasher exited
        // between the reads) gives way to the records, which know a cwd.
        let no_cwd = ForeignFs { root: open_path(&upper).unwrap(), cwd: None, host_root: None, upper: None };
        assert!(std::ptr::eq(ForeignFs::best(Some(&no_cwd), Some(&g)).unwrap(), &g));
        assert!(std::ptr::eq(ForeignFs::best(Some(&f), Some(&g)).unwrap(), &f), "the crasher's own cwd wins");
        assert!(std::ptr::eq(ForeignFs::best(Some(&no_cwd), None).unwrap(), &no_cwd));
        assert!(std::ptr::eq(ForeignFs::best(None, Some(&g)).unwrap(), &g));
        assert!(ForeignFs::best(None, None).is_none());
        // A root read at delivery whose overlay was unmounted before the
        // lookup: the host path comes from the records' upper layer.
        let mut unmounted = ForeignFs { root: open_path(&upper).unwrap(), cwd: Some("/".into()), host_root: None, upper: None };
        unmounted.complete_from(&g);
        let found = match super::locate_core(&chain, 0, None, Some(&unmounted), false, JournalWord::Unasked) {
            Located::Done(loc) => loc,
            other => panic!("not found: {other:?}"),
        };
        assert_eq!(found.path, Some(format!("{upper}/core.4242.1")), "{found:?}");
        assert!(found.note.as_deref().is_some_and(|n| n.contains("upper layer") && !n.contains("runtime's records")), "{found:?}");
        let g_no_cwd = ForeignFs::from_store(&upper, None).unwrap();
        assert!(std::ptr::eq(ForeignFs::best(Some(&no_cwd), Some(&g_no_cwd)).unwrap(), &no_cwd), "neither knows: the crasher's own root");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_relative_pattern_is_found_in_the_crashers_cwd_and_links_and_fifos_are_not_cores() {
        let dir = std::env::temp_dir().join(format!("crashtrace-locate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cwd = dir.display().to_string();
        // A symlink and a FIFO with the core's name: neither is followed or read.
        std::os::unix::fs::symlink("/etc/passwd", dir.join("core.4242")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("core.4343").display().to_string()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(locate_core(&file_chain("core.%p", 4242, None), 0, Some(&cwd), false), None);
        assert_eq!(locate_core(&file_chain("core.%p", 4343, None), 0, Some(&cwd), false), None);
        let missing = locate_core(&file_chain("core.%p", 4242, None), 0, Some(&cwd), true).unwrap();
        assert_eq!((missing.path, missing.searched), (None, vec![cwd.clone()]));
        // Without the cwd a relative pattern cannot be looked for.
        assert!(locate_core(&file_chain("core.%p", 4444, None), 0, None, true).unwrap().note.unwrap().contains("relative"));

        std::fs::write(dir.join("core.4444"), vec![7u8; 5000]).unwrap();
        let found = locate_core(&file_chain("core.%p", 4444, Some(8192)), 0, Some(&cwd), false).unwrap();
        assert_eq!(found.path, Some(format!("{cwd}/core.4444")));
        assert_eq!((found.size, found.found_by), (Some(5000), Some(FoundBy::FilePattern)));
        // Not an ELF core: within a page of RLIMIT_CORE counts as cut short.
        assert!(found.truncated);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn this_process_is_readable_and_has_maps() {
        let me = std::process::id();
        assert!(process_exists(me));
        let text = maps(me).unwrap();
        assert!(!crate::procmaps::parse_maps(&text).is_empty());
        assert!(maps(u32::MAX).unwrap_err().contains("/proc/4294967295/maps"));
    }
}

//! The watched pid (`--pid N`), and the other process facts read from /proc.
//!
//! - [`assess`] gives the watched pid's [`State`]: above all, whether it is
//!   frozen in its crash handler, as systemd's PID 1 is after a crash. It is
//!   a pure function of [`Facts`], which [`Facts::gather`] reads from /proc.
//! - /proc readers for the live loop: [`kernel_wait`] (where a task sleeps,
//!   for a chain's evidence), [`zombies_in_cgroup`] (zombies still charged to
//!   a cgroup being emptied or removed), [`is_namespace_init`] and
//!   [`stat_state`].
//!
//! Everything except [`assess`] reads the running host's /proc.

/// System call numbers that mean "sleeping until a signal" (x86_64).
/// https://elixir.bootlin.com/linux/v6.18/source/arch/x86/entry/syscalls/syscall_64.tbl
const SYS_PAUSE: i64 = 34;
const SYS_RT_SIGSUSPEND: i64 = 130;
/// "Reaping children": systemd's freeze() loops in waitid() forever.
const SYS_WAIT4: i64 = 61;
const SYS_WAITID: i64 = 247;
/// Zombie children this many and more, after a caught crash: nobody reaps.
const ZOMBIES_PILING_UP: usize = 3;
/// stdin, stdout, stderr: what a frozen handler keeps (on /dev/null or the
/// console) after closing everything else.
const STDIO_FDS: usize = 3;

tracer_common::named_enum! {
    serde
    /// The watched pid's state, as `watched` records carry it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum State {
        Running => "running",
        /// Caught a fatal signal and is waiting for its crash child.
        HandlingCrash => "handling-crash",
        /// Caught a fatal signal and now sleeps forever: services, reaping and
        /// the coredump socket are all gone.
        FrozenInCrashHandler => "frozen-in-crash-handler",
        Exited => "exited",
    }
}

/// What /proc shows of the watched pid, plus what the tracer saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub alive: bool,
    /// The chain id of a fatal signal its own handler caught, if any.
    pub handled_crash: Option<u64>,
    pub handled_signal: Option<String>,
    /// Kernel function it sleeps in (/proc/PID/wchan).
    pub wchan: String,
    /// Current system call number (/proc/PID/syscall), if sleeping in one.
    pub syscall: Option<i64>,
    pub open_fds: Option<usize>,
    /// Open fds that are sockets (`socket:[…]` link targets in /proc/PID/fd).
    pub socket_fds: usize,
    /// The chain of the crash child its handler forked has ended (the child
    /// dumped and exited): the handler has nothing left to wait for.
    pub crash_child_ended: bool,
    /// Zombie children (state Z, PPID = the watched pid).
    pub zombies: usize,
}

pub fn assess(f: &Facts) -> (State, Vec<String>) {
    if !f.alive {
        return (State::Exited, vec!["the process is gone".into()]);
    }
    let Some(chain) = f.handled_crash else {
        return (State::Running, Vec::new());
    };
    let mut evidence = vec![format!(
        "its handler caught fatal {} (crash #{chain}) and it did not exit",
        f.handled_signal.as_deref().unwrap_or("signal")
    )];
    if f.crash_child_ended {
        evidence.push("the crash child its handler forked has dumped and exited".into());
    }
    let pausing = matches!(f.syscall, Some(SYS_PAUSE) | Some(SYS_RT_SIGSUSPEND));
    let reaping = matches!(f.syscall, Some(SYS_WAIT4) | Some(SYS_WAITID)) || f.wchan == "do_wait";
    if pausing {
        evidence.push(format!("sleeps in pause (syscall {}, wchan {})", f.syscall.unwrap_or(-1), f.wchan));
    } else if reaping && f.crash_child_ended {
        evidence.push(format!("waits for children forever (wchan {})", if f.wchan.is_empty() { "?" } else { &f.wchan }));
    } else if !f.wchan.is_empty() && f.wchan != "0" {
        evidence.push(format!("waits in the kernel at {}", f.wchan));
    }
    match f.open_fds {
        Some(0) => evidence.push("no file descriptors left: its sockets, the coredump socket included, are closed".into()),
        Some(n) if f.socket_fds == 0 => evidence.push(format!(
            "{n} file descriptors open, none a socket: the coredump socket and its services' sockets are closed"
        )),
        Some(n) => evidence.push(format!("{n} file descriptors open, {} of them sockets", f.socket_fds)),
        None => {}
    }
    if f.zombies > 0 {
        evidence.push(format!("{} zombie children not reaped", f.zombies));
    }
    // Frozen: asleep for good with nothing left open (a test init's pause,
    // no fds); or, as real systemd's freeze() is, its crash child gone and
    // reaping forever with only stdio and no socket left; or not reaping
    // at all while zombies pile up.
    let only_stdio = matches!(f.open_fds, Some(n) if n <= STDIO_FDS) && f.socket_fds == 0;
    let frozen = pausing
        || f.open_fds == Some(0)
        || (f.crash_child_ended && reaping && only_stdio)
        || f.zombies >= ZOMBIES_PILING_UP;
    if frozen {
        (State::FrozenInCrashHandler, evidence)
    } else {
        (State::HandlingCrash, evidence)
    }
}

fn read(path: String) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

impl Facts {
    /// Reads the pid's state from /proc; `handled_crash` and `handled_signal`
    /// come from the correlator (a fatal signal the pid's own handler caught).
    pub fn gather(pid: u32, handled_crash: Option<u64>, handled_signal: Option<String>, crash_child_ended: bool) -> Facts {
        let alive = std::path::Path::new(&format!("/proc/{pid}/stat")).exists() && !is_zombie(pid);
        let wchan = read(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let syscall = read(format!("/proc/{pid}/syscall"))
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<i64>().ok()));
        let fds: Option<Vec<std::path::PathBuf>> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok()).collect());
        let open_fds = fds.as_ref().map(Vec::len);
        let socket_fds = fds.iter().flatten().filter(|t| t.to_string_lossy().starts_with("socket:")).count();
        Facts {
            alive,
            handled_crash,
            handled_signal,
            wchan,
            syscall,
            open_fds,
            socket_fds,
            crash_child_ended,
            zombies: zombie_children(pid),
        }
    }
}

/// (state, ppid) from /proc/PID/stat; the comm may hold spaces and parens.
pub fn stat_state(pid: u32) -> Option<(char, u32)> {
    let text = read(format!("/proc/{pid}/stat"))?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

fn is_zombie(pid: u32) -> bool {
    matches!(stat_state(pid), Some(('Z', _)))
}

fn zombie_children(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| matches!(stat_state(*p), Some(('Z', ppid)) if ppid == pid))
        .count()
}

/// Zombies whose cgroup v2 path is `path` (a removed group reads
/// "PATH (deleted)" in /proc/PID/cgroup).
pub fn zombies_in_cgroup(path: &str) -> Vec<crate::event::Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let deleted = format!("{path} (deleted)");
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| matches!(stat_state(*p), Some(('Z', _))))
        .filter(|p| {
            read(format!("/proc/{p}/cgroup"))
                .and_then(|t| t.lines().find_map(|l| l.strip_prefix("0::")).map(|l| l == path || l == deleted))
                .unwrap_or(false)
        })
        .map(|p| {
            let comm = read(format!("/proc/{p}/comm")).unwrap_or_default().trim().to_string();
            crate::event::Proc { pid: p, tgid: p, comm }
        })
        .take(16)
        .collect()
}

/// Whether the pid is PID 1 of some pid namespace (the last NSpid is 1).
pub fn is_namespace_init(pid: u32) -> bool {
    pid == 1
        || read(format!("/proc/{pid}/status"))
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("NSpid:")).map(|v| v.split_whitespace().last() == Some("1")))
            .unwrap_or(false)
}

/// One line on where a task sleeps in the kernel, for a chain's evidence.
pub fn kernel_wait(pid: u32) -> Option<String> {
    let wchan = read(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let (state, _) = stat_state(pid)?;
    let stack: Vec<String> = read(format!("/proc/{pid}/stack"))
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().nth(1).map(|f| f.split('+').next().unwrap_or(f).to_string()))
                .take(4)
                .collect()
        })
        .unwrap_or_default();
    Some(format!(
        "state {state}, wchan {}{}",
        if wchan.is_empty() { "?" } else { &wchan },
        if stack.is_empty() { String::new() } else { format!(", stack {}", stack.join(" < ")) }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handled() -> Facts {
        Facts { alive: true, handled_crash: Some(3), handled_signal: Some("SIGSEGV".into()), ..Facts::default() }
    }

    #[test]
    fn no_crash_is_running() {
        let f = Facts { alive: true, wchan: "do_epoll_wait".into(), open_fds: Some(12), ..Facts::default() };
        assert_eq!(assess(&f).0, State::Running);
    }

    #[test]
    fn gone_is_exited() {
        assert_eq!(assess(&Facts::default()).0, State::Exited);
    }

    #[test]
    fn waiting_for_its_crash_child_is_handling() {
        let f = Facts { wchan: "do_wait".into(), syscall: Some(61), open_fds: Some(5), ..handled() };
        let (state, evidence) = assess(&f);
        assert_eq!(state, State::HandlingCrash);
        assert!(evidence.iter().any(|e| e.contains("do_wait")), "{evidence:?}");
    }

    #[test]
    fn pause_with_no_fds_and_zombies_is_frozen() {
        let f = Facts { wchan: "do_sys_pause".into(), syscall: Some(SYS_PAUSE), open_fds: Some(0), zombies: 3, ..handled() };
        let (state, evidence) = assess(&f);
        assert_eq!(state, State::FrozenInCrashHandler);
        assert!(evidence.iter().any(|e| e.contains("pause")));
        assert!(evidence.iter().any(|e| e.contains("no file descriptors")));
        assert!(evidence.iter().any(|e| e.contains("3 zombie")));
        assert!(evidence.iter().any(|e| e.contains("SIGSEGV")));
    }

    /// Real systemd 252 as PID 1 after its crash child dumped: freeze()
    /// closed every fd but stdio (on /dev/null or the console) and reaps in
    /// waitid() forever; its services are still its live children.
    fn systemd_frozen() -> Facts {
        Facts {
            wchan: "do_wait".into(),
            syscall: Some(SYS_WAITID),
            open_fds: Some(3),
            socket_fds: 0,
            crash_child_ended: true,
            ..handled()
        }
    }

    #[test]
    fn real_systemd_reaping_forever_with_only_stdio_is_frozen() {
        let (state, evidence) = assess(&systemd_frozen());
        assert_eq!(state, State::FrozenInCrashHandler, "{evidence:?}");
        assert!(evidence.iter().any(|e| e.contains("crash child")), "{evidence:?}");
        assert!(evidence.iter().any(|e| e.contains("3 file descriptors open, none a socket")), "{evidence:?}");
    }

    #[test]
    fn waiting_with_sockets_or_before_the_crash_child_ended_is_still_handling() {
        // Still waiting for the crash child: the handler is doing its job.
        let f = Facts { crash_child_ended: false, ..systemd_frozen() };
        assert_eq!(assess(&f).0, State::HandlingCrash);
        // Sockets still open: the coredump socket may still be served.
        let f = Facts { open_fds: Some(3), socket_fds: 1, ..systemd_frozen() };
        assert_eq!(assess(&f).0, State::HandlingCrash);
        // More than stdio open.
        let f = Facts { open_fds: Some(43), ..systemd_frozen() };
        assert_eq!(assess(&f).0, State::HandlingCrash);
    }

    #[test]
    fn zombies_piling_up_after_a_caught_crash_is_frozen() {
        let f = Facts { wchan: "do_epoll_wait".into(), open_fds: Some(40), socket_fds: 20, zombies: ZOMBIES_PILING_UP, ..handled() };
        let (state, evidence) = assess(&f);
        assert_eq!(state, State::FrozenInCrashHandler, "{evidence:?}");
        let f = Facts { zombies: 1, ..f };
        assert_eq!(assess(&f).0, State::HandlingCrash);
    }

    #[test]
    fn pause_without_a_caught_crash_is_just_running() {
        let f = Facts { alive: true, syscall: Some(SYS_PAUSE), open_fds: Some(0), ..Facts::default() };
        assert_eq!(assess(&f).0, State::Running);
    }

    #[test]
    fn parses_stat_with_parens_in_comm() {
        // stat_state reads the real file; check our own process.
        let (state, ppid) = stat_state(std::process::id()).unwrap();
        assert!(matches!(state, 'R' | 'S' | 'D'));
        assert!(ppid > 0);
    }
}

//! Enrichment: every /proc read (and re-read of the host's settings) the
//! live tracer does, in one place. Events and chains carry what the kernel
//! saw; some facts are only to be had from /proc while the process is still
//! there, or right when a chain ends. Reads are cheap and few, and the one
//! that scans all of /proc (zombies in an emptied cgroup) is rate-limited.
//! `report` never enriches: it replays what was logged.

use tracer_common::signal::{is_core_signal, SIG_DFL};

use crate::{
    chain::Chain,
    core_pattern::{self, CoreSettings},
    event::{Body, Event},
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

    #[test]
    fn this_process_is_readable_and_has_maps() {
        let me = std::process::id();
        assert!(process_exists(me));
        let text = maps(me).unwrap();
        assert!(!crate::procmaps::parse_maps(&text).is_empty());
        assert!(maps(u32::MAX).unwrap_err().contains("/proc/4294967295/maps"));
    }
}

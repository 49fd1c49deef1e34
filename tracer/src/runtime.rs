//! The live tracer: ring buffer -> decode -> correlate -> output, on a tokio
//! current-thread runtime. This is the only module that ties aya, tokio and
//! the pure modules together.

use std::{
    collections::{BTreeMap, HashSet},
    io::Write,
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracer_common::signal::{is_core_signal, SIG_DFL};

use crate::{
    chain::Chain,
    cli::{ColorChoice, LiveArgs},
    core_pattern::CoreSettings,
    correlate::{Config, Correlator},
    decode,
    event::{Body, Event, Proc},
    loader::{self, LoadOptions},
    log::{LogOptions, LogWriter},
    output::{self, Style},
    record::{EventRecord, Header, Line, Loss, Record, Summary, Watched},
    verdict::Verdict,
};

/// The eBPF object built into this binary by `cargo xtask build`, if any.
#[cfg(crashtrace_embedded_ebpf)]
pub const EMBEDDED_OBJECT: Option<&[u8]> = Some(include_bytes!(env!("CRASHTRACE_EBPF_OBJECT_PATH")));
#[cfg(not(crashtrace_embedded_ebpf))]
pub const EMBEDDED_OBJECT: Option<&[u8]> = None;

pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Where output goes, with the --pid filter applied.
struct Outputs {
    json: bool,
    verdicts_only: bool,
    style: Style,
    log: Option<LogWriter>,
    watched: Option<u32>,
    /// The watched pid and the children it forked.
    followed: HashSet<u32>,
    mono_to_wall: i128,
    stdout_closed: bool,
    /// The watched pid is PID 1 of some pid namespace: the one systemd-coredump
    /// hands cores to, so a collector that cannot reach it is its story too.
    watched_is_init: bool,
    /// The watched pid's own handler caught a fatal signal: (chain, signal).
    watched_handled: Option<(u64, String)>,
    watched_state: Option<crate::watched::State>,
    /// `--cgroup PATH`: only crashes and events in this cgroup subtree.
    cgroup_filter: Option<String>,
    /// The sysctl hook sees every write to the core-dump settings, so they
    /// follow its events; without it they are re-read at each core dump.
    settings_from_writes: bool,
    /// Names the frames of captured stacks when their chains end.
    symbolizer: crate::symbolize::Symbolizer,
    zombie_scans: RateLimit,
}

/// At most `max` actions per second of event time: a cgroup storm must not
/// turn into a storm of /proc scans.
struct RateLimit {
    window_start: u64,
    used: u32,
    max: u32,
}

impl RateLimit {
    fn allow(&mut self, now_ns: u64) -> bool {
        if now_ns.saturating_sub(self.window_start) >= 1_000_000_000 {
            self.window_start = now_ns;
            self.used = 0;
        }
        self.used += 1;
        self.used <= self.max
    }
}

/// Whether cgroup `path` is `prefix` or below it.
pub fn cgroup_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).map(|r| r.starts_with('/')).unwrap_or(false)
}

impl Outputs {
    fn print(&mut self, text: &str) {
        if self.stdout_closed {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            // A closed pipe (crashtrace | head) ends output, not the tracer's duty to log.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.stdout_closed = true;
            }
        }
    }

    fn emit(&mut self, record: Record, text: Option<String>) {
        let line = Line::new(record);
        let json = line.to_json();
        if let Some(log) = self.log.as_mut() {
            // Synced as --log-sync says (by default: a verdict is on disk
            // before it is shown).
            log.write_record(&line.record, &json);
        }
        if self.json {
            self.print(&(json + "\n"));
        } else if let Some(t) = text {
            self.print(&t);
        }
    }

    fn wall(&self, ts_ns: u64) -> u64 {
        (ts_ns as i128 + self.mono_to_wall).max(0) as u64
    }

    fn event_wanted(&mut self, ev: &Event, correlator: &Correlator) -> bool {
        if let Some(prefix) = &self.cgroup_filter {
            let path = match &ev.body {
                Body::Cgroup { path, .. } => Some(path.clone()),
                Body::CoreSettings(_) | Body::SysctlWrite { .. } => None,
                _ => correlator.cgroup_path(ev.cgroup_id).map(str::to_string).or_else(|| proc_cgroup_v2(ev.task.tgid)),
            };
            if let Some(path) = path {
                if !cgroup_under(&path, prefix) {
                    return false;
                }
            }
        }
        let Some(pid) = self.watched else { return true };
        if let Body::ProcessFork { child } = &ev.body {
            if self.followed.contains(&ev.task.tgid) {
                self.followed.insert(*child);
            }
        }
        let _ = pid;
        let involved = |p: u32| self.followed.contains(&p);
        match &ev.body {
            Body::SignalGenerate { target, .. } => involved(ev.task.tgid) || involved(target.tgid),
            Body::ProcessExit { ppid, .. } => involved(ev.task.tgid) || involved(*ppid),
            Body::CoreSettings(_) => true,
            Body::HelperExec { .. } | Body::HelperConnect { .. } => {
                correlator.helper_chain(ev.task.tgid).map(|c| self.chain_wanted(c)).unwrap_or(false)
            }
            _ => involved(ev.task.tgid),
        }
    }

    fn chain_wanted(&self, chain: &Chain) -> bool {
        if let Some(prefix) = &self.cgroup_filter {
            if !chain.cgroup_path.as_deref().map(|p| cgroup_under(p, prefix)).unwrap_or(false) {
                return false;
            }
        }
        let Some(pid) = self.watched else { return true };
        let _ = pid;
        self.followed.iter().any(|p| chain.involves(*p))
            || chain.linked_to.map(|id| self.watched_handled.as_ref().map(|(h, _)| *h == id).unwrap_or(false)).unwrap_or(false)
            // A PID 1 owns the coredump socket: every collector that talks
            // to it, or fails to, is part of its story.
            || (self.watched_is_init
                && (chain.verdict == Some(Verdict::CollectorUnreachablePid1)
                    || chain
                        .collector
                        .as_ref()
                        .map(|c| c.connects.iter().any(|k| k.path == crate::core_pattern::SYSTEMD_COREDUMP_SOCKET))
                        .unwrap_or(false)))
    }

    /// Re-checks the watched pid and reports a state change.
    fn check_watched(&mut self, now_ns: u64) {
        let Some(pid) = self.watched else { return };
        let (handled, signal) = match &self.watched_handled {
            Some((id, sig)) => (Some(*id), Some(sig.clone())),
            None => (None, None),
        };
        let facts = crate::watched::Facts::gather(pid, handled, signal);
        let (state, evidence) = crate::watched::assess(&facts);
        if self.watched_state == Some(state) {
            return;
        }
        self.watched_state = Some(state);
        let record = Watched { ts_ns: now_ns, pid, state, evidence };
        let text = output::watched_text(&record, self.mono_to_wall, self.style);
        self.emit(Record::Watched(record), Some(text));
    }

    fn event(&mut self, ev: &Event, correlator: &Correlator) {
        if !self.event_wanted(ev, correlator) {
            return;
        }
        let wall_ns = self.wall(ev.ts_ns);
        let chain = correlator.chain_of_cgroup_event(ev);
        let text = if self.verdicts_only {
            None
        } else {
            let link = chain.map(|id| format!(" [cgroup of crash #{id}]")).unwrap_or_default();
            Some(output::event_line(ev, wall_ns, self.style) + &link + "\n")
        };
        self.emit(Record::Event(EventRecord { wall_ns, chain, event: ev.clone() }), text);
    }

    fn verdict(&mut self, mut chain: Chain) {
        if let (Some(pid), Some(Verdict::Handled)) = (self.watched, chain.verdict) {
            if chain.crasher.tgid == pid {
                self.watched_handled = Some((chain.id, chain.signal.clone()));
            }
        }
        if chain.stalled {
            // The evidence of a stall is where the tasks sleep right now.
            if let Some(w) = crate::watched::kernel_wait(chain.crasher.pid) {
                chain.evidence.push(format!("crashing process {}: {w}", chain.crasher));
            }
            let waiter = self.watched.or(chain.ppid);
            if let Some(w) = waiter.and_then(crate::watched::kernel_wait) {
                chain.evidence.push(format!("pid {} (its crash handler's process): {w}", waiter.unwrap_or(0)));
            }
            if chain.collector.as_ref().map(|c| c.connects.iter().any(|k| k.ret == 0)).unwrap_or(false) {
                chain.evidence.push("the collector's connect succeeded, yet no process accepted and read the core".into());
            }
        }
        if !self.chain_wanted(&chain) {
            return;
        }
        if let Some(stack) = chain.stack.as_mut() {
            // Off the event path: the chain is over, its maps were read at delivery.
            self.symbolizer.symbolize(chain.crasher.tgid, stack);
        }
        let text = output::verdict_block(&chain, self.mono_to_wall, self.style);
        self.emit(Record::Verdict(Box::new(chain)), Some(text));
    }
}

/// Runs the live tracer until Ctrl-C, SIGTERM or --duration.
pub async fn run_live(args: &LiveArgs) -> Result<()> {
    if let Some(pid) = args.pid {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            anyhow::bail!("no process with pid {pid}; check the number with `ps -p {pid}`");
        }
    }
    let log = match &args.log {
        Some(path) => Some(LogWriter::open(
            path,
            LogOptions { sync: args.log_sync, max_size: args.log_max_size, keep: args.log_keep },
        )?),
        None => None,
    };
    let object_bytes;
    let object: &[u8] = match (&args.bpf_object, EMBEDDED_OBJECT) {
        (Some(path), _) => {
            object_bytes = std::fs::read(path).map_err(|source| loader::LoadError::ReadObject { path: path.clone(), source })?;
            &object_bytes
        }
        (None, Some(bytes)) => bytes,
        (None, None) => return Err(loader::LoadError::NoObject.into()),
    };

    let attach_started = monotonic_ns();
    let loaded = loader::load(&LoadOptions {
        object,
        coredump_hook: args.coredump_hook,
        ring_buffer_size: args.ring_buffer_size,
        stack_copy: args.stack_copy,
        naive_all_signals: args.naive_all_signals,
        watched: args.pid,
        cgroup_prefix: args.cgroup.clone(),
    })?;
    let attach_ns = monotonic_ns() - attach_started;
    // Parsing the kernel's BTF (twice: for offsets and for the loader) took
    // tens of MB that are free now; hand them back so the tracer's resident
    // size reflects what it keeps, not its start-up.
    // glibc only: musl (the static build) has no malloc_trim and unmaps
    // large freed chunks by itself.
    // SAFETY: malloc_trim only releases free heap memory.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
    let loader::Loaded { ebpf: _ebpf, events, lost, hooks, dump_mode, dump_mode_reason } = loaded;

    let start_mono = monotonic_ns();
    let start_wall = realtime_ns();
    let settings = CoreSettings::read().ok();
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !args.json && unsafe { libc::isatty(1) } == 1 && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out = Outputs {
        json: args.json,
        verdicts_only: args.verdicts_only,
        style: Style { color },
        log,
        watched: args.pid,
        followed: args.pid.into_iter().collect(),
        mono_to_wall: start_wall as i128 - start_mono as i128,
        stdout_closed: false,
        watched_is_init: args.pid.map(crate::watched::is_namespace_init).unwrap_or(false),
        watched_handled: None,
        watched_state: None,
        zombie_scans: RateLimit { window_start: 0, used: 0, max: 20 },
        settings_from_writes: hooks.iter().any(|h| h.name == "cgroup_sysctl" && h.state == crate::record::HookState::Attached),
        cgroup_filter: args.cgroup.clone(),
        symbolizer: crate::symbolize::Symbolizer::new(),
    };
    let header = Header {
        tracer_version: env!("CARGO_PKG_VERSION").into(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        start_wall_ns: start_wall,
        start_mono_ns: start_mono,
        dump_mode,
        dump_mode_reason,
        hooks,
        core_settings: settings.clone(),
        watched_pid: args.pid,
    };
    let text = output::header_text(&header);
    out.emit(Record::Header(header), Some(text));
    if !args.json {
        out.print(&format!("all hooks attached in {:.1} ms; tracing (Ctrl-C to stop)\n", attach_ns as f64 / 1e6));
    }
    // Machine-readable readiness for scripts and tests, on stderr.
    // Handlers first: a script that sees "attached" and sends SIGINT must
    // get a clean stop with a summary, never the default death.
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    eprintln!("crashtrace: attached in {attach_ns} ns");

    let mut correlator = Correlator::new(Config::default());
    let mut current_settings = settings;
    if let Some(s) = &current_settings {
        // Also an event record, so a log replays on its own.
        let sev = settings_event(s.clone(), start_mono);
        correlator.feed(&sev);
        out.event(&sev, &correlator);
    }

    // SAFETY: the ring buffer owns its fd and keeps it open for as long as
    // the AsyncFd holds it.
    let mut ring = unsafe { AsyncFd::register(events) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_watch_check = 0u64;
    let deadline = args.duration.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut decode_errors = 0u64;
    let mut lost_seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut lost_total = 0u64;
    let state_size_start = correlator.state_size() as u64;
    let mut state_size_peak = state_size_start;

    loop {
        let sleep_until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                let rb = guard.get_inner_mut();
                drain(rb, &mut correlator, &mut out, &mut current_settings, &mut decode_errors);
                guard.clear_ready();
                // The state only grows while draining; ticks shrink it.
                state_size_peak = state_size_peak.max(correlator.state_size() as u64);
            }
            _ = tick.tick() => {
                let now = monotonic_ns();
                for chain in correlator.tick(now) {
                    out.verdict(chain);
                }
                if now >= next_watch_check {
                    out.check_watched(now);
                    next_watch_check = now + 1_000_000_000;
                }
                if let lost_now @ 1.. = report_loss(&lost, &mut lost_seen, &mut lost_total, &mut out) {
                    correlator.note_loss(monotonic_ns(), lost_now);
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sleep_until => break,
        }
    }

    // Detach cleanly: take what is still in the ring, then end every chain.
    drain(ring.get_mut(), &mut correlator, &mut out, &mut current_settings, &mut decode_errors);
    if let lost_now @ 1.. = report_loss(&lost, &mut lost_seen, &mut lost_total, &mut out) {
        correlator.note_loss(monotonic_ns(), lost_now);
    }
    let state_size_end = correlator.state_size() as u64;
    state_size_peak = state_size_peak.max(state_size_end);
    for chain in correlator.flush() {
        out.verdict(chain);
    }
    let stats = correlator.stats().clone();
    let summary = Summary {
        events: stats.events,
        chains: stats.chains_opened,
        verdicts: stats.verdicts.clone(),
        kernel_said_dumped_but_dropped: stats.kernel_said_dumped_but_dropped,
        lost_kernel: lost_total,
        decode_errors,
        log_write_failures: out.log.as_ref().map(|l| l.failures).unwrap_or(0),
        state_size_start,
        state_size_peak,
        state_size_end,
    };
    let text = output::summary_text(&summary);
    if out.json {
        out.emit(Record::Summary(summary), None);
    } else {
        out.emit(Record::Summary(summary), None);
        eprint!("{text}");
    }
    Ok(())
}

/// The cgroup v2 path of a process, from the "0::" line of /proc/PID/cgroup.
fn proc_cgroup_v2(tgid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

fn settings_event(s: CoreSettings, ts_ns: u64) -> Event {
    Event { ts_ns, cpu: 0, task: Proc::default(), cgroup_id: 0, body: Body::CoreSettings(s) }
}

fn drain(
    rb: &mut aya::maps::RingBuf<aya::maps::MapData>,
    correlator: &mut Correlator,
    out: &mut Outputs,
    current_settings: &mut Option<CoreSettings>,
    decode_errors: &mut u64,
) {
    while let Some(item) = rb.next() {
        let mut ev = match decode::decode(&item) {
            Ok(ev) => ev,
            Err(e) => {
                *decode_errors += 1;
                if *decode_errors <= 10 {
                    eprintln!("crashtrace: undecodable event ({e}); counted in the summary");
                }
                continue;
            }
        };
        drop(item);
        if let Body::Cgroup { op, root: 0, populated, path, zombies, .. } = &mut ev.body {
            // cgroup v2 keeps a zombie in its group until it is reaped: say
            // so when a group is emptied or removed with one still in it.
            if (*op == crate::event::CgroupOp::Rmdir || *populated == Some(false)) && out.zombie_scans.allow(ev.ts_ns) {
                *zombies = crate::watched::zombies_in_cgroup(path);
            }
        }
        if let Body::StackCapture { .. } = &ev.body {
            // The thread is acting on its fatal signal: its maps are still
            // there to read, and may not be by the time its chain ends.
            out.symbolizer.remember_maps(ev.task.tgid);
        }
        if let Body::StackCopy { sp, data } = &ev.body {
            out.symbolizer.remember_stack_copy(ev.task.tgid, *sp, data.clone());
        }
        // Record the settings whenever they change, so the chain (and the
        // log) has the ones a dump used: from the writes the sysctl hook
        // sees, or, without the hook, re-read when a core dump starts.
        let changed = match &ev.body {
            Body::SysctlWrite { name, new_value, .. } if out.settings_from_writes => current_settings
                .as_ref()
                .and_then(|s| s.after_write(name, new_value, crate::core_pattern::is_executable))
                .or_else(|| CoreSettings::read().ok()),
            Body::SignalDeliver { sig, sa_handler, .. }
                if !out.settings_from_writes && is_core_signal(*sig) && *sa_handler == SIG_DFL =>
            {
                CoreSettings::read().ok()
            }
            _ => None,
        };
        if let Some(now) = changed.filter(|now| current_settings.as_ref() != Some(now)) {
            let sev = settings_event(now.clone(), ev.ts_ns);
            correlator.feed(&sev);
            out.event(&sev, correlator);
            *current_settings = Some(now);
        }
        let ended = correlator.feed(&ev);
        if let Body::SignalDeliver { .. } = &ev.body {
            // The crasher is still alive here (it is acting on the signal):
            // name its cgroup now, before the group can be removed.
            if let Some(path) = proc_cgroup_v2(ev.task.tgid) {
                correlator.learn_cgroup_path(ev.cgroup_id, path);
            }

        }
        out.event(&ev, correlator);
        for chain in ended {
            out.verdict(chain);
        }
    }
}

fn report_loss(
    lost: &aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    seen: &mut BTreeMap<&'static str, u64>,
    total: &mut u64,
    out: &mut Outputs,
) -> u64 {
    let mut counts = BTreeMap::new();
    let mut delta_total = 0;
    for (kind, n) in loader::read_lost(lost) {
        let before = seen.insert(kind, n).unwrap_or(0);
        if n > before {
            counts.insert(kind.to_string(), n - before);
            delta_total += n - before;
        }
    }
    if delta_total > 0 {
        *total += delta_total;
        let loss = Loss { ts_ns: monotonic_ns(), source: "kernel".into(), counts, total: delta_total };
        let text = output::loss_text(&loss, out.style) + "\n";
        out.emit(Record::Loss(loss), Some(text));
    }
    delta_total
}

//! The live tracer's loop: load and attach, then drain the ring buffer as
//! tokio says it is readable, tick the correlator, follow the watched pid,
//! report kernel-side loss, re-read the configuration and reopen the log on
//! SIGHUP, tell systemd when tracing began, and stop at Ctrl-C, SIGTERM or
//! `--duration` with a final drain, flush and summary. The only module that ties aya and
//! tokio to the pure ones; what happens to each event is [`pipeline`].

pub mod config;
pub mod config_file;
pub mod enrich;
pub mod journal;
pub mod names;
pub mod notify;
pub mod pipeline;
pub mod symbolizer;
pub mod watch;
pub mod worker;

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, Result};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};

use self::{
    config::{Layers, LiveConfig},
    enrich::Enricher,
    notify::Notifier,
    pipeline::Pipeline,
    watch::WatchedPid,
};
use crate::{
    cli::LiveArgs,
    correlate::{Config, Correlator},
    decode,
    loader::{self, LoadOptions},
    record::{Header, Heartbeat, Loss, Record, Stamp, Summary},
    scope::Scope,
    sink::{self, Sink},
};

/// The eBPF object built into this binary by `cargo xtask build`, if any.
#[cfg(crashtrace_embedded_ebpf)]
pub const EMBEDDED_OBJECT: Option<&[u8]> = Some(include_bytes!(env!("CRASHTRACE_EBPF_OBJECT_PATH")));
#[cfg(not(crashtrace_embedded_ebpf))]
pub const EMBEDDED_OBJECT: Option<&[u8]> = None;

/// How often chains are ticked and loss is read.
const TICK: Duration = Duration::from_millis(100);
/// How often the watched pid is re-checked.
const WATCH_CHECK_NS: u64 = 1_000_000_000;

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

/// Runs the live tracer with the flags given (no configuration file): see [`run`].
pub async fn run_live(args: &LiveArgs) -> Result<Finished> {
    run(&LiveConfig::resolve(args, config::Env::current()), None).await
}

/// How a run ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finished {
    /// Chains shown with a dropped:* verdict.
    pub dropped: u64,
}

/// Runs the live tracer until Ctrl-C, SIGTERM or the configured duration.
/// With `layers`, SIGHUP re-reads the configuration file from them;
/// without, it only reopens the log.
pub async fn run(config: &LiveConfig, layers: Option<&Layers>) -> Result<Finished> {
    // First: SIGHUP's default is to die, and logrotate or `systemctl reload`
    // may send it while the programs are still loading.
    let mut sighup = tokio::signal::unix::signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut notifier = Notifier::from_env();
    sink::nonblocking_journal_stream();
    let mut config = config.clone();
    if let Some(pid) = config.pid
        && !enrich::process_exists(pid)
    {
        anyhow::bail!("no process with pid {pid}; check the number with `ps -p {pid}`");
    }
    // Before any sink is opened: a user who may not trace must not get
    // crashtrace to create, append to or rotate a log either.
    loader::check_privileges()?;
    let sinks: Vec<Box<dyn Sink>> = config.sinks.iter().map(|s| s.open()).collect::<Result<_, _>>()?;
    let object_bytes;
    let object: &[u8] = match (&config.load.bpf_object, EMBEDDED_OBJECT) {
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
        coredump_hook: config.load.coredump_hook,
        ring_buffer_size: config.load.ring_buffer_size,
        stack_copy: config.load.stack_copy,
        kernel_stack: config.load.kernel_stack,
        no_stack_capture: config.load.no_stack_capture,
        naive_all_signals: config.load.naive_all_signals,
        watched: config.pid,
        cgroup_prefix: config.cgroup.clone(),
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
    let status = format!("STATUS=tracing (core dumps: {dump_mode})");

    let start_mono = monotonic_ns();
    let start_wall = realtime_ns();
    let settings = enrich::core_settings();
    let settings_from_writes = hooks.iter().any(|h| h.name == "cgroup_sysctl" && h.state == crate::record::HookState::Attached);
    let scope = Scope::new(config.pid, config.pid.map(enrich::is_namespace_init).unwrap_or(false), config.cgroup.clone())
        .with_context(config.container.clone(), config.unit.clone());
    let mut pipeline = Pipeline::new(
        Correlator::new(Config::default()),
        scope,
        config.pid.map(WatchedPid::new),
        Enricher::new(settings_from_writes),
        sinks,
        start_wall as i128 - start_mono as i128,
    );
    if config.load.kernel_stack {
        pipeline.warm_kernel_symbols();
    }
    let host = enrich::host();
    pipeline.set_stamp(Stamp::current());
    pipeline.emit(Record::Header(Header {
        tracer_version: env!("CARGO_PKG_VERSION").into(),
        kernel: host.kernel,
        hostname: host.hostname,
        boot_id: host.boot_id,
        start_wall_ns: start_wall,
        start_mono_ns: start_mono,
        dump_mode,
        dump_mode_reason,
        hooks,
        core_settings: settings.clone(),
        watched_pid: config.pid,
    }));
    pipeline.started(attach_ns);
    // Machine-readable readiness for scripts and tests, on stderr.
    // Handlers first: a script that sees "attached" and sends SIGINT must
    // get a clean stop with a summary, never the default death.
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    sink::warn(&format!("crashtrace: attached in {attach_ns} ns"));
    if let Some(n) = notifier.as_mut() {
        n.send(&format!("READY=1\n{status}"));
    }

    pipeline.initial_settings(settings, start_mono);

    // SAFETY: the ring buffer owns its fd and keeps it open for as long as
    // the AsyncFd holds it.
    let mut ring = unsafe { AsyncFd::register(events) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
    let mut tick = tokio::time::interval(TICK);
    let mut next_watch_check = 0u64;
    // The first heartbeat one interval after the start (the header says the
    // tracer is alive at the start).
    let mut next_heartbeat = config.heartbeat.map(|d| start_mono.saturating_add(d.as_nanos() as u64)).unwrap_or(u64::MAX);
    let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
    let mut loss = LossCounter::default();
    let state_size_start = pipeline.correlator.state_size() as u64;
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
                drain(guard.get_inner_mut(), &mut pipeline);
                guard.clear_ready();
                // The state only grows while draining; ticks shrink it.
                state_size_peak = state_size_peak.max(pipeline.correlator.state_size() as u64);
            }
            _ = tick.tick() => {
                let now = monotonic_ns();
                pipeline.tick(now);
                if now >= next_watch_check {
                    pipeline.check_watched(now);
                    next_watch_check = now + WATCH_CHECK_NS;
                }
                loss.report(&lost, &mut pipeline);
                if let Some(every) = config.heartbeat
                    && now >= next_heartbeat
                {
                    let events = pipeline.correlator.stats().events;
                    pipeline.emit(Record::Heartbeat(Heartbeat { ts_ns: now, interval_s: every.as_secs(), events }));
                    next_heartbeat = now.saturating_add(every.as_nanos() as u64);
                }
                if let Some(why) = pipeline.fatal() {
                    // --log-full=stop: end with a summary (it may reach the
                    // log if space came back), then the error.
                    pipeline.flush();
                    pipeline.summary(Summary { lost_kernel: loss.total, state_size_start, state_size_peak, ..Summary::default() });
                    anyhow::bail!("{why}");
                }
            }
            _ = sighup.recv() => {
                if let Some(n) = notifier.as_mut() {
                    n.send(&notify::reloading_message(monotonic_ns()));
                }
                reload(&mut config, layers, &mut pipeline);
                if let Some(n) = notifier.as_mut() {
                    n.send(&format!("READY=1\n{status}"));
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sleep_until => break,
        }
    }

    if let Some(n) = notifier.as_mut() {
        n.send("STOPPING=1");
    }
    // Detach cleanly: take what is still in the ring, then end every chain.
    drain(ring.get_mut(), &mut pipeline);
    loss.report(&lost, &mut pipeline);
    let state_size_end = pipeline.correlator.state_size() as u64;
    state_size_peak = state_size_peak.max(state_size_end);
    pipeline.flush();
    pipeline.summary(Summary {
        lost_kernel: loss.total,
        state_size_start,
        state_size_peak,
        state_size_end,
        output_dropped: sink::stdio_dropped(),
        ..Summary::default()
    });
    Ok(Finished { dropped: pipeline.dropped })
}

/// SIGHUP: re-read the configuration (when there is a file to read) and
/// apply what can change while tracing, the outputs; then reopen the log
/// for logrotate. Nothing here stops the tracer: a bad file keeps the
/// configuration in use, and says so.
fn reload(config: &mut LiveConfig, layers: Option<&Layers>, pipeline: &mut Pipeline) {
    let new = match layers.map(|l| l.resolve(config::Env::current())) {
        None => None,
        Some(Ok((new, _))) => Some(new),
        Some(Err(e)) => {
            sink::warn(&format!("crashtrace: SIGHUP: {e}; keeping the configuration in use"));
            None
        }
    };
    let Some(new) = new else {
        if let Err(e) = pipeline.reopen_sinks() {
            sink::warn(&format!("crashtrace: SIGHUP: {e}; records go on to the file open before"));
        }
        return;
    };
    let restart = config.restart_keys(&new);
    if !restart.is_empty() {
        sink::warn(&format!(
            "crashtrace: SIGHUP: {} changed in the configuration; they take a restart (systemctl restart crashtrace), the values in use stay",
            restart.join(", ")
        ));
    }
    match pipeline.reconfigure_sinks(&config.sinks, &new.sinks) {
        Ok(()) => {
            if config.sinks != new.sinks {
                sink::warn("crashtrace: SIGHUP: outputs reconfigured");
            }
            config.sinks = new.sinks;
        }
        Err(e) => sink::warn(&format!("crashtrace: SIGHUP: {e}; the outputs stay as they were")),
    }
}

/// Takes every record the ring buffer holds.
fn drain(rb: &mut aya::maps::RingBuf<aya::maps::MapData>, pipeline: &mut Pipeline) {
    loop {
        // The item is dropped (its slot handed back to the kernel) before
        // the event is processed.
        let decoded = match rb.next() {
            Some(item) => decode::decode(&item),
            None => break,
        };
        pipeline.decoded(decoded);
    }
}

/// The kernel's per-kind loss counters, as last read.
#[derive(Default)]
struct LossCounter {
    seen: BTreeMap<&'static str, u64>,
    total: u64,
}

impl LossCounter {
    /// Reports what was lost since the last read, as a loss record and to
    /// the correlator (the chains open now may miss evidence).
    fn report(&mut self, lost: &aya::maps::PerCpuArray<aya::maps::MapData, u64>, pipeline: &mut Pipeline) {
        let mut counts = BTreeMap::new();
        let mut delta_total = 0;
        for (kind, n) in loader::read_lost(lost) {
            let before = self.seen.insert(kind, n).unwrap_or(0);
            if n > before {
                counts.insert(kind.to_string(), n - before);
                delta_total += n - before;
            }
        }
        if delta_total == 0 {
            return;
        }
        self.total += delta_total;
        pipeline.emit(Record::Loss(Loss { ts_ns: monotonic_ns(), source: "kernel".into(), counts, total: delta_total }));
        pipeline.correlator.note_loss(monotonic_ns(), delta_total);
    }
}

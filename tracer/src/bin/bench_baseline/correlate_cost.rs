//! `crashtrace-bench-baseline --correlate-cost OPEN[,OPEN...]`: what
//! correlating one event costs while OPEN chains stay open, for the
//! correlation-cost benchmark (`cargo xtask bench`, section 7). Pure user
//! space: no BPF, no root.
//!
//! For each OPEN, a fresh correlator gets OPEN crashers that took a fatal
//! default action and never exit (their chains stay open for the idle
//! timeout), then one fixed stream of events is timed through it: complete
//! crash chains of other processes, caught SIGSEGVs, unrelated cgroup
//! churn and core lookups' results. The stream is the same for every OPEN,
//! so only the open chains differ. Per event it does what the live pipeline
//! does with the correlator: `feed`, the cgroup path learned at a delivery,
//! `chain_of_cgroup_event`; every 100 ms of event time, `core_requests` and
//! `tick`, as live's timer does.

use std::{
    collections::BTreeMap,
    hint::black_box,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use crashtrace::{
    core_location::{CoreLocation, FoundBy},
    core_pattern::CoreSettings,
    correlate::{Config, Correlator},
    event::{Body, CgroupOp, Event, Proc, Role, SigInfo},
};
use serde::Serialize;
use tracer_common::signal::{CLD_DUMPED, SIGCHLD, SIGSEGV, SIG_DFL};

/// This binary's own flag; handled before the live flags are parsed.
pub(crate) const FLAG: &str = "--correlate-cost";

/// Crash cycles in the timed stream; each is [`EVENTS_PER_CYCLE`] events.
const CYCLES: u64 = 2_000;
const EVENTS_PER_CYCLE: u64 = 10;
/// Event time between two events: 10,000 events/s, the order of a crash
/// storm (section 2 makes about 5,000 crashes/s of about 6 events each).
/// Ticks are per 100 ms of event time, so this sets the events per tick.
const EVENT_GAP_NS: u64 = 100_000;
/// Live's timer period.
const TICK_NS: u64 = 100_000_000;
/// Timed runs per OPEN; the median is reported.
const REPS: usize = 7;

/// Where the stream starts: after the open chains, well within their idle
/// timeout (15 s) even once the stream and the final drain are over.
const STREAM_START_NS: u64 = 1_000_000_000;
/// Pid ranges: the open crashers, the stream's crashers, its handled ones.
const OPEN_PID_BASE: u32 = 1_000_000;
const CRASH_PID_BASE: u32 = 2_000_000;
const HANDLED_PID_BASE: u32 = 3_000_000;
/// The stream's crashers' parent (a spawner) and their shared group.
const PARENT_PID: u32 = 4_242;
const CRASH_CGROUP: u64 = 5_000;
/// The open crashers' groups (a hundred services) and the unrelated ones.
const OPEN_CGROUP_BASE: u64 = 10_000;
const OPEN_CGROUPS: u64 = 100;
const CHURN_CGROUP_BASE: u64 = 1_000_000;
const HANDLER: u64 = 0x40_11d0;
const PIDNS: u64 = 4_026_531_836;

#[derive(Serialize)]
struct Report {
    events: u64,
    ticks: u64,
    event_gap_ns: u64,
    tick_ns: u64,
    reps: usize,
    results: Vec<Measured>,
}

#[derive(Serialize)]
struct Measured {
    open: usize,
    /// The correlator's max_open in these runs (raised to fit `open` plus
    /// the stream's own chains, so that none is evicted).
    max_open: usize,
    /// Median over the runs: all the stream's work (events and ticks) over
    /// its events.
    ns_per_event: f64,
    /// Median over the runs: the ticks' share (core_requests + tick), per tick.
    ns_per_tick: f64,
    runs_ns_per_event: Vec<f64>,
    /// Verdicts of the stream's chains (a check that it built what it says).
    verdicts: BTreeMap<String, u64>,
}

/// One event of the stream, with the cgroup path live would read from /proc
/// at a delivery.
struct Item {
    ev: Event,
    learn_path: Option<String>,
}

/// Runs the benchmark for `list` (OPEN[,OPEN...]) and prints JSON.
pub(crate) fn run(list: Option<&str>) -> Result<()> {
    let list = list.with_context(|| format!("{FLAG} needs a list of open-chain counts, e.g. {FLAG} 10,100,1000,10000"))?;
    let opens: Vec<usize> = list
        .split(',')
        .map(|s| s.trim().parse::<usize>().with_context(|| format!("{FLAG}: {s:?} is not a count of open chains")))
        .collect::<Result<_>>()?;
    if opens.is_empty() {
        bail!("{FLAG}: give at least one count of open chains");
    }
    let stream = stream();
    let ticks = (stream.last().map(|i| i.ev.ts_ns).unwrap_or(STREAM_START_NS) - STREAM_START_NS) / TICK_NS + 1;
    let mut per_open: Vec<Runs> = opens.iter().map(|_| Runs::default()).collect();
    for rep in 0..REPS {
        // The counts take turns, starting at a different one each round,
        // so a slow spell on the machine does not land on one count only.
        for k in 0..opens.len() {
            let at = (k + rep) % opens.len();
            let r = once(opens[at], &stream)?;
            let slot = &mut per_open[at];
            slot.events.push(r.total.as_nanos() as f64 / stream.len() as f64);
            slot.ticks.push(r.ticks.as_nanos() as f64 / r.tick_count.max(1) as f64);
            slot.verdicts = r.verdicts;
            slot.max_open = r.max_open;
        }
    }
    let results = opens
        .iter()
        .zip(per_open)
        .map(|(&open, runs)| Measured {
            open,
            max_open: runs.max_open,
            ns_per_event: median(&runs.events),
            ns_per_tick: median(&runs.ticks),
            runs_ns_per_event: runs.events,
            verdicts: runs.verdicts,
        })
        .collect();
    let report =
        Report { events: stream.len() as u64, ticks, event_gap_ns: EVENT_GAP_NS, tick_ns: TICK_NS, reps: REPS, results };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// One count's runs so far: ns per event and per tick, run by run.
#[derive(Default)]
struct Runs {
    events: Vec<f64>,
    ticks: Vec<f64>,
    verdicts: BTreeMap<String, u64>,
    max_open: usize,
}

struct Once {
    total: Duration,
    ticks: Duration,
    tick_count: u64,
    verdicts: BTreeMap<String, u64>,
    max_open: usize,
}

/// One timed run of the stream with `open` chains held open.
fn once(open: usize, stream: &[Item]) -> Result<Once> {
    let stream_chains = (CYCLES * 2) as usize;
    let defaults = Config::default();
    // Live's default holds 4096 chains; 10,000 need more, and an evicted
    // chain would no longer be open.
    let max_open = defaults.max_open.max(open + stream_chains);
    let mut c = Correlator::new(Config { max_open, ..defaults });
    c.feed(&settings());
    for i in 0..open {
        let pid = OPEN_PID_BASE + i as u32;
        let cg = OPEN_CGROUP_BASE + i as u64 % OPEN_CGROUPS;
        c.feed(&deliver(i as u64, pid, cg, SIG_DFL));
        c.learn_cgroup_path(cg, format!("/system.slice/svc-{}.service", cg - OPEN_CGROUP_BASE));
    }
    if c.open_chains() != open {
        bail!("{open} crashers fed, but the correlator holds {} open chains: the benchmark measures nothing", c.open_chains());
    }
    let ended_before = c.stats().verdicts.values().sum::<u64>();

    let mut next_tick = STREAM_START_NS;
    let mut in_ticks = Duration::ZERO;
    let mut tick_count = 0u64;
    let mut ended = Vec::new();
    let start = Instant::now();
    for item in stream {
        while item.ev.ts_ns >= next_tick {
            let t = Instant::now();
            black_box(c.core_requests());
            ended.extend(black_box(c.tick(next_tick)));
            in_ticks += t.elapsed();
            tick_count += 1;
            next_tick += TICK_NS;
        }
        let ev = black_box(&item.ev);
        ended.extend(black_box(c.feed(ev)));
        if let Some(path) = &item.learn_path {
            c.learn_cgroup_path(ev.cgroup_id, path.clone());
        }
        black_box(c.chain_of_cgroup_event(ev));
    }
    let total = start.elapsed();

    // Untimed: let every stream chain end (grace, core wait), then check
    // that the open ones are all still there and the stream's chains got
    // the verdicts it was built for.
    let last = stream.last().map(|i| i.ev.ts_ns).unwrap_or(STREAM_START_NS);
    ended.extend(c.tick(last + 5_000_000_000));
    if c.stats().chains_evicted != 0 {
        bail!("{} chains evicted with {open} open: max_open {max_open} is too small", c.stats().chains_evicted);
    }
    if c.open_chains() != open {
        bail!("after the stream {} chains are open, not the {open} held open: the stream ended some of them", c.open_chains());
    }
    if ended.iter().any(|ch| ch.crasher.tgid >= OPEN_PID_BASE && ch.crasher.tgid < CRASH_PID_BASE) {
        bail!("a held-open chain was ended by the stream");
    }
    let mut verdicts = BTreeMap::new();
    for ch in &ended {
        *verdicts.entry(ch.verdict.map(|v| v.as_str().to_string()).unwrap_or_default()).or_insert(0u64) += 1;
    }
    let expected = [("handled".to_string(), CYCLES), ("stored".to_string(), CYCLES)].into_iter().collect::<BTreeMap<_, _>>();
    if verdicts != expected || ended_before != 0 {
        bail!("the stream's chains ended as {verdicts:?}, not {CYCLES} stored and {CYCLES} handled: the stream is not what it says");
    }
    Ok(Once { total, ticks: in_ticks, tick_count, verdicts, max_open })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn proc(pid: u32, comm: &str) -> Proc {
    Proc { pid, tgid: pid, comm: comm.into() }
}

fn settings() -> Event {
    Event {
        ts_ns: 0,
        cpu: 0,
        task: Proc::default(),
        cgroup_id: 1,
        body: Body::CoreSettings(CoreSettings {
            core_pattern: "/var/crash/core.%p".into(),
            core_pipe_limit: 0,
            core_uses_pid: false,
            helper_executable: None,
            set_by: None,
        }),
    }
}

fn fault(ts_ns: u64, pid: u32, cgroup_id: u64, handler: u64) -> Event {
    Event {
        ts_ns,
        cpu: 1,
        task: proc(pid, "app"),
        cgroup_id,
        body: Body::SignalGenerate {
            sig: SIGSEGV,
            code: 1,
            errno: 0,
            group: 0,
            result: 0,
            info: SigInfo::Full,
            target: proc(pid, "app"),
            target_ppid: PARENT_PID,
            target_handler: handler,
            target_blocked: false,
            fault_addr: Some(0x10),
            si_pid: None,
            si_uid: None,
        },
    }
}

fn deliver(ts_ns: u64, pid: u32, cgroup_id: u64, handler: u64) -> Event {
    Event {
        ts_ns,
        cpu: 1,
        task: proc(pid, "app"),
        cgroup_id,
        body: Body::SignalDeliver {
            sig: SIGSEGV,
            code: 1,
            errno: 0,
            info: SigInfo::Full,
            sa_handler: handler,
            sa_flags: 0,
            fault_addr: Some(0x10),
            si_pid: None,
            rlimit_core: None,
            ppid: PARENT_PID,
            dumpable: Some(1),
            pidns: Some(PIDNS),
            ns_pid: Some(pid),
        },
    }
}

/// An event of crasher `pid` in the crashers' group; its time is set when
/// the stream is laid out.
fn crasher_event(pid: u32, body: Body) -> Event {
    Event { ts_ns: 0, cpu: 1, task: proc(pid, "app"), cgroup_id: CRASH_CGROUP, body }
}

fn core_located(ts_ns: u64, pid: u32) -> Event {
    Event {
        ts_ns,
        cpu: 0,
        task: proc(pid, "app"),
        cgroup_id: CRASH_CGROUP,
        body: Body::CoreLocated(CoreLocation::found(
            format!("/var/crash/core.{pid}"),
            Some(1 << 20),
            false,
            FoundBy::FilePattern,
        )),
    }
}

fn cgroup(ts_ns: u64, op: CgroupOp, id: u64, populated: Option<bool>) -> Event {
    Event {
        ts_ns,
        cpu: 0,
        task: proc(1, "systemd"),
        cgroup_id: 1,
        body: Body::Cgroup {
            op,
            root: 0,
            id,
            level: 2,
            populated,
            path: format!("/system.slice/run-u{id}.scope"),
            zombies: Vec::new(),
        },
    }
}

/// The timed stream: per cycle a whole crash (fault, delivery with a core
/// dump, stack, exit, the parent's SIGCHLD), a SIGSEGV caught by a
/// handler, a transient unit's cgroup made and an older one removed or
/// emptied, and the core lookup's result for the crash two cycles back.
fn stream() -> Vec<Item> {
    let mut out: Vec<Item> = Vec::with_capacity((CYCLES * EVENTS_PER_CYCLE + 2) as usize);
    let mut ts = STREAM_START_NS;
    let mut push = |out: &mut Vec<Item>, mut ev: Event, learn: bool| {
        ev.ts_ns = ts;
        ts += EVENT_GAP_NS;
        let learn_path = learn.then(|| "/system.slice/app.service".to_string());
        out.push(Item { ev, learn_path });
    };
    for k in 0..CYCLES {
        let crasher = CRASH_PID_BASE + k as u32;
        let handled = HANDLED_PID_BASE + k as u32;
        push(&mut out, fault(0, crasher, CRASH_CGROUP, SIG_DFL), false);
        push(&mut out, deliver(0, crasher, CRASH_CGROUP, SIG_DFL), true);
        push(
            &mut out,
            crasher_event(
                crasher,
                Body::StackCapture {
                    sig: SIGSEGV,
                    user: (0..8).map(|f| 0x5555_5555_1000 + f * 0x40).collect(),
                    kernel: Vec::new(),
                    build_ids: Vec::new(),
                    ip: Some(0x5555_5555_1000),
                    sp: Some(0x7ffc_0000_1000),
                    bp: Some(0x7ffc_0000_1040),
                    user_errno: None,
                    kernel_errno: None,
                },
            ),
            false,
        );
        push(&mut out, fault(0, handled, CRASH_CGROUP, HANDLER), false);
        push(&mut out, deliver(0, handled, CRASH_CGROUP, HANDLER), true);
        push(
            &mut out,
            crasher_event(
                crasher,
                // Killed by SIGSEGV, core dumped.
                Body::ProcessExit { exit_code: SIGSEGV | 0x80, ppid: PARENT_PID, roles: vec![Role::Crasher] },
            ),
            false,
        );
        push(
            &mut out,
            crasher_event(
                crasher,
                Body::SignalGenerate {
                    sig: SIGCHLD,
                    code: CLD_DUMPED,
                    errno: 0,
                    group: 1,
                    result: 0,
                    info: SigInfo::Full,
                    target: proc(PARENT_PID, "spawner"),
                    target_ppid: 1,
                    target_handler: SIG_DFL,
                    target_blocked: false,
                    fault_addr: None,
                    si_pid: Some(crasher),
                    si_uid: Some(0),
                },
            ),
            false,
        );
        push(&mut out, cgroup(0, CgroupOp::Mkdir, CHURN_CGROUP_BASE + k, None), false);
        let gone = CHURN_CGROUP_BASE + k.saturating_sub(1);
        if k % 2 == 0 {
            push(&mut out, cgroup(0, CgroupOp::Rmdir, gone, None), false);
        } else {
            push(&mut out, cgroup(0, CgroupOp::Populated, gone, Some(false)), false);
        }
        // Live feeds a core's location on a tick after the dump is over;
        // here two cycles (2 ms) later.
        let pid = CRASH_PID_BASE + k.saturating_sub(2) as u32;
        if k >= 2 {
            push(&mut out, core_located(0, pid), false);
        } else {
            push(&mut out, cgroup(0, CgroupOp::Populated, CHURN_CGROUP_BASE + k, Some(true)), false);
        }
    }
    for k in CYCLES - 2..CYCLES {
        push(&mut out, core_located(0, CRASH_PID_BASE + k as u32), false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check `once` makes (open chains, verdicts) holds on a small run;
    /// it fails loudly when the stream stops building what it says.
    #[test]
    fn a_run_keeps_the_open_chains_and_ends_the_streams_own() {
        let stream = stream();
        assert_eq!(stream.len() as u64, CYCLES * EVENTS_PER_CYCLE + 2);
        assert!(stream.windows(2).all(|w| w[0].ev.ts_ns < w[1].ev.ts_ns));
        let r = once(50, &stream).expect("a valid run");
        assert_eq!(r.verdicts.get("stored"), Some(&CYCLES));
        assert!(r.tick_count >= 20, "{} ticks", r.tick_count);
    }
}

//! A large synthetic log for timing `crashtrace report` by hand
//! (`cargo xtask bench-log`), without root or BPF: the recorded fixtures
//! (tracer/tests/fixtures) replayed over and over with fresh pids and times,
//! verdict records included, plus a loss record every 100,000 events. The
//! report-speed benchmark records a real log instead; this one is for
//! profiling `report` anywhere. Works on the JSON Lines form (serde_json
//! values), so it needs nothing of the tracer crate.

use std::{
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The fixtures replayed, in this order.
pub(crate) const FIXTURES: [&str; 8] = [
    "bin-false",
    "file-stored",
    "handled-reraise",
    "kill-segv",
    "missing-helper",
    "rlimit-core",
    "sigkill",
    "systemd-no-pid1",
];

/// A loss record after every this many events.
const LOSS_EVERY: u64 = 100_000;
/// Between two replayed crashes: past the correlator's grace time, as in real life.
const CRASH_GAP_NS: u64 = 200_000_000;
/// Where the log's clocks start.
/// Between two handled crashes in [`write_handled`]: 2,000,000 of them
/// take 10 s, well inside the correlator's 30 s link window.
const HANDLED_GAP_NS: u64 = 5_000;
const WALL0: u64 = 1_795_723_000_000_000_000;
const MONO0: u64 = 600_000_000_000;

/// Writes a log of at least `events` events to `out`; returns the count.
pub(crate) fn write(fixtures: &Path, out: &Path, events: u64, with_verdicts: bool) -> Result<u64> {
    let mut templates = Vec::new();
    for name in FIXTURES {
        let path = fixtures.join(format!("{name}.jsonl"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading the fixture {}", path.display()))?;
        let lines = text
            .lines()
            .map(serde_json::from_str::<Value>)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing the fixture {}", path.display()))?;
        templates.push(lines);
    }
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::new(file);
    writeln!(w, "{}", header())?;
    let (mut written, mut round, mut clock) = (0u64, 0u64, MONO0 + 1_000_000);
    while written < events {
        for lines in &templates {
            let Some(base) = lines.iter().find(|l| l["type"] == "event").and_then(|l| l["ts_ns"].as_u64()) else {
                continue;
            };
            // Fresh pids per round, so chains stay apart.
            let shift = |pid: u64| if pid > 1000 { pid + (round % 50_000) * 20 } else { pid };
            let moved = |ts: u64| (ts as i64 + clock as i64 - base as i64) as u64;
            for line in lines {
                let mut l = line.clone();
                match l["type"].as_str() {
                    Some("event") => {
                        let ts = moved(u64_at(&l["ts_ns"])?);
                        l["ts_ns"] = ts.into();
                        l["wall_ns"] = (ts - MONO0 + WALL0).into();
                        shift_proc(&mut l["task"], shift)?;
                        match l["event"].as_str() {
                            Some("signal-generate") => {
                                shift_proc(&mut l["target"], shift)?;
                                if let Some(p) = l["si_pid"].as_u64() {
                                    l["si_pid"] = shift(p).into();
                                }
                            }
                            Some("helper-exec") => {
                                if let Some(argv) = l["argv"].as_array_mut() {
                                    for a in argv.iter_mut().skip(1) {
                                        if let Some(n) = a.as_str().and_then(|s| s.parse::<u64>().ok()) {
                                            *a = shift(n).to_string().into();
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                        written += 1;
                        if written % LOSS_EVERY == 0 {
                            let loss = json!({"v": 1, "type": "loss", "ts_ns": ts, "source": "kernel", "counts": {}, "total": 1});
                            writeln!(w, "{loss}")?;
                        }
                    }
                    Some("verdict") if with_verdicts => {
                        for key in ["first_ts_ns", "last_ts_ns"] {
                            l[key] = moved(u64_at(&l[key])?).into();
                        }
                        shift_proc(&mut l["crasher"], shift)?;
                        if let Some(steps) = l["timeline"].as_array_mut() {
                            for s in steps {
                                s["ts_ns"] = moved(u64_at(&s["ts_ns"])?).into();
                            }
                        }
                    }
                    _ => continue,
                }
                writeln!(w, "{l}")?;
            }
            clock += CRASH_GAP_NS;
        }
        round += 1;
    }
    let summary = json!({"v": 1, "type": "summary", "events": written, "chains": 0, "verdicts": {},
        "kernel_said_dumped_but_dropped": 0, "lost_kernel": 0, "decode_errors": 0, "log_write_failures": 0});
    writeln!(w, "{summary}")?;
    w.flush().with_context(|| format!("writing {}", out.display()))?;
    Ok(written)
}

/// Writes a log of `n` fatal signals caught by their process's own handler,
/// each in a process of its own (distinct pids), `HANDLED_GAP_NS` apart:
/// every one a chain with the `handled` verdict, and all within the
/// correlator's link window, so whatever it keeps per handled process (to
/// link a crash its handler forks) is at its largest. Times `report` on
/// state that grows with the number of processes, not of events per chain.
pub(crate) fn write_handled(out: &Path, n: u64) -> Result<u64> {
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::new(file);
    writeln!(w, "{}", header())?;
    for i in 0..n {
        let ts = MONO0 + 1_000_000 + i * HANDLED_GAP_NS;
        // Distinct pids up to the kernel's largest pid_max (2^22).
        let pid = 1000 + i % (4_194_304 - 1000);
        let ev = json!({"v": 1, "type": "event", "wall_ns": ts - MONO0 + WALL0, "ts_ns": ts, "cpu": 0,
            "task": {"pid": pid, "tgid": pid, "comm": "handler"}, "cgroup_id": 1, "event": "signal-deliver",
            "sig": 11, "code": 1, "errno": 0, "info": "full", "sa_handler": 94_531_260_170_665u64, "sa_flags": 0,
            "fault_addr": 0, "rlimit_core": null, "ppid": 1, "dumpable": 1});
        writeln!(w, "{ev}")?;
    }
    let summary = json!({"v": 1, "type": "summary", "events": n, "chains": 0, "verdicts": {},
        "kernel_said_dumped_but_dropped": 0, "lost_kernel": 0, "decode_errors": 0, "log_write_failures": 0});
    writeln!(w, "{summary}")?;
    w.flush().with_context(|| format!("writing {}", out.display()))?;
    Ok(n)
}

/// The header: a systemd-coredump pipe, so the replayed chains have settings.
fn header() -> Value {
    json!({
        "v": 1, "type": "header", "tracer_version": "0.1.0", "kernel": "6.18.0", "hostname": "vm",
        "boot_id": "bench", "start_wall_ns": WALL0, "start_mono_ns": MONO0,
        "dump_mode": "inferred", "dump_mode_reason": "test", "hooks": [],
        "core_settings": {
            "core_pattern": "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h %d",
            "core_pipe_limit": 16, "core_uses_pid": false, "helper_executable": true
        }
    })
}

fn u64_at(v: &Value) -> Result<u64> {
    match v.as_u64() {
        Some(n) => Ok(n),
        None => bail!("a fixture record has {v} where a time in ns belongs; fix the fixture"),
    }
}

fn shift_proc(p: &mut Value, shift: impl Fn(u64) -> u64) -> Result<()> {
    for key in ["pid", "tgid"] {
        p[key] = shift(u64_at(&p[key])?).into();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tracer/tests/fixtures")
    }

    #[test]
    fn writes_at_least_the_events_asked_with_fresh_pids_and_rising_times() {
        let out = std::env::temp_dir().join(format!("xtask-synth-{}.jsonl", std::process::id()));
        let written = write(&fixtures(), &out, 150, true).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(written >= 150, "{written}");
        assert_eq!(lines[0]["type"], "header");
        assert_eq!(lines.last().unwrap()["type"], "summary");
        assert_eq!(lines.last().unwrap()["events"], written);
        let events: Vec<&Value> = lines.iter().filter(|l| l["type"] == "event").collect();
        assert_eq!(events.len() as u64, written);
        assert!(lines.iter().any(|l| l["type"] == "verdict"));
        // Rounds after the first move the big pids on.
        let verdicts: Vec<&Value> = lines.iter().filter(|l| l["type"] == "verdict").collect();
        let per_round: usize = FIXTURES
            .iter()
            .map(|n| std::fs::read_to_string(fixtures().join(format!("{n}.jsonl"))).unwrap().matches("\"type\":\"verdict\"").count())
            .sum();
        assert!(verdicts.len() >= 2 * per_round, "150 events are more than two rounds");
        let tgid = |v: &Value| v["crasher"]["tgid"].as_u64().unwrap();
        assert!((0..per_round).any(|i| tgid(verdicts[i]) != tgid(verdicts[i + per_round])));
        assert!((0..per_round).all(|i| tgid(verdicts[i]) <= 1000 || tgid(verdicts[i + per_round]) == tgid(verdicts[i]) + 20));
        // Each round is the previous one moved on in time, a gap per crash.
        let first = |v: &Value| v["first_ts_ns"].as_u64().unwrap();
        let round_ns = FIXTURES.len() as u64 * CRASH_GAP_NS;
        assert!((0..per_round).all(|i| first(verdicts[i + per_round]) - first(verdicts[i]) == round_ns));
        for e in &events {
            assert_eq!(e["wall_ns"].as_u64().unwrap() - e["ts_ns"].as_u64().unwrap(), WALL0 - MONO0);
        }
    }

    #[test]
    fn handled_log_has_one_caught_signal_per_distinct_pid() {
        let out = std::env::temp_dir().join(format!("xtask-synth-h-{}.jsonl", std::process::id()));
        assert_eq!(write_handled(&out, 100).unwrap(), 100);
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        let events: Vec<Value> =
            text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|l| l["type"] == "event").collect();
        assert_eq!(events.len(), 100);
        let pids: std::collections::BTreeSet<u64> = events.iter().map(|e| e["task"]["tgid"].as_u64().unwrap()).collect();
        assert_eq!(pids.len(), 100);
        assert!(events.iter().all(|e| e["event"] == "signal-deliver" && e["sa_handler"].as_u64().unwrap() > 1));
    }

    #[test]
    fn without_verdicts_only_events_are_replayed() {
        let out = std::env::temp_dir().join(format!("xtask-synth-nv-{}.jsonl", std::process::id()));
        write(&fixtures(), &out, 10, false).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        assert!(!text.contains("\"type\":\"verdict\""));
        assert!(text.contains("\"type\":\"event\""));
    }
}

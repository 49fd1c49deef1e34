//! Running crashtrace under a benchmark: start it, wait for "attached",
//! sample its memory while the workload runs, stop it with SIGINT the way a
//! user would, and collect what it cost (CPU from wait4's rusage).

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Longest wait for "crashtrace: attached"; start-up is normally well under
/// a few seconds, even on a loaded machine.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a clean exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Longest wait, after "attached", for the SIGINT handler to be in place.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) enum Output {
    Null,
    File(PathBuf),
}

/// One memory sample of the tracer, from /proc/PID/status.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sample {
    /// Since the tracer printed "attached".
    pub at: Duration,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// The parts of RSS: anonymous (heap), file-backed (the binary, mapped
    /// files), shared memory (the ring buffer's pages).
    pub anon_kib: u64,
    pub file_kib: u64,
    pub shmem_kib: u64,
}

pub(super) struct Tracer {
    child: Child,
    pid: i32,
    /// From just before spawn to reading "attached" on its stderr.
    pub spawn_to_attached: Duration,
    /// The figure crashtrace prints itself: loading and attaching only.
    pub self_reported_attach: Duration,
    /// When "attached" was read.
    pub attached_at: Instant,
    /// CPU used by then: loading, verifying (in the kernel, on its behalf)
    /// and attaching.
    cpu_at_attach: Duration,
    stderr: Option<JoinHandle<Vec<String>>>,
    stop_sampling: Arc<AtomicBool>,
    sampler: Option<JoinHandle<Vec<Sample>>>,
}

pub(super) struct Finished {
    pub stderr: Vec<String>,
    /// CPU the tracer used from "attached" to the SIGINT that stopped it:
    /// the cost of tracing, without start-up or shut-down.
    pub cpu: Duration,
    pub samples: Vec<Sample>,
    /// Peak RSS over the whole life, start-up and shut-down included
    /// (wait4's ru_maxrss, which is VmHWM at exit).
    pub hwm_kib: u64,
}

fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kib(&text, key)
}

fn field_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn sample(pid: i32, at: Duration) -> Option<Sample> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let f = |key| field_kib(&text, key);
    Some(Sample {
        at,
        rss_kib: f("VmRSS:")?,
        hwm_kib: f("VmHWM:")?,
        anon_kib: f("RssAnon:").unwrap_or(0),
        file_kib: f("RssFile:").unwrap_or(0),
        shmem_kib: f("RssShmem:").unwrap_or(0),
    })
}

/// CPU time a live process has used so far, all threads: the run time the
/// scheduler keeps in /proc/PID/task/TID/schedstat, in nanoseconds (the
/// tick counts in /proc/PID/stat are only good to 10 ms).
fn cpu_so_far(pid: i32) -> Option<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

fn parse_attached(line: &str) -> Option<u64> {
    line.strip_prefix("crashtrace: attached in ")?.strip_suffix(" ns")?.trim().parse().ok()
}

impl Tracer {
    pub(super) fn start(binary: &Path, args: &[String], output: &Output) -> Result<Tracer> {
        let stdout: Stdio = match output {
            Output::Null => Stdio::null(),
            Output::File(p) => File::create(p).with_context(|| format!("creating {}", p.display()))?.into(),
        };
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id() as i32;
        let stderr = child.stderr.take().context("crashtrace's stderr was not piped")?;
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(ns) = parse_attached(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send((Instant::now(), ns));
                }
                lines.push(line);
            }
            lines
        });
        let (attached_at, ns) = match rx.recv_timeout(ATTACH_TIMEOUT) {
            Ok(v) => v,
            Err(e) => {
                // SAFETY: signalling the child this function started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = child.wait();
                let lines = reader.join().unwrap_or_default();
                bail!(
                    "crashtrace did not attach ({}): {}",
                    if matches!(e, mpsc::RecvTimeoutError::Timeout) { "timed out" } else { "it exited" },
                    lines.join(" / ")
                );
            }
        };
        let stop_sampling = Arc::new(AtomicBool::new(false));
        let stop = stop_sampling.clone();
        let sampler = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Some(s) = sample(pid, attached_at.elapsed()) else { break };
                samples.push(s);
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        });
        Ok(Tracer {
            child,
            pid,
            spawn_to_attached: attached_at - started,
            self_reported_attach: Duration::from_nanos(ns),
            attached_at,
            cpu_at_attach: cpu_so_far(pid).unwrap_or_default(),
            stderr: Some(reader),
            stop_sampling,
            sampler: Some(sampler),
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Resident KiB per mapped object (file path, "[heap]", anon_inode:...),
    /// largest first, from /proc/PID/smaps.
    pub(super) fn mappings(&self) -> Vec<(String, u64)> {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/smaps", self.pid)) else { return Vec::new() };
        let mut by: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        let mut name = String::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                // "start-end perms offset dev inode [name]"
                name = words.nth(4).unwrap_or("[anonymous]").to_string();
            } else if first == "Rss:" {
                *by.entry(name.clone()).or_default() += words.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        let mut v: Vec<(String, u64)> = by.into_iter().filter(|(_, k)| *k > 0).collect();
        v.sort_by_key(|m| std::cmp::Reverse(m.1));
        v
    }

    pub(super) fn rss_kib(&self) -> Option<u64> {
        status_kib(self.pid, "VmRSS:")
    }

    /// Whether the tracer has a handler for SIGINT yet (SigCgt in /proc).
    fn catches_sigint(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else { return false };
        text.lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (libc::SIGINT - 1)) != 0)
    }

    /// SIGINT, then a clean exit within [`STOP_TIMEOUT`].
    pub(super) fn stop(mut self) -> Result<Finished> {
        // crashtrace prints "attached" before it installs its SIGINT handler;
        // a SIGINT in between would kill it without its summary.
        let deadline = Instant::now() + HANDLER_TIMEOUT;
        while !self.catches_sigint() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let hwm_kib = status_kib(self.pid, "VmHWM:").unwrap_or(0);
        let cpu = cpu_so_far(self.pid).unwrap_or_default().saturating_sub(self.cpu_at_attach);
        self.stop_sampling.store(true, Ordering::Relaxed);
        let samples = self.sampler.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(self.pid, libc::SIGINT) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut status = 0;
        // SAFETY: rusage is plain old data; zeroed is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: valid out-pointers; our own child.
            let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
            if r == self.pid {
                break;
            }
            if r < 0 {
                bail!("wait4 on crashtrace: {}", std::io::Error::last_os_error());
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                let _ = self.child.wait();
                bail!("crashtrace did not exit within {STOP_TIMEOUT:?} of SIGINT; killed it");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        if libc::WIFSIGNALED(status) {
            bail!("crashtrace was killed by signal {}: {}", libc::WTERMSIG(status), stderr.join(" / "));
        }
        if libc::WEXITSTATUS(status) != 0 {
            bail!("crashtrace exited with {}: {}", libc::WEXITSTATUS(status), stderr.join(" / "));
        }
        let hwm_kib = samples.last().map(|s| s.hwm_kib).unwrap_or(0).max(hwm_kib).max(usage.ru_maxrss.max(0) as u64);
        Ok(Finished { stderr, cpu, samples, hwm_kib })
    }
}

/// Counts from the text summary crashtrace prints on stderr.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TextSummary {
    pub events: u64,
    pub lost: u64,
}

impl Finished {
    /// "summary: N events, C crash chains, L events lost in the kernel, ..."
    pub(super) fn text_summary(&self) -> Option<TextSummary> {
        let line = self.stderr.iter().find_map(|l| l.strip_prefix("summary: "))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let number_before = |pred: &dyn Fn(&[&str]) -> bool| {
            (1..words.len()).find(|&i| pred(&words[i..])).and_then(|i| words[i - 1].parse::<u64>().ok())
        };
        let events = number_before(&|w| w[0] == "events,")?;
        let lost = number_before(&|w| w[0] == "events" && w.get(1) == Some(&"lost"))?;
        Some(TextSummary { events, lost })
    }

    /// Largest RSS sampled between `from` and `until` (while the workload ran).
    pub(super) fn peak_rss_between(&self, from: Duration, until: Duration) -> u64 {
        self.samples.iter().filter(|s| s.at >= from && s.at <= until).map(|s| s.rss_kib).max().unwrap_or(0)
    }

    /// The first sample at or after `at`.
    pub(super) fn sample_at(&self, at: Duration) -> Option<Sample> {
        self.samples.iter().find(|s| s.at >= at).copied()
    }

    /// The last sample at or before `at`.
    pub(super) fn sample_before(&self, at: Duration) -> Option<Sample> {
        self.samples.iter().rev().find(|s| s.at <= at).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_attached_line() {
        assert_eq!(parse_attached("crashtrace: attached in 152484879 ns"), Some(152484879));
        assert_eq!(parse_attached("crashtrace: attached in x ns"), None);
        assert_eq!(parse_attached("something else"), None);
    }

    #[test]
    fn reads_the_text_summary() {
        let f = Finished {
            stderr: vec![
                "crashtrace: attached in 1 ns".into(),
                "summary: 80005 events, 20004 crash chains, 7 events lost in the kernel, 0 undecodable".into(),
            ],
            cpu: Duration::ZERO,
            samples: vec![],
            hwm_kib: 0,
        };
        let s = f.text_summary().unwrap();
        assert_eq!((s.events, s.lost), (80005, 7));
    }
}

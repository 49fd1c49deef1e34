//! The workload program (xtask/workloads/storm.c): built with `cc` at bench
//! time, run for a fixed amount of work, its own timing read back.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};

pub(crate) struct Storm {
    pub path: PathBuf,
}

/// How the busy workload's ping-pong takes SIGUSR1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Take {
    /// Caught by a handler (sigsuspend unblocks it for the wait).
    Handler,
    /// Blocked, left at its default action, dequeued with sigwait(2).
    Sigwait,
    /// Blocked, left at its default action, read from a signalfd(2).
    Signalfd,
}

impl Take {
    pub(crate) const ALL: [Take; 3] = [Take::Handler, Take::Sigwait, Take::Signalfd];

    /// The workload's argument.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            Take::Handler => "handler",
            Take::Sigwait => "sigwait",
            Take::Signalfd => "signalfd",
        }
    }
}

/// What `storm busy` took.
pub(crate) struct Busy {
    pub elapsed: Duration,
    pub cpu: Duration,
    /// The two ping-pong processes: they take every SIGUSR1 and must never
    /// get a crash chain.
    pub pingpong: [u32; 2],
}

/// What `storm spawn` is asked to do.
#[derive(Clone, Debug)]
pub(crate) struct Spawn {
    pub count: u64,
    pub jobs: u32,
    /// Every n-th child crashes; 1 for all.
    pub crash_every: u64,
    /// "0", a byte count, or "inf".
    pub rlimit_core: &'static str,
    /// Children per second in all; `None` for as fast as possible.
    pub rate: Option<u64>,
}

/// What `storm spawn` did.
pub(crate) struct Spawned {
    pub elapsed: Duration,
    pub children: u64,
    /// Children killed by SIGSEGV.
    pub segv: u64,
    /// Children that neither crashed by SIGSEGV nor exited 0.
    pub other: u64,
    /// Pids of the children made to crash, once per crash (pids are reused
    /// when a run makes more processes than pid_max).
    pub crash_pids: Vec<u32>,
}

impl Spawned {
    pub(crate) fn crashes_per_sec(&self) -> f64 {
        self.segv as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn procs_per_sec(&self) -> f64 {
        self.children as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `key=value` words of the last line that has them all.
fn fields(stdout: &str, keys: &[&str]) -> Option<Vec<u64>> {
    stdout.lines().rev().find_map(|line| {
        keys.iter()
            .map(|k| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .collect::<Option<Vec<u64>>>()
    })
}

impl Storm {
    /// Compiles the workload into `dir`.
    pub(crate) fn build(source: &Path, dir: &Path) -> Result<Storm> {
        Storm::build_as(source, dir, "storm", &[])
    }

    /// Compiles the workload into `dir/name` with `flags` added to cc's.
    pub(crate) fn build_as(source: &Path, dir: &Path, name: &str, flags: &[&str]) -> Result<Storm> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name);
        let out = Command::new("cc")
            .args(["-O2", "-Wall", "-Wextra"])
            .args(flags)
            .arg("-o")
            .arg(&path)
            .arg(source)
            .output()
            .context("running cc (install gcc or clang to build the benchmark workload)")?;
        if !out.status.success() {
            bail!("cc failed to build {}:\n{}", source.display(), String::from_utf8_lossy(&out.stderr));
        }
        Ok(Storm { path })
    }

    fn run(&self, args: &[String]) -> Result<String> {
        let out =
            Command::new(&self.path).args(args).output().with_context(|| format!("running {}", self.path.display()))?;
        if !out.status.success() {
            bail!(
                "`{} {}` failed ({}): {}",
                self.path.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(crate) fn busy_args(&self, forks: u64, rounds: u64, take: Take) -> Vec<String> {
        vec!["busy".into(), forks.to_string(), rounds.to_string(), take.arg().into()]
    }

    /// The fork/exit + SIGUSR1 ping-pong storm: its own elapsed time, the
    /// CPU (user + system) its processes used, and the ping-pong's pids.
    pub(crate) fn busy(&self, forks: u64, rounds: u64, take: Take) -> Result<Busy> {
        let out = self.run(&self.busy_args(forks, rounds, take))?;
        let f = fields(&out, &["elapsed_ns", "cpu_ns"])
            .with_context(|| format!("storm busy printed no elapsed_ns/cpu_ns: {out:?}"))?;
        let p = fields(&out, &["pingpong_parent", "pingpong_child"])
            .with_context(|| format!("storm busy printed no ping-pong pids: {out:?}"))?;
        Ok(Busy {
            elapsed: Duration::from_nanos(f[0]),
            cpu: Duration::from_nanos(f[1]),
            pingpong: [p[0] as u32, p[1] as u32],
        })
    }

    pub(crate) fn spawn_args(&self, s: &Spawn, pidfile: &Path) -> Vec<String> {
        let mut args = vec![
            "spawn".into(),
            s.count.to_string(),
            s.jobs.to_string(),
            s.crash_every.to_string(),
            s.rlimit_core.into(),
            pidfile.display().to_string(),
        ];
        if let Some(rate) = s.rate {
            args.push(rate.to_string());
        }
        args
    }

    /// `count` children over `jobs` spawners, every `crash_every`-th crashing.
    pub(crate) fn spawn(&self, s: &Spawn, pidfile: &Path) -> Result<Spawned> {
        let out = self.run(&self.spawn_args(s, pidfile))?;
        let f = fields(&out, &["elapsed_ns", "children", "segv", "other"])
            .with_context(|| format!("storm spawn printed no counts: {out:?}"))?;
        let pids = std::fs::read_to_string(pidfile).with_context(|| format!("reading {}", pidfile.display()))?;
        let crash_pids: Vec<u32> = pids.lines().filter_map(|l| l.trim().parse().ok()).collect();
        Ok(Spawned { elapsed: Duration::from_nanos(f[0]), children: f[1], segv: f[2], other: f[3], crash_pids })
    }

    /// The command name (comm) its processes have: the file name, cut to 15
    /// bytes as the kernel does.
    pub(crate) fn comm(&self) -> String {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.chars().take(15).collect()
    }

    /// The core_pattern that pipes cores to `storm sink`, which reads them to
    /// the end and exits 0. `%P` names the crash, as real collectors do.
    pub(crate) fn sink_pattern(&self) -> String {
        format!("|{} sink %P", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn reads_key_values() {
        let out = "worker segv=1\nelapsed_ns=100 children=5 segv=5 other=0\n";
        assert_eq!(fields(out, &["elapsed_ns", "segv"]), Some(vec![100, 5]));
        assert_eq!(fields(out, &["missing"]), None);
        assert_eq!(fields("elapsed_ns=x", &["elapsed_ns"]), None);
    }
}

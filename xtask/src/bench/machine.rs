//! Facts about the machine the figures were measured on, and about what else
//! was running: other tracers attached at the same time skew every figure.

use std::process::Command;

use super::table::Table;

pub(super) struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory: String,
    pub load_at_start: String,
    pub perf_counters: String,
    pub callgrind: String,
}

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
}

impl Machine {
    pub(super) fn probe() -> Machine {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let perf = Command::new("perf").args(["stat", "-e", "instructions", "true"]).output();
        let perf_counters = match perf {
            Err(_) => "perf is not installed".to_string(),
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stderr);
                if text.contains("<not supported>") || !o.status.success() {
                    "no hardware counters (`perf stat -e instructions` says not supported)".to_string()
                } else {
                    "hardware counters available".to_string()
                }
            }
        };
        let callgrind = match Command::new("valgrind").arg("--version").output() {
            Ok(o) if o.status.success() => format!("{} (callgrind, massif)", String::from_utf8_lossy(&o.stdout).trim()),
            _ => "valgrind is not installed".to_string(),
        };
        Machine {
            cores,
            cpu_model: first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            memory: first_line_with("/proc/meminfo", "MemTotal").unwrap_or_default(),
            load_at_start: load_average(),
            perf_counters,
            callgrind,
        }
    }

    pub(super) fn table(&self) -> Table {
        let mut t = Table::new(&["", ""]);
        for (k, v) in [
            ("cores", self.cores.to_string()),
            ("CPU", self.cpu_model.clone()),
            ("kernel", self.kernel.clone()),
            ("memory", self.memory.clone()),
            ("load average at start (1, 5, 15 min)", self.load_at_start.clone()),
            ("perf", self.perf_counters.clone()),
            ("valgrind", self.callgrind.clone()),
        ] {
            t.row(vec![k.into(), v]);
        }
        t
    }
}

pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Pids of crashtrace processes other than `except`: tracers someone else
/// runs on this machine during the benchmark.
pub(super) fn other_tracers(except: &[u32]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| !except.contains(pid))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() == "crashtrace").unwrap_or(false)
        })
        .collect()
}

//! The kernel's core-dump settings: `core_pattern` parsed into a mode, plus
//! `core_pipe_limit`. Parsing is pure; [`CoreSettings::read`] is the one
//! place that touches /proc.
//! https://elixir.bootlin.com/linux/v6.18/source/fs/coredump.c (format_corename)

use serde::{Deserialize, Serialize};

pub const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";
pub const CORE_PIPE_LIMIT: &str = "/proc/sys/kernel/core_pipe_limit";
pub const CORE_USES_PID: &str = "/proc/sys/kernel/core_uses_pid";

/// The socket systemd's PID 1 serves for systemd-coredump.
pub const SYSTEMD_COREDUMP_SOCKET: &str = "/run/systemd/coredump";

/// Where cores go, by the first character of core_pattern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum DumpMode {
    /// A file path (relative ones are relative to the crasher's cwd).
    File { path: String },
    /// `|helper args...`: piped to a usermode helper.
    Pipe { helper: String, args: Vec<String> },
    /// `@/path` (6.16+) or `@@/path` (6.17+, with a request/ack protocol).
    Socket { path: String, ack: bool },
    /// An empty pattern: the kernel writes nothing.
    Empty,
}

pub fn parse_core_pattern(pattern: &str) -> DumpMode {
    let pattern = pattern.trim_end_matches('\n');
    if let Some(rest) = pattern.strip_prefix('|') {
        let mut words = rest.split_whitespace();
        let helper = words.next().unwrap_or("").to_string();
        DumpMode::Pipe { helper, args: words.map(str::to_string).collect() }
    } else if let Some(rest) = pattern.strip_prefix("@@") {
        DumpMode::Socket { path: rest.trim().to_string(), ack: true }
    } else if let Some(rest) = pattern.strip_prefix('@') {
        DumpMode::Socket { path: rest.trim().to_string(), ack: false }
    } else if pattern.trim().is_empty() {
        DumpMode::Empty
    } else {
        DumpMode::File { path: pattern.to_string() }
    }
}

/// Helpers that exist only to throw the core away.
pub fn is_discarding_helper(helper: &str) -> bool {
    matches!(helper, "/bin/false" | "/usr/bin/false" | "/bin/true" | "/usr/bin/true")
}

/// File targets that throw the core away.
pub fn is_discarding_file(path: &str) -> bool {
    path == "/dev/null"
}

/// The settings in force, as recorded in the event stream whenever they change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreSettings {
    pub core_pattern: String,
    pub core_pipe_limit: u32,
    pub core_uses_pid: bool,
    /// For a pipe pattern: whether the helper exists and is executable.
    pub helper_executable: Option<bool>,
    /// Who last wrote core_pattern, when crashtrace saw it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub set_by: Option<String>,
}

impl CoreSettings {
    pub fn mode(&self) -> DumpMode {
        parse_core_pattern(&self.core_pattern)
    }

    /// The settings after a write the sysctl hook saw, or None when the
    /// write is not one of these settings or its value does not parse (then
    /// read /proc instead). `executable` answers for a pipe's helper path.
    pub fn after_write(&self, name: &str, value: &str, executable: impl Fn(&str) -> bool) -> Option<CoreSettings> {
        let mut next = self.clone();
        match name {
            "kernel/core_pattern" => {
                next.core_pattern = value.trim_end_matches('\n').to_string();
                next.helper_executable = match parse_core_pattern(&next.core_pattern) {
                    DumpMode::Pipe { helper, .. } => Some(executable(&helper)),
                    _ => None,
                };
            }
            "kernel/core_pipe_limit" => next.core_pipe_limit = value.trim().parse().ok()?,
            "kernel/core_uses_pid" => next.core_uses_pid = value.trim().parse::<u32>().ok()? != 0,
            _ => return None,
        }
        Some(next)
    }

    /// Reads the live settings from /proc.
    pub fn read() -> std::io::Result<CoreSettings> {
        let core_pattern = std::fs::read_to_string(CORE_PATTERN)?.trim_end_matches('\n').to_string();
        let core_pipe_limit = read_number(CORE_PIPE_LIMIT).unwrap_or(0);
        let core_uses_pid = read_number(CORE_USES_PID).unwrap_or(0) != 0;
        let helper_executable = match parse_core_pattern(&core_pattern) {
            DumpMode::Pipe { helper, .. } => Some(is_executable(&helper)),
            _ => None,
        };
        Ok(CoreSettings { core_pattern, core_pipe_limit, core_uses_pid, helper_executable, set_by: None })
    }
}

fn read_number(path: &str) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn is_executable(path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_systemd_pipe() {
        let p = "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h %d";
        match parse_core_pattern(p) {
            DumpMode::Pipe { helper, args } => {
                assert_eq!(helper, "/lib/systemd/systemd-coredump");
                assert_eq!(args.len(), 8);
                assert_eq!(args[0], "%P");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_file_socket_empty() {
        assert_eq!(parse_core_pattern("core\n"), DumpMode::File { path: "core".into() });
        assert_eq!(parse_core_pattern("/tmp/core.%p"), DumpMode::File { path: "/tmp/core.%p".into() });
        assert_eq!(parse_core_pattern("@/run/cd.sock"), DumpMode::Socket { path: "/run/cd.sock".into(), ack: false });
        assert_eq!(parse_core_pattern("@@/run/cd.sock"), DumpMode::Socket { path: "/run/cd.sock".into(), ack: true });
        assert_eq!(parse_core_pattern(""), DumpMode::Empty);
        assert_eq!(parse_core_pattern("|"), DumpMode::Pipe { helper: "".into(), args: vec![] });
    }

    #[test]
    fn a_seen_write_updates_the_settings() {
        let base = CoreSettings {
            core_pattern: "core".into(),
            core_pipe_limit: 0,
            core_uses_pid: false,
            helper_executable: None,
            set_by: None,
        };
        let piped = base.after_write("kernel/core_pattern", "|/bin/false", |h| h == "/bin/false").unwrap();
        assert_eq!(piped.core_pattern, "|/bin/false");
        assert_eq!(piped.helper_executable, Some(true));
        let limited = piped.after_write("kernel/core_pipe_limit", "16\n", |_| false).unwrap();
        assert_eq!(limited.core_pipe_limit, 16);
        assert_eq!(limited.helper_executable, Some(true));
        assert_eq!(base.after_write("kernel/core_pipe_limit", "-1", |_| true), None);
        assert_eq!(base.after_write("fs/suid_dumpable", "2", |_| true), None);
    }

    #[test]
    fn discarding_targets() {
        assert!(is_discarding_helper("/bin/false"));
        assert!(!is_discarding_helper("/lib/systemd/systemd-coredump"));
        assert!(is_discarding_file("/dev/null"));
    }
}

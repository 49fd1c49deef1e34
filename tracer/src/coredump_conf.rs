//! systemd-coredump's configuration: `coredump.conf` and its drop-ins,
//! parsed the way systemd reads them (coredump.conf(5)): the main file, then
//! every `*.conf` of `coredump.conf.d` in /etc, /run and /usr/lib (a name in
//! an earlier directory masks the same name in a later one), applied in
//! lexical order of file name, later settings overriding earlier ones.
//! Parsing is pure; [`CoredumpConf::read`] is the one function that reads
//! the files. Used by the live tracer (why a core was not kept) and doctor.

use std::path::{Path, PathBuf};

/// Directories of drop-ins, highest priority first.
pub const DROP_IN_DIRS: [&str; 3] = ["/etc/systemd/coredump.conf.d", "/run/systemd/coredump.conf.d", "/usr/lib/systemd/coredump.conf.d"];
pub const MAIN_FILE: &str = "/etc/systemd/coredump.conf";
/// Drop-ins read at most per directory: a directory full of junk must not
/// make a lookup slow.
const MAX_DROP_INS: usize = 256;
/// Bytes read of one file at most.
const MAX_FILE: u64 = 64 * 1024;

/// A setting and the file that set it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub file: String,
}

/// The settings that decide whether a core is kept; `None`: the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CoredumpConf {
    /// `external`, `journal` or `none` (default `external`).
    pub storage: Option<Setting<String>>,
    pub process_size_max: Option<Setting<u64>>,
    pub external_size_max: Option<Setting<u64>>,
    pub journal_size_max: Option<Setting<u64>>,
    pub max_use: Option<Setting<u64>>,
    pub keep_free: Option<Setting<u64>>,
    /// Lines that did not parse, as "file: line".
    pub bad_lines: Vec<String>,
}

/// A size as systemd writes it: bytes with an optional 1024-based suffix
/// (K, M, G, T, P, E; `infinity` is none).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("infinity") {
        return Some(u64::MAX);
    }
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        "P" | "PB" | "PIB" => 1 << 50,
        "E" | "EB" | "EIB" => 1 << 60,
        _ => return None,
    };
    let value: f64 = num.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    Some((value * mult as f64).min(u64::MAX as f64) as u64)
}

impl CoredumpConf {
    /// Applies one file's text (later calls override earlier ones).
    pub fn apply(&mut self, file: &str, text: &str) {
        let mut in_section = false;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                in_section = line == "[Coredump]";
                continue;
            }
            if !in_section {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                self.bad_lines.push(format!("{file}: {line}"));
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let set = Setting { value: (), file: file.to_string() };
            let size = || parse_size(value).map(|v| Setting { value: v, file: set.file.clone() });
            let ok = match key {
                "Storage" => {
                    let v = value.to_ascii_lowercase();
                    let known = matches!(v.as_str(), "none" | "external" | "journal");
                    if known {
                        self.storage = Some(Setting { value: v, file: file.to_string() });
                    }
                    known
                }
                "ProcessSizeMax" => size().map(|s| self.process_size_max = Some(s)).is_some(),
                "ExternalSizeMax" => size().map(|s| self.external_size_max = Some(s)).is_some(),
                "JournalSizeMax" => size().map(|s| self.journal_size_max = Some(s)).is_some(),
                "MaxUse" => size().map(|s| self.max_use = Some(s)).is_some(),
                "KeepFree" => size().map(|s| self.keep_free = Some(s)).is_some(),
                // Compress=, Backtrace... do not decide whether a core is kept.
                _ => true,
            };
            if !ok {
                self.bad_lines.push(format!("{file}: {line}"));
            }
        }
    }

    /// The files systemd would read, in the order it applies them, from
    /// directory listings: the main file, then drop-ins by file name.
    pub fn files_in_order(main: &Path, drop_ins: &[(PathBuf, Vec<String>)]) -> Vec<PathBuf> {
        let mut by_name: std::collections::BTreeMap<String, PathBuf> = std::collections::BTreeMap::new();
        for (dir, names) in drop_ins {
            for n in names {
                if n.ends_with(".conf") {
                    by_name.entry(n.clone()).or_insert_with(|| dir.join(n));
                }
            }
        }
        std::iter::once(main.to_path_buf()).chain(by_name.into_values()).collect()
    }

    /// Reads the host's configuration. Missing files are the defaults.
    pub fn read() -> CoredumpConf {
        Self::read_from(Path::new(MAIN_FILE), &DROP_IN_DIRS.map(PathBuf::from))
    }

    pub fn read_from(main: &Path, dirs: &[PathBuf]) -> CoredumpConf {
        let listings: Vec<(PathBuf, Vec<String>)> = dirs
            .iter()
            .map(|d| {
                let names = std::fs::read_dir(d)
                    .map(|rd| rd.flatten().take(MAX_DROP_INS).filter_map(|e| e.file_name().to_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                (d.clone(), names)
            })
            .collect();
        let mut conf = CoredumpConf::default();
        for f in Self::files_in_order(main, &listings) {
            if let Ok(text) = read_capped(&f) {
                conf.apply(&f.display().to_string(), &text);
            }
        }
        conf
    }

    /// Why, by these settings alone, systemd-coredump keeps nothing of a core
    /// of `size` bytes (None: unknown size). `used` is what its store holds.
    pub fn keeps_nothing(&self, size: Option<u64>) -> Option<String> {
        if let Some(s) = &self.storage
            && s.value == "none"
        {
            return Some(format!("Storage=none ({})", s.file));
        }
        if let Some(p) = &self.process_size_max
            && p.value == 0
        {
            return Some(format!("ProcessSizeMax=0 ({})", p.file));
        }
        let (limit, name) = match self.storage.as_ref().map(|s| s.value.as_str()) {
            Some("journal") => (&self.journal_size_max, "JournalSizeMax"),
            _ => (&self.external_size_max, "ExternalSizeMax"),
        };
        match (limit, size) {
            (Some(l), _) if l.value == 0 => Some(format!("{name}=0 ({})", l.file)),
            (Some(l), Some(n)) if n > l.value => Some(format!("{name}={} ({}), below the core's {n} bytes", l.value, l.file)),
            _ => None,
        }
    }

    /// The limits that can keep a core from being stored, for a message.
    pub fn limits(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = &self.storage {
            out.push(format!("Storage={} ({})", s.value, s.file));
        }
        for (name, s) in [
            ("ProcessSizeMax", &self.process_size_max),
            ("ExternalSizeMax", &self.external_size_max),
            ("JournalSizeMax", &self.journal_size_max),
            ("MaxUse", &self.max_use),
            ("KeepFree", &self.keep_free),
        ] {
            if let Some(s) = s {
                out.push(format!("{name}={} ({})", s.value, s.file));
            }
        }
        out
    }
}

fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(MAX_FILE).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("32M "), Some(32 << 20));
        assert_eq!(parse_size("infinity"), Some(u64::MAX));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("4X"), None);
    }

    #[test]
    fn later_files_override_and_only_the_section_counts() {
        let mut c = CoredumpConf::default();
        c.apply("/etc/systemd/coredump.conf", "[Coredump]\n#Storage=none\nStorage=external\nExternalSizeMax=1G\n[Other]\nStorage=none\n");
        assert_eq!(c.storage.as_ref().map(|s| s.value.as_str()), Some("external"));
        c.apply("/run/systemd/coredump.conf.d/x.conf", "[Coredump]\nStorage=None\nMaxUse=bogus\nCompress=no\n");
        assert_eq!(c.storage, Some(Setting { value: "none".into(), file: "/run/systemd/coredump.conf.d/x.conf".into() }));
        assert_eq!(c.external_size_max.as_ref().map(|s| s.value), Some(1 << 30));
        assert_eq!(c.bad_lines, vec!["/run/systemd/coredump.conf.d/x.conf: MaxUse=bogus".to_string()]);
        assert_eq!(c.keeps_nothing(Some(10)), Some("Storage=none (/run/systemd/coredump.conf.d/x.conf)".into()));
    }

    #[test]
    fn size_limits_keep_nothing() {
        let mut c = CoredumpConf::default();
        assert_eq!(c.keeps_nothing(Some(1 << 40)), None);
        c.apply("a", "[Coredump]\nExternalSizeMax=4096\n");
        assert_eq!(c.keeps_nothing(Some(4096)), None);
        assert_eq!(c.keeps_nothing(Some(21347)).as_deref(), Some("ExternalSizeMax=4096 (a), below the core's 21347 bytes"));
        assert_eq!(c.keeps_nothing(None), None);
        // Storage=journal is limited by JournalSizeMax instead.
        c.apply("b", "[Coredump]\nStorage=journal\nJournalSizeMax=0\n");
        assert_eq!(c.keeps_nothing(None).as_deref(), Some("JournalSizeMax=0 (b)"));
        c.apply("c", "[Coredump]\nProcessSizeMax=0\n");
        assert_eq!(c.keeps_nothing(None).as_deref(), Some("ProcessSizeMax=0 (c)"));
        assert_eq!(c.limits().len(), 4);
    }

    #[test]
    fn drop_in_order_and_masking() {
        let files = CoredumpConf::files_in_order(
            Path::new("/etc/systemd/coredump.conf"),
            &[
                (PathBuf::from("/etc/d"), vec!["50-b.conf".into(), "README".into()]),
                (PathBuf::from("/run/d"), vec!["50-b.conf".into(), "10-a.conf".into()]),
            ],
        );
        assert_eq!(
            files,
            vec![PathBuf::from("/etc/systemd/coredump.conf"), PathBuf::from("/run/d/10-a.conf"), PathBuf::from("/etc/d/50-b.conf")]
        );
    }

    #[test]
    fn reads_files_from_disk() {
        let dir = std::env::temp_dir().join(format!("crashtrace-cdconf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("main.conf"), "[Coredump]\nStorage=external\n").unwrap();
        std::fs::write(dir.join("d/90.conf"), "[Coredump]\nStorage=none\n").unwrap();
        let c = CoredumpConf::read_from(&dir.join("main.conf"), &[dir.join("d"), dir.join("missing")]);
        assert_eq!(c.storage.map(|s| s.value), Some("none".to_string()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

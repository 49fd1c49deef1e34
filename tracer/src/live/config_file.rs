//! The configuration file, `/etc/crashtrace/crashtrace.toml` (or
//! `--config PATH`): one layer under the flags. Its keys are the live flags'
//! names with `_` for `-`, and take the same values; a flag given on the
//! command line wins over the file.
//!
//! A file that cannot be used is one line naming `file:line` and the key, and
//! the tracer does not start (exit 2): a service that silently ignored a typo
//! in its configuration would trace with settings nobody chose.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::Deserialize;
use toml::Spanned;

use crate::{
    cli::{self, ColorChoice, CoredumpHook, LiveArgs},
    log::SyncPolicy,
};

/// Where the service's configuration is read from without `--config`.
pub const DEFAULT_PATH: &str = "/etc/crashtrace/crashtrace.toml";

/// Keys a running tracer applies when it re-reads the file (SIGHUP): the
/// outputs. The others shape what is loaded into the kernel, or the scope,
/// and take a restart.
pub const RELOADABLE_KEYS: &[&str] = &["json", "color", "verdicts_only", "log", "log_sync", "log_max_size", "log_keep", "log_full", "metrics_listen", "metrics_textfile", "metrics_interval", "journal"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("config {path}: cannot read it: {source}; check the path given to --config")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {what}; fix or comment out that line (the shipped {DEFAULT_PATH} documents every key)")]
    Bad { path: PathBuf, line: usize, what: String },
}

/// The file's keys, each with where in the file it was given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pid: Option<Spanned<u32>>,
    cgroup: Option<Spanned<String>>,
    json: Option<Spanned<bool>>,
    log: Option<Spanned<PathBuf>>,
    log_sync: Option<Spanned<String>>,
    /// Bytes as an integer, or a string with a K, M or G suffix.
    log_max_size: Option<Spanned<toml::Value>>,
    log_keep: Option<Spanned<u32>>,
    color: Option<Spanned<String>>,
    coredump_hook: Option<Spanned<String>>,
    ring_buffer_size: Option<Spanned<u32>>,
    stack_copy: Option<Spanned<u32>>,
    kernel_stack: Option<Spanned<bool>>,
    verdicts_only: Option<Spanned<bool>>,
    duration: Option<Spanned<u64>>,
    fail_on_drop: Option<Spanned<bool>>,
    bpf_object: Option<Spanned<PathBuf>>,
    log_full: Option<Spanned<String>>,
    heartbeat: Option<Spanned<u64>>,
    metrics_listen: Option<Spanned<String>>,
    metrics_textfile: Option<Spanned<PathBuf>>,
    metrics_interval: Option<Spanned<u64>>,
    container: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    journal: Option<Spanned<bool>>,
}

/// A file read and parsed, with what is needed to point at its lines.
#[derive(Debug, Default)]
pub struct Loaded {
    /// None when the default file is absent.
    pub path: Option<PathBuf>,
    text: String,
    keys: FileConfig,
}

/// Reads `explicit`, or else the default file if it exists.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigFileError> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_PATH));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // No configuration is a configuration: every flag's default.
        Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(source) => return Err(ConfigFileError::Read { path: path.into(), source }),
    };
    parse(path, text)
}

/// Parses the text of the file at `path`.
pub fn parse(path: &Path, text: String) -> Result<Loaded, ConfigFileError> {
    let keys: FileConfig = toml::from_str(&text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let message = e.message().trim().replace('\n', "; ");
        let what = match key_at(&text, offset) {
            // The unknown-key message names the key already.
            Some(key) if !message.contains(&format!("`{key}`")) => format!("key {key:?}: {message}"),
            _ => message,
        };
        ConfigFileError::Bad { path: path.into(), line: line_of(&text, offset), what }
    })?;
    Ok(Loaded { path: Some(path.into()), text, keys })
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// The key of the `key = value` line holding `offset`, if it is one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text[offset..].find('\n').map(|i| offset + i).unwrap_or(text.len());
    let (key, _) = text.get(start..end)?.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')).then(|| key.to_string())
}

impl Loaded {
    fn bad<T>(&self, key: &str, at: &Spanned<T>, why: String) -> ConfigFileError {
        ConfigFileError::Bad {
            path: self.path.clone().unwrap_or_default(),
            line: line_of(&self.text, at.span().start),
            what: format!("key {key:?}: {why}"),
        }
    }

    /// Lays the file under the flags: every key whose flag `given` says was
    /// not on the command line takes the file's value.
    pub fn apply(&self, args: &mut LiveArgs, given: &dyn Fn(&str) -> bool) -> Result<(), ConfigFileError> {
        let k = &self.keys;
        let take = |key: &str| !given(key);
        if let Some(v) = &k.pid
            && take("pid")
        {
            args.pid = Some(*v.get_ref());
        }
        if let Some(v) = &k.cgroup
            && take("cgroup")
        {
            args.cgroup = Some(v.get_ref().clone());
        }
        if let Some(v) = &k.json
            && take("json")
        {
            args.json = *v.get_ref();
        }
        if let Some(v) = &k.log
            && take("log")
        {
            args.log = Some(v.get_ref().clone());
        }
        if let Some(v) = &k.log_sync
            && take("log_sync")
        {
            args.log_sync = value_enum::<SyncPolicy>(v.get_ref()).map_err(|e| self.bad("log_sync", v, e))?;
        }
        if let Some(v) = &k.log_max_size
            && take("log_max_size")
        {
            let size = match v.get_ref() {
                toml::Value::Integer(n) => crate::log::parse_size(&n.to_string()),
                toml::Value::String(s) => crate::log::parse_size(s),
                other => Err(format!("{} is not a size; give bytes (1048576) or a string with K, M or G (\"10M\")", other.type_str())),
            };
            args.log_max_size = Some(size.map_err(|e| self.bad("log_max_size", v, e))?);
        }
        if let Some(v) = &k.log_keep
            && take("log_keep")
        {
            args.log_keep = *v.get_ref();
        }
        if let Some(v) = &k.color
            && take("color")
        {
            args.color = value_enum::<ColorChoice>(v.get_ref()).map_err(|e| self.bad("color", v, e))?;
        }
        if let Some(v) = &k.coredump_hook
            && take("coredump_hook")
        {
            args.coredump_hook = value_enum::<CoredumpHook>(v.get_ref()).map_err(|e| self.bad("coredump_hook", v, e))?;
        }
        if let Some(v) = &k.ring_buffer_size
            && take("ring_buffer_size")
        {
            args.ring_buffer_size =
                Some(cli::parse_ring_size(&v.get_ref().to_string()).map_err(|e| self.bad("ring_buffer_size", v, e))?);
        }
        if let Some(v) = &k.stack_copy
            && take("stack_copy")
        {
            args.stack_copy = cli::parse_stack_copy(&v.get_ref().to_string()).map_err(|e| self.bad("stack_copy", v, e))?;
        }
        if let Some(v) = &k.kernel_stack
            && take("kernel_stack")
        {
            args.kernel_stack = *v.get_ref();
        }
        if let Some(v) = &k.verdicts_only
            && take("verdicts_only")
        {
            args.verdicts_only = *v.get_ref();
        }
        if let Some(v) = &k.duration
            && take("duration")
        {
            args.duration = Some(*v.get_ref());
        }
        if let Some(v) = &k.fail_on_drop
            && take("fail_on_drop")
        {
            args.fail_on_drop = *v.get_ref();
        }
        if let Some(v) = &k.log_full
            && take("log_full")
        {
            args.log_full = value_enum::<crate::log::FullPolicy>(v.get_ref()).map_err(|e| self.bad("log_full", v, e))?;
        }
        if let Some(v) = &k.heartbeat
            && take("heartbeat")
        {
            args.heartbeat = *v.get_ref();
        }
        if let Some(v) = &k.metrics_listen
            && take("metrics_listen")
        {
            let addr = v.get_ref().parse().map_err(|e| self.bad("metrics_listen", v, format!("{e}; give an address and port such as \"127.0.0.1:9477\"")))?;
            args.metrics_listen = Some(addr);
        }
        if let Some(v) = &k.metrics_textfile
            && take("metrics_textfile")
        {
            args.metrics_textfile = Some(v.get_ref().clone());
        }
        if let Some(v) = &k.metrics_interval
            && take("metrics_interval")
        {
            args.metrics_interval = *v.get_ref();
        }
        if let Some(v) = &k.container
            && take("container")
        {
            args.container = Some(v.get_ref().clone());
        }
        if let Some(v) = &k.unit
            && take("unit")
        {
            args.unit = Some(v.get_ref().clone());
        }
        if let Some(v) = &k.journal
            && take("journal")
        {
            args.journal = *v.get_ref();
        }
        if let Some(v) = &k.bpf_object
            && take("bpf_object")
        {
            args.bpf_object = Some(v.get_ref().clone());
        }
        // --log-max-size requires --log on the command line; the file
        // keeps the same rule.
        if let (Some(v), None) = (&k.log_max_size, &args.log) {
            return Err(self.bad("log_max_size", v, "needs a log; set `log` too".into()));
        }
        Ok(())
    }
}

/// One of a flag's values, as clap would take it.
fn value_enum<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> =
            T::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|p| p.get_name().to_string()).collect();
        format!("{s:?} is not one of: {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests;

//! `crashtrace doctor`'s parsers of /proc and /sys text and of core_pattern
//! on arbitrary bytes: a host can hold anything there (a container runtime's
//! fake /proc, a kernel newer than this code). They must never panic.
#![no_main]

use crashtrace::{
    core_pattern::{is_discarding_file, is_discarding_helper, parse_core_pattern},
    doctor::{diagnose::kernel_version, facts},
    procmaps::parse_maps,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Two texts for the parsers that take two (mounts and a cgroup file,
    // /proc/net/unix and a socket path): split at the first NUL.
    let (a, b) = text.split_once('\0').unwrap_or((&text, ""));
    let _ = facts::unix_listeners(a, b);
    let _ = facts::file_pattern_dir(a);
    let _ = facts::core_limit(a);
    let _ = facts::status_euid(a);
    let _ = facts::is_systemd_coredump(a);
    let _ = facts::cgroup_layout(a, b);
    let _ = kernel_version(a);
    let _ = parse_maps(a);
    let _ = parse_core_pattern(a);
    let _ = is_discarding_helper(a);
    let _ = is_discarding_file(a);
});

//! `crashtrace report` through real files: the input is written to a temp
//! directory as a rotated set (LOG.2, LOG.1, LOG, split on 0xFF bytes, which
//! a JSON log never holds) and read the way the command line reads it, so
//! the file opening, the rotated-set discovery and the per-file torn-line
//! rules are exercised, not just the line parser.
#![no_main]

use std::path::PathBuf;

use crashtrace::{
    log::rotated_path,
    report::{Options, Report},
};
use libfuzzer_sys::fuzz_target;

/// One directory per fuzz process, reused: creating one per input would
/// cost more than the read.
fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("crashtrace-fuzz-files-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("the temp directory is writable");
    d
}

fuzz_target!(|data: &[u8]| {
    let (mode, rest) = data.split_first().map(|(m, r)| (*m, r)).unwrap_or((0, data));
    let dir = dir();
    let log = dir.join("LOG");
    for n in 0..4 {
        let _ = std::fs::remove_file(rotated_path(&log, n + 1));
    }
    let _ = std::fs::remove_file(&log);
    // The parts, oldest first: the last part is LOG itself.
    let parts: Vec<&[u8]> = rest.split(|b| *b == 0xff).take(4).collect();
    let count = parts.len() as u32;
    for (i, part) in parts.iter().enumerate() {
        let n = count - 1 - i as u32;
        let path = if n == 0 { log.clone() } else { rotated_path(&log, n) };
        std::fs::write(path, part).expect("the temp directory is writable");
    }
    // No real stores (the default): a fuzz run must not depend on the
    // host's files.
    let opts = Options { json: mode & 1 != 0, strict: mode & 2 != 0, ..Options::default() };
    let mut report = Report::new(opts, std::io::sink(), std::io::sink());
    // The same set given twice, as a user might: it must be read once.
    let logs = if mode & 4 != 0 { vec![log.clone(), log.clone()] } else { vec![log.clone()] };
    let stopped = report.run_all(&logs).expect("writing to a sink cannot fail");
    if !stopped {
        let outcome = report.finish().expect("writing to a sink cannot fail");
        assert!(outcome.totals.files <= 4, "read {} files of a set of at most 4", outcome.totals.files);
    }
});

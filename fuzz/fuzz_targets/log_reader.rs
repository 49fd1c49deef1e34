//! `crashtrace report` on arbitrary bytes: the line reader, the record
//! parser, the replay through the correlator, reconciliation and both
//! output forms. It must never panic and never hang, whatever the log holds.
#![no_main]

use std::io::Cursor;

use crashtrace::report::{Options, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the output form and --strict; the rest is the log.
    let (mode, log) = data.split_first().map(|(m, rest)| (*m, rest)).unwrap_or((0, data));
    // No real stores (the default): a fuzz run must not depend on the
    // host's files.
    let opts = Options { json: mode & 1 != 0, strict: mode & 2 != 0, ..Options::default() };
    let mut report = Report::new(opts, std::io::sink(), std::io::sink());
    // Split in two "files" at a point the input chooses, to exercise runs
    // spanning files.
    let cut = if mode & 4 != 0 { log.len() / 2 } else { log.len() };
    let (a, b) = log.split_at(cut);
    let stopped = report.read("a.jsonl", Cursor::new(a)).expect("writing to a sink cannot fail");
    if !stopped {
        let stopped = report.read("b.jsonl", Cursor::new(b)).expect("writing to a sink cannot fail");
        if !stopped {
            report.finish().expect("writing to a sink cannot fail");
        }
    }
});

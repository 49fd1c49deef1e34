//! crashtrace's own messages on stderr. `eprintln!` panics when stderr
//! cannot be written (a reader gone, a full disk), which would turn a usage
//! error's exit 2 into a panic's 101, and a tracer whose log reader went
//! away into a dead tracer. A message that cannot be written is dropped: the
//! exit status still says what happened.

use std::io::Write as _;

/// Writes `args` and a newline to stderr, ignoring failure.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Writes `text` to stderr as it is, ignoring failure.
pub fn text(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

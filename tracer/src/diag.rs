//! crashtrace's own messages on stderr. `eprintln!` panics when stderr
//! cannot be written (a reader gone, a full disk), which would turn a usage
//! error's exit 2 into a panic's 101, and a tracer whose log reader went
//! away into a dead tracer. Under systemd stderr may also be a non-blocking
//! journal stream (see [`crate::sink::nonblocking_journal_stream`]). A
//! message that cannot be written is dropped and counted (the summary's
//! `output_dropped`); the exit status still says what happened.

/// Writes `args` and a newline to stderr; never panics or blocks.
pub fn line(args: std::fmt::Arguments<'_>) {
    crate::sink::warn(&args.to_string());
}

/// Writes `text` to stderr as it is; never panics or blocks.
pub fn text(text: &str) {
    crate::sink::write_stderr(text);
}

//! `--json`: every record as one JSON line on stdout.

use super::{Emitted, Sink, Stdout};

#[derive(Debug, Default)]
pub struct JsonLinesSink {
    stdout: Stdout,
}

impl Sink for JsonLinesSink {
    fn write(&mut self, out: &Emitted) {
        let mut line = String::with_capacity(out.json().len() + 1);
        line.push_str(out.json());
        line.push('\n');
        self.stdout.print(&line);
    }
}

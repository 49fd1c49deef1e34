//! What each benchmark hands back, and how it is printed: aligned text on the
//! terminal, Markdown in BENCHMARKS.md. Same rows in both.

use std::fmt::Write as _;

#[derive(Clone, Debug)]
pub(super) struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if i < w.len() {
                    w[i] = w[i].max(c.chars().count());
                }
            }
        }
        w
    }

    pub(super) fn text(&self) -> String {
        let w = self.widths();
        let line = |cells: &[String]| {
            let mut s = String::from("  ");
            for (i, width) in w.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                let _ = write!(s, "{c:<width$}  ");
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(&self.headers);
        out += &line(&w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>());
        for row in &self.rows {
            out += &line(row);
        }
        out
    }

    pub(super) fn markdown(&self) -> String {
        let esc = |c: &str| c.replace('|', "\\|");
        let mut out = format!("| {} |\n", self.headers.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | "));
        out += &format!("|{}\n", "---|".repeat(self.headers.len()));
        for row in &self.rows {
            let mut cells: Vec<String> = row.iter().map(|c| esc(c)).collect();
            cells.resize(self.headers.len(), String::new());
            out += &format!("| {} |\n", cells.join(" | "));
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Met,
    Missed,
    /// Could not be measured here; the check says why.
    NotMeasured,
}

impl Status {
    pub(super) fn word(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "MISSED",
            Status::NotMeasured => "not measured",
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub status: Status,
}

impl TargetCheck {
    pub(super) fn new(target: &str, measured: String, met: bool) -> TargetCheck {
        TargetCheck { target: target.into(), measured, status: if met { Status::Met } else { Status::Missed } }
    }

    pub(super) fn not_measured(target: &str, why: String) -> TargetCheck {
        TargetCheck { target: target.into(), measured: why, status: Status::NotMeasured }
    }
}

/// One benchmark's results.
#[derive(Clone, Debug, Default)]
pub(super) struct Section {
    pub title: String,
    /// How it was measured, in a sentence or three.
    pub method: String,
    /// The exact commands, in the order they run.
    pub commands: Vec<String>,
    pub tables: Vec<Table>,
    /// Measured facts that do not fit a table (warnings about noise included).
    pub notes: Vec<String>,
    pub targets: Vec<TargetCheck>,
    /// Set when the benchmark could not finish; its figures are then partial.
    pub error: Option<String>,
}

impl Section {
    pub(super) fn new(title: &str, method: &str) -> Section {
        Section { title: title.into(), method: method.into(), ..Default::default() }
    }

    pub(super) fn text(&self) -> String {
        let mut out = format!("\n== {} ==\n", self.title);
        for t in &self.tables {
            out += &t.text();
            out.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        for t in &self.targets {
            let _ = writeln!(out, "  target {}: {} ({})", t.target, t.status.word(), t.measured);
        }
        if let Some(e) = &self.error {
            let _ = writeln!(out, "  ERROR: {e}");
        }
        out
    }

    pub(super) fn markdown(&self) -> String {
        let mut out = format!("## {}\n\n{}\n\n", self.title, self.method);
        if !self.commands.is_empty() {
            out += "```sh\n";
            for c in &self.commands {
                out += c;
                out.push('\n');
            }
            out += "```\n\n";
        }
        for t in &self.tables {
            out += &t.markdown();
            out.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        if let Some(e) = &self.error {
            let _ = writeln!(out, "**This benchmark did not finish:** {e}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_markdown_carry_the_same_cells() {
        let mut t = Table::new(&["mode", "time"]);
        t.row(vec!["none".into(), "1.0 s".into()]);
        t.row(vec!["a|b".into(), "2.0 s".into()]);
        let text = t.text();
        assert!(text.contains("none  1.0 s"), "{text}");
        let md = t.markdown();
        assert!(md.starts_with("| mode | time |\n|---|---|\n"), "{md}");
        assert!(md.contains("| a\\|b | 2.0 s |"), "{md}");
    }
}

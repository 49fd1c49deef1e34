//! `crashtrace doctor`: checks the host, without tracing, for whatever would
//! drop or hide cores, and says for each finding its cause and a fix.
//!
//! Three parts: [`facts`] reads the host into [`HostFacts`] (the only part
//! that touches /proc, /sys and the filesystem), [`diagnose`] turns those
//! facts into [`Finding`]s (pure), and this module prints them as text or
//! as one JSON document (in the [`Document`] envelope `report` uses too).
//! The exit status is 0 when cores would be stored, and 1 when a finding
//! predicts that cores will be lost.

mod bpf_probe;
pub mod diagnose;
pub mod facts;

use std::{io::Write, process::ExitCode};

use serde::Serialize;

pub use self::{
    diagnose::{diagnose, predicts_loss, Finding, Severity},
    facts::HostFacts,
};
use crate::{cli::DoctorArgs, record::Document};

/// Exit status when a finding predicts that cores will be lost.
pub const EXIT_LOSS: u8 = 1;

/// The `--json` document's body, in a [`Document`] of type "doctor".
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// Whether a finding predicts that cores will be lost (exit status 1).
    pub loss: bool,
    pub conclusion: String,
    pub findings: &'a [Finding],
    pub facts: &'a HostFacts,
}

pub fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let facts = HostFacts::gather(args.pid)?;
    let findings = diagnose(&facts);
    let loss = predicts_loss(&findings);
    let conclusion = conclusion(&findings);
    let text = if args.json {
        let report = Report { loss, conclusion, findings: &findings, facts: &facts };
        let mut s = serde_json::to_string_pretty(&Document::new("doctor", &report))?;
        s.push('\n');
        s
    } else {
        render_text(&facts, &findings, &conclusion)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        // A closed pipe (`crashtrace doctor | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(anyhow::Error::new(e).context("writing the report to stdout")),
    }
    Ok(if loss { ExitCode::from(EXIT_LOSS) } else { ExitCode::SUCCESS })
}

/// One line: will cores be stored, and if not, which findings say so.
pub fn conclusion(findings: &[Finding]) -> String {
    let lost: Vec<&str> = findings.iter().filter(|f| f.severity == Severity::Loss).map(|f| f.id).collect();
    let warned = findings.iter().filter(|f| f.severity == Severity::Warn).count();
    if lost.is_empty() {
        format!(
            "cores would be stored: no finding predicts loss ({warned} warning{})",
            if warned == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "cores will be lost: {} finding{} predict{} loss ({})",
            lost.len(),
            if lost.len() == 1 { "" } else { "s" },
            if lost.len() == 1 { "s" } else { "" },
            lost.join(", ")
        )
    }
}

/// The text form: what was checked, one block per finding (severity, id,
/// cause, fix), and the conclusion.
pub fn render_text(facts: &HostFacts, findings: &[Finding], conclusion: &str) -> String {
    let mut s = String::new();
    let pid1 = facts.pid1.comm.as_deref().unwrap_or("?");
    s.push_str(&format!(
        "crashtrace doctor: kernel {}, core_pattern {:?}, core_pipe_limit {}, suid_dumpable {}, PID 1 {pid1}\n",
        facts.kernel_release,
        facts.core_pattern,
        facts.core_pipe_limit.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
        facts.suid_dumpable.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
    ));
    for f in findings {
        s.push('\n');
        let label = match f.severity {
            Severity::Loss => "LOSS",
            Severity::Warn => "WARN",
            Severity::Info => "INFO",
        };
        s.push_str(&format!("{label}  {}", f.id));
        if let Some(pid) = f.pid {
            s.push_str(&format!("  (pid {pid})"));
        }
        s.push('\n');
        s.push_str(&format!("  cause    {}\n", f.cause));
        if let Some(v) = f.verdict {
            s.push_str(&format!("  verdict  {v}\n"));
        }
        s.push_str(&format!("  fix      {}\n", f.fix));
    }
    s.push('\n');
    s.push_str(conclusion);
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Verdict;

    fn f(id: &'static str, severity: Severity) -> Finding {
        Finding { id, severity, pid: None, verdict: None, cause: "c".into(), fix: "x".into() }
    }

    #[test]
    fn conclusions() {
        assert_eq!(conclusion(&[f("cgroup-v2", Severity::Info)]), "cores would be stored: no finding predicts loss (0 warnings)");
        assert_eq!(
            conclusion(&[f("a", Severity::Loss), f("w", Severity::Warn)]),
            "cores will be lost: 1 finding predicts loss (a)"
        );
        assert_eq!(
            conclusion(&[f("a", Severity::Loss), f("b", Severity::Loss)]),
            "cores will be lost: 2 findings predict loss (a, b)"
        );
    }

    #[test]
    fn finding_json_shape() {
        let finding = Finding {
            id: "collector-socket-unreachable",
            severity: Severity::Loss,
            pid: None,
            verdict: Some(Verdict::CollectorUnreachablePid1),
            cause: "c".into(),
            fix: "x".into(),
        };
        let v = serde_json::to_value(&finding).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "collector-socket-unreachable", "severity": "loss",
                "verdict": "dropped:collector-unreachable-pid1", "cause": "c", "fix": "x"})
        );
        let v = serde_json::to_value(Finding { pid: Some(7), verdict: None, ..finding }).unwrap();
        assert_eq!(v["pid"], 7);
        assert!(v.get("verdict").is_none());
    }
}

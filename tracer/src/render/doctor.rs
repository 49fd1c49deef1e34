//! `crashtrace doctor`'s text: what was checked, one block per finding
//! (severity, id, cause, verdict, fix), and the conclusion.

use crate::doctor::{Finding, HostFacts, Severity};

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

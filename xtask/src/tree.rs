//! A test run must leave tracked files as it found them: `cargo xtask test`
//! takes a snapshot of the work tree's changes first and compares at the
//! end of each tier.

use std::process::Command;

use anyhow::{bail, Result};

/// `git status` and the diff against HEAD at one moment; `None` outside a
/// git checkout (a source tarball), where there is nothing to compare.
pub(crate) struct Snapshot(Option<(String, Vec<u8>)>);

fn git(args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("git").current_dir(crate::root()).args(args).output().ok()?;
    out.status.success().then_some(out.stdout)
}

impl Snapshot {
    pub(crate) fn take() -> Snapshot {
        let status = git(&["status", "--porcelain=v1", "--untracked-files=no"]);
        let diff = git(&["diff", "HEAD", "--binary"]);
        Snapshot(status.zip(diff).map(|(s, d)| (String::from_utf8_lossy(&s).into_owned(), d)))
    }

    /// Fails naming the tracked files `stage` changed, except `allowed`.
    pub(crate) fn unchanged_since(&self, stage: &str, allowed: &[&str]) -> Result<()> {
        let (Some(before), Snapshot(Some(after))) = (&self.0, Snapshot::take()) else {
            return Ok(());
        };
        if before == &after {
            return Ok(());
        }
        let changed = changed_paths(&before.0, &after.0, &before.1, &after.1, allowed);
        if changed.is_empty() {
            return Ok(());
        }
        bail!(
            "{stage} changed tracked files: {}; a test run must not (see `git diff`; or were they edited during the run?)",
            changed.join(", ")
        )
    }
}

/// Paths whose status line appeared or changed between two
/// `git status --porcelain` outputs; when the lines are the same but the
/// diff is not, a file that was already modified changed again, and its
/// name is found in the diff headers that differ.
pub(crate) fn changed_paths(before: &str, after: &str, diff_before: &[u8], diff_after: &[u8], allowed: &[&str]) -> Vec<String> {
    let path_of = |line: &str| line.get(3..).unwrap_or("").to_string();
    let mut out: Vec<String> = after.lines().filter(|l| !before.lines().any(|b| b == *l)).map(path_of).collect();
    out.extend(before.lines().filter(|l| !after.lines().any(|a| a == *l)).map(path_of));
    if out.is_empty() && diff_before != diff_after {
        let files = |d: &[u8]| -> Vec<(String, String)> {
            let text = String::from_utf8_lossy(d).into_owned();
            let mut v = Vec::new();
            for chunk in text.split("diff --git ").skip(1) {
                let name = chunk.lines().next().unwrap_or("").split(" b/").last().unwrap_or("").to_string();
                v.push((name, chunk.to_string()));
            }
            v
        };
        let b = files(diff_before);
        for (name, body) in files(diff_after) {
            if !b.iter().any(|(n, bb)| *n == name && *bb == body) {
                out.push(name);
            }
        }
    }
    out.sort();
    out.dedup();
    out.retain(|p| !allowed.contains(&p.as_str()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_further_changes_are_named() {
        assert!(changed_paths(" M a.rs\n", " M a.rs\n", b"x", b"x", &[]).is_empty());
        assert_eq!(changed_paths("", " M README.md\n", b"", b"d", &[]), ["README.md"]);
        assert!(changed_paths("", " M README.md\n", b"", b"d", &["README.md"]).is_empty());
        // a.rs was already modified; the run modified it again.
        let before = b"diff --git a/a.rs b/a.rs\n-1\n+2\ndiff --git a/b.rs b/b.rs\n-x\n+y\n";
        let after = b"diff --git a/a.rs b/a.rs\n-1\n+3\ndiff --git a/b.rs b/b.rs\n-x\n+y\n";
        assert_eq!(changed_paths(" M a.rs\n M b.rs\n", " M a.rs\n M b.rs\n", before, after, &[]), ["a.rs"]);
        // A file the run restored counts too.
        assert_eq!(changed_paths(" M a.rs\n", "", b"d", b"", &[]), ["a.rs"]);
    }
}

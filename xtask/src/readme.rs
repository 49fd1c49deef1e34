//! `cargo xtask readme`: rewrites README.md's generated regions: the hook
//! section (between `<!-- hooks:begin -->` and `<!-- hooks:end -->`) from the
//! hook table in tracer/src/hooks.rs, and the flag tables (`<!-- flags:begin
//! -->` ...) from the CLI definition in tracer/src/cli.rs.
//!
//! The rendering lives in the tracer crate, next to what it renders. Each
//! region's tier-1 test fails when the region is stale and rewrites it when
//! CRASHTRACE_UPDATE_README is set; this runs those tests.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

/// The tests that check, or with [`UPDATE_ENV`] rewrite, the regions.
const TESTS: [&str; 2] = ["hooks::tests::readme_hook_section_is_current", "cli::tests::readme_flag_section_is_current"];
const UPDATE_ENV: &str = "CRASHTRACE_UPDATE_README";

pub(crate) fn update(root: &Path) -> Result<()> {
    for test in TESTS {
        update_one(root, test)?;
    }
    Ok(())
}

fn update_one(root: &Path, test: &str) -> Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).env(UPDATE_ENV, "1").args(["test", "-p", "crashtrace", "--lib", "--", "--exact", test]);
    eprintln!("xtask: running {cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "rendering the README's hook section failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A filter that matches nothing passes too: insist that the test ran.
    if !ran_one(&stdout) {
        bail!("{test} did not run (was it renamed? update xtask/src/readme.rs):\n{stdout}");
    }
    eprintln!("xtask: README.md's region checked by {test} is up to date");
    Ok(())
}

/// Whether libtest's summary says exactly one test ran and passed.
fn ran_one(stdout: &str) -> bool {
    stdout.lines().any(|l| l.starts_with("test result: ok. 1 passed;"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insists_on_one_test_run() {
        assert!(ran_one("running 1 test\ntest x ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 154 filtered out"));
        assert!(!ran_one("running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 155 filtered out"));
        assert!(!ran_one("test result: FAILED. 0 passed; 1 failed"));
    }
}

//! `crashtrace report`: reads event logs after the fact.

use std::process::ExitCode;

use crate::cli::ReportArgs;

pub fn run(_args: &ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`crashtrace report` is not implemented in this build")
}

//! `crashtrace doctor`: checks the host for whatever would drop or hide cores.

use std::process::ExitCode;

use crate::cli::DoctorArgs;

pub fn run(_args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`crashtrace doctor` is not implemented in this build")
}

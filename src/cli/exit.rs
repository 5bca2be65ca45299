//! Exit statuses shared by every command (the reference is `docs/src/reference/cli.md`).

use std::process::ExitCode;

pub const OK: u8 = 0;
/// Findings, or input that was refused.
pub const FINDINGS: u8 = 1;
/// Usage or environment problem.
pub const USAGE: u8 = 2;

/// The exit code for a status the pod side returns (the agent's, or the app's under
/// `exec`); one that does not fit a byte is a usage error.
pub fn from_status(status: i32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(USAGE))
}

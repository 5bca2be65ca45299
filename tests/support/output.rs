//! A finished command's output, shown when a test fails.

use std::process::Output;

/// Bytes as text, invalid UTF-8 replaced (for messages).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The status, stdout and stderr of a command, for an assertion's message.
pub fn describe(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

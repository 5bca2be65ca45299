//! `secretstore install`: copy this binary into a directory (the init container's
//! volume, a plugin directory).

use super::exit;
use super::usage_error;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Copies the running executable to `DIR/secretstore` (mode 0755) through a temporary
/// file and a rename, so a reader never sees a half-written binary.
pub fn run(dir: &Path) -> ExitCode {
    use std::os::unix::fs::PermissionsExt;
    let copy = || -> io::Result<PathBuf> {
        let source = std::env::current_exe()?;
        let dest = dir.join("secretstore");
        let temp = dir.join(format!(".secretstore.{}", std::process::id()));
        std::fs::copy(&source, &temp)
            .and_then(|_| std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)))
            .and_then(|()| std::fs::rename(&temp, &dest))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            })?;
        Ok(dest)
    };
    match copy() {
        Ok(dest) => {
            eprintln!("secretstore: installed {}", dest.display());
            ExitCode::from(exit::OK)
        }
        Err(e) => usage_error(&format!("cannot install into {}: {e}", dir.display())),
    }
}

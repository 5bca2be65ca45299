//! Rewriting a manifest file in place (`convert`, `add`), keeping what the command does
//! not own.
//!
//! The new content goes to a temporary file that the `tempfile` crate creates beside the
//! original with an unpredictable name, `O_CREAT|O_EXCL` and mode 0600 (so a name planted
//! in the directory, symlink or not, is never opened), gets the original's owner, group and
//! mode through its descriptor (`fchown`, then `fchmod`, which `chown` would otherwise
//! clear set-id bits after), is synced, and is renamed over the original: a reader sees the
//! old file or the new one, never half of one.
//!
//! What a rename cannot keep is refused, and the file is left as it is:
//! - a symbolic link (the rename would replace the link with a file; convert the target by
//!   its own path instead),
//! - a file with several hard links (the rename would split them),
//! - anything but a regular file,
//! - an owner or group the running user cannot give the new file,
//! - a file that changed between reading and writing.
//!
//! Extended attributes and ACLs are not copied.

use std::fs::{File, Metadata, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The identity of a file as it was read: a rewrite goes ahead only when the path still
/// names this very file, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Symlink,
    Other,
}

impl Original {
    /// The path itself as it is now (a symbolic link is not followed).
    pub fn of(path: &Path) -> Result<Original, String> {
        std::fs::symlink_metadata(path)
            .map(|m| Original::from_metadata(&m))
            .map_err(|e| format!("cannot inspect {}: {e}", path.display()))
    }

    fn from_metadata(m: &Metadata) -> Original {
        let kind = if m.file_type().is_symlink() {
            Kind::Symlink
        } else if m.file_type().is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        Original {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            nlink: m.nlink(),
            kind,
        }
    }

    /// Why the file cannot be replaced by a rename, if it cannot.
    /// `command` is the command that rewrites, for the message.
    pub fn refusal(&self, path: &Path, command: &str) -> Option<String> {
        match self.kind {
            Kind::Symlink => {
                let target = std::fs::read_link(path)
                    .map(|t| format!(" (to {})", t.display()))
                    .unwrap_or_default();
                Some(format!(
                    "{} is a symbolic link{target}: {command} rewrites regular files only, so that the link stays a link; give the file it points to by its own path",
                    path.display()
                ))
            }
            Kind::Other => Some(format!("{} is not a regular file", path.display())),
            Kind::File if self.nlink > 1 => Some(format!(
                "{} has {} hard links: rewriting it would split them; run {command} on a copy (`cp` then `mv`)",
                path.display(),
                self.nlink
            )),
            Kind::File => None,
        }
    }
}

/// Replaces the content of `path`, read as `original`, with `bytes`, keeping its owner,
/// group and mode; the file is left as it was on any error. `command` is the command that
/// rewrites, for messages.
pub fn replace(
    path: &Path,
    original: &Original,
    bytes: &[u8],
    command: &str,
) -> Result<(), String> {
    let fail =
        |what: &str, e: std::io::Error| format!("cannot rewrite {}: {what}: {e}", path.display());
    if let Some(refusal) = original.refusal(path, command) {
        return Err(refusal);
    }
    let unchanged = || -> Result<(), String> {
        if Original::of(path)? == *original {
            Ok(())
        } else {
            Err(format!(
                "{} changed while {command} was running; nothing was written: run {command} again",
                path.display()
            ))
        }
    };
    unchanged()?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".secretstore")
        .tempfile_in(dir)
        .map_err(|e| fail("cannot create a temporary file beside it", e))?;
    temp.write_all(bytes)
        .map_err(|e| fail("cannot write the temporary file", e))?;
    keep_owner_and_mode(temp.as_file(), original, command)
        .map_err(|e| format!("cannot rewrite {}: {e}", path.display()))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| fail("cannot sync the temporary file", e))?;
    unchanged()?;
    temp.persist(path)
        .map(|_| ())
        .map_err(|e| fail("cannot rename the temporary file over it", e.error))
}

/// The original's owner, group and mode on the new file, through its descriptor.
fn keep_owner_and_mode(file: &File, original: &Original, command: &str) -> Result<(), String> {
    let now = file
        .metadata()
        .map_err(|e| format!("cannot inspect the temporary file: {e}"))?;
    if now.uid() != original.uid || now.gid() != original.gid {
        std::os::unix::fs::fchown(file, Some(original.uid), Some(original.gid)).map_err(|e| {
            format!(
                "cannot give the new file the owner and group {}:{} of the original ({e}); run {command} as the file's owner or as root",
                original.uid, original.gid
            )
        })?;
    }
    file.set_permissions(Permissions::from_mode(original.mode))
        .map_err(|e| {
            format!(
                "cannot give the new file the mode {:04o}: {e}",
                original.mode
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_mode_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        let original = Original::of(&path).unwrap();
        replace(&path, &original, b"new", "convert").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn refuses_a_file_changed_since_it_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, "old").unwrap();
        let original = Original::of(&path).unwrap();
        std::fs::write(&path, "other, longer").unwrap();
        let err = replace(&path, &original, b"new", "add").unwrap_err();
        assert!(err.contains("changed while add was running"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"other, longer");
    }
}

//! Atomic file writes into the secrets and bin volumes.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

/// Mode of every directory the agent creates.
pub const DIR_MODE: u32 = 0o755;

/// Checks that a path from the spec is absolute and has no `..`, so the agent
/// writes exactly where the spec says and nowhere else.
pub fn check_path(path: &str) -> Result<&Path, String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{path:?} is not an absolute path"));
    }
    if p.components().any(|c| c == Component::ParentDir) || path.ends_with('/') {
        return Err(format!("{path:?} is not a plain file path"));
    }
    Ok(p)
}

/// Creates `dir` and its missing parents, each with mode 0755 whatever the umask. The
/// setgid bit a directory inherits is kept: in a volume with `fsGroup`, it gives the
/// files the pod's group, so other users of the pod can read 0440 files.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            let inherited = fs::metadata(dir)?.permissions().mode() & 0o2000;
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE | inherited))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `contents` to `path` with exactly `mode`: a temporary file in the same
/// directory, then a rename, so a reader sees the old file or the whole new one.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, mode, |file| file.write_all(contents))
}

/// Copies the running executable to `dest` (mode 0555), atomically.
pub fn copy_own_executable(dest: &Path) -> io::Result<u64> {
    let mut source = fs::File::open("/proc/self/exe")?;
    let mut copied = 0;
    write_atomic_with(dest, 0o555, |file| {
        copied = io::copy(&mut source, file)?;
        Ok(())
    })?;
    Ok(copied)
}

fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    create_dirs(dir)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        fill(&mut file)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        // No fsync: the volumes are emptyDirs, which do not outlive a node crash's pod.
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tempdir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("secretstore-write-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_with_mode_and_dirs() {
        let d = tempdir("mode");
        let file = d.join("a/b/c.txt");
        write_atomic(&file, b"one", 0o440).unwrap();
        write_atomic(&file, b"two", 0o400).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o400);
        assert_eq!(fs::metadata(d.join("a/b")).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(
            fs::read_dir(d.join("a/b")).unwrap().count(),
            1,
            "no temp file left"
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn copies_itself() {
        let d = tempdir("copy");
        let dest = d.join("bin/secretstore");
        let n = copy_own_executable(&dest).unwrap();
        assert!(n > 0);
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o7777, 0o555);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn path_checks() {
        assert!(check_path("/secretstore/secrets/files/app/0/x").is_ok());
        assert!(check_path("relative/x").is_err());
        assert!(check_path("/secretstore/../etc/passwd").is_err());
        assert!(check_path("/secretstore/dir/").is_err());
    }
}

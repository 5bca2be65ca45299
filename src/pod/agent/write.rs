//! Atomic file writes into the secrets and bin volumes, confined to a volume root.
//!
//! The agent trusts the path of a volume root (the container's own file system up to the
//! mount point) but nothing inside it: another container of the pod may have planted a
//! symlink there. Every directory below the root is opened relative to its parent with
//! `O_NOFOLLOW`, created there when missing, and the file is written as a temporary file
//! in its final directory and renamed over the target, so a reader sees the old file or
//! the whole new one and no symlink is ever followed.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

pub use crate::pod::agent_spec::MAX_FILE_NAME;

/// Mode of every directory the agent creates.
pub const DIR_MODE: u32 = 0o755;

/// Checks that `path` is an absolute, normal path (no `.`, `..`, empty segment, trailing
/// `/`, control character) whose names the agent can write.
pub fn check_path(path: &str) -> Result<&Path, String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{path:?} is not an absolute path"));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{path:?} holds a control character"));
    }
    if path.ends_with('/')
        || path.contains("//")
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || path.split('/').any(|s| s == "." || s == "..")
    {
        return Err(format!("{path:?} is not a plain file path"));
    }
    if let Some(long) = path.split('/').find(|s| s.len() > MAX_FILE_NAME) {
        return Err(format!(
            "{path:?} has a name of {} bytes, more than the {MAX_FILE_NAME} the agent can write",
            long.len()
        ));
    }
    Ok(p)
}

/// The path of `path` below `root`, when `path` is strictly inside it.
pub fn inside<'p>(root: &str, path: &'p str) -> Option<&'p str> {
    path.strip_prefix(root.trim_end_matches('/'))
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a file name holds a NUL byte"))
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn open_dir_at(parent: Option<&OwnedFd>, name: &CString) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let dirfd = parent.map_or(libc::AT_FDCWD, |p| p.as_raw_fd());
    // SAFETY: `name` is a valid NUL-terminated string and `dirfd` is an open directory or
    // AT_FDCWD; the returned descriptor is owned by the OwnedFd from here on.
    let fd = cvt(unsafe { libc::openat(dirfd, name.as_ptr(), flags) }).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
            io::Error::new(
                e.kind(),
                format!(
                    "{} is a symlink or not a directory; the agent follows no link inside its volumes",
                    name.to_string_lossy()
                ),
            )
        } else {
            e
        }
    })?;
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens (creating when missing, mode 0755 plus an inherited setgid bit) directory `name`
/// in `parent`, never through a symlink.
fn open_or_create_dir_at(parent: &OwnedFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: valid descriptor and NUL-terminated name.
    let created = match cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), DIR_MODE) }) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    let dir = open_dir_at(Some(parent), name)?;
    if created {
        // The setgid bit a directory inherits is kept: in a volume with `fsGroup`, it gives
        // the files the pod's group, so other users of the pod can read 0440 files.
        let file = File::from(dir.try_clone()?);
        let inherited = std::os::unix::fs::MetadataExt::mode(&file.metadata()?) & 0o2000;
        // SAFETY: valid descriptor.
        cvt(unsafe { libc::fchmod(dir.as_raw_fd(), (DIR_MODE | inherited) as libc::mode_t) })?;
    }
    Ok(dir)
}

/// Opens the directory that will hold `path` (below `root`), creating what is missing.
fn open_parent(root: &Path, path: &Path) -> io::Result<(OwnedFd, CString)> {
    let rest = path.strip_prefix(root).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not inside {}", path.display(), root.display()),
        )
    })?;
    let root_name = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the root holds a NUL byte"))?;
    let mut dir = open_dir_at(None, &root_name)?;
    let mut names: Vec<&OsStr> = rest
        .components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain path", path.display()),
            )),
        })
        .collect::<io::Result<_>>()?;
    let file_name = names
        .pop()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    for name in names {
        dir = open_or_create_dir_at(&dir, &c_name(name)?)?;
    }
    Ok((dir, c_name(file_name)?))
}

/// Writes `path` (inside `root`) with exactly `mode`, the content written by `fill`: a
/// temporary file in the same directory, then a rename.
pub fn write_atomic_in(
    root: &Path,
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let (dir, name) = open_parent(root, path)?;
    let mut tmp = b".".to_vec();
    tmp.extend_from_slice(name.as_bytes());
    tmp.extend_from_slice(format!(".tmp{}", std::process::id()).as_bytes());
    let tmp = CString::new(tmp)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a file name holds a NUL byte"))?;
    // A temporary file left by an earlier, killed run of the agent with the same pid.
    // SAFETY: valid descriptor and NUL-terminated name.
    unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid descriptor and NUL-terminated name; the descriptor is owned below.
    let fd =
        cvt(unsafe { libc::openat(dir.as_raw_fd(), tmp.as_ptr(), flags, 0o600 as libc::c_uint) })?;
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let result = (|| {
        fill(&mut file)?;
        file.flush()?;
        // SAFETY: valid descriptor.
        cvt(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) })?;
        // No fsync: the volumes are emptyDirs, which do not outlive a node crash's pod.
        rename_in(&dir, &tmp, &name)
    })();
    if result.is_err() {
        // SAFETY: valid descriptor and NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    }
    result
}

/// Renames `from` over `to`, both in `dir` (atomic).
fn rename_in(dir: &OwnedFd, from: &CString, to: &CString) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated names.
    cvt(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) })
        .map(|_| ())
}

/// The symlink that names a directory's current version (as the kubelet names a
/// ConfigMap volume's).
pub const DATA_LINK: &str = "..data";

/// Creates directory `name` in `parent` (it must not exist), mode 0755 plus the setgid
/// bit it inherits, and opens it.
fn create_dir_at(parent: &OwnedFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: valid descriptor and NUL-terminated name.
    cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), DIR_MODE) })?;
    let dir = open_dir_at(Some(parent), name)?;
    let file = File::from(dir.try_clone()?);
    let inherited = std::os::unix::fs::MetadataExt::mode(&file.metadata()?) & 0o2000;
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::fchmod(dir.as_raw_fd(), (DIR_MODE | inherited) as libc::mode_t) })?;
    Ok(dir)
}

/// The target of symlink `name` in `dir`, when it is one.
fn read_link_at(dir: &OwnedFd, name: &CString) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 512];
    // SAFETY: valid descriptor, NUL-terminated name, and a buffer of the length given.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

/// Points `name` in `dir` at `target` with a new symlink renamed over it (atomic).
fn replace_symlink_at(dir: &OwnedFd, name: &CString, target: &[u8]) -> io::Result<()> {
    if read_link_at(dir, name).as_deref() == Some(target) {
        return Ok(());
    }
    let mut tmp = b".".to_vec();
    tmp.extend_from_slice(name.as_bytes());
    tmp.extend_from_slice(format!(".lnk{}", std::process::id()).as_bytes());
    let tmp = c_name(OsStr::from_bytes(&tmp))?;
    let target = c_name(OsStr::from_bytes(target))?;
    // SAFETY: valid descriptor and NUL-terminated names.
    unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    // SAFETY: valid descriptor and NUL-terminated names.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), tmp.as_ptr()) })?;
    rename_in(dir, &tmp, name).inspect_err(|_| {
        // SAFETY: valid descriptor and NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    })
}

/// The names in an open directory.
fn names_in(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let entries = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    entries
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect()
}

/// Removes version directory `name` of `dir` and the files in it (never following a link).
fn remove_version(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let name = c_name(OsStr::from_bytes(name))?;
    let version = open_dir_at(Some(dir), &name)?;
    for file in names_in(&version)? {
        let file = c_name(OsStr::from_bytes(&file))?;
        // SAFETY: valid descriptor and NUL-terminated name.
        cvt(unsafe { libc::unlinkat(version.as_raw_fd(), file.as_ptr(), 0) })?;
    }
    // SAFETY: valid descriptor and NUL-terminated name.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) }).map(|_| ())
}

/// Writes the files of directory `dir` (inside `root`) together, so that a reader never
/// sees two versions of them, as the kubelet writes a ConfigMap volume: the files go into a
/// new version directory `..<time>`, the symlink `..data` is renamed to point at it in
/// one step, and each file name is a symlink `..data/<name>`. The version before stays
/// (a reader that opened `..data` a moment ago can still open the other files); older
/// ones are removed. `files` are names and modes; `fill` writes file `i`.
pub fn write_together(
    root: &Path,
    dir: &Path,
    files: &[(&str, u32)],
    mut fill: impl FnMut(usize, &mut File) -> io::Result<()>,
) -> io::Result<()> {
    // The directory itself, opened (and created) as the parent of a name inside it.
    let (dir_fd, _) = open_parent(root, &dir.join("-"))?;
    let data_link = c_name(OsStr::new(DATA_LINK))?;
    let previous = read_link_at(&dir_fd, &data_link);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (version_name, version) = (0..100)
        .find_map(|n| {
            let name = format!("..{}.{:09}_{n}", stamp.as_secs(), stamp.subsec_nanos());
            let c = c_name(OsStr::new(&name)).ok()?;
            match create_dir_at(&dir_fd, &c) {
                Ok(fd) => Some(Ok((name, fd))),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                Err(e) => Some(Err(e)),
            }
        })
        .unwrap_or_else(|| Err(io::Error::other("no free version directory name")))?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let written = (|| {
        for (i, (file_name, mode)) in files.iter().enumerate() {
            let c = c_name(OsStr::new(file_name))?;
            // SAFETY: valid descriptor and NUL-terminated name; the descriptor is owned below.
            let fd = cvt(unsafe {
                libc::openat(
                    version.as_raw_fd(),
                    c.as_ptr(),
                    flags,
                    0o600 as libc::c_uint,
                )
            })?;
            // SAFETY: openat returned a fresh descriptor that nothing else owns.
            let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            fill(i, &mut file)?;
            file.flush()?;
            // SAFETY: valid descriptor.
            cvt(unsafe { libc::fchmod(file.as_raw_fd(), *mode as libc::mode_t) })?;
        }
        replace_symlink_at(&dir_fd, &data_link, version_name.as_bytes())
    })();
    if let Err(e) = written {
        let _ = remove_version(&dir_fd, version_name.as_bytes());
        return Err(e);
    }
    for (file_name, _) in files {
        let target = format!("{DATA_LINK}/{file_name}");
        replace_symlink_at(&dir_fd, &c_name(OsStr::new(file_name))?, target.as_bytes())?;
    }
    for old in names_in(&dir_fd)? {
        let keep = old == DATA_LINK.as_bytes()
            || old == version_name.as_bytes()
            || previous.as_deref() == Some(old.as_slice());
        if old.starts_with(b"..") && !keep {
            remove_version(&dir_fd, &old)?;
        }
    }
    Ok(())
}

/// Writes `contents` to `path` inside `root`, atomically, with exactly `mode`.
pub fn write_atomic(root: &Path, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_in(root, path, mode, |file| file.write_all(contents))
}

/// Copies the running executable to `dest` inside `root` (mode 0555), atomically.
pub fn copy_own_executable(root: &Path, dest: &Path) -> io::Result<u64> {
    let mut source = File::open("/proc/self/exe")?;
    let mut copied = 0;
    write_atomic_in(root, dest, 0o555, |file| {
        copied = io::copy(&mut source, file)?;
        Ok(())
    })?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
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
        write_atomic(&d, &file, b"one", 0o440).unwrap();
        write_atomic(&d, &file, b"two", 0o400).unwrap();
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
        let n = copy_own_executable(&d, &dest).unwrap();
        assert!(n > 0);
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o7777, 0o555);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn never_follows_a_planted_symlink() {
        let d = tempdir("symlink");
        let root = d.join("volume");
        let outside = d.join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("files")).unwrap();
        let err = write_atomic(&root, &root.join("files/app/x"), b"v", 0o444).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // A symlink as the file itself is replaced, not written through.
        fs::create_dir_all(root.join("env")).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), root.join("env/env.json")).unwrap();
        write_atomic(&root, &root.join("env/env.json"), b"v", 0o444).unwrap();
        assert!(!outside.join("target").exists());
        assert!(fs::symlink_metadata(root.join("env/env.json"))
            .unwrap()
            .is_file());
        // A path outside the root is refused.
        assert!(write_atomic(&root, &outside.join("y"), b"v", 0o444).is_err());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn writes_a_directory_together_through_data_link() {
        let d = tempdir("together");
        let dir = d.join("files/app/0");
        for round in 0..3 {
            let contents = [format!("cert{round}"), format!("key{round}")];
            write_together(
                &d,
                &dir,
                &[("tls.crt", 0o444), ("tls.key", 0o400)],
                |i, f| f.write_all(contents[i].as_bytes()),
            )
            .unwrap();
            assert_eq!(
                fs::read_to_string(dir.join("tls.crt")).unwrap(),
                contents[0]
            );
            assert_eq!(
                fs::read_to_string(dir.join("tls.key")).unwrap(),
                contents[1]
            );
            assert_eq!(
                fs::metadata(dir.join("tls.key")).unwrap().mode() & 0o7777,
                0o400
            );
            assert!(fs::symlink_metadata(dir.join("tls.crt"))
                .unwrap()
                .file_type()
                .is_symlink());
        }
        // `..data`, the current and the previous version, and the two names.
        let versions = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with("..") && name != DATA_LINK
            })
            .count();
        assert_eq!(versions, 2);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 5);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn path_checks() {
        assert!(check_path("/secretstore/secrets/files/app/0/x").is_ok());
        assert!(check_path("relative/x").is_err());
        assert!(check_path("/secretstore/../etc/passwd").is_err());
        assert!(check_path("/secretstore/./x").is_err());
        assert!(check_path("/secretstore//x").is_err());
        assert!(check_path("/secretstore/dir/").is_err());
        assert!(check_path("/secretstore/a\nb").is_err());
        assert!(check_path("/secretstore/a\0b").is_err());
        assert!(check_path(&format!("/s/{}", "n".repeat(MAX_FILE_NAME))).is_ok());
        assert!(check_path(&format!("/s/{}", "n".repeat(MAX_FILE_NAME + 1))).is_err());
        assert_eq!(inside("/a/b", "/a/b/c/d"), Some("c/d"));
        assert_eq!(inside("/a/b/", "/a/b/c"), Some("c"));
        assert_eq!(inside("/a/b", "/a/bc/d"), None);
        assert_eq!(inside("/a/b", "/a/b"), None);
    }
}

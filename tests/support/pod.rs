//! A kubelet stand-in: runs one container of a pod the way a container runtime would, so
//! every path of a rendered pod spec is real. Each container gets a private mount
//! namespace (`unshare -m`, we are root) with a fresh tmpfs root holding the host's `/usr`
//! read-only as its "image" (plus `/dev`, `/proc` and the dynamic loader's files), exactly
//! the volume mounts it lists (bind mounts, read-only where asked, sub-paths as host
//! sub-directories), an optionally read-only root, and a numeric user and groups
//! (`setpriv`). The process keeps the spawned child's PID throughout (`unshare`, `sh`,
//! `chroot` and `setpriv` all exec), so PID, signals and exit status are the container's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

/// The `PATH` of a typical image.
pub const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One `volumeMounts` entry: `host` is the volume's directory (joined with the sub-path
/// already) or a single file.
#[derive(Debug, Clone)]
pub struct Mount {
    pub host: PathBuf,
    pub path: String,
    pub read_only: bool,
}

impl Mount {
    pub fn rw(host: impl Into<PathBuf>, path: &str) -> Mount {
        Mount {
            host: host.into(),
            path: path.to_owned(),
            read_only: false,
        }
    }

    pub fn ro(host: impl Into<PathBuf>, path: &str) -> Mount {
        Mount {
            host: host.into(),
            path: path.to_owned(),
            read_only: true,
        }
    }
}

/// One container to run.
#[derive(Debug, Clone, Default)]
pub struct Container {
    pub argv: Vec<String>,
    /// The container's environment (`PATH` is added when missing).
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// `runAsUser`/`runAsGroup`; `None` runs as root.
    pub user: Option<(u32, u32)>,
    /// Supplementary groups (`fsGroup`, `supplementalGroups`).
    pub groups: Vec<u32>,
    /// `readOnlyRootFilesystem: true`.
    pub read_only_root: bool,
}

impl Container {
    /// Runs the container to completion, capturing stdout and stderr.
    pub fn run(&self) -> Output {
        self.spawn()
            .wait_with_output()
            .expect("cannot wait for the container")
    }

    /// Starts the container with stdout and stderr piped; keep the returned root alive
    /// until the child has exited.
    pub fn spawn(&self) -> Child {
        let root = std::env::temp_dir().join("secretstore-pod-root");
        std::fs::create_dir_all(&root).expect("cannot create the rootfs mount point");
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(self.script(&root))
            .arg("sh")
            .args(&self.argv)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.env.iter().any(|(k, _)| k == "PATH") {
            command.env("PATH", IMAGE_PATH);
        }
        command.spawn().expect("cannot run unshare")
    }

    fn script(&self, root: &Path) -> String {
        let r = quote(&root.to_string_lossy());
        let mut s = format!(
            "set -eu\nR={r}\nIMAGE_PATH=\"$PATH\"\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
             mount -t tmpfs -o mode=0755 secretstore-rootfs \"$R\"\n\
             mkdir -p \"$R/usr\" \"$R/dev\" \"$R/proc\" \"$R/etc\"\n\
             mount --rbind /usr \"$R/usr\" && mount -o remount,bind,ro \"$R/usr\"\n\
             mount --rbind /dev \"$R/dev\"\n\
             mount --rbind /proc \"$R/proc\"\n\
             for d in bin lib lib64 sbin; do ln -s usr/$d \"$R/$d\"; done\n\
             for f in ld.so.cache passwd group nsswitch.conf hosts; do [ -e /etc/$f ] && cp /etc/$f \"$R/etc/\" || true; done\n"
        );
        for m in &self.mounts {
            let target = format!("\"$R\"{}", quote(&m.path));
            let host = quote(&m.host.to_string_lossy());
            if m.host.is_dir() {
                s += &format!("mkdir -p {target}\n");
            } else {
                let parent = Path::new(&m.path)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "/".to_owned());
                let parent_target = format!("\"$R\"{}", quote(&parent));
                // A file in the read-only image: a tmpfs over its directory makes room.
                if parent.starts_with("/usr/") {
                    s += &format!("mount -t tmpfs -o mode=0755 image-overlay {parent_target}\n");
                }
                s += &format!("mkdir -p {parent_target}\n: > {target}\n");
            }
            s += &format!("mount --bind {host} {target}\n");
            if m.read_only {
                s += &format!("mount -o remount,bind,ro {target}\n");
            }
        }
        if self.read_only_root {
            s += "mount -o remount,ro \"$R\"\n";
        }
        s += "export PATH=\"$IMAGE_PATH\"\n";
        match self.user {
            Some((uid, gid)) => {
                let groups = if self.groups.is_empty() {
                    "--clear-groups".to_owned()
                } else {
                    format!(
                        "--groups={}",
                        self.groups
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                };
                s += &format!(
                    "exec /usr/sbin/chroot \"$R\" /usr/bin/setpriv --reuid={uid} --regid={gid} {groups} -- \"$@\"\n"
                );
            }
            None => s += "exec /usr/sbin/chroot \"$R\" \"$@\"\n",
        }
        s
    }
}

/// Single-quotes for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The volumes of one pod: host directories standing in for its emptyDirs and its
/// projected token volume, plus an `out` directory the test's app containers write
/// their observations to.
pub struct PodVolumes {
    dir: TempDir,
}

impl PodVolumes {
    /// Creates the emptyDirs as the kubelet does (world-writable; with `fs_group`, owned
    /// by that group with the setgid bit, so files created in them get the group).
    pub fn new(fs_group: Option<u32>) -> PodVolumes {
        let dir = tempfile::Builder::new()
            .prefix("secretstore-pod-")
            .tempdir()
            .expect("cannot create pod dir");
        let volumes = PodVolumes { dir };
        for d in ["secrets", "bin", "token", "out"] {
            let path = volumes.dir.path().join(d);
            std::fs::create_dir(&path).expect("cannot create volume dir");
            let mut mode = 0o777;
            if let Some(gid) = fs_group {
                std::os::unix::fs::chown(&path, None, Some(gid)).expect("cannot chown volume");
                mode |= 0o2000;
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .expect("cannot chmod volume");
        }
        volumes
    }

    /// The secrets emptyDir (`medium: Memory` in the pod; a directory here).
    pub fn secrets(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    /// The bin emptyDir.
    pub fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// The projected service-account token volume's directory.
    pub fn token_dir(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// Where app containers of the tests write what they saw.
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Writes the projected token as the kubelet does for a pod running as `uid`:
    /// mode 0600, owned by that user.
    pub fn write_token(&self, jwt: &str, uid: u32) {
        let file = self.token_dir().join("token");
        std::fs::write(&file, jwt).expect("cannot write token");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .expect("cannot chmod token");
        std::os::unix::fs::chown(&file, Some(uid), None).expect("cannot chown token");
    }
}

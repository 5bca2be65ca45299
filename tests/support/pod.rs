//! A kubelet stand-in: runs one container of a pod the way a container runtime would, so
//! every path of a rendered pod spec is real. Each container gets a private mount
//! namespace (`unshare -m`, we are root) with a fresh tmpfs root holding the host's `/usr`
//! read-only as its "image" (plus `/dev`, `/proc` and the dynamic loader's files), exactly
//! the volume mounts it lists (bind mounts, read-only where asked, sub-paths as host
//! sub-directories), an optionally read-only root, and a numeric user and groups
//! (`setpriv`). The process keeps the spawned child's PID throughout (`unshare`, `sh`,
//! `chroot` and `setpriv` all exec), so PID, signals and exit status are the container's.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use secretstore::pod::agent_spec::{AgentSpec, AGENT_SECRETS_DIR, BIN_DIR, SPEC_ENV, TOKEN_DIR};
use serde_json::Value;
use tempfile::TempDir;

use super::jwt::ServiceAccountIssuer;

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
    /// Directories to create (if missing) with this mode when the container starts, as
    /// the kubelet does for a missing `subPath`.
    pub create_dirs: Vec<(PathBuf, u32)>,
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
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("the pod tests run containers in mount namespaces and need root (as CI runs them): run cargo test as root");
        }
        for tool in ["/usr/bin/unshare", "/usr/bin/setpriv", "/usr/sbin/chroot"] {
            if !Path::new(tool).exists() {
                panic!("{tool} is missing: install util-linux and coreutils (scripts/install-test-deps.sh)");
            }
        }
        for (dir, mode) in &self.create_dirs {
            if !dir.exists() {
                std::fs::create_dir_all(dir).expect("cannot create subPath");
                set_mode(dir, *mode);
            }
        }
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

/// Kubernetes' `$(VAR)` expansion of `command`, `args` and env values: `$(NAME)` of a
/// defined variable becomes its value, `$$` becomes `$`, anything else stays as written.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match vars.get(name) {
                            Some(value) => out.push_str(value),
                            None => out.push_str(&format!("$({name})")),
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    let c = rest.chars().next().unwrap_or_default();
                    out.push('$');
                    out.push(c);
                    c.len_utf8()
                }
            };
            cursor += advance + 1;
            checkpoint = cursor;
        } else {
            cursor += 1;
        }
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// A pod spec (e.g. a rendered pod template's `spec`) made runnable the way the kubelet
/// would: its emptyDirs, projected service-account token and configMap volumes become
/// host directories, and each container becomes a [`Container`] with exactly its
/// `volumeMounts`, `$(VAR)`-expanded command, args and env, and its security context.
pub struct KubeletPod {
    spec: Value,
    /// The downward API's fields (`metadata.name`, `status.podIP`...) for `fieldRef` env.
    fields: BTreeMap<String, String>,
    volumes: BTreeMap<String, PathBuf>,
    agent_binary: PathBuf,
    _dir: TempDir,
}

/// Runs the pod tests with another build of the binary (e.g. the static release build).
pub const AGENT_BIN_ENV: &str = "SECRETSTORE_TEST_AGENT_BIN";

/// The binary the pods run: this build's, or `$SECRETSTORE_TEST_AGENT_BIN`.
pub fn agent_binary() -> String {
    std::env::var(AGENT_BIN_ENV).unwrap_or_else(|_| env!("CARGO_BIN_EXE_secretstore").to_owned())
}

/// Where the agent image keeps the binary.
pub const AGENT_IMAGE_BINARY: &str = "/usr/local/bin/secretstore";

impl KubeletPod {
    /// `config_maps`: (name, key, content). `agent_binary` stands in for the agent image's
    /// `/usr/local/bin/secretstore`. Tokens are signed for the pod's namespace and service
    /// account with each projection's audience (default: the issuer).
    pub fn new(
        spec: &Value,
        namespace: &str,
        issuer: &ServiceAccountIssuer,
        config_maps: &[(&str, &str, &str)],
        agent_binary: &Path,
    ) -> KubeletPod {
        let dir = tempfile::Builder::new()
            .prefix("secretstore-kubelet-")
            .tempdir()
            .expect("cannot create pod dir");
        let pod_security = &spec["securityContext"];
        let fs_group = pod_security["fsGroup"].as_u64().map(|g| g as u32);
        let service_account = spec["serviceAccountName"].as_str().unwrap_or("default");
        let mut volumes = BTreeMap::new();
        for volume in spec["volumes"].as_array().into_iter().flatten() {
            let name = volume["name"].as_str().expect("volume name").to_owned();
            let path = dir.path().join(&name);
            std::fs::create_dir(&path).expect("cannot create volume dir");
            volumes.insert(name, path.clone());
            if volume.get("emptyDir").is_some() {
                let mut mode = 0o777;
                if let Some(gid) = fs_group {
                    std::os::unix::fs::chown(&path, None, Some(gid)).expect("chown volume");
                    mode |= 0o2000;
                }
                set_mode(&path, mode);
            } else if let Some(projected) = volume.get("projected") {
                set_mode(&path, 0o755);
                for source in projected["sources"].as_array().into_iter().flatten() {
                    let token = &source["serviceAccountToken"];
                    let file = path.join(token["path"].as_str().expect("token path"));
                    let audience = token["audience"].as_str().unwrap_or(issuer.issuer());
                    std::fs::write(&file, issuer.token(namespace, service_account, audience))
                        .expect("write token");
                    // The kubelet: 0600 for the pod's single runAsUser, 0640 to the fsGroup
                    // with one, else the projection's default 0644.
                    match (single_run_as_user(spec), fs_group) {
                        (_, Some(gid)) => {
                            std::os::unix::fs::chown(&file, None, Some(gid)).expect("chown");
                            set_mode(&file, 0o640);
                        }
                        (Some(uid), None) => {
                            std::os::unix::fs::chown(&file, Some(uid), None).expect("chown");
                            set_mode(&file, 0o600);
                        }
                        (None, None) => set_mode(&file, 0o644),
                    }
                }
            } else if let Some(config_map) = volume.get("configMap") {
                set_mode(&path, 0o755);
                let cm = config_map["name"].as_str().expect("configMap name");
                for item in config_map["items"].as_array().into_iter().flatten() {
                    let key = item["key"].as_str().expect("item key");
                    let (_, _, content) = config_maps
                        .iter()
                        .find(|(n, k, _)| *n == cm && *k == key)
                        .unwrap_or_else(|| panic!("no configMap {cm} key {key} given"));
                    let file = path.join(item["path"].as_str().unwrap_or(key));
                    std::fs::write(&file, content).expect("write configMap item");
                    set_mode(&file, 0o644);
                }
            } else {
                panic!("volume type not supported by the test kubelet: {volume}");
            }
        }
        let fields = [
            ("metadata.name", "test-pod"),
            ("metadata.namespace", namespace),
            ("spec.serviceAccountName", service_account),
            ("spec.nodeName", "node-1"),
            ("status.podIP", "10.0.0.7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        KubeletPod {
            spec: spec.clone(),
            fields,
            volumes,
            agent_binary: agent_binary.to_owned(),
            _dir: dir,
        }
    }

    /// Sets a downward-API field (e.g. `metadata.name`) that `fieldRef` env vars read.
    pub fn set_field(&mut self, path: &str, value: &str) {
        self.fields.insert(path.to_owned(), value.to_owned());
    }

    /// The host directory of a volume.
    pub fn volume(&self, name: &str) -> &Path {
        self.volumes
            .get(name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    }

    /// The init containers, in order, by name.
    pub fn init_containers(&self) -> Vec<(String, Container)> {
        self.list("initContainers")
    }

    /// The app containers, by name.
    pub fn containers(&self) -> Vec<(String, Container)> {
        self.list("containers")
    }

    fn list(&self, field: &str) -> Vec<(String, Container)> {
        self.spec[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let name = c["name"].as_str().expect("container name").to_owned();
                (name, self.container(c))
            })
            .collect()
    }

    fn container(&self, c: &Value) -> Container {
        let mut vars = BTreeMap::new();
        let mut env = Vec::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().expect("env name").to_owned();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some(field) => self
                    .fields
                    .get(field)
                    .unwrap_or_else(|| panic!("env {name}: no downward-API field {field}"))
                    .clone(),
                None => expand(
                    e["value"].as_str().unwrap_or_else(|| {
                        panic!("env {name}: only literal values and fieldRef are supported")
                    }),
                    &vars,
                ),
            };
            vars.insert(name.clone(), value.clone());
            env.push((name, value));
        }
        let strings = |field: &str| -> Vec<String> {
            c[field]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| expand(s.as_str().expect("string"), &vars))
                .collect()
        };
        let mut argv = strings("command");
        assert!(!argv.is_empty(), "container {} has no command", c["name"]);
        argv.extend(strings("args"));
        let mut mounts: Vec<Mount> = Vec::new();
        let mut create_dirs = Vec::new();
        if argv[0] == AGENT_IMAGE_BINARY {
            mounts.push(Mount::ro(&self.agent_binary, AGENT_IMAGE_BINARY));
        }
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let volume = self.volume(m["name"].as_str().expect("mount name"));
            let mut host = volume.to_owned();
            if let Some(sub_path) = m["subPath"].as_str() {
                host = host.join(sub_path);
                // At container start the kubelet creates a missing sub-path, as root, with
                // the volume's mode.
                let mode = std::fs::metadata(volume)
                    .expect("stat volume")
                    .permissions()
                    .mode();
                create_dirs.push((host.clone(), mode & 0o7777));
            }
            mounts.push(Mount {
                host,
                path: m["mountPath"].as_str().expect("mountPath").to_owned(),
                read_only: m["readOnly"].as_bool().unwrap_or(false),
            });
        }
        let security = |key: &str| {
            c["securityContext"][key]
                .as_u64()
                .or_else(|| self.spec["securityContext"][key].as_u64())
                .map(|v| v as u32)
        };
        let user = security("runAsUser").map(|uid| (uid, security("runAsGroup").unwrap_or(0)));
        let pod_security = &self.spec["securityContext"];
        let mut groups: Vec<u32> = pod_security["fsGroup"]
            .as_u64()
            .into_iter()
            .chain(
                pod_security["supplementalGroups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64),
            )
            .map(|g| g as u32)
            .collect();
        groups.dedup();
        Container {
            argv,
            env,
            mounts,
            user,
            groups,
            read_only_root: c["securityContext"]["readOnlyRootFilesystem"]
                .as_bool()
                .unwrap_or(false),
            create_dirs,
        }
    }
}

/// The runAsUser every container of the pod runs as, when they all agree.
fn single_run_as_user(spec: &Value) -> Option<u32> {
    let pod = spec["securityContext"]["runAsUser"].as_u64();
    let mut users = ["initContainers", "containers"]
        .iter()
        .flat_map(|f| spec[*f].as_array().into_iter().flatten())
        .map(|c| c["securityContext"]["runAsUser"].as_u64().or(pod));
    let first = users.next()??;
    users.all(|u| u == Some(first)).then_some(first as u32)
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

/// The agent's user and the pods' fsGroup in the pod tests.
pub const AGENT_UID: u32 = 65532;
pub const FS_GROUP: u32 = 2000;

/// The init container as render lays it out: restricted (non-root, read-only root), the
/// secrets volume read-write, the bin volume when needed, the token read-only.
pub fn agent_container(pod: &PodVolumes, spec: &AgentSpec) -> Container {
    let mut mounts = vec![
        Mount::ro(agent_binary(), AGENT_IMAGE_BINARY),
        Mount::rw(pod.secrets(), AGENT_SECRETS_DIR),
        Mount::ro(pod.token_dir(), TOKEN_DIR),
    ];
    if spec.copy_binary_to.is_some() {
        mounts.push(Mount::rw(pod.bin(), BIN_DIR));
    }
    Container {
        argv: vec![AGENT_IMAGE_BINARY.to_owned(), "agent".to_owned()],
        env: vec![(SPEC_ENV.to_owned(), spec.to_compact_json())],
        mounts,
        user: Some((AGENT_UID, AGENT_UID)),
        groups: vec![FS_GROUP],
        read_only_root: true,
        create_dirs: Vec::new(),
    }
}

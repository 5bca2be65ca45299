//! The in-pod runtime end to end: `secretstore agent` as the init container and
//! `secretstore exec` in the app containers, each run in its own mount namespace with
//! exactly the pod's volume mounts (tests/support/pod.rs), against a real OpenBao with a
//! `jwt` auth method standing in for Kubernetes auth, least-privilege policies, and a real
//! PostgreSQL for dynamic secrets. Every captured stdout/stderr is checked for secret
//! values.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use secretstore::pod::agent_spec::{
    AgentSpec, EnvFileOutput, EnvRef, FileFormat, FileOutput, SecretRead, VaultConnection,
    AGENT_SECRETS_DIR, BIN_DIR, CA_DIR, ENV_DIR, ENV_FILE_NAME, REF_PREFIX, TOKEN_DIR,
    TOKEN_FILE_NAME,
};
use serde_json::json;
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::net::Forward;
use support::openbao::OpenBao;
use support::output::{describe, text};
use support::pod::{
    agent_binary, agent_container, expand, Container, KubeletPod, Mount, PodVolumes, AGENT_UID,
    FS_GROUP,
};
use support::postgres::Postgres;
use support::{assert_no_secret, free_port};

const APP_UID: u32 = 1000;
const NAMESPACE: &str = "shop";
const SERVICE_ACCOUNT: &str = "app";
const AUDIENCE: &str = "vault";
const ROLE: &str = "app";
const AUTH_MOUNT: &str = "kubernetes";

/// OpenBao with KV v2 at `secret/`, KV v1 at `kv1/`, `jwt` auth at `auth/kubernetes`, and
/// role `app` bound to `shop/app` with a policy that reads only what the tests allow.
struct Lab {
    vault: OpenBao,
    issuer: ServiceAccountIssuer,
}

impl Lab {
    fn start() -> Lab {
        Lab::on(OpenBao::start())
    }

    fn on(vault: OpenBao) -> Lab {
        vault.enable_secrets_engine("kv1", "kv", &json!({ "options": { "version": "1" } }));
        vault.put_policy(
            "app",
            r#"
path "secret/data/shop/*" { capabilities = ["read"] }
path "kv1/shop/*" { capabilities = ["read"] }
path "database/creds/app" { capabilities = ["read"] }
"#,
        );
        let issuer = ServiceAccountIssuer::new();
        vault.enable_jwt_auth(AUTH_MOUNT, &issuer);
        vault.write_jwt_role(
            AUTH_MOUNT,
            ROLE,
            &JwtRole::service_account(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE, &["app"]),
        );
        Lab { vault, issuer }
    }

    fn jwt(&self) -> String {
        self.issuer.token(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE)
    }

    fn token_accessors(&self) -> usize {
        let (_, body) = self.vault.request("LIST", "auth/token/accessors", None);
        body["data"]["keys"].as_array().map_or(0, Vec::len)
    }
}

/// Per container: (sub-path of the secrets volume, mount path) of its file mounts.
type FileMounts = BTreeMap<&'static str, Vec<(String, String)>>;

/// What a pod's annotations and env refs ask for, the way render lays it out.
#[derive(Default)]
struct PodRequest {
    /// (container, env var, reference text `secretstore:vault:...`).
    env: Vec<(&'static str, String, String)>,
    files: Vec<FileRequest>,
    timeout_seconds: u64,
}

struct FileRequest {
    reference: &'static str,
    name: &'static str,
    mount_path: &'static str,
    containers: Vec<&'static str>,
    format: Option<FileFormat>,
    mode: u32,
}

fn file(
    reference: &'static str,
    name: &'static str,
    mount_path: &'static str,
    containers: &[&'static str],
) -> FileRequest {
    FileRequest {
        reference,
        name,
        mount_path,
        containers: containers.to_vec(),
        format: None,
        mode: 0o444,
    }
}

/// `<path>[#key[#version]]`.
fn parse_ref(text: &str) -> (String, Option<String>, Option<u64>) {
    let mut parts = text.splitn(3, '#');
    let path = parts.next().unwrap_or_default().to_owned();
    let key = parts.next().map(str::to_owned);
    let version = parts
        .next()
        .map(|v| v.parse().expect("version is a number"));
    (path, key, version)
}

impl PodRequest {
    /// The agent spec render would write, and for each container its file mounts
    /// (sub-path under the secrets volume → mount path).
    fn spec(&self, address: &str) -> (AgentSpec, FileMounts) {
        let mut secrets: Vec<SecretRead> = Vec::new();
        let mut index_of = |path: String, version: Option<u64>| {
            let read = SecretRead {
                path,
                version,
                params: None,
                renew_before_seconds: None,
            };
            match secrets.iter().position(|s| *s == read) {
                Some(i) => i,
                None => {
                    secrets.push(read);
                    secrets.len() - 1
                }
            }
        };
        let mut files = Vec::new();
        let mut mounts = FileMounts::new();
        for f in &self.files {
            let (path, key, version) = parse_ref(f.reference);
            let secret = index_of(path, version);
            for container in &f.containers {
                let container_mounts = mounts.entry(container).or_default();
                let k = match container_mounts.iter().position(|(_, p)| p == f.mount_path) {
                    Some(k) => k,
                    None => {
                        container_mounts.push((
                            format!("files/{container}/{}", container_mounts.len()),
                            f.mount_path.to_owned(),
                        ));
                        container_mounts.len() - 1
                    }
                };
                files.push(FileOutput {
                    secret: Some(secret),
                    template: None,
                    key: key.clone(),
                    format: f.format.unwrap_or(if key.is_some() {
                        FileFormat::Raw
                    } else {
                        FileFormat::Json
                    }),
                    mode: f.mode,
                    path: format!("{AGENT_SECRETS_DIR}/files/{container}/{k}/{}", f.name),
                    reference: f.reference.to_owned(),
                    on_change: None,
                    together: false,
                });
            }
        }
        let mut env_files: Vec<EnvFileOutput> = Vec::new();
        for (container, name, reference) in &self.env {
            let (path, key, version) =
                parse_ref(reference.strip_prefix(REF_PREFIX).expect("env ref"));
            let secret = index_of(path, version);
            let refs = match env_files.iter_mut().find(|e| e.container == *container) {
                Some(e) => &mut e.refs,
                None => {
                    env_files.push(EnvFileOutput {
                        container: (*container).to_owned(),
                        path: format!("{AGENT_SECRETS_DIR}/env/{container}/{ENV_FILE_NAME}"),
                        refs: Vec::new(),
                    });
                    &mut env_files.last_mut().expect("just pushed").refs
                }
            };
            if !refs.iter().any(|r| r.reference == *reference) {
                refs.push(EnvRef {
                    reference: reference.clone(),
                    secret: Some(secret),
                    key: Some(key.unwrap_or_else(|| name.clone())),
                    format: None,
                    template: None,
                });
            }
        }
        let spec = AgentSpec {
            v: AgentSpec::VERSION,
            vault: VaultConnection {
                address: address.to_owned(),
                auth_path: format!("auth/{AUTH_MOUNT}"),
                role: ROLE.to_owned(),
                namespace: None,
                ca_cert_file: None,
                tls_server_name: None,
                token_file: format!("{TOKEN_DIR}/{TOKEN_FILE_NAME}"),
            },
            timeout_seconds: if self.timeout_seconds == 0 {
                60
            } else {
                self.timeout_seconds
            },
            secrets,
            templates: Vec::new(),
            files,
            copy_binary_to: (!env_files.is_empty()).then(|| format!("{BIN_DIR}/secretstore")),
            secrets_root: AGENT_SECRETS_DIR.to_owned(),
            bin_root: BIN_DIR.to_owned(),
            env_files,
            live: None,
        };
        (spec, mounts)
    }
}

/// An app container: its file mounts, and when it has env refs, the env sub-path and the
/// bin volume with the command wrapped in `secretstore exec --`.
fn app_container(
    pod: &PodVolumes,
    name: &str,
    file_mounts: &[(String, String)],
    env: Vec<(String, String)>,
    command: Vec<String>,
    wrapped: bool,
) -> Container {
    let mut mounts: Vec<Mount> = file_mounts
        .iter()
        .map(|(sub_path, path)| Mount::ro(pod.secrets().join(sub_path), path))
        .collect();
    mounts.push(Mount::rw(pod.out(), "/out"));
    let mut argv = command;
    if wrapped {
        mounts.push(Mount::ro(
            pod.secrets().join(format!("env/{name}")),
            ENV_DIR,
        ));
        mounts.push(Mount::ro(pod.bin(), BIN_DIR));
        let mut wrapped_argv = vec![
            format!("{BIN_DIR}/secretstore"),
            "exec".to_owned(),
            "--".to_owned(),
        ];
        wrapped_argv.extend(argv);
        argv = wrapped_argv;
    }
    Container {
        argv,
        env,
        mounts,
        user: Some((APP_UID, APP_UID)),
        groups: vec![FS_GROUP],
        read_only_root: true,
        create_dirs: Vec::new(),
    }
}

/// No secret value in anything a command printed.
fn assert_no_values(output: &Output, values: &[&str]) {
    assert_no_secret(&text(&output.stdout), values);
    assert_no_secret(&text(&output.stderr), values);
}

fn run_agent(pod: &PodVolumes, spec: &AgentSpec) -> Output {
    agent_container(pod, spec).run()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Files (relative paths) under a directory, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.expect("walk");
        if entry.file_type().is_file() {
            out.push(
                entry
                    .path()
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out.sort();
    out
}

const DB_PW_V1: &str = "pw-v1-Qm9vdGlm";
const DB_PW_V2: &str = "pw-v2-'quoted' $HOME";
const DB_HOST: &str = "db-host-7c1e.internal";
const API_KEY: &str = "api-key-4b8d93";
const KV1_TOKEN: &str = "kv1-token-e05a";
const CONFIG_URL: &str = "https://config-9a1f.example/x?y=1";
const ENV_PASS: &str = "env-pass-it's";

fn write_kv_fixtures(lab: &Lab) {
    let v = &lab.vault;
    assert_eq!(
        v.kv2_put(
            "secret",
            "shop/db",
            &json!({ "password": DB_PW_V1, "user": "shop" })
        ),
        1
    );
    assert_eq!(
        v.kv2_put(
            "secret",
            "shop/db",
            &json!({ "password": DB_PW_V2, "user": "shop", "port": 5432, "DB_HOST": DB_HOST })
        ),
        2
    );
    v.put_json(
        "kv1/shop/legacy",
        &json!({ "API_KEY": API_KEY, "token": KV1_TOKEN }),
    );
    v.kv2_put(
        "secret",
        "shop/config",
        &json!({ "url": CONFIG_URL, "flags": { "beta": true }, "retries": 3 }),
    );
    v.kv2_put(
        "secret",
        "shop/envfile",
        &json!({ "DB_USER": "shop", "DB_PASS": ENV_PASS }),
    );
}

const KV_VALUES: [&str; 7] = [
    DB_PW_V1, DB_PW_V2, DB_HOST, API_KEY, KV1_TOKEN, CONFIG_URL, ENV_PASS,
];

/// An env ref of `container`: `name: secretstore:vault:<reference>`.
fn env_ref(container: &'static str, name: &str, reference: &str) -> (&'static str, String, String) {
    (container, name.to_owned(), r(reference))
}

fn r(text: &str) -> String {
    format!("{REF_PREFIX}{text}")
}

/// The app's observations: PID, user, environment, argv, and what it sees of the
/// secret mounts, written to /out/<name>.*; then it exits with `status`.
fn observer(name: &str, status: i32) -> Vec<String> {
    let script = format!(
        r#"echo $$ > /out/{name}.pid
id -u > /out/{name}.uid
env > /out/{name}.env
printf '%s\n' "$@" > /out/{name}.args
for d in /etc/app /etc/worker /secretstore; do [ -d $d ] && find $d -type f; done | sort > /out/{name}.files
for f in $(cat /out/{name}.files); do stat -c '%a %n' $f; done > /out/{name}.modes
for f in $(cat /out/{name}.files); do cat $f > /out/{name}.content$(echo $f | tr / _) 2>/dev/null || echo $f; done > /out/{name}.unreadable
exit {status}"#
    );
    vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        script,
        "sh".to_owned(),
    ]
}

fn env_of(pod: &PodVolumes, name: &str) -> BTreeMap<String, String> {
    env_in(&pod.out(), name)
}

/// The environment an observer container recorded in `dir`.
fn env_in(dir: &Path, name: &str) -> BTreeMap<String, String> {
    read(&dir.join(format!("{name}.env")))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn kv_secrets_reach_files_env_and_args() {
    let lab = Lab::start();
    write_kv_fixtures(&lab);
    let mut files = vec![
        file(
            "secret/shop/db#password",
            "password",
            "/etc/app/db",
            &["app"],
        ),
        file(
            "secret/shop/config",
            "config.json",
            "/etc/app/config",
            &["app", "worker"],
        ),
        file(
            "secret/shop/config",
            "config.yaml",
            "/etc/app/config",
            &["app"],
        ),
        file(
            "secret/data/shop/envfile",
            "db.env",
            "/etc/app/config",
            &["app"],
        ),
        file(
            "secret/shop/config",
            "app.properties",
            "/etc/worker/props",
            &["worker"],
        ),
        file(
            "secret/shop/db#port",
            "port",
            "/etc/worker/props",
            &["worker"],
        ),
        file(
            "kv1/shop/legacy#token",
            "token",
            "/etc/worker/props",
            &["worker"],
        ),
    ];
    files[0].mode = 0o440;
    files[2].format = Some(FileFormat::Yaml);
    files[3].format = Some(FileFormat::Env);
    files[3].mode = 0o400;
    files[4].format = Some(FileFormat::Properties);
    let request = PodRequest {
        env: vec![
            env_ref("app", "DB_PASSWORD", "secret/shop/db#password"),
            env_ref("app", "DB_HOST", "secret/data/shop/db"),
            env_ref("app", "OLD_PASSWORD", "secret/shop/db#password#1"),
            env_ref("app", "API_KEY", "kv1/shop/legacy"),
            env_ref("app", "PORT", "secret/shop/db#port"),
        ],
        files,
        timeout_seconds: 30,
    };
    let (spec, mounts) = request.spec(lab.vault.addr());
    let pod = PodVolumes::new(Some(FS_GROUP));
    pod.write_token(&lab.jwt(), AGENT_UID);
    let accessors_before = lab.token_accessors();

    let started = Instant::now();
    let agent = run_agent(&pod, &spec);
    let took = started.elapsed();
    assert!(agent.status.success(), "{}", describe(&agent));
    assert_no_values(&agent, &KV_VALUES);
    let log = text(&agent.stderr);
    assert!(log.contains("step=login msg=\"logged in\""), "{log}");
    assert!(log.contains("step=revoke msg=\"token revoked\""), "{log}");
    assert!(log.lines().all(|l| l.starts_with("ts=")), "{log}");
    assert_eq!(
        lab.token_accessors(),
        accessors_before,
        "the agent's token is revoked"
    );
    eprintln!("agent took {took:?}\n{log}");

    // What the agent wrote, as the kubelet's volume sees it.
    let secrets = pod.secrets();
    assert_eq!(
        files_under(&secrets),
        [
            "env/app/env.json",
            "files/app/0/password",
            "files/app/1/config.json",
            "files/app/1/config.yaml",
            "files/app/1/db.env",
            "files/worker/0/config.json",
            "files/worker/1/app.properties",
            "files/worker/1/port",
            "files/worker/1/token",
        ]
    );
    assert_eq!(read(&secrets.join("files/app/0/password")), DB_PW_V2);
    assert_eq!(mode(&secrets.join("files/app/0/password")), 0o440);
    assert_eq!(mode(&secrets.join("files/app/1/db.env")), 0o400);
    assert_eq!(mode(&secrets.join("files/app/1/config.json")), 0o444);
    assert_eq!(
        mode(&secrets.join("files/app")),
        0o2755,
        "setgid of the fsGroup kept"
    );
    let meta = std::fs::metadata(secrets.join("files/app/0/password")).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (AGENT_UID, FS_GROUP));
    assert_eq!(
        read(&secrets.join("files/app/1/config.json")),
        format!(
            "{{\n  \"flags\": {{\"beta\":true}},\n  \"retries\": 3,\n  \"url\": \"{CONFIG_URL}\"\n}}\n"
        )
    );
    assert_eq!(
        read(&secrets.join("files/app/1/config.yaml")),
        format!("flags: {{\"beta\": true}}\nretries: 3\nurl: \"{CONFIG_URL}\"\n")
    );
    assert_eq!(
        read(&secrets.join("files/app/1/db.env")),
        "DB_PASS='env-pass-it'\\''s'\nDB_USER='shop'\n"
    );
    assert_eq!(
        read(&secrets.join("files/worker/1/app.properties")),
        format!("flags={{\"beta\":true}}\nretries=3\nurl={CONFIG_URL}\n")
    );
    assert_eq!(read(&secrets.join("files/worker/1/port")), "5432");
    assert_eq!(read(&secrets.join("files/worker/1/token")), KV1_TOKEN);
    assert_eq!(mode(&pod.bin().join("secretstore")), 0o555);

    // The app container: wrapped command, env refs left as written, kubelet-expanded args.
    let env = vec![
        ("DB_PASSWORD".to_owned(), r("secret/shop/db#password")),
        ("DB_HOST".to_owned(), r("secret/data/shop/db")),
        ("OLD_PASSWORD".to_owned(), r("secret/shop/db#password#1")),
        ("API_KEY".to_owned(), r("kv1/shop/legacy")),
        ("PORT".to_owned(), r("secret/shop/db#port")),
        ("PLAIN".to_owned(), "plain value".to_owned()),
    ];
    let mut command = observer("app", 42);
    command.push(format!("--password={}", r("secret/shop/db#password")));
    command.push(format!(
        "postgres://shop:{}@db",
        r("secret/shop/db#password#1")
    ));
    command.push("plain value".to_owned());
    let app = app_container(&pod, "app", &mounts["app"], env, command, true);
    let child = app.spawn();
    let pid = child.id();
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(42), "{}", describe(&output));
    assert_no_values(&output, &KV_VALUES);
    assert_eq!(
        read(&pod.out().join("app.pid")).trim(),
        pid.to_string(),
        "same PID"
    );
    assert_eq!(read(&pod.out().join("app.uid")).trim(), APP_UID.to_string());
    let seen = env_of(&pod, "app");
    assert_eq!(seen["DB_PASSWORD"], DB_PW_V2);
    assert_eq!(seen["OLD_PASSWORD"], DB_PW_V1);
    assert_eq!(seen["DB_HOST"], DB_HOST);
    assert_eq!(seen["API_KEY"], API_KEY);
    assert_eq!(seen["PORT"], "5432");
    assert_eq!(seen["PLAIN"], "plain value");
    assert!(!seen.values().any(|v| v.contains(REF_PREFIX)));
    assert_eq!(
        read(&pod.out().join("app.args")),
        format!("--password={DB_PW_V2}\npostgres://shop:{DB_PW_V1}@db\nplain value\n")
    );
    // Exactly its own files and env file; 0440 is readable across users through the
    // fsGroup, 0400 only by the agent's user.
    assert_eq!(
        read(&pod.out().join("app.modes")),
        "444 /etc/app/config/config.json\n444 /etc/app/config/config.yaml\n400 /etc/app/config/db.env\n440 /etc/app/db/password\n555 /secretstore/bin/secretstore\n444 /secretstore/env/env.json\n"
    );
    assert_eq!(
        read(&pod.out().join("app.unreadable")),
        "/etc/app/config/db.env\n"
    );
    assert_eq!(
        read(&pod.out().join("app.content_etc_app_db_password")),
        DB_PW_V2
    );

    // The worker: no env refs, so not wrapped; it sees only its own files.
    let worker = app_container(
        &pod,
        "worker",
        &mounts["worker"],
        vec![],
        observer("worker", 0),
        false,
    );
    let output = worker.run();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        read(&pod.out().join("worker.files")),
        "/etc/app/config/config.json\n/etc/worker/props/app.properties\n/etc/worker/props/port\n/etc/worker/props/token\n"
    );
}

/// A pod whose bin volume and env file are laid out by hand, for `exec` alone.
fn exec_pod(values: &[(&str, &str)]) -> PodVolumes {
    let pod = PodVolumes::new(None);
    let env_dir = pod.secrets().join("env/app");
    std::fs::create_dir_all(&env_dir).expect("mkdir");
    let map: BTreeMap<String, &str> = values.iter().map(|(k, v)| (r(k), *v)).collect();
    std::fs::write(
        env_dir.join(ENV_FILE_NAME),
        serde_json::to_vec(&map).expect("json"),
    )
    .expect("write env file");
    std::fs::copy(
        env!("CARGO_BIN_EXE_secretstore"),
        pod.bin().join("secretstore"),
    )
    .expect("copy binary");
    pod
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

#[test]
fn exec_keeps_pid_signals_and_exit_status() {
    let pod = exec_pod(&[("secret/a#pw", "exec-value-81f2")]);
    let env = vec![("PW".to_owned(), r("secret/a#pw"))];

    let status = app_container(&pod, "app", &[], env.clone(), sh("exit 3"), true).run();
    assert_eq!(status.status.code(), Some(3), "{}", describe(&status));

    let own_kill = app_container(
        &pod,
        "app",
        &[],
        env.clone(),
        sh("kill -TERM $$; sleep 5"),
        true,
    )
    .run();
    assert_eq!(
        own_kill.status.signal(),
        Some(libc::SIGTERM),
        "{}",
        describe(&own_kill)
    );

    // A signal sent to the container's PID reaches the app: exec replaced itself.
    let ready = pod.out().join("ready");
    let script = format!(
        "[ \"$PW\" = exec-value-81f2 ] && echo $$ > {} && exec sleep 30",
        "/out/ready"
    );
    let child = app_container(&pod, "app", &[], env, sh(&script), true).spawn();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() || read(&ready).trim().is_empty() {
        assert!(Instant::now() < deadline, "the app did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read(&ready).trim(), pid.to_string(), "same PID");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let output = child.wait_with_output().expect("wait");
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGTERM),
        "{}",
        describe(&output)
    );
    assert_no_values(&output, &["exec-value-81f2"]);
}

#[test]
fn exec_refuses_unresolved_references() {
    let pod = exec_pod(&[("secret/a#pw", "exec-value-5d0c")]);
    let env = vec![
        ("PW".to_owned(), r("secret/a#pw")),
        ("KEY".to_owned(), r("secret/a#key")),
    ];
    let argv = vec!["/bin/echo".to_owned(), r("secret/b#token")];
    let output = app_container(&pod, "app", &[], env.clone(), argv, true).run();
    assert_eq!(output.status.code(), Some(125), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("env KEY ({})", r("secret/a#key"))),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("argument 1 ({})", r("secret/b#token"))),
        "{stderr}"
    );
    assert!(!stderr.contains("env PW"), "{stderr}");
    assert_no_values(&output, &["exec-value-5d0c"]);

    // Without its env file (no env mount), it names what needed it.
    let mut no_env = app_container(&pod, "app", &[], env, sh("true"), true);
    no_env.mounts.retain(|m| m.path != ENV_DIR);
    let output = no_env.run();
    assert_eq!(output.status.code(), Some(125), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("/secretstore/env/env.json") && stderr.contains("env PW"),
        "{stderr}"
    );
}

/// A pod reading one KV v2 key into env and one into a file.
fn simple_request(timeout_seconds: u64) -> PodRequest {
    PodRequest {
        env: vec![env_ref("app", "DB_PASSWORD", "secret/shop/db#password")],
        files: vec![file("secret/shop/db#user", "user", "/etc/app/db", &["app"])],
        timeout_seconds,
    }
}

fn assert_simple_pod_written(pod: &PodVolumes) {
    assert_eq!(read(&pod.secrets().join("files/app/0/user")), "shop");
    let env: BTreeMap<String, String> =
        serde_json::from_str(&read(&pod.secrets().join("env/app/env.json"))).expect("env json");
    assert_eq!(env[&r("secret/shop/db#password")], DB_PW_V2);
}

#[test]
fn vault_starting_after_the_agent_is_waited_for() {
    let lab = Lab::start();
    write_kv_fixtures(&lab);
    let port = free_port();
    let (spec, _) = simple_request(60).spec(&format!("http://127.0.0.1:{port}"));
    let pod = PodVolumes::new(None);
    pod.write_token(&lab.jwt(), AGENT_UID);
    let agent = agent_container(&pod, &spec).spawn();
    std::thread::sleep(Duration::from_millis(1500));
    let target = lab
        .vault
        .addr()
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let _forward = Forward::start(port, target);
    let output = agent.wait_with_output().expect("wait");
    assert!(output.status.success(), "{}", describe(&output));
    let log = text(&output.stderr);
    assert!(
        log.contains("step=login msg=\"transient failure, retrying\"")
            && log.contains("onnection refused"),
        "{log}"
    );
    assert_simple_pod_written(&pod);
    assert_no_values(&output, &KV_VALUES);
}

#[test]
fn unreachable_vault_gives_up_at_the_deadline() {
    let (spec, _) = simple_request(2).spec(&format!("http://127.0.0.1:{}", free_port()));
    let pod = PodVolumes::new(None);
    pod.write_token("not-used", AGENT_UID);
    let started = Instant::now();
    let output = run_agent(&pod, &spec);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let log = text(&output.stderr);
    assert!(
        log.contains("gave up after") && log.contains("(timeout 2s)"),
        "{log}"
    );
}

#[test]
fn sealed_vault_is_waited_for_until_unsealed() {
    let lab = Lab::start();
    write_kv_fixtures(&lab);
    let (spec, _) = simple_request(60).spec(lab.vault.addr());
    let pod = PodVolumes::new(None);
    pod.write_token(&lab.jwt(), AGENT_UID);
    lab.vault.seal();
    let agent = agent_container(&pod, &spec).spawn();
    std::thread::sleep(Duration::from_millis(1500));
    lab.vault.unseal();
    let output = agent.wait_with_output().expect("wait");
    assert!(output.status.success(), "{}", describe(&output));
    let log = text(&output.stderr);
    assert!(log.contains("HTTP 503") && log.contains("sealed"), "{log}");
    assert_simple_pod_written(&pod);
    assert_no_values(&output, &KV_VALUES);
}

/// Runs a pod expected to be refused: exit 1, fast, nothing written, token revoked, the
/// message naming `must_name`.
fn assert_refused(lab: &Lab, request: PodRequest, jwt: &str, must_name: &[&str]) -> String {
    let (spec, _) = request.spec(lab.vault.addr());
    let pod = PodVolumes::new(None);
    pod.write_token(jwt, AGENT_UID);
    let accessors = lab.token_accessors();
    let started = Instant::now();
    let output = run_agent(&pod, &spec);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(took < Duration::from_secs(5), "not at once: {took:?}");
    let log = text(&output.stderr);
    let error = log
        .lines()
        .find(|l| l.contains("level=error"))
        .unwrap_or_else(|| panic!("no error line: {log}"))
        .to_owned();
    for name in must_name {
        assert!(error.contains(name), "{name:?} not in: {error}");
    }
    assert!(
        !log.contains("retrying"),
        "a permanent failure is not retried: {log}"
    );
    assert!(files_under(&pod.secrets()).is_empty(), "nothing is written");
    assert_eq!(lab.token_accessors(), accessors, "token revoked");
    assert_no_values(&output, &KV_VALUES);
    eprintln!("{error}");
    error
}

#[test]
fn permission_denied_on_one_path_fails_at_once() {
    let lab = Lab::start();
    write_kv_fixtures(&lab);
    lab.vault
        .kv2_put("secret", "other/x", &json!({ "k": "other-value-0b1d" }));
    let mut request = simple_request(30);
    request.env.push(env_ref("app", "K", "secret/other/x#k"));
    assert_refused(
        &lab,
        request,
        &lab.jwt(),
        &[
            &r("secret/other/x#k"),
            "permission denied",
            "secret/data/other/x",
            "\\\"app\\\"",
        ],
    );
}

#[test]
fn missing_secret_key_or_version_fails_at_once() {
    let lab = Lab::start();
    write_kv_fixtures(&lab);
    let cases: [(&str, &[&str]); 4] = [
        (
            "secret/shop/nope#k",
            &["no secret at", "secret/data/shop/nope"],
        ),
        (
            "secret/shop/db#nokey",
            &["has no key \\\"nokey\\\"", "DB_HOST, password, port, user"],
        ),
        ("secret/shop/db#password#99", &["version 99 of"]),
        (
            "kv1/shop/legacy#token#2",
            &["#version pins a KV v2 version", "KV v1"],
        ),
    ];
    for (reference, names) in cases {
        let mut request = simple_request(30);
        request.env.push(env_ref("app", "X", reference));
        let mut must: Vec<&str> = names.to_vec();
        let full = r(reference);
        must.push(&full);
        assert_refused(&lab, request, &lab.jwt(), &must);
    }
    // A deleted version says so.
    lab.vault
        .post_json("secret/delete/shop/db", &json!({ "versions": [1] }));
    let mut request = simple_request(30);
    request
        .env
        .push(env_ref("app", "OLD", "secret/shop/db#password#1"));
    assert_refused(&lab, request, &lab.jwt(), &["version 1 was deleted"]);
}

#[test]
fn wrong_service_account_is_refused_and_unreadable_token_fails() {
    let lab = Lab::start();
    write_kv_fixtures(&lab);
    let other = lab.issuer.token(NAMESPACE, "other", AUDIENCE);
    assert_refused(
        &lab,
        simple_request(30),
        &other,
        &[
            "refused the login of role \\\"app\\\"",
            "auth/kubernetes/login",
            "bound to this pod's service account",
        ],
    );

    // The token file as root's 0600: the agent (65532) cannot read it.
    let (spec, _) = simple_request(30).spec(lab.vault.addr());
    let pod = PodVolumes::new(None);
    pod.write_token(&lab.jwt(), 0);
    let output = run_agent(&pod, &spec);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let log = text(&output.stderr);
    assert!(
        log.contains("cannot use the service account token /var/run/secrets/secretstore/token")
            && log.contains("ermission denied"),
        "{log}"
    );
}

#[test]
fn dynamic_database_credentials_come_from_one_read_and_keep_their_lease() {
    let lab = Lab::start();
    let pg = Postgres::start();
    pg.attach_to_vault(&lab.vault, "database", "app", "1h");
    let request = PodRequest {
        env: vec![
            env_ref("app", "DB_USER", "database/creds/app#username"),
            env_ref("app", "DB_PASS", "database/creds/app#password"),
        ],
        files: vec![file(
            "database/creds/app",
            "creds.json",
            "/etc/app/db",
            &["app"],
        )],
        timeout_seconds: 60,
    };
    let (spec, mounts) = request.spec(lab.vault.addr());
    assert_eq!(spec.secrets.len(), 1, "one read of the dynamic path");
    let pod = PodVolumes::new(Some(FS_GROUP));
    pod.write_token(&lab.jwt(), AGENT_UID);
    let accessors = lab.token_accessors();
    let agent = run_agent(&pod, &spec);
    assert!(agent.status.success(), "{}", describe(&agent));
    let log = text(&agent.stderr);
    assert!(
        log.contains("leased=true") && log.contains("step=revoke msg=\"token kept"),
        "{log}"
    );
    assert_eq!(
        lab.token_accessors(),
        accessors + 1,
        "the token (and its lease) lives on"
    );

    let creds: serde_json::Value =
        serde_json::from_str(&read(&pod.secrets().join("files/app/0/creds.json"))).expect("json");
    let user = creds["username"].as_str().expect("username").to_owned();
    let password = creds["password"].as_str().expect("password").to_owned();
    let env: BTreeMap<String, String> =
        serde_json::from_str(&read(&pod.secrets().join("env/app/env.json"))).expect("env json");
    assert_eq!(
        env[&r("database/creds/app#username")],
        user,
        "file and env from one read"
    );
    assert_eq!(env[&r("database/creds/app#password")], password);
    assert_no_values(&agent, &[&user, &password]);

    // The app logs in to PostgreSQL with the env credentials.
    let psql = pg.bin().join("psql");
    let script = format!(
        "PGPASSWORD=\"$DB_PASS\" {} -X -At -h 127.0.0.1 -p {} -U \"$DB_USER\" -d postgres -c 'select current_user' > /out/whoami",
        psql.display(),
        pg.port()
    );
    let env = vec![
        ("DB_USER".to_owned(), r("database/creds/app#username")),
        ("DB_PASS".to_owned(), r("database/creds/app#password")),
    ];
    let app = app_container(&pod, "app", &mounts["app"], env, sh(&script), true).run();
    assert!(app.status.success(), "{}", describe(&app));
    assert_no_values(&app, &[&password]);
    assert_eq!(read(&pod.out().join("whoami")).trim(), user);

    // The lease outlives the init container.
    let (status, leases) = lab
        .vault
        .request("LIST", "sys/leases/lookup/database/creds/app", None);
    assert_eq!(status, 200, "{leases}");
    assert_eq!(
        leases["data"]["keys"].as_array().map(Vec::len),
        Some(1),
        "{leases}"
    );
    let again = pg.psql_as(&user, &password, "select 1");
    assert!(again.status.success(), "{}", text(&again.stderr));
}

/// A TLS OpenBao (certificate for localhost, localhost4, 127.0.0.1 from its own CA)
/// configured through the CLI inside namespace `team`: KV v2 at `secret/`, the app
/// policy, and the `jwt` auth role.
fn tls_vault_with_namespace(issuer: &ServiceAccountIssuer) -> OpenBao {
    let vault = OpenBao::start_tls();
    let bao = |namespace: &str, args: &[&str]| {
        let output = vault
            .bao_command(args)
            .env("BAO_NAMESPACE", namespace)
            .output()
            .expect("run bao");
        assert!(
            output.status.success(),
            "bao {args:?}: {}",
            describe(&output)
        );
    };
    bao("", &["namespace", "create", "team"]);
    bao("team", &["secrets", "enable", "-path=secret", "kv-v2"]);
    bao(
        "team",
        &[
            "kv",
            "put",
            "secret/shop/db",
            &format!("password={DB_PW_V2}"),
            "user=shop",
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("app.hcl");
    std::fs::write(
        &policy,
        r#"path "secret/data/shop/*" { capabilities = ["read"] }"#,
    )
    .expect("policy");
    bao(
        "team",
        &["policy", "write", "app", &policy.to_string_lossy()],
    );
    bao("team", &["auth", "enable", "-path=kubernetes", "jwt"]);
    let pem = dir.path().join("sa.pem");
    std::fs::write(&pem, issuer.public_key_pem()).expect("pem");
    bao(
        "team",
        &[
            "write",
            "auth/kubernetes/config",
            &format!("jwt_validation_pubkeys=@{}", pem.display()),
            &format!("bound_issuer={}", issuer.issuer()),
        ],
    );
    bao(
        "team",
        &[
            "write",
            "auth/kubernetes/role/app",
            "role_type=jwt",
            "user_claim=sub",
            &format!("bound_audiences={AUDIENCE}"),
            &format!("bound_subject=system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"),
            "token_policies=app",
            "token_ttl=1h",
        ],
    );
    vault
}

#[test]
fn tls_with_ca_server_name_and_namespace() {
    let issuer = ServiceAccountIssuer::new();
    let vault = tls_vault_with_namespace(&issuer);
    let jwt = issuer.token(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE);
    let ca_volume = tempfile::tempdir().expect("tempdir");
    let ca_dir = ca_volume.path().to_owned();
    // A ConfigMap volume: world-readable.
    std::fs::set_permissions(&ca_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    std::fs::copy(vault.ca_cert_path().expect("TLS"), ca_dir.join("ca.crt")).expect("copy ca");
    let run = |server_name: Option<&str>, with_ca: bool| {
        let (mut spec, _) = simple_request(5).spec(vault.addr());
        spec.vault.namespace = Some("team".to_owned());
        spec.vault.tls_server_name = server_name.map(str::to_owned);
        let pod = PodVolumes::new(None);
        pod.write_token(&jwt, AGENT_UID);
        let mut agent = agent_container(&pod, &spec);
        if with_ca {
            spec.vault.ca_cert_file = Some(format!("{CA_DIR}/ca.crt"));
            agent = agent_container(&pod, &spec);
            agent.mounts.push(Mount::ro(&ca_dir, CA_DIR));
        }
        let started = Instant::now();
        let output = agent.run();
        assert_no_values(&output, &[DB_PW_V2]);
        (pod, output, started.elapsed())
    };

    // The configured CA and a server name the certificate holds (the address is an IP).
    let (pod, output, _) = run(Some("localhost4"), true);
    assert!(output.status.success(), "{}", describe(&output));
    assert_simple_pod_written(&pod);

    // A server name the certificate does not hold: a TLS failure, not retried.
    let (_, output, took) = run(Some("wrong.example"), true);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let log = text(&output.stderr);
    assert!(
        log.contains("TLS: check the CA certificate and the TLS server name"),
        "{log}"
    );
    assert!(
        !log.contains("retrying") && took < Duration::from_secs(5),
        "{log}"
    );

    // No CA configured, and the image has no system CA store.
    let (_, output, _) = run(None, false);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("system CA store"),
        "{}",
        describe(&output)
    );
}

/// Start-to-exit time of the agent for 20 secrets (20 env refs in one container, so the
/// binary is copied too), best of 5 runs; the agent's own `elapsed_ms` is printed beside
/// the wall time, which includes the mount-namespace setup.
#[test]
fn twenty_secrets_are_fetched_quickly() {
    let lab = Lab::start();
    let mut request = PodRequest {
        timeout_seconds: 30,
        ..PodRequest::default()
    };
    for i in 0..20 {
        let name = format!("SECRET_{i:02}");
        let path = format!("shop/s{i:02}");
        lab.vault.kv2_put(
            "secret",
            &path,
            &json!({ &name: format!("value-{i:02}-c4f1") }),
        );
        request
            .env
            .push(env_ref("app", &name, &format!("secret/{path}")));
    }
    let (spec, _) = request.spec(lab.vault.addr());
    assert_eq!(spec.secrets.len(), 20);
    let mut best = Duration::MAX;
    let mut agent_ms = String::new();
    for _ in 0..5 {
        let pod = PodVolumes::new(None);
        pod.write_token(&lab.jwt(), AGENT_UID);
        let started = Instant::now();
        let output = run_agent(&pod, &spec);
        let took = started.elapsed();
        assert!(output.status.success(), "{}", describe(&output));
        if took < best {
            best = took;
            agent_ms = text(&output.stderr)
                .lines()
                .find(|l| l.contains("step=done"))
                .and_then(|l| l.rsplit("elapsed_ms=").next())
                .unwrap_or_default()
                .trim()
                .to_owned();
        }
    }
    eprintln!(
        "20 secrets: best wall time {best:?} (agent's own elapsed_ms={agent_ms}), binary {}",
        agent_binary()
    );
    assert!(best < Duration::from_secs(5), "20 secrets took {best:?}");
}

#[test]
fn kubelet_expansion_of_command_args_and_env() {
    let vars: BTreeMap<String, String> = [("A".to_owned(), "x".to_owned())].into();
    assert_eq!(
        expand("$(A)-$(B)-$$(A)-$$-$x-$(", &vars),
        "x-$(B)-$(A)-$-$x-$("
    );
}

/// testdata/pod/shop.yaml through `secretstore render` (TLS with a CA from a ConfigMap,
/// a server name, a token audience), then every container of the rendered pod run with
/// exactly its rendered volume mounts, env, command, args and security context: the
/// agent first, the user's init container, then the app containers.
#[test]
fn rendered_workload_runs_as_the_kubelet_runs_it() {
    let lab = Lab::on(OpenBao::start_tls());
    write_kv_fixtures(&lab);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("secretstore.yaml");
    std::fs::write(
        &config,
        format!(
            "vault:\n  address: {}\n  audience: {AUDIENCE}\n  caCert:\n    configMap: vault-ca\n  tlsServerName: localhost\nagent:\n  timeout: 30s\n",
            lab.vault.addr()
        ),
    )
    .expect("write config");
    let render = support::secretstore()
        .arg("render")
        .arg("--config")
        .arg(&config)
        .arg(support::repo_root().join("testdata/pod/shop.yaml"))
        .output()
        .expect("run render");
    assert!(render.status.success(), "{}", describe(&render));
    assert_no_values(&render, &KV_VALUES);
    let doc: serde_json::Value =
        yaml_serde::from_str(&text(&render.stdout)).expect("rendered YAML");
    let spec = &doc["spec"]["template"]["spec"];
    let ca = read(lab.vault.ca_cert_path().expect("TLS"));
    let pod = KubeletPod::new(
        spec,
        NAMESPACE,
        &lab.issuer,
        &[("vault-ca", "ca.crt", &ca)],
        Path::new(&agent_binary()),
    );

    let init = pod.init_containers();
    assert_eq!(init[0].0, "secretstore-agent", "the agent runs first");
    for (name, container) in &init {
        let output = container.run();
        assert!(
            output.status.success(),
            "init container {name}: {}",
            describe(&output)
        );
        assert_no_values(&output, &KV_VALUES);
    }
    let mut pids = BTreeMap::new();
    for (name, container) in pod.containers() {
        let child = container.spawn();
        pids.insert(name.clone(), child.id());
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "container {name}: {}",
            describe(&output)
        );
        assert_no_values(&output, &KV_VALUES);
    }

    let results = pod.volume("results");
    let api = env_in(results, "api");
    assert_eq!(api["DB_PASSWORD"], DB_PW_V2);
    assert_eq!(api["DB_USER"], "shop");
    assert_eq!(api["OLD_PASSWORD"], DB_PW_V1);
    assert_eq!(api["API_KEY"], API_KEY);
    assert_eq!(api["PLAIN"], "plain value");
    assert_eq!(
        api["DB_URL"],
        format!("postgres://shop:{DB_PW_V2}@db:5432/shop")
    );
    assert_eq!(
        read(&results.join("api.args")),
        format!("--password={DB_PW_V2}\n--user=shop\nplain value\n")
    );
    assert_eq!(
        read(&results.join("api.pid")).trim(),
        pids["api"].to_string()
    );
    assert_eq!(read(&results.join("api.uid")).trim(), "1000");
    assert_eq!(
        read(&results.join("api.modes")),
        "444 /etc/app/config/config.yaml\n440 /etc/app/db/password\n555 /secretstore/bin/secretstore\n444 /secretstore/env/env.json\n"
    );
    assert_eq!(read(&results.join("api.unreadable")), "");
    assert_eq!(
        read(&results.join("api.content_etc_app_db_password")),
        DB_PW_V2
    );
    assert_eq!(
        read(&results.join("api.content_etc_app_config_config.yaml")),
        format!("flags: {{\"beta\": true}}\nretries: 3\nurl: \"{CONFIG_URL}\"\n")
    );

    let worker = env_in(results, "worker");
    assert!(!worker.values().any(|v| v.contains(REF_PREFIX)));
    assert_eq!(
        read(&results.join("worker.files")),
        "/etc/app/config/config.yaml\n/etc/worker/token\n"
    );
    assert_eq!(
        read(&results.join("worker.content_etc_worker_token")),
        KV1_TOKEN
    );

    let migrate = env_in(results, "migrate");
    assert_eq!(migrate["DB_PASSWORD"], DB_PW_V2);
    assert_eq!(
        read(&results.join("migrate.files")),
        "/etc/worker/token\n/secretstore/bin/secretstore\n/secretstore/env/env.json\n"
    );
}

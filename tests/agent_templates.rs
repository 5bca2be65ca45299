//! Templates in the pod (SPEC 1.4), end to end: `secretstore agent` evaluates the spec's
//! templates over real OpenBao answers (KV v1 and v2, a transit decryption, a PostgreSQL
//! lease) and writes their files and env values; `secretstore exec` gives a Python app
//! `secretstore:file:` env values; in live mode a template's file is written again only
//! when its output changes. The specs are written by hand the way render lays them out,
//! and each container runs in its own mount namespace with exactly the pod's mounts
//! (tests/support/pod.rs). Waits are polls with generous bounds; no secret value may
//! appear in any log.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use secretstore::pod::agent_spec::{
    AgentSpec, EnvFileOutput, EnvRef, FileFormat, FileOutput, LiveSpec, SecretRead, TemplateSpec,
    VaultConnection, AGENT_SECRETS_DIR, BIN_DIR, ENV_DIR, ENV_FILE_NAME, FILE_REF_PREFIX,
    READY_FILE_NAME, REF_PREFIX, TOKEN_DIR, TOKEN_FILE_NAME,
};
use serde_json::{json, Value};
use support::assert_no_secret;
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;
use support::output::{describe, text};
use support::pod::{agent_container, Container, Mount, PodVolumes, AGENT_UID, FS_GROUP};
use support::postgres::Postgres;
use support::sidecar::{wait_until, Running};

const APP_UID: u32 = 1000;
const NAMESPACE: &str = "shop";
const SERVICE_ACCOUNT: &str = "app";
const AUDIENCE: &str = "vault";
const AUTH_MOUNT: &str = "kubernetes";
const PYTHON: &str = "/usr/bin/python3";

/// OpenBao with KV v2 at `secret/`, KV v1 at `kv1/`, transit key `k`, `jwt` auth, and role
/// `app` (bound to shop/app) with a policy that allows exactly what the tests read.
struct Lab {
    vault: OpenBao,
    issuer: ServiceAccountIssuer,
}

impl Lab {
    fn on(vault: OpenBao) -> Lab {
        vault.enable_secrets_engine("kv1", "kv", &json!({ "options": { "version": "1" } }));
        vault.enable_secrets_engine("transit", "transit", &json!({}));
        vault.post_json("transit/keys/k", &json!({}));
        vault.put_policy(
            "app",
            r#"
path "secret/data/shop/*" { capabilities = ["read"] }
path "kv1/shop/*" { capabilities = ["read"] }
path "transit/decrypt/k" { capabilities = ["update"] }
path "database/creds/app" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"#,
        );
        let issuer = ServiceAccountIssuer::new();
        vault.enable_jwt_auth(AUTH_MOUNT, &issuer);
        vault.write_jwt_role(
            AUTH_MOUNT,
            "app",
            &JwtRole::service_account(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE, &["app"]),
        );
        Lab { vault, issuer }
    }

    fn pod(&self) -> PodVolumes {
        let pod = PodVolumes::new(Some(FS_GROUP));
        pod.write_token(
            &self.issuer.token(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE),
            AGENT_UID,
        );
        pod
    }

    /// A transit ciphertext of `plaintext` under key `k`.
    fn encrypt(&self, plaintext: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
        let answer = self
            .vault
            .post_json("transit/encrypt/k", &json!({ "plaintext": b64 }));
        answer["data"]["ciphertext"]
            .as_str()
            .expect("ciphertext")
            .to_owned()
    }
}

fn read_of(path: &str) -> SecretRead {
    SecretRead {
        path: path.to_owned(),
        version: None,
        params: None,
        renew_before_seconds: None,
    }
}

fn template(name: &str, text: &str, sources: &[(&str, usize)]) -> TemplateSpec {
    TemplateSpec {
        name: name.to_owned(),
        text: text.to_owned(),
        sources: sources
            .iter()
            .map(|(alias, index)| ((*alias).to_owned(), *index))
            .collect(),
    }
}

/// A template's file, as render lays out a `files` config's entry for container `app`:
/// `files/app/<k>/<name>`, written together with the other files of its directory.
fn template_file(t: usize, k: usize, name: &str, config: &str) -> FileOutput {
    FileOutput {
        secret: None,
        key: None,
        format: FileFormat::Raw,
        template: Some(t),
        mode: 0o440,
        path: format!("{AGENT_SECRETS_DIR}/files/app/{k}/{name}"),
        reference: format!("filesecret-config-{config}/{name}"),
        on_change: None,
        together: true,
    }
}

fn key_file(secret: usize, key: &str, k: usize, name: &str, reference: &str) -> FileOutput {
    FileOutput {
        secret: Some(secret),
        key: Some(key.to_owned()),
        format: FileFormat::Raw,
        template: None,
        mode: 0o444,
        path: format!("{AGENT_SECRETS_DIR}/files/app/{k}/{name}"),
        reference: reference.to_owned(),
        on_change: None,
        together: false,
    }
}

fn env_ref(reference: &str) -> EnvRef {
    EnvRef {
        reference: reference.to_owned(),
        secret: None,
        key: None,
        format: None,
        template: None,
    }
}

fn spec(
    lab: &Lab,
    secrets: Vec<SecretRead>,
    templates: Vec<TemplateSpec>,
    files: Vec<FileOutput>,
    refs: Vec<EnvRef>,
) -> AgentSpec {
    let env_files = if refs.is_empty() {
        Vec::new()
    } else {
        vec![EnvFileOutput {
            container: "app".to_owned(),
            path: format!("{AGENT_SECRETS_DIR}/env/app/{ENV_FILE_NAME}"),
            refs,
        }]
    };
    AgentSpec {
        v: AgentSpec::VERSION,
        vault: VaultConnection {
            address: lab.vault.addr().to_owned(),
            auth_path: format!("auth/{AUTH_MOUNT}"),
            role: "app".to_owned(),
            namespace: None,
            ca_cert_file: None,
            tls_server_name: None,
            token_file: format!("{TOKEN_DIR}/{TOKEN_FILE_NAME}"),
        },
        timeout_seconds: 60,
        secrets,
        templates,
        files,
        copy_binary_to: (!env_files.is_empty()).then(|| format!("{BIN_DIR}/secretstore")),
        secrets_root: AGENT_SECRETS_DIR.to_owned(),
        bin_root: BIN_DIR.to_owned(),
        env_files,
        live: None,
    }
}

/// The app container `app`, its command wrapped in `secretstore exec --`: its env
/// directory and the bin volume mounted, `/out` for what it reports.
fn wrapped_app(pod: &PodVolumes, env: Vec<(String, String)>, command: Vec<String>) -> Container {
    let mut argv = vec![
        format!("{BIN_DIR}/secretstore"),
        "exec".to_owned(),
        "--".to_owned(),
    ];
    argv.extend(command);
    Container {
        argv,
        env,
        mounts: vec![
            Mount::rw(pod.out(), "/out"),
            Mount::ro(pod.secrets().join("env/app"), ENV_DIR),
            Mount::ro(pod.bin(), BIN_DIR),
        ],
        user: Some((APP_UID, APP_UID)),
        groups: vec![FS_GROUP],
        read_only_root: true,
        create_dirs: Vec::new(),
    }
}

/// A Python app that writes each named env var's bytes to `/out/<NAME>`.
fn python_reporter(names: &[&str]) -> Vec<String> {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: run scripts/install-test-deps.sh"
    );
    let script = format!(
        "import os\nfor name in {names:?}:\n    with open('/out/' + name, 'wb') as f:\n        f.write(os.environb[name.encode()])\n"
    );
    vec![PYTHON.to_owned(), "-c".to_owned(), script]
}

fn assert_no_values(output: &Output, values: &[&str]) {
    assert_no_secret(&text(&output.stdout), values);
    assert_no_secret(&text(&output.stderr), values);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `dir` (relative paths, sorted).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .expect("under dir")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, written out
/// here so the expected strings do not come from the code under test.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const DB_PASSWORD: &str = "p@ss: w!rd";
const DB_PASSWORD_ENCODED: &str = "p%40ss%3A%20w%21rd";
const LEGACY_TOKEN: &str = "legacy-token-5e1f";
const TRANSIT_PLAINTEXT: &str = "transit plain: 0c7d!\n";

/// Templates over a KV v2 and a KV v1 secret and a transit decryption, written as files
/// and given to a Python app as `secretstore:file:` env values through `exec`, byte for
/// byte; the same request read once. A template that names a missing key fails the fetch,
/// naming config, alias and key, and writes nothing; one that tries to include a file is
/// refused with the spec.
#[test]
fn templates_over_kv_and_transit_reach_files_and_env() {
    let lab = Lab::on(OpenBao::start());
    assert!(DB_PASSWORD_ENCODED == percent_encoded(DB_PASSWORD));
    lab.vault.kv2_put(
        "secret",
        "shop/db",
        &json!({ "username": "shop", "password": DB_PASSWORD, "port": 5432 }),
    );
    lab.vault.put_json(
        "kv1/shop/legacy",
        &json!({ "host": "db.internal", "token": LEGACY_TOKEN, "replicas": ["r1", "r2"] }),
    );
    let ciphertext = lab.encrypt(TRANSIT_PLAINTEXT);
    let mut decrypt = read_of("transit/decrypt/k");
    decrypt.params = Some(
        json!({ "ciphertext": ciphertext })
            .as_object()
            .expect("object")
            .clone(),
    );
    let secrets = vec![
        read_of("secret/shop/db"),
        read_of("kv1/shop/legacy"),
        decrypt,
    ];
    let url_text = "postgresql://${ db.username }:${ db.password | urlencode }@${ legacy.host }:${ db.port }/shop\n";
    let properties_text = "# app.properties\nuser=${db.username}\n{% for k, v in legacy | items %}{% if k != \"replicas\" %}legacy.${k}=${v}\n{% endif %}{% endfor %}replicas=${ legacy.replicas | join(\",\") }\nliteral=$${ not.a.template }\ndecrypted=${ t.plaintext | b64decode }";
    let templates = vec![
        template(
            "filesecret-config-app/db.url",
            url_text,
            &[("db", 0), ("legacy", 1)],
        ),
        template(
            "filesecret-config-app/app.properties",
            properties_text,
            &[("db", 0), ("legacy", 1), ("t", 2)],
        ),
    ];
    let files = vec![
        template_file(0, 0, "db.url", "app"),
        template_file(1, 0, "app.properties", "app"),
        key_file(1, "token", 1, "token", "kv1/shop/legacy#token"),
    ];
    let url_ref = format!("{FILE_REF_PREFIX}app/db.url");
    let json_ref = format!("{FILE_REF_PREFIX}raw/db.json");
    let replicas_ref = format!("{FILE_REF_PREFIX}raw/replicas");
    let password_ref = format!("{REF_PREFIX}secret/shop/db#password");
    let refs = vec![
        EnvRef {
            template: Some(0),
            ..env_ref(&url_ref)
        },
        EnvRef {
            secret: Some(0),
            format: Some(FileFormat::Json),
            ..env_ref(&json_ref)
        },
        EnvRef {
            secret: Some(1),
            key: Some("replicas".to_owned()),
            ..env_ref(&replicas_ref)
        },
        EnvRef {
            secret: Some(0),
            key: Some("password".to_owned()),
            ..env_ref(&password_ref)
        },
    ];
    let spec = spec(&lab, secrets, templates, files, refs);
    let pod = lab.pod();
    let values = [
        DB_PASSWORD,
        DB_PASSWORD_ENCODED,
        LEGACY_TOKEN,
        TRANSIT_PLAINTEXT.trim_end(),
        ciphertext.as_str(),
    ];

    let agent = agent_container(&pod, &spec).run();
    assert!(agent.status.success(), "{}", describe(&agent));
    assert_no_values(&agent, &values);
    let log = text(&agent.stderr);
    assert_eq!(
        log.matches("msg=\"secret read\"").count() + log.matches("msg=\"secret issued\"").count(),
        3,
        "each request once, however many templates and env values use it:\n{log}"
    );
    let dir = pod.secrets().join("files/app/0");
    assert_eq!(
        read(&dir.join("db.url")),
        "postgresql://shop:p%40ss%3A%20w%21rd@db.internal:5432/shop\n"
    );
    assert_eq!(
        read(&dir.join("app.properties")),
        "# app.properties\nuser=shop\nlegacy.host=db.internal\nlegacy.token=legacy-token-5e1f\nreplicas=r1,r2\nliteral=${ not.a.template }\ndecrypted=transit plain: 0c7d!\n"
    );
    // A `files` config's directory is one version behind a `..data` link.
    assert!(std::fs::symlink_metadata(dir.join("..data"))
        .expect("..data link")
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::metadata(dir.join("db.url")).expect("stat").mode() & 0o777,
        0o440
    );
    assert_eq!(read(&pod.secrets().join("files/app/1/token")), LEGACY_TOKEN);

    let names = [
        "DATABASE_URL",
        "DB_JSON",
        "REPLICAS",
        "DB_PASSWORD",
        "PLAIN",
    ];
    let env = vec![
        ("DATABASE_URL".to_owned(), url_ref.clone()),
        ("DB_JSON".to_owned(), json_ref),
        ("REPLICAS".to_owned(), replicas_ref),
        ("DB_PASSWORD".to_owned(), password_ref),
        ("PLAIN".to_owned(), "not a reference".to_owned()),
    ];
    let app = wrapped_app(&pod, env.clone(), python_reporter(&names)).run();
    assert!(app.status.success(), "{}", describe(&app));
    assert_no_values(&app, &values);
    let out = |name: &str| read(&pod.out().join(name));
    assert_eq!(
        out("DATABASE_URL"),
        "postgresql://shop:p%40ss%3A%20w%21rd@db.internal:5432/shop\n",
        "the env value is the file's content, newline included"
    );
    assert_eq!(
        out("DB_JSON"),
        "{\n  \"password\": \"p@ss: w!rd\",\n  \"port\": 5432,\n  \"username\": \"shop\"\n}\n"
    );
    assert_eq!(
        out("REPLICAS"),
        "r1\nr2\n",
        "a list as its raw file holds it"
    );
    assert_eq!(out("DB_PASSWORD"), DB_PASSWORD);
    assert_eq!(out("PLAIN"), "not a reference");

    // A `secretstore:file:` value the env file does not hold: the app does not start.
    let mut missing = env;
    missing[0].1 = format!("{FILE_REF_PREFIX}app/db.uri");
    std::fs::remove_file(pod.out().join("DATABASE_URL")).expect("rm");
    let app = wrapped_app(&pod, missing, python_reporter(&names)).run();
    assert_eq!(app.status.code(), Some(125), "{}", describe(&app));
    assert_no_values(&app, &values);
    assert!(
        text(&app.stderr).contains("env DATABASE_URL (secretstore:file:app/db.uri)"),
        "{}",
        describe(&app)
    );
    assert!(
        !pod.out().join("DATABASE_URL").exists(),
        "the app never ran"
    );

    // A key the secret does not have: the fetch fails naming config, alias and key, and
    // nothing is written.
    let mut typo = spec.clone();
    typo.templates[0].text =
        "postgresql://${ db.username }:${ db.pasword | urlencode }@h/shop".to_owned();
    let pod = lab.pod();
    let agent = agent_container(&pod, &typo).run();
    assert_eq!(agent.status.code(), Some(1), "{}", describe(&agent));
    assert_no_values(&agent, &values);
    let log = text(&agent.stderr);
    assert!(
        log.contains(
            "template filesecret-config-app/db.url: source `db` (secret \\\"secret/shop/db\\\") has no key `pasword` (its keys: password, port, username)"
        ),
        "{log}"
    );
    assert_eq!(files_under(&pod.secrets()), Vec::<String>::new());

    // A template that tries to read a file is refused with the spec, before any login.
    let mut include = spec;
    include.templates[1].text = "{% include \"/etc/passwd\" %}".to_owned();
    let pod = lab.pod();
    let agent = agent_container(&pod, &include).run();
    assert_eq!(agent.status.code(), Some(2), "{}", describe(&agent));
    let log = text(&agent.stderr);
    assert!(
        log.contains("template filesecret-config-app/app.properties: 1:")
            && log.contains("include"),
        "{log}"
    );
    assert!(!log.contains("logged in"), "{log}");
    assert_eq!(files_under(&pod.secrets()), Vec::<String>::new());
}

/// Requests to `path` in OpenBao's audit log (one entry per request, one per answer).
fn audited_requests(audit: &Path, path: &str) -> usize {
    read(audit)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "request" && e["request"]["path"] == path)
        .count()
}

/// The `data` of the answer OpenBao gave to the one read of `path` (the raw audit log).
fn audited_answer(audit: &Path, path: &str) -> Value {
    read(audit)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["type"] == "response" && e["request"]["path"] == path)
        .map(|e| e["response"]["data"].clone())
        .unwrap_or_else(|| panic!("no audited answer for {path}"))
}

/// A connection string over a PostgreSQL lease whose password has `@ : space !` (the
/// database's password policy asks for each): byte for byte in the file and in the env
/// value through `exec`, and one that PostgreSQL accepts. The template and an env
/// reference to the same lease share one read (the audit log counts it).
#[test]
fn database_lease_template_and_env_ref_share_one_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.log");
    let lab = Lab::on(OpenBao::start_with_raw_audit(&audit));
    let pg = Postgres::start();
    pg.attach_to_vault(&lab.vault, "database", "app", "1h");
    lab.vault.put_json(
        "sys/policies/password/punctuated",
        &json!({ "policy": r#"
length = 24
rule "charset" {
  charset = "abcdefghijklmnopqrstuvwxyz0123456789"
  min-chars = 4
}
rule "charset" {
  charset = "@"
  min-chars = 1
}
rule "charset" {
  charset = ":"
  min-chars = 1
}
rule "charset" {
  charset = " "
  min-chars = 1
}
rule "charset" {
  charset = "!"
  min-chars = 1
}
"# }),
    );
    lab.vault.post_json(
        "database/config/postgres",
        &json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg.vault_connection_url(),
            "username": pg.superuser(),
            "password": pg.password(),
            "allowed_roles": ["app"],
            "verify_connection": true,
            "password_policy": "punctuated",
        }),
    );
    let url_ref = format!("{FILE_REF_PREFIX}db/url");
    let user_ref = format!("{REF_PREFIX}database/creds/app#username");
    let url_text = format!(
        "postgresql://${{ db.username }}:${{ db.password | urlencode }}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port()
    );
    let spec = spec(
        &lab,
        vec![read_of("database/creds/app")],
        vec![template(
            "filesecret-config-db/url",
            &url_text,
            &[("db", 0)],
        )],
        vec![template_file(0, 0, "url", "db")],
        vec![
            EnvRef {
                template: Some(0),
                ..env_ref(&url_ref)
            },
            EnvRef {
                secret: Some(0),
                key: Some("username".to_owned()),
                ..env_ref(&user_ref)
            },
        ],
    );
    let pod = lab.pod();
    let agent = agent_container(&pod, &spec).run();
    assert!(agent.status.success(), "{}", describe(&agent));
    assert_eq!(
        audited_requests(&audit, "database/creds/app"),
        1,
        "one lease for the template and the env reference"
    );
    let creds = audited_answer(&audit, "database/creds/app");
    let user = creds["username"].as_str().expect("username").to_owned();
    let password = creds["password"].as_str().expect("password").to_owned();
    for c in ['@', ':', ' ', '!'] {
        assert!(
            password.contains(c),
            "the password policy gives {c:?} in every password"
        );
    }
    let encoded = percent_encoded(&password);
    let expected = format!(
        "postgresql://{user}:{encoded}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port()
    );
    let values = [password.as_str(), encoded.as_str()];
    assert_no_values(&agent, &values);
    let url = read(&pod.secrets().join("files/app/0/url"));
    assert_eq!(url, expected);

    let env = vec![
        ("DATABASE_URL".to_owned(), url_ref),
        ("DB_USER".to_owned(), user_ref),
    ];
    let app = wrapped_app(&pod, env, python_reporter(&["DATABASE_URL", "DB_USER"])).run();
    assert!(app.status.success(), "{}", describe(&app));
    assert_no_values(&app, &values);
    assert_eq!(read(&pod.out().join("DATABASE_URL")), expected);
    assert_eq!(read(&pod.out().join("DB_USER")), user);

    // PostgreSQL takes the connection string as it is.
    let whoami = std::process::Command::new(pg.bin().join("psql"))
        .args(["-X", "-At", &url, "-c", "select current_user"])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    assert!(whoami.status.success(), "{}", describe(&whoami));
    assert_eq!(text(&whoami.stdout).trim(), user);
}

/// (inode, mtime) of a file, through a `..data` link.
fn version_of(path: &Path) -> (u64, i64, i64) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.ino(), m.mtime(), m.mtime_nsec())
}

fn refreshes(sidecar: &Running) -> usize {
    sidecar.log().matches("msg=\"secrets refreshed\"").count()
}

/// Waits for `n` more refreshes than `since` (each reads every KV secret, 1 s apart).
fn wait_refreshes(sidecar: &Running, since: usize, n: usize) {
    wait_until(
        60,
        &format!("{n} refreshes"),
        || refreshes(sidecar) >= since + n,
        || sidecar.log(),
    );
}

/// Live mode: a template over a KV secret is written again when a key it uses changes,
/// and not when only a key it does not use changes (same inode and mtime, while a file of
/// that key is rewritten); its env value follows. A key that disappears is an error that
/// keeps the last good file.
#[test]
fn live_template_is_written_only_when_its_output_changes() {
    let lab = Lab::on(OpenBao::start());
    lab.vault.kv2_put(
        "secret",
        "shop/live",
        &json!({ "user": "live", "password": "pw-ONE-2a4e", "other": "other-ONE" }),
    );
    let url_ref = format!("{FILE_REF_PREFIX}live/url");
    let mut spec = spec(
        &lab,
        vec![read_of("secret/shop/live")],
        vec![template(
            "filesecret-config-live/url",
            "user=${ s.user }\npassword=${ s.password }\n",
            &[("s", 0)],
        )],
        vec![
            template_file(0, 0, "url", "live"),
            key_file(0, "other", 1, "other", "secret/shop/live#other"),
        ],
        vec![EnvRef {
            template: Some(0),
            ..env_ref(&url_ref)
        }],
    );
    spec.live = Some(LiveSpec {
        refresh_seconds: 1,
        revoke_on_stop: true,
        metrics_port: None,
    });
    let pod = lab.pod();
    let sidecar = Running::start(&agent_container(&pod, &spec));
    let ready: PathBuf = pod.secrets().join(READY_FILE_NAME);
    wait_until(60, "the first fetch", || ready.exists(), || sidecar.log());
    let file = pod.secrets().join("files/app/0/url");
    let other = pod.secrets().join("files/app/1/other");
    let env_file = pod.secrets().join(format!("env/app/{ENV_FILE_NAME}"));
    let env_value = || -> String {
        let env: BTreeMap<String, String> =
            serde_json::from_str(&read(&env_file)).expect("env json");
        env[&url_ref].clone()
    };
    assert_eq!(read(&file), "user=live\npassword=pw-ONE-2a4e\n");
    assert_eq!(env_value(), "user=live\npassword=pw-ONE-2a4e\n");
    let first = version_of(&file);
    let first_env = version_of(&env_file);

    // Only a key the template does not use changes: its file is read and left alone.
    lab.vault.kv2_put(
        "secret",
        "shop/live",
        &json!({ "user": "live", "password": "pw-ONE-2a4e", "other": "other-TWO" }),
    );
    wait_until(
        60,
        "the other key's file to change",
        || read(&other) == "other-TWO",
        || sidecar.log(),
    );
    wait_refreshes(&sidecar, refreshes(&sidecar), 2);
    assert_eq!(version_of(&file), first, "same output, no write");
    assert_eq!(version_of(&env_file), first_env, "same env value, no write");

    // A key it uses changes: the file is written with the new output.
    lab.vault.kv2_put(
        "secret",
        "shop/live",
        &json!({ "user": "live", "password": "pw-TWO-9b1c", "other": "other-TWO" }),
    );
    wait_until(
        60,
        "the template's file to change",
        || read(&file) == "user=live\npassword=pw-TWO-9b1c\n",
        || sidecar.log(),
    );
    assert_ne!(version_of(&file), first);
    wait_until(
        60,
        "the env value to change",
        || env_value() == "user=live\npassword=pw-TWO-9b1c\n",
        || sidecar.log(),
    );

    // The key disappears: logged, naming the template, alias and key; the file stays.
    lab.vault.kv2_put(
        "secret",
        "shop/live",
        &json!({ "user": "live", "other": "other-THREE" }),
    );
    wait_until(
        60,
        "the other key's file to change again",
        || read(&other) == "other-THREE",
        || sidecar.log(),
    );
    wait_refreshes(&sidecar, refreshes(&sidecar), 2);
    assert_eq!(read(&file), "user=live\npassword=pw-TWO-9b1c\n");
    let log = sidecar.log();
    assert!(
        log.contains("template filesecret-config-live/url: source `s` (secret \\\"secret/shop/live\\\") has no key `password`")
            && log.contains("the old file stays in place"),
        "{log}"
    );
    let log = sidecar.stop();
    assert_no_secret(
        &log,
        &["pw-ONE-2a4e", "pw-TWO-9b1c", "other-TWO", "other-THREE"],
    );
}

/// Live mode over a lease: when the lease reaches its max TTL the sidecar reads new
/// credentials, evaluates the template again and writes the new connection string (file
/// and env value), which PostgreSQL accepts.
#[test]
fn live_template_over_a_lease_follows_new_credentials() {
    let lab = Lab::on(OpenBao::start());
    let pg = Postgres::start();
    pg.attach_to_vault(&lab.vault, "database", "app", "1h");
    // Renewal at two thirds of 8 s gives less than the lease's duration (the max TTL
    // is near): new credentials then, with more than 6 s of the old lease left for a
    // reader of the old file.
    lab.vault.post_json(
        "database/roles/app",
        &json!({
            "db_name": "postgres",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
            ],
            "default_ttl": "8s",
            "max_ttl": "12s",
        }),
    );
    let url_ref = format!("{FILE_REF_PREFIX}db/url");
    let url_text = format!(
        "postgresql://${{ db.username }}:${{ db.password | urlencode }}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port()
    );
    let mut spec = spec(
        &lab,
        vec![read_of("database/creds/app")],
        vec![template(
            "filesecret-config-db/url",
            &url_text,
            &[("db", 0)],
        )],
        vec![template_file(0, 0, "url", "db")],
        vec![EnvRef {
            template: Some(0),
            ..env_ref(&url_ref)
        }],
    );
    spec.live = Some(LiveSpec {
        refresh_seconds: 300,
        revoke_on_stop: true,
        metrics_port: None,
    });
    let pod = lab.pod();
    let sidecar = Running::start(&agent_container(&pod, &spec));
    let ready = pod.secrets().join(READY_FILE_NAME);
    wait_until(60, "the first fetch", || ready.exists(), || sidecar.log());
    let file = pod.secrets().join("files/app/0/url");
    let env_file = pod.secrets().join(format!("env/app/{ENV_FILE_NAME}"));
    let first = read(&file);
    // postgresql://<user>:<password>@127.0.0.1:...
    let user_info = |url: &str| -> (String, String) {
        let info = url
            .trim_start_matches("postgresql://")
            .split('@')
            .next()
            .expect("user info");
        let (user, password) = info.split_once(':').expect("user:password");
        (user.to_owned(), password.to_owned())
    };
    let user_of = |url: &str| user_info(url).0;
    let first_user = user_of(&first);
    wait_until(
        60,
        "new credentials in the template's file",
        || read(&file) != first,
        || sidecar.log(),
    );
    let second = read(&file);
    assert_ne!(user_of(&second), first_user, "a new lease's user");
    wait_until(
        60,
        "the env value to follow",
        || {
            let env: BTreeMap<String, String> =
                serde_json::from_str(&read(&env_file)).expect("env json");
            env[&url_ref] != first
        },
        || sidecar.log(),
    );
    let current = read(&file);
    let psql = std::process::Command::new(pg.bin().join("psql"))
        .args(["-X", "-At", &current, "-c", "select current_user"])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    assert!(psql.status.success(), "{}", describe(&psql));
    assert_eq!(text(&psql.stdout).trim(), user_of(&current));
    let log = sidecar.stop();
    assert!(log.contains("msg=\"new credentials read\""), "{log}");
    let (first_password, second_password) = (user_info(&first).1, user_info(&second).1);
    assert_no_secret(&log, &[&first_password, &second_password]);
}

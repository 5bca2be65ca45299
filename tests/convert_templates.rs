//! The injector-template conversion held to `bao agent`, byte for byte: every construct
//! convert translates (one injector secret each in
//! `testdata/convert/vault-agent-injector/templates.yaml`) is rendered by OpenBao's own
//! agent (`bao agent`, logging in with the `jwt` method as a pod would) against a real
//! OpenBao with KV v1 and v2, transit and PKI data; and, over the same answers, by this
//! project's template module twice: from the translation of the template alone, and
//! from the file secret configs that `secretstore convert` writes for the pod (template,
//! sources, mount path and file name). Writes that issue something new (PKI) are
//! compared against the answer the agent got, read back from OpenBao's raw audit log.

mod support;

use secretstore::convert::go_template::{self, Translation};
use secretstore::template::{self, Sources};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;

/// A password with every character a URL or a shell line treats specially.
const PASSWORD: &str = "p@ss: w0rd!";

const FIXTURE: &str = "testdata/convert/vault-agent-injector/templates.yaml";
const INJECTOR: &str = "vault.hashicorp.com/";

/// The fixture, with the test OpenBao's transit ciphertext in place of its placeholder.
fn fixture(ciphertext: &str) -> String {
    std::fs::read_to_string(support::repo_root().join(FIXTURE))
        .expect("fixture")
        .replace("vault:v1:CIPHERTEXT", ciphertext)
}

/// The pod template's annotations.
fn annotations(stream: &str) -> Map<String, Value> {
    let doc: Value = yaml_serde::from_str(stream).expect("YAML");
    doc["spec"]["template"]["metadata"]["annotations"]
        .as_object()
        .expect("annotations")
        .clone()
}

/// One injector secret of the fixture: its name, its template, and the path the
/// injector writes it to.
struct Construct {
    name: String,
    template: String,
    path: String,
}

fn constructs(fixture: &str) -> Vec<Construct> {
    let annotations = annotations(fixture);
    let get = |key: String| annotations.get(&key).and_then(Value::as_str);
    annotations
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(&format!("{INJECTOR}agent-inject-template-"))?;
            let dir =
                get(format!("{INJECTOR}secret-volume-path-{name}")).unwrap_or("/vault/secrets");
            let file = get(format!("{INJECTOR}agent-inject-file-{name}")).unwrap_or(name);
            Some(Construct {
                name: name.to_string(),
                template: value.as_str()?.to_string(),
                path: format!("{dir}/{file}"),
            })
        })
        .collect()
}

fn seed(vault: &OpenBao) -> String {
    vault.kv2_put(
        "secret",
        "shop/db",
        &json!({
            "username": "app",
            "password": PASSWORD,
            "api-key": "k-1",
            "host": "db.internal:5432",
            "chain": ["first", "second"],
            "b64": "aGVsbG8gd29ybGQK",
            "padded": "  \tpadded value \n",
            "port": 5432,
            "enabled": true,
            "html": "<a href=\"x\">&amp;</a>",
            "nested": {"z": "last", "a": "first"},
        }),
    );
    vault.kv2_put(
        "secret",
        "shop/props",
        &json!({"spring.datasource.password": PASSWORD, "a.user": "app", "b": "two words"}),
    );
    vault.enable_secrets_engine("kv", "kv", &json!({"options": {"version": "1"}}));
    vault.put_json(
        "kv/legacy",
        &json!({"user": "legacy", "password": PASSWORD, "nested": {"k": "v", "list": [1, 2]}}),
    );
    vault.enable_secrets_engine("transit", "transit", &json!({}));
    vault.post_json("transit/keys/app", &json!({}));
    let plaintext = base64_encode("transit: s3cret @ !\n");
    let encrypted = vault.post_json("transit/encrypt/app", &json!({ "plaintext": plaintext }));
    vault.enable_secrets_engine(
        "pki",
        "pki",
        &json!({"config": {"max_lease_ttl": "87600h"}}),
    );
    vault.post_json(
        "pki/root/generate/internal",
        &json!({"common_name": "Test Root", "ttl": "87600h"}),
    );
    vault.post_json(
        "pki/roles/web",
        &json!({"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "2h"}),
    );
    encrypted["data"]["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_string()
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Runs `bao agent` until it has written every template's file. Its one-shot mode
/// (`exit_after_auth`) exits once the token reaches its sinks, which can be before the
/// templates are rendered; so the agent runs as a daemon here and is stopped once every
/// file is there (consul-template renames each file into place, so a file that exists is
/// whole).
fn bao_agent(vault: &OpenBao, jwt: &Path, dir: &Path, templates: &[Construct]) {
    let mut config = format!(
        "vault {{\n  address = \"{}\"\n}}\nauto_auth {{\n  method \"jwt\" {{\n    mount_path = \"auth/kubernetes\"\n    config = {{\n      path = \"{}\"\n      role = \"app\"\n      remove_jwt_after_reading = false\n    }}\n  }}\n}}\ntemplate_config {{\n  exit_on_retry_failure = true\n}}\n",
        vault.addr(),
        jwt.display()
    );
    let mut outputs = Vec::new();
    for construct in templates {
        let source = dir.join(format!("{}.tpl", construct.name));
        std::fs::write(&source, &construct.template).expect("template file");
        let destination = dir.join(format!("{}.out", construct.name));
        config.push_str(&format!(
            "template {{\n  source = \"{}\"\n  destination = \"{}\"\n}}\n",
            source.display(),
            destination.display()
        ));
        outputs.push(destination);
    }
    let config_file = dir.join("agent.hcl");
    std::fs::write(&config_file, config).expect("agent config");
    let log = std::fs::File::create(dir.join("agent.log")).expect("agent log");
    let mut command = Command::new(support::tool("bao"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("VAULT_") || name.starts_with("BAO_") {
            command.env_remove(&*name);
        }
    }
    let mut agent = command
        .arg("agent")
        .arg(format!("-config={}", config_file.display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run bao agent");
    let deadline = Instant::now() + Duration::from_secs(120);
    let outcome = loop {
        if outputs.iter().all(|o| o.exists()) {
            break Ok(());
        }
        if let Ok(Some(status)) = agent.try_wait() {
            break Err(format!("bao agent exited ({status})"));
        }
        if Instant::now() > deadline {
            break Err("bao agent wrote not every file in 120 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = agent.kill();
    let _ = agent.wait();
    if let Err(why) = outcome {
        panic!(
            "{why}:\n{}",
            std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
        );
    }
}

/// The data of a write's answer as the agent got it, from the raw audit log. `pkiCert`
/// issues a certificate per template, so a PKI answer is the one whose certificate or
/// key is in the file the agent wrote (`written`); the comparison then holds every other
/// byte of the file to the template.
fn audited_answer(
    audit: &str,
    path: &str,
    params: &Map<String, Value>,
    written: &[u8],
) -> Map<String, Value> {
    let written = String::from_utf8_lossy(written);
    let mut answers = Vec::new();
    for line in audit.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if entry["type"] != "response" || entry["request"]["path"] != path {
            continue;
        }
        let request = &entry["request"]["data"];
        if params.iter().all(|(k, v)| &request[k] == v) {
            if let Some(data) = entry["response"]["data"].as_object() {
                answers.push(data.clone());
            }
        }
    }
    assert!(
        !answers.is_empty(),
        "no audited answer for {path} {params:?}"
    );
    let used = |data: &Map<String, Value>| {
        ["certificate", "private_key"].iter().any(|k| {
            data.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|pem| written.contains(pem))
        })
    };
    let found = answers.iter().position(used).unwrap_or(0);
    answers.swap_remove(found)
}

/// What the agent of this project gets for a source: a read's data (the `secret` mount is
/// KV v2, seen unwrapped, whichever form the path is written in), a write's answer
/// (transit is deterministic; PKI from the audit log, the one in `written`).
fn answer(
    vault: &OpenBao,
    audit: &str,
    path: &str,
    params: Option<&Map<String, Value>>,
    written: &[u8],
) -> Map<String, Value> {
    match params {
        None => match path.strip_prefix("secret/") {
            Some(rest) => {
                let rest = rest.strip_prefix("data/").unwrap_or(rest);
                vault.get_json(&format!("secret/data/{rest}"))["data"]["data"].clone()
            }
            None => vault.get_json(path)["data"].clone(),
        }
        .as_object()
        .expect("data")
        .clone(),
        Some(params) if path.starts_with("transit/") => vault
            .put_json(path, &Value::Object(params.clone()))["data"]
            .as_object()
            .expect("data")
            .clone(),
        Some(params) => audited_answer(audit, path, params, written),
    }
}

fn sources(vault: &OpenBao, translation: &Translation, audit: &str, written: &[u8]) -> Sources {
    let mut out = Sources::new();
    for source in &translation.sources {
        let data = answer(vault, audit, &source.path, source.params.as_ref(), written);
        out.insert(source.alias.clone(), data);
    }
    out
}

/// A config's params as sent: `$$(` is a literal `$(` (SPEC 1.3).
fn sent_params(params: &Value) -> Map<String, Value> {
    params
        .as_object()
        .expect("params")
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .map_or(v.clone(), |s| Value::from(s.replace("$$(", "$(")));
            (k.clone(), v)
        })
        .collect()
}

/// What the file secret configs of a converted pod write, by path (`volumeMountPath` /
/// file name): each template evaluated by the template module over its sources' answers,
/// a `path#key` reference's raw value. `written` gives what the agent wrote at a path
/// (to tell which PKI answer it was).
fn converted_files(
    vault: &OpenBao,
    audit: &str,
    stream: &str,
    written: impl Fn(&str) -> Vec<u8>,
) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (key, value) in annotations(stream) {
        let Some(suffix) = key.strip_prefix("vault.secretstore.rafay.dev/filesecret-config-")
        else {
            continue;
        };
        let config: Value = serde_json::from_str(value.as_str().expect("string"))
            .unwrap_or_else(|e| panic!("{suffix}: {e}: {value}"));
        let mount = config["volumeMountPath"].as_str().expect("volumeMountPath");
        let reference = config["vaultSecretRef"].as_str();
        // (alias, path, params)
        let mut requests = Vec::new();
        if let Some(reference) = reference {
            let path = reference.split('#').next().unwrap_or_default();
            requests.push(("secret", path, config.get("params").map(sent_params)));
        }
        for (alias, source) in config["sources"].as_object().into_iter().flatten() {
            requests.push(match source {
                Value::String(path) => (alias.as_str(), path.as_str(), None),
                object => (
                    alias.as_str(),
                    object["path"].as_str().expect("path"),
                    object.get("params").map(sent_params),
                ),
            });
        }
        let files: Vec<(&str, Option<&str>)> = match config["secretFileName"].as_str() {
            Some(name) => vec![(name, config["template"].as_str())],
            None => config["files"]
                .as_object()
                .expect("secretFileName or files")
                .iter()
                .map(|(name, entry)| (name.as_str(), entry["template"].as_str()))
                .collect(),
        };
        for (name, text) in files {
            let at = format!("{mount}/{name}");
            let theirs = written(&at);
            let mut data = Sources::new();
            for (alias, path, params) in &requests {
                let answer = answer(vault, audit, path, params.as_ref(), &theirs);
                data.insert((*alias).to_string(), answer);
            }
            let aliases: Vec<&str> = data.keys().map(String::as_str).collect();
            let content = match text {
                Some(text) => {
                    let parsed = template::parse(text, &aliases)
                        .unwrap_or_else(|e| panic!("{suffix}/{name}: {text}: {e:?}"));
                    let rendered = template::render(&parsed, &data)
                        .unwrap_or_else(|e| panic!("{suffix}/{name}: {text}: {e}"));
                    rendered.as_bytes().to_vec()
                }
                None => {
                    let reference = reference.expect("a key needs vaultSecretRef");
                    let (_, key) = reference.split_once('#').expect("path#key");
                    assert!(config.get("format").is_none(), "{suffix}: {config}");
                    data["secret"][key]
                        .as_str()
                        .expect("string value")
                        .as_bytes()
                        .to_vec()
                }
            };
            out.insert(at, content);
        }
    }
    out
}

/// A file's text for a failure message; a private key is not printed.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("PRIVATE KEY") {
        format!("<{} bytes with a private key>", bytes.len())
    } else {
        format!("{text:?}")
    }
}

#[test]
fn translated_templates_write_what_bao_agent_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_file = dir.path().join("audit.log");
    let vault = OpenBao::start_with_raw_audit(&audit_file);
    let ciphertext = seed(&vault);
    vault.put_policy(
        "app",
        r#"
path "secret/data/shop/*" { capabilities = ["read"] }
path "kv/*" { capabilities = ["read"] }
path "transit/decrypt/app" { capabilities = ["update"] }
path "pki/issue/web" { capabilities = ["update"] }
"#,
    );
    let issuer = ServiceAccountIssuer::new();
    vault.enable_jwt_auth("kubernetes", &issuer);
    vault.write_jwt_role(
        "kubernetes",
        "app",
        &JwtRole::service_account("shop", "shop", "vault", &["app"]),
    );
    let jwt = dir.path().join("jwt");
    std::fs::write(&jwt, issuer.token("shop", "shop", "vault")).expect("jwt");

    let fixture = fixture(&ciphertext);
    let constructs = constructs(&fixture);
    assert_eq!(constructs.len(), 18, "one injector secret per construct");
    bao_agent(&vault, &jwt, dir.path(), &constructs);
    let audit = std::fs::read_to_string(&audit_file).expect("audit log");

    // The pod as `secretstore convert` writes it.
    let mut convert = support::secretstore();
    convert.arg("convert");
    let converted = support::run_with_stdin(&mut convert, fixture.as_bytes());
    let stderr = String::from_utf8_lossy(&converted.stderr);
    assert_eq!(converted.status.code(), Some(0), "{stderr}");
    // One warning: `tls.crt` and `tls.key` now share one certificate.
    assert!(
        stderr.ends_with("secretstore convert: 0 errors, 1 warning\n") && stderr.contains("SS609"),
        "{stderr}"
    );
    let stream = String::from_utf8(converted.stdout).expect("UTF-8");
    let by_path: BTreeMap<&str, &str> = constructs
        .iter()
        .map(|c| (c.path.as_str(), c.name.as_str()))
        .collect();
    let files = converted_files(&vault, &audit, &stream, |path| {
        let name = by_path
            .get(path)
            .unwrap_or_else(|| panic!("{path}: no injector secret"));
        std::fs::read(dir.path().join(format!("{name}.out"))).expect("agent output")
    });
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        constructs
            .iter()
            .map(|c| &c.path)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "the converted pod writes each file where the injector wrote it"
    );

    let mut checked = Vec::new();
    for Construct {
        name,
        template: go,
        path,
    } in &constructs
    {
        let theirs = std::fs::read(dir.path().join(format!("{name}.out")))
            .unwrap_or_else(|e| panic!("{name}: bao agent wrote nothing: {e}"));
        assert!(!theirs.is_empty(), "{name}: empty output proves nothing");
        if name.starts_with("pki") || name.starts_with("tls") {
            let pem = String::from_utf8_lossy(&theirs);
            assert!(pem.contains("-----BEGIN"), "{name}: {pem}");
        }

        let translation =
            go_template::translate(go).unwrap_or_else(|e| panic!("{name}: not translated: {e:?}"));
        let aliases: Vec<&str> = translation
            .sources
            .iter()
            .map(|s| s.alias.as_str())
            .collect();
        let parsed = template::parse(&translation.template, &aliases)
            .unwrap_or_else(|e| panic!("{name}: {}: {e:?}", translation.template));
        let data = sources(&vault, &translation, &audit, &theirs);
        let ours = template::render(&parsed, &data)
            .unwrap_or_else(|e| panic!("{name}: {}: {e}", translation.template));
        assert!(
            theirs == ours.as_bytes(),
            "{name}: `{go}` translated to `{}`:\nbao agent: {}\nours:      {}",
            translation.template,
            shown(&theirs),
            shown(ours.as_bytes())
        );

        let converted = &files[path];
        assert!(
            &theirs == converted,
            "{name}: converted to {path}:\nbao agent: {}\nconverted: {}\n{stream}",
            shown(&theirs),
            shown(converted)
        );
        checked.push(name.as_str());
    }
    assert_eq!(checked.len(), constructs.len());
}

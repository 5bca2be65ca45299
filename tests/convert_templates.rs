//! The injector-template translation held to `bao agent`, byte for byte: every construct
//! convert translates is rendered by OpenBao's own agent (`bao agent`, logging in with the
//! `jwt` method as a pod would) against a real OpenBao with KV v1 and v2, transit
//! and PKI data, and by this project's template module over the same answers after
//! translation. Writes that issue something new (PKI) are compared against the answer the
//! agent got, read back from OpenBao's raw audit log.

mod support;

use secretstore::convert::go_template::{self, Translation};
use secretstore::template::{self, Sources};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;

/// A password with every character a URL or a shell line treats specially.
const PASSWORD: &str = "p@ss: w0rd!";

/// (name, injector template) of each construct.
fn constructs(ciphertext: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "kv2-key",
            "{{ with secret \"secret/data/shop/db\" }}{{ .Data.data.password }}{{ end }}".into(),
        ),
        (
            "kv1-key-trimmed",
            "{{- with secret \"kv/legacy\" -}}\n   {{ .Data.password }}\n{{- end }}\n".into(),
        ),
        (
            "index-dashed-key",
            "{{ with secret \"secret/data/shop/db\" }}key={{ index .Data.data \"api-key\" }}\n{{ end }}".into(),
        ),
        (
            "printf-connection-string",
            "{{ with secret \"kv/legacy\" }}{{ printf \"postgres://%s:%s@db:5432/shop?sslmode=%s\" .Data.user .Data.password \"disable\" }}{{ end }}\n".into(),
        ),
        (
            "text-connection-string",
            "{{- with secret \"secret/data/shop/db\" -}}\nDATABASE_URL=postgres://{{ .Data.data.username }}:{{ .Data.data.password }}@{{ .Data.data.host }}/shop\n{{ end -}}".into(),
        ),
        (
            "range-properties",
            "{{ with secret \"secret/data/shop/props\" }}{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }}\n{{ end }}{{ end }}".into(),
        ),
        (
            "range-list",
            "{{ with secret \"secret/data/shop/db\" }}{{ range .Data.data.chain }}- {{ . }}\n{{ end }}{{ end }}".into(),
        ),
        (
            "tojson-whole",
            "{{ with secret \"secret/data/shop/db\" }}{{ .Data.data | toJSON }}{{ end }}".into(),
        ),
        (
            "tojson-kv1-and-key",
            "{{ with secret \"kv/legacy\" }}{{ toJSON .Data }}\n{{ .Data.nested | toJSON }}{{ end }}".into(),
        ),
        (
            "base64",
            "{{ with secret \"secret/data/shop/db\" }}{{ .Data.data.b64 | base64Decode }}|{{ base64Encode .Data.data.password }}|{{ printf \"%s:%s\" .Data.data.username .Data.data.password | base64Encode }}{{ end }}".into(),
        ),
        (
            "trimspace-and-with-variable",
            "{{ with $s := secret \"secret/data/shop/db\" }}[{{ $s.Data.data.padded | trimSpace }}] [{{ trimSpace .Data.data.padded }}]{{ end }}".into(),
        ),
        (
            "two-secrets-and-variable",
            "{{ $db := secret \"secret/data/shop/db\" }}{{ with secret \"kv/legacy\" }}{{ .Data.user }}@{{ $db.Data.data.host }}{{ end }}".into(),
        ),
        (
            "text-with-dollar-braces",
            "export HOME_DIR=\"${HOME}\" {%raw%} {#x#}\n{{ with secret \"kv/legacy\" }}export USER={{ .Data.user }} PRICE=$${{ .Data.user }}{%{{ end }}\n".into(),
        ),
        (
            "transit-decrypt",
            format!("{{{{ with secret \"transit/decrypt/app\" \"ciphertext={ciphertext}\" }}}}{{{{ .Data.plaintext | base64Decode }}}}{{{{ end }}}}"),
        ),
        (
            "pki-cert",
            "{{- with pkiCert \"pki/issue/web\" \"common_name=cert.example.com\" \"ttl=1h\" -}}\n{{ .Cert }}{{ .CA }}{{ .Key }}\n{{- end -}}".into(),
        ),
        (
            "pki-secret-chain",
            "{{ with secret \"pki/issue/web\" \"common_name=chain.example.com\" }}{{ .Data.certificate }}\n{{ range .Data.ca_chain }}{{ . }}\n{{ end }}{{ end }}".into(),
        ),
    ]
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
fn bao_agent(vault: &OpenBao, jwt: &Path, dir: &Path, templates: &[(&str, String)]) {
    let mut config = format!(
        "vault {{\n  address = \"{}\"\n}}\nauto_auth {{\n  method \"jwt\" {{\n    mount_path = \"auth/kubernetes\"\n    config = {{\n      path = \"{}\"\n      role = \"app\"\n      remove_jwt_after_reading = false\n    }}\n  }}\n}}\ntemplate_config {{\n  exit_on_retry_failure = true\n}}\n",
        vault.addr(),
        jwt.display()
    );
    let mut outputs = Vec::new();
    for (name, go) in templates {
        let source = dir.join(format!("{name}.tpl"));
        std::fs::write(&source, go).expect("template file");
        let destination = dir.join(format!("{name}.out"));
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

/// The data of a write's answer as the agent got it, from the raw audit log.
fn audited_answer(audit: &str, path: &str, params: &Map<String, Value>) -> Map<String, Value> {
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
                return data.clone();
            }
        }
    }
    panic!("no audited answer for {path} {params:?}");
}

/// What the agent of this project reads for each source: a read's data (KV v2 unwrapped),
/// a write's answer (transit is deterministic; PKI from the audit log).
fn sources(vault: &OpenBao, translation: &Translation, audit: &str) -> Sources {
    let mut out = Sources::new();
    for source in &translation.sources {
        let data = match &source.params {
            None => {
                let answer = vault.get_json(&source.path);
                let data = if source.kv2 {
                    &answer["data"]["data"]
                } else {
                    &answer["data"]
                };
                data.as_object().expect("data").clone()
            }
            Some(params) if source.path.starts_with("transit/") => vault
                .put_json(&source.path, &Value::Object(params.clone()))["data"]
                .as_object()
                .expect("data")
                .clone(),
            Some(params) => audited_answer(audit, &source.path, params),
        };
        out.insert(source.alias.clone(), data);
    }
    out
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

    let constructs = constructs(&ciphertext);
    bao_agent(&vault, &jwt, dir.path(), &constructs);
    let audit = std::fs::read_to_string(&audit_file).expect("audit log");

    let mut checked = Vec::new();
    for (name, go) in &constructs {
        let theirs = std::fs::read(dir.path().join(format!("{name}.out")))
            .unwrap_or_else(|e| panic!("{name}: bao agent wrote nothing: {e}"));
        let translation =
            go_template::translate(go).unwrap_or_else(|e| panic!("{name}: not translated: {e:?}"));
        let aliases: Vec<&str> = translation
            .sources
            .iter()
            .map(|s| s.alias.as_str())
            .collect();
        let parsed = template::parse(&translation.template, &aliases)
            .unwrap_or_else(|e| panic!("{name}: {}: {e:?}", translation.template));
        let data = sources(&vault, &translation, &audit);
        let ours = template::render(&parsed, &data)
            .unwrap_or_else(|e| panic!("{name}: {}: {e}", translation.template));
        assert!(
            theirs == ours.as_bytes(),
            "{name}: `{go}` translated to `{}`:\nbao agent: {:?}\nours:      {:?}",
            translation.template,
            String::from_utf8_lossy(&theirs),
            ours.as_str()
        );
        assert!(!theirs.is_empty(), "{name}: empty output proves nothing");
        if name.starts_with("pki") {
            let pem = String::from_utf8_lossy(&theirs);
            assert!(pem.matches("-----BEGIN").count() >= 2, "{name}: {pem}");
        }
        checked.push(*name);
    }
    assert_eq!(checked.len(), constructs.len());
}

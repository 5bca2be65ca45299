//! Issued secrets end to end (SPEC 1.3): a manifest through `secretstore render`, then the
//! rendered pod run the way the kubelet runs it (tests/support/pod.rs, the downward API
//! included), against a real OpenBao with its PKI and transit engines. Certificates: the
//! names asked for with `$(POD_NAME)` resolved, the key that matches, the mount's CA, the
//! modes, one issuance per pod start; in live mode, rotations that a concurrent reader
//! never sees torn or expired, one notification each. Transit: the generic write. Waits
//! are polls with generous bounds; certificates live 15 s and are renewed ~10 s in, so
//! every check has more than 4 s of margin. No secret value may appear in any log.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};
use support::jwt::{JwtRole, ServiceAccountIssuer};
use support::openbao::OpenBao;
use support::output::{describe, text};
use support::pod::{agent_binary, KubeletPod};
use support::sidecar::{start_sidecar, wait_until, Running};

const NAMESPACE: &str = "shop";
const SERVICE_ACCOUNT: &str = "web";
const AUDIENCE: &str = "vault";
const AUTH_MOUNT: &str = "kubernetes";
const SECRETS_VOLUME: &str = "secretstore-secrets";
const POD_NAME: &str = "web-7d9f5-x2p4q";
const POD_IP: &str = "10.0.0.7";

struct Lab {
    vault: OpenBao,
    issuer: ServiceAccountIssuer,
    /// The root CA's certificate (PEM), which `issuing_ca` must be.
    ca: String,
}

impl Lab {
    /// OpenBao with PKI at `pki/` (an internal root, role `web` for names under
    /// web.shop.svc, notBefore backdated 1 s, max_ttl 1h), transit at `transit/` with key
    /// `app`, `jwt` auth, and role `web` (tokens of `token_ttl`) with a policy that allows
    /// exactly the writes.
    fn start(token_ttl: &str) -> Lab {
        let vault = OpenBao::start();
        vault.enable_secrets_engine("pki", "pki", &json!({"config": {"max_lease_ttl": "2h"}}));
        let root = vault.post_json(
            "pki/root/generate/internal",
            &json!({"common_name": "secretstore test root", "ttl": "2h", "key_type": "ec"}),
        );
        let ca = root["data"]["certificate"]
            .as_str()
            .expect("root certificate")
            .to_owned();
        vault.post_json(
            "pki/roles/web",
            &json!({
                "allowed_domains": ["web.shop.svc"],
                "allow_subdomains": true,
                "allow_bare_domains": true,
                "allow_ip_sans": true,
                "allow_localhost": false,
                "max_ttl": "1h",
                "not_before_duration": "1s",
                "key_type": "ec",
                "key_bits": 256,
            }),
        );
        vault.enable_secrets_engine("transit", "transit", &json!({}));
        vault.post_json("transit/keys/app", &json!({}));
        vault.put_policy(
            "web",
            r#"
path "pki/issue/web" { capabilities = ["update"] }
path "transit/decrypt/app" { capabilities = ["update"] }
path "secret/data/shop/*" { capabilities = ["read"] }
"#,
        );
        let issuer = ServiceAccountIssuer::new();
        vault.enable_jwt_auth(AUTH_MOUNT, &issuer);
        let role = JwtRole::service_account(NAMESPACE, SERVICE_ACCOUNT, AUDIENCE, &["web"]);
        vault.post_json(
            &format!("auth/{AUTH_MOUNT}/role/web"),
            &json!({
                "role_type": "jwt",
                "user_claim": role.user_claim,
                "bound_subject": role.bound_subject,
                "bound_claims": role.bound_claims,
                "bound_audiences": role.bound_audiences,
                "token_policies": role.token_policies,
                "token_ttl": token_ttl,
                "token_max_ttl": "1h",
            }),
        );
        Lab { vault, issuer, ca }
    }

    /// How many certificates the PKI mount has issued (the root included).
    fn issued(&self) -> usize {
        let (_, body) = self.vault.request("LIST", "pki/certs", None);
        body["data"]["keys"].as_array().map_or(0, Vec::len)
    }

    /// A ciphertext of `plaintext` under transit key `app`.
    fn encrypt(&self, plaintext: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
        let answer = self
            .vault
            .post_json("transit/encrypt/app", &json!({"plaintext": b64}));
        answer["data"]["ciphertext"]
            .as_str()
            .expect("ciphertext")
            .to_owned()
    }
}

/// A Deployment with the given pod annotations and one app container running `script`.
fn manifest(annotations: &str, script: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NAMESPACE}
spec:
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations:
        rafay.dev/secretstore: vault
        vault.secretstore.rafay.dev/role: web
{annotations}
    spec:
      serviceAccountName: {SERVICE_ACCOUNT}
      securityContext:
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 2000
      volumes:
      - name: out
        emptyDir: {{}}
      containers:
      - name: app
        image: busybox
        command: ["/bin/sh", "-c", {}]
        volumeMounts:
        - {{name: out, mountPath: /out}}
"#,
        serde_json::to_string(script).expect("json string")
    )
}

/// The certificate config: CN and an IP SAN from the downward API, key 0440.
fn tls_config(ttl: &str, extra: &str) -> String {
    format!(
        r#"        vault.secretstore.rafay.dev/filesecret-config-tls: '{{"vaultSecretRef": "pki/issue/web", "params": {{"common_name": "$(POD_NAME).web.shop.svc", "alt_names": "web.shop.svc", "ip_sans": "$(POD_IP)", "ttl": "{ttl}"}}, "files": {{"tls.crt": "certificate", "tls.key": {{"key": "private_key", "mode": "0440"}}, "ca.crt": "issuing_ca"}}, "volumeMountPath": "/etc/tls"{extra}}}'"#
    )
}

/// Renders `manifest` (for Kubernetes 1.30) and returns the rendered YAML's pod spec.
fn render(lab: &Lab, manifest: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, manifest).expect("write manifest");
    let output = support::secretstore()
        .env_remove("KUBE_VERSION")
        .env("SECRETSTORE_AUDIENCE", AUDIENCE)
        .args([
            "render",
            "--kube-version",
            "1.30",
            "--vault-addr",
            lab.vault.addr(),
        ])
        .arg(&file)
        .output()
        .expect("run render");
    assert!(output.status.success(), "{}", describe(&output));
    let doc: Value = yaml_serde::from_str(&text(&output.stdout)).expect("rendered YAML");
    doc["spec"]["template"]["spec"].clone()
}

fn pod(lab: &Lab, spec: &Value) -> KubeletPod {
    let mut pod = KubeletPod::new(
        spec,
        NAMESPACE,
        &lab.issuer,
        &[],
        Path::new(&agent_binary()),
    );
    pod.set_field("metadata.name", POD_NAME);
    pod.set_field("status.podIP", POD_IP);
    pod
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("stat").mode() & 0o7777
}

fn openssl(args: &[&str], input: &str) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("write to openssl");
    let output = child.wait_with_output().expect("openssl output");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        describe(&output)
    );
    text(&output.stdout)
}

/// Whether the private key is the certificate's (their public keys are one).
fn key_matches(cert: &str, key: &str) -> bool {
    openssl(&["x509", "-noout", "-pubkey"], cert) == openssl(&["pkey", "-pubout"], key)
}

/// The certificate's notAfter, in Unix seconds.
fn not_after(cert: &str) -> i64 {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).expect("a PEM block");
    let parsed = pem.parse_x509().expect("an X.509 certificate");
    parsed.validity().not_after.timestamp()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// The certificate, the key and the CA the pod gets, with modes as written; `$(POD_NAME)`
/// and `$(POD_IP)` resolved; one issuance per pod start; and a transit decryption as the
/// generic write. Nothing secret in any log.
#[test]
fn certificate_files_match_and_one_issuance_per_pod_start() {
    let lab = Lab::start("1h");
    let plaintext = "transit-plaintext-6f1d";
    let ciphertext = lab.encrypt(plaintext);
    let transit = format!(
        r#"        vault.secretstore.rafay.dev/filesecret-config-transit: '{{"vaultSecretRef": "transit/decrypt/app", "params": {{"ciphertext": "{ciphertext}"}}, "files": {{"plaintext.b64": "plaintext"}}, "volumeMountPath": "/etc/plain"}}'"#
    );
    // The same certificate request again (params in another order): the same answer.
    let same = r#"        vault.secretstore.rafay.dev/filesecret-config-u-same: '{"vaultSecretRef": "pki/issue/web", "params": {"ttl": "30m", "ip_sans": "$(POD_IP)", "alt_names": "web.shop.svc", "common_name": "$(POD_NAME).web.shop.svc"}, "files": {"cert.pem": "certificate"}, "volumeMountPath": "/etc/same"}'"#;
    // `files` for a read: a KV pair in one config.
    lab.vault.kv2_put(
        "secret",
        "shop/tls",
        &json!({"tls.crt": "kv-cert-1a2b", "tls.key": "kv-key-3c4d"}),
    );
    let kv = r#"        vault.secretstore.rafay.dev/filesecret-config-v-kv: '{"vaultSecretRef": "secret/shop/tls", "files": {"tls.crt": "tls.crt", "tls.key": {"key": "tls.key", "mode": "0400"}}, "volumeMountPath": "/etc/kv"}'"#;
    let script = "cat /etc/tls/tls.crt > /out/crt && cat /etc/tls/tls.key > /out/key && cat /etc/plain/plaintext.b64 > /out/plain";
    let spec = render(
        &lab,
        &manifest(
            &format!("{}\n{transit}\n{same}\n{kv}", tls_config("30m", "")),
            script,
        ),
    );
    let agent_env = &spec["initContainers"][0]["env"];
    assert_eq!(
        agent_env[1],
        json!({"name": "SECRETSTORE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    );
    assert_eq!(
        agent_env[2],
        json!({"name": "SECRETSTORE_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    );
    let pod = pod(&lab, &spec);
    let before = lab.issued();
    let (_, agent) = pod.init_containers().remove(0);
    let output = agent.run();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(lab.issued(), before + 1, "one certificate per pod start");

    let dir = pod.volume(SECRETS_VOLUME).join("files/app/0");
    let listing: Vec<String> = walkdir::WalkDir::new(pod.volume(SECRETS_VOLUME))
        .into_iter()
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    let cert = std::fs::read_to_string(dir.join("tls.crt"))
        .unwrap_or_else(|e| panic!("tls.crt: {e}: {listing:#?}\n{}", describe(&output)));
    let key = std::fs::read_to_string(dir.join("tls.key")).expect("tls.key");
    let ca = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    assert!(key_matches(&cert, &key), "the key is the certificate's");
    assert_eq!(ca.trim(), lab.ca.trim(), "ca.crt is the mount's CA");
    let shown = openssl(&["x509", "-noout", "-text"], &cert);
    assert!(
        shown.contains(&format!("CN={POD_NAME}.web.shop.svc"))
            || shown.contains(&format!("CN = {POD_NAME}.web.shop.svc")),
        "{shown}"
    );
    assert!(shown.contains("DNS:web.shop.svc"), "{shown}");
    assert!(shown.contains(&format!("IP Address:{POD_IP}")), "{shown}");
    assert_eq!(mode(&dir.join("tls.crt")), 0o444);
    assert_eq!(mode(&dir.join("ca.crt")), 0o444);
    assert_eq!(mode(&dir.join("tls.key")), 0o440);
    let files = pod.volume(SECRETS_VOLUME).join("files/app");
    assert_eq!(
        std::fs::read_to_string(files.join("2/cert.pem")).expect("cert.pem"),
        cert,
        "one answer for one request"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("3/tls.crt")).expect("kv tls.crt"),
        "kv-cert-1a2b"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("3/tls.key")).expect("kv tls.key"),
        "kv-key-3c4d"
    );
    assert_eq!(mode(&files.join("3/tls.key")), 0o400);
    assert!(std::fs::symlink_metadata(dir.join("tls.key"))
        .expect("lstat")
        .file_type()
        .is_symlink());
    let plain_b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
    assert_eq!(
        std::fs::read_to_string(pod.volume(SECRETS_VOLUME).join("files/app/1/plaintext.b64"))
            .expect("plaintext.b64"),
        plain_b64
    );

    // The app (uid 1000, fsGroup 2000) reads them through its sub-path mounts.
    let app = pod.containers().remove(0).1.run();
    assert!(app.status.success(), "{}", describe(&app));
    let out = pod.volume("out");
    assert_eq!(std::fs::read_to_string(out.join("crt")).expect("crt"), cert);
    assert_eq!(std::fs::read_to_string(out.join("key")).expect("key"), key);
    assert_eq!(
        std::fs::read_to_string(out.join("plain")).expect("plain"),
        plain_b64
    );

    // A pod restart issues one certificate more.
    let again = agent.run();
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(lab.issued(), before + 2, "one certificate per pod start");
    let log = format!(
        "{}{}{}",
        describe(&output),
        describe(&again),
        describe(&app)
    );
    let key_body = key.lines().nth(1).expect("key body");
    support::assert_no_secret(
        &log,
        &[
            &key,
            key_body,
            plaintext,
            &plain_b64,
            "kv-cert-1a2b",
            "kv-key-3c4d",
        ],
    );
    support::assert_no_secret(&lab.vault.log(), &[key_body, plaintext]);
}

/// What the pair-checking reader saw.
#[derive(Default)]
struct Seen {
    samples: usize,
    /// Samples during which `..data` moved (the reader opened the two names across the
    /// swap, as a reader of a ConfigMap volume can): not a pair of one version.
    across_swap: usize,
    /// Pairs of one version whose key is not the certificate's.
    mismatched: usize,
    /// Certificates past their notAfter when read.
    expired: usize,
    read_errors: Vec<String>,
    /// Distinct certificates, in the order seen.
    certificates: Vec<String>,
}

/// Reads the certificate and the key by their names, again and again, until `stop`.
fn pair_reader(dir: PathBuf, stop: Arc<AtomicBool>) -> JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        let mut verdicts: BTreeMap<(String, String), bool> = BTreeMap::new();
        let data = dir.join("..data");
        while !stop.load(Ordering::SeqCst) {
            let before = std::fs::read_link(&data).ok();
            let read = std::fs::read_to_string(dir.join("tls.crt"))
                .and_then(|c| Ok((c, std::fs::read_to_string(dir.join("tls.key"))?)));
            let after = std::fs::read_link(&data).ok();
            let now = unix_now();
            seen.samples += 1;
            let (cert, key) = match read {
                Ok(pair) => pair,
                Err(e) => {
                    seen.read_errors.push(e.to_string());
                    continue;
                }
            };
            if not_after(&cert) <= now {
                seen.expired += 1;
            }
            if seen.certificates.last() != Some(&cert) && !seen.certificates.contains(&cert) {
                seen.certificates.push(cert.clone());
            }
            if before != after {
                seen.across_swap += 1;
            } else {
                let matches = *verdicts
                    .entry((cert.clone(), key.clone()))
                    .or_insert_with(|| key_matches(&cert, &key));
                if !matches {
                    seen.mismatched += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        seen
    })
}

/// Live mode: a 15 s certificate is issued again about 10 s in (two thirds of its
/// lifetime), at least three times, its files swapped together; a reader checking the
/// pair all along never sees a certificate with another key or an expired one; the app
/// gets one SIGHUP per new certificate; no re-issue on the token's renewals; the key is in
/// no log.
#[test]
fn live_certificates_rotate_before_expiry_and_files_change_together() {
    // Token renewals every few seconds must not issue certificates.
    let lab = Lab::start("6s");
    let script = r#"trap 'echo HUP >> /out/events' HUP
echo start >> /out/events
while :; do sleep 0.05; done"#;
    let annotations = format!(
        "        vault.secretstore.rafay.dev/refresh: 1h\n        vault.secretstore.rafay.dev/on-change: signal:SIGHUP\n{}",
        tls_config("15s", "")
    );
    let spec = render(&lab, &manifest(&annotations, script));
    assert_eq!(spec["initContainers"][0]["restartPolicy"], "Always");
    let pod = pod(&lab, &spec);
    let before = lab.issued();
    let sidecar = start_sidecar(&pod, &spec);
    let dir = pod.volume(SECRETS_VOLUME).join("files/app/0");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = pair_reader(dir.clone(), stop.clone());
    let app = Running::start(&pod.containers().remove(0).1);
    let events = pod.volume("out").join("events");
    let events_seen = || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_until(
        30,
        "the app to start",
        || events_seen() == ["start"],
        || app.log(),
    );
    let placed = |log: &str| log.matches("msg=\"certificate in place\"").count();
    wait_until(
        90,
        "three rotations",
        || placed(&sidecar.log()) >= 4,
        || sidecar.log(),
    );
    sidecar.signal(libc::SIGTERM);
    let (status, log) = sidecar.wait();
    assert!(status.success(), "{log}");
    let rotations = placed(&log) - 1;
    // The last notification comes within the one-second grouping and a poll.
    wait_until(
        10,
        "one SIGHUP per rotation",
        || events_seen().len() == 1 + rotations,
        || format!("{:?}\n{log}", events_seen()),
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let seen = reader.join().expect("reader");
    assert_eq!(events_seen().len(), 1 + rotations, "no extra SIGHUP");
    assert!(seen.read_errors.is_empty(), "{:?}", seen.read_errors);
    assert_eq!(seen.mismatched, 0, "a certificate with another key");
    assert_eq!(seen.expired, 0, "an expired certificate on disk");
    assert!(
        seen.certificates.len() > rotations,
        "the reader saw {} certificates in {} samples ({} across a swap)",
        seen.certificates.len(),
        seen.samples,
        seen.across_swap
    );
    assert_eq!(
        lab.issued(),
        before + 1 + rotations,
        "one issuance per rotation"
    );
    assert!(
        log.matches("msg=\"token renewed\"").count() >= 2,
        "the token was renewed meanwhile: {log}"
    );
    app.signal(libc::SIGTERM);
    let (_, app_log) = app.wait();
    let key = std::fs::read_to_string(dir.join("tls.key")).expect("tls.key");
    let key_body = key.lines().nth(1).expect("key body");
    for text in [&log, &app_log] {
        support::assert_no_secret(text, &[&key, key_body]);
    }
    eprintln!(
        "{} samples, {} across a swap, {} certificates, {rotations} rotations",
        seen.samples,
        seen.across_swap,
        seen.certificates.len()
    );
}

/// `check` against the PKI mount: an allowed name (with `$(POD_NAME)` as one label)
/// passes; a name outside the role's domains and a ttl over its max_ttl are findings at
/// their annotations; so are a missing PKI role and a write the policy does not grant.
#[test]
fn check_reports_pki_names_and_ttl_the_role_refuses() {
    let lab = Lab::start("1h");
    let config = |suffix: &str, path: &str, cn: &str, ttl: &str| {
        format!(
            r#"        vault.secretstore.rafay.dev/filesecret-config-{suffix}: '{{"vaultSecretRef": "{path}", "params": {{"common_name": "{cn}", "ttl": "{ttl}"}}, "files": {{"tls.crt": "certificate", "tls.key": "private_key"}}, "volumeMountPath": "/etc/{suffix}"}}'"#
        )
    };
    let annotations = [
        config("a-ok", "pki/issue/web", "$(POD_NAME).web.shop.svc", "30m"),
        config("b-name", "pki/issue/web", "$(POD_NAME).evil.example", "30m"),
        config("c-ttl", "pki/issue/web", "web.shop.svc", "5h"),
        config("d-role", "pki/issue/nope", "web.shop.svc", "30m"),
    ]
    .join("\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("web.yaml");
    let text = manifest(&annotations, "true");
    std::fs::write(&file, &text).expect("write manifest");
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .expect("annotation line")
            + 1
    };
    let output = support::secretstore()
        .envs(
            lab.vault
                .env()
                .into_iter()
                .filter(|(k, _)| k.starts_with("VAULT_")),
        )
        .env("SECRETSTORE_AUDIENCE", AUDIENCE)
        .args(["check", "--format", "json"])
        .arg(&file)
        .output()
        .expect("run check");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", describe(&output)));
    let findings: Vec<(usize, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["line"].as_u64().expect("line") as usize,
                f["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let expected = vec![
        (line_of("filesecret-config-b-name"), "SS343".to_owned()),
        (line_of("filesecret-config-c-ttl"), "SS344".to_owned()),
        (line_of("filesecret-config-d-role"), "SS322".to_owned()),
        (line_of("filesecret-config-d-role"), "SS342".to_owned()),
    ];
    let ok_line = line_of("filesecret-config-a-ok");
    assert!(
        findings.iter().all(|(line, _)| *line != ok_line),
        "the allowed request has a finding: {}",
        describe(&output)
    );
    let mut issued: Vec<(usize, String)> = findings
        .into_iter()
        .filter(|(_, code)| ["SS322", "SS342", "SS343", "SS344"].contains(&code.as_str()))
        .collect();
    issued.sort();
    issued.dedup();
    assert_eq!(issued, expected, "{}", describe(&output));
}

/// Live mode through a fault: Vault is sealed when the certificate is due; the renewal
/// fails, the files keep the last good set (still valid), and once Vault answers again a
/// new certificate comes before the old one expires (30 s certificates: the renewal is
/// due about 20 s in, the retry comes within half the time left, 5 s of margin at least).
#[test]
fn sealed_vault_keeps_the_last_good_certificate_until_it_answers() {
    let lab = Lab::start("1h");
    let annotations = format!(
        "        vault.secretstore.rafay.dev/refresh: 1h\n{}",
        tls_config("30s", "")
    );
    let spec = render(&lab, &manifest(&annotations, "sleep 1000"));
    let pod = pod(&lab, &spec);
    let sidecar = start_sidecar(&pod, &spec);
    let dir = pod.volume(SECRETS_VOLUME).join("files/app/0");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("a file");
    let (first_cert, first_key) = (read("tls.crt"), read("tls.key"));
    lab.vault.seal();
    wait_until(
        60,
        "a renewal that fails while Vault is sealed",
        || sidecar.log().contains("cannot issue the certificate again"),
        || sidecar.log(),
    );
    assert_eq!(
        read("tls.crt"),
        first_cert,
        "the last good certificate stays"
    );
    assert_eq!(read("tls.key"), first_key);
    assert!(not_after(&first_cert) > unix_now(), "still valid");
    lab.vault.unseal();
    wait_until(
        30,
        "a new certificate once Vault answers",
        || {
            sidecar
                .log()
                .matches("msg=\"certificate in place\"")
                .count()
                >= 2
        },
        || sidecar.log(),
    );
    let (cert, key) = (read("tls.crt"), read("tls.key"));
    assert_ne!(cert, first_cert);
    assert!(key_matches(&cert, &key));
    assert!(
        unix_now() < not_after(&first_cert),
        "renewed before the old certificate expired"
    );
    sidecar.signal(libc::SIGTERM);
    let (status, log) = sidecar.wait();
    assert!(status.success(), "{log}");
    let key_body = key.lines().nth(1).expect("key body");
    support::assert_no_secret(&log, &[&key, key_body, &first_key]);
}

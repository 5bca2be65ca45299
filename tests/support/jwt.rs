//! Kubernetes service-account identity without a Kubernetes API server: the test signs
//! service-account-shaped JWTs with its own RSA key (RS256, as kube-apiserver does) and
//! OpenBao's `jwt` auth method, mounted where the `kubernetes` method would be, verifies
//! them with `jwt_validation_pubkeys`. The login request `{role, jwt}` is the same.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use super::openbao::OpenBao;

/// The issuer of projected service-account tokens in a default cluster.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A signing key standing in for a cluster's service-account issuer.
pub struct ServiceAccountIssuer {
    key: RsaKeyPair,
    issuer: String,
    public_key_pem: String,
}

impl ServiceAccountIssuer {
    /// A fresh RSA-2048 key, issuer [`DEFAULT_ISSUER`].
    pub fn new() -> Self {
        Self::with_issuer(DEFAULT_ISSUER)
    }

    /// A fresh RSA-2048 key with this `iss` (e.g. `kubernetes/serviceaccount`, the
    /// issuer of legacy secret-based tokens).
    pub fn with_issuer(issuer: &str) -> Self {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation failed");
        let der = key
            .public_key()
            .as_der()
            .expect("cannot encode RSA public key");
        ServiceAccountIssuer {
            public_key_pem: pem("PUBLIC KEY", der.as_ref()),
            key,
            issuer: issuer.to_owned(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The PEM public key, for `jwt_validation_pubkeys`.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The claims of a projected service-account token for `namespace`/`service_account`
    /// with audience `audience`, valid from now for an hour. Tweak and pass to
    /// [`Self::sign`] for odd cases (expired, wrong audience...).
    pub fn service_account_claims(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
    ) -> Value {
        let now = unix_now();
        json!({
            "aud": [audience],
            "exp": now + 3600,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "jti": format!("{namespace}-{service_account}-{now}"),
            "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
            "kubernetes.io": {
                "namespace": namespace,
                "pod": { "name": format!("{service_account}-pod"), "uid": "00000000-0000-4000-8000-000000000001" },
                "serviceaccount": { "name": service_account, "uid": "00000000-0000-4000-8000-000000000002" },
            },
        })
    }

    /// A signed token for `namespace`/`service_account` and `audience`.
    pub fn token(&self, namespace: &str, service_account: &str, audience: &str) -> String {
        self.sign(&self.service_account_claims(namespace, service_account, audience))
    }

    /// Signs any claims as a compact RS256 JWT.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": "secretstore-test" });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .expect("RS256 signing failed");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

impl Default for ServiceAccountIssuer {
    fn default() -> Self {
        Self::new()
    }
}

/// A `jwt` auth role. [`JwtRole::service_account`] gives the usual Kubernetes binding.
#[derive(Debug, Clone)]
pub struct JwtRole {
    pub bound_subject: Option<String>,
    /// JSON-pointer selectors to required values, e.g. `{"/kubernetes.io/namespace": "shop"}`.
    pub bound_claims: Option<Value>,
    pub bound_audiences: Vec<String>,
    pub user_claim: String,
    pub token_policies: Vec<String>,
    pub token_ttl: String,
}

impl JwtRole {
    /// Bound to exactly `namespace`/`service_account` (subject and `kubernetes.io` claims)
    /// and `audience`, granting `policies`.
    pub fn service_account(
        namespace: &str,
        service_account: &str,
        audience: &str,
        policies: &[&str],
    ) -> Self {
        JwtRole {
            bound_subject: Some(format!(
                "system:serviceaccount:{namespace}:{service_account}"
            )),
            bound_claims: Some(json!({
                "/kubernetes.io/namespace": namespace,
                "/kubernetes.io/serviceaccount/name": service_account,
            })),
            bound_audiences: vec![audience.to_owned()],
            user_claim: "sub".to_owned(),
            token_policies: policies.iter().map(|p| (*p).to_owned()).collect(),
            token_ttl: "1h".to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        let mut role = json!({
            "role_type": "jwt",
            "user_claim": self.user_claim,
            "bound_audiences": self.bound_audiences,
            "token_policies": self.token_policies,
            "token_ttl": self.token_ttl,
        });
        if let Some(subject) = &self.bound_subject {
            role["bound_subject"] = Value::from(subject.as_str());
        }
        if let Some(claims) = &self.bound_claims {
            role["bound_claims"] = claims.clone();
        }
        role
    }
}

impl OpenBao {
    /// Mounts the `jwt` auth method at `auth/<path>` (e.g. `kubernetes`) trusting
    /// `issuer`'s key and requiring its `iss`.
    pub fn enable_jwt_auth(&self, path: &str, issuer: &ServiceAccountIssuer) {
        self.post_json(&format!("sys/auth/{path}"), &json!({ "type": "jwt" }));
        self.post_json(
            &format!("auth/{path}/config"),
            &json!({
                "jwt_validation_pubkeys": [issuer.public_key_pem()],
                "bound_issuer": issuer.issuer(),
            }),
        );
    }

    /// Creates or replaces role `name` on the `jwt` mount at `auth/<path>`.
    pub fn write_jwt_role(&self, path: &str, name: &str, role: &JwtRole) {
        self.post_json(&format!("auth/{path}/role/{name}"), &role.to_json());
    }

    /// Logs in at `auth/<path>/login` with `{role, jwt}`: the status and the response.
    pub fn jwt_login(&self, path: &str, role: &str, jwt: &str) -> (u16, Value) {
        self.request_as(
            "",
            "POST",
            &format!("auth/{path}/login"),
            Some(&json!({ "role": role, "jwt": jwt })),
        )
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs()
}

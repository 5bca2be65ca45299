//! The agent's Vault calls, over the shared HTTP layer ([`crate::vault::http`]): login
//! (vaultrs's endpoint), mount discovery through `sys/internal/ui/mounts`, reads that keep
//! the lease and hold the body in zeroizing memory charged to the agent's memory budget,
//! and revoke-self.

use std::time::Duration;

use serde_json::value::RawValue;
use vaultrs::api::auth::kubernetes::requests::LoginWithKubernetesRequest;
use zeroize::Zeroizing;

use super::format::SecretData;
use crate::pod::agent_spec::{VaultConnection, MAX_ANSWER_BYTES};
pub use crate::vault::http::VaultError;
use crate::vault::http::{Budget, Connection, Request, VaultHttp};
use crate::vault::kv::{Kv2Read, ReadAnswer};
use crate::vault::mounts::{Engine, Mount};

/// A secret as read: its data map, whether it holds a lease that must outlive the
/// agent's token, and the bytes it holds in the agent's memory budget; and where it was
/// read from (live mode reads it there again).
pub struct Fetched {
    pub data: SecretData,
    pub leased: bool,
    pub held_bytes: usize,
    pub lease: Option<Lease>,
    pub api_path: String,
    pub kv2: bool,
}

/// The lease of a dynamic secret.
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: String,
    /// Seconds.
    pub duration: u64,
    pub renewable: bool,
}

/// A token as a login gave it.
pub struct TokenGrant {
    pub token: Zeroizing<String>,
    /// Seconds.
    pub ttl: u64,
    pub renewable: bool,
}

pub struct Vault {
    http: VaultHttp,
}

impl Vault {
    /// Builds the client. Fails (permanently) on an unusable address, namespace or CA file.
    pub fn new(conn: &VaultConnection) -> Result<Vault, VaultError> {
        let http = VaultHttp::new(
            &Connection {
                address: conn.address.clone(),
                namespace: conn.namespace.clone(),
                ca_cert_file: conn.ca_cert_file.clone(),
                tls_server_name: conn.tls_server_name.clone(),
            },
            MAX_ANSWER_BYTES,
        )?;
        Ok(Vault { http })
    }

    /// The address for messages (never with a user name or password).
    pub fn address(&self) -> &str {
        self.http.address()
    }

    /// Logs in at `<auth_path>/login` with `{role, jwt}` (the Kubernetes and JWT auth
    /// methods take the same call). Returns the token and its TTL in seconds.
    pub async fn login(
        &self,
        auth_path: &str,
        role: &str,
        jwt: &str,
        timeout: Duration,
    ) -> Result<(Zeroizing<String>, u64), VaultError> {
        self.login_grant(auth_path, role, jwt, timeout)
            .await
            .map(|grant| (grant.token, grant.ttl))
    }

    /// [`Vault::login`], also saying whether the token can be renewed.
    pub async fn login_grant(
        &self,
        auth_path: &str,
        role: &str,
        jwt: &str,
        timeout: Duration,
    ) -> Result<TokenGrant, VaultError> {
        let mount = auth_path
            .trim_matches('/')
            .strip_prefix("auth/")
            .unwrap_or(auth_path.trim_matches('/'));
        let endpoint = LoginWithKubernetesRequest {
            mount: mount.to_owned(),
            role: role.to_owned(),
            jwt: jwt.to_owned(),
        };
        let answer = self.http.call(&endpoint, timeout).await;
        let LoginWithKubernetesRequest { jwt: sent, .. } = endpoint;
        drop(Zeroizing::new(sent));
        let auth = answer?.auth.ok_or_else(|| {
            VaultError::permanent(format!("the login answer of {auth_path} holds no token"))
        })?;
        Ok(TokenGrant {
            token: Zeroizing::new(auth.client_token),
            ttl: auth.lease_duration,
            renewable: auth.renewable,
        })
    }

    /// Renews the agent's own token; returns its new TTL and whether it stays renewable.
    pub async fn renew_self(&self, timeout: Duration) -> Result<(u64, bool), VaultError> {
        #[derive(serde::Deserialize)]
        struct Auth {
            lease_duration: u64,
            #[serde(default)]
            renewable: bool,
        }
        #[derive(serde::Deserialize)]
        struct Body {
            auth: Auth,
        }
        let body: Body = self
            .put_json("auth/token/renew-self", &serde_json::json!({}), timeout)
            .await?;
        Ok((body.auth.lease_duration, body.auth.renewable))
    }

    /// Renews a lease by `increment` seconds; returns the lease's new duration.
    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment: u64,
        timeout: Duration,
    ) -> Result<u64, VaultError> {
        #[derive(serde::Deserialize)]
        struct Body {
            lease_duration: u64,
        }
        let request = serde_json::json!({"lease_id": lease_id, "increment": increment});
        let body: Body = self.put_json("sys/leases/renew", &request, timeout).await?;
        Ok(body.lease_duration)
    }

    /// Revokes a lease (its credentials stop working at once).
    pub async fn revoke_lease(&self, lease_id: &str, timeout: Duration) -> Result<(), VaultError> {
        let request = serde_json::json!({"lease_id": lease_id});
        let answer = self
            .http
            .send(
                Request::post("sys/leases/revoke", json_body(&request), timeout),
                None,
            )
            .await?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(answer.error())
        }
    }

    /// POSTs a JSON body and parses the JSON answer; a non-2xx answer is an error with
    /// Vault's errors and `Retry-After`.
    async fn put_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<T, VaultError> {
        let answer = self
            .http
            .send(Request::post(path, json_body(body), timeout), None)
            .await?;
        if !answer.is_success() {
            return Err(answer.error());
        }
        serde_json::from_slice(&answer.body).map_err(|e| {
            VaultError::http(answer.status, format!("unexpected answer from {path}: {e}"))
        })
    }

    /// Uses `token` for every later call.
    pub fn set_token(&mut self, token: Zeroizing<String>) -> Result<(), VaultError> {
        self.http.set_token(token)
    }

    /// Revokes the agent's own token.
    pub async fn revoke_self(&self, timeout: Duration) -> Result<(), VaultError> {
        let request = Request::post("auth/token/revoke-self", Zeroizing::default(), timeout);
        let answer = self.http.send(request, None).await?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(answer.error())
        }
    }

    /// The mount that holds `path`, as the Vault CLI finds it. A server without the
    /// endpoint (404) is treated like the CLI does: a KV v1 (plain read) path.
    pub async fn mount_of(&self, path: &str, timeout: Duration) -> Result<Mount, VaultError> {
        let what = format!("sys/internal/ui/mounts/{path}");
        let answer = self.http.send(Request::get(&what, timeout), None).await?;
        if answer.status == 404 {
            return Ok(Mount {
                path: String::new(),
                engine: Engine::Kv1,
            });
        }
        if !answer.is_success() {
            return Err(answer.error());
        }
        Mount::from_ui_mount(&answer.body).map_err(|e| {
            VaultError::http(answer.status, format!("unexpected answer from {what}: {e}"))
        })
    }

    /// Reads an API path. For KV v2 (`kv2`), unwraps `data.data` and turns a 404 of a
    /// deleted or destroyed version into a message saying so. The data stays charged to
    /// `budget` (see [`Fetched::held_bytes`]); the answer's body is released.
    pub async fn read(
        &self,
        api_path: &str,
        version: Option<u64>,
        kv2: bool,
        timeout: Duration,
        budget: &Budget,
    ) -> Result<Fetched, VaultError> {
        let mut request = Request::get(api_path, timeout);
        request.query = version.map(|v| format!("version={v}"));
        let answer = self.http.send(request, Some(budget)).await?;
        fetched(answer, api_path, kv2, budget, || {
            format!(
                "the data of {api_path} would pass the {} MiB the agent holds for one pod: split the secrets over several pods or make them smaller",
                budget.limit() >> 20
            )
        })
    }
}

impl Vault {
    /// Writes `params` to an API path (a `PUT`, sent as POST like the Vault CLI) and keeps
    /// the answer like a read: an issued secret (a certificate, STS credentials, a
    /// transit plaintext). The body is not secret; the answer is.
    pub async fn write(
        &self,
        api_path: &str,
        params: &crate::pod::agent_spec::Params,
        timeout: Duration,
        budget: &Budget,
    ) -> Result<Fetched, VaultError> {
        let body = json_body(&serde_json::Value::Object(params.clone()));
        let answer = self
            .http
            .send(Request::post(api_path, body, timeout), Some(budget))
            .await?;
        fetched(answer, api_path, false, budget, || {
            format!(
                "the answer of {api_path} would pass the {} MiB the agent holds for one pod",
                budget.limit() >> 20
            )
        })
    }
}

/// An answer of `api_path` parsed into [`Fetched`]: its body released from `budget` once
/// parsed, the data kept charged to it instead; `too_big` says why when the data would
/// pass the budget.
fn fetched(
    answer: crate::vault::http::Answer,
    api_path: &str,
    kv2: bool,
    budget: &Budget,
    too_big: impl FnOnce() -> String,
) -> Result<Fetched, VaultError> {
    let body_bytes = answer.body.capacity();
    let result = parse_read(&answer, api_path, kv2);
    drop(answer);
    budget.release(body_bytes);
    let (data, lease) = result?;
    let held_bytes = data.iter().map(|(k, v)| k.len() + v.as_text().len()).sum();
    if !budget.try_charge(held_bytes) {
        return Err(VaultError::permanent(too_big()));
    }
    Ok(Fetched {
        data,
        leased: lease.is_some(),
        held_bytes,
        lease,
        api_path: api_path.to_owned(),
        kv2,
    })
}

fn parse_read(
    answer: &crate::vault::http::Answer,
    api_path: &str,
    kv2: bool,
) -> Result<(SecretData, Option<Lease>), VaultError> {
    type Raw<'a> = ReadAnswer<&'a RawValue>;
    let what = format!("GET /v1/{api_path}");
    if !answer.is_success() {
        let mut err = answer.error();
        if kv2 && answer.status == 404 {
            let meta = serde_json::from_slice::<Raw>(&answer.body)
                .ok()
                .and_then(|b| b.data)
                .and_then(|d| serde_json::from_str::<Kv2Read<&RawValue>>(d.get()).ok())
                .and_then(|k| k.metadata)
                .and_then(|m| m.describe());
            if let Some(text) = meta {
                err.detail = text;
            }
        }
        return Err(err);
    }
    let outer: Raw = answer.json(&what)?;
    let data = match outer.data {
        Some(d) if kv2 => serde_json::from_str::<Kv2Read<&RawValue>>(d.get())
            .ok()
            .and_then(|k| k.data)
            .filter(|d| d.get() != "null"),
        other => other.filter(|d| d.get() != "null"),
    };
    let data = match data {
        Some(d) => serde_json::from_str::<SecretData>(d.get()).map_err(|_| {
            VaultError::http(
                answer.status,
                format!("the data of {api_path} is not a JSON object of keys and values"),
            )
        })?,
        None => return Err(VaultError::http(404, "no data".to_owned())),
    };
    let lease = (!outer.lease_id.is_empty()).then(|| Lease {
        id: outer.lease_id.clone(),
        duration: outer.lease_duration,
        renewable: outer.renewable,
    });
    Ok((data, lease))
}

/// A JSON request body, in zeroizing memory like every body the layer sends.
fn json_body(value: &serde_json::Value) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_connection_goes_through_the_layer() {
        let conn = VaultConnection {
            address: "https://127.0.0.1:8200".to_owned(),
            auth_path: "auth/kubernetes".to_owned(),
            role: "r".to_owned(),
            namespace: Some("team\nx".to_owned()),
            ca_cert_file: None,
            tls_server_name: None,
            token_file: "/t".to_owned(),
        };
        let err = Vault::new(&conn).err().unwrap().to_string();
        assert!(err.contains("X-Vault-Namespace"), "{err}");
    }
}

//! The agent's Vault calls, over the shared HTTP layer ([`crate::vault::http`]): login
//! (vaultrs's endpoint), mount discovery through `sys/internal/ui/mounts`, reads that keep
//! the lease and hold the body in zeroizing memory charged to the agent's memory budget,
//! and revoke-self.

use std::time::Duration;

use serde_json::value::RawValue;
use vaultrs::api::auth::kubernetes::requests::LoginWithKubernetesRequest;
use zeroize::Zeroizing;

use super::format::SecretData;
use crate::spec::{VaultConnection, MAX_ANSWER_BYTES};
pub use crate::vault::http::VaultError;
use crate::vault::http::{Budget, Connection, Request, VaultHttp};
use crate::vault::kv::{Kv2Read, ReadAnswer};
use crate::vault::mounts::{Engine, Mount};

/// A secret as read: its data map, whether it holds a lease that must outlive the
/// agent's token, and the bytes it holds in the agent's memory budget.
pub struct Fetched {
    pub data: SecretData,
    pub leased: bool,
    pub held_bytes: usize,
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
        Ok((Zeroizing::new(auth.client_token), auth.lease_duration))
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
        let body_bytes = answer.body.capacity();
        let result = parse_read(&answer, api_path, kv2);
        drop(answer);
        budget.release(body_bytes);
        let (data, leased) = result?;
        let held_bytes = data.iter().map(|(k, v)| k.len() + v.as_text().len()).sum();
        if !budget.try_charge(held_bytes) {
            return Err(VaultError::permanent(format!(
                "the data of {api_path} would pass the {} MiB the agent holds for one pod: split the secrets over several pods or make them smaller",
                budget.limit() >> 20
            )));
        }
        Ok(Fetched {
            data,
            leased,
            held_bytes,
        })
    }
}

fn parse_read(
    answer: &crate::vault::http::Answer,
    api_path: &str,
    kv2: bool,
) -> Result<(SecretData, bool), VaultError> {
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
    Ok((data, !outer.lease_id.is_empty()))
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

//! A throwaway PostgreSQL server (Debian's binaries) on a free loopback port, for
//! Vault's database secrets engine. Stopped and deleted on drop.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;

use super::free_port;
use super::openbao::OpenBao;
use super::process::ServerProcess;

const SUPERUSER: &str = "postgres";
const START_ATTEMPTS: usize = 5;

pub struct Postgres {
    server: ServerProcess,
    port: u16,
    password: String,
    bin: PathBuf,
    dir: TempDir,
}

impl Postgres {
    /// initdb + postgres on a free port. As root, both run as the `postgres` user
    /// (initdb refuses root); the superuser `postgres` gets a random password and
    /// every connection, also over the socket, must use it (scram-sha-256).
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("secretstore-postgres-")
            .tempdir()
            .expect("cannot create temp dir");
        let owner = server_user();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("cannot chown postgres temp dir");
        }
        let password = random_password();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("cannot write pwfile");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).expect("cannot chown pwfile");
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "--no-sync",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg(format!("--username={SUPERUSER}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data);
        as_server_user(&mut initdb, owner);
        let output = initdb.output().expect("cannot run initdb");
        assert!(
            output.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );

        let mut failures = Vec::new();
        for attempt in 0..START_ATTEMPTS {
            let port = free_port();
            let mut postgres = Command::new(bin.join("postgres"));
            postgres
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args([
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=50",
                ]);
            as_server_user(&mut postgres, owner);
            // Output goes to a file opened here and inherited, so the server user need not
            // be able to open it.
            let log_path = dir.path().join(format!("postgres-{attempt}.log"));
            // SIGQUIT: immediate shutdown that also ends the server's own children.
            let mut server = ServerProcess::spawn("postgres", postgres, &log_path, libc::SIGQUIT);
            let ready = server.wait_until(Duration::from_secs(60), |_| {
                let status = Command::new(bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
                    .status()
                    .ok()?;
                status.success().then_some(())
            });
            match ready {
                Ok(()) => {
                    return Postgres {
                        server,
                        port,
                        password,
                        bin,
                        dir,
                    }
                }
                Err(log) if log.contains("Address already in use") => failures.push(log),
                Err(log) => panic!("{log}"),
            }
        }
        panic!(
            "PostgreSQL could not bind a port in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// Vault's templated `connection_url` (`{{username}}`/`{{password}}` placeholders).
    pub fn vault_connection_url(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Runs `psql -c <sql>` as the superuser over TCP; the caller checks the status.
    pub fn psql(&self, sql: &str) -> Output {
        self.psql_as(SUPERUSER, &self.password, sql)
    }

    /// Runs `psql -c <sql>` as `user` with `password` over TCP (e.g. dynamic credentials).
    pub fn psql_as(&self, user: &str, password: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(["-U", user, "-d", "postgres", "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("cannot run psql")
    }

    /// Mounts the database engine at `mount`, connects it to this server as the
    /// superuser, and creates role `role` that issues login roles valid for `ttl`
    /// with SELECT on all tables. Read credentials at `<mount>/creds/<role>`.
    pub fn attach_to_vault(&self, vault: &OpenBao, mount: &str, role: &str, ttl: &str) {
        vault.enable_secrets_engine(mount, "database", &json!({}));
        vault.post_json(
            &format!("{mount}/config/postgres"),
            &json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": self.vault_connection_url(),
                "username": SUPERUSER,
                "password": self.password,
                "allowed_roles": [role],
                "verify_connection": true,
            }),
        );
        vault.post_json(
            &format!("{mount}/roles/{role}"),
            &json!({
                "db_name": "postgres",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";",
                ],
                "default_ttl": ttl,
                "max_ttl": ttl,
            }),
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// The directory of the PostgreSQL binaries (`psql`, ...).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The temp dir holding the data directory and the server's socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Debian's newest installed PostgreSQL: `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin() -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .max();
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: \
             run scripts/install-test-deps.sh (as root) first"
        ),
    }
}

/// `(uid, gid)` of the `postgres` user when running as root, `None` otherwise (then the
/// server runs as the current user, which initdb accepts).
fn server_user() -> Option<(u32, u32)> {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("cannot read /etc/passwd");
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&SUPERUSER) && fields.len() > 3)
        .unwrap_or_else(|| {
            panic!("no `postgres` user: run scripts/install-test-deps.sh (as root) to install postgresql")
        });
    let uid = entry[2].parse().expect("bad uid in /etc/passwd");
    let gid = entry[3].parse().expect("bad gid in /etc/passwd");
    Some((uid, gid))
}

/// Drops to the server user by setuid in the child itself (rather than `runuser`, which
/// forks and would leave the server behind when killed).
fn as_server_user(command: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid).env("HOME", "/var/lib/postgresql");
    }
}

fn random_password() -> String {
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).expect("no randomness");
    use base64::Engine;
    format!(
        "pg-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

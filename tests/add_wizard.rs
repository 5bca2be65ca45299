//! The wizard of `secretstore add`, driven on a real terminal (tmux: send-keys,
//! capture-pane) against a real OpenBao: the secret and its key are picked from Vault's
//! lists, the diff is accepted, and the file is exactly what `add --env` writes. Ctrl-C
//! leaves the file as it was, and a path that does not exist is said to be so. No value
//! of a secret ever reaches the screen.
//!
//! Every wait polls the screen with a generous deadline: no step depends on timing.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::openbao::OpenBao;

const DEADLINE: Duration = Duration::from_secs(60);
const VALUES: [&str; 3] = ["pw-value-1f9c", "user-value-77ab", "tok-value-3e21"];

/// A tmux server of the test's own (its own socket), running one command in a pane.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs `script` (a shell script) in a new 160x50 pane; after it ends the pane shows
    /// `EXIT=<status>` and stays.
    fn start(script: &str) -> Tmux {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("tmux.sock");
        let file = dir.path().join("run.sh");
        std::fs::write(&file, format!("{script}\necho \"EXIT=$?\"\nsleep 3600\n"))
            .expect("write script");
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "50",
            ])
            .arg("sh")
            .arg(&file)
            .status()
            .expect("tmux is installed (scripts/install-test-deps.sh)");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket, _dir: dir }
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.socket);
        command
    }

    /// The pane, its history included.
    fn screen(&self) -> String {
        let output = self
            .tmux()
            .args(["capture-pane", "-p", "-J", "-S", "-"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.screen().matches(needle).count()
    }

    /// Waits until `needle` is on the screen more than `seen` times.
    fn wait_for_more(&self, needle: &str, seen: usize) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(needle).count() > seen {
                return screen;
            }
            if start.elapsed() > DEADLINE {
                panic!("{needle:?} did not appear within {DEADLINE:?}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, needle: &str) -> String {
        self.wait_for_more(needle, 0)
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        let status = self
            .tmux()
            .args(["send-keys", "-l", "--", text])
            .status()
            .expect("send-keys");
        assert!(status.success());
    }

    /// Presses keys by tmux name (`Enter`, `C-c`).
    fn press(&self, key: &str) {
        let status = self
            .tmux()
            .args(["send-keys", key])
            .status()
            .expect("send-keys");
        assert!(status.success());
    }

    /// Types `text` into the prompt `needle` once it shows (for the `seen + 1`-th time),
    /// then Enter.
    fn answer(&self, needle: &str, seen: usize, text: &str) {
        self.wait_for_more(needle, seen);
        self.type_text(text);
        self.press("Enter");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The script that runs `secretstore add FILE` with this Vault's address and token.
fn wizard_script(bao: &OpenBao, file: &Path) -> String {
    format!(
        "exec 2>&1\ncd {}\nenv -i PATH=/usr/bin:/bin TERM=\"$TERM\" HOME=/tmp VAULT_ADDR={} VAULT_TOKEN={} {} add {}",
        shell_quote(&file.parent().expect("dir").display().to_string()),
        shell_quote(bao.addr()),
        shell_quote(bao.token()),
        shell_quote(env!("CARGO_BIN_EXE_secretstore")),
        shell_quote(&file.file_name().expect("name").to_string_lossy()),
    )
}

fn vault_with_secrets() -> OpenBao {
    let bao = OpenBao::start();
    bao.kv2_put(
        "secret",
        "shop/db",
        &serde_json::json!({"password": VALUES[0], "user": VALUES[1]}),
    );
    bao.kv2_put(
        "secret",
        "shop/api",
        &serde_json::json!({"token": VALUES[2]}),
    );
    bao.kv2_put("secret", "other/team/x", &serde_json::json!({"a": "b"}));
    bao
}

fn copy_case(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(
        support::repo_root().join("testdata/add/kinds/deployment.yaml"),
        &path,
    )
    .expect("copy");
    path
}

#[test]
fn picking_a_secret_and_key_from_vault_writes_what_add_env_writes() {
    let bao = vault_with_secrets();
    let dir = tempfile::tempdir().expect("temp dir");
    let asked = copy_case(dir.path(), "asked.yaml");
    let flagged = copy_case(dir.path(), "flagged.yaml");
    let output = support::secretstore()
        .arg("add")
        .arg(&flagged)
        .args([
            "--role",
            "shop",
            "--env",
            "DB_PASSWORD=secret/shop/db#password",
        ])
        .output()
        .expect("run add");
    assert!(output.status.success(), "{output:?}");

    let tmux = Tmux::start(&wizard_script(&bao, &asked));
    tmux.wait_for("Workload: deployment/api");
    tmux.wait_for("Container: api");
    tmux.answer("Vault role of the pod:", 0, "shop");
    tmux.wait_for("Add:");
    tmux.press("Enter");
    tmux.answer("Env var name:", 0, "DB_PASSWORD");
    tmux.wait_for("Mount: secret/ (KV v2)");
    // Every secret of the mount is listed, none of their values.
    let screen = tmux.wait_for("secret/shop/db");
    assert!(screen.contains("secret/shop/api"), "{screen}");
    // Typing filters the list; the keys are read in order, so Enter picks the match.
    tmux.type_text("shop/db");
    tmux.press("Enter");
    let screen = tmux.wait_for("Key:");
    assert!(
        screen.contains("password") && screen.contains("user"),
        "{screen}"
    );
    tmux.type_text("password");
    tmux.press("Enter");
    let screen = tmux.wait_for("Write these changes to asked.yaml?");
    assert!(
        screen.contains("+              value: 'secretstore:vault:secret/shop/db#password'"),
        "no diff shown:\n{screen}"
    );
    tmux.type_text("y");
    tmux.press("Enter");
    let screen = tmux.wait_for("EXIT=");
    assert!(screen.contains("EXIT=0"), "{screen}");
    support::assert_no_secret(&screen, &VALUES);
    assert_eq!(
        std::fs::read_to_string(&asked).expect("read"),
        std::fs::read_to_string(&flagged).expect("read"),
        "the wizard wrote something else than add --env:\n{screen}"
    );
}

#[test]
fn a_missing_path_is_said_so_and_ctrl_c_leaves_the_file_as_it_was() {
    let bao = vault_with_secrets();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = copy_case(dir.path(), "deploy.yaml");
    let original = std::fs::read(&file).expect("read");

    let tmux = Tmux::start(&wizard_script(&bao, &file));
    tmux.answer("Vault role of the pod:", 0, "shop");
    tmux.wait_for("Add:");
    // The second choice: a file.
    tmux.press("Down");
    tmux.press("Enter");
    tmux.answer("File path in the container:", 0, "/etc/shop/db.json");
    tmux.wait_for("(type a path)");
    tmux.type_text("type a path");
    tmux.press("Enter");
    // The path starts as the mount's; complete it with a secret that is not there. The
    // list is asked again after that: counted before, so a fast redraw is not missed.
    let seen = tmux.count("Secret:");
    tmux.answer("Vault path of the secret:", 0, "shop/nope");
    tmux.wait_for("secret/shop/nope does not exist in Vault");
    tmux.wait_for_more("Secret:", seen);
    tmux.press("C-c");
    let screen = tmux.wait_for("EXIT=");
    assert!(
        screen.contains("cancelled: deploy.yaml was left as it is"),
        "{screen}"
    );
    assert!(screen.contains("EXIT=1"), "{screen}");
    support::assert_no_secret(&screen, &VALUES);
    assert_eq!(std::fs::read(&file).expect("read"), original);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "something was left next to the file: {names:?}"
    );
}

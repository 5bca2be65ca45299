//! Live mode's `secretstore exec` with real processes: a shell-script app that records the
//! signals it gets, files changed the way the agent changes them (a new file renamed over
//! the old), and the supervisor's forwarding, reaping, exit status, signal and restart.
//! Every wait is a poll with a generous bound; nothing asserts how fast things happen.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secretstore::pod::agent_spec::{ExecWatch, OnChange, WatchedFile, ENV_FILE_ENV, LIVE_ENV};

const TOKEN_REF: &str = "secretstore:vault:secret/shop/api#token";

/// The app: records its start (PID and the token it was given) and each signal.
const APP: &str = r#"
trap 'echo HUP >> "$OUT/events"' HUP
trap 'echo USR1 >> "$OUT/events"' USR1
trap 'echo "TERM $$" >> "$OUT/events"; exit 7' TERM
echo "start $$ $TOKEN" >> "$OUT/events"
while :; do sleep 0.05; done
"#;

struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        lab.replace("env.json", &format!(r#"{{"{TOKEN_REF}":"token-one"}}"#));
        lab.replace("tls.crt", "cert one");
        lab.replace("other.crt", "other one");
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// As the agent writes: a new file, renamed over the old one.
    fn replace(&self, name: &str, contents: &str) {
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).expect("write");
        std::fs::rename(&tmp, self.path(name)).expect("rename");
    }

    fn start(&self, files: &[(&str, OnChange)], script: &str) -> Supervisor {
        let watch = ExecWatch {
            files: files
                .iter()
                .map(|(name, on_change)| WatchedFile {
                    path: self.path(name).display().to_string(),
                    on_change: on_change.clone(),
                })
                .collect(),
        };
        Command::new(env!("CARGO_BIN_EXE_secretstore"))
            .args(["exec", "--", "/bin/sh", "-c", script])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("OUT", self.dir.path())
            .env("TOKEN", TOKEN_REF)
            .env(ENV_FILE_ENV, self.path("env.json"))
            .env(LIVE_ENV, serde_json::to_string(&watch).expect("json"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map(Supervisor)
            .expect("run secretstore exec")
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("events"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits (at most 20 s) until `done` holds for the recorded events.
    fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "waited 20 s for {what}; events: {events:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn count(events: &[String], prefix: &str) -> usize {
    events.iter().filter(|e| e.starts_with(prefix)).count()
}

/// A running `secretstore exec`; a test that fails leaves it (and its app) killed.
struct Supervisor(Child);

impl Supervisor {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our child; SIGTERM reaches the app through the supervisor.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

fn signal(child: &Supervisor, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits for the supervisor to exit; returns its status and stderr.
fn finish(mut child: Supervisor) -> (std::process::ExitStatus, String) {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read stderr");
    }
    let status = child.0.wait().expect("wait");
    let output = std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: stderr.into_bytes(),
    };
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn changed_files_send_one_signal_and_signals_are_forwarded() {
    let lab = Lab::new();
    let hup = OnChange::Signal("SIGHUP".into());
    let child = lab.start(&[("tls.crt", hup.clone()), ("other.crt", hup)], APP);
    let events = lab.wait_for("the app to start", |e| count(e, "start") == 1);
    assert!(events[0].ends_with(" token-one"), "{events:?}");
    // Nothing changed, so nothing is sent: two seconds are several polls and a debounce.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&lab.events(), "HUP"), 0, "{:?}", lab.events());

    // Two files of one refresh: one notification.
    lab.replace("tls.crt", "cert two");
    lab.replace("other.crt", "other two");
    lab.wait_for("SIGHUP after the change", |e| count(e, "HUP") >= 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&lab.events(), "HUP"), 1, "{:?}", lab.events());

    // A later change is a later notification.
    lab.replace("tls.crt", "cert three");
    lab.wait_for("a second SIGHUP", |e| count(e, "HUP") == 2);

    signal(&child, libc::SIGUSR1);
    lab.wait_for("the forwarded SIGUSR1", |e| count(e, "USR1") == 1);
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("tls.crt"), "{stderr}");
    assert!(
        !stderr.contains("token-one") && !stderr.contains("cert two"),
        "{stderr}"
    );
}

#[test]
fn restart_gives_the_app_fresh_env_values() {
    let lab = Lab::new();
    let child = lab.start(&[("env.json", OnChange::Restart)], APP);
    lab.wait_for("the app to start", |e| count(e, "start") == 1);
    lab.replace("env.json", &format!(r#"{{"{TOKEN_REF}":"token-two"}}"#));
    let events = lab.wait_for("the restarted app", |e| count(e, "start") == 2);
    let first_pid = events[0].split(' ').nth(1).expect("pid");
    assert_eq!(events[0], format!("start {first_pid} token-one"));
    assert_eq!(events[1], format!("TERM {first_pid}"), "{events:?}");
    let second: Vec<&str> = events[2].split(' ').collect();
    assert_eq!(second[0], "start");
    assert_ne!(second[1], first_pid, "a new process");
    assert_eq!(second[2], "token-two");
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("restarting the app"), "{stderr}");
    assert!(!stderr.contains("token-"), "{stderr}");
}

#[test]
fn exit_status_of_a_killed_app_and_orphans_reaped() {
    let lab = Lab::new();
    // The app leaves an orphan behind (a backgrounded sleep of an exited subshell), which
    // the supervisor inherits as subreaper, then waits to be told to die.
    let script = r#"
( sleep 0.3 & )
echo "start $$" >> "$OUT/events"
while [ ! -e "$OUT/die" ]; do sleep 0.05; done
kill -KILL $$
"#;
    let child = lab.start(&[("tls.crt", OnChange::Restart)], script);
    lab.wait_for("the app to start", |e| count(e, "start") == 1);
    let pid = child.id();
    // The orphan exits after 0.3 s; once it is reaped, no zombie child is left.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let zombies = children(pid)
            .iter()
            .filter(|(_, state)| *state == 'Z')
            .count();
        let others = children(pid).len();
        if zombies == 0 && others == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "children of the supervisor: {:?}",
            children(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(lab.path("die"), "").expect("write");
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(128 + libc::SIGKILL), "{stderr}");
    assert!(status.signal().is_none());
}

/// (PID, state) of every process whose parent is `parent`.
fn children(parent: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) =
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
        else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            out.push((pid, fields[0].chars().next().unwrap_or('?')));
        }
    }
    out
}

//! Live mode's `secretstore exec` with real processes: apps in shell, Python, Perl and C
//! that record the signals they get, files changed the way the agent changes them (a new
//! file renamed over the old), and the supervisor's forwarding, reaping, exit status,
//! signal and restart. The app must start as the kubelet starts it: nothing blocked or
//! ignored, its own process group, so its own signal handling works.
//! Every wait is a poll with a generous bound; a bound on how fast something happens
//! leaves many seconds of margin.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secretstore::pod::agent_spec::{ExecWatch, OnChange, WatchedFile, ENV_FILE_ENV, LIVE_ENV};

const TOKEN_REF: &str = "secretstore:vault:secret/shop/api#token";

/// The app: records its start (PID and the token it was given) and each signal.
const APP: &str = r#"
trap 'echo HUP >> "$OUT/events"' HUP
trap 'echo USR1 >> "$OUT/events"' USR1
trap 'echo QUIT >> "$OUT/events"' QUIT
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
        self.start_app(files, &["/bin/sh", "-c", script], &[])
    }

    /// Runs `argv` under `secretstore exec` in live mode, watching `files`.
    fn start_app(
        &self,
        files: &[(&str, OnChange)],
        argv: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Supervisor {
        self.command(files, argv, extra_env)
            .spawn()
            .map(Supervisor::new)
            .expect("run secretstore exec")
    }

    fn command(
        &self,
        files: &[(&str, OnChange)],
        argv: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Command {
        let watch = ExecWatch {
            files: files
                .iter()
                .map(|(name, on_change)| WatchedFile {
                    path: self.path(name).display().to_string(),
                    on_change: on_change.clone(),
                })
                .collect(),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_secretstore"));
        command
            .arg("exec")
            .arg("--")
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("OUT", self.dir.path())
            .env("TOKEN", TOKEN_REF)
            .env(ENV_FILE_ENV, self.path("env.json"))
            .env(LIVE_ENV, serde_json::to_string(&watch).expect("json"))
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
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

/// A running `secretstore exec`, its stderr read as it comes; a test that fails leaves it
/// (and its app) killed.
struct Supervisor {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    fn new(mut child: Child) -> Supervisor {
        let stderr = Arc::new(Mutex::new(String::new()));
        let reader = child.stderr.take().map(|mut pipe| {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    stderr.lock().expect("lock").push_str(&text);
                }
            })
        });
        Supervisor {
            child,
            stderr,
            reader,
        }
    }

    fn id(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Waits at most `seconds` for the supervisor to exit.
    fn wait_exit(&mut self, seconds: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the supervisor and every descendant it has (the app included).
    fn kill_all(&mut self) {
        let mut descendants = vec![self.id()];
        let mut i = 0;
        while i < descendants.len() {
            descendants.extend(children(descendants[i]).into_iter().map(|(pid, _)| pid));
            i += 1;
        }
        for &pid in &descendants[1..] {
            // SAFETY: kill(2) on a process that the test's supervisor started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our child; SIGTERM reaches the app through the supervisor.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            if self.wait_exit(10).is_none() {
                self.kill_all();
            }
        }
    }
}

fn signal(child: &Supervisor, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits (at most 30 s) for the supervisor to exit; returns its status and stderr.
fn finish(child: Supervisor) -> (std::process::ExitStatus, String) {
    finish_within(child, 30)
}

/// Waits at most `seconds` for the supervisor to exit (else kills it and the app and
/// fails); returns its status and stderr.
fn finish_within(mut child: Supervisor, seconds: u64) -> (std::process::ExitStatus, String) {
    let Some(status) = child.wait_exit(seconds) else {
        child.kill_all();
        panic!(
            "secretstore exec did not exit within {seconds} s; stderr:\n{}",
            child.stderr()
        );
    };
    // The reader ends when every holder of the pipe has closed it; an app left behind
    // would hold it open, so do not wait for that long.
    if let Some(reader) = child.reader.take() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (status, child.stderr())
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

// Apps that are not shells: a shell resets its signal mask, Python, Perl and C programs
// keep what they inherit, as they should.

/// A Python app: records its start (PID, token, blocked signals, process group, whether
/// SIGTERM has its default action, time) and the SIGHUP and SIGQUIT it handles; sleeps
/// in `time.sleep`.
const PYTHON_APP: &str = r#"
import os, signal, time
out = os.path.join(os.environ["OUT"], "events")
def record(line):
    with open(out, "a") as f:
        f.write(line + "\n")
def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split()[1]
default_term = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
signal.signal(signal.SIGHUP, lambda *_: record("HUP"))
signal.signal(signal.SIGQUIT, lambda *_: record("QUIT"))
record("start %d %s blocked=%s pgid=%d default_term=%s t=%f" % (
    os.getpid(), os.environ["TOKEN"], status("SigBlk"), os.getpgid(0), default_term, time.time()))
while True:
    time.sleep(600)
"#;

/// A Perl app: records its start (blocked and ignored signals, process group) and the
/// SIGHUP it handles.
const PERL_APP: &str = r#"
use strict; use warnings;
my $out = "$ENV{OUT}/events";
sub record { open(my $f, '>>', $out) or die "$out: $!"; print $f "$_[0]\n"; close $f; }
my ($blocked, $ignored) = ('?', '?');
open(my $status, '<', '/proc/self/status') or die;
while (<$status>) {
    $blocked = $1 if /^SigBlk:\s*(\S+)/;
    $ignored = $1 if /^SigIgn:\s*(\S+)/;
}
close $status;
$SIG{HUP} = sub { record("HUP") };
record("start $$ $ENV{TOKEN} blocked=$blocked ignored=$ignored pgid=" . getpgrp());
sleep 600 while 1;
"#;

/// A C program: records its start (blocked and ignored signals, process group), then
/// waits in pause(2) with every signal at its default action.
const C_APP: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char path[4096], line[256], blocked[64] = "?", ignored[64] = "?";
    snprintf(path, sizeof path, "%s/events", getenv("OUT"));
    FILE *status = fopen("/proc/self/status", "r");
    while (status && fgets(line, sizeof line, status)) {
        if (!strncmp(line, "SigBlk:", 7)) sscanf(line + 7, "%63s", blocked);
        if (!strncmp(line, "SigIgn:", 7)) sscanf(line + 7, "%63s", ignored);
    }
    FILE *out = fopen(path, "a");
    fprintf(out, "start %d blocked=%s ignored=%s pgid=%d\n", (int)getpid(), blocked, ignored,
            (int)getpgrp());
    fclose(out);
    for (;;) pause();
}
"#;

/// An interpreter or compiler of the base image (scripts/install-test-deps.sh installs
/// it where it is missing).
fn system_tool(path: &str) -> &str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run scripts/install-test-deps.sh"
    );
    path
}

/// The value of `name=` in a recorded line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|part| part.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

fn mask(line: &str, name: &str) -> u64 {
    u64::from_str_radix(field(line, name), 16).unwrap_or_else(|_| panic!("{name} in {line:?}"))
}

/// The PID in a `start PID ...` line.
fn pid_of(line: &str) -> &str {
    line.split(' ').nth(1).expect("pid")
}

fn start_python(lab: &Lab, files: &[(&str, OnChange)]) -> Supervisor {
    lab.start_app(
        files,
        &[system_tool("/usr/bin/python3"), "-c", PYTHON_APP],
        &[],
    )
}

#[test]
fn python_app_starts_unblocked_in_its_own_group_and_sigterm_stops_it() {
    let lab = Lab::new();
    let child = start_python(&lab, &[("tls.crt", OnChange::Signal("SIGHUP".into()))]);
    let events = lab.wait_for("the app to start", |e| count(e, "start") == 1);
    let start = &events[0];
    assert_eq!(mask(start, "blocked"), 0, "no blocked signal: {start}");
    assert_eq!(field(start, "default_term"), "True", "{start}");
    assert_eq!(
        field(start, "pgid"),
        pid_of(start),
        "its own process group: {start}"
    );
    // The kubelet's SIGTERM to the container's first process: the app, asleep in
    // time.sleep, ends at once by SIGTERM's default action.
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish_within(child, 15);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{stderr}");
}

#[test]
fn python_sighup_handler_runs_for_signal_on_change() {
    let lab = Lab::new();
    let child = start_python(&lab, &[("tls.crt", OnChange::Signal("SIGHUP".into()))]);
    lab.wait_for("the app to start", |e| count(e, "start") == 1);
    lab.replace("tls.crt", "cert two");
    lab.wait_for("the app's SIGHUP handler", |e| count(e, "HUP") == 1);
    lab.replace("tls.crt", "cert three");
    lab.wait_for("a second SIGHUP", |e| count(e, "HUP") == 2);
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish_within(child, 15);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(
        !stderr.contains("token-one") && !stderr.contains("cert t"),
        "{stderr}"
    );
}

#[test]
fn perl_app_starts_unblocked_and_its_sighup_handler_runs() {
    let lab = Lab::new();
    let child = lab.start_app(
        &[("tls.crt", OnChange::Signal("SIGHUP".into()))],
        &[system_tool("/usr/bin/perl"), "-e", PERL_APP],
        &[],
    );
    let events = lab.wait_for("the app to start", |e| count(e, "start") == 1);
    let start = &events[0];
    assert!(start.contains(" token-one "), "{start}");
    assert_eq!(mask(start, "blocked"), 0, "no blocked signal: {start}");
    // perl ignores SIGFPE itself as it starts; nothing else may be ignored.
    let sigfpe = 1u64 << (libc::SIGFPE - 1);
    assert_eq!(
        mask(start, "ignored") & !sigfpe,
        0,
        "no ignored signal: {start}"
    );
    assert_eq!(field(start, "pgid"), pid_of(start), "{start}");
    lab.replace("tls.crt", "cert two");
    lab.wait_for("the app's SIGHUP handler", |e| count(e, "HUP") == 1);
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish_within(child, 15);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{stderr}");
}

#[test]
fn compiled_app_starts_with_nothing_blocked_or_ignored() {
    let lab = Lab::new();
    let source = lab.path("app.c");
    std::fs::write(&source, C_APP).expect("write app.c");
    let binary = lab.path("app");
    let built = Command::new(system_tool("/usr/bin/cc"))
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("run cc");
    assert!(
        built.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let binary = binary.display().to_string();
    let child = lab.start_app(&[("tls.crt", OnChange::Restart)], &[&binary], &[]);
    let events = lab.wait_for("the app to start", |e| count(e, "start") == 1);
    let start = &events[0];
    assert_eq!(mask(start, "blocked"), 0, "no blocked signal: {start}");
    assert_eq!(mask(start, "ignored"), 0, "no ignored signal: {start}");
    assert_eq!(field(start, "pgid"), pid_of(start), "{start}");
    // Restarted: the new process starts as clean as the first.
    lab.replace("tls.crt", "cert two");
    let events = lab.wait_for("the restarted app", |e| count(e, "start") == 2);
    assert_ne!(pid_of(&events[1]), pid_of(start));
    assert_eq!(mask(&events[1], "blocked"), 0, "{events:?}");
    assert_eq!(mask(&events[1], "ignored"), 0, "{events:?}");
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish_within(child, 15);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{stderr}");
}

#[test]
fn python_restart_is_quick() {
    let lab = Lab::new();
    let child = start_python(&lab, &[("env.json", OnChange::Restart)]);
    lab.wait_for("the app to start", |e| count(e, "start") == 1);
    let changed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    lab.replace("env.json", &format!(r#"{{"{TOKEN_REF}":"token-two"}}"#));
    let events = lab.wait_for("the restarted app", |e| count(e, "start") == 2);
    let second = &events[1];
    assert!(second.contains(" token-two "), "{events:?}");
    assert_eq!(mask(second, "blocked"), 0, "{second}");
    let started: f64 = field(second, "t").parse().expect("t");
    // One second of debounce, a poll, SIGTERM, the old app's end (at once: SIGTERM's
    // default action) and Python's start. Before, a blocked SIGTERM made this the 30 s
    // grace and a SIGKILL.
    let took = started - changed;
    eprintln!("restart of a Python app: {took:.3} s from the change (1 s of it debounce)");
    assert!(took < 10.0, "restart took {took:.3} s: {events:?}");
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish_within(child, 15);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(!stderr.contains("the app did not stop"), "{stderr}");
    assert!(!stderr.contains("token-"), "{stderr}");
}

#[test]
fn a_survived_sigquit_or_sigint_keeps_notifications_on() {
    let lab = Lab::new();
    let child = lab.start(&[("tls.crt", OnChange::Signal("SIGHUP".into()))], APP);
    lab.wait_for("the app to start", |e| count(e, "start") == 1);
    // A JVM prints its threads on SIGQUIT and goes on.
    signal(&child, libc::SIGQUIT);
    lab.wait_for("the forwarded SIGQUIT", |e| count(e, "QUIT") == 1);
    lab.replace("tls.crt", "cert two");
    lab.wait_for("SIGHUP after the SIGQUIT", |e| count(e, "HUP") == 1);
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(7), "{stderr}");
}

#[test]
fn a_closed_stderr_neither_stops_the_supervisor_nor_orphans_the_app() {
    let lab = Lab::new();
    let mut spawned = lab
        .command(
            &[("tls.crt", OnChange::Signal("SIGHUP".into()))],
            &["/bin/sh", "-c", APP],
            &[],
        )
        .spawn()
        .expect("run secretstore exec");
    // Whoever read the container's log is gone: every write to stderr fails (EPIPE).
    drop(spawned.stderr.take());
    let child = Supervisor::new(spawned);
    lab.wait_for("the app to start", |e| count(e, "start") == 1);
    lab.replace("tls.crt", "cert two");
    lab.wait_for("SIGHUP", |e| count(e, "HUP") == 1);
    // The supervisor logged that notification into the closed pipe, and goes on.
    lab.replace("tls.crt", "cert three");
    lab.wait_for("a second SIGHUP", |e| count(e, "HUP") == 2);
    signal(&child, libc::SIGUSR1);
    lab.wait_for("the forwarded SIGUSR1", |e| count(e, "USR1") == 1);
    signal(&child, libc::SIGTERM);
    let (status, _) = finish(child);
    assert_eq!(
        status.code(),
        Some(7),
        "the app's own status, not a panic's 101"
    );
}

#[test]
fn changes_every_100ms_are_delivered_within_the_max_wait() {
    let lab = Lab::new();
    let child = lab.start(&[("tls.crt", OnChange::Signal("SIGHUP".into()))], APP);
    lab.wait_for("the app to start", |e| count(e, "start") == 1);
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let writing = Arc::clone(&writing);
        let dir = lab.dir.path().to_owned();
        std::thread::spawn(move || {
            // Never quiet for the debounce second, for up to 60 s.
            let end = Instant::now() + Duration::from_secs(60);
            let mut n = 0u64;
            while writing.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < end {
                n += 1;
                let tmp = dir.join(".tls.crt.tmp");
                std::fs::write(&tmp, format!("cert {n}")).expect("write");
                std::fs::rename(&tmp, dir.join("tls.crt")).expect("rename");
                std::thread::sleep(Duration::from_millis(100));
            }
            Instant::now() < end
        })
    };
    // Delivered about 10 s after the first change, while the changes go on.
    let began = Instant::now();
    let events = lab.wait_for("SIGHUP while the file keeps changing", |e| {
        count(e, "HUP") >= 1
    });
    let waited = began.elapsed();
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let still_writing = writer.join().expect("writer");
    assert!(
        still_writing,
        "the writer stopped before the SIGHUP: {events:?}"
    );
    eprintln!(
        "first notification after {:.1} s of changes every 100 ms",
        waited.as_secs_f64()
    );
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(7), "{stderr}");
}

#[test]
fn restarts_keep_a_minimum_gap() {
    let lab = Lab::new();
    let child = lab.start(&[("tls.crt", OnChange::Restart)], APP);
    lab.wait_for("the app to start", |e| count(e, "start") == 1);
    lab.replace("tls.crt", "cert two");
    lab.wait_for("the first restart", |e| count(e, "start") == 2);
    let first_restart = Instant::now();
    // Changed again at once: the restart waits for the 10 s gap after the first.
    lab.replace("tls.crt", "cert three");
    lab.wait_for("the second restart", |e| count(e, "start") == 3);
    let gap = first_restart.elapsed();
    eprintln!("second restart {:.1} s after the first", gap.as_secs_f64());
    assert!(
        gap >= Duration::from_secs(7),
        "restarted again after {gap:?}: {:?}",
        lab.events()
    );
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("restarting later"), "{stderr}");
}

#[test]
fn an_app_that_cannot_be_executed_is_named_as_written() {
    let lab = Lab::new();
    let bin_ref = "secretstore:vault:secret/shop/api#bin";
    lab.replace(
        "env.json",
        &format!(r#"{{"{TOKEN_REF}":"token-one","{bin_ref}":"/no/such/hunter2"}}"#),
    );
    let child = lab.start_app(
        &[("tls.crt", OnChange::Restart)],
        &[bin_ref, "--serve"],
        &[],
    );
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot execute {bin_ref}")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn json_logs_are_one_object_per_line_without_values() {
    let lab = Lab::new();
    let json = [("SECRETSTORE_LOG_FORMAT", "json")];
    let child = lab.start_app(
        &[
            ("env.json", OnChange::Restart),
            ("tls.crt", OnChange::Signal("SIGHUP".into())),
        ],
        &["/bin/sh", "-c", APP],
        &json,
    );
    lab.wait_for("the app to start", |e| count(e, "start") == 1);
    lab.replace("tls.crt", "cert two");
    lab.wait_for("SIGHUP", |e| count(e, "HUP") == 1);
    lab.replace("env.json", &format!(r#"{{"{TOKEN_REF}":"token-two"}}"#));
    lab.wait_for("the restarted app", |e| count(e, "start") == 2);
    signal(&child, libc::SIGTERM);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(7), "{stderr}");
    // The agent's lines too: one error line without a spec.
    let agent = Command::new(env!("CARGO_BIN_EXE_secretstore"))
        .arg("agent")
        .env_clear()
        .envs(json)
        .output()
        .expect("run secretstore agent");
    assert_eq!(agent.status.code(), Some(2));
    assert!(agent.stdout.is_empty());
    let all = format!("{stderr}{}", String::from_utf8_lossy(&agent.stderr));
    let lines: Vec<serde_json::Value> = all
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let steps: Vec<&str> = lines
        .iter()
        .map(|l| l["step"].as_str().unwrap_or(""))
        .collect();
    assert!(
        steps.contains(&"notify") && steps.contains(&"restart"),
        "{all}"
    );
    assert_eq!(
        lines.last().expect("agent line")["component"],
        "agent",
        "{all}"
    );
    for line in &lines {
        for key in ["ts", "level", "component", "step", "msg"] {
            assert!(line[key].is_string(), "{key} in {line}");
        }
    }
    assert!(
        !all.contains("token-") && !all.contains("cert two"),
        "{all}"
    );
}

/// Reads one line from its terminal, as an interactive app (`tty: true`) does.
const PYTHON_TTY_APP: &str = r#"
import os, sys
out = os.path.join(os.environ["OUT"], "events")
def record(line):
    with open(out, "a") as f:
        f.write(line + "\n")
record("start %d foreground=%s" % (os.getpid(), os.tcgetpgrp(0) == os.getpgrp()))
record("read " + sys.stdin.readline().strip())
"#;

#[test]
fn with_a_terminal_the_app_s_own_group_is_in_the_foreground() {
    let lab = Lab::new();
    let python = system_tool("/usr/bin/python3");
    // pty.spawn runs secretstore exec as the session leader of a new terminal, as a
    // container runtime does for `tty: true`, and copies our stdin to it.
    let command = lab.command(
        &[("tls.crt", OnChange::Signal("SIGHUP".into()))],
        &[python, "-c", PYTHON_TTY_APP],
        &[],
    );
    let exec_argv: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut terminal = Command::new(python);
    terminal
        .args([
            "-c",
            "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
        ])
        .args(&exec_argv)
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = Supervisor::new(terminal.spawn().expect("run pty.spawn"));
    let events = lab.wait_for("the app to start", |e| count(e, "start") == 1);
    assert_eq!(field(&events[0], "foreground"), "True", "{events:?}");
    // In a background group, reading the terminal would stop the app (SIGTTIN).
    let mut stdin = child.child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, b"hello\n").expect("type a line");
    lab.wait_for("the app to read its terminal", |e| {
        e.iter().any(|l| l == "read hello")
    });
    drop(stdin);
    let status = child
        .wait_exit(30)
        .expect("the app, exec and pty.spawn end");
    assert_eq!(status.code(), Some(0));
}

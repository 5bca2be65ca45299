//! Live mode's `secretstore exec` (SPEC 2.1.6): instead of `execve`ing the app, it stays
//! as the container's first process and runs the app as its child. It forwards every
//! catchable signal to the app, reaps every zombie (it is PID 1 of the container, and a
//! child subreaper elsewhere), exits with the app's status (128 + signal when the app was
//! killed), and when the files it watches change, sends the app a signal or restarts it
//! with fresh env and files.
//!
//! Changes are found by polling the watched files' metadata: the agent replaces a file by
//! renaming a new one over it, so a change always shows as a new inode. Polling needs no
//! inotify watch on a bind-mounted sub-path and costs a few `stat` calls per tick.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::pod::agent_spec::{ExecWatch, OnChange};
use crate::pod::exec::{prepare, EXIT_CANNOT_EXECUTE, EXIT_FAILED, EXIT_NOT_FOUND};

/// How often the watched files are looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// Changes are delivered once no further change was seen for this long, so the files
/// one refresh writes (within milliseconds of each other) make one notification.
pub const DEBOUNCE: Duration = Duration::from_secs(1);
/// A restart waits this long for the app to exit after SIGTERM, then kills it.
pub const RESTART_GRACE: Duration = Duration::from_secs(30);

/// What identifies one version of a file: a rename gives a new inode, an in-place write
/// a new size or time.
type Fingerprint = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn fingerprint(path: &Path) -> Fingerprint {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

struct Watched {
    path: PathBuf,
    on_change: OnChange,
    seen: Fingerprint,
}

/// The signals the supervisor takes over: every one except those that cannot be caught
/// and those the kernel raises for the supervisor's own faults.
fn supervised_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigfillset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sig in [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            libc::sigdelset(&mut set, sig);
        }
        set
    }
}

/// The signal number of a name from [`crate::pod::agent_spec::SIGNALS`].
pub fn signal_number(name: &str) -> Option<i32> {
    Some(match name {
        "SIGHUP" => libc::SIGHUP,
        "SIGINT" => libc::SIGINT,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGUSR1" => libc::SIGUSR1,
        "SIGUSR2" => libc::SIGUSR2,
        "SIGPIPE" => libc::SIGPIPE,
        "SIGALRM" => libc::SIGALRM,
        "SIGTERM" => libc::SIGTERM,
        "SIGCONT" => libc::SIGCONT,
        "SIGWINCH" => libc::SIGWINCH,
        "SIGURG" => libc::SIGURG,
        "SIGIO" => libc::SIGIO,
        _ => return None,
    })
}

fn log(message: &str) {
    eprintln!("secretstore exec: {message}");
}

/// Starts the app with its references replaced from the env file as it is now.
fn start(
    argv: &[OsString],
    env: &[(OsString, OsString)],
    env_file: &Path,
) -> Result<libc::pid_t, i32> {
    let prepared = prepare(argv.to_vec(), env.to_vec(), env_file).map_err(|e| {
        log(&e.to_string());
        EXIT_FAILED
    })?;
    // std resets the signal mask and dispositions in the child before it executes.
    let child = Command::new(&prepared.program)
        .args(&prepared.args)
        .env_clear()
        .envs(prepared.env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .map_err(|err| {
            log(&format!(
                "cannot execute {}: {err}",
                prepared.program.to_string_lossy()
            ));
            if err.kind() == std::io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXECUTE
            }
        })?;
    // The child is reaped with waitpid below, not through `Child`.
    Ok(child.id() as libc::pid_t)
}

/// The exit status a shell would report for a wait status.
fn exit_status(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        EXIT_FAILED
    }
}

enum State {
    Running,
    /// SIGTERM sent for a restart at this time; SIGKILL sent when `killed`.
    Restarting {
        since: Instant,
        killed: bool,
    },
}

/// Runs the app under supervision until it exits; returns the exit status to use.
pub fn run(
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_file: &Path,
    watch: ExecWatch,
) -> i32 {
    let signals = supervised_signals();
    // SAFETY: plain syscalls on a valid, initialised signal set; prctl takes integers.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
        // Orphans of the app come to us to be reaped even when we are not PID 1.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let mut watched: Vec<Watched> = watch
        .files
        .into_iter()
        .filter(|f| f.on_change != OnChange::None)
        .map(|f| Watched {
            seen: fingerprint(Path::new(&f.path)),
            path: PathBuf::from(f.path),
            on_change: f.on_change,
        })
        .collect();
    let mut app = match start(&argv, &env, env_file) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    let mut state = State::Running;
    let mut stopping = false;
    // Changed files not yet delivered: their indices, and when the last change was seen.
    let mut pending: Vec<usize> = Vec::new();
    let mut last_change = Instant::now();
    loop {
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: POLL.as_nanos() as libc::c_long,
        };
        // SAFETY: siginfo_t is plain data the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to an initialised set, a siginfo and a timespec.
        let sig = unsafe { libc::sigtimedwait(&signals, &mut info, &timeout) };
        if sig == libc::SIGCHLD {
            if let Some(status) = reap(app) {
                match state {
                    State::Restarting { .. } if !stopping => {
                        for w in &mut watched {
                            w.seen = fingerprint(&w.path);
                        }
                        pending.clear();
                        app = match start(&argv, &env, env_file) {
                            Ok(pid) => pid,
                            Err(code) => return code,
                        };
                        log(&format!(
                            "app restarted after its files changed (PID {app})"
                        ));
                        state = State::Running;
                    }
                    _ => return exit_status(status),
                }
            }
        } else if sig > 0 {
            // SAFETY: kill(2) with a PID we started and have not reaped.
            unsafe { libc::kill(app, sig) };
            if matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGQUIT) {
                stopping = true;
            }
        }
        if let State::Restarting { since, killed } = &mut state {
            if !*killed && since.elapsed() >= RESTART_GRACE {
                log(&format!(
                    "the app did not stop within {}s of SIGTERM: killing it",
                    RESTART_GRACE.as_secs()
                ));
                // SAFETY: as above.
                unsafe { libc::kill(app, libc::SIGKILL) };
                *killed = true;
            }
            continue;
        }
        if stopping {
            continue;
        }
        for (i, w) in watched.iter_mut().enumerate() {
            let now = fingerprint(&w.path);
            if now != w.seen {
                w.seen = now;
                if !pending.contains(&i) {
                    pending.push(i);
                }
                last_change = Instant::now();
            }
        }
        if pending.is_empty() || last_change.elapsed() < DEBOUNCE {
            continue;
        }
        let changed: Vec<&Watched> = pending.iter().map(|&i| &watched[i]).collect();
        let paths: Vec<String> = changed
            .iter()
            .map(|w| w.path.display().to_string())
            .collect();
        if changed.iter().any(|w| w.on_change == OnChange::Restart) {
            log(&format!(
                "{} changed: restarting the app (SIGTERM to PID {app})",
                paths.join(", ")
            ));
            // SAFETY: as above.
            unsafe { libc::kill(app, libc::SIGTERM) };
            state = State::Restarting {
                since: Instant::now(),
                killed: false,
            };
        } else {
            let mut sent: Vec<&str> = Vec::new();
            for w in &changed {
                if let OnChange::Signal(name) = &w.on_change {
                    if !sent.contains(&name.as_str()) {
                        if let Some(number) = signal_number(name) {
                            // SAFETY: as above.
                            unsafe { libc::kill(app, number) };
                            sent.push(name);
                        }
                    }
                }
            }
            log(&format!(
                "{} changed: sent {} to the app (PID {app})",
                paths.join(", "),
                sent.join(", ")
            ));
        }
        pending.clear();
    }
}

/// Reaps every exited child; returns the app's wait status if the app was among them.
fn reap(app: libc::pid_t) -> Option<libc::c_int> {
    let mut app_status = None;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid(2) writes the status into a valid int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return app_status;
        }
        if pid == app {
            app_status = Some(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_signal_has_a_number() {
        for name in crate::pod::agent_spec::SIGNALS {
            assert!(signal_number(name).is_some(), "{name}");
        }
    }

    #[test]
    fn exit_status_of_signals_and_codes() {
        assert_eq!(exit_status(3 << 8), 3);
        assert_eq!(exit_status(libc::SIGKILL), 137);
    }
}

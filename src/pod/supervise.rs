//! Live mode's `secretstore exec` (SPEC 2.1.6): instead of `execve`ing the app, it stays
//! as the container's first process and runs the app as its child. It forwards every
//! catchable signal to the app, reaps every zombie (it is PID 1 of the container, and a
//! child subreaper elsewhere), exits with the app's status (128 + signal when the app was
//! killed), and when the files it watches change, sends the app a signal or restarts it
//! with fresh env and files.
//!
//! The app starts as the kubelet would start it (SPEC 2.1.8): the supervisor blocks the
//! signals it takes over, and a child inherits a blocked mask and ignored signals across
//! `execve` (most programs never reset them), so the child unblocks every signal, sets
//! every disposition to its default and gets its own process group before it executes.
//!
//! Changes are found by polling the watched files' metadata: the agent replaces a file by
//! renaming a new one over it, so a change always shows as a new inode. Polling needs no
//! inotify watch on a bind-mounted sub-path and costs a few `stat` calls per tick.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::pod::agent::log::Log;
use crate::pod::agent_spec::{ExecWatch, OnChange};
use crate::pod::exec::{cannot_execute, prepare, EXIT_FAILED};

/// How often the watched files are looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// Changes are delivered once no further change was seen for this long, so the files
/// one refresh writes (within milliseconds of each other) make one notification.
pub const DEBOUNCE: Duration = Duration::from_secs(1);
/// Files that keep changing (more often than [`DEBOUNCE`]) are delivered at the latest
/// this long after the first undelivered change.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// A restart waits this long for the app to exit after SIGTERM, then kills it.
pub const RESTART_GRACE: Duration = Duration::from_secs(30);
/// The least time between two restarts: changes within it wait for its end.
pub const RESTART_MIN_GAP: Duration = Duration::from_secs(10);

/// Linux's signals are 1 to 64, and its signal set is 64 bits.
const KERNEL_SIGNALS: libc::c_long = 64;
const KERNEL_SIGSET_BYTES: libc::c_long = 8;

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

/// Starts the app with its references replaced from the env file as it is now.
fn start(
    log: &Log,
    argv: &[OsString],
    env: &[(OsString, OsString)],
    env_file: &Path,
) -> Result<libc::pid_t, i32> {
    let prepared = prepare(argv.to_vec(), env.to_vec(), env_file).map_err(|e| {
        log.error("start", &e.to_string(), &[]);
        EXIT_FAILED
    })?;
    let mut command = Command::new(&prepared.program);
    command
        .args(&prepared.args)
        .env_clear()
        .envs(prepared.env.iter().map(|(k, v)| (k, v)));
    // SAFETY: the closure runs in the forked child before it executes, and makes only
    // async-signal-safe calls (system calls and their thin wrappers) with valid pointers.
    unsafe {
        command.pre_exec(|| {
            // Its own process group; with a terminal (`tty: true`) that the supervisor's
            // group holds, the app's group takes it over, as the container's first process
            // had it (SIGTTOU is still blocked here, which lets a background group do so).
            let foreground = libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp();
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if foreground {
                libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
            }
            // Defaults first, then unblock: a signal pending now meets its default action.
            // The raw call, because the C library refuses to touch the two real-time
            // signals it keeps for itself, and an app must not inherit them ignored either.
            // A zeroed kernel sigaction (32 bytes cover every layout) is SIG_DFL, no
            // flags, an empty mask.
            let default = [0u64; 4];
            for sig in 1..=KERNEL_SIGNALS {
                // SIGKILL and SIGSTOP refuse (EINVAL); they cannot be changed anyway.
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    KERNEL_SIGSET_BYTES,
                );
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|err| cannot_execute(log, &prepared, &err))?;
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

/// Changed files not yet delivered.
#[derive(Default)]
struct Pending {
    /// Indices into the watched files.
    files: Vec<usize>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Pending {
    fn add(&mut self, index: usize, now: Instant) {
        if !self.files.contains(&index) {
            self.files.push(index);
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// Quiet for [`DEBOUNCE`], or waiting for [`MAX_WAIT`] already.
    fn due(&self, now: Instant) -> bool {
        match (self.first, self.last) {
            (Some(first), Some(last)) => {
                now.duration_since(last) >= DEBOUNCE || now.duration_since(first) >= MAX_WAIT
            }
            _ => false,
        }
    }

    fn clear(&mut self) {
        *self = Pending::default();
    }
}

/// Runs the app under supervision until it exits; returns the exit status to use.
pub fn run(
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_file: &Path,
    watch: ExecWatch,
) -> i32 {
    let log = Log::new("exec");
    let signals = supervised_signals();
    // SAFETY: plain syscalls on a valid, initialised signal set; prctl takes integers.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
        // Orphans of the app come to us to be reaped even when we are not PID 1.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    // SAFETY: getpid(2) cannot fail.
    let own_pid = unsafe { libc::getpid() };
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
    let mut app = match start(&log, &argv, &env, env_file) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    let mut state = State::Running;
    // Set by SIGTERM: the container is stopping, so no more notifications. The app may
    // survive any other signal (SIGQUIT makes a JVM print its threads), and watching
    // goes on.
    let mut stopping = false;
    let mut pending = Pending::default();
    let mut last_restart: Option<Instant> = None;
    let mut restart_deferred = false;
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
                        app = match start(&log, &argv, &env, env_file) {
                            Ok(pid) => pid,
                            Err(code) => return code,
                        };
                        log.info(
                            "restart",
                            "app restarted after its files changed",
                            &[("pid", &app)],
                        );
                        state = State::Running;
                    }
                    _ => return exit_status(status),
                }
            }
        } else if sig == libc::SIGPIPE && raised_by(&info, own_pid) {
            // Our own write to a closed stderr: the app's business is not ours.
        } else if sig > 0 {
            // SAFETY: kill(2) with a PID we started and have not reaped.
            unsafe { libc::kill(app, sig) };
            if sig == libc::SIGTERM {
                stopping = true;
            }
        }
        if let State::Restarting { since, killed } = &mut state {
            if !*killed && since.elapsed() >= RESTART_GRACE {
                log.warn(
                    "restart",
                    "the app did not stop after SIGTERM: killing it",
                    &[("pid", &app), ("grace_s", &RESTART_GRACE.as_secs())],
                );
                // SAFETY: as above.
                unsafe { libc::kill(app, libc::SIGKILL) };
                *killed = true;
            }
            continue;
        }
        if stopping {
            continue;
        }
        let now = Instant::now();
        for (i, w) in watched.iter_mut().enumerate() {
            let fingerprint = fingerprint(&w.path);
            if fingerprint != w.seen {
                w.seen = fingerprint;
                pending.add(i, now);
            }
        }
        if !pending.due(now) {
            continue;
        }
        let changed: Vec<&Watched> = pending.files.iter().map(|&i| &watched[i]).collect();
        let paths: Vec<String> = changed
            .iter()
            .map(|w| w.path.display().to_string())
            .collect();
        let paths = paths.join(", ");
        if changed.iter().any(|w| w.on_change == OnChange::Restart) {
            if let Some(gap_left) =
                last_restart.and_then(|at| RESTART_MIN_GAP.checked_sub(at.elapsed()))
            {
                if !restart_deferred {
                    restart_deferred = true;
                    log.info(
                        "restart",
                        "files changed soon after the last restart: restarting later",
                        &[("files", &paths), ("in_ms", &gap_left.as_millis())],
                    );
                }
                continue;
            }
            restart_deferred = false;
            log.info(
                "restart",
                "files changed: restarting the app (SIGTERM)",
                &[("files", &paths), ("pid", &app)],
            );
            // SAFETY: as above.
            unsafe { libc::kill(app, libc::SIGTERM) };
            last_restart = Some(now);
            state = State::Restarting {
                since: now,
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
            log.info(
                "notify",
                "files changed: signal sent to the app",
                &[
                    ("files", &paths),
                    ("signal", &sent.join(",")),
                    ("pid", &app),
                ],
            );
        }
        pending.clear();
    }
}

/// Whether a signal was raised by this process itself (SIGPIPE from its own write).
fn raised_by(info: &libc::siginfo_t, pid: libc::pid_t) -> bool {
    // SAFETY: si_pid is valid for signals sent by a process or the kernel on its behalf
    // (SI_USER, SI_TKILL, SI_QUEUE); for others it reads as 0, which is never our PID.
    info.si_code <= 0 && unsafe { info.si_pid() } == pid
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
    fn pending_changes_are_due_when_quiet_or_after_the_max_wait() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        assert!(!pending.due(t0 + MAX_WAIT));
        pending.add(0, t0);
        assert!(!pending.due(t0 + DEBOUNCE / 2));
        assert!(pending.due(t0 + DEBOUNCE));
        // A change every 100 ms: never quiet, due at the max wait.
        let mut at = t0;
        while at < t0 + MAX_WAIT {
            at += Duration::from_millis(100);
            pending.add(1, at);
            assert_eq!(pending.due(at), at >= t0 + MAX_WAIT, "{:?}", at - t0);
        }
        assert_eq!(pending.files, [0, 1]);
        pending.clear();
        assert!(!pending.due(at + MAX_WAIT));
    }

    #[test]
    fn exit_status_of_signals_and_codes() {
        assert_eq!(exit_status(3 << 8), 3);
        assert_eq!(exit_status(libc::SIGKILL), 137);
    }
}

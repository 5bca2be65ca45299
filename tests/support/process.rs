//! A background server process whose output goes to a log file that is shown only when
//! the test fails (on panic, or when the server does not come up).

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct ServerProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
    /// Signal sent first on drop, so a server can stop its own children; SIGKILL follows.
    stop_signal: libc::c_int,
}

impl ServerProcess {
    /// Spawns `command` with stdout and stderr appended to `log_path`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log_path: &Path,
        stop_signal: libc::c_int,
    ) -> Self {
        let log = File::create(log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("cannot clone log file handle");
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let description = format!("{command:?}");
        let child = spawn_dying_with_test_process(command)
            .unwrap_or_else(|e| panic!("cannot start {name} ({description}): {e}"));
        ServerProcess {
            name: name.to_owned(),
            child,
            log_path: log_path.to_owned(),
            stop_signal,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Polls `ready` every 50 ms until it returns `Some`, the process exits (`Err` with
    /// its log) or `timeout` passes (panics with the log).
    pub fn wait_until<T>(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = ready(self) {
                return Ok(value);
            }
            if let Some(status) = self.exit_status() {
                return Err(format!(
                    "{} exited early ({status}); its log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready after {timeout:?}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.name,
                self.log_path.display(),
                self.log()
            );
        }
        if self.exit_status().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe { libc::kill(pid, self.stop_signal) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if self.exit_status().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type SpawnRequest = (Command, Sender<io::Result<Child>>);

/// Spawns `command` so that the kernel kills it when the test process dies, even by
/// SIGKILL or abort, when no Drop runs. PR_SET_PDEATHSIG fires when the spawning
/// *thread* ends, so spawning happens on one thread that lives as long as the process:
/// a server kept in a `static` then outlives the test that started it.
fn spawn_dying_with_test_process(mut command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("test-server-spawner".to_owned())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(requests)
    });
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply, response) = channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    response
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

//! A started container (the live sidecar, or any container run the kubelet's way) whose
//! stderr a reader thread collects as it comes, so that a full pipe never blocks it.

use std::io::Read;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::pod::{Container, KubeletPod};

/// A running container whose stderr is collected as it comes (a full pipe would block it).
pub struct Running {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Running {
    pub fn start(container: &Container) -> Running {
        let mut child = container.spawn();
        let mut pipe = child.stderr.take().expect("stderr piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        Running {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("lock")).into_owned()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our child, not yet waited for.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits (at most 30 s) for the container to exit; returns its status and log.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.reader.take() {
                    reader.join().expect("stderr reader");
                }
                return (status, self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("container did not exit within 30 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then its exit (at most 30 s), which must be a success; returns its log.
    pub fn stop(self) -> String {
        self.signal(libc::SIGTERM);
        let (status, log) = self.wait();
        assert!(status.success(), "{log}");
        log
    }
}

/// A test that fails leaves no container running.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `done` every 100 ms for at most `seconds`; panics with `what` and `context()`.
pub fn wait_until(
    seconds: u64,
    what: &str,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited {seconds} s for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sidecar started as the kubelet starts it: the agent container, then its
/// startupProbe run (in the agent container's mounts) until it passes.
pub fn start_sidecar(pod: &KubeletPod, spec: &Value) -> Running {
    let (name, agent) = pod.init_containers().remove(0);
    assert_eq!(name, "secretstore-agent");
    let sidecar = Running::start(&agent);
    let mut probe = agent.clone();
    probe.argv = spec["initContainers"][0]["startupProbe"]["exec"]["command"]
        .as_array()
        .expect("startupProbe exec command")
        .iter()
        .map(|a| a.as_str().expect("string").to_owned())
        .collect();
    wait_until(
        60,
        "the sidecar's startup probe to pass",
        || probe.run().status.success(),
        || sidecar.log(),
    );
    sidecar
}

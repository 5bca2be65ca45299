//! A misbehaving Vault on 127.0.0.1: an HTTP/1.1 server whose every answer a test
//! scripts (redirects, huge or endless bodies, hangs, rate limiting, garbage), and which
//! records every request it receives, so a test can assert what reached it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, e.g. `/v1/secret/data/app?version=2`.
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// What to answer.
pub enum Reply {
    /// Status, extra headers, body (sent with a Content-Length).
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// Status and a body of `len` bytes of `fill` after `prefix`, sent chunked, without a
    /// Content-Length, stopping early if the client goes away.
    Stream {
        status: u16,
        prefix: Vec<u8>,
        fill: u8,
        len: usize,
        suffix: Vec<u8>,
    },
    /// Reads the request and never answers (until the server is dropped).
    Hang,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Full(
            status,
            vec![("Content-Type".into(), "application/json".into())],
            body.as_bytes().to_vec(),
        )
    }

    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::Full(
            status,
            vec![("Location".into(), location.to_owned())],
            Vec::new(),
        )
    }
}

type Handler = dyn Fn(&Received, usize) -> Reply + Send + Sync;

pub struct FakeVault {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeVault {
    /// Starts a server whose answer to the n-th request (0-based, counting all paths) is
    /// `handler(request, n)`.
    pub fn start(handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> FakeVault {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot listen");
        let port = listener.local_addr().expect("no local address").port();
        listener
            .set_nonblocking(true)
            .expect("cannot make the listener non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let (stopping, log) = (stop.clone(), received.clone());
        let accept = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (handler, log, stopping) =
                            (handler.clone(), log.clone(), stopping.clone());
                        std::thread::spawn(move || serve(stream, &*handler, &log, &stopping));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => return,
                }
            }
        });
        FakeVault {
            port,
            received,
            stop,
            accept: Some(accept),
        }
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeVault {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

/// Serves one connection: requests one after another (keep-alive) until it closes.
fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Received>>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        let n = {
            let mut log = log.lock().unwrap();
            log.push(request.clone());
            log.len() - 1
        };
        let ok = match handler(&request, n) {
            Reply::Full(status, headers, body) => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                writer.write_all(head.as_bytes()).is_ok() && writer.write_all(&body).is_ok()
            }
            Reply::Stream {
                status,
                prefix,
                fill,
                len,
                suffix,
            } => stream_body(&mut writer, status, &prefix, fill, len, &suffix),
            Reply::Hang => {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            }
        };
        if !ok {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn stream_body(
    writer: &mut TcpStream,
    status: u16,
    prefix: &[u8],
    fill: u8,
    len: usize,
    suffix: &[u8],
) -> bool {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        reason(status)
    );
    let chunk = |w: &mut TcpStream, bytes: &[u8]| -> bool {
        bytes.is_empty()
            || (w
                .write_all(format!("{:x}\r\n", bytes.len()).as_bytes())
                .is_ok()
                && w.write_all(bytes).is_ok()
                && w.write_all(b"\r\n").is_ok())
    };
    if writer.write_all(head.as_bytes()).is_err() || !chunk(writer, prefix) {
        return false;
    }
    let block = vec![fill; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        if !chunk(writer, &block[..n]) {
            return false;
        }
        left -= n;
    }
    chunk(writer, suffix) && writer.write_all(b"0\r\n\r\n").is_ok()
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        target,
        headers,
        body,
        at: Instant::now(),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Runs the binary with `args` and then `file`, against `vault` with the agent tests'
/// token; its exit status, and stdout and stderr together.
pub fn run_against(
    vault: &FakeVault,
    args: &[&str],
    file: &std::path::Path,
) -> (Option<i32>, String) {
    let out = super::secretstore()
        .args(args)
        .arg(file)
        .env("VAULT_ADDR", vault.address())
        .env("VAULT_TOKEN", super::agent_run::TOKEN)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

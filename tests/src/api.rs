//! A running `svault serve` and a tiny HTTP/1.1 client, for black-box API tests.
//!
//! Why hand-rolled HTTP: the tests must see exactly what a gateway sees (status line, every
//! header, the raw body, a connection closed after a 413), with no client library in between
//! retrying, following or decoding.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `--clock-offset-ms` flags that move the server's clock forward to the next 04:00 UTC, noon in
/// demo's +08:00: hours from demo's 20:00–24:00 discount window and from its local midnight, so
/// a test's figures are the same whenever the suite runs. (The windows themselves are proven
/// with all-day windows, which hold at any hour.)
pub fn at_noon_in_shanghai() -> [String; 2] {
    const DAY_MS: u128 = 86_400_000;
    const NOON_IN_SHANGHAI_MS: u128 = 4 * 3_600_000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis();
    let offset = (NOON_IN_SHANGHAI_MS + DAY_MS - now_ms % DAY_MS) % DAY_MS;
    ["--clock-offset-ms".to_string(), offset.to_string()]
}

/// A `svault serve` child process on ephemeral ports; killed when dropped.
pub struct Server {
    child: Child,
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// The path of the `svault` binary under test; expands in the integration test, where cargo
/// defines `CARGO_BIN_EXE_svault-under-test`.
#[macro_export]
macro_rules! svault_bin {
    () => {
        env!("CARGO_BIN_EXE_svault-under-test")
    };
}

impl Server {
    /// Starts `bin` (pass `svault_bin!()`) on a fresh temporary data directory with `extra` flags.
    pub fn start(bin: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = Server::start_in(bin, dir.path(), extra);
        s._dir = Some(dir);
        s
    }

    /// Starts `bin` on `data` (kept after the server stops) with `extra` flags.
    pub fn start_in(bin: &str, data: &Path, extra: &[&str]) -> Server {
        Server::start_inner(bin, data, extra, false).0
    }

    /// `start`, with the server's stderr (its log) as lines on a channel instead of the
    /// test's stderr.
    pub fn start_capturing_log(bin: &str, extra: &[&str]) -> (Server, mpsc::Receiver<String>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut s, log) = Server::start_inner(bin, dir.path(), extra, true);
        s._dir = Some(dir);
        (s, log.expect("captured log"))
    }

    fn start_inner(
        bin: &str,
        data: &Path,
        extra: &[&str],
        capture_log: bool,
    ) -> (Server, Option<mpsc::Receiver<String>>) {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if capture_log {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        let mut child = cmd.spawn().expect("spawn svault");
        let log = child.stderr.take().map(|stderr| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                // Drain to the end even when nobody listens: a full pipe would block the server.
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
            rx
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("svault listening ") {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("svault did not print its listening line (exit: {status:?})");
            }
        };
        let mut http = None;
        let mut tcp = None;
        for part in line.split_whitespace() {
            if let Some(a) = part.strip_prefix("http=") {
                http = a.parse().ok();
            } else if let Some(a) = part.strip_prefix("tcp=") {
                tcp = a.parse().ok();
            }
        }
        let server = Server {
            child,
            http: http.expect("http address in the listening line"),
            tcp: tcp.expect("tcp address in the listening line"),
            data: data.to_path_buf(),
            _dir: None,
        };
        (server, log)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().expect("wait")
    }

    /// Waits up to `within` for the process to exit on its own; `None` if it is still running
    /// (a liveness bound: the caller's test fails, nothing is timed).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A request to this server's HTTP port.
    pub fn req(&self, method: &str, path: &str) -> Req {
        self.client().req(method, path)
    }

    /// A handle other threads can send requests with.
    pub fn client(&self) -> Client {
        Client { http: self.http }
    }

    /// The server's process id (to read its memory from `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends requests to a server's HTTP port from any thread.
#[derive(Debug, Clone)]
pub struct Client {
    pub http: SocketAddr,
}

impl Client {
    /// A request to the server's HTTP port.
    pub fn req(&self, method: &str, path: &str) -> Req {
        Req {
            addr: self.http,
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP request being built.
pub struct Req {
    addr: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req {
    /// Adds a header exactly as given, unchecked, so a test can send malformed or repeated ones.
    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    /// `Idempotency-Key: key`.
    pub fn key(self, key: &str) -> Req {
        self.header("Idempotency-Key", key)
    }
    /// `Authorization: Bearer key`.
    pub fn bearer(self, key: &str) -> Req {
        self.header("Authorization", &format!("Bearer {key}"))
    }
    /// The body as compact JSON, with `Content-Type: application/json`.
    pub fn json(mut self, v: serde_json::Value) -> Req {
        self.body = Some(v.to_string().into_bytes());
        self.header("Content-Type", "application/json")
    }
    /// The body byte for byte, without a `Content-Type`: for malformed and oversized bodies.
    pub fn raw(mut self, body: &[u8]) -> Req {
        self.body = Some(body.to_vec());
        self
    }
    /// Sends on a new connection and reads the whole answer.
    pub fn send(self) -> Resp {
        let addr = self.addr;
        self.try_send()
            .unwrap_or_else(|| panic!("{addr}: connection closed without an HTTP answer"))
    }

    /// `send`, but `None` when the server closes the connection (or dies) without an answer.
    pub fn try_send(self) -> Option<Resp> {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.method, self.path, self.addr
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = self.body.unwrap_or_default();
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        s.write_all(head.as_bytes()).expect("write head");
        // The server may answer (413) and close before reading a large body: ignore write errors.
        let _ = s.write_all(&body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        if raw.is_empty() {
            return None;
        }
        Some(Resp::parse(&raw))
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    fn parse(raw: &[u8]) -> Resp {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        Resp {
            status,
            headers,
            body,
        }
    }
    /// The first header of that name, matched case-insensitively (names are kept lower-cased).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} (status {})", self.body, self.status))
    }
    /// `json()[field]` as a string.
    pub fn s(&self, field: &str) -> String {
        self.json()[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string {field} in {}", self.body))
            .to_string()
    }
    /// Whether the answer is a stored one for an earlier request with the same key
    /// (`Idempotent-Replayed: true`).
    pub fn replayed(&self) -> bool {
        self.header("Idempotent-Replayed") == Some("true")
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

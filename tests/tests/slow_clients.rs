//! Slow and silent clients cannot hold a connection, its memory or its task forever, on
//! either door: a connection that never sends, a request head or a frame sent a byte at a
//! time or cut short, a client that sends and never reads its answers. The server runs with
//! timeouts of a second (`--header-timeout-secs`, `--idle-timeout-secs`); each test only
//! waits, with a generous bound, for the server to end the connection, then checks that a
//! normal client is still served.

use proto::client::{Call, Client, Status};
use proto::codec;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use svault_core::command::CardId;
use svault_tests::api::Server;
use svault_tests::svault_bin;

/// How long a test waits for the server to act on a one-second timeout before failing.
const BOUND: Duration = Duration::from_secs(20);

/// Reads (and drops) what the server sends until it ends the connection: `true` on EOF or a
/// reset, `false` if the connection is still open after `BOUND`.
fn server_closes(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Writes `chunk` again and again on `s` and never reads; returns on the first failed write,
/// which comes once the server has dropped the connection.
fn flood_without_reading(mut s: TcpStream, chunk: Vec<u8>) -> mpsc::Receiver<std::io::Error> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || loop {
        if let Err(e) = s.write_all(&chunk) {
            let _ = tx.send(e);
            return;
        }
    });
    rx
}

fn healthy_http(s: &Server) {
    let r = s.req("GET", "/healthz").send();
    assert_eq!(r.status, 200, "{}", r.body);
}

fn healthy_tcp(addr: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = rt.block_on(async {
        let c = Client::connect(addr, None).await.unwrap();
        c.call(Call::get_card(CardId(77))).await.unwrap()
    });
    assert_eq!(a.status, Status::NotFound);
}

const FAST: [&str; 4] = ["--header-timeout-secs", "1", "--idle-timeout-secs", "1"];

#[test]
fn http_a_connection_that_never_sends_is_closed() {
    let s = Server::start(svault_bin!(), &FAST);
    let mut c = TcpStream::connect(s.http).unwrap();
    assert!(
        server_closes(&mut c),
        "a silent HTTP connection stayed open"
    );
    healthy_http(&s);
}

#[test]
fn http_an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let s = Server::start(svault_bin!(), &FAST);
    let mut c = TcpStream::connect(s.http).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: svault\r\n\r\n")
        .unwrap();
    c.set_read_timeout(Some(BOUND)).unwrap();
    let mut first = [0u8; 12];
    c.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        server_closes(&mut c),
        "an idle keep-alive connection stayed open"
    );
}

#[test]
fn http_a_head_sent_a_byte_at_a_time_is_cut_off() {
    // The idle limit is long: a byte every 200 ms keeps bytes moving; only the head's own
    // deadline can end this.
    let s = Server::start(
        svault_bin!(),
        &["--header-timeout-secs", "1", "--idle-timeout-secs", "600"],
    );
    let head = b"GET /healthz HTTP/1.1\r\nHost: svault\r\nUser-Agent: a-very-slow-client/1.0\r\nAccept: */*\r\n\r\n";
    let mut c = TcpStream::connect(s.http).unwrap();
    let mut sent = 0;
    for b in head {
        if c.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        sent < head.len(),
        "the server waited for all {} bytes of a head sent over {} s",
        head.len(),
        head.len() / 5
    );
    // Whatever came back, it is not an answer to the request.
    c.set_read_timeout(Some(BOUND)).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "), "{got:?}");
    healthy_http(&s);
}

#[test]
fn http_a_body_sent_a_byte_at_a_time_is_cut_off_with_408() {
    // The idle limit is long: a byte every 200 ms keeps bytes moving; only the request's own
    // deadline (the head's limit again, counted from the end of the head) can end this.
    let s = Server::start(
        svault_bin!(),
        &["--header-timeout-secs", "1", "--idle-timeout-secs", "600"],
    );
    let body = format!(
        r#"{{"program":"demo","card_id":"5","registered":true,"pad":"{}"}}"#,
        "x".repeat(200)
    );
    let head = format!(
        "POST /v1/cards HTTP/1.1\r\nHost: svault\r\nIdempotency-Key: slow-body\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut c = TcpStream::connect(s.http).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    let mut w = c.try_clone().unwrap();
    let body = body.into_bytes();
    let trickle = std::thread::spawn(move || {
        let mut sent = 0;
        for b in &body {
            if w.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        (sent, body.len())
    });
    c.set_read_timeout(Some(BOUND)).unwrap();
    let mut got = [0u8; 512];
    let n = c.read(&mut got).expect("no answer to a trickled body");
    let answer = String::from_utf8_lossy(&got[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(server_closes(&mut c), "the connection stayed open");
    let (sent, len) = trickle.join().unwrap();
    assert!(
        sent < len,
        "the server read all {len} bytes of a trickled body"
    );
    // Nothing was applied: the card does not exist.
    let r = s.req("GET", "/v1/cards/5").send();
    assert_eq!(r.status, 404, "{}", r.body);
    healthy_http(&s);
}

#[test]
fn http_a_client_that_never_reads_its_answers_is_cut_off() {
    // The head deadline is long: requests keep coming; only the stalled write can end this.
    let s = Server::start(
        svault_bin!(),
        &["--header-timeout-secs", "600", "--idle-timeout-secs", "1"],
    );
    let c = TcpStream::connect(s.http).unwrap();
    let requests = b"GET /openapi.json HTTP/1.1\r\nHost: svault\r\n\r\n".repeat(64);
    let failed = flood_without_reading(c, requests);
    let e = failed
        .recv_timeout(BOUND)
        .expect("the server kept a connection whose client never reads");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
        ),
        "{e}"
    );
    healthy_http(&s);
}

fn hello() -> Vec<u8> {
    let mut h = Vec::new();
    codec::encode_hello(&mut h, None);
    h
}

/// Reads one frame's kind (the answer to HELLO).
fn read_frame_kind(c: &mut TcpStream) -> u8 {
    c.set_read_timeout(Some(BOUND)).unwrap();
    let mut len = [0u8; 4];
    c.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    c.read_exact(&mut body).unwrap();
    body[0]
}

#[test]
fn binary_a_connection_that_never_sends_is_closed() {
    let s = Server::start(svault_bin!(), &FAST);
    let mut c = TcpStream::connect(s.tcp).unwrap();
    assert!(
        server_closes(&mut c),
        "a silent binary-protocol connection stayed open"
    );
    // And one that said HELLO and then nothing.
    let mut c = TcpStream::connect(s.tcp).unwrap();
    c.write_all(&hello()).unwrap();
    assert_eq!(read_frame_kind(&mut c), codec::kind::WELCOME);
    assert!(
        server_closes(&mut c),
        "an idle binary connection stayed open"
    );
    healthy_tcp(s.tcp);
}

#[test]
fn binary_a_frame_cut_short_or_sent_a_byte_at_a_time_is_cut_off() {
    // The idle limit is long: only the frame's own deadline can end these.
    let s = Server::start(
        svault_bin!(),
        &["--header-timeout-secs", "1", "--idle-timeout-secs", "600"],
    );
    let mut frame = Vec::new();
    codec::encode_batch_frame(&mut frame, 1, std::iter::once(&Call::get_card(CardId(5)))).unwrap();

    // Cut short: the length and part of the body, then silence.
    let mut c = TcpStream::connect(s.tcp).unwrap();
    c.write_all(&hello()).unwrap();
    assert_eq!(read_frame_kind(&mut c), codec::kind::WELCOME);
    c.write_all(&frame[..frame.len() - 3]).unwrap();
    assert!(server_closes(&mut c), "a cut frame kept its connection");

    // A byte every 200 ms: the frame would take seconds longer than its deadline.
    let mut c = TcpStream::connect(s.tcp).unwrap();
    c.write_all(&hello()).unwrap();
    assert_eq!(read_frame_kind(&mut c), codec::kind::WELCOME);
    let mut sent = 0;
    for b in &frame {
        if c.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        sent < frame.len(),
        "the server waited for all {} bytes of a frame sent a byte at a time",
        frame.len()
    );
    healthy_tcp(s.tcp);
}

#[test]
fn binary_a_client_that_never_reads_its_answers_is_cut_off() {
    // The frame deadline is long: frames keep coming; only the stalled write can end this.
    let s = Server::start(
        svault_bin!(),
        &["--header-timeout-secs", "600", "--idle-timeout-secs", "1"],
    );
    let mut c = TcpStream::connect(s.tcp).unwrap();
    c.write_all(&hello()).unwrap();
    assert_eq!(read_frame_kind(&mut c), codec::kind::WELCOME);
    let calls: Vec<Call> = (1..=2000).map(|i| Call::get_card(CardId(i))).collect();
    let mut frames = Vec::new();
    for _ in 0..8 {
        codec::encode_batch_frame(&mut frames, 1, calls.iter()).unwrap();
    }
    let failed = flood_without_reading(c, frames);
    let e = failed
        .recv_timeout(BOUND)
        .expect("the server kept a binary connection whose client never reads");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
        ),
        "{e}"
    );
    healthy_tcp(s.tcp);
}

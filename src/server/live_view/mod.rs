//! The live view (`--http ADDR`): a page listing the connected clients with
//! their live video, plus `/stats.json` and `/metrics` (Prometheus text).
//!
//! | Path | What |
//! |---|---|
//! | `/` | the page: one tile per client, video and figures updating live |
//! | `/stream/<id>.mjpg` | client `<id>`'s accepted frames as MJPEG (`multipart/x-mixed-replace`) |
//! | `/snapshot/<id>.jpg` | client `<id>`'s newest accepted frame |
//! | `/stats.json` | every connected client's figures, as JSON |
//! | `/metrics` | the same, in Prometheus text format |
//!
//! Each viewer has its own thread and gets only the newest frame each time
//! it is ready for one, so a slow viewer skips frames; a viewer that stops
//! reading is dropped after `--io-timeout`. Neither slows a camera or another
//! viewer: a connection only replaces the frame in its [`LiveFrames`] slot.
//! Requests are parsed by `httparse`; every response closes its connection.

use crate::server::sink::ClientId;
use crate::shutdown::Shutdown;
use crate::wire::auth::Token;
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Most HTTP connections served at once (viewers included); more get 503.
pub const MAX_HTTP_CONNECTIONS: usize = 64;
/// How long a request head may take to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Kernel send buffer of a live view connection: small, so a viewer that
/// stops reading blocks its writes (and is dropped) within a few frames.
const SEND_BUFFER: usize = 256 * 1024;
/// The MJPEG part boundary.
const BOUNDARY: &str = "framelink-frame";

const PAGE: &str = include_str!("page.html");

/// Every connected client's newest accepted frame, for viewers.
#[derive(Default)]
pub struct LiveFrames {
    slots: Mutex<HashMap<ClientId, Arc<Slot>>>,
    /// Viewers streaming now.
    pub viewers: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Default)]
struct SlotState {
    /// Counts published frames; a viewer remembers the last one it sent.
    seq: u64,
    jpeg: Option<Bytes>,
    gone: bool,
}

/// What a viewer waiting for a frame gets.
pub enum Next {
    Frame(u64, Bytes),
    /// Nothing newer within the timeout.
    Timeout,
    /// The client is gone (or was never there).
    Gone,
}

impl LiveFrames {
    /// Replaces client `id`'s frame and wakes its viewers. Never blocks for long.
    pub fn publish(&self, id: ClientId, jpeg: &Bytes) {
        let slot = self.slots.lock().entry(id).or_default().clone();
        let mut s = slot.state.lock();
        s.seq += 1;
        s.jpeg = Some(jpeg.clone());
        drop(s);
        slot.changed.notify_all();
    }

    /// The client disconnected: its viewers end.
    pub fn remove(&self, id: ClientId) {
        if let Some(slot) = self.slots.lock().remove(&id) {
            slot.state.lock().gone = true;
            slot.changed.notify_all();
        }
    }

    /// Client `id`'s newest frame, if it has sent one.
    pub fn latest(&self, id: ClientId) -> Option<Bytes> {
        let slot = self.slots.lock().get(&id)?.clone();
        let s = slot.state.lock();
        s.jpeg.clone()
    }

    /// Waits for a frame newer than `after`. Unblocked by a new frame, the
    /// client leaving, or `timeout`.
    pub fn wait_newer(&self, id: ClientId, after: u64, timeout: Duration) -> Next {
        let Some(slot) = self.slots.lock().get(&id).cloned() else {
            return Next::Gone;
        };
        let mut s = slot.state.lock();
        slot.changed.wait_while_for(
            &mut s,
            |s| !s.gone && (s.seq <= after || s.jpeg.is_none()),
            timeout,
        );
        if s.gone {
            return Next::Gone;
        }
        match &s.jpeg {
            Some(j) if s.seq > after => Next::Frame(s.seq, j.clone()),
            _ => Next::Timeout,
        }
    }
}

/// What the page and the scrapers read, supplied by the server.
pub trait StatsSource: Sync {
    /// The `/stats.json` document.
    fn stats_json(&self) -> serde_json::Value;
    /// The `/metrics` text.
    fn metrics(&self) -> String;
}

/// Serves the live view on `listener` until `shutdown`. Polls a non-blocking
/// listener (a shutdown is seen within 25 ms); each connection runs on a
/// scoped thread that sees the shutdown within [`crate::shutdown::TICK`].
pub fn serve<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    listener: &'s TcpListener,
    frames: &'s LiveFrames,
    stats: &'s dyn StatsSource,
    token: Option<&'s Token>,
    io_timeout: Duration,
    shutdown: &'s Shutdown,
) {
    if let Err(e) = listener.set_nonblocking(true) {
        warn!("live view disabled: cannot make its socket non-blocking: {e}");
        return;
    }
    let active = Arc::new(AtomicUsize::new(0));
    while !shutdown.is_triggered() {
        match listener.accept() {
            Ok((stream, peer)) => {
                let setup = socket2::SockRef::from(&stream)
                    .set_send_buffer_size(SEND_BUFFER)
                    .and_then(|_| stream.set_nonblocking(false))
                    .and_then(|_| stream.set_nodelay(true))
                    .and_then(|_| stream.set_read_timeout(Some(HEAD_TIMEOUT)))
                    .and_then(|_| stream.set_write_timeout(Some(io_timeout)));
                if let Err(e) = setup {
                    debug!(%peer, "live view: cannot set up the connection: {e}");
                    continue;
                }
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_HTTP_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let mut stream = stream;
                    let _ = respond(&mut stream, 503, "text/plain", b"too many viewers\n");
                    continue;
                }
                let active = active.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("http {peer}"))
                    .spawn_scoped(s, move || {
                        handle(stream, peer, frames, stats, token, shutdown);
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    warn!(%peer, "live view: cannot start a thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                shutdown.wait_timeout(Duration::from_millis(25));
            }
            Err(e) => {
                warn!("live view: accept failed: {e}");
                shutdown.wait_timeout(Duration::from_millis(100));
            }
        }
    }
}

/// A request's method, target and `Authorization` header.
struct Request {
    method: String,
    target: String,
    authorization: Option<String>,
}

/// Reads the request head: at most [`MAX_HEAD`] bytes, all of it within
/// [`HEAD_TIMEOUT`] of the first read (a deadline for the whole head, so a
/// viewer trickling a byte at a time cannot hold a place for longer).
/// Returns the request, or the status to answer with.
fn read_request(stream: &mut TcpStream) -> Result<Request, u16> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(408);
        }
        stream.set_read_timeout(Some(left)).map_err(|_| 408u16)?;
        let n = stream.read(&mut buf[len..]).map_err(|_| 408u16)?;
        if n == 0 {
            return Err(400);
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let authorization = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned());
                return Ok(Request {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("/").to_string(),
                    authorization,
                });
            }
            Ok(httparse::Status::Partial) if len == MAX_HEAD => return Err(431),
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return Err(400),
        }
    }
}

/// Whether the request carries the token: `Authorization: Bearer TOKEN` or
/// `?token=TOKEN` (the page passes its own query on to what it fetches).
fn authorized(req: &Request, token: Option<&Token>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let bearer = req
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| token.matches(t.trim()));
    let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    bearer
        || query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("token="))
            .any(|t| token.matches(&percent_decode(t)))
}

/// Decodes `%XX` escapes and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    frames: &LiveFrames,
    stats: &dyn StatsSource,
    token: Option<&Token>,
    shutdown: &Shutdown,
) {
    let req = match read_request(&mut stream) {
        Ok(r) => r,
        Err(status) => {
            let _ = respond(&mut stream, status, "text/plain", b"bad request\n");
            return;
        }
    };
    if req.method != "GET" && req.method != "HEAD" {
        let _ = respond(&mut stream, 405, "text/plain", b"only GET\n");
        return;
    }
    if !authorized(&req, token) {
        warn!(%peer, "live view: refused a request without the right token");
        let _ = respond(
            &mut stream,
            401,
            "text/plain",
            b"this live view needs the server's token: add ?token=... to the address\n",
        );
        return;
    }
    let path = req.target.split('?').next().unwrap_or("/");
    debug!(%peer, "live view: GET {path}");
    let result = match path {
        "/" | "/index.html" => respond(
            &mut stream,
            200,
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
        ),
        "/stats.json" => {
            let body = serde_json::to_vec_pretty(&stats.stats_json()).unwrap_or_default();
            respond(&mut stream, 200, "application/json", &body)
        }
        "/metrics" => respond(
            &mut stream,
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            stats.metrics().as_bytes(),
        ),
        _ => {
            if let Some(id) = client_id(path, "/stream/", ".mjpg") {
                if frames.latest(id).is_none() {
                    respond(&mut stream, 404, "text/plain", b"no such client\n")
                } else {
                    frames.viewers.fetch_add(1, Ordering::Relaxed);
                    info!(%peer, client = id, "viewer joined");
                    let r = stream_mjpeg(&mut stream, id, frames, shutdown);
                    frames.viewers.fetch_sub(1, Ordering::Relaxed);
                    info!(%peer, client = id, "viewer left");
                    r
                }
            } else if let Some(id) = client_id(path, "/snapshot/", ".jpg") {
                match frames.latest(id) {
                    Some(jpeg) => respond(&mut stream, 200, "image/jpeg", &jpeg),
                    None => respond(&mut stream, 404, "text/plain", b"no such client\n"),
                }
            } else {
                respond(&mut stream, 404, "text/plain", b"not found\n")
            }
        }
    };
    if let Err(e) = result {
        debug!(%peer, "live view: connection ended: {e}");
    }
}

fn client_id(path: &str, prefix: &str, suffix: &str) -> Option<ClientId> {
    path.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Sends client `id`'s frames as MJPEG, newest only, each part written and
/// flushed whole as soon as it is there. Ends when the client leaves, the
/// viewer goes away or stops reading (write timeout), or on shutdown.
fn stream_mjpeg(
    stream: &mut TcpStream,
    id: ClientId,
    frames: &LiveFrames,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    let mut seq = 0;
    while !shutdown.is_triggered() {
        match frames.wait_newer(id, seq, crate::shutdown::TICK) {
            Next::Frame(s, jpeg) => {
                seq = s;
                let part = format!(
                    "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    jpeg.len()
                );
                stream.write_all(part.as_bytes())?;
                stream.write_all(&jpeg)?;
                stream.write_all(b"\r\n")?;
                stream.flush()?;
            }
            Next::Timeout => {}
            Next::Gone => break,
        }
    }
    Ok(())
}

/// Escapes a Prometheus label value.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_gets_the_newest_frame_only_and_sees_the_client_leave() {
        let hub = LiveFrames::default();
        assert!(matches!(hub.wait_newer(1, 0, Duration::ZERO), Next::Gone));
        hub.publish(1, &Bytes::from_static(b"a"));
        hub.publish(1, &Bytes::from_static(b"b"));
        let Next::Frame(seq, j) = hub.wait_newer(1, 0, Duration::ZERO) else {
            panic!("a frame")
        };
        assert_eq!(&j[..], b"b");
        assert!(matches!(
            hub.wait_newer(1, seq, Duration::from_millis(10)),
            Next::Timeout
        ));
        hub.remove(1);
        assert!(matches!(hub.wait_newer(1, seq, Duration::ZERO), Next::Gone));
    }

    #[test]
    fn the_token_is_taken_from_the_query_or_a_bearer_header() {
        let t = Token::new("a b&c").unwrap();
        let req = |target: &str, auth: Option<&str>| Request {
            method: "GET".into(),
            target: target.into(),
            authorization: auth.map(Into::into),
        };
        assert!(authorized(&req("/", None), None));
        assert!(!authorized(&req("/", None), Some(&t)));
        assert!(authorized(&req("/x?t=1&token=a+b%26c", None), Some(&t)));
        assert!(!authorized(&req("/x?token=a+b", None), Some(&t)));
        assert!(authorized(&req("/", Some("Bearer a b&c")), Some(&t)));
        assert!(!authorized(&req("/", Some("Basic a b&c")), Some(&t)));
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn prometheus_labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

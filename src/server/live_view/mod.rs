//! The live view (`--http ADDR`): a page listing the connected clients with
//! their live video, plus `/stats.json` and `/metrics` (Prometheus text), and
//! the browser camera (`/camera`), a page that makes any browser a client.
//!
//! | Path | What | Token |
//! |---|---|---|
//! | `/` | the page: one tile per client, video and figures updating live | `?token=` |
//! | `/stream/<id>.mjpg` | client `<id>`'s accepted frames as MJPEG (`multipart/x-mixed-replace`) | `?token=` |
//! | `/snapshot/<id or name>.jpg` | a client's newest accepted frame, at once | `?token=` |
//! | `/stats.json` | every connected client's figures, as JSON | `?token=` |
//! | `/metrics` | the same, in Prometheus text format | `?token=` |
//! | `/ws/stats` | `/stats.json` pushed every second over a WebSocket (the page's figures) | `?token=` |
//! | `/camera` | the browser camera page | none: it proves the token in the protocol |
//! | `/ws/camera` | the browser camera's WebSocket: the framelink protocol ([`upgrade`]) | in the protocol's handshake |
//!
//! (`?token=` or `Authorization: Bearer`, when the server has a token.) With
//! a certificate (`--tls-cert`, or `--self-signed`) all of it is HTTPS, which
//! a browser needs before it gives a page on another host its camera.
//!
//! Each viewer has its own thread and gets only the newest frame each time
//! it is ready for one, so a slow viewer skips frames; a viewer that stops
//! reading is dropped after `--io-timeout`. Neither slows a camera or another
//! viewer: a connection only replaces the frame in its [`LiveFrames`] slot.
//! Requests are parsed by `httparse` ([`http`]); every response closes its
//! connection.

mod http;
mod upgrade;

use crate::process::ClientId;
use crate::shutdown::Shutdown;
use crate::wire::auth::Token;
use crate::wire::transport::{tls, StopReason, Stream};
use bytes::Bytes;
use http::{read_request, respond};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Most HTTP connections served at once (viewers and browser cameras
/// included); more get 503.
pub const MAX_HTTP_CONNECTIONS: usize = 64;
/// Kernel send buffer of a live view connection: small, so a viewer that
/// stops reading blocks its writes (and is dropped) within a few frames.
const SEND_BUFFER: usize = 256 * 1024;
/// The MJPEG part boundary.
const BOUNDARY: &str = "framelink-frame";

const PAGE: &str = include_str!("page.html");
const CAMERA_PAGE: &str = include_str!("camera.html");
const CAMERA_SCRIPT: &str = include_str!("camera.js");

/// Every connected client's newest accepted frame, for viewers.
#[derive(Default)]
pub struct LiveFrames {
    slots: Mutex<HashMap<ClientId, Arc<Slot>>>,
    /// Viewers streaming now.
    pub viewers: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    name: Arc<str>,
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
    pub fn publish(&self, id: ClientId, name: &Arc<str>, jpeg: &Bytes) {
        let slot = self
            .slots
            .lock()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Slot {
                    name: name.clone(),
                    ..Slot::default()
                })
            })
            .clone();
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

    /// The newest frame of the newest connection named `name`.
    pub fn latest_named(&self, name: &str) -> Option<Bytes> {
        let slot = {
            let slots = self.slots.lock();
            let (_, slot) = slots
                .iter()
                .filter(|(_, s)| &*s.name == name)
                .max_by_key(|(id, _)| **id)?;
            slot.clone()
        };
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

/// Where the live view hands a browser camera (`/ws/camera`), supplied by
/// the server: it runs the connection as a client's, on the calling thread,
/// until it ends.
pub trait Cameras: Sync {
    /// `stream` is the WebSocket's byte stream; `bridge` says why the
    /// WebSocket ended early (a text message, one too big), if it did;
    /// `accepted` starts the handshake's deadline.
    fn serve_camera(&self, stream: Stream, bridge: StopReason, peer: SocketAddr, accepted: Instant);
}

/// What the live view serves, supplied by the server.
pub struct Site<'a> {
    pub frames: &'a LiveFrames,
    pub stats: &'a dyn StatsSource,
    pub cameras: &'a dyn Cameras,
    /// The token every request but the camera's must carry (None: anyone may).
    pub token: Option<&'a Token>,
    /// HTTPS with this certificate (None: plain HTTP).
    pub tls: Option<&'a Arc<rustls::ServerConfig>>,
    pub io_timeout: Duration,
}

/// Serves the live view on `listener` until `shutdown`. Polls a non-blocking
/// listener (a shutdown is seen within 25 ms); each connection runs on a
/// scoped thread that sees the shutdown within [`crate::shutdown::TICK`].
pub fn serve<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    listener: &'s TcpListener,
    site: &'s Site<'s>,
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
                    .and_then(|_| crate::wire::connection::configure(&stream, site.io_timeout))
                    .and_then(|_| stream.set_read_timeout(Some(http::HEAD_TIMEOUT)));
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
                        if let Some(stream) = secure(stream, peer, site) {
                            handle(stream, peer, site, shutdown);
                        }
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

/// The connection as the live view reads it: the socket, or the plain end
/// of a TLS bridge when the site has a certificate.
fn secure(tcp: TcpStream, peer: SocketAddr, site: &Site) -> Option<Stream> {
    let Some(cfg) = site.tls else {
        return Some(Stream::Tcp(tcp));
    };
    match tls::accept(tcp, cfg).and_then(|(plain, _)| {
        crate::wire::connection::configure_local(&plain, site.io_timeout)?;
        Ok(plain)
    }) {
        Ok(plain) => Some(plain),
        Err(e) => {
            debug!(%peer, "live view: cannot start TLS: {e}");
            None
        }
    }
}

fn handle(mut stream: Stream, peer: SocketAddr, site: &Site, shutdown: &Shutdown) {
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
    let path = req.path().to_string();
    debug!(%peer, "live view: GET {path}");
    // The camera page and its socket need no token in the address: the page
    // proves the token in the framelink handshake, like any client.
    match path.as_str() {
        "/camera" | "/camera.html" => {
            let r = respond(
                &mut stream,
                200,
                "text/html; charset=utf-8",
                CAMERA_PAGE.as_bytes(),
            );
            return log_end(peer, r);
        }
        "/camera.js" => {
            let r = respond(
                &mut stream,
                200,
                "text/javascript; charset=utf-8",
                CAMERA_SCRIPT.as_bytes(),
            );
            return log_end(peer, r);
        }
        "/ws/camera" => return upgrade::camera(stream, req, peer, site.cameras, site.io_timeout),
        _ => {}
    }
    if !http::authorized(&req, site.token) {
        warn!(%peer, "live view: refused a request without the right token");
        let _ = respond(
            &mut stream,
            401,
            "text/plain",
            b"this live view needs the server's token: add ?token=... to the address\n",
        );
        return;
    }
    let frames = site.frames;
    let result = match path.as_str() {
        "/" | "/index.html" => respond(
            &mut stream,
            200,
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
        ),
        "/stats.json" => {
            let body = serde_json::to_vec_pretty(&site.stats.stats_json()).unwrap_or_default();
            respond(&mut stream, 200, "application/json", &body)
        }
        "/metrics" => respond(
            &mut stream,
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            site.stats.metrics().as_bytes(),
        ),
        "/ws/stats" => return upgrade::stats(stream, req, peer, site.stats, shutdown),
        _ => {
            if let Some(id) = client_id(&path, "/stream/", ".mjpg") {
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
            } else if let Some(which) = snapshot_of(&path) {
                let jpeg = which
                    .parse::<ClientId>()
                    .ok()
                    .and_then(|id| frames.latest(id))
                    .or_else(|| frames.latest_named(&which));
                match jpeg {
                    Some(jpeg) => respond(&mut stream, 200, "image/jpeg", &jpeg),
                    None => respond(&mut stream, 404, "text/plain", b"no such client\n"),
                }
            } else {
                respond(&mut stream, 404, "text/plain", b"not found\n")
            }
        }
    };
    log_end(peer, result)
}

fn log_end(peer: SocketAddr, result: std::io::Result<()>) {
    if let Err(e) = result {
        debug!(%peer, "live view: connection ended: {e}");
    }
}

/// `/snapshot/<id or name>.jpg` → the id or name, decoded.
fn snapshot_of(path: &str) -> Option<String> {
    let which = path.strip_prefix("/snapshot/")?.strip_suffix(".jpg")?;
    (!which.is_empty()).then(|| http::percent_decode(which))
}

fn client_id(path: &str, prefix: &str, suffix: &str) -> Option<ClientId> {
    path.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

/// Sends client `id`'s frames as MJPEG, newest only, each part written and
/// flushed whole as soon as it is there. Ends when the client leaves, the
/// viewer goes away or stops reading (write timeout), or on shutdown.
fn stream_mjpeg(
    stream: &mut Stream,
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
        let name: Arc<str> = "cam".into();
        hub.publish(1, &name, &Bytes::from_static(b"a"));
        hub.publish(1, &name, &Bytes::from_static(b"b"));
        assert_eq!(&hub.latest_named("cam").unwrap()[..], b"b");
        assert!(hub.latest_named("other").is_none());
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
    fn prometheus_labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

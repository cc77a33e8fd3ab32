//! The live view's WebSocket endpoints (RFC 6455 upgrades of a GET):
//!
//! - `/ws/camera`: a browser camera (the `/camera` page). After the upgrade
//!   the connection is a framelink client like any other: the
//!   [`websocket`] transport turns it into a plain stream and the server runs
//!   its handshake (token proof included), gate and stages on it.
//! - `/ws/stats`: the `/stats.json` document pushed as a text message every
//!   second, for the live view page.
//!
//! A browser page of another site may open a WebSocket to any address (no
//! CORS applies), so a request whose `Origin` is not this server's own
//! `Host` is refused (403).

use super::http::{respond, Request};
use super::{Cameras, StatsSource};
use crate::shutdown::Shutdown;
use crate::wire::connection;
use crate::wire::transport::websocket;
use crate::wire::transport::Stream;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::debug;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// How often `/ws/stats` pushes the figures.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Whether the request asks for a WebSocket.
pub fn wanted(req: &Request) -> bool {
    req.header_has("upgrade", "websocket")
}

/// Checks a WebSocket upgrade request and answers `101 Switching
/// Protocols`, or answers the status that refuses it (and returns false).
fn accept(stream: &mut Stream, req: &Request, peer: SocketAddr) -> bool {
    let refuse = |stream: &mut Stream, status, text: &str| {
        debug!(%peer, "WebSocket upgrade refused: {text}");
        let _ = respond(stream, status, "text/plain", format!("{text}\n").as_bytes());
        false
    };
    if req.method != "GET" || !wanted(req) || !req.header_has("connection", "upgrade") {
        return refuse(
            stream,
            426,
            "this address is a WebSocket: connect with Upgrade: websocket",
        );
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return refuse(stream, 400, "only WebSocket version 13 is spoken here");
    }
    let Some(key) = req.header("sec-websocket-key") else {
        return refuse(stream, 400, "the upgrade has no Sec-WebSocket-Key");
    };
    if let (Some(origin), Some(host)) = (req.header("origin"), req.header("host")) {
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        if !origin_host.eq_ignore_ascii_case(host.trim()) {
            return refuse(
                stream,
                403,
                &format!("a page from {origin} may not open this server's WebSocket"),
            );
        }
    }
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        websocket::accept_key(key)
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.flush())
        .is_ok()
}

/// `/ws/camera`: upgrades, and runs the connection as a client of
/// the server on this thread until it ends.
pub fn camera(
    mut stream: Stream,
    req: Request,
    peer: SocketAddr,
    cameras: &dyn Cameras,
    io_timeout: Duration,
) {
    if !accept(&mut stream, &req, peer) {
        return;
    }
    let accepted = Instant::now();
    let opened = websocket::open(stream, Role::Server, req.after_head).and_then(|(s, e)| {
        connection::configure_local(&s, io_timeout)?;
        Ok((s, e))
    });
    match opened {
        Ok((plain, error)) => cameras.serve_camera(plain, error, peer, accepted),
        Err(e) => debug!(%peer, "cannot start the WebSocket transport: {e}"),
    }
}

/// `/ws/stats`: upgrades, then sends the figures at once and every second
/// until the viewer goes (a write fails or times out) or the server stops.
pub fn stats(
    mut stream: Stream,
    req: Request,
    peer: SocketAddr,
    source: &dyn StatsSource,
    shutdown: &Shutdown,
) {
    if !accept(&mut stream, &req, peer) {
        return;
    }
    let mut ws = WebSocket::from_partially_read(stream, req.after_head, Role::Server, None);
    loop {
        let text = source.stats_json().to_string();
        if let Err(e) = ws.send(Message::text(text)) {
            debug!(%peer, "figures viewer left: {e}");
            return;
        }
        if shutdown.wait_timeout(STATS_EVERY) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return;
        }
    }
}

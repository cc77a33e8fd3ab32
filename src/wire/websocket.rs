//! The WebSocket transport: a browser (the `/camera` page) speaks the same
//! protocol as a TCP client, its bytes carried in **binary** WebSocket
//! messages whose boundaries mean nothing (protocol.md, "WebSocket
//! transport"). The upgrade itself is the live view's (`/ws/camera` on
//! `--http`); the framing is tungstenite's.
//!
//! As with [`crate::wire::tls`], a bridge thread per connection moves bytes
//! between the WebSocket and one end of a local socket pair, and the
//! connection code uses the other end exactly as it would a TCP socket
//! ([`Stream::Local`]): the same handshake deadline, limits, message
//! deadlines and write timeouts apply, because they are the same code. The
//! bridge holds at most about two WebSocket messages' worth of each side,
//! and a message is at most [`MAX_MESSAGE`] bytes: a larger one ends the connection before
//! it is buffered, so an unauthenticated browser costs what a TCP peer costs.

use crate::wire::stream::{pass_on, poll_pair, would_block, Stream};
use crate::wire::tls::BridgeError;
use bytes::Bytes;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use tracing::debug;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

/// The largest WebSocket message accepted, and the largest sent: a FRAME
/// bigger than this is sent as several messages.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// How often the bridge looks up when nothing happens.
const POLL_MS: i32 = 1000;
/// After the connection code closed its end: how long the peer has to
/// answer our close before the socket is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The `Sec-WebSocket-Accept` answer to a request's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.trim().as_bytes())
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(MAX_MESSAGE)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * MAX_MESSAGE + 1024)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Starts a bridge over `transport`, whose upgrade handshake is done (the
/// server answered 101, or the client got it); `early` holds bytes read past
/// the handshake. Returns the plain stream for the connection code, and
/// where the bridge puts the reason it stopped (a text message, one over
/// [`MAX_MESSAGE`]) for that connection's error message.
pub fn bridge(transport: Stream, role: Role, early: Vec<u8>) -> io::Result<(Stream, BridgeError)> {
    transport.set_nonblocking(true)?;
    let (app, ours) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let error: BridgeError = Default::default();
    let e = error.clone();
    let fd = transport.as_raw_fd();
    let ws = WebSocket::from_partially_read(transport, early, role, Some(config()));
    std::thread::Builder::new()
        .name("websocket".into())
        .spawn(move || {
            if let Err(why) = pump(ws, fd, ours, &e) {
                debug!("WebSocket connection ended: {why}");
                e.lock().get_or_insert(why);
            }
        })?;
    Ok((Stream::Local(app), error))
}

/// What one read of the WebSocket gave.
enum Got {
    Bytes(Bytes),
    Nothing,
    Closed,
}

/// Reads one message's worth from the peer; control messages are answered
/// by tungstenite (a pong, the close reply) on the next flush.
fn read_one(ws: &mut WebSocket<Stream>) -> Result<Got, String> {
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => return Ok(Got::Bytes(b)),
            Ok(Message::Text(_)) => {
                let why = "a text message: this transport carries binary messages only";
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Unsupported,
                    reason: why.into(),
                }));
                let _ = ws.flush();
                return Err(format!("WebSocket: {why}"));
            }
            Ok(Message::Close(_)) => return Ok(Got::Closed),
            Ok(_) => continue, // ping, pong
            Err(WsError::Io(e)) if would_block(&e) => return Ok(Got::Nothing),
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return Ok(Got::Closed),
            Err(WsError::Capacity(e)) => {
                let why = format!("{e} (a message may be at most {MAX_MESSAGE} bytes)");
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Size,
                    reason: "message too big".into(),
                }));
                let _ = ws.flush();
                return Err(format!("WebSocket: {why}"));
            }
            Err(e) => return Err(format!("WebSocket: {e}")),
        }
    }
}

/// Moves bytes both ways until both sides are done (or the connection code
/// is gone). Returns why it stopped early, if it did.
fn pump(
    mut ws: WebSocket<Stream>,
    fd: i32,
    mut local: UnixStream,
    error: &BridgeError,
) -> Result<(), String> {
    // Bytes from the peer, waiting to be written to the local end.
    let mut to_local: Vec<u8> = Vec::new();
    // Our output is buffered in tungstenite, waiting for the socket.
    let mut pending = false;
    let (mut local_eof, mut ws_eof) = (false, false);
    let mut closing_since: Option<Instant> = None;
    // tungstenite may hold more of the peer's messages than it handed out
    // (one socket read can bring several): read again before waiting.
    let mut maybe_more = false;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        if closing_since.is_some_and(|t| t.elapsed() > CLOSE_GRACE) {
            return Ok(()); // the peer never answered our close
        }
        // Interest: read the peer only when what it sent was passed on; read
        // the local end only when our output drained. A side with no
        // interest is left out (-1), so its hang-up does not spin the loop.
        let peer_events = (if !ws_eof && to_local.is_empty() {
            libc::POLLIN
        } else {
            0
        }) | (if pending { libc::POLLOUT } else { 0 });
        let mut fds = [
            libc::pollfd {
                fd: if peer_events == 0 { -1 } else { fd },
                events: peer_events,
                revents: 0,
            },
            libc::pollfd {
                fd: local.as_raw_fd(),
                events: (if !local_eof && !pending {
                    libc::POLLIN
                } else {
                    0
                }) | (if to_local.is_empty() {
                    0
                } else {
                    libc::POLLOUT
                }),
                revents: 0,
            },
        ];
        let read_now = maybe_more && !ws_eof && to_local.is_empty();
        let wait = if read_now {
            0
        } else if closing_since.is_some() {
            100
        } else {
            POLL_MS
        };
        if !poll_pair(&mut fds, wait)? {
            continue;
        }
        let local_gone = fds[1].revents & (libc::POLLERR | libc::POLLNVAL) != 0
            || (fds[1].revents & libc::POLLHUP != 0 && (local_eof || pending));
        if local_gone {
            return Ok(()); // the connection code dropped its end
        }
        // Peer → local.
        let readable = fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        if (readable || read_now) && !ws_eof && to_local.is_empty() {
            // Every message there is, up to one message's worth of bytes
            // held (a frame sent in several messages moves in one go).
            while to_local.len() < MAX_MESSAGE {
                match read_one(&mut ws) {
                    Ok(Got::Bytes(b)) => {
                        to_local.extend_from_slice(&b);
                        maybe_more = true;
                    }
                    Ok(Got::Nothing) => {
                        maybe_more = false;
                        break;
                    }
                    Ok(Got::Closed) => {
                        ws_eof = true;
                        break;
                    }
                    Err(why) => {
                        // Say why before the connection code sees the end.
                        *error.lock() = Some(why.clone());
                        let _ = local.shutdown(std::net::Shutdown::Both);
                        return Err(why);
                    }
                }
            }
        }
        if !pass_on(&mut local, &mut to_local, ws_eof) {
            return Ok(());
        }
        // Local → peer, one read (at most one message) at a time.
        if fds[1].revents & (libc::POLLIN | libc::POLLHUP) != 0 && !local_eof && !pending {
            match local.read(&mut buf) {
                Ok(0) => {
                    local_eof = true;
                    let _ = ws.close(None);
                    closing_since = Some(Instant::now());
                }
                Ok(_) if ws_eof => {} // the peer closed: nothing more reaches it
                Ok(n) => {
                    if let Err(e) = ws.write(Message::Binary(Bytes::copy_from_slice(&buf[..n]))) {
                        match e {
                            WsError::Io(ref io) if would_block(io) => {}
                            e => return Err(format!("WebSocket: {e}")),
                        }
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    local_eof = true;
                    let _ = ws.close(None);
                    closing_since = Some(Instant::now());
                }
            }
        }
        match ws.flush() {
            Ok(()) => pending = false,
            Err(WsError::Io(e)) if would_block(&e) => pending = true,
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                pending = false;
                ws_eof = true;
            }
            Err(e) => return Err(format!("WebSocket: {e}")),
        }
        if local_eof && ws_eof && to_local.is_empty() && !pending {
            return Ok(());
        }
    }
}

//! The WebSocket transport: a browser (the `/camera` page) speaks the same
//! protocol as a TCP client, its bytes carried in **binary** WebSocket
//! messages whose boundaries mean nothing (protocol.md, "WebSocket
//! transport"). The upgrade itself is the live view's (`/ws/camera` on
//! `--http`); the frame format is tungstenite's ([`FrameSocket`],
//! [`FrameHeader`]).
//!
//! [`WebSocketStream`] is a [`Stream`] of its own, read and written by the
//! connection's threads themselves (no bridge thread, no socket pair): a
//! read takes the next data frame's payload from the socket and hands it
//! out as plain bytes, answering pings and the peer's close on the way; a
//! write sends the bytes as one binary message (several when over
//! [`MAX_MESSAGE`]). So the connection code runs on it unchanged — the same
//! handshake deadline, limits, message deadlines and write timeouts, which
//! are set on the socket under it — and a frame costs the reads and writes
//! it costs over TCP. A message over [`MAX_MESSAGE`] is refused from its
//! frame header, before it is buffered (close 1009); a text message closes
//! the connection (1003): an unauthenticated browser costs what a TCP peer costs.

use crate::wire::transport::{StopReason, Stream};
use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader, FrameSocket};
use tungstenite::protocol::Role;
use tungstenite::Error as WsError;

/// The largest WebSocket message accepted, and the largest sent: a FRAME
/// bigger than this is sent as several messages.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The `Sec-WebSocket-Accept` answer to a request's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.trim().as_bytes())
}

/// Starts the WebSocket transport over `transport`, whose upgrade handshake
/// is done (the server answered 101, or the client got it); `early` holds
/// bytes read past the handshake. Returns the stream for the connection
/// code, and where it puts the reason it stopped (a text message, one over
/// [`MAX_MESSAGE`]) for that connection's error message.
pub fn open(transport: Stream, role: Role, early: Vec<u8>) -> io::Result<(Stream, StopReason)> {
    let error: StopReason = Default::default();
    let shared = Arc::new(Shared {
        role,
        read: Mutex::new(Reading {
            frames: FrameSocket::from_partially_read(transport.try_clone()?, early),
            pending: Bytes::new(),
            eof: false,
        }),
        write: Mutex::new(transport.try_clone()?),
        transport,
        close_sent: AtomicBool::new(false),
        error: error.clone(),
    });
    Ok((Stream::WebSocket(WebSocketStream { shared }), error))
}

/// The byte stream a WebSocket carries (see the module docs). Clones share
/// one connection: one thread reads, any may write (each write is one
/// message, whole, under a lock).
#[derive(Clone)]
pub struct WebSocketStream {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebSocketStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketStream")
            .field("transport", &self.shared.transport)
            .finish()
    }
}

struct Shared {
    role: Role,
    read: Mutex<Reading>,
    /// The transport, for writing messages (one at a time).
    write: Mutex<Stream>,
    /// The transport, for its timeouts and shutdown.
    transport: Stream,
    close_sent: AtomicBool,
    error: StopReason,
}

struct Reading {
    frames: FrameSocket<Stream>,
    /// Payload of the last data frame not yet handed out.
    pending: Bytes,
    /// The peer closed (its close frame, or the socket's end).
    eof: bool,
}

/// Unmasks (or masks: the same XOR) a client's payload in place, four
/// bytes at a time.
fn xor_mask(buf: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut words = buf.chunks_exact_mut(4);
    for w in &mut words {
        let v = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) ^ word;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, m) in words.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

impl Shared {
    fn mask(&self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(|| {
            let mut m = [0u8; 4];
            let _ = getrandom::fill(&mut m);
            m
        })
    }

    /// Sends one control frame (close, pong), masked as our role wants.
    fn send_control(&self, mut frame: Frame) -> io::Result<()> {
        frame.header_mut().mask = self.mask();
        let mut out = Vec::with_capacity(2 + 4 + frame.len());
        frame.format(&mut out).map_err(io::Error::other)?;
        self.write.lock().write_all(&out)
    }

    /// Starts the closing handshake, once.
    fn close(&self, code: CloseCode, reason: &str) {
        if !self.close_sent.swap(true, Ordering::SeqCst) {
            let _ = self.send_control(Frame::close(Some(CloseFrame {
                code,
                reason: reason.to_string().into(),
            })));
        }
    }

    /// Ends the connection for `why`: said to the peer (`code`, `reason`)
    /// and kept for the connection's error message.
    fn fail(&self, code: CloseCode, reason: &str, why: String) -> io::Error {
        let why = format!("WebSocket: {why}");
        debug!("{why}");
        self.error.lock().get_or_insert(why.clone());
        self.close(code, reason);
        let _ = self.transport.shutdown(std::net::Shutdown::Write);
        io::Error::new(io::ErrorKind::InvalidData, why)
    }

    /// Sends `bufs` as one binary message of `len` bytes (at most [`MAX_MESSAGE`]).
    fn send_message(&self, bufs: &[IoSlice<'_>], len: usize) -> io::Result<()> {
        if self.close_sent.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the WebSocket is closing",
            ));
        }
        let mask = self.mask();
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Binary),
            mask,
            ..FrameHeader::default()
        };
        let mut head = Vec::with_capacity(14);
        header
            .format(len as u64, &mut head)
            .map_err(io::Error::other)?;
        let mut w = self.write.lock();
        match mask {
            // A client's payload is masked: a copy.
            Some(m) => {
                let mut out = head;
                let at = out.len();
                for b in bufs {
                    out.extend_from_slice(b);
                }
                xor_mask(&mut out[at..], m);
                w.write_all(&out)
            }
            None => {
                let mut slices = Vec::with_capacity(bufs.len() + 1);
                slices.push(IoSlice::new(&head));
                slices.extend(bufs.iter().map(|b| IoSlice::new(b)));
                crate::wire::transport::write_all_vectored(&mut *w, &mut slices)
            }
        }
    }

    /// Takes one frame from the peer: data into `pending`, control answered.
    fn take(&self, r: &mut Reading, frame: Frame) -> io::Result<()> {
        let mut header = frame.header().clone();
        let payload = frame.into_payload();
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(self.fail(
                CloseCode::Protocol,
                "no extension",
                "a frame with a reserved bit set (no extension was agreed)".into(),
            ));
        }
        let payload = match header.mask.take() {
            Some(m) => {
                let mut p = payload
                    .try_into_mut()
                    .unwrap_or_else(|p| bytes::BytesMut::from(&p[..]));
                xor_mask(&mut p, m);
                p.freeze()
            }
            None if self.role == Role::Server => {
                return Err(self.fail(
                    CloseCode::Protocol,
                    "unmasked frame",
                    "an unmasked frame from a client (RFC 6455 requires the mask)".into(),
                ))
            }
            None => payload,
        };
        match header.opcode {
            OpCode::Data(Data::Binary | Data::Continue) => r.pending = payload,
            OpCode::Data(Data::Text) => {
                return Err(self.fail(
                    CloseCode::Unsupported,
                    "binary messages only",
                    "a text message: this transport carries binary messages only".into(),
                ))
            }
            OpCode::Control(Control::Ping) => self.send_control(Frame::pong(payload))?,
            OpCode::Control(Control::Pong) => {}
            OpCode::Control(Control::Close) => {
                self.close(CloseCode::Normal, "");
                r.eof = true;
            }
            op => {
                return Err(self.fail(
                    CloseCode::Protocol,
                    "protocol error",
                    format!("a frame of reserved opcode {op}"),
                ))
            }
        }
        Ok(())
    }
}

impl Read for WebSocketStream {
    /// Blocks until a data frame's bytes are there (or EOF: the peer's close,
    /// or the socket's end); unblocked by the socket's read timeout, as a
    /// TCP read is. A partly read frame is kept for the next call.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let shared = &*self.shared;
        let mut r = shared.read.lock();
        loop {
            if !r.pending.is_empty() {
                let n = buf.len().min(r.pending.len());
                buf[..n].copy_from_slice(&r.pending[..n]);
                r.pending.advance(n);
                return Ok(n);
            }
            if r.eof {
                return Ok(0);
            }
            match r.frames.read(Some(MAX_MESSAGE)) {
                Ok(Some(frame)) => shared.take(&mut r, frame)?,
                Ok(None) => {
                    r.eof = true; // closed without a close frame: a tab closed
                }
                Err(WsError::Io(e)) => return Err(e),
                Err(WsError::Capacity(e)) => {
                    return Err(shared.fail(
                        CloseCode::Size,
                        "message too big",
                        format!("{e} (a message may be at most {MAX_MESSAGE} bytes)"),
                    ))
                }
                Err(e) => {
                    return Err(shared.fail(CloseCode::Protocol, "protocol error", e.to_string()))
                }
            }
        }
    }
}

impl Write for WebSocketStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Sends the bytes as one binary message (a server's at most
    /// [`MAX_MESSAGE`] without copying them), or several when over it.
    /// Blocks until the socket took them all; unblocked by its write timeout.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len == 0 {
            return Ok(0);
        }
        let shared = &*self.shared;
        if len <= MAX_MESSAGE && shared.role == Role::Server {
            shared.send_message(bufs, len)?;
        } else {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            for chunk in all.chunks(MAX_MESSAGE) {
                shared.send_message(&[IoSlice::new(chunk)], chunk.len())?;
            }
        }
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WebSocketStream {
    /// Half-closing the write side starts the closing handshake (our close
    /// frame, then the socket's FIN); reading goes on to the peer's close.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        if how != std::net::Shutdown::Read {
            self.shared.close(CloseCode::Normal, "");
        }
        self.shared.transport.shutdown(how)
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.shared.transport.set_read_timeout(d)
    }

    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.shared.transport.set_write_timeout(d)
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.shared.transport.set_nonblocking(on)
    }
}

impl AsRawFd for WebSocketStream {
    fn as_raw_fd(&self) -> RawFd {
        self.shared.transport.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::xor_mask;

    #[test]
    fn masking_is_rfc_6455s_xor_whatever_the_length() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..13 {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(31)).collect();
            let mut masked = data.clone();
            xor_mask(&mut masked, mask);
            let expected: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(masked, expected, "{len} bytes");
            xor_mask(&mut masked, mask);
            assert_eq!(masked, data, "masking twice gives the bytes back");
        }
    }
}

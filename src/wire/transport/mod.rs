//! A connection's byte stream: a TCP socket, the plain end of a TLS bridge
//! (a local socket pair, see [`tls`]), or the bytes a
//! WebSocket carries ([`websocket`]). Readers and writers work
//! the same on each, with the same timeouts.

pub mod tls;
pub mod websocket;

use parking_lot::Mutex;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// Either kind of stream (see the module docs).
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    /// The plaintext side of a TLS connection.
    Local(UnixStream),
    /// The bytes a WebSocket carries (the browser camera).
    WebSocket(websocket::WebSocketStream),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Self {
        Stream::Local(s)
    }
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Local(s) => Stream::Local(s.try_clone()?),
            Stream::WebSocket(s) => Stream::WebSocket(s.clone()),
        })
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Local(s) => s.shutdown(how),
            Stream::WebSocket(s) => s.shutdown(how),
        }
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(d),
            Stream::Local(s) => s.set_read_timeout(d),
            Stream::WebSocket(s) => s.set_read_timeout(d),
        }
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Local(s) => s.set_nonblocking(on),
            Stream::WebSocket(s) => s.set_nonblocking(on),
        }
    }

    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(d),
            Stream::Local(s) => s.set_write_timeout(d),
            Stream::WebSocket(s) => s.set_write_timeout(d),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Local(s) => s.as_raw_fd(),
            Stream::WebSocket(s) => s.as_raw_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Local(s) => s.read(buf),
            Stream::WebSocket(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Local(s) => s.write(buf),
            Stream::WebSocket(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Local(s) => s.write_vectored(bufs),
            Stream::WebSocket(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Local(s) => s.flush(),
            Stream::WebSocket(s) => s.flush(),
        }
    }
}

/// For the TLS bridge ([`crate::wire::transport::tls`]): a non-blocking call that
/// would have had to wait.
pub(crate) fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// For the TLS bridge: poll(2) on their two descriptors for at most `ms`.
/// `Ok(false)` when a signal interrupted it (poll again).
pub(crate) fn poll_pair(fds: &mut [libc::pollfd; 2], ms: i32) -> Result<bool, String> {
    // SAFETY: poll(2) on two descriptors the caller owns, for at most `ms`.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e.to_string());
    }
    Ok(true)
}

/// For the TLS bridge: writes what the peer sent on to the local end, as much
/// as it takes now, and half-closes it once the peer has ended and all is
/// passed on. False when the local end is gone.
pub(crate) fn pass_on(local: &mut UnixStream, to_local: &mut Vec<u8>, peer_ended: bool) -> bool {
    if !to_local.is_empty() {
        match local.write(to_local) {
            Ok(n) => {
                to_local.drain(..n);
            }
            Err(e) if would_block(&e) => {}
            Err(_) => return false,
        }
    }
    if peer_ended && to_local.is_empty() {
        let _ = local.shutdown(Shutdown::Write);
    }
    true
}
/// Why a transport under a connection stopped (a TLS bridge's failed
/// handshake, a WebSocket's close), for the connection's error message.
pub type StopReason = Arc<Mutex<Option<String>>>;

/// Writes every byte of `bufs`, in as few vectored writes as the stream takes.
pub(crate) fn write_all_vectored(
    w: &mut impl Write,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "connection closed while sending",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

//! Buffered message I/O over a TCP stream, shared by client and server.
//!
//! [`Reader`] accumulates bytes and hands out whole messages (check, then
//! parse, from [`codec`](super::codec)); [`Writer`] sends each message, or each frame with
//! its payload, in a single system call with TCP_NODELAY set, so nothing waits
//! on Nagle's algorithm.

use crate::shutdown::{Shutdown, TICK};
use crate::wire::rx_time;
use crate::wire::transport::Stream;
use crate::wire::{self, Limits, Message};
use bytes::BytesMut;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest read done in one go when the next message's size is not known yet.
const READ_CHUNK: usize = 64 * 1024;
/// A wait with no deadline (a year).
const FOREVER: Duration = Duration::from_secs(86_400 * 365);

/// `t + d`, or a year from `t` when that overflows.
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or_else(|| t + FOREVER)
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Protocol(#[from] wire::Error),
    #[error("peer closed the connection{}", if *.mid_message { " in the middle of a message" } else { "" })]
    Closed { mid_message: bool },
    #[error("peer timed out after {0:.1?} {1}")]
    TimedOut(Duration, &'static str),
    #[error("shutting down")]
    Shutdown,
    /// The peer was told no (a wrong token).
    #[error("{0}")]
    Refused(String),
}

/// Sets what every framelink socket needs: TCP_NODELAY (small messages leave
/// at once), a write timeout (a peer that stops reading cannot block us
/// forever), and TCP keepalive (a peer that vanished is noticed even when
/// nothing is being sent).
pub fn configure(stream: &TcpStream, write_timeout: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(write_timeout))?;
    stream.set_read_timeout(Some(TICK))?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(1));
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    let keepalive = keepalive.with_retries(5);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)?;
    Ok(())
}

/// Sets the plaintext end of a TLS bridge up as [`configure`] does a socket
/// (the socket's own options are set on the TCP side).
pub fn configure_local(stream: &Stream, write_timeout: Duration) -> io::Result<()> {
    stream.set_write_timeout(Some(write_timeout))?;
    stream.set_read_timeout(Some(TICK))
}

/// What [`ConnError::TimedOut`] says when the idle limit passed between
/// messages (nothing of a next message had arrived).
pub const WAITING: &str = "waiting for a message";

/// The reading half of a connection.
pub struct Reader {
    stream: Stream,
    buf: BytesMut,
    limits: Limits,
    /// Reads take the kernel's receive stamps ([`rx_time`]).
    stamped: bool,
    /// When the newest bytes read landed, by the kernel's stamp.
    arrival: Option<Instant>,
}

impl Reader {
    /// Wraps a stream already [`configure`]d (its read timeout is the tick).
    pub fn new(stream: impl Into<Stream>, limits: Limits) -> Self {
        Reader {
            stream: stream.into(),
            buf: BytesMut::with_capacity(READ_CHUNK),
            limits,
            stamped: false,
            arrival: None,
        }
    }

    /// Takes the kernel's receive stamp with every read, for
    /// [`arrival`](Self::arrival). Returns false where there is none: not a
    /// TCP socket (the TLS bridge), or not Linux.
    pub fn stamp_arrivals(&mut self) -> bool {
        self.stamped = match &self.stream {
            Stream::Tcp(s) => rx_time::enable(s).is_ok(),
            Stream::Local(_) | Stream::WebSocket(_) => false,
        };
        self.stamped
    }

    /// When the bytes of the newest read landed, by the kernel's stamp (so
    /// a message just returned had fully arrived by then); None without
    /// [`stamp_arrivals`](Self::stamp_arrivals) or when the kernel gave none.
    pub fn arrival(&self) -> Option<Instant> {
        self.arrival
    }

    /// Reads the peer's 6-byte preface and returns its version.
    ///
    /// Unblocks when the preface has arrived, when the bytes so far already
    /// cannot be a preface, at EOF or an I/O error, at `deadline`, or on
    /// shutdown.
    pub fn read_preface(
        &mut self,
        deadline: Instant,
        shutdown: &Shutdown,
    ) -> Result<u16, ConnError> {
        let called = Instant::now();
        loop {
            match wire::check_preface(&self.buf) {
                Ok(version) => {
                    let _ = self.buf.split_to(wire::PREFACE_LEN);
                    return Ok(version);
                }
                Err(wire::Error::Incomplete) => {}
                Err(e) => {
                    // Wait briefly for a few more bytes (up to 8) to describe
                    // the peer well; the peer is foreign whatever comes.
                    let brief = deadline.min(Instant::now() + Duration::from_millis(200));
                    let more = self.buf.len() < 8
                        && matches!(
                            self.fill_some(8, brief, shutdown, "waiting for the preface", called),
                            Ok(true)
                        );
                    if !more {
                        return Err(match wire::check_preface(&self.buf) {
                            Err(better @ wire::Error::NotFramelink(_)) => better.into(),
                            _ => e.into(),
                        });
                    }
                    continue;
                }
            }
            if !self.fill_some(
                wire::PREFACE_LEN,
                deadline,
                shutdown,
                "waiting for the preface",
                called,
            )? {
                return Err(match wire::check_preface(&self.buf) {
                    Err(e @ wire::Error::NotFramelink(_)) => e.into(),
                    _ => ConnError::Closed {
                        mid_message: !self.buf.is_empty(),
                    },
                });
            }
        }
    }

    /// Reads one whole message.
    ///
    /// Returns `Ok(None)` when the peer closed the connection between messages.
    /// Unblocks when a whole message is buffered, at EOF or an I/O error, on
    /// shutdown, when `whole` passes after the message's first byte (or after
    /// this call, if part of it was already buffered) without the rest of it
    /// arriving — a deadline for the whole message, so a peer trickling one
    /// byte at a time is dropped as surely as one that stalls — or when
    /// `idle` (if given) passes with nothing read.
    pub fn read_message(
        &mut self,
        idle: Option<Duration>,
        whole: Duration,
        shutdown: &Shutdown,
    ) -> Result<Option<Message>, ConnError> {
        let idle_until = idle.map(|d| after(Instant::now(), d));
        self.read_until(idle_until, whole, None, shutdown)
    }

    /// Reads one whole message that must be complete by `deadline` (a
    /// handshake's deadline: everything from the first byte to the last of
    /// the message, and the wait before it). Unblocks like
    /// [`read_message`](Self::read_message), and at `deadline`.
    pub fn read_message_by(
        &mut self,
        deadline: Instant,
        shutdown: &Shutdown,
    ) -> Result<Option<Message>, ConnError> {
        self.read_until(Some(deadline), Duration::MAX, Some(deadline), shutdown)
    }

    fn read_until(
        &mut self,
        idle_until: Option<Instant>,
        whole: Duration,
        by: Option<Instant>,
        shutdown: &Shutdown,
    ) -> Result<Option<Message>, ConnError> {
        // When the message's first byte was seen (now, if some is buffered).
        let called = Instant::now();
        let mut started = (!self.buf.is_empty()).then_some(called);
        loop {
            match wire::check(&self.buf, &self.limits) {
                Ok(n) => {
                    let msg = self.buf.split_to(n).freeze();
                    return Ok(Some(wire::parse(msg)?));
                }
                Err(wire::Error::Incomplete) => {}
                Err(e) => return Err(e.into()),
            }
            let want = wire::needed(&self.buf, &self.limits)?.unwrap_or(wire::ENVELOPE_LEN);
            let (deadline, what, since) = match started {
                None => (idle_until, WAITING, called),
                Some(t) => (Some(after(t, whole)), "in the middle of a message", t),
            };
            let deadline = match (deadline, by) {
                (Some(d), Some(b)) => Some(d.min(b)),
                (d, b) => d.or(b),
            };
            let deadline = deadline.unwrap_or_else(|| after(Instant::now(), FOREVER));
            if !self.fill_some(want, deadline, shutdown, what, since)? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnError::Closed { mid_message: true })
                };
            }
            started.get_or_insert_with(Instant::now);
        }
    }

    /// Reads at least one byte towards having `want` buffered. Returns false at
    /// EOF. Fails at `deadline` or on shutdown.
    fn fill_some(
        &mut self,
        want: usize,
        deadline: Instant,
        shutdown: &Shutdown,
        what: &'static str,
        since: Instant,
    ) -> Result<bool, ConnError> {
        let have = self.buf.len();
        // Reserve the rest of this message at once (its size was checked
        // against the limits), but zero and read at most a chunk at a time.
        self.buf.reserve(want.saturating_sub(have).max(READ_CHUNK));
        self.buf.resize(have + READ_CHUNK, 0);
        loop {
            if shutdown.is_triggered() {
                self.buf.truncate(have);
                return Err(ConnError::Shutdown);
            }
            // Checked before every read, not only when one times out: a
            // peer sending a byte every tick never lets a read time out.
            if Instant::now() >= deadline {
                self.buf.truncate(have);
                return Err(ConnError::TimedOut(since.elapsed(), what));
            }
            let read = match (&self.stream, self.stamped) {
                (Stream::Tcp(s), true) => rx_time::read(s, &mut self.buf[have..]).map(|(n, t)| {
                    self.arrival = t.and_then(rx_time::to_instant);
                    n
                }),
                _ => self.stream.read(&mut self.buf[have..]),
            };
            match read {
                Ok(0) => {
                    self.buf.truncate(have);
                    return Ok(false);
                }
                Ok(n) => {
                    self.buf.truncate(have + n);
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= deadline {
                        self.buf.truncate(have);
                        return Err(ConnError::TimedOut(since.elapsed(), what));
                    }
                }
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e.into());
                }
            }
        }
    }

    /// Changes the caps for the messages still to come: a server reads the
    /// handshake under [`Limits::handshake`] and raises them once the peer
    /// is authenticated.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Bytes buffered but not yet taken as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// The writing half of a connection.
pub struct Writer {
    stream: Stream,
    scratch: Vec<u8>,
}

impl Writer {
    /// Wraps a stream already [`configure`]d (its write timeout bounds every write).
    pub fn new(stream: impl Into<Stream>) -> Self {
        Writer {
            stream: stream.into(),
            scratch: Vec::with_capacity(256),
        }
    }

    /// Sends `messages` back to back in one write, after our preface if
    /// `with_preface`. Blocks until the kernel took them all; unblocked by the
    /// write timeout if the peer stops reading.
    pub fn send(&mut self, with_preface: bool, messages: &[&Message]) -> io::Result<()> {
        self.scratch.clear();
        if with_preface {
            self.scratch.extend_from_slice(&wire::preface());
        }
        for m in messages {
            m.encode(&mut self.scratch);
        }
        self.stream.write_all(&self.scratch)
    }

    /// Sends one FRAME (header, payload, echoed ticket) in one vectored write,
    /// without copying the payload. Blocks like [`send`](Self::send).
    pub fn send_frame(
        &mut self,
        header: &wire::FrameHeader,
        payload: &[u8],
        ticket: wire::Ticket,
    ) -> io::Result<()> {
        let (head, tail) = wire::frame_parts(header, ticket);
        let mut slices = [
            IoSlice::new(&head),
            IoSlice::new(payload),
            IoSlice::new(&tail),
        ];
        crate::wire::transport::write_all_vectored(&mut self.stream, &mut slices)
    }

    /// Sends GOODBYE (after our preface if `with_preface`), then half-closes:
    /// the last thing this side says on a connection.
    pub fn goodbye(
        &mut self,
        with_preface: bool,
        code: wire::GoodbyeCode,
        text: impl Into<String>,
    ) -> io::Result<()> {
        let bye = Message::Goodbye(wire::Goodbye {
            code,
            text: text.into(),
        });
        let sent = self.send(with_preface, &[&bye]);
        self.finish();
        sent
    }

    /// Half-closes the write side: the peer reads EOF after what was sent.
    pub fn finish(&mut self) {
        let _ = self.stream.flush();
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Goodbye, GoodbyeCode, Ticket};
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        for s in [&a, &b] {
            configure(s, Duration::from_secs(5)).unwrap();
        }
        (a, b)
    }

    #[test]
    fn messages_split_across_writes_are_reassembled() {
        let (a, b) = pair();
        let mut bytes = wire::preface().to_vec();
        Message::Ticket(Ticket {
            id: 3,
            issued_us: 99,
        })
        .encode(&mut bytes);
        let writer = std::thread::spawn(move || {
            let mut a = a;
            for chunk in bytes.chunks(3) {
                a.write_all(chunk).unwrap();
                a.flush().unwrap();
            }
            a
        });
        let mut r = Reader::new(b, Limits::default());
        let s = Shutdown::new();
        assert_eq!(
            r.read_preface(Instant::now() + Duration::from_secs(5), &s)
                .unwrap(),
            wire::VERSION
        );
        let m = r
            .read_message(None, Duration::from_secs(5), &s)
            .unwrap()
            .unwrap();
        assert_eq!(
            m,
            Message::Ticket(Ticket {
                id: 3,
                issued_us: 99
            })
        );
        drop(writer.join().unwrap());
        assert!(
            r.read_message(None, Duration::from_secs(5), &s)
                .unwrap()
                .is_none(),
            "clean EOF"
        );
    }

    #[test]
    fn a_peer_stalled_mid_message_times_out() {
        let (mut a, b) = pair();
        a.write_all(&[wire::kind::GOODBYE, 0, 0, 0, 10, 0]).unwrap();
        let mut r = Reader::new(b, Limits::default());
        let err = r
            .read_message(None, Duration::from_millis(300), &Shutdown::new())
            .unwrap_err();
        assert!(
            matches!(err, ConnError::TimedOut(_, "in the middle of a message")),
            "{err}"
        );
    }

    #[test]
    fn a_peer_closing_mid_message_is_reported_as_such() {
        let (mut a, b) = pair();
        a.write_all(&[wire::kind::GOODBYE, 0, 0, 0, 10, 0]).unwrap();
        drop(a);
        let mut r = Reader::new(b, Limits::default());
        let err = r
            .read_message(None, Duration::from_secs(5), &Shutdown::new())
            .unwrap_err();
        assert!(
            matches!(err, ConnError::Closed { mid_message: true }),
            "{err}"
        );
    }

    #[test]
    fn shutdown_unblocks_a_waiting_read() {
        let (_a, b) = pair();
        let s = Shutdown::new();
        let t = s.clone();
        let h = std::thread::spawn(move || {
            Reader::new(b, Limits::default()).read_message(None, Duration::from_secs(60), &t)
        });
        s.trigger();
        assert!(matches!(h.join().unwrap(), Err(ConnError::Shutdown)));
    }

    #[test]
    fn http_request_is_named_as_such() {
        let (mut a, b) = pair();
        a.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut r = Reader::new(b, Limits::default());
        let err = r
            .read_preface(Instant::now() + Duration::from_secs(5), &Shutdown::new())
            .unwrap_err();
        assert!(err.to_string().contains("HTTP"), "{err}");
    }

    #[test]
    fn writer_sends_preface_and_messages_in_one_go() {
        let (a, b) = pair();
        let mut w = Writer::new(a);
        let bye = Message::Goodbye(Goodbye {
            code: GoodbyeCode::ShuttingDown,
            text: "bye".into(),
        });
        w.send(true, &[&bye]).unwrap();
        w.finish();
        let mut r = Reader::new(b, Limits::default());
        let s = Shutdown::new();
        r.read_preface(Instant::now() + Duration::from_secs(5), &s)
            .unwrap();
        assert_eq!(
            r.read_message(None, Duration::from_secs(5), &s).unwrap(),
            Some(bye)
        );
    }
}

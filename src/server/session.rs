//! One client's connection, start to end: the handshake (challenge, HELLO,
//! WELCOME and the first tickets, under one deadline and handshake-sized
//! limits), then the frame loop (FRAME in; the frame checked, judged by the
//! gate and handed on; VERDICT and a new TICKET out), and the thread that
//! writes RESULTs back. Errors end only this connection and are logged here.
//!
//! The handshake is in [`handshake`]; turning peers away (server full) and
//! logging refusals once a minute in [`refusal`].

mod handshake;
mod refusal;

use super::registry::Live;
use super::Shared;
use crate::gate;
use crate::latest::LatestSender;
use crate::process;
use crate::process::{ArrivedFrame, ClientId};
use crate::wire::connection::{self, ConnError, Reader, Writer};
use crate::wire::transport::{self, tls, Stream};
use crate::wire::{self, GoodbyeCode, Message, Outcome, ProcessResult, Reason, Ticket, Verdict};
use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use refusal::failure_kind;
pub(super) use refusal::{refuse, refuse_full, Notices};
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span, warn};

/// Accepted frames of one client whose RESULT is not written yet, at most.
/// At the cap the connection stops taking frames (no verdict, no ticket)
/// until the results writer catches up, and ends after `--io-timeout`: so
/// every accepted frame gets its RESULT, and the queue stays bounded.
const RESULTS_OWED: usize = 64;

/// One taken place in a counter of connections (`--max-clients`, or those
/// being turned away), given back when dropped, however the work ends.
pub(super) struct Slot<'a>(pub(super) &'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection's stream: the socket itself, or the plaintext end of a
/// TLS bridge when the server has a certificate.
fn wrap(
    tcp: TcpStream,
    shared: &Shared,
) -> std::io::Result<(Stream, Option<transport::StopReason>)> {
    match &shared.config.tls {
        None => Ok((Stream::Tcp(tcp), None)),
        Some(cfg) => {
            let (plain, error) = tls::accept(tcp, cfg)?;
            connection::configure_local(&plain, shared.config.io_timeout)?;
            Ok((plain, Some(error)))
        }
    }
}

/// One TCP connection, start to end. Logs how it ended; never panics on input.
pub(super) fn serve(stream: TcpStream, peer: SocketAddr, accepted: Instant, shared: &Shared) {
    let span = info_span!("client", %peer, name = tracing::field::Empty);
    let _enter = span.enter();
    debug!("connected");
    let (stream, tls_error) = match wrap(stream, shared) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot start TLS: {e}");
            return;
        }
    };
    run(stream, tls_error, peer, accepted, shared, &span);
}

/// A browser camera's connection (the live view's `/ws/camera`), start to
/// end, on the calling thread: `stream` is its WebSocket's byte stream
/// ([`crate::wire::transport::websocket`]). Turned away like a TCP client when the server is full.
pub(super) fn serve_websocket(
    stream: Stream,
    bridge: transport::StopReason,
    peer: SocketAddr,
    accepted: Instant,
    shared: &Shared,
) {
    let span = info_span!("client", %peer, transport = "websocket", name = tracing::field::Empty);
    let _enter = span.enter();
    debug!("connected");
    run(stream, Some(bridge), peer, accepted, shared, &span);
}

/// The connection on its plain stream; `bridge` says why a TLS bridge or a
/// WebSocket under it stopped, for the error message.
fn run(
    stream: Stream,
    bridge: Option<transport::StopReason>,
    peer: SocketAddr,
    accepted: Instant,
    shared: &Shared,
    span: &tracing::Span,
) {
    let tls_failed = || {
        bridge
            .as_ref()
            .and_then(|e| e.lock().clone())
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    };
    match Connection::start(
        stream,
        peer,
        accepted + shared.config.io_timeout,
        shared,
        span,
    ) {
        Ok(mut conn) => {
            let end = std::thread::scope(|s| {
                // Results come from the processing thread at any time: a
                // thread of their own writes them, so reading never waits.
                let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
                if let Some(results) = conn.results_rx.take() {
                    let (writer, live, span) =
                        (conn.writer.clone(), conn.live.clone(), span.clone());
                    s.spawn(move || {
                        let _enter = span.enter();
                        write_results(&results, &done_rx, &writer, &live)
                    });
                }
                let end = conn.stream_frames();
                drop(done_tx);
                end
            });
            shared.registry.remove(conn.id);
            if let Some(l) = &shared.live_frames {
                l.remove(conn.id);
            }
            match end {
                Ok(why) => info!("disconnected: {why}"),
                Err(e) => warn!("disconnected: {e}{}", tls_failed()),
            }
        }
        // Already logged where it was decided, once per address and reason.
        Err(e @ ConnError::Refused(_)) => debug!("rejected: {e}"),
        Err(e) => {
            let why = format!("{e}{}", tls_failed());
            if shared.notices.first(peer, &failure_kind(&e)) {
                warn!("rejected: {why}{}", Notices::NOTE);
            } else {
                debug!("rejected again: {why}");
            }
        }
    }
}

/// Writes results to the client as they come. Unblocked by a result or by
/// the connection ending (`done` disconnects); a write blocks at most the
/// I/O timeout.
fn write_results(
    (results, owed): &(Receiver<ProcessResult>, Receiver<()>),
    done: &Receiver<()>,
    writer: &Mutex<Writer>,
    live: &Live,
) {
    loop {
        crossbeam_channel::select! {
            recv(results) -> r => {
                let Ok(r) = r else { return };
                live.saw_result(&r);
                if let Err(e) = writer.lock().send(false, &[&Message::Result(r)]) {
                    debug!("cannot send a result: {e}");
                    return;
                }
                let _ = owed.try_recv();
            }
            recv(done) -> _ => return,
        }
    }
}

/// A connection after a successful handshake.
struct Connection<'a> {
    id: ClientId,
    shared: &'a Shared,
    reader: Reader,
    /// Shared with the results writer.
    writer: Arc<Mutex<Writer>>,
    live: Arc<Live>,
    /// Hand-off to the processing thread.
    to_processing: LatestSender<ArrivedFrame>,
    /// Hand-off to the display thread, if there is one.
    to_display: Option<LatestSender<ArrivedFrame>>,
    /// Where this client's results go (None: it did not ask for results),
    /// and one credit per accepted frame whose result is owed: the writer
    /// takes a credit back for each result it writes.
    results: Option<(Sender<ProcessResult>, Sender<()>)>,
    results_rx: Option<(Receiver<ProcessResult>, Receiver<()>)>,
    /// Tickets handed out and not yet answered, oldest first.
    outstanding: VecDeque<Ticket>,
    /// The previous FRAME's id on this connection: ids must increase.
    last_frame_id: Option<u64>,
    /// Both sides set `SOURCE_STATE`: SOURCE messages may come.
    source_state: bool,
    /// Says once when the link's round trip alone is over the threshold.
    link_check: gate::LinkCheck,
    next_ticket: u32,
}

impl<'a> Connection<'a> {
    fn issue_ticket(&mut self) -> Ticket {
        let t = Ticket {
            id: self.next_ticket,
            issued_us: self.shared.now_us(),
        };
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.outstanding.push_back(t);
        t
    }

    /// The frame loop: FRAME in, VERDICT and a new TICKET out. Returns why it
    /// ended cleanly, or the error that ended it (after telling the client).
    fn stream_frames(&mut self) -> Result<String, ConnError> {
        let io = self.shared.config.io_timeout;
        loop {
            let msg = match self.reader.read_message(None, io, &self.shared.shutdown) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok("client closed the connection without GOODBYE".into()),
                Err(ConnError::Shutdown) => {
                    let _ = self.writer.lock().goodbye(
                        false,
                        GoodbyeCode::ShuttingDown,
                        "server is shutting down",
                    );
                    return Ok("server shutting down".into());
                }
                Err(e) => {
                    refuse_for(&self.writer, &e);
                    return Err(e);
                }
            };
            match msg {
                Message::Frame(frame) => {
                    // When its last bytes landed, by the kernel's stamp if
                    // there is one (never later than now).
                    let now = Instant::now();
                    let arrived = self.reader.arrival().map_or(now, |a| a.min(now));
                    let (verdict, accepted) = self.judge(frame, arrived)?;
                    let ticket = Message::Ticket(self.issue_ticket());
                    // The VERDICT leaves before the frame is handed on, so
                    // its RESULT can never overtake it.
                    self.writer
                        .lock()
                        .send(false, &[&Message::Verdict(verdict), &ticket])?;
                    if let Some(frame) = accepted {
                        self.owe_result()?;
                        self.hand_on(frame);
                    }
                }
                Message::Source(report) if self.source_state => {
                    if report.up {
                        info!("camera back after {:.1} s", report.for_us as f64 / 1e6);
                    } else {
                        warn!("camera lost: {}", report.text);
                    }
                    self.live.source.report(&report);
                }
                Message::Goodbye(g) => {
                    return Ok(if g.text.is_empty() {
                        format!("client said goodbye ({:?})", g.code)
                    } else {
                        format!("client said goodbye: {}", g.text)
                    });
                }
                other => {
                    let e = wire::Error::Malformed {
                        kind: "stream",
                        reason: format!(
                            "a client may not send {} after the handshake",
                            other.name()
                        ),
                    };
                    let e = ConnError::Protocol(e);
                    refuse_for(&self.writer, &e);
                    return Err(e);
                }
            }
        }
    }

    /// Counts one more result owed to the client before its frame is handed
    /// on; waits (reading nothing, so the client gets no ticket) while
    /// [`RESULTS_OWED`] are. Unblocked by the results writer taking a credit
    /// back, by shutdown, or after `--io-timeout`, which ends the connection
    /// (the client is not reading its results).
    fn owe_result(&mut self) -> Result<(), ConnError> {
        let Some((_, owed)) = &self.results else {
            return Ok(());
        };
        let io = self.shared.config.io_timeout;
        let deadline = Instant::now() + io;
        // Waits a tick at a time, so a server shutdown is not held up.
        while Instant::now() < deadline {
            match owed.send_timeout((), crate::shutdown::TICK) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                    // The results writer stopped: its write to the client failed.
                    return Err(ConnError::Io(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "cannot send results: the connection failed",
                    )));
                }
                Err(crossbeam_channel::SendTimeoutError::Timeout(_)) => {}
            }
            if self.shared.shutdown.is_triggered() {
                return Err(ConnError::Shutdown);
            }
        }
        let e = ConnError::TimedOut(io, "reading its results (RESULT messages are waiting)");
        refuse_for(&self.writer, &e);
        Err(e)
    }

    /// Gives an accepted frame to the recorder, the live view, the display
    /// and the processing thread; none of them can block this thread. A
    /// frame the processor never got to is answered `skipped`.
    fn hand_on(&mut self, frame: ArrivedFrame) {
        self.live.accepted(frame.age, frame.arrived);
        if let Some(r) = &self.shared.recorder {
            r.offer(&frame);
        }
        if let Some(l) = &self.shared.live_frames {
            l.publish(self.id, &frame.client_name, &frame.jpeg);
        }
        if let Some(d) = &self.to_display {
            d.send(frame.clone());
        }
        if let Some(old) = self.to_processing.send(frame) {
            if let Some((results, _)) = &self.results {
                let busy = self.shared.processing.busy_for();
                let _ = results.send(process::skipped(old.frame_id, busy));
            }
        }
    }

    /// Checks one frame, measures its age and decides its fate: returns the
    /// VERDICT, and the frame to hand on when it was accepted. A frame
    /// echoing a ticket we did not issue is a protocol error (the age could
    /// not be trusted).
    fn judge(
        &mut self,
        frame: wire::Frame,
        arrived: Instant,
    ) -> Result<(Verdict, Option<ArrivedFrame>), ConnError> {
        let h = frame.header;
        let Some(pos) = self.outstanding.iter().position(|t| *t == frame.ticket) else {
            let e = wire::Error::Malformed {
                kind: "FRAME",
                reason: format!(
                    "echoes ticket {} ({} us) that is not outstanding",
                    frame.ticket.id, frame.ticket.issued_us
                ),
            };
            let e = ConnError::Protocol(e);
            refuse_for(&self.writer, &e);
            return Err(e);
        };
        self.outstanding.remove(pos);
        let issued = Duration::from_micros(frame.ticket.issued_us);
        let now = arrived - self.shared.epoch;
        let held = Duration::from_micros(h.ticket_held_us as u64);
        let m = gate::measure(
            issued,
            now,
            held,
            Duration::from_micros(h.capture_to_send_us as u64),
        );
        let repeated = self.last_frame_id.is_some_and(|last| h.frame_id <= last);
        self.last_frame_id = Some(self.last_frame_id.map_or(h.frame_id, |l| l.max(h.frame_id)));
        let reason = repeated
            .then_some(Reason::FrameIdNotIncreasing)
            .or_else(|| gate::check_frame(&h, &frame.payload, self.shared.config.max_pixels))
            .unwrap_or_else(|| {
                if gate::plausible_hold(now.saturating_sub(issued), held) {
                    Reason::None
                } else {
                    Reason::ImplausibleTiming
                }
            });
        let outcome = if reason == Reason::None {
            self.shared.gate.judge(&m)
        } else {
            Outcome::Rejected
        };
        if reason == Reason::None {
            let max_age = self.shared.config.max_age;
            if let Some(works) = self.link_check.observe(m.transit, m.age, max_age) {
                warn!(
                    "the link's round trip alone ({:.1} ms) is over --max-latency-ms {}: every frame from this client is stale; --max-latency-ms {} would let its frames through",
                    m.transit.as_secs_f64() * 1e3,
                    max_age.as_millis(),
                    works.as_millis()
                );
            }
        }
        self.live
            .last_size
            .store((h.width as u32) << 16 | h.height as u32, Ordering::Relaxed);
        {
            let mut stats = self.live.stats.lock();
            stats.record_sent(frame.payload.len());
            stats.record_verdict(outcome, m.age, m.transit, arrived);
        }
        let verdict = Verdict {
            frame_id: h.frame_id,
            ticket_id: frame.ticket.id,
            outcome,
            reason,
            age_us: wire::micros_u32(m.age),
            transit_us: wire::micros_u32(m.transit),
            result_kind: 0,
            result: Default::default(),
        };
        let accepted = match outcome {
            Outcome::Accepted => Some(ArrivedFrame {
                client: self.id,
                client_name: self.live.name.clone(),
                frame_id: h.frame_id,
                width: h.width,
                height: h.height,
                jpeg: frame.payload,
                age: m.age,
                arrived,
                reply: self.results.as_ref().map(|(r, _)| r.clone()),
            }),
            Outcome::DroppedStale => {
                debug!(
                    frame = h.frame_id,
                    age_ms = m.age.as_secs_f64() * 1e3,
                    "dropped stale frame"
                );
                None
            }
            Outcome::Rejected => {
                warn!(frame = h.frame_id, "rejected frame: {}", reason.describe());
                None
            }
        };
        Ok((verdict, accepted))
    }
}

/// Tells the peer why its connection is being closed, where there is a code for it.
fn refuse_for(writer: &Mutex<Writer>, e: &ConnError) {
    let code = match e {
        ConnError::Protocol(wire::Error::TooLarge { .. }) => GoodbyeCode::TooLarge,
        ConnError::Protocol(_) => GoodbyeCode::ProtocolError,
        ConnError::TimedOut(..) => GoodbyeCode::Timeout,
        ConnError::Shutdown => GoodbyeCode::ShuttingDown,
        ConnError::Io(_) | ConnError::Closed { .. } | ConnError::Refused(_) => return,
    };
    let _ = writer.lock().goodbye(false, code, e.to_string());
}

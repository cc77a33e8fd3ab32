//! One client's connection, start to end: the handshake (challenge, HELLO,
//! WELCOME and the first tickets, under one deadline and handshake-sized
//! limits), then the frame loop (FRAME in; the frame checked, judged by the
//! gate and handed on; VERDICT and a new TICKET out), and the thread that
//! writes RESULTs back. Errors end only this connection and are logged here.

use super::pipeline::Joined;
use super::registry::Live;
use super::sink::{ArrivedFrame, ClientId};
use super::{gate, process, Shared};
use crate::latest::{self, LatestSender};
use crate::stats::Running;
use crate::wire::auth;
use crate::wire::connection::{self, ConnError, Reader, Writer};
use crate::wire::stream::Stream;
use crate::wire::tls;
use crate::wire::{
    self, Challenge, GoodbyeCode, Limits, Message, Outcome, ProcessResult, Reason, Ticket, Verdict,
    Welcome,
};
use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span, warn};

/// Most connections being turned away (server full) at once; more are just closed.
const MAX_REFUSING: usize = 16;
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
fn wrap(tcp: TcpStream, shared: &Shared) -> std::io::Result<(Stream, Option<tls::BridgeError>)> {
    match &shared.config.tls {
        None => Ok((Stream::Tcp(tcp), None)),
        Some(cfg) => {
            let (plain, error) = tls::accept(tcp, cfg)?;
            connection::configure_local(&plain, shared.config.io_timeout)?;
            Ok((plain, Some(error)))
        }
    }
}

/// Tells a client beyond `--max-clients` why it is turned away, on a short
/// thread (at most [`MAX_REFUSING`] at once) that reads the client's hello
/// before closing, so the goodbye is not lost to a reset.
pub(super) fn refuse_full<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    stream: TcpStream,
    peer: SocketAddr,
    shared: &'s Shared,
) {
    let place = Slot(&shared.refusing);
    if shared.refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
        note_full(peer, shared);
        return;
    }
    let _ = std::thread::Builder::new()
        .name(format!("refuse {peer}"))
        .spawn_scoped(s, move || {
            let _place = place;
            if let Ok((stream, _)) = wrap(stream, shared) {
                refuse(stream, peer, shared);
            }
        });
}

fn note_full(peer: SocketAddr, shared: &Shared) {
    if shared.notices.first(peer, "server full") {
        warn!(%peer, max_clients = shared.config.max_clients, "refused: server full{}", Notices::NOTE);
    } else {
        debug!(%peer, "refused again: server full");
    }
}

/// Tells a client on `stream` that the server is full (GOODBYE
/// `ServerFull`), then drains what it sends until it closes, two seconds
/// at most. Runs on the calling thread.
pub(super) fn refuse(stream: Stream, peer: SocketAddr, shared: &Shared) {
    note_full(peer, shared);
    let text = format!(
        "server full: {} clients are connected (--max-clients)",
        shared.config.max_clients
    );
    let Ok(r) = stream.try_clone() else {
        return;
    };
    let mut reader = Reader::new(r, Limits::handshake());
    let mut writer = Writer::new(stream);
    if writer.goodbye(true, GoodbyeCode::ServerFull, text).is_ok() {
        // Drain until the client closes (it reads the goodbye, then
        // closes): two seconds in all, however the bytes trickle.
        let deadline = Instant::now() + Duration::from_secs(2);
        if reader.read_preface(deadline, &shared.shutdown).is_ok() {
            while let Ok(Some(_)) = reader.read_message_by(deadline, &shared.shutdown) {}
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
/// end, on the calling thread: `stream` is the plain end of its WebSocket
/// bridge. Turned away like a TCP client when the server is full.
pub(super) fn serve_websocket(
    stream: Stream,
    bridge: tls::BridgeError,
    peer: SocketAddr,
    accepted: Instant,
    shared: &Shared,
) {
    let span = info_span!("client", %peer, transport = "websocket", name = tracing::field::Empty);
    let _enter = span.enter();
    debug!("connected");
    run(stream, Some(bridge), peer, accepted, shared, &span);
}

/// The connection on its plain stream; `bridge` says why a TLS or WebSocket
/// bridge under it stopped, for the error message.
fn run(
    stream: Stream,
    bridge: Option<tls::BridgeError>,
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

/// Remembers which refusals were logged, per peer address and reason, so a
/// misconfigured client retrying every few seconds shows once a minute, not
/// on every retry. Bounded: forgets everything past [`Notices::MAX`] entries.
#[derive(Default)]
pub(super) struct Notices {
    logged: parking_lot::Mutex<std::collections::HashMap<(std::net::IpAddr, String), Instant>>,
}

impl Notices {
    /// How long a logged refusal keeps its repeats at debug level.
    pub const QUIET: Duration = Duration::from_secs(60);
    const MAX: usize = 4096;
    const PRUNE_AT: usize = 64;
    pub const NOTE: &'static str =
        " (repeats from this address for 60 s are logged at debug level)";

    /// True when this refusal of this address was not logged in the last
    /// [`QUIET`](Self::QUIET): log it at warning level then.
    pub fn first(&self, peer: SocketAddr, why: &str) -> bool {
        let mut logged = self.logged.lock();
        let now = Instant::now();
        let key = (peer.ip(), why.to_string());
        if logged
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < Self::QUIET)
        {
            return false;
        }
        // Only the last QUIET's refusals are kept: a peer refused every
        // second for months costs one entry, not one per refusal.
        if logged.len() >= Self::PRUNE_AT {
            logged.retain(|_, t| now.duration_since(*t) < Self::QUIET);
            if logged.len() >= Self::MAX {
                logged.clear();
            }
        }
        logged.insert(key, now);
        true
    }
}

/// What kind of failure `e` is, for [`Notices`]: the same kind from the
/// same address is logged once a minute, although its text may change
/// every time (a foreign peer's first bytes, a length).
fn failure_kind(e: &ConnError) -> String {
    match e {
        ConnError::Protocol(wire::Error::NotFramelink(text)) => {
            let what = if text.contains("HTTP") {
                "HTTP"
            } else if text.contains("TLS") {
                "TLS"
            } else {
                "foreign bytes"
            };
            format!("not framelink: {what}")
        }
        ConnError::Protocol(wire::Error::TooLarge { what, .. }) => format!("too large: {what}"),
        ConnError::Protocol(wire::Error::Malformed { kind, .. }) => format!("malformed: {kind}"),
        ConnError::Protocol(wire::Error::UnknownKind(_)) => "unknown message kind".into(),
        ConnError::Protocol(wire::Error::Early(what)) => format!("early: {what}"),
        ConnError::Protocol(wire::Error::Incomplete) => "incomplete".into(),
        ConnError::Io(e) => format!("i/o: {:?}", e.kind()),
        ConnError::Closed { mid_message } => format!("closed (mid-message {mid_message})"),
        ConnError::TimedOut(_, what) => format!("timed out {what}"),
        ConnError::Shutdown => "shutdown".into(),
        ConnError::Refused(text) => format!("refused: {text}"),
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
    /// Says once when the link's round trip alone is over the threshold.
    link_check: gate::LinkCheck,
    next_ticket: u32,
}

impl<'a> Connection<'a> {
    /// Reads the client's preface and HELLO, answers WELCOME and the first
    /// tickets. A wrong peer or version is told why (GOODBYE) and closed.
    ///
    /// The whole handshake (TLS included) must be done by `deadline`, and
    /// until WELCOME only handshake-sized messages are read
    /// ([`Limits::handshake`]): an unauthenticated peer holds a place for at
    /// most `--io-timeout` and a few kilobytes, whatever it trickles.
    fn start(
        stream: Stream,
        peer: SocketAddr,
        deadline: Instant,
        shared: &'a Shared,
        span: &tracing::Span,
    ) -> Result<Self, ConnError> {
        let mut reader = Reader::new(stream.try_clone()?, Limits::handshake());
        if shared.config.kernel_arrival {
            reader.stamp_arrivals();
        }
        let mut writer = Writer::new(stream);
        // The server speaks first: its preface and a fresh challenge.
        let server_nonce = auth::nonce();
        writer.send(
            true,
            &[&Message::Challenge(Challenge {
                nonce: server_nonce,
            })],
        )?;
        let refuse = |writer: &mut Writer, code, text: String| {
            let _ = writer.goodbye(false, code, text);
        };
        let version = match reader.read_preface(deadline, &shared.shutdown) {
            Ok(v) => v,
            Err(e) => {
                if let ConnError::Protocol(p) = &e {
                    refuse(&mut writer, GoodbyeCode::ProtocolError, p.to_string());
                }
                return Err(e);
            }
        };
        if version != wire::VERSION {
            let text = format!("this server speaks framelink protocol version {}, the client sent version {version}", wire::VERSION);
            refuse(&mut writer, GoodbyeCode::UnsupportedVersion, text.clone());
            return Err(ConnError::Protocol(wire::Error::Malformed {
                kind: "preface",
                reason: text,
            }));
        }
        let hello = match reader.read_message_by(deadline, &shared.shutdown) {
            Ok(Some(Message::Hello(h))) => h,
            Ok(Some(other)) => {
                let text = format!("expected HELLO after the preface, got {}", other.name());
                refuse(&mut writer, GoodbyeCode::ProtocolError, text.clone());
                return Err(ConnError::Protocol(wire::Error::Malformed {
                    kind: "handshake",
                    reason: text,
                }));
            }
            Ok(None) => return Err(ConnError::Closed { mid_message: false }),
            Err(e) => {
                refuse_for(&Mutex::new(writer), &e);
                return Err(e);
            }
        };
        span.record("name", hello.name.as_str());
        if let Some(token) = &shared.config.token {
            if !token.check_hello(&server_nonce, &hello.client_nonce, &hello.proof) {
                let text = if hello.proof.is_empty() {
                    "this server needs a token: give the client --token or FRAMELINK_TOKEN"
                } else {
                    "wrong token"
                };
                if shared.notices.first(peer, text) {
                    warn!(%peer, client = %hello.name, "refused: {text}{}", Notices::NOTE);
                } else {
                    debug!(%peer, client = %hello.name, "refused again: {text}");
                }
                refuse(&mut writer, GoodbyeCode::Unauthorized, text.into());
                return Err(ConnError::Refused(text.into()));
            }
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        // A stage that does not take the client within a second (stuck on a
        // frame, or closing down) would leave it streaming into nowhere:
        // turn it away as busy instead, and it retries.
        let join = |stage: &Sender<Joined>, name: &str| {
            let (tx, rx) = latest::channel();
            match stage.send_timeout(Joined { id, frames: rx }, Duration::from_secs(1)) {
                Ok(()) => Ok(tx),
                Err(_) => Err(format!(
                    "server busy: its {name} stage is not taking new clients; retry later"
                )),
            }
        };
        let joined = join(&shared.to_processing, "processing").and_then(|p| {
            let d = shared
                .to_display
                .as_ref()
                .map(|d| join(d, "display"))
                .transpose()?;
            Ok((p, d))
        });
        let (to_processing, to_display) = match joined {
            Ok(j) => j,
            Err(text) => {
                if shared.notices.first(peer, &text) {
                    warn!(%peer, client = %hello.name, "refused: {text}{}", Notices::NOTE);
                } else {
                    debug!(%peer, client = %hello.name, "refused again: {text}");
                }
                refuse(&mut writer, GoodbyeCode::ServerFull, text.clone());
                return Err(ConnError::Refused(text));
            }
        };
        let live = Arc::new(Live {
            name: hello.name.as_str().into(),
            peer,
            stats: Mutex::new(Running::default()),
            superseded: to_processing.superseded_counter(),
            superseded_reported: AtomicU64::new(0),
            last_age_us: AtomicU64::new(0),
            recent: Mutex::default(),
            last_result: Mutex::default(),
            last_size: std::sync::atomic::AtomicU32::new(0),
        });
        shared.registry.add(id, live.clone());
        let wants_results = hello.capabilities & wire::CAP_RESULTS != 0;
        let (results, results_rx) = if wants_results {
            // Unbounded, but never longer than RESULTS_OWED: see `owed`.
            let (tx, rx) = crossbeam_channel::unbounded();
            let (owed_tx, owed_rx) = crossbeam_channel::bounded(RESULTS_OWED);
            (Some((tx, owed_tx)), Some((rx, owed_rx)))
        } else {
            (None, None)
        };
        // Authenticated (or no token needed): frames may come now.
        reader.set_limits(shared.limits);
        let mut conn = Connection {
            id,
            shared,
            reader,
            writer: Arc::new(Mutex::new(writer)),
            live,
            to_processing,
            to_display,
            results,
            results_rx,
            outstanding: VecDeque::new(),
            last_frame_id: None,
            link_check: gate::LinkCheck::default(),
            next_ticket: 0,
        };
        let welcome = Message::Welcome(Welcome {
            capabilities: if wants_results { wire::CAP_RESULTS } else { 0 },
            max_age_us: wire::micros_u32(shared.config.max_age),
            max_frame_bytes: shared.config.max_frame_bytes,
            window: shared.config.window,
            proof: shared
                .config
                .token
                .as_ref()
                .map(|t| t.welcome_proof(&hello.client_nonce, &server_nonce))
                .unwrap_or_default(),
        });
        let tickets: Vec<Message> = (0..shared.config.window)
            .map(|_| Message::Ticket(conn.issue_ticket()))
            .collect();
        let mut out: Vec<&Message> = vec![&welcome];
        out.extend(tickets.iter());
        if let Err(e) = conn.writer.lock().send(false, &out) {
            shared.registry.remove(id);
            return Err(e.into());
        }
        info!(
            capabilities = hello.capabilities,
            "connected: {} (peer {peer})", hello.name
        );
        Ok(conn)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn foreign(bytes: &[u8]) -> ConnError {
        ConnError::Protocol(wire::check_preface(bytes).unwrap_err())
    }

    #[test]
    fn a_peer_refused_again_and_again_with_changing_text_is_one_notice() {
        let notices = Notices::default();
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let (a, b) = (foreign(&[1, 2, 3, 4, 5, 6]), foreign(&[9, 8, 7, 6, 5, 4]));
        assert_ne!(a.to_string(), b.to_string(), "the texts differ");
        assert_eq!(failure_kind(&a), failure_kind(&b));
        assert!(notices.first(peer, &failure_kind(&a)));
        assert!(
            !notices.first(peer, &failure_kind(&b)),
            "logged once a minute"
        );
        // Another kind from the same address is its own notice.
        let http = foreign(b"GET / HTTP/1.1\r\n");
        assert!(notices.first(peer, &failure_kind(&http)));
        // Thousands of refusals keep one entry per address and kind.
        for i in 0..10_000u32 {
            notices.first(peer, &failure_kind(&foreign(&i.to_be_bytes())));
        }
        assert_eq!(notices.logged.lock().len(), 2);
    }
}

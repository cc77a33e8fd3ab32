//! The server: accepts clients, runs the ticket/frame/verdict exchange with
//! each on its own thread, judges every frame's age with the [`Gate`], and
//! hands each client's newest fresh frame to the display/processing thread.
//!
//! Errors in one connection are logged in that connection's thread and end
//! only that connection; the accept loop and the other clients go on.

use crate::connection::{self, ConnError, Reader, Writer};
use crate::gate::{self, Gate};
use crate::jpeg;
use crate::latest::{self, LatestReceiver, LatestSender};
use crate::protocol::{
    self, Encoding, GoodbyeCode, Limits, Message, Outcome, Reason, Ticket, Verdict, Welcome,
};
use crate::shutdown::Shutdown;
use crate::sink::{ArrivedFrame, ClientId, FrameView, Sink};
use crate::stats::{Figures, Running, Tally};
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Select, Sender};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span, warn};

/// Most connections being turned away (server full) at once; more are just closed.
const MAX_REFUSING: usize = 16;
/// Most distinct client names kept in the summary; later ones are folded into one entry.
const MAX_NAMED_CLIENTS: usize = 256;

/// Everything the server needs to run, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Frames older than this on arrival are dropped as stale.
    pub max_age: Duration,
    /// Largest frame payload accepted.
    pub max_frame_bytes: u32,
    /// Most clients connected at once.
    pub max_clients: usize,
    /// Tickets kept outstanding per client (1 = stop-and-wait).
    pub window: u16,
    /// How long a peer may stall in a handshake or mid-message.
    pub io_timeout: Duration,
    /// How often to print a status line (None: never).
    pub stats_interval: Option<Duration>,
    /// Where to write the summary as JSON at exit.
    pub summary_json: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_age: Duration::from_millis(80),
            max_frame_bytes: 16 * 1024 * 1024,
            max_clients: 64,
            window: 2,
            io_timeout: Duration::from_secs(10),
            stats_interval: Some(Duration::from_secs(1)),
            summary_json: None,
        }
    }
}

/// The end-of-run figures: totals over all clients, then one entry per client name.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSummary {
    #[serde(flatten)]
    pub total: Figures,
    /// Frames the processor handled (the rest were superseded before it got to them).
    pub frames_processed: u64,
    pub duration_s: f64,
    pub clients: Vec<ClientSummary>,
}

/// One client's figures, merged over all its connections with the same name.
#[derive(Debug, Clone, Serialize)]
pub struct ClientSummary {
    pub name: String,
    pub connections: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// A connected client, as the status reporter and the summary see it.
struct Live {
    name: Arc<str>,
    stats: Mutex<Running>,
    /// Frames replaced in the hand-off before the display/processing thread took them.
    superseded: Arc<AtomicU64>,
    superseded_reported: AtomicU64,
}

/// All clients, connected and gone.
#[derive(Default)]
struct Registry {
    live: Mutex<HashMap<ClientId, Arc<Live>>>,
    /// Per client name: figures of finished connections, and how many.
    gone: Mutex<BTreeMap<Arc<str>, (Tally, u64)>>,
}

impl Registry {
    fn add(&self, id: ClientId, live: Arc<Live>) {
        self.live.lock().unwrap().insert(id, live);
    }

    fn remove(&self, id: ClientId) {
        let Some(live) = self.live.lock().unwrap().remove(&id) else {
            return;
        };
        let mut total = live.stats.lock().unwrap().total.clone();
        total.counts.superseded = live.superseded.load(Ordering::Relaxed);
        let mut gone = self.gone.lock().unwrap();
        let key = if gone.len() < MAX_NAMED_CLIENTS || gone.contains_key(&live.name) {
            live.name.clone()
        } else {
            Arc::from("(other clients)")
        };
        let entry = gone.entry(key).or_insert_with(|| (Tally::default(), 0));
        entry.0.merge(&total);
        entry.1 += 1;
    }

    /// One status line over all connected clients, or None when idle.
    fn status_line(&self) -> Option<String> {
        let live = self.live.lock().unwrap();
        if live.is_empty() {
            return None;
        }
        let mut sum = Tally::default();
        let mut elapsed = Duration::ZERO;
        for l in live.values() {
            let (t, e) = l.stats.lock().unwrap().take_interval();
            sum.merge(&t);
            let now = l.superseded.load(Ordering::Relaxed);
            sum.counts.superseded += now - l.superseded_reported.swap(now, Ordering::Relaxed);
            elapsed = elapsed.max(e);
        }
        Some(format!(
            "{} client{} | {}",
            live.len(),
            if live.len() == 1 { "" } else { "s" },
            sum.status_line(elapsed)
        ))
    }

    fn summary(&self, processed: u64, duration: Duration) -> ServerSummary {
        let mut per_name: BTreeMap<Arc<str>, (Tally, u64)> = self.gone.lock().unwrap().clone();
        for l in self.live.lock().unwrap().values() {
            let mut t = l.stats.lock().unwrap().total.clone();
            t.counts.superseded = l.superseded.load(Ordering::Relaxed);
            let e = per_name
                .entry(l.name.clone())
                .or_insert_with(|| (Tally::default(), 0));
            e.0.merge(&t);
            e.1 += 1;
        }
        let mut total = Tally::default();
        let clients = per_name
            .iter()
            .map(|(name, (t, n))| {
                total.merge(t);
                ClientSummary {
                    name: name.to_string(),
                    connections: *n,
                    figures: t.figures(false),
                }
            })
            .collect();
        ServerSummary {
            total: total.figures(false),
            frames_processed: processed,
            duration_s: duration.as_secs_f64(),
            clients,
        }
    }
}

/// A new client for the display/processing thread: its newest-frame receiver.
struct Joined {
    id: ClientId,
    frames: LatestReceiver<ArrivedFrame>,
}

/// What every connection thread shares.
struct Shared {
    config: ServerConfig,
    gate: Gate,
    limits: Limits,
    /// The server's clock: tickets carry microseconds since this instant.
    epoch: Instant,
    registry: Registry,
    joined: Sender<Joined>,
    active: AtomicUsize,
    refusing: AtomicUsize,
    next_id: AtomicU64,
    shutdown: Shutdown,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// Runs the server on `listener` until `shutdown` is triggered (or a sink
/// asks to stop, e.g. the window was closed), then returns the summary.
///
/// The display/processing thread is the calling thread (windows want the
/// thread that made them); the accept loop and every connection run on
/// scoped threads, all finished before this returns.
pub fn run(
    listener: TcpListener,
    config: ServerConfig,
    mut sinks: Vec<Box<dyn Sink>>,
    shutdown: Shutdown,
) -> Result<ServerSummary> {
    let started = Instant::now();
    listener
        .set_nonblocking(true)
        .context("cannot make the listening socket non-blocking")?;
    let (joined_tx, joined_rx) = crossbeam_channel::bounded(config.max_clients.max(1));
    let shared = Shared {
        gate: Gate::new(config.max_age),
        limits: Limits {
            max_frame_bytes: config.max_frame_bytes,
            max_result_bytes: 0,
        },
        epoch: Instant::now(),
        registry: Registry::default(),
        joined: joined_tx,
        active: AtomicUsize::new(0),
        refusing: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        shutdown: shutdown.clone(),
        config,
    };
    let shared = &shared;
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("accept".into())
            .spawn_scoped(s, || accept_loop(s, &listener, shared))
            .expect("spawn the accept thread");
        if let Some(every) = shared.config.stats_interval {
            std::thread::Builder::new()
                .name("stats".into())
                .spawn_scoped(s, move || {
                    while !shared.shutdown.wait_timeout(every) {
                        if let Some(line) = shared.registry.status_line() {
                            println!("{line}");
                        }
                    }
                })
                .expect("spawn the stats thread");
        }
        pipeline(&joined_rx, &mut sinks, &shared.shutdown);
        shared.shutdown.trigger();
    });
    let processed = sinks.iter().filter_map(|s| s.processed()).sum();
    let summary = shared.registry.summary(processed, started.elapsed());
    if let Some(path) = &shared.config.summary_json {
        write_json(path, &summary)?;
    }
    Ok(summary)
}

/// Writes `value` as one JSON object to `path`.
pub fn write_json(path: &std::path::Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the summary to {}", path.display()))
}

/// Accepts connections until shutdown. Polls a non-blocking listener, so a
/// shutdown is seen within 25 ms.
fn accept_loop<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    listener: &'s TcpListener,
    shared: &'s Shared,
) {
    while !shared.shutdown.is_triggered() {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = stream
                    .set_nonblocking(false)
                    .and_then(|_| connection::configure(&stream, shared.config.io_timeout))
                {
                    warn!(%peer, "cannot set up the connection: {e}");
                    continue;
                }
                if shared.active.load(Ordering::SeqCst) >= shared.config.max_clients {
                    refuse_full(s, stream, peer, shared);
                    continue;
                }
                shared.active.fetch_add(1, Ordering::SeqCst);
                let spawned = std::thread::Builder::new()
                    .name(format!("conn {peer}"))
                    .spawn_scoped(s, move || {
                        serve(stream, peer, shared);
                        shared.active.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                    warn!(%peer, "cannot start a thread for the connection: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                shared.shutdown.wait_timeout(Duration::from_millis(25));
            }
            Err(e) => {
                // Out of file descriptors and the like: say so, back off, go on.
                warn!("accept failed: {e}");
                shared.shutdown.wait_timeout(Duration::from_millis(100));
            }
        }
    }
}

/// Tells a client beyond `--max-clients` why it is turned away, on a short
/// thread (at most [`MAX_REFUSING`] at once) that reads the client's hello
/// before closing, so the goodbye is not lost to a reset.
fn refuse_full<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    stream: TcpStream,
    peer: SocketAddr,
    shared: &'s Shared,
) {
    warn!(%peer, max_clients = shared.config.max_clients, "refused: server full");
    if shared.refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
        shared.refusing.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let spawned = std::thread::Builder::new()
        .name(format!("refuse {peer}"))
        .spawn_scoped(s, move || {
            let text = format!(
                "server full: {} clients are connected (--max-clients)",
                shared.config.max_clients
            );
            let mut reader = match stream.try_clone() {
                Ok(r) => Reader::new(r, shared.limits),
                Err(_) => return,
            };
            let mut writer = Writer::new(stream);
            if writer.goodbye(true, GoodbyeCode::ServerFull, text).is_ok() {
                // Drain until the client closes (it reads the goodbye, then closes), briefly.
                let deadline = Instant::now() + Duration::from_secs(2);
                let _ = reader.read_preface(deadline, &shared.shutdown);
                while Instant::now() < deadline {
                    match reader.read_message(
                        Some(Duration::from_secs(2)),
                        Duration::from_secs(2),
                        &shared.shutdown,
                    ) {
                        Ok(Some(_)) => continue,
                        _ => break,
                    }
                }
            }
            shared.refusing.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        shared.refusing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection, start to end. Logs how it ended; never panics on input.
fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let span = info_span!("client", %peer, name = tracing::field::Empty);
    let _enter = span.enter();
    debug!("connected");
    match Connection::start(stream, peer, shared, &span) {
        Ok(mut conn) => {
            let end = conn.stream_frames();
            shared.registry.remove(conn.id);
            match end {
                Ok(why) => info!("disconnected: {why}"),
                Err(e) => warn!("disconnected: {e}"),
            }
        }
        Err(e) => warn!("rejected: {e}"),
    }
}

/// A connection after a successful handshake.
struct Connection<'a> {
    id: ClientId,
    shared: &'a Shared,
    reader: Reader,
    writer: Writer,
    live: Arc<Live>,
    frames: LatestSender<ArrivedFrame>,
    /// Tickets handed out and not yet answered, oldest first.
    outstanding: VecDeque<Ticket>,
    next_ticket: u32,
}

impl<'a> Connection<'a> {
    /// Reads the client's preface and HELLO, answers WELCOME and the first
    /// tickets. A wrong peer or version is told why (GOODBYE) and closed.
    fn start(
        stream: TcpStream,
        peer: SocketAddr,
        shared: &'a Shared,
        span: &tracing::Span,
    ) -> Result<Self, ConnError> {
        let mut reader = Reader::new(stream.try_clone()?, shared.limits);
        let mut writer = Writer::new(stream);
        let io = shared.config.io_timeout;
        let refuse = |writer: &mut Writer, code, text: String| {
            let _ = writer.goodbye(true, code, text);
        };
        let version = match reader.read_preface(Instant::now() + io, &shared.shutdown) {
            Ok(v) => v,
            Err(e) => {
                if let ConnError::Protocol(p) = &e {
                    refuse(&mut writer, GoodbyeCode::ProtocolError, p.to_string());
                }
                return Err(e);
            }
        };
        if version != protocol::VERSION {
            let text = format!("this server speaks framelink protocol version {}, the client sent version {version}", protocol::VERSION);
            refuse(&mut writer, GoodbyeCode::UnsupportedVersion, text.clone());
            return Err(ConnError::Protocol(protocol::Error::Malformed {
                kind: "preface",
                reason: text,
            }));
        }
        let hello = match reader.read_message(Some(io), io, &shared.shutdown) {
            Ok(Some(Message::Hello(h))) => h,
            Ok(Some(other)) => {
                let text = format!("expected HELLO after the preface, got {}", other.name());
                refuse(&mut writer, GoodbyeCode::ProtocolError, text.clone());
                return Err(ConnError::Protocol(protocol::Error::Malformed {
                    kind: "handshake",
                    reason: text,
                }));
            }
            Ok(None) => return Err(ConnError::Closed { mid_message: false }),
            Err(e) => {
                refuse_for(&mut writer, &e);
                return Err(e);
            }
        };
        span.record("name", hello.name.as_str());
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (frames, rx) = latest::channel();
        let live = Arc::new(Live {
            name: hello.name.as_str().into(),
            stats: Mutex::new(Running::default()),
            superseded: frames.superseded_counter(),
            superseded_reported: AtomicU64::new(0),
        });
        shared.registry.add(id, live.clone());
        // The thread is closing down if this fails; the connection then ends at its first read.
        let _ = shared
            .joined
            .send_timeout(Joined { id, frames: rx }, Duration::from_secs(1));
        let mut conn = Connection {
            id,
            shared,
            reader,
            writer,
            live,
            frames,
            outstanding: VecDeque::new(),
            next_ticket: 0,
        };
        let welcome = Message::Welcome(Welcome {
            capabilities: 0,
            max_age_us: gate::micros_u32(shared.config.max_age),
            max_frame_bytes: shared.config.max_frame_bytes,
            window: shared.config.window,
        });
        let tickets: Vec<Message> = (0..shared.config.window)
            .map(|_| Message::Ticket(conn.issue_ticket()))
            .collect();
        let mut out: Vec<&Message> = vec![&welcome];
        out.extend(tickets.iter());
        if let Err(e) = conn.writer.send(true, &out) {
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
                    let _ = self.writer.goodbye(
                        false,
                        GoodbyeCode::ShuttingDown,
                        "server is shutting down",
                    );
                    return Ok("server shutting down".into());
                }
                Err(e) => {
                    refuse_for(&mut self.writer, &e);
                    return Err(e);
                }
            };
            match msg {
                Message::Frame(frame) => {
                    let arrived = Instant::now();
                    let verdict = self.judge(frame, arrived)?;
                    let ticket = Message::Ticket(self.issue_ticket());
                    self.writer
                        .send(false, &[&Message::Verdict(verdict), &ticket])?;
                }
                Message::Goodbye(g) => {
                    return Ok(if g.text.is_empty() {
                        format!("client said goodbye ({:?})", g.code)
                    } else {
                        format!("client said goodbye: {}", g.text)
                    });
                }
                other => {
                    let e = protocol::Error::Malformed {
                        kind: "stream",
                        reason: format!(
                            "a client may not send {} after the handshake",
                            other.name()
                        ),
                    };
                    let e = ConnError::Protocol(e);
                    refuse_for(&mut self.writer, &e);
                    return Err(e);
                }
            }
        }
    }

    /// Checks one frame, measures its age and decides its fate; hands an
    /// accepted frame on. A frame echoing a ticket we did not issue is a
    /// protocol error (the age could not be trusted).
    fn judge(&mut self, frame: protocol::Frame, arrived: Instant) -> Result<Verdict, ConnError> {
        let h = frame.header;
        let Some(pos) = self.outstanding.iter().position(|t| *t == frame.ticket) else {
            let e = protocol::Error::Malformed {
                kind: "FRAME",
                reason: format!(
                    "echoes ticket {} ({} us) that is not outstanding",
                    frame.ticket.id, frame.ticket.issued_us
                ),
            };
            let e = ConnError::Protocol(e);
            refuse_for(&mut self.writer, &e);
            return Err(e);
        };
        self.outstanding.remove(pos);
        let m = gate::measure(
            Duration::from_micros(frame.ticket.issued_us),
            arrived - self.shared.epoch,
            Duration::from_micros(h.ticket_held_us as u64),
            Duration::from_micros(h.capture_to_send_us as u64),
        );
        let reason = if h.encoding != Encoding::Jpeg {
            Reason::UnsupportedEncoding
        } else if h.width == 0 || h.height == 0 {
            Reason::BadDimensions
        } else if !jpeg::is_whole(&frame.payload) {
            Reason::NotJpeg
        } else {
            Reason::None
        };
        let outcome = if reason == Reason::None {
            self.shared.gate.judge(&m)
        } else {
            Outcome::Rejected
        };
        {
            let mut stats = self.live.stats.lock().unwrap();
            stats.record_sent(frame.payload.len());
            stats.record_verdict(outcome, m.age, m.transit, arrived);
        }
        match outcome {
            Outcome::Accepted => {
                self.frames.send(ArrivedFrame {
                    client: self.id,
                    client_name: self.live.name.clone(),
                    frame_id: h.frame_id,
                    width: h.width,
                    height: h.height,
                    jpeg: frame.payload,
                    age: m.age,
                    arrived,
                });
            }
            Outcome::DroppedStale => debug!(
                frame = h.frame_id,
                age_ms = m.age.as_secs_f64() * 1e3,
                "dropped stale frame"
            ),
            Outcome::Rejected => warn!(frame = h.frame_id, "rejected frame: {}", reason.describe()),
        }
        Ok(Verdict {
            frame_id: h.frame_id,
            ticket_id: frame.ticket.id,
            outcome,
            reason,
            age_us: gate::micros_u32(m.age),
            transit_us: gate::micros_u32(m.transit),
            result_kind: 0,
            result: Default::default(),
        })
    }
}

/// Tells the peer why its connection is being closed, where there is a code for it.
fn refuse_for(writer: &mut Writer, e: &ConnError) {
    let code = match e {
        ConnError::Protocol(protocol::Error::TooLarge { .. }) => GoodbyeCode::TooLarge,
        ConnError::Protocol(_) => GoodbyeCode::ProtocolError,
        ConnError::TimedOut(..) => GoodbyeCode::Timeout,
        ConnError::Shutdown => GoodbyeCode::ShuttingDown,
        ConnError::Io(_) | ConnError::Closed { .. } => return,
    };
    let _ = writer.goodbye(false, code, e.to_string());
}

/// The display/processing thread: waits on every client's newest-frame
/// receiver at once, gives each frame it takes to every sink, and ticks the
/// sinks. Unblocked by a frame, a client joining or leaving, or the tick;
/// ends on shutdown or when a sink asks to stop.
fn pipeline(joined: &Receiver<Joined>, sinks: &mut [Box<dyn Sink>], shutdown: &Shutdown) {
    let tick = if sinks.iter().any(|s| s.name() == "display") {
        crate::display::DISPLAY_TICK
    } else {
        connection::TICK
    };
    let mut clients: Vec<Joined> = Vec::new();
    let mut failures: HashMap<(ClientId, usize), u64> = HashMap::new();
    let mut last_tick = Instant::now();
    enum Event {
        Joined(Joined),
        Frame(ArrivedFrame),
        Left(usize),
        Idle,
    }
    while !shutdown.is_triggered() {
        let event = {
            let mut sel = Select::new();
            sel.recv(joined);
            for c in &clients {
                sel.recv(&c.frames);
            }
            match sel.select_timeout(tick) {
                Ok(op) if op.index() == 0 => match op.recv(joined) {
                    Ok(j) => Event::Joined(j),
                    Err(_) => break, // every connection sender is gone: the server is ending
                },
                Ok(op) => {
                    let i = op.index() - 1;
                    match op.recv(&clients[i].frames) {
                        Ok(frame) => Event::Frame(frame),
                        Err(_) => Event::Left(i),
                    }
                }
                Err(_) => Event::Idle,
            }
        };
        match event {
            Event::Joined(j) => clients.push(j),
            Event::Frame(frame) => {
                let client = frame.client;
                let mut view = FrameView::new(frame);
                for (k, sink) in sinks.iter_mut().enumerate() {
                    if let Err(e) = sink.frame(&mut view) {
                        let n = failures.entry((client, k)).or_default();
                        *n += 1;
                        if n.is_power_of_two() {
                            warn!(
                                sink = sink.name(),
                                client = &*view.frame.client_name,
                                failures = *n,
                                "frame {}: {e:#}",
                                view.frame.frame_id
                            );
                        }
                    }
                }
            }
            Event::Left(i) => {
                let gone = clients.remove(i);
                failures.retain(|(c, _), _| *c != gone.id);
                for sink in sinks.iter_mut() {
                    sink.client_left(gone.id);
                }
            }
            Event::Idle => {}
        }
        if last_tick.elapsed() >= tick {
            last_tick = Instant::now();
            // Every sink ticks, even after one asked to stop.
            let mut go = true;
            for sink in sinks.iter_mut() {
                go &= sink.tick();
            }
            if !go {
                info!("window closed: stopping");
                break;
            }
        }
    }
}

/// The addresses clients can use to reach a server bound to `local`: every
/// interface address when bound to the unspecified address, else `local`.
pub fn advertised_addresses(local: SocketAddr) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let mut out: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| ip.is_ipv4() == local.is_ipv4())
        .filter(
            |ip| !matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80),
        )
        .map(|ip| SocketAddr::new(ip, local.port()))
        .collect();
    out.sort_by_key(|a| (a.ip().is_loopback(), *a));
    out.dedup();
    if out.is_empty() {
        out.push(local);
    }
    out
}

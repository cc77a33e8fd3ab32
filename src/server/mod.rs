//! The server: accepts clients, runs the ticket/frame/verdict exchange with
//! each on its own thread, judges every frame's age with the [`Gate`], and
//! hands each client's newest fresh frame to the recorder, the live view, the
//! display thread and the processing thread, whose results go back to the client.
//!
//! Errors in one connection are logged in that connection's thread and end
//! only that connection; the accept loop and the other clients go on.

pub mod display;
pub mod gate;
pub mod live_view;
pub mod process;
pub mod record;
pub mod sink;

use crate::latest::{self, LatestReceiver, LatestSender};
use crate::media::jpeg;
use crate::server::sink::{ArrivedFrame, ClientId, FrameView, Sink};
use crate::shutdown::Shutdown;
use crate::stats::{Figures, Percentiles, Running, Tally};
use crate::wire::auth::{self, Token};
use crate::wire::connection::{self, ConnError, Reader, Writer};
use crate::wire::stream::Stream;
use crate::wire::tls;
use crate::wire::{
    self, Challenge, Encoding, GoodbyeCode, Limits, Message, Outcome, ProcessResult, Reason,
    ResultKind, ResultStatus, Ticket, Verdict, Welcome,
};
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Select, Sender};
use gate::Gate;
use live_view::{LiveFrames, StatsSource};
use parking_lot::Mutex;
use process::{ProcessingCounts, ProcessingSink, Processor, ProcessorConfig};
use record::{RecordConfig, RecordSummary, Recorder};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, info_span, warn};

/// The default `--max-pixels`: 16 Mpx (4096 × 4096; 4K UHD fits twice).
pub const DEFAULT_MAX_PIXELS: u64 = 4096 * 4096;
/// Most connections being turned away (server full) at once; more are just closed.
const MAX_REFUSING: usize = 16;
/// Most distinct client names kept in the summary; later ones are folded into one entry.
const MAX_NAMED_CLIENTS: usize = 256;
/// Accepted frames of one client whose RESULT is not written yet, at most.
/// At the cap the connection stops taking frames (no verdict, no ticket)
/// until the results writer catches up, and ends after `--io-timeout`: so
/// every accepted frame gets its RESULT, and the queue stays bounded.
const RESULTS_OWED: usize = 64;
/// Longest result text kept for the live view's tiles.
const SHOWN_RESULT_CHARS: usize = 160;

/// Everything the server needs to run, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Frames older than this on arrival are dropped as stale.
    pub max_age: Duration,
    /// Largest frame payload accepted.
    pub max_frame_bytes: u32,
    /// Largest width × height accepted (what a decoder will allocate for).
    pub max_pixels: u64,
    /// Most clients connected at once.
    pub max_clients: usize,
    /// Tickets kept outstanding per client (1 = stop-and-wait).
    pub window: u16,
    /// The deadline for a whole handshake (from accepting the connection to
    /// the end of HELLO) and for each whole message once it has begun.
    pub io_timeout: Duration,
    /// How often to print a status line (None: never).
    pub stats_interval: Option<Duration>,
    /// Where to write the summary as JSON at exit.
    pub summary_json: Option<PathBuf>,
    /// The built-in processor to run (unless one is given to [`Server::processor`]).
    pub processor: ProcessorConfig,
    /// Where to record accepted frames (None: no recording).
    pub record: Option<RecordConfig>,
    /// The shared secret clients and live view requests must prove (None: anyone may).
    pub token: Option<Token>,
    /// TLS with this certificate (None: plain TCP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_age: Duration::from_millis(80),
            max_frame_bytes: 16 * 1024 * 1024,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_clients: 64,
            window: 2,
            io_timeout: Duration::from_secs(10),
            stats_interval: Some(Duration::from_secs(1)),
            summary_json: None,
            processor: ProcessorConfig::default(),
            record: None,
            token: None,
            tls: None,
        }
    }
}

/// The end-of-run figures: totals over all clients, then one entry per client name.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSummary {
    #[serde(flatten)]
    pub total: Figures,
    /// The processor's name.
    pub processor: String,
    /// Frames the processor handled (the rest were superseded before it got to them).
    pub frames_processed: u64,
    /// Frames the processor failed on.
    pub frames_process_failed: u64,
    pub duration_s: f64,
    pub clients: Vec<ClientSummary>,
    /// The recording's figures, when recording.
    pub recording: Option<RecordSummary>,
}

/// One client's figures, merged over all its connections with the same name.
#[derive(Debug, Clone, Serialize)]
pub struct ClientSummary {
    pub name: String,
    pub connections: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// A connected client, as the status reporter, the live view and the summary see it.
struct Live {
    name: Arc<str>,
    peer: SocketAddr,
    stats: Mutex<Running>,
    /// Frames replaced in the hand-off before the processing thread took them.
    superseded: Arc<AtomicU64>,
    superseded_reported: AtomicU64,
    /// Age of the newest accepted frame, in microseconds.
    last_age_us: AtomicU64,
    /// Arrival times of the accepted frames of the last second (for live fps).
    recent: Mutex<VecDeque<Instant>>,
    /// The newest result, shortened, for the live view.
    last_result: Mutex<Option<String>>,
}

impl Live {
    fn accepted(&self, age: Duration, at: Instant) {
        self.last_age_us
            .store(age.as_micros() as u64, Ordering::Relaxed);
        let mut r = self.recent.lock();
        r.push_back(at);
        trim_recent(&mut r, at);
    }

    /// Accepted frames over the last second.
    fn fps_now(&self) -> f64 {
        let mut r = self.recent.lock();
        trim_recent(&mut r, Instant::now());
        r.len() as f64
    }

    fn saw_result(&self, r: &ProcessResult) {
        let text = match (r.status, r.kind) {
            (ResultStatus::Skipped, _) => return,
            (ResultStatus::Processed, ResultKind::None) => return,
            (ResultStatus::Failed, _) => format!("failed: {}", String::from_utf8_lossy(&r.result)),
            (_, ResultKind::Jpeg) => format!("JPEG of {} bytes", r.result.len()),
            _ => String::from_utf8_lossy(&r.result).into_owned(),
        };
        *self.last_result.lock() = Some(text.chars().take(SHOWN_RESULT_CHARS).collect());
    }
}

fn trim_recent(r: &mut VecDeque<Instant>, now: Instant) {
    while r
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(1))
        || r.len() > 10_000
    {
        r.pop_front();
    }
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
        self.live.lock().insert(id, live);
    }

    fn remove(&self, id: ClientId) {
        let Some(live) = self.live.lock().remove(&id) else {
            return;
        };
        let mut total = live.stats.lock().total.clone();
        total.counts.superseded = live.superseded.load(Ordering::Relaxed);
        let mut gone = self.gone.lock();
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
        let live = self.live.lock();
        if live.is_empty() {
            return None;
        }
        let mut sum = Tally::default();
        let mut elapsed = Duration::ZERO;
        for l in live.values() {
            let (t, e) = l.stats.lock().take_interval();
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

    /// Every connected client's figures now, for `/stats.json` and `/metrics`.
    fn snapshot(&self) -> Vec<ClientNow> {
        let mut out: Vec<ClientNow> = self
            .live
            .lock()
            .iter()
            .map(|(id, l)| {
                let st = l.stats.lock();
                let c = st.total.counts;
                ClientNow {
                    id: *id,
                    name: l.name.to_string(),
                    peer: l.peer.to_string(),
                    fps_accepted: l.fps_now(),
                    last_age_ms: (c.accepted > 0)
                        .then(|| l.last_age_us.load(Ordering::Relaxed) as f64 / 1e3),
                    age_ms: st.total.age_ms(),
                    frames_received: c.sent,
                    frames_accepted: c.accepted,
                    frames_dropped_stale: c.dropped_stale,
                    frames_rejected: c.rejected,
                    frames_superseded: l.superseded.load(Ordering::Relaxed),
                    bytes: c.bytes,
                    last_result: l.last_result.lock().clone(),
                }
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    fn summary(&self, duration: Duration) -> ServerSummary {
        let mut per_name: BTreeMap<Arc<str>, (Tally, u64)> = self.gone.lock().clone();
        for l in self.live.lock().values() {
            let mut t = l.stats.lock().total.clone();
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
            processor: String::new(),
            frames_processed: 0,
            frames_process_failed: 0,
            duration_s: duration.as_secs_f64(),
            clients,
            recording: None,
        }
    }
}

/// One connected client in `/stats.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ClientNow {
    /// The connection's number: `/stream/<id>.mjpg` shows its video.
    pub id: ClientId,
    pub name: String,
    pub peer: String,
    /// Accepted frames over the last second.
    pub fps_accepted: f64,
    /// Age of the newest accepted frame.
    pub last_age_ms: Option<f64>,
    /// Age of the accepted and stale frames of this connection.
    pub age_ms: Percentiles,
    pub frames_received: u64,
    pub frames_accepted: u64,
    pub frames_dropped_stale: u64,
    pub frames_rejected: u64,
    pub frames_superseded: u64,
    pub bytes: u64,
    /// The newest processing result, shortened.
    pub last_result: Option<String>,
}

/// A new client for the display or processing thread: its newest-frame receiver.
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
    /// New clients for the processing thread.
    to_processing: Sender<Joined>,
    /// New clients for the display thread (None: no display sinks).
    to_display: Option<Sender<Joined>>,
    processor_name: String,
    processing: Arc<ProcessingCounts>,
    recorder: Option<Recorder>,
    /// Newest frames for the live view (None: no `--http`).
    live_frames: Option<LiveFrames>,
    active: AtomicUsize,
    refusing: AtomicUsize,
    next_id: AtomicU64,
    shutdown: Shutdown,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn summary(&self) -> ServerSummary {
        let mut summary = self.registry.summary(self.epoch.elapsed());
        summary.processor = self.processor_name.clone();
        summary.frames_processed = self.processing.processed.load(Ordering::Relaxed);
        summary.frames_process_failed = self.processing.failed.load(Ordering::Relaxed);
        summary.recording = self.recorder.as_ref().map(Recorder::summary);
        summary
    }
}

impl StatsSource for Shared {
    fn stats_json(&self) -> serde_json::Value {
        serde_json::json!({
            "uptime_s": self.epoch.elapsed().as_secs_f64(),
            "max_age_ms": self.config.max_age.as_secs_f64() * 1e3,
            "processor": self.processor_name,
            "frames_processed": self.processing.processed.load(Ordering::Relaxed),
            "frames_process_failed": self.processing.failed.load(Ordering::Relaxed),
            "viewers": self.live_frames.as_ref().map_or(0, |l| l.viewers.load(Ordering::Relaxed)),
            "recording": self.recorder.as_ref().map(Recorder::summary),
            "clients": self.registry.snapshot(),
        })
    }

    fn metrics(&self) -> String {
        let clients = self.registry.snapshot();
        let mut m = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(
                m,
                "# HELP framelink_{name} {help}\n# TYPE framelink_{name} {kind}"
            );
            for (labels, v) in rows {
                let _ = writeln!(m, "framelink_{name}{labels} {v}");
            }
        };
        let who =
            |c: &ClientNow| format!("client=\"{}\",id=\"{}\"", live_view::label(&c.name), c.id);
        family(
            "clients_connected",
            "gauge",
            "Clients connected now.",
            vec![(String::new(), clients.len() as f64)],
        );
        let mut frames = Vec::new();
        for c in &clients {
            for (outcome, n) in [
                ("accepted", c.frames_accepted),
                ("dropped_stale", c.frames_dropped_stale),
                ("rejected", c.frames_rejected),
                ("superseded", c.frames_superseded),
            ] {
                frames.push((format!("{{{},outcome=\"{outcome}\"}}", who(c)), n as f64));
            }
        }
        family(
            "frames_total",
            "counter",
            "Frames received from each connected client, by fate.",
            frames,
        );
        family(
            "received_bytes_total",
            "counter",
            "Frame payload bytes received from each connected client.",
            clients
                .iter()
                .map(|c| (format!("{{{}}}", who(c)), c.bytes as f64))
                .collect(),
        );
        family(
            "fps_accepted",
            "gauge",
            "Frames accepted from each client over the last second.",
            clients
                .iter()
                .map(|c| (format!("{{{}}}", who(c)), c.fps_accepted))
                .collect(),
        );
        let mut age = Vec::new();
        for c in &clients {
            for (q, v) in [("0.5", c.age_ms.p50), ("0.99", c.age_ms.p99)] {
                if let Some(v) = v {
                    age.push((format!("{{{},quantile=\"{q}\"}}", who(c)), v / 1e3));
                }
            }
        }
        family(
            "frame_age_seconds",
            "gauge",
            "Age of each client's frames on arrival, by quantile.",
            age,
        );
        family(
            "frames_processed_total",
            "counter",
            "Frames the processor handled.",
            vec![(
                String::new(),
                self.processing.processed.load(Ordering::Relaxed) as f64,
            )],
        );
        family(
            "frames_process_failed_total",
            "counter",
            "Frames the processor failed on.",
            vec![(
                String::new(),
                self.processing.failed.load(Ordering::Relaxed) as f64,
            )],
        );
        if let Some(l) = &self.live_frames {
            family(
                "viewers",
                "gauge",
                "Live view streams open now.",
                vec![(String::new(), l.viewers.load(Ordering::Relaxed) as f64)],
            );
        }
        if let Some(r) = &self.recorder {
            let s = r.summary();
            family(
                "recorded_frames_total",
                "counter",
                "Frames written to the recording.",
                vec![(String::new(), s.frames_recorded as f64)],
            );
            family(
                "recording_bytes",
                "gauge",
                "JPEG bytes in the recording directory.",
                vec![(String::new(), s.bytes_on_disk as f64)],
            );
            family(
                "recording_left_out_total",
                "counter",
                "Accepted frames left out of the recording.",
                vec![(String::new(), s.frames_left_out as f64)],
            );
        }
        m
    }
}

/// A server to run: the frame listener and config, plus what to do with
/// accepted frames.
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// use framelink::{server::{Server, ServerConfig}, shutdown::Shutdown};
/// let listener = std::net::TcpListener::bind("0.0.0.0:1998")?;
/// let summary = Server::new(listener, ServerConfig::default()).run(Shutdown::new())?;
/// # Ok(()) }
/// ```
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    processor: Option<Box<dyn Processor>>,
    sinks: Vec<Box<dyn Sink>>,
    live_view: Option<TcpListener>,
}

impl Server {
    pub fn new(listener: TcpListener, config: ServerConfig) -> Self {
        Server {
            listener,
            config,
            processor: None,
            sinks: Vec::new(),
            live_view: None,
        }
    }

    /// Runs `processor` instead of the one `config.processor` names.
    pub fn processor(mut self, processor: Box<dyn Processor>) -> Self {
        self.processor = Some(processor);
        self
    }

    /// Adds a sink on the display thread (the window, or a test's probe).
    pub fn sink(mut self, sink: Box<dyn Sink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Serves the live view (page, MJPEG, `/stats.json`, `/metrics`) on `listener`.
    pub fn live_view(mut self, listener: TcpListener) -> Self {
        self.live_view = Some(listener);
        self
    }

    /// Runs until `shutdown` is triggered (or a sink asks to stop, e.g. the
    /// window was closed), then returns the summary.
    ///
    /// The display thread is the calling thread (windows want the thread
    /// that made them); the processing thread, the accept loops, the
    /// recorder and every connection run on scoped threads, all finished
    /// before this returns. Fails before serving if the processor or the
    /// recording directory cannot be set up.
    pub fn run(self, shutdown: Shutdown) -> Result<ServerSummary> {
        let Server {
            listener,
            config,
            processor,
            mut sinks,
            live_view,
        } = self;
        listener
            .set_nonblocking(true)
            .context("cannot make the listening socket non-blocking")?;
        let processor = match processor {
            Some(p) => p,
            None => process::build(&config.processor)?,
        };
        let (recorder, record_writer) = match &config.record {
            Some(rc) => {
                let (r, w) = record::open(rc.clone())?;
                (Some(r), Some(w))
            }
            None => (None, None),
        };
        let (to_processing, processing_rx) = crossbeam_channel::bounded(config.max_clients.max(1));
        let (to_display, display_rx) = crossbeam_channel::bounded(config.max_clients.max(1));
        let shared = Shared {
            gate: Gate::new(config.max_age),
            limits: Limits {
                max_frame_bytes: config.max_frame_bytes,
                max_result_bytes: 0,
            },
            epoch: Instant::now(),
            registry: Registry::default(),
            to_processing,
            to_display: (!sinks.is_empty()).then_some(to_display),
            processor_name: processor.name().to_string(),
            processing: Arc::default(),
            recorder,
            live_frames: live_view.as_ref().map(|_| LiveFrames::default()),
            active: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            shutdown: shutdown.clone(),
            config,
        };
        let shared = &shared;
        let mut processing_sink = ProcessingSink::new(processor, shared.processing.clone());
        let mut display_sinks: Vec<&mut dyn Sink> = sinks
            .iter_mut()
            .map(|b| &mut **b as &mut dyn Sink)
            .collect();
        // The first internal failure (a thread's panic) that ended the run.
        let fatal: Mutex<Option<String>> = Mutex::new(None);
        let fatal = &fatal;
        std::thread::scope(|s| {
            let spawn = |name, f| spawn_named(s, name, f, fatal, &shared.shutdown);
            let started = (|| {
                spawn("accept", Box::new(|| accept_loop(s, &listener, shared)))?;
                spawn(
                    "process",
                    Box::new(|| {
                        pipeline(
                            &processing_rx,
                            &mut [&mut processing_sink],
                            &shared.shutdown,
                        )
                    }),
                )?;
                if let Some(w) = record_writer {
                    spawn("record", Box::new(move || w.run(&shared.shutdown)))?;
                }
                if let (Some(l), Some(frames)) = (&live_view, &shared.live_frames) {
                    let io = shared.config.io_timeout;
                    spawn(
                        "http",
                        Box::new(move || {
                            let token = shared.config.token.as_ref();
                            live_view::serve(s, l, frames, shared, token, io, &shared.shutdown)
                        }),
                    )?;
                }
                if let Some(every) = shared.config.stats_interval {
                    spawn(
                        "stats",
                        Box::new(move || {
                            while !shared.shutdown.wait_timeout(every) {
                                if let Some(line) = shared.registry.status_line() {
                                    if !crate::output::stdout_line(&line) {
                                        return;
                                    }
                                }
                            }
                        }),
                    )?;
                }
                anyhow::Ok(())
            })();
            if started.is_ok() {
                if display_sinks.is_empty() {
                    while !shared.shutdown.wait_timeout(Duration::from_secs(3600)) {}
                } else {
                    contain("display", fatal, &shared.shutdown, || {
                        pipeline(&display_rx, &mut display_sinks, &shared.shutdown)
                    });
                }
            }
            shared.shutdown.trigger();
            started
        })?;
        let summary = shared.summary();
        if let Some(path) = &shared.config.summary_json {
            crate::output::write_json(path, &summary)?;
        }
        if let Some(text) = fatal.lock().take() {
            anyhow::bail!("{text}");
        }
        Ok(summary)
    }
}

/// Starts a named scoped thread whose panic ends the run (see [`contain`]).
fn spawn_named<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    name: &'static str,
    f: Box<dyn FnOnce() + Send + 's>,
    fatal: &'s Mutex<Option<String>>,
    shutdown: &'s Shutdown,
) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(s, move || contain(name, fatal, shutdown, f))
        .map(|_| ())
        .with_context(|| format!("cannot start the {name} thread"))
}

/// Runs one of the server's own threads. A panic there is a bug that leaves
/// the server without a stage every client needs: it is logged, kept in
/// `fatal` and stops the server, which then writes its summary and fails
/// (a non-zero exit) instead of serving on half-dead.
fn contain(name: &str, fatal: &Mutex<Option<String>>, shutdown: &Shutdown, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let text = format!(
            "internal error: the {name} thread failed (a bug; please report it): {}",
            crate::logging::panic_text(&*panic)
        );
        tracing::error!("{text}");
        fatal.lock().get_or_insert(text);
        shutdown.trigger();
    }
}

/// Runs a server with the processor `config` names and no display: see [`Server`].
pub fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: Shutdown,
) -> Result<ServerSummary> {
    Server::new(listener, config).run(shutdown)
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
                let accepted = Instant::now();
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
                        // The slot is given back however the connection ends,
                        // a bug's panic included (it is logged, the server goes on).
                        let _slot = Slot(&shared.active);
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            serve(stream, peer, accepted, shared)
                        }));
                        if let Err(panic) = ran {
                            tracing::error!(
                                %peer,
                                "connection ended by an internal error (a bug; please report it): {}",
                                crate::logging::panic_text(&panic)
                            );
                        }
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

/// One taken `--max-clients` place, given back when dropped.
struct Slot<'a>(&'a AtomicUsize);

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
            let Ok((stream, _)) = wrap(stream, shared) else {
                shared.refusing.fetch_sub(1, Ordering::SeqCst);
                return;
            };
            let mut reader = match stream.try_clone() {
                Ok(r) => Reader::new(r, Limits::handshake()),
                Err(_) => {
                    shared.refusing.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            };
            let mut writer = Writer::new(stream);
            if writer.goodbye(true, GoodbyeCode::ServerFull, text).is_ok() {
                // Drain until the client closes (it reads the goodbye, then
                // closes): two seconds in all, however the bytes trickle.
                let deadline = Instant::now() + Duration::from_secs(2);
                if reader.read_preface(deadline, &shared.shutdown).is_ok() {
                    while let Ok(Some(_)) = reader.read_message_by(deadline, &shared.shutdown) {}
                }
            }
            shared.refusing.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        shared.refusing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection, start to end. Logs how it ended; never panics on input.
fn serve(stream: TcpStream, peer: SocketAddr, accepted: Instant, shared: &Shared) {
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
    let tls_failed = || {
        tls_error
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
        &span,
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
                Err(e) => warn!("disconnected: {e}"),
            }
        }
        Err(e) => warn!("rejected: {e}{}", tls_failed()),
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
                warn!(%peer, client = %hello.name, "refused: {text}");
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
                warn!(%peer, client = %hello.name, "refused: {text}");
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
            next_ticket: 0,
        };
        let welcome = Message::Welcome(Welcome {
            capabilities: if wants_results { wire::CAP_RESULTS } else { 0 },
            max_age_us: crate::wire::micros_u32(shared.config.max_age),
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
                    let arrived = Instant::now();
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
    /// [`RESULTS_OWED`] are, and ends the connection when the client has not
    /// read its results for `--io-timeout`.
    fn owe_result(&mut self) -> Result<(), ConnError> {
        let Some((_, owed)) = &self.results else {
            return Ok(());
        };
        let io = self.shared.config.io_timeout;
        if owed.send_timeout((), io).is_ok() {
            return Ok(());
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
            l.publish(self.id, &frame.jpeg);
        }
        if let Some(d) = &self.to_display {
            d.send(frame.clone());
        }
        if let Some(old) = self.to_processing.send(frame) {
            if let Some((results, _)) = &self.results {
                let _ = results.send(process::skipped(old.frame_id));
            }
        }
    }

    /// Checks one frame, measures its age and decides its fate; hands an
    /// accepted frame on. A frame echoing a ticket we did not issue is a
    /// protocol error (the age could not be trusted).
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
        let reason =
            check_frame(&h, &frame.payload, self.shared.config.max_pixels).unwrap_or_else(|| {
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
            age_us: crate::wire::micros_u32(m.age),
            transit_us: crate::wire::micros_u32(m.transit),
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

/// Why a frame's header and payload cannot be accepted, checked in this
/// order (protocol.md lists it): encoding, zero size, a whole JPEG, one
/// readable frame header, that header's size equal to the FRAME's, and the
/// size within `max_pixels`. None when the frame passes: nothing decodes a
/// frame before this, so the size a decoder allocates for is bounded here.
pub fn check_frame(h: &wire::FrameHeader, payload: &[u8], max_pixels: u64) -> Option<Reason> {
    if h.encoding != Encoding::Jpeg {
        return Some(Reason::UnsupportedEncoding);
    }
    if h.width == 0 || h.height == 0 {
        return Some(Reason::BadDimensions);
    }
    if !jpeg::is_whole(payload) {
        return Some(Reason::NotJpeg);
    }
    let Some(dims) = jpeg::dimensions(payload) else {
        return Some(Reason::BrokenJpeg);
    };
    if dims != (h.width, h.height) {
        return Some(Reason::BadDimensions);
    }
    if h.width as u64 * h.height as u64 > max_pixels {
        return Some(Reason::TooManyPixels);
    }
    None
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

/// The display thread and the processing thread: waits on every client's newest-frame
/// receiver at once, gives each frame it takes to every sink, and ticks the
/// sinks. Unblocked by a frame, a client joining or leaving, or the tick;
/// ends on shutdown or when a sink asks to stop.
fn pipeline(joined: &Receiver<Joined>, sinks: &mut [&mut dyn Sink], shutdown: &Shutdown) {
    let tick = if sinks.iter().any(|s| s.name() == "display") {
        crate::server::display::DISPLAY_TICK
    } else {
        crate::shutdown::TICK
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

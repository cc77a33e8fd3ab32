//! The server: accepts clients, runs the ticket/frame/verdict exchange with
//! each on its own thread, judges every frame's age with the [`Gate`], and
//! hands each client's newest fresh frame to the recorder, the live view, the
//! display thread and the processing thread, whose results go back to the client.
//!
//! This file holds the [`Server`] builder and its threads; `accept.rs` the
//! accept loop, `session.rs` one client's connection, `registry.rs` the
//! live figures, `stage/` the display and processing stages (one loop, a
//! kind each for sinks, a local processor, takers and a worker pool).
//! [`crate::gate`] judges ages, [`sink`] is what the display stage hands
//! frames to ([`display`] is one), [`crate::process`] the processors,
//! [`record`] the recording and [`live_view`] the HTTP view.
//!
//! Errors in one connection are logged in that connection's thread and end
//! only that connection; the accept loop and the other clients go on.

mod accept;
pub mod display;
mod registry;
mod session;
mod stage;

use accept::accept_loop;
pub use accept::advertised_addresses;
pub use registry::ClientNow;
use registry::Registry;
use stage::Joined;
pub mod live_view;
pub mod record;
pub mod sink;
pub mod source_state;

use crate::gate::Gate;
use crate::process::takers::Wants;
use crate::process::{ProcessingCounts, Processor, ProcessorConfig};
use crate::server::sink::Sink;
use crate::shutdown::Shutdown;
use crate::stats::Figures;
use crate::wire::auth::Token;
use crate::wire::Limits;
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use live_view::LiveFrames;
use parking_lot::Mutex;
use record::{RecordConfig, RecordSummary, Recorder};
use serde::Serialize;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

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
    /// Hand frames to a pool of workers through NATS instead of the
    /// processor (`--processor nats://…`).
    pub pool: Option<crate::nats::PoolConfig>,
    /// Where to record accepted frames (None: no recording).
    pub record: Option<RecordConfig>,
    /// The shared secret clients and live view requests must prove (None: anyone may).
    pub token: Option<Token>,
    /// TLS with this certificate (None: plain TCP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// HTTPS for the live view and the browser camera (`--tls-cert`, or
    /// `--self-signed` for it alone; None: plain HTTP).
    pub http_tls: Option<Arc<rustls::ServerConfig>>,
    /// The SHA-256 fingerprint of a `--self-signed` certificate, to show users.
    pub http_fingerprint: Option<String>,
    /// A frame's arrival is the kernel's receive stamp of its last bytes
    /// (plain TCP on Linux), not the instant the connection's thread read
    /// them. Off only to measure what it saves.
    pub kernel_arrival: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_age: Duration::from_millis(80),
            max_frame_bytes: 16 * 1024 * 1024,
            max_pixels: crate::media::DEFAULT_MAX_PIXELS,
            max_clients: 64,
            window: 2,
            io_timeout: Duration::from_secs(10),
            stats_interval: Some(Duration::from_secs(1)),
            summary_json: None,
            processor: ProcessorConfig::default(),
            pool: None,
            record: None,
            token: None,
            tls: None,
            http_tls: None,
            http_fingerprint: None,
            kernel_arrival: true,
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
    /// Frames not handed to the processor because they grew older than
    /// `max_age` in their slot (answered `expired`).
    pub frames_expired: u64,
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
    /// Whether the camera of its newest connection gives frames (None: not
    /// connected now).
    pub source_up: Option<bool>,
    /// Camera outages its connections reported.
    pub source_outages: u64,
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
    /// Refusals already logged, per address and reason.
    notices: session::Notices,
    /// Beaten by the accept loop; pings the service manager's watchdog.
    watchdog: crate::service::Watchdog,
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
        summary.frames_expired = self.processing.expired.load(Ordering::Relaxed);
        summary.recording = self.recorder.as_ref().map(Recorder::summary);
        summary
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
    handoff: Option<Wants>,
    sinks: Vec<Box<dyn Sink>>,
    live_view: Option<TcpListener>,
    asks: Option<Receiver<Sender<ServerSummary>>>,
}

/// Asks a running server for its summary so far (see [`Server::summary_now`]).
#[derive(Clone)]
pub struct SummaryNow {
    asks: Sender<Sender<ServerSummary>>,
}

impl SummaryNow {
    /// The summary as it stands now (the run's figures so far); None when
    /// the server is not running (yet, or any more). Blocks at most 1 s.
    pub fn now(&self) -> Option<ServerSummary> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.asks.try_send(tx).ok()?;
        rx.recv_timeout(Duration::from_secs(1)).ok()
    }
}

impl Server {
    pub fn new(listener: TcpListener, config: ServerConfig) -> Self {
        Server {
            listener,
            config,
            processor: None,
            handoff: None,
            sinks: Vec::new(),
            live_view: None,
            asks: None,
        }
    }

    /// Hands frames to takers of the [`Handoff`](crate::process::takers::Handoff)
    /// made with `wants` instead of to a processor (see [`crate::process::takers`]).
    pub fn handoff(mut self, wants: Wants) -> Self {
        self.handoff = Some(wants);
        self
    }

    /// A handle that reads the running server's figures from any thread.
    pub fn summary_now(&mut self) -> SummaryNow {
        let (tx, rx) = crossbeam_channel::bounded(16);
        self.asks = Some(rx);
        SummaryNow { asks: tx }
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
            handoff,
            mut sinks,
            live_view,
            asks,
        } = self;
        listener
            .set_nonblocking(true)
            .context("cannot make the listening socket non-blocking")?;
        // The processing thread runs the processor, or hands frames to
        // takers or to a worker pool.
        let counts: Arc<ProcessingCounts> = Arc::default();
        let (processing, processor_name) =
            stage::Processing::choose(handoff, processor, &config, &counts, &shutdown)?;
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
            processor_name,
            processing: counts,
            recorder,
            live_frames: live_view.as_ref().map(|_| LiveFrames::default()),
            active: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            notices: session::Notices::default(),
            watchdog: crate::service::Watchdog::default(),
            shutdown: shutdown.clone(),
            config,
        };
        let shared = &shared;
        let mut display_sinks: Vec<&mut dyn Sink> = sinks
            .iter_mut()
            .map(|b| &mut **b as &mut dyn Sink)
            .collect();
        // The first internal failure (a thread's panic) that ended the run.
        let fatal: Mutex<Option<String>> = Mutex::new(None);
        let fatal = &fatal;
        let site = shared.live_frames.as_ref().map(|frames| live_view::Site {
            frames,
            stats: shared,
            cameras: shared,
            token: shared.config.token.as_ref(),
            tls: shared.config.http_tls.as_ref(),
            io_timeout: shared.config.io_timeout,
        });
        let site = site.as_ref();
        std::thread::scope(|s| {
            let spawn = |name, f| spawn_named(s, name, f, fatal, &shared.shutdown);
            let started = (|| {
                spawn("accept", Box::new(|| accept_loop(s, &listener, shared)))?;
                spawn(
                    "process",
                    Box::new(|| processing.run(&processing_rx, &shared.shutdown)),
                )?;
                if let Some(w) = record_writer {
                    spawn("record", Box::new(move || w.run(&shared.shutdown)))?;
                }
                if let (Some(l), Some(site)) = (&live_view, site) {
                    spawn(
                        "http",
                        Box::new(move || live_view::serve(s, l, site, &shared.shutdown)),
                    )?;
                }
                if let Some(asks) = asks {
                    spawn(
                        "figures",
                        Box::new(move || {
                            while !shared.shutdown.is_triggered() {
                                if let Ok(answer) = asks.recv_timeout(crate::shutdown::TICK) {
                                    let _ = answer.try_send(shared.summary());
                                }
                            }
                        }),
                    )?;
                }
                if let Some(every) = shared.config.stats_interval {
                    spawn(
                        "stats",
                        Box::new(move || {
                            let mut expired = 0;
                            while !shared.shutdown.wait_timeout(every) {
                                let now = shared.processing.expired.load(Ordering::Relaxed);
                                let new = now - std::mem::replace(&mut expired, now);
                                if let Some(mut line) = shared.registry.status_line() {
                                    if new > 0 {
                                        line += &format!(" | {new} expired before processing");
                                    }
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
                crate::service::ready("serving");
                if let Some(every) = crate::service::Watchdog::interval() {
                    let pinged = spawn(
                        "watchdog",
                        Box::new(move || shared.watchdog.run(every, &shared.shutdown)),
                    );
                    if let Err(e) = pinged {
                        warn!("the watchdog cannot be pinged: {e:#}");
                    }
                }
                if display_sinks.is_empty() {
                    while !shared.shutdown.wait_timeout(Duration::from_secs(3600)) {}
                } else {
                    contain("display", fatal, &shared.shutdown, || {
                        let mut sinks = stage::sinks::Sinks::new(&mut display_sinks);
                        stage::run(&mut sinks, &display_rx, &shared.shutdown)
                    });
                }
            }
            shared.shutdown.trigger();
            crate::service::stopping();
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

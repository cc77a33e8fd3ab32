//! The client: a capture thread puts each new frame (encoded) into a
//! latest-only slot; the sender takes the newest frame each time it holds a
//! ticket from the server, and reconnects by itself when the link breaks.

pub mod adapt;
pub mod capture;
pub mod results;
mod session;
pub mod source;
mod status;

pub use capture::EncodedFrame;
use session::{connect_loop, Tracking};
pub use session::{Link, REFUSED_RETRY};
pub use status::ClientSummary;
use status::StatusLine;

use crate::client::adapt::{Adapter, Ladder, Setting};
use crate::latest::{self};
use crate::media::encode;
use crate::shutdown::Shutdown;
use crate::stats::{Running, Side};
use crate::wire::auth::Token;
use anyhow::{bail, Result};
use parking_lot::Mutex;
use results::{InFlight, ResultsOut};
use source::SourceConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info};

/// Everything the client needs to run, validated.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `HOST:PORT` of the server, or several comma-separated, tried in
    /// turn (see [`ClientConfig::servers`]).
    pub server: String,
    /// The name the server shows for this client.
    pub name: String,
    pub source: SourceConfig,
    /// JPEG quality 1..=100 for sources that need encoding.
    pub quality: u8,
    pub encoder: encode::EncoderKind,
    pub subsampling: encode::Subsampling,
    /// Threads encoding frames (1: the capture thread encodes).
    pub encode_threads: usize,
    /// Leave out a frame equal to the last one kept, at most this many in a
    /// row (`--drop-same-frames`; None: send every frame).
    pub drop_same_frames: Option<u32>,
    /// How long the capture may wait for a frame before the source counts
    /// as lost (`--source-timeout`; at least three frame times at `--fps`).
    pub source_timeout: Duration,
    /// Longest wait for a TCP connection to be set up.
    pub connect_timeout: Duration,
    /// How long the server may stall mid-message or in the handshake, and how
    /// long a send may block.
    pub io_timeout: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// How often to print a status line (None: never).
    pub stats_interval: Option<Duration>,
    /// Where to write the summary as JSON at exit.
    pub summary_json: Option<PathBuf>,
    /// Where to write every processing result as a JSON line (`-`: standard output).
    pub results_jsonl: Option<PathBuf>,
    /// Where to save results that are pictures.
    pub save_results: Option<PathBuf>,
    /// Lower quality, size and rate to keep frames fresh on a thin link.
    pub adapt: bool,
    /// Status lines with every figure instead of the compact one.
    pub detailed_status: bool,
    /// The lowest quality adaptation may use.
    pub min_quality: u8,
    /// The narrowest frame adaptation may send.
    pub min_width: u32,
    /// The shared secret to prove to the server (None: no token).
    pub token: Option<Token>,
    /// Connect with TLS (None: plain TCP).
    pub tls: Option<ClientTls>,
}

/// The client's TLS settings: whom to trust, and the name to check.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The name every server's certificate must carry (None: the host of
    /// the server being connected to).
    pub name: Option<rustls::pki_types::ServerName<'static>>,
}

impl ClientConfig {
    /// True when `--results-jsonl -` writes results to standard output.
    pub fn results_on_stdout(&self) -> bool {
        self.results_jsonl.as_deref() == Some(std::path::Path::new("-"))
    }

    /// The servers to try, in order: `server` split at its commas.
    pub fn servers(&self) -> Vec<&str> {
        self.server.split(',').filter(|s| !s.is_empty()).collect()
    }

    /// A config with the usual defaults, streaming the test pattern.
    pub fn test_pattern(server: impl Into<String>, width: u32, height: u32, fps: f64) -> Self {
        ClientConfig {
            server: server.into(),
            name: "test-pattern".into(),
            source: SourceConfig {
                kind: source::SourceKind::TestPattern,
                camera: "0".into(),
                camera_format: source::CameraFormat::Auto,
                width,
                height,
                fps,
            },
            quality: 80,
            encoder: encode::EncoderKind::Auto,
            subsampling: encode::Subsampling::S420,
            encode_threads: 1,
            drop_same_frames: None,
            source_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(2),
            stats_interval: None,
            summary_json: None,
            results_jsonl: None,
            save_results: None,
            adapt: true,
            min_quality: 30,
            min_width: 320,
            detailed_status: false,
            token: None,
            tls: None,
        }
    }
}

/// Runs the client until `shutdown` (Ctrl-C, `--duration`) and returns the
/// summary. Opens the source first: a missing camera fails here, before any
/// connection is tried. Fails too on a server that speaks another protocol
/// version, and if the source fails mid-run.
///
/// A source that fails later, or stops giving frames, is opened again with
/// backoff while the connection stays up (see [`source::outage`]); standard
/// input that ends ends the run.
pub fn run(config: ClientConfig, shutdown: Shutdown) -> Result<ClientSummary> {
    check_size(config.source.width, config.source.height)?;
    let wanted = config.source.clone();
    if wanted.kind == source::SourceKind::Stdin {
        let source = source::open(&wanted)?;
        return run_with_source(config, source, shutdown);
    }
    run_reopening(config, Box::new(move || source::open(&wanted)), shutdown)
}

/// [`run`] with the source `open` opens: once now (its error ends the run
/// before any connection), and again each time it fails.
pub fn run_reopening(
    config: ClientConfig,
    mut open: source::outage::Reopen,
    shutdown: Shutdown,
) -> Result<ClientSummary> {
    let source = open()?;
    run_watched(config, source, Some(open), None, shutdown)
}

/// The largest frame side the client makes (the JPEG format allows 65 500,
/// but nothing larger than this can be encoded, sent and judged fresh).
pub const MAX_SIDE: u32 = 8192;
/// The most pixels in a frame the client makes: the server's default
/// `--max-pixels` (4096 × 4096), so what the client accepts, a default
/// server accepts too.
pub const MAX_PIXELS: u64 = crate::media::DEFAULT_MAX_PIXELS;

/// Checks a frame size asked for (`--width`, `--height`) at start, so a
/// size that cannot work fails with its reason instead of an allocation
/// failure or frames that are always stale.
pub fn check_size(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        bail!("--width and --height must each be 1..={MAX_SIDE}, got {width}x{height}");
    }
    if width as u64 * height as u64 > MAX_PIXELS {
        bail!(
            "--width x --height of {width}x{height} is over {MAX_PIXELS} pixels (4096x4096), \
             the most a server accepts by default (its --max-pixels)"
        );
    }
    Ok(())
}

/// [`run`] with a source of the caller's own (anything implementing
/// [`Source`](source::Source)) instead of the one `config.source` names;
/// `config.source` still gives the size and rate asked for.
pub fn run_with_source(
    config: ClientConfig,
    source: Box<dyn source::Source>,
    shutdown: Shutdown,
) -> Result<ClientSummary> {
    run_with(config, source, None, shutdown)
}

/// [`run_with_source`], handing every result to `tap` too (besides
/// `--results-jsonl` and `--save-results`).
pub fn run_with(
    config: ClientConfig,
    source: Box<dyn source::Source>,
    tap: Option<results::Tap>,
    shutdown: Shutdown,
) -> Result<ClientSummary> {
    run_watched(config, source, None, tap, shutdown)
}

fn run_watched(
    config: ClientConfig,
    source: Box<dyn source::Source>,
    reopen: Option<source::outage::Reopen>,
    tap: Option<results::Tap>,
    shutdown: Shutdown,
) -> Result<ClientSummary> {
    let started = Instant::now();
    info!("source: {}", source.describe());
    let results_out = Mutex::new(
        ResultsOut::open(
            config.results_jsonl.as_deref(),
            config.save_results.as_deref(),
        )?
        .with_tap(tap),
    );
    let encoders = (0..config.encode_threads.max(1))
        .map(|_| encode::encoder(config.encoder, config.quality, config.subsampling))
        .collect::<Result<Vec<_>>>()?;
    info!(
        "encoder: {} (quality {}, {} thread{})",
        encoders[0].name(),
        config.quality,
        encoders.len(),
        if encoders.len() == 1 { "" } else { "s" }
    );
    let top = Setting {
        quality: config.quality,
        width: config.source.width,
        height: config.source.height,
        fps: config.source.fps,
    };
    let ladder = Ladder::new(
        top,
        config.min_quality.min(config.quality),
        config.min_width,
    );
    let adapter = Arc::new(Adapter::new(ladder, config.adapt));
    let stats = Arc::new(Mutex::new(Running::default()));
    let health = Arc::new(source::outage::SourceHealth::default());
    let source_timeout = match config.source.fps {
        fps if fps > 0.0 => config
            .source_timeout
            .max(Duration::from_secs_f64(3.0 / fps)),
        _ => config.source_timeout,
    };
    let tracking = Tracking {
        link: Mutex::new(Link::Connecting),
        connected: Mutex::default(),
        gaps: Mutex::default(),
        stats: stats.clone(),
        adapter: adapter.clone(),
        in_flight: InFlight::default(),
        out: results_out,
        sent: Mutex::default(),
        source: health.clone(),
    };
    let (slot, frames) = latest::channel::<EncodedFrame>();
    let superseded = slot.superseded_counter();
    let unchanged_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let unchanged = config
        .drop_same_frames
        .map(|n| crate::client::capture::Unchanged::new(n, unchanged_count.clone()));
    let capture_error: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();

    // Not scoped: a camera can block in the driver forever; it must not keep
    // the client from exiting. It ends by itself when the slot is orphaned.
    // Says the capture thread has ended and stored its error, if any.
    let (ended_tx, ended) = crossbeam_channel::bounded::<()>(1);
    let capture = {
        let (shutdown, capture_error, adapter) =
            (shutdown.clone(), capture_error.clone(), adapter.clone());
        let outages = source::outage::Outages::new(health.clone(), reopen);
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                // A panic (a bug, or a camera driver's) ends the run as an
                // error, like any other capture failure.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::client::capture::run(
                        source, encoders, slot, adapter, unchanged, outages, &shutdown,
                    )
                }))
                .unwrap_or_else(|panic| {
                    Err(anyhow::anyhow!(
                        "internal error in the capture thread (a bug; please report it): {}",
                        crate::logging::panic_text(&*panic)
                    ))
                });
                match ran {
                    // A stream source that ended (its writer closed the
                    // pipe): the run is over, not failed.
                    Err(e) if e.downcast_ref::<source::mjpeg::Ended>().is_some() => {
                        info!("{e:#}: stopping");
                        shutdown.trigger();
                    }
                    Err(e) => {
                        error!("capture stopped: {e:#}");
                        *capture_error.lock() = Some(e);
                        shutdown.trigger();
                    }
                    Ok(()) => {}
                }
                let _ = ended_tx.send(());
            })?
    };

    let mut connections = 0;
    let mut last_problem = None;
    let outcome = std::thread::scope(|s| {
        // Notices a source that keeps the capture thread waiting.
        {
            let (health, shutdown) = (&health, &shutdown);
            s.spawn(move || {
                while !shutdown.wait_timeout(Duration::from_millis(100)) {
                    health.check(source_timeout);
                }
            });
        }
        if let Some(every) = config.stats_interval {
            let line = StatusLine {
                stats: &stats,
                superseded: &superseded,
                unchanged: &unchanged_count,
                adapter: &adapter,
                tracking: &tracking,
                detailed: config.detailed_status,
                // Standard output then carries results only.
                results_on_stdout: config.results_on_stdout(),
            };
            let shutdown = &shutdown;
            s.spawn(move || line.run(every, shutdown));
        }
        let r = connect_loop(
            &config,
            &frames,
            &tracking,
            &shutdown,
            &mut connections,
            &mut last_problem,
        );
        shutdown.trigger();
        r
    });
    // A capture thread that ended by itself (the slot is closed) stores its
    // error just after closing the slot: wait for that. One blocked in a
    // camera driver is not waited for.
    if matches!(
        frames.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected)
    ) {
        let _ = ended.recv_timeout(Duration::from_secs(5));
    }
    drop(frames); // orphans the slot: the capture thread stops at its next frame
    if capture.is_finished() {
        let _ = capture.join();
    }

    let (gaps, offline, between) = {
        let g = tracking.gaps.lock();
        // Ended while disconnected: that last outage counts too.
        let open = g.lost_at.map_or(Duration::ZERO, |t| t.elapsed());
        (
            g.count + u64::from(g.lost_at.is_some()),
            g.total + open,
            g.total,
        )
    };
    let connected = tracking.connected_time();
    let mut total = stats.lock().total.clone();
    total.counts.superseded = superseded.load(std::sync::atomic::Ordering::Relaxed);
    total.counts.unchanged = unchanged_count.load(std::sync::atomic::Ordering::Relaxed);
    let mut figures = total.figures(Side::Client);
    // Outages between connections do not dilute the rate.
    figures.fps_accepted = (total.fps_accepted_besides(between) * 100.0).round() / 100.0;
    let (source_outages, source_lost) = health.totals();
    let summary = ClientSummary {
        figures,
        server: config.server.clone(),
        connections,
        duration_s: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        connected_s: (connected.as_secs_f64() * 1000.0).round() / 1000.0,
        gaps,
        offline_s: (offline.as_secs_f64() * 1000.0).round() / 1000.0,
        adapt: adapter.summary(),
        last_problem,
        source_outages,
        source_lost_s: (source_lost.as_secs_f64() * 1000.0).round() / 1000.0,
    };
    if let Some(path) = &config.summary_json {
        crate::output::write_json(path, &summary)?;
    }
    if let Some(e) = capture_error.lock().take() {
        return Err(e);
    }
    outcome.map(|_| summary)
}

//! The client: a capture thread puts each new frame (encoded) into a
//! latest-only slot; the sender takes the newest frame each time it holds a
//! ticket from the server, and reconnects by itself when the link breaks.

pub mod adapt;
pub mod capture;
pub mod results;
pub mod source;

pub use capture::EncodedFrame;

use crate::client::adapt::{AdaptSummary, Adapter, Ladder, Setting};
use crate::latest::{self, LatestReceiver};
use crate::media::encode;
use crate::shutdown::Shutdown;
use crate::stats::{Figures, Running};
use crate::wire::auth::{self, Token};
use crate::wire::connection::{self, ConnError, Reader, Writer};
use crate::wire::micros_u32;
use crate::wire::stream::Stream;
use crate::wire::tls;
use crate::wire::{
    self, Encoding, FrameHeader, Goodbye, GoodbyeCode, Hello, Limits, Message, Outcome, Ticket,
};
use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use results::{InFlight, ResultsOut};
use serde::Serialize;
use source::SourceConfig;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// Everything the client needs to run, validated.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `HOST:PORT` of the server.
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
    pub name: rustls::pki_types::ServerName<'static>,
}

impl ClientConfig {
    /// True when `--results-jsonl -` writes results to standard output.
    pub fn results_on_stdout(&self) -> bool {
        self.results_jsonl.as_deref() == Some(std::path::Path::new("-"))
    }

    /// A config with the usual defaults, streaming the test pattern.
    pub fn test_pattern(server: impl Into<String>, width: u32, height: u32, fps: f64) -> Self {
        ClientConfig {
            server: server.into(),
            name: "test-pattern".into(),
            source: SourceConfig {
                kind: source::SourceKind::TestPattern,
                camera_index: 0,
                camera_format: source::CameraFormat::Auto,
                width,
                height,
                fps,
            },
            quality: 80,
            encoder: encode::EncoderKind::Auto,
            subsampling: encode::Subsampling::S420,
            encode_threads: 1,
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
            token: None,
            tls: None,
        }
    }
}

/// The end-of-run figures of a client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientSummary {
    #[serde(flatten)]
    pub figures: Figures,
    pub server: String,
    /// Successful connections (1 when the link never broke).
    pub connections: u64,
    pub duration_s: f64,
    /// Times the connection was lost and came back.
    pub gaps: u64,
    /// Seconds without a connection between them.
    pub offline_s: f64,
    /// What adaptation did.
    pub adapt: AdaptSummary,
    /// Why the last connection attempt failed or the last connection was
    /// lost or refused, if one was (e.g. "wrong token", a TLS error).
    pub last_problem: Option<String>,
}

/// Runs the client until `shutdown` (Ctrl-C, `--duration`) and returns the
/// summary. Opens the source first: a missing camera fails here, before any
/// connection is tried. Fails too on a server that speaks another protocol
/// version, and if the source fails mid-run.
pub fn run(config: ClientConfig, shutdown: Shutdown) -> Result<ClientSummary> {
    for d in [config.source.width, config.source.height] {
        if d == 0 || d > u16::MAX as u32 {
            bail!(
                "--width and --height must be 1..=65535, got {}x{}",
                config.source.width,
                config.source.height
            );
        }
    }
    let source = source::open(&config.source)?;
    run_with_source(config, source, shutdown)
}

/// [`run`] with a source of the caller's own (anything implementing
/// [`Source`](source::Source)) instead of the one `config.source` names;
/// `config.source` still gives the size and rate asked for.
pub fn run_with_source(
    config: ClientConfig,
    source: Box<dyn source::Source>,
    shutdown: Shutdown,
) -> Result<ClientSummary> {
    let started = Instant::now();
    info!("source: {}", source.describe());
    let results_out = Mutex::new(ResultsOut::open(
        config.results_jsonl.as_deref(),
        config.save_results.as_deref(),
    )?);
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
    let tracking = Tracking {
        gaps: Mutex::default(),
        stats: stats.clone(),
        adapter: adapter.clone(),
        in_flight: InFlight::default(),
        out: results_out,
    };
    let (slot, frames) = latest::channel::<EncodedFrame>();
    let superseded = slot.superseded_counter();
    let capture_error: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();

    // Not scoped: a camera can block in the driver forever; it must not keep
    // the client from exiting. It ends by itself when the slot is orphaned.
    let capture = {
        let (shutdown, capture_error, adapter) =
            (shutdown.clone(), capture_error.clone(), adapter.clone());
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                // A panic (a bug, or a camera driver's) ends the run as an
                // error, like any other capture failure.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::client::capture::run(source, encoders, slot, adapter, &shutdown)
                }))
                .unwrap_or_else(|panic| {
                    Err(anyhow::anyhow!(
                        "internal error in the capture thread (a bug; please report it): {}",
                        crate::logging::panic_text(&*panic)
                    ))
                });
                if let Err(e) = ran {
                    error!("capture stopped: {e:#}");
                    *capture_error.lock() = Some(e);
                    shutdown.trigger();
                }
            })?
    };

    let mut connections = 0;
    let mut last_problem = None;
    let outcome = std::thread::scope(|s| {
        if let Some(every) = config.stats_interval {
            let (stats, superseded, shutdown, adapter) = (&stats, &superseded, &shutdown, &adapter);
            // Standard output then carries results only.
            let results_on_stdout = config.results_on_stdout();
            s.spawn(move || {
                let mut reported = 0;
                while !shutdown.wait_timeout(every) {
                    let now = superseded.load(std::sync::atomic::Ordering::Relaxed);
                    let mut st = stats.lock();
                    st.add_superseded(now - reported);
                    reported = now;
                    let (t, elapsed) = st.take_interval();
                    drop(st);
                    let line = format!("{} | {}", t.status_line(elapsed), adapter.status());
                    if !crate::output::line_to(results_on_stdout, &line) {
                        return;
                    }
                }
            });
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
    drop(frames); // orphans the slot: the capture thread stops at its next frame
    if capture.is_finished() {
        let _ = capture.join();
    }

    let (gaps, offline) = {
        let g = tracking.gaps.lock();
        (g.count, g.total)
    };
    let mut total = stats.lock().total.clone();
    total.counts.superseded = superseded.load(std::sync::atomic::Ordering::Relaxed);
    let summary = ClientSummary {
        figures: total.figures(true),
        server: config.server.clone(),
        connections,
        duration_s: started.elapsed().as_secs_f64(),
        gaps,
        offline_s: (offline.as_secs_f64() * 100.0).round() / 100.0,
        adapt: adapter.summary(),
        last_problem,
    };
    if let Some(path) = &config.summary_json {
        crate::output::write_json(path, &summary)?;
    }
    if let Some(e) = capture_error.lock().take() {
        return Err(e);
    }
    outcome.map(|_| summary)
}

/// Time without a connection after the first one: the gaps a user sees.
#[derive(Default)]
struct Gaps {
    lost_at: Option<Instant>,
    count: u64,
    total: Duration,
}

/// What the sender, the reader and the status line keep count with.
struct Tracking {
    gaps: Mutex<Gaps>,
    stats: Arc<Mutex<Running>>,
    adapter: Arc<Adapter>,
    /// Frames sent and not yet answered, for capture → result times.
    in_flight: InFlight,
    out: Mutex<ResultsOut>,
}

/// Why a session with the server ended.
enum SessionEnd {
    /// Our own shutdown: stop.
    Stopped,
    /// The server said goodbye or the link broke: reconnect.
    Lost(String),
    /// The server will not talk to us until something changes: reconnect,
    /// but warn.
    Refused(String),
}

/// Connects, streams, and reconnects with capped backoff until shutdown.
/// Logs a line per change of state, not per retry.
fn connect_loop(
    config: &ClientConfig,
    frames: &LatestReceiver<EncodedFrame>,
    tracking: &Tracking,
    shutdown: &Shutdown,
    connections: &mut u64,
    last_problem: &mut Option<String>,
) -> Result<()> {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        let attempt = resolve(&config.server).and_then(|addr| {
            TcpStream::connect_timeout(&addr, config.connect_timeout)
                .map_err(|e| anyhow!("cannot connect to {}: {e}", config.server))
        });
        let end = match attempt {
            Ok(stream) => match session(stream, config, frames, tracking, shutdown) {
                Ok((end, connected)) => {
                    if connected {
                        *connections += 1;
                        backoff = Duration::from_millis(100);
                        tracking.gaps.lock().lost_at = Some(Instant::now());
                    }
                    end
                }
                Err(e) => return Err(e),
            },
            Err(e) => SessionEnd::Lost(format!("{e:#}")),
        };
        let problem = match end {
            SessionEnd::Stopped => return Ok(()),
            SessionEnd::Lost(why) => (why, false),
            SessionEnd::Refused(why) => (why, true),
        };
        if last_problem.as_deref() != Some(problem.0.as_str()) {
            if problem.1 {
                warn!("{}; retrying", problem.0);
            } else {
                info!("{}; retrying", problem.0);
            }
            *last_problem = Some(problem.0);
        } else {
            debug!("still {}; retrying in {backoff:?}", problem.0);
        }
        if shutdown.wait_timeout(backoff) {
            return Ok(());
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
    Ok(())
}

fn resolve(server: &str) -> Result<SocketAddr> {
    server
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve server address {server}"))?
        .next()
        .ok_or_else(|| anyhow!("server address {server} resolves to nothing"))
}

/// One connection: handshake, then frames until it ends. Returns how it
/// ended and whether the handshake succeeded. Fails only for what retrying
/// cannot fix (a server speaking another protocol version).
fn session(
    stream: TcpStream,
    config: &ClientConfig,
    frames: &LatestReceiver<EncodedFrame>,
    tracking: &Tracking,
    shutdown: &Shutdown,
) -> Result<(SessionEnd, bool)> {
    let server = &config.server;
    connection::configure(&stream, config.io_timeout)?;
    let limits = Limits {
        max_frame_bytes: 0,
        max_result_bytes: 16 * 1024 * 1024,
    };
    let (stream, tls_error) = match &config.tls {
        None => (Stream::Tcp(stream), None),
        Some(t) => {
            let (plain, error) = tls::connect(stream, &t.config, t.name.clone())?;
            connection::configure_local(&plain, config.io_timeout)?;
            (plain, Some(error))
        }
    };
    // A failed TLS handshake shows as a closed connection: say why.
    let tls_failed = || {
        tls_error
            .as_ref()
            .and_then(|e| e.lock().clone())
            .map(|e| {
                SessionEnd::Refused(format!(
                    "TLS with {server} failed: {e} (does --tls-ca hold the server's certificate or its CA, and does the certificate name the host you connect to?)"
                ))
            })
    };
    let mut reader = Reader::new(stream.try_clone()?, limits);
    let mut writer = Writer::new(stream);
    // Our preface goes at once, so a server of another version can say so;
    // the server opens with its preface and a challenge.
    if let Err(e) = writer.send(true, &[]) {
        return Ok((
            SessionEnd::Lost(format!("connection to {server} failed: {e}")),
            false,
        ));
    }
    let io = config.io_timeout;
    let client_nonce = auth::nonce();
    let mut server_nonce = None;
    let handshake = reader
        .read_preface(Instant::now() + io, shutdown)
        .and_then(|version| {
            let msg = reader.read_message(Some(io), io, shutdown)?;
            let Some(Message::Challenge(c)) = msg else {
                return Ok((version, msg));
            };
            server_nonce = Some(c.nonce);
            let hello = Message::Hello(Hello {
                capabilities: wire::CAP_RESULTS,
                name: config.name.clone(),
                client_nonce,
                proof: config
                    .token
                    .as_ref()
                    .map(|t| t.hello_proof(&c.nonce, &client_nonce))
                    .unwrap_or_default(),
            });
            writer.send(false, &[&hello])?;
            Ok((version, reader.read_message(Some(io), io, shutdown)?))
        });
    let welcome = match handshake {
        Ok((_, Some(Message::Welcome(w)))) if server_nonce.is_some() => w,
        Ok((_, Some(Message::Goodbye(g)))) => return goodbye_end(server, g).map(|e| (e, false)),
        Ok((version, other)) => {
            if version != wire::VERSION {
                bail!("the server at {server} speaks framelink protocol version {version}; this client speaks version {}: upgrade the older side", wire::VERSION);
            }
            let got = other.map(|m| m.name()).unwrap_or("end of stream");
            let expected = if server_nonce.is_some() {
                "WELCOME"
            } else {
                "CHALLENGE"
            };
            return Ok((
                SessionEnd::Refused(format!(
                    "{server} sent {got} instead of {expected}: is it a framelink server?"
                )),
                false,
            ));
        }
        Err(ConnError::Shutdown) => return Ok((SessionEnd::Stopped, false)),
        Err(ConnError::Protocol(e)) => {
            return Ok((
                SessionEnd::Refused(format!("{server} is not a framelink server: {e}")),
                false,
            ))
        }
        Err(e) => {
            let end = tls_failed().unwrap_or_else(|| {
                SessionEnd::Lost(format!("handshake with {server} failed: {e}"))
            });
            return Ok((end, false));
        }
    };
    if let (Some(token), Some(sn)) = (&config.token, server_nonce) {
        let why = if welcome.proof.is_empty() {
            Some("does not check tokens (start it with the same --token)")
        } else if !token.check_welcome(&client_nonce, &sn, &welcome.proof) {
            Some("does not know our token: is it the server you meant?")
        } else {
            None
        };
        if let Some(why) = why {
            let _ = writer.goodbye(
                false,
                GoodbyeCode::Unauthorized,
                "the server failed the token check",
            );
            return Ok((SessionEnd::Refused(format!("server {server} {why}")), false));
        }
    }
    tracking
        .adapter
        .set_threshold(Duration::from_micros(welcome.max_age_us as u64));
    info!(
        "connected to {server}: frames older than {:.0} ms are dropped, window {}",
        welcome.max_age_us as f64 / 1000.0,
        welcome.window
    );
    {
        let mut g = tracking.gaps.lock();
        if let Some(lost) = g.lost_at.take() {
            let gap = lost.elapsed();
            g.count += 1;
            g.total += gap;
            info!("back after {:.1} s without a connection", gap.as_secs_f64());
        }
    }
    if welcome.max_frame_bytes == 0 {
        return Ok((
            SessionEnd::Refused(format!(
                "{server} accepts no frame bytes (max_frame_bytes 0)"
            )),
            true,
        ));
    }

    // The reader thread takes tickets and verdicts; this thread sends frames.
    let session_stop = Shutdown::new();
    let reader_done = Shutdown::new();
    let (tickets_tx, tickets) =
        crossbeam_channel::bounded::<(Ticket, Instant)>(welcome.window as usize);
    let end = std::thread::scope(|s| {
        let reader_thread = {
            let (session_stop, reader_done) = (&session_stop, &reader_done);
            s.spawn(move || {
                let end = read_loop(reader, tickets_tx, tracking, session_stop, server, io);
                reader_done.trigger();
                end
            })
        };
        let sent = send_loop(
            &mut writer,
            &tickets,
            frames,
            welcome.max_frame_bytes,
            tracking,
            shutdown,
            &reader_done,
        );
        let stopping = matches!(sent, SendEnd::Stopped);
        if stopping {
            let _ = writer.goodbye(false, GoodbyeCode::ShuttingDown, "client stopping");
            // Let the last verdicts arrive, briefly.
            let deadline = Instant::now() + Duration::from_secs(1);
            reader_done.wait_timeout(deadline - Instant::now());
        }
        session_stop.trigger();
        let read_end = reader_thread
            .join()
            .unwrap_or_else(|_| SessionEnd::Lost("reader thread failed".into()));
        match sent {
            SendEnd::Stopped => SessionEnd::Stopped,
            SendEnd::Failed(why) => SessionEnd::Lost(format!("connection to {server} lost: {why}")),
            SendEnd::ReaderEnded => read_end,
        }
    });
    Ok((end, true))
}

/// What a GOODBYE from the server means for us.
fn goodbye_end(server: &str, g: Goodbye) -> Result<SessionEnd> {
    Ok(match g.code {
        GoodbyeCode::UnsupportedVersion => bail!(
            "the server at {server} refused our protocol version: {}",
            g.text
        ),
        GoodbyeCode::ShuttingDown => SessionEnd::Lost(format!(
            "server {server} is shutting down; waiting for it to come back"
        )),
        GoodbyeCode::ServerFull => {
            SessionEnd::Refused(format!("server {server} is full: {}", g.text))
        }
        code => SessionEnd::Refused(format!(
            "server {server} closed the connection ({code:?}): {}",
            g.text
        )),
    })
}

enum SendEnd {
    Stopped,
    ReaderEnded,
    Failed(String),
}

/// Sends the newest frame for each ticket. Blocks on the ticket channel and
/// the frame slot, waking every tick to watch `shutdown`; ends when the
/// reader ends (its ticket sender is dropped) or a send fails.
fn send_loop(
    writer: &mut Writer,
    tickets: &Receiver<(Ticket, Instant)>,
    frames: &LatestReceiver<EncodedFrame>,
    max_frame_bytes: u32,
    tracking: &Tracking,
    shutdown: &Shutdown,
    reader_done: &Shutdown,
) -> SendEnd {
    let mut warned_too_large = false;
    loop {
        let (ticket, received) = loop {
            if shutdown.is_triggered() {
                return SendEnd::Stopped;
            }
            match tickets.recv_timeout(crate::shutdown::TICK) {
                Ok(t) => break t,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return SendEnd::ReaderEnded,
            }
        };
        let frame = loop {
            if shutdown.is_triggered() {
                return SendEnd::Stopped;
            }
            match frames.recv_timeout(crate::shutdown::TICK) {
                Ok(f) if f.jpeg.len() as u64 > max_frame_bytes as u64 => {
                    if !warned_too_large {
                        warn!("frame of {} bytes is over the server's limit of {max_frame_bytes} bytes: not sent (lower --quality or the size)", f.jpeg.len());
                        warned_too_large = true;
                    }
                }
                Ok(f) => break f,
                Err(RecvTimeoutError::Timeout) => {
                    if reader_done.is_triggered() {
                        return SendEnd::ReaderEnded;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return SendEnd::Stopped,
            }
        };
        let now = Instant::now();
        let header = FrameHeader {
            frame_id: frame.id,
            encoding: Encoding::Jpeg,
            width: frame.width,
            height: frame.height,
            capture_to_send_us: micros_u32(now.saturating_duration_since(frame.captured_at)),
            ticket_held_us: micros_u32(now.saturating_duration_since(received)),
            payload_len: frame.jpeg.len() as u32,
        };
        tracking
            .in_flight
            .sent(frame.id, frame.captured_at, frame.level);
        if let Err(e) = writer.send_frame(&header, &frame.jpeg, ticket) {
            return SendEnd::Failed(e.to_string());
        }
        tracking.adapter.send_took(frame.level, now.elapsed());
        tracking.stats.lock().record_sent(frame.jpeg.len());
    }
}

/// Reads tickets (passed to the sender), verdicts (counted) and results
/// (counted, written) until the connection ends; returns how it ended.
fn read_loop(
    mut reader: Reader,
    tickets: crossbeam_channel::Sender<(Ticket, Instant)>,
    tracking: &Tracking,
    stop: &Shutdown,
    server: &str,
    stall: Duration,
) -> SessionEnd {
    loop {
        match reader.read_message(None, stall, stop) {
            Ok(Some(Message::Ticket(t))) => {
                if tickets.try_send((t, Instant::now())).is_err() {
                    return SessionEnd::Refused(format!(
                        "{server} sent more tickets than its window"
                    ));
                }
            }
            Ok(Some(Message::Verdict(v))) => {
                let (age, transit) = (
                    Duration::from_micros(v.age_us as u64),
                    Duration::from_micros(v.transit_us as u64),
                );
                tracking
                    .stats
                    .lock()
                    .record_verdict(v.outcome, age, transit, Instant::now());
                if let Some(level) = tracking.in_flight.level_of(v.frame_id) {
                    tracking.adapter.verdict(level, v.outcome, age);
                }
                if v.outcome != Outcome::Accepted {
                    tracking.in_flight.forget(v.frame_id);
                }
                match v.outcome {
                    Outcome::Rejected => warn!(
                        frame = v.frame_id,
                        "server rejected frame: {}",
                        v.reason.describe()
                    ),
                    Outcome::DroppedStale => debug!(
                        frame = v.frame_id,
                        age_ms = v.age_us as f64 / 1e3,
                        "server dropped stale frame"
                    ),
                    Outcome::Accepted => {}
                }
            }
            Ok(Some(Message::Result(r))) => {
                let capture_to_result =
                    tracking.in_flight.answered(r.frame_id).map(|t| t.elapsed());
                debug!(frame = r.frame_id, status = r.status.as_str(), "result");
                tracking.stats.lock().record_result(
                    r.status,
                    capture_to_result,
                    results::shown(&r),
                );
                tracking.out.lock().write(&r, capture_to_result);
            }
            Ok(Some(Message::Goodbye(g))) => {
                return goodbye_end(server, g)
                    .unwrap_or_else(|e| SessionEnd::Refused(e.to_string()))
            }
            Ok(Some(other)) => {
                return SessionEnd::Refused(format!("{server} sent an unexpected {}", other.name()))
            }
            Ok(None) => return SessionEnd::Lost(format!("server {server} closed the connection")),
            Err(ConnError::Shutdown) => return SessionEnd::Stopped,
            Err(e) => return SessionEnd::Lost(format!("connection to {server} lost: {e}")),
        }
    }
}

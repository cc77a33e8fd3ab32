//! `framelink-worker`: one member of a processing pool behind NATS. Each of
//! its `--concurrency` threads runs its own [`Processor`] (the same
//! `count`, `motion` and `exec:` the server runs locally) and loops: ask
//! the servers for a frame when free, process it, publish the result.
//!
//! The exchange is protocol.md's NATS section; [`crate::nats`] has the
//! subjects and headers. A worker never holds more than one frame per
//! thread, and asks only when it can start on the answer at once, so no
//! frame ever waits behind it.

mod counts;

use crate::nats::{self, header, Broker, NatsConfig};
use crate::process::{self, Output, Processor, ProcessorConfig};
use crate::process::{ArrivedFrame, ClientId, FrameView};
use crate::shutdown::Shutdown;
use anyhow::{anyhow, Result};
use async_nats::{HeaderMap, Message, Request, RequestErrorKind};
use bytes::Bytes;
use counts::{Counts, Status};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How long a worker thread waits between asks when no server is there
/// (NATS answered "no responders") or NATS is down.
pub const NO_SERVER_RETRY: Duration = Duration::from_millis(250);
/// A client not seen for this long is forgotten by the processors
/// (`client_left`), so their per-client state stays bounded.
pub const FORGET_CLIENT_AFTER: Duration = Duration::from_secs(60);

/// Everything a worker needs, validated.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub nats: NatsConfig,
    /// What runs on each frame (`count`, `motion`, `exec:COMMAND`).
    pub processor: ProcessorConfig,
    /// Frames processed at once (one processor each).
    pub concurrency: usize,
    /// This worker's name, sent with every request and result.
    pub name: String,
    /// How long a server may hold a request before answering `idle`.
    pub wait: Duration,
    pub stats_interval: Option<Duration>,
    pub summary_json: Option<PathBuf>,
}

impl WorkerConfig {
    pub fn new(url: impl Into<String>, processor: ProcessorConfig) -> Self {
        WorkerConfig {
            nats: NatsConfig::new(url),
            processor,
            concurrency: 1,
            name: format!("{}-{}", crate::wire::host_name(), std::process::id()),
            wait: Duration::from_secs(1),
            stats_interval: None,
            summary_json: None,
        }
    }
}

/// The end-of-run figures of a worker.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerSummary {
    pub name: String,
    pub processor: String,
    pub frames_processed: u64,
    pub frames_failed: u64,
    /// Frames that were over the server's threshold when this worker took
    /// them (answered `expired`, not processed).
    pub frames_expired: u64,
    /// Requests a server answered with "nothing now".
    pub idle_replies: u64,
    /// Asks that found no server (or no NATS).
    pub no_server: u64,
    pub duration_s: f64,
    /// Share of the run the threads spent processing (0..=1).
    pub busy: f64,
    /// Time on a frame, receipt to result published, in ms.
    pub processing_ms_p50: f64,
    pub processing_ms_p99: f64,
    /// Frames per server id.
    pub per_server: HashMap<String, u64>,
}

/// Runs the worker until `shutdown`: each thread finishes (or, for an
/// `exec:` program, releases with a `failed` result) the frame in hand and
/// asks for no more. Fails at start when NATS cannot be reached or the
/// processor cannot start.
pub fn run(config: WorkerConfig, shutdown: Shutdown) -> Result<WorkerSummary> {
    let made = config.processor.clone();
    let stop = shutdown.clone();
    run_with(config, shutdown, move || process::build(&made, &stop))
}

/// [`run`] with processors made by `make` (one per thread): your own
/// [`Processor`] in a pool.
pub fn run_with(
    config: WorkerConfig,
    shutdown: Shutdown,
    make: impl Fn() -> Result<Box<dyn Processor>>,
) -> Result<WorkerSummary> {
    if !(1..=256).contains(&config.concurrency) {
        anyhow::bail!("--concurrency must be 1..=256, got {}", config.concurrency);
    }
    nats::check_token("--nats-prefix", &config.nats.prefix, true)?;
    let broker = Broker::connect(&config.nats, true)?;
    info!(url = %config.nats.url, name = %config.name, "worker connected to NATS");
    // Every processor is made before any frame is asked for.
    let processors = (0..config.concurrency)
        .map(|_| make())
        .collect::<Result<Vec<_>>>()?;
    let processor_name = processors[0].name().to_string();
    let counts = Counts {
        times: Mutex::new(hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).ok()),
        ..Counts::default()
    };
    let started = Instant::now();
    let (broker, counts, config) = (&broker, &counts, &config);
    std::thread::scope(|s| -> Result<()> {
        let mut threads = Vec::new();
        for (i, p) in processors.into_iter().enumerate() {
            let shutdown = shutdown.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("work {i}"))
                    .spawn_scoped(s, move || work(p, broker, config, counts, &shutdown))?,
            );
        }
        if let Some(every) = config.stats_interval {
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name("stats".into())
                .spawn_scoped(s, move || {
                    status_lines(every, broker, counts, config, &shutdown)
                })?;
        }
        for t in threads {
            if t.join().is_err() {
                shutdown.trigger();
            }
        }
        shutdown.trigger();
        Ok(())
    })?;
    let elapsed = started.elapsed();
    let (p50, p99) = counts
        .times
        .lock()
        .as_ref()
        .map(|h| {
            let ms = |q| h.value_at_quantile(q) as f64 / 1000.0;
            if h.is_empty() {
                (0.0, 0.0)
            } else {
                (ms(0.5), ms(0.99))
            }
        })
        .unwrap_or_default();
    let summary = WorkerSummary {
        name: config.name.clone(),
        processor: processor_name,
        frames_processed: counts.processed.load(Ordering::Relaxed),
        frames_failed: counts.failed.load(Ordering::Relaxed),
        frames_expired: counts.expired.load(Ordering::Relaxed),
        idle_replies: counts.idle.load(Ordering::Relaxed),
        no_server: counts.no_server.load(Ordering::Relaxed),
        duration_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        busy: busy_share(
            counts.busy_us.load(Ordering::Relaxed),
            elapsed,
            config.concurrency,
        ),
        processing_ms_p50: p50,
        processing_ms_p99: p99,
        per_server: counts.per_server.lock().clone(),
    };
    if let Some(path) = &config.summary_json {
        crate::output::write_json(path, &summary)?;
    }
    Ok(summary)
}

fn busy_share(busy_us: u64, over: Duration, threads: usize) -> f64 {
    let whole = over.as_micros() as f64 * threads as f64;
    if whole <= 0.0 {
        return 0.0;
    }
    ((busy_us as f64 / whole).min(1.0) * 1000.0).round() / 1000.0
}

/// A status line every `every` until shutdown.
fn status_lines(
    every: Duration,
    broker: &Broker,
    counts: &Counts,
    config: &WorkerConfig,
    shutdown: &Shutdown,
) {
    let mut last = (0u64, 0u64, Instant::now());
    while !shutdown.wait_timeout(every) {
        let done = counts.processed.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed);
        let busy = counts.busy_us.load(Ordering::Relaxed);
        let dt = last.2.elapsed();
        let rate = (done - last.0) as f64 / dt.as_secs_f64();
        let line = format!(
            "worker {}: {} | {:.1} frames/s | busy {:.0}% | processed {} failed {} | idle replies {} | no server {}",
            config.name,
            if broker.is_connected() { "connected" } else { "NATS unreachable" },
            rate,
            busy_share(busy - last.1, dt, config.concurrency) * 100.0,
            counts.processed.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
            counts.idle.load(Ordering::Relaxed),
            counts.no_server.load(Ordering::Relaxed),
        );
        if !crate::output::stdout_line(&line) {
            return;
        }
        last = (done, busy, Instant::now());
    }
}

/// One thread of the worker: ask, process, answer, until shutdown.
fn work(
    mut processor: Box<dyn Processor>,
    broker: &Broker,
    config: &WorkerConfig,
    counts: &Counts,
    shutdown: &Shutdown,
) {
    let subject = nats::work_subject(&config.nats.prefix);
    let mut clients: HashMap<ClientId, Instant> = HashMap::new();
    // The last frame's pixels, decoded into again by the next one.
    let mut pixels = Vec::new();
    let mut last_forget = Instant::now();
    let mut last_problem: Option<String> = None;
    while !shutdown.is_triggered() {
        if !processor.wait_ready(shutdown) {
            break;
        }
        let mut h = HeaderMap::new();
        h.insert(header::WORKER, config.name.as_str());
        h.insert(
            header::WAIT_MS,
            (config.wait.as_millis() as u64).to_string(),
        );
        // The server answers within `wait`; the slack covers a server
        // that died holding the request.
        let request = Request::new()
            .headers(h)
            .timeout(Some(config.wait + Duration::from_secs(2)));
        let asked = broker.block_on(broker.client().send_request(subject.clone(), request));
        let msg = match asked {
            Ok(m) => m,
            Err(e) => {
                // No responders is the normal idle state (servers take work
                // only while they have cameras); anything else is trouble.
                let (problem, idle) = match e.kind() {
                    RequestErrorKind::TimedOut => continue,
                    RequestErrorKind::NoResponders => (
                        "no framelink-server with a camera is taking work on NATS (none is running, or none has a client)".to_string(),
                        true,
                    ),
                    _ => (
                        format!("cannot ask NATS at {} for work: {e}", config.nats.url),
                        false,
                    ),
                };
                counts.no_server.fetch_add(1, Ordering::Relaxed);
                if last_problem.as_deref() != Some(problem.as_str()) {
                    if idle {
                        info!("{problem}; asking again");
                    } else {
                        warn!("{problem}; asking again");
                    }
                    last_problem = Some(problem);
                }
                shutdown.wait_timeout(NO_SERVER_RETRY);
                continue;
            }
        };
        if last_problem.take().is_some() {
            info!("work is coming again");
        }
        if nats::text(msg.headers.as_ref(), header::STATUS) == Some("idle") {
            counts.idle.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        handle(
            msg,
            &mut *processor,
            broker,
            config,
            counts,
            &mut clients,
            &mut pixels,
        );
        if last_forget.elapsed() > FORGET_CLIENT_AFTER / 4 {
            last_forget = Instant::now();
            clients.retain(|c, seen| {
                let keep = seen.elapsed() < FORGET_CLIENT_AFTER;
                if !keep {
                    processor.client_left(*c);
                }
                keep
            });
        }
    }
}

/// What a frame message says about its frame.
struct Given {
    results: String,
    token: u64,
    server: String,
    frame_id: Option<u64>,
    frame: Result<ArrivedFrame>,
    /// The server's threshold (None: a server that sends none, so no check).
    max_age: Option<Duration>,
}

fn parse(msg: Message) -> Result<Given> {
    let h = msg.headers.as_ref();
    let results = nats::text(h, header::RESULTS)
        .ok_or_else(|| anyhow!("no {} header", header::RESULTS))?
        .to_string();
    let token = nats::number(h, header::TOKEN)?;
    let server = nats::text(h, header::SERVER).unwrap_or("").to_string();
    let frame_id = nats::number(h, header::FRAME_ID).ok();
    let frame = (|| {
        let encoding = nats::text(h, header::ENCODING).unwrap_or("jpeg");
        anyhow::ensure!(
            encoding == "jpeg",
            "encoding {encoding:?} is not one this worker knows (jpeg)"
        );
        let client_id = nats::number(h, header::CLIENT_ID)?;
        let dim = |name| -> Result<u16> {
            u16::try_from(nats::number(h, name)?).map_err(|_| anyhow!("{name} is over 65535"))
        };
        // Its age when the server handed it on (on arrival, from a server
        // that says only that); the time since receipt is added on this
        // worker's clock: an age carried, never a time, so no clock sync.
        // The broker's hop is not counted (nobody measured it).
        let age = nats::number(h, header::HANDED_AGE_US)
            .or_else(|_| nats::number(h, header::AGE_US))
            .unwrap_or(0);
        let age = Duration::from_micros(age);
        Ok(ArrivedFrame {
            // Client ids are per server: the worker's key mixes in the server.
            client: client_key(&server, client_id),
            client_name: nats::text(h, header::CLIENT_NAME).unwrap_or("").into(),
            frame_id: nats::number(h, header::FRAME_ID)?,
            width: dim(header::WIDTH)?,
            height: dim(header::HEIGHT)?,
            jpeg: msg.payload.clone(),
            age,
            arrived: Instant::now(),
            reply: None,
        })
    })();
    let max_age = nats::number(h, header::MAX_AGE_US)
        .ok()
        .map(Duration::from_micros);
    Ok(Given {
        results,
        token,
        server,
        frame_id,
        frame,
        max_age,
    })
}

fn client_key(server: &str, client: u64) -> ClientId {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (server, client).hash(&mut h);
    h.finish()
}

/// Processes one frame and publishes its result.
fn handle(
    msg: Message,
    processor: &mut dyn Processor,
    broker: &Broker,
    config: &WorkerConfig,
    counts: &Counts,
    clients: &mut HashMap<ClientId, Instant>,
    pixels: &mut Vec<u8>,
) {
    let received = Instant::now();
    let given = match parse(msg) {
        Ok(g) => g,
        Err(e) => {
            // Nowhere to answer: the server's deadline answers the frame.
            warn!("a frame message without a results subject or token was dropped: {e:#}");
            return;
        }
    };
    let mut expired = false;
    let out = given.frame.and_then(|frame| {
        if clients.len() < 100_000 || clients.contains_key(&frame.client) {
            clients.insert(frame.client, Instant::now());
        }
        // Fresh when handed, here too: a frame over the server's threshold
        // when this worker takes it is answered `expired`, not processed.
        let age = frame.age_now();
        if let Some(max) = given.max_age.filter(|max| age > *max) {
            expired = true;
            return Ok(Output::Text(format!(
                "{:.0} ms old when a worker took it, over the {:.0} ms threshold",
                age.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            )));
        }
        let mut view = FrameView::reusing(frame, std::mem::take(pixels));
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            processor.process(&mut view)
        }))
        .unwrap_or_else(|panic| Err(anyhow!("panicked: {}", crate::logging::panic_text(&*panic))));
        *pixels = view.into_spare();
        out
    });
    let mut h = HeaderMap::new();
    h.insert(header::TOKEN, given.token.to_string());
    if let Some(id) = given.frame_id {
        h.insert(header::FRAME_ID, id.to_string());
    }
    h.insert(header::WORKER, config.name.as_str());
    let status = match (&out, expired) {
        (Err(_), _) => Status::Failed,
        (Ok(_), true) => Status::Expired,
        (Ok(_), false) => Status::Processed,
    };
    let (kind, payload) = match out {
        Ok(Output::None) => ("none", Bytes::new()),
        Ok(Output::Json(s)) => ("json", Bytes::from(s)),
        Ok(Output::Text(s)) => ("text", Bytes::from(s)),
        Ok(Output::Jpeg(b)) => ("jpeg", b),
        Err(e) => {
            debug!("frame failed: {e:#}");
            ("text", Bytes::from(format!("{}: {e:#}", processor.name())))
        }
    };
    h.insert(header::STATUS, status.as_str());
    h.insert(header::KIND, kind);
    let took = received.elapsed();
    h.insert(header::PROCESSING_US, (took.as_micros() as u64).to_string());
    if let Err(e) = broker.publish(given.results, h, payload) {
        warn!("{e:#}");
    }
    counts.record(took, &given.server, status);
}

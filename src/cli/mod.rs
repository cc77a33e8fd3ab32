//! Command lines of both programs (clap derive; the help text is the doc
//! comments), turned into validated configs that tests can also build directly.

use crate::client::source::{CameraFormat, SourceConfig, SourceKind};
use crate::client::ClientConfig;
use crate::media::encode::{EncoderKind, Subsampling};
use crate::server::process::exec::ExecInput;
use crate::server::process::{ProcessorConfig, ProcessorKind};
use crate::server::record::RecordConfig;
use crate::server::ServerConfig;
use crate::wire::auth::Token;
use crate::wire::host_name;
use crate::DEFAULT_PORT;
use anyhow::{bail, Result};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The flags both programs share.
#[derive(Debug, clap::Args)]
pub struct CommonOpts {
    /// Shared secret both sides prove they know (it never crosses the wire); the server's
    /// live view wants it too (`?token=` or `Authorization: Bearer`). Default: FRAMELINK_TOKEN.
    #[arg(long, value_name = "SECRET")]
    pub token: Option<String>,

    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// Seconds between status lines; 0 turns them off.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub stats_interval: f64,

    /// Write the final summary to this file as one JSON object.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

impl CommonOpts {
    /// `--summary-json`, checked at start: its folder must exist, so a run
    /// does not end by failing to write what it measured.
    pub fn summary_json(&self) -> Result<Option<PathBuf>> {
        if let Some(p) = &self.summary_json {
            writable_file("--summary-json", p)?;
        }
        Ok(self.summary_json.clone())
    }

    /// `--duration`, checked.
    pub fn duration(&self) -> Result<Option<Duration>> {
        self.duration.map(|d| seconds("--duration", d)).transpose()
    }

    /// `--stats-interval`, checked (None: no status lines).
    pub fn stats_interval(&self) -> Result<Option<Duration>> {
        interval(self.stats_interval)
    }

    /// `--token`, or `FRAMELINK_TOKEN` when the flag is not given.
    pub fn token(&self) -> Result<Option<Token>> {
        Token::from_flag_or_env(self.token.as_deref())
    }
}

/// Receive live camera frames from framelink clients: measure each frame's
/// age on arrival, drop stale ones, and show and process the newest.
#[derive(Debug, Parser)]
#[command(name = "framelink-server", version)]
pub struct ServerOpts {
    /// Address and port to listen on: ADDRESS:PORT, HOST:PORT, :PORT or PORT (all addresses),
    /// or ADDRESS (port 1998).
    #[arg(long, default_value = "0.0.0.0:1998", value_parser = listen_address)]
    pub listen: SocketAddr,

    /// Frames older than this on arrival (capture to fully received) are dropped as stale
    /// (1 to 3 600 000: an hour).
    #[arg(long, default_value_t = 80, value_name = "MS",
          value_parser = clap::value_parser!(u32).range(1..=3_600_000))]
    pub max_latency_ms: u32,

    /// Largest frame accepted, in bytes; a client announcing a larger one is disconnected.
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub max_frame_bytes: u32,

    /// Largest frame accepted in pixels (width x height, at most 67108864 = 8192x8192): a
    /// larger frame is rejected before anything decodes it. Default 16777216 (4096x4096).
    #[arg(long, default_value_t = crate::media::DEFAULT_MAX_PIXELS, value_name = "PIXELS")]
    pub max_pixels: u64,

    /// Most clients connected at once; one more is told the server is full.
    #[arg(long, default_value_t = 64)]
    pub max_clients: usize,

    /// Tickets kept outstanding per client: 1 is stop-and-wait (one frame per round trip);
    /// more lets a long link carry the camera's full rate.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub window: u16,

    /// Seconds a client has for its whole handshake, and for each whole message once its first
    /// byte arrived, before it is dropped (a trickle counts as a stall).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub io_timeout: f64,

    /// Run without a window (no display is needed).
    #[arg(long)]
    pub no_display: bool,

    /// What runs on each client's newest frame, its result going back to that client:
    /// `count`, `motion` (a motion detector: score and bounding box), `exec:COMMAND`
    /// (your program, fed frames on stdin, answering on stdout; see the README), or
    /// `nats://HOST:PORT`: a pool of framelink-workers behind that NATS broker.
    #[arg(long, default_value = "count", value_name = "NAME")]
    pub processor: ProcessorKind,

    #[command(flatten)]
    pub processing: ProcessorOpts,

    /// Record accepted frames (the JPEG bytes as they arrived) under DIR/CLIENT/, with an index.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// Most megabytes of JPEG kept under --record: the oldest files are deleted first.
    #[arg(long, value_name = "MB", requires = "record")]
    pub record_max_mb: Option<u64>,

    /// Serve the live view on this address: a page with every client's video and figures,
    /// `/stats.json` and `/metrics` (Prometheus). Example: 0.0.0.0:8080, or 8080 for all
    /// addresses.
    #[arg(long, value_name = "ADDR", value_parser = listen_address)]
    pub http: Option<SocketAddr>,

    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// This server's id in a worker pool: results come back on `PREFIX.results.ID`
    /// (default: host name and process id). Letters, digits, '-' and '_'.
    #[arg(long, value_name = "ID")]
    pub server_id: Option<String>,

    #[command(flatten)]
    pub nats: NatsOpts,

    #[command(flatten)]
    pub common: CommonOpts,
}

/// Process frames for framelink servers as one worker of a pool behind NATS: ask for a
/// frame when free, run the processor on it, send the result back.
#[cfg(feature = "nats")]
#[derive(Debug, Parser)]
#[command(name = "framelink-worker", version)]
pub struct WorkerOpts {
    /// The NATS broker the servers use: nats://HOST:PORT (comma-separated for a cluster;
    /// tls://HOST:PORT to require TLS).
    #[arg(long, value_name = "URL")]
    pub nats: String,

    /// What runs on each frame: `count`, `motion` or `exec:COMMAND` (as on the server).
    #[arg(long, default_value = "count", value_name = "NAME")]
    pub processor: ProcessorKind,

    #[command(flatten)]
    pub processing: ProcessorOpts,

    /// Frames processed at once, each by its own processor (an `exec:` program each).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub concurrency: usize,

    /// This worker's name in logs and results (default: host name and process id).
    #[arg(long)]
    pub name: Option<String>,

    #[command(flatten)]
    pub nats_opts: NatsOpts,

    #[command(flatten)]
    pub common: CommonOpts,
}

#[cfg(feature = "nats")]
impl WorkerOpts {
    pub fn config(&self) -> Result<crate::worker::WorkerConfig> {
        if !self.nats.contains("://") {
            bail!(
                "--nats {:?}: give a URL, e.g. nats://127.0.0.1:4222",
                self.nats
            );
        }
        if matches!(self.processor, ProcessorKind::Pool(_)) {
            bail!("--processor names what runs on each frame: count, motion or exec:COMMAND");
        }
        if !(1..=256).contains(&self.concurrency) {
            bail!("--concurrency must be 1..=256, got {}", self.concurrency);
        }
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            bail!("--name must be 1 to 128 bytes with no control characters");
        }
        Ok(crate::worker::WorkerConfig {
            nats: self
                .nats_opts
                .config(&self.nats, format!("framelink-worker {name}"))?,
            processor: self.processing.config(&self.processor)?,
            concurrency: self.concurrency,
            name,
            wait: Duration::from_secs(1),
            stats_interval: self.common.stats_interval()?,
            summary_json: self.common.summary_json()?,
        })
    }

    pub fn duration(&self) -> Result<Option<Duration>> {
        self.common.duration()
    }
}

/// How a processor runs (the server's, a worker's).
#[derive(Debug, clap::Args)]
pub struct ProcessorOpts {
    /// Seconds an `exec:` processor may take on one frame before it is killed and restarted;
    /// on a server with a pool, seconds a worker may hold a frame before it is answered
    /// `failed`.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub process_timeout: f64,

    /// What an `exec:` processor is fed: `jpeg` (as it arrived) or `gray` (decoded 8-bit pixels).
    #[arg(long, value_enum, default_value = "jpeg")]
    pub exec_input: ExecInput,
}

impl ProcessorOpts {
    /// `--process-timeout`, checked.
    pub fn timeout(&self) -> Result<Duration> {
        seconds("--process-timeout", self.process_timeout)
    }

    /// The settings of a processor of this `kind`, checked.
    pub fn config(&self, kind: &ProcessorKind) -> Result<ProcessorConfig> {
        Ok(ProcessorConfig {
            kind: kind.clone(),
            timeout: self.timeout()?,
            exec_input: self.exec_input,
        })
    }
}

/// How to reach a NATS broker (the server's pool, the worker).
#[derive(Debug, clap::Args)]
pub struct NatsOpts {
    /// A NATS credentials file (JWT and NKey seed, `.creds`).
    #[arg(long, value_name = "PATH")]
    pub nats_creds: Option<PathBuf>,

    /// Trust this CA (PEM) for the NATS broker's TLS certificate (and require TLS).
    #[arg(long, value_name = "PEM")]
    pub nats_tls_ca: Option<PathBuf>,

    /// The first part of every NATS subject: pools on one broker with different
    /// prefixes stay apart.
    #[arg(long, default_value = crate::nats::DEFAULT_PREFIX, value_name = "PREFIX")]
    pub nats_prefix: String,
}

impl NatsOpts {
    /// The broker settings for `url`, checked.
    pub fn config(&self, url: &str, name: String) -> Result<crate::nats::NatsConfig> {
        crate::nats::check_token("--nats-prefix", &self.nats_prefix, true)?;
        if let Some(p) = &self.nats_creds {
            if !p.is_file() {
                bail!("--nats-creds {}: no such file", p.display());
            }
        }
        if let Some(p) = &self.nats_tls_ca {
            if !p.is_file() {
                bail!("--nats-tls-ca {}: no such file", p.display());
            }
        }
        Ok(crate::nats::NatsConfig {
            url: url.to_string(),
            creds: self.nats_creds.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            prefix: self.nats_prefix.clone(),
            name,
        })
    }
}

impl ServerOpts {
    /// Binds `--listen` and `--http` (both before anything is printed, so a
    /// taken port fails at once), with the reason a user can act on.
    pub fn bind(&self) -> Result<(std::net::TcpListener, Option<std::net::TcpListener>)> {
        let bind = |addr: SocketAddr, flag| {
            std::net::TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!(bind_error(addr, flag, &e)))
        };
        let listener = bind(self.listen, "--listen")?;
        let http = self.http.map(|a| bind(a, "--http")).transpose()?;
        Ok((listener, http))
    }

    pub fn config(&self) -> Result<ServerConfig> {
        if self.max_frame_bytes < 64 {
            bail!("--max-frame-bytes must be at least 64");
        }
        if self.max_pixels == 0 || self.max_pixels > crate::media::decode::MAX_DECODE_PIXELS {
            bail!(
                "--max-pixels must be 1..={} (8192x8192)",
                crate::media::decode::MAX_DECODE_PIXELS
            );
        }
        if self.max_clients == 0 {
            bail!("--max-clients must be at least 1");
        }
        if self.window == 0 || self.window > 64 {
            bail!("--window must be 1..=64");
        }
        if let Some(http) = self.http {
            let overlap = http.ip() == self.listen.ip()
                || http.ip().is_unspecified()
                || self.listen.ip().is_unspecified();
            if http.port() == self.listen.port() && http.port() != 0 && overlap {
                bail!(
                    "--http {http} is the port of --listen {}: give the live view a port of its own, e.g. --http 8080",
                    self.listen
                );
            }
        }
        Ok(ServerConfig {
            kernel_arrival: true,
            max_age: Duration::from_millis(self.max_latency_ms as u64),
            max_frame_bytes: self.max_frame_bytes,
            max_pixels: self.max_pixels,
            max_clients: self.max_clients,
            window: self.window,
            io_timeout: seconds("--io-timeout", self.io_timeout)?,
            stats_interval: self.common.stats_interval()?,
            summary_json: self.common.summary_json()?,
            token: self.common.token()?,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(crate::wire::tls::server_config(cert, key)?),
                _ => None,
            },
            processor: self.processing.config(&self.processor)?,
            pool: match &self.processor {
                ProcessorKind::Pool(url) => {
                    let server_id = self
                        .server_id
                        .clone()
                        .unwrap_or_else(crate::nats::default_server_id);
                    crate::nats::check_token("--server-id", &server_id, false)?;
                    Some(crate::nats::PoolConfig {
                        nats: self
                            .nats
                            .config(url, format!("framelink-server {server_id}"))?,
                        server_id,
                        timeout: self.processing.timeout()?,
                    })
                }
                _ => {
                    if self.server_id.is_some() {
                        bail!("--server-id names this server in a worker pool: give --processor nats://HOST:PORT too");
                    }
                    None
                }
            },
            record: match &self.record {
                Some(dir) if dir.exists() && !dir.is_dir() => {
                    bail!("--record {}: that is not a folder", dir.display())
                }
                Some(dir) => Some(RecordConfig {
                    dir: dir.clone(),
                    max_bytes: match self.record_max_mb {
                        Some(0) => bail!("--record-max-mb must be at least 1"),
                        Some(mb) => Some(mb.saturating_mul(1_000_000)),
                        None => None,
                    },
                }),
                None => None,
            },
        })
    }

    pub fn duration(&self) -> Result<Option<Duration>> {
        self.common.duration()
    }
}

/// Stream live camera frames to a framelink server, newest first: a frame
/// replaced before it could be sent is never sent.
#[derive(Debug, Parser)]
#[command(name = "framelink-client", version)]
pub struct ClientOpts {
    /// The server, as HOST or HOST:PORT (default port 1998); or several, comma-separated
    /// (`hostA,hostB:2000`): the client uses the first that takes it and moves to the next
    /// when one is down, full or refuses it.
    #[arg(required_unless_present = "list_cameras")]
    pub server: Option<String>,

    /// Where frames come from: `camera`, `test-pattern` (synthetic, needs nothing), `-` (an
    /// MJPEG stream on standard input, e.g. from `rpicam-vid --codec mjpeg -o -` or ffmpeg),
    /// an `http://` MJPEG stream (IP camera, ESP32-CAM, mjpg-streamer), an `rtsp://` camera
    /// or `ffmpeg:ARGS` (any input ffmpeg reads, e.g. 'ffmpeg:-i video.mp4'; needs ffmpeg), a
    /// JPEG or PNG file (sent again and again), or a folder of them (name order, looped).
    #[arg(long, default_value = "camera")]
    pub source: SourceKind,

    /// Which camera: an index, a device path (`/dev/video2`), or part of its name
    /// (`--list-cameras` shows them).
    #[arg(long, default_value = "0", value_name = "INDEX|PATH|NAME")]
    pub camera: String,

    /// List the cameras (index, name, device path, and every format, size and rate each
    /// offers), then exit.
    #[arg(long)]
    pub list_cameras: bool,

    /// Pixel format to ask the camera for: `auto` prefers MJPEG, which is sent as the camera
    /// made it (no decode, no re-encode).
    #[arg(long, value_enum, default_value_t = CameraFormat::Auto)]
    pub camera_format: CameraFormat,

    /// Frame width: the camera picks its closest mode.
    #[arg(long, default_value_t = 640)]
    pub width: u32,

    /// Frame height: the camera picks its closest mode.
    #[arg(long, default_value_t = 480)]
    pub height: u32,

    /// Frames a second to capture; 0 means as fast as possible (test pattern and folder only).
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,

    /// JPEG quality, 1-100, for frames this client encodes.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,

    /// JPEG encoder for frames this client encodes: `auto` is libjpeg-turbo when built in.
    #[arg(long, value_enum, default_value_t = EncoderKind::Auto)]
    pub encoder: EncoderKind,

    /// Threads encoding frames, released in capture order (1..=16). Default: one per
    /// core for a source that makes frames on demand (`--fps 0`: the test pattern, files,
    /// a folder), where more encoders mean more frames (BENCHMARKS.md); one at a paced
    /// rate, where one keeps up and a second would cost CPU for nothing.
    #[arg(long, value_name = "N")]
    pub encode_threads: Option<usize>,

    /// Chroma subsampling for frames encoded with libjpeg-turbo.
    #[arg(long, value_enum, default_value_t = Subsampling::S420)]
    pub subsampling: Subsampling,

    /// Name shown by the server for this client (default: this machine's host name).
    #[arg(long)]
    pub name: Option<String>,

    #[command(flatten)]
    pub common: CommonOpts,

    /// Write every processing result the server sends back as one JSON line to this file
    /// (`-` for standard output), with its capture→result time.
    #[arg(long, value_name = "PATH")]
    pub results_jsonl: Option<PathBuf>,

    /// Save results that are pictures (e.g. annotated frames) in this folder as FRAME_ID.jpg.
    #[arg(long, value_name = "DIR")]
    pub save_results: Option<PathBuf>,

    /// Adapt to the link: lower JPEG quality, then the frame size, then the frame rate when
    /// frames arrive too old for the server, and step back up when there is headroom.
    #[arg(long, value_enum, default_value = "on", value_name = "on|off")]
    pub adapt: OnOff,

    /// The lowest JPEG quality adaptation may use (1-100, at most --quality).
    #[arg(long, default_value_t = 30, value_name = "Q",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub min_quality: u8,

    /// The narrowest frame adaptation may send, in pixels.
    #[arg(long, default_value_t = 320, value_name = "PIXELS")]
    pub min_width: u32,

    /// Connect with TLS, trusting the server certificate (or its CA) in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,

    /// The name the server's certificate must carry (default: the host in SERVER).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_name: Option<String>,

    /// Seconds to wait for the server to accept a connection.
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub connect_timeout: f64,

    /// Seconds the server may stall mid-message, and a send may block, before reconnecting.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub io_timeout: f64,

    /// Longest wait, in seconds, between reconnection attempts.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub max_backoff: f64,

    /// Status lines: `compact` (link state, accepted fps, drops, age p99, rate, setting,
    /// results) or `detailed` (every figure: sent, superseded, transit, age p50, last result).
    #[arg(long, value_enum, default_value_t = StatusStyle::Compact)]
    pub status: StatusStyle,
}

/// How much a client status line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusStyle {
    Compact,
    Detailed,
}

impl ClientOpts {
    /// Parses the command line, and says which of the flags given there do
    /// not apply to the source chosen (so none is silently ignored).
    pub fn parse_noting_ignored() -> (Self, Vec<String>) {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().get_matches();
        let opts = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let given =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let ignored = opts.ignored_flags(given);
        (opts, ignored)
    }

    /// The flags `given` on the command line that the chosen source does not
    /// use, each with why.
    pub fn ignored_flags(&self, given: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        // `id` is the field's name, as clap knows the flag.
        let mut not = |id: &str, why: &str| {
            if given(id) {
                out.push(format!("--{} does not apply: {why}", id.replace('_', "-")));
            }
        };
        match &self.source {
            SourceKind::Folder(_) => {
                let why = "the folder's files are sent at their own size";
                not("width", why);
                not("height", why);
                not(
                    "quality",
                    "JPEG files are sent as they are (only PNG files are encoded at --quality)",
                );
                not("camera", "the source is a folder");
                not("camera_format", "the source is a folder");
            }
            SourceKind::TestPattern => {
                not("camera", "the source is the test pattern");
                not("camera_format", "the source is the test pattern");
            }
            SourceKind::Stdin | SourceKind::Http(_) | SourceKind::Ffmpeg(_) => {
                let why = "the stream's JPEG frames are sent as they are";
                not("width", why);
                not("height", why);
                not("quality", why);
                not("fps", "the stream sets the rate");
                not("camera", "the source is a stream");
                not("camera_format", "the source is a stream");
            }
            SourceKind::Camera => {}
        }
        out
    }

    pub fn config(&self) -> Result<ClientConfig> {
        if !(self.fps >= 0.0 && self.fps <= 1000.0) {
            bail!("--fps must be 0..=1000, got {}", self.fps);
        }
        crate::client::check_size(self.width, self.height)?;
        let name = self.name.clone().unwrap_or_else(host_name);
        if name.is_empty()
            || name.len() > crate::wire::MAX_NAME_BYTES
            || name.chars().any(char::is_control)
        {
            bail!(
                "--name must be 1 to {} bytes with no control characters",
                crate::wire::MAX_NAME_BYTES
            );
        }
        Ok(ClientConfig {
            server: server_list(self.server.as_deref().unwrap_or_default())?,
            name,
            source: SourceConfig {
                kind: self.source.clone(),
                camera: self.camera.clone(),
                camera_format: self.camera_format,
                width: self.width,
                height: self.height,
                fps: self.fps,
            },
            quality: self.quality,
            encoder: self.encoder,
            subsampling: self.subsampling,
            encode_threads: match self.encode_threads {
                Some(n @ 1..=16) => n,
                Some(n) => bail!("--encode-threads must be 1..=16, got {n}"),
                None => default_encode_threads(self.fps),
            },
            connect_timeout: seconds("--connect-timeout", self.connect_timeout)?,
            io_timeout: seconds("--io-timeout", self.io_timeout)?,
            max_backoff: seconds("--max-backoff", self.max_backoff)?,
            stats_interval: self.common.stats_interval()?,
            summary_json: self.common.summary_json()?,
            results_jsonl: self.results_jsonl.clone(),
            save_results: self.save_results.clone(),
            adapt: self.adapt == OnOff::On,
            detailed_status: self.status == StatusStyle::Detailed,
            token: self.common.token()?,
            // Both are 1..=100 by their value parsers.
            min_quality: match self.min_quality {
                q if q > self.quality => bail!(
                    "--min-quality {q} is above --quality {}: adaptation lowers quality from \
                     --quality down to --min-quality",
                    self.quality
                ),
                q => q,
            },
            min_width: match self.min_width {
                w @ 16..=65535 => w,
                w => bail!("--min-width must be 16..=65535, got {w}"),
            },
            tls: match &self.tls_ca {
                Some(ca) => Some(crate::client::ClientTls {
                    config: crate::wire::tls::client_config(ca)?,
                    name: match &self.tls_name {
                        Some(n) => Some(crate::wire::tls::server_name(n)?),
                        None => {
                            // Each server's own host is checked when connecting to it:
                            // check here that every one can be a certificate's name.
                            for s in
                                server_list(self.server.as_deref().unwrap_or_default())?.split(',')
                            {
                                crate::wire::tls::server_name(s)?;
                            }
                            None
                        }
                    },
                }),
                None => None,
            },
        })
    }

    pub fn duration(&self) -> Result<Option<Duration>> {
        self.common.duration()
    }
}

/// A switch on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// The server address as given, checked at start (retrying cannot fix a
/// malformed one), with the default port added when it has none.
pub fn server_address(server: &str) -> Result<String> {
    let form = "give HOST or HOST:PORT, e.g. 192.168.1.20 or jetson.local:1998";
    if server.trim().is_empty() {
        bail!("the server address is empty: {form}");
    }
    if server.contains("://") {
        bail!("the server address {server:?} is a URL: {form}");
    }
    if server.chars().any(char::is_whitespace) {
        bail!("the server address {server:?} has spaces in it: {form}");
    }
    let unbracketed_v6 = server.parse::<std::net::Ipv6Addr>().is_ok();
    if let Some((host, port)) = server.rsplit_once(':').filter(|_| !unbracketed_v6) {
        if host.is_empty() {
            bail!("the server address {server:?} has no host: {form}");
        }
        if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) {
            match port.parse::<u16>() {
                Ok(0) | Err(_) => bail!("the port in {server:?} is not 1-65535: {form}"),
                Ok(_) => {}
            }
        }
    }
    Ok(with_default_port(server))
}

/// A comma-separated list of servers, each checked by [`server_address`]
/// and given the default port: `a,b:2000` → `a:1998,b:2000`.
pub fn server_list(servers: &str) -> Result<String> {
    let list = servers
        .split(',')
        .map(server_address)
        .collect::<Result<Vec<_>>>()?;
    Ok(list.join(","))
}

/// Parses an address to listen on: `ADDRESS:PORT`, `HOST:PORT` (resolved),
/// `:PORT` or `PORT` (all IPv4 addresses), or an IP address alone (port 1998).
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
    let form = "give ADDRESS:PORT, HOST:PORT, :PORT or PORT, e.g. 0.0.0.0:1998 or 1998";
    let text = text.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let port_only = text.strip_prefix(':').unwrap_or(text);
    if !port_only.is_empty() && port_only.chars().all(|c| c.is_ascii_digit()) {
        return match port_only.parse::<u16>() {
            Ok(p) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p)),
            Err(_) => Err(format!("the port in {text:?} is not 0-65535: {form}")),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => text
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host:?}: {e}: {form}"))?
            .next()
            .ok_or_else(|| format!("{host:?} resolves to no address: {form}")),
        _ => Err(format!("{text:?} is not an address to listen on: {form}")),
    }
}

/// Says why binding `addr` failed in words that name the fix.
pub fn bind_error(addr: SocketAddr, flag: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: the port is in use (another server?); choose another with {flag}"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {addr}: this machine has no address {}; use one of its own, or 0.0.0.0 for all, with {flag}",
            addr.ip()
        ),
        ErrorKind::PermissionDenied => format!(
            "cannot listen on {addr}: permission denied (ports below 1024 need privileges); choose another with {flag}"
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    }
}

/// `HOST` → `HOST:1998`; `HOST:PORT` and `[v6]:PORT` stay; a bare IPv6
/// address gets brackets.
pub fn with_default_port(server: &str) -> String {
    if server.parse::<SocketAddr>().is_ok() {
        return server.to_string();
    }
    if server.parse::<std::net::Ipv6Addr>().is_ok() {
        return format!("[{server}]:{DEFAULT_PORT}");
    }
    if server.starts_with('[') && server.ends_with(']') {
        return format!("{server}:{DEFAULT_PORT}");
    }
    match server.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => server.to_string(),
        _ => format!("{server}:{DEFAULT_PORT}"),
    }
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    if !(s > 0.0 && s < 1e9) {
        bail!("{flag} must be a positive number of seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Checks at start that `path` names a file that can be created: its
/// folder exists and it is not itself a folder.
pub fn writable_file(flag: &str, path: &std::path::Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("{flag} {}: that is a folder, not a file", path.display());
    }
    Ok(())
}

fn interval(s: f64) -> Result<Option<Duration>> {
    if s == 0.0 {
        Ok(None)
    } else {
        seconds("--stats-interval", s).map(Some)
    }
}

/// `--encode-threads` when not given: one per core (at most 16) for an
/// on-demand source (`--fps 0`), else one.
fn default_encode_threads(fps: f64) -> usize {
    if fps == 0.0 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_take_the_forms_people_type() {
        let all = |p| SocketAddr::from(([0, 0, 0, 0], p));
        assert_eq!(listen_address("21997"), Ok(all(21997)));
        assert_eq!(listen_address(":21997"), Ok(all(21997)));
        assert_eq!(listen_address("0.0.0.0:1998"), Ok(all(1998)));
        assert_eq!(
            listen_address("127.0.0.1"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 1998)))
        );
        assert_eq!(listen_address("localhost:5").unwrap().port(), 5);
        assert_eq!(listen_address("[::1]:7").unwrap().port(), 7);
        for bad in ["", "abc", "99999", "host:port", "tcp://1.2.3.4:5"] {
            let e = listen_address(bad).unwrap_err();
            assert!(e.contains("give ADDRESS:PORT"), "{bad:?}: {e}");
        }
        let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        assert!(bind_error(all(1), "--listen", &in_use).contains("in use"));
        let absent = std::io::Error::from(std::io::ErrorKind::AddrNotAvailable);
        assert!(bind_error(all(1), "--listen", &absent).contains("no address 0.0.0.0"));
    }

    #[test]
    fn a_malformed_server_address_is_refused_at_start() {
        for bad in [
            "",
            " ",
            "127.0.0.1:99999",
            "10.0.0.2:0",
            "tcp://10.0.0.2:1998",
            ":1998",
        ] {
            let e = server_address(bad).unwrap_err().to_string();
            assert!(e.contains("HOST:PORT"), "{bad:?}: {e}");
        }
        assert_eq!(server_address("10.0.0.2").unwrap(), "10.0.0.2:1998");
        assert_eq!(server_address("::1").unwrap(), "[::1]:1998");
        assert_eq!(server_address("[::1]:5").unwrap(), "[::1]:5");
        assert_eq!(
            server_address("jetson.local:80").unwrap(),
            "jetson.local:80"
        );
        let e = ClientOpts::parse_from(["c", "127.0.0.1:99999"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not 1-65535"), "{e}");
    }

    #[test]
    fn a_server_list_gets_default_ports_and_each_entry_is_checked() {
        assert_eq!(
            server_list("a,b:2000,::1").unwrap(),
            "a:1998,b:2000,[::1]:1998"
        );
        let c = ClientOpts::parse_from(["c", "a,b:7"]).config().unwrap();
        assert_eq!(c.servers(), ["a:1998", "b:7"]);
        for bad in ["a,", ",a", "a,,b", "a,b:0"] {
            assert!(server_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_port_is_added_only_when_missing() {
        assert_eq!(with_default_port("10.0.0.2"), "10.0.0.2:1998");
        assert_eq!(with_default_port("10.0.0.2:7000"), "10.0.0.2:7000");
        assert_eq!(with_default_port("jetson.local"), "jetson.local:1998");
        assert_eq!(with_default_port("jetson.local:80"), "jetson.local:80");
        assert_eq!(with_default_port("::1"), "[::1]:1998");
        assert_eq!(with_default_port("[::1]"), "[::1]:1998");
        assert_eq!(with_default_port("[::1]:5"), "[::1]:5");
    }

    #[test]
    fn the_live_view_cannot_share_the_port_of_the_frames() {
        let config = |args: &[&str]| {
            let mut all = vec!["framelink-server"];
            all.extend(args);
            ServerOpts::parse_from(all).config()
        };
        let e = config(&["--http", "1998"]).unwrap_err().to_string();
        assert!(e.contains("is the port of --listen"), "{e}");
        assert!(config(&["--listen", "127.0.0.1:7000", "--http", "0.0.0.0:7000"]).is_err());
        assert!(config(&["--http", "8080"]).is_ok());
        // Two addresses of their own may share a number.
        assert!(config(&["--listen", "127.0.0.1:7000", "--http", "127.0.0.2:7000"]).is_ok());
    }

    #[test]
    fn server_defaults_match_the_documented_ones() {
        let c = ServerOpts::parse_from(["framelink-server"])
            .config()
            .unwrap();
        assert_eq!(c.max_age, Duration::from_millis(80));
        assert_eq!(c.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_clients, 64);
        assert_eq!(
            ServerOpts::parse_from(["framelink-server"]).listen.port(),
            DEFAULT_PORT
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for q in ["0", "101", "300"] {
            let e = ClientOpts::try_parse_from(["c", "h", "--quality", q])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--quality") && e.contains("1..=100"), "{e}");
        }
        for ms in ["0", "1000000000"] {
            let e = ServerOpts::try_parse_from(["s", "--max-latency-ms", ms])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--max-latency-ms") && e.contains("1..=3600000"),
                "{e}"
            );
        }
        let e = ClientOpts::parse_from(["c", "h", "--quality", "50", "--min-quality", "90"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--min-quality 90 is above --quality 50"), "{e}");
        let e = ServerOpts::parse_from(["s", "--summary-json", "/no/such/folder/s.json"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--summary-json") && e.contains("does not exist"),
            "{e}"
        );
        let e = ServerOpts::parse_from(["s", "--record", "/dev/null"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--record /dev/null"), "{e}");
        for (w, h) in [
            ("65535", "65535"),
            ("8000", "8000"),
            ("9000", "100"),
            ("0", "480"),
        ] {
            let e = ClientOpts::parse_from(["c", "h", "--width", w, "--height", h])
                .config()
                .unwrap_err()
                .to_string();
            assert!(e.contains("--width"), "{w}x{h}: {e}");
        }
        assert!(
            ClientOpts::parse_from(["c", "h", "--width", "4096", "--height", "4096"])
                .config()
                .is_ok()
        );
        let e = ServerOpts::parse_from(["s", "--window", "0"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--window"), "{e}");
        let e = ClientOpts::parse_from(["c", "h", "--duration=-1"])
            .duration()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--duration"), "{e}");
    }

    #[test]
    fn flags_the_source_does_not_use_are_named() {
        let opts = ClientOpts::parse_from(["c", "h", "--source", "frames/", "--quality", "10"]);
        let ignored = opts.ignored_flags(|id| id == "quality");
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        assert!(
            ignored[0].contains("--quality does not apply"),
            "{ignored:?}"
        );
        let opts = ClientOpts::parse_from(["c", "h", "--source", "test-pattern", "--camera", "2"]);
        assert!(opts.ignored_flags(|id| id == "camera")[0].contains("--camera"));
        let opts = ClientOpts::parse_from(["c", "h", "--quality", "10"]);
        assert!(
            opts.ignored_flags(|id| id == "quality").is_empty(),
            "a camera encodes"
        );
    }

    #[test]
    fn source_flag_parses_the_three_kinds() {
        let src = |s: &str| ClientOpts::parse_from(["c", "h", "--source", s]).source;
        assert_eq!(src("camera"), SourceKind::Camera);
        assert_eq!(src("test-pattern"), SourceKind::TestPattern);
        assert_eq!(src("frames/"), SourceKind::Folder("frames/".into()));
    }

    #[test]
    fn encoders_default_to_the_cores_for_an_on_demand_source_only() {
        let threads = |args: &[&str]| {
            let mut all = vec!["c", "h"];
            all.extend(args);
            ClientOpts::parse_from(all).config().unwrap().encode_threads
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
        assert_eq!(threads(&["--fps", "0"]), cores);
        assert_eq!(threads(&[]), 1, "a paced source (30 fps) has one");
        assert_eq!(threads(&["--fps", "0", "--encode-threads", "1"]), 1);
        assert_eq!(threads(&["--encode-threads", "3"]), 3);
        let e = ClientOpts::parse_from(["c", "h", "--encode-threads", "0"])
            .config()
            .unwrap_err();
        assert!(e.to_string().contains("1..=16"), "{e}");
    }
}

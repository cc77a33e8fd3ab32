//! framelink-server's command line: [`ServerOpts`] → [`ServerConfig`], and binding its listeners.

use super::*;

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

    /// Serve the live view and the browser camera (`/camera`) over HTTPS with a certificate
    /// made at start for this machine's names and addresses; its SHA-256 fingerprint is
    /// printed, to compare with what the browser shows. For a LAN: a phone's browser gives
    /// its camera only to an https page. Frames over TCP stay as --tls-cert says.
    #[arg(long, requires = "http", conflicts_with = "tls_cert")]
    pub self_signed: bool,

    /// This server's id in a worker pool: results come back on `PREFIX.results.ID`
    /// (default: host name and process id). Letters, digits, '-' and '_'.
    #[arg(long, value_name = "ID")]
    pub server_id: Option<String>,

    #[command(flatten)]
    pub nats: NatsOpts,

    #[command(flatten)]
    pub common: CommonOpts,
}

impl ServerOpts {
    /// Binds `--listen` and `--http` (both before anything is printed, so a
    /// taken port fails at once), with the reason a user can act on.
    ///
    /// Under socket activation (a systemd `.socket` unit) the listeners it
    /// hands over are taken instead: the first for frames, a second for the
    /// live view (else `--http` is bound as usual).
    pub fn bind(&self) -> Result<(std::net::TcpListener, Option<std::net::TcpListener>)> {
        let bind = |addr: SocketAddr, flag| {
            std::net::TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!(bind_error(addr, flag, &e)))
        };
        let mut handed = crate::service::activated_listeners()?.into_iter();
        let listener = match handed.next() {
            Some(l) => {
                tracing::info!(
                    "socket activation: frames on the listener handed over ({})",
                    l.local_addr()?
                );
                l
            }
            None => bind(self.listen, "--listen")?,
        };
        let http = match handed.next() {
            Some(l) => {
                tracing::info!(
                    "socket activation: the live view on the listener handed over ({})",
                    l.local_addr()?
                );
                Some(l)
            }
            None => self.http.map(|a| bind(a, "--http")).transpose()?,
        };
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
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::wire::transport::tls::server_config(cert, key)?),
            _ => None,
        };
        let (http_tls, http_fingerprint) = match self.http {
            Some(http) if self.self_signed => {
                let mut names = vec!["localhost".to_string(), crate::wire::host_name()];
                names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
                names.extend(
                    crate::server::advertised_addresses(http)
                        .iter()
                        .map(|a| a.ip().to_string()),
                );
                names.sort();
                names.dedup();
                let (config, fingerprint) = crate::wire::transport::tls::self_signed(&names)?;
                (Some(config), Some(fingerprint))
            }
            _ => (tls.clone(), None),
        };
        Ok(ServerConfig {
            kernel_arrival: true,
            http_tls,
            http_fingerprint,
            max_age: Duration::from_millis(self.max_latency_ms as u64),
            max_frame_bytes: self.max_frame_bytes,
            max_pixels: self.max_pixels,
            max_clients: self.max_clients,
            window: self.window,
            io_timeout: seconds("--io-timeout", self.io_timeout)?,
            stats_interval: self.common.stats_interval()?,
            summary_json: self.common.summary_json()?,
            token: self.common.token()?,
            tls,
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

//! The broker link shared by the server's pool stage and `framelink-worker`:
//! subjects and header names of protocol.md's NATS section, and a NATS
//! connection driven by a small tokio runtime of its own, used from plain
//! threads.
//!
//! The exchange, in short (protocol.md, "A pool of workers through NATS"):
//!
//! ```text
//! worker ──request──▶ PREFIX.work  (queue group PREFIX.servers: one server gets it)
//!        ◀─reply──── a frame (headers + JPEG), or Framelink-Status: idle
//! worker ──publish──▶ PREFIX.results.SERVER-ID  (headers + result bytes)
//! ```
//!
//! A worker asks only when it is free, and the server answers with the
//! newest frame it has at that moment: the broker carries only frames that
//! are processed, and a frame never waits behind a busy worker.

use anyhow::{anyhow, Result};
#[cfg(feature = "nats")]
pub use broker::{number, text, Broker};
use std::path::PathBuf;
use std::time::Duration;

/// The subject prefix unless `--nats-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "framelink";

/// Header names (protocol.md lists them with their values).
pub mod header {
    pub const STATUS: &str = "Framelink-Status";
    pub const WAIT_MS: &str = "Framelink-Wait-Ms";
    pub const WORKER: &str = "Framelink-Worker";
    pub const SERVER: &str = "Framelink-Server";
    pub const RESULTS: &str = "Framelink-Results";
    pub const TOKEN: &str = "Framelink-Token";
    pub const FRAME_ID: &str = "Framelink-Frame-Id";
    pub const CLIENT_ID: &str = "Framelink-Client-Id";
    pub const CLIENT_NAME: &str = "Framelink-Client-Name";
    pub const WIDTH: &str = "Framelink-Width";
    pub const HEIGHT: &str = "Framelink-Height";
    pub const ENCODING: &str = "Framelink-Encoding";
    pub const AGE_US: &str = "Framelink-Age-Us";
    pub const HANDED_AGE_US: &str = "Framelink-Handed-Age-Us";
    pub const MAX_AGE_US: &str = "Framelink-Max-Age-Us";
    pub const DEADLINE_MS: &str = "Framelink-Deadline-Ms";
    pub const KIND: &str = "Framelink-Kind";
    pub const PROCESSING_US: &str = "Framelink-Processing-Us";
}

/// The subject free workers ask on.
pub fn work_subject(prefix: &str) -> String {
    format!("{prefix}.work")
}

/// The queue group every server answers work requests in.
pub fn servers_group(prefix: &str) -> String {
    format!("{prefix}.servers")
}

/// The subject a server takes results on.
pub fn results_subject(prefix: &str, server_id: &str) -> String {
    format!("{prefix}.results.{server_id}")
}

/// Checks a subject token we make subjects of (a prefix, a server id):
/// letters, digits, `-` and `_`, and dots between tokens for a prefix.
pub fn check_token(what: &str, text: &str, dots: bool) -> Result<()> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && (dots || !text.contains('.'));
    if ok {
        Ok(())
    } else {
        Err(anyhow!(
            "{what} {text:?} must be 1 to 128 letters, digits, '-' or '_'{}",
            if dots { " (dots between parts)" } else { "" }
        ))
    }
}

/// How to reach the broker.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://HOST:PORT` (several, comma-separated, for a NATS cluster;
    /// `tls://` to require TLS).
    pub url: String,
    /// A NATS credentials file (`.creds`: JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// Trust this CA (PEM) for the broker's TLS certificate.
    pub tls_ca: Option<PathBuf>,
    /// Subjects begin with this (`framelink`): pools on one broker stay apart.
    pub prefix: String,
    /// The name this connection shows in the broker's monitoring.
    pub name: String,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            creds: None,
            tls_ca: None,
            prefix: DEFAULT_PREFIX.into(),
            name: "framelink".into(),
        }
    }
}

/// The pool's settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub nats: NatsConfig,
    /// This server's id: its results subject is `PREFIX.results.ID`.
    pub server_id: String,
    /// The longest a worker may hold a frame before it is answered `failed`.
    pub timeout: Duration,
}

/// A default server id: the host name and process id, made subject-safe.
pub fn default_server_id() -> String {
    let host = crate::wire::host_name();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{host}-{}", std::process::id())
}

#[cfg(feature = "nats")]
mod broker {
    use super::NatsConfig;
    use anyhow::{anyhow, Context, Result};
    use async_nats::{Client, ConnectOptions, HeaderMap};
    use bytes::Bytes;
    use std::time::Duration;
    use tracing::{info, warn};

    /// A NATS connection and the runtime that drives it. Every method may be
    /// called from any plain thread (not from inside the runtime).
    pub struct Broker {
        rt: tokio::runtime::Runtime,
        client: Client,
        url: String,
    }

    impl Broker {
        /// Connects to `config.url`. With `wait_for_first` false the broker may
        /// be down at start: the connection is made in the background and
        /// retried until it is up (check [`is_connected`](Self::is_connected));
        /// with it true an unreachable broker fails here, with the reason.
        /// After the first connection, reconnecting is automatic either way.
        pub fn connect(config: &NatsConfig, wait_for_first: bool) -> Result<Broker> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("nats")
                .enable_all()
                .build()
                .context("cannot start the NATS runtime")?;
            let url = config.url.clone();
            let shown = url.clone();
            let client = rt.block_on(async {
            let mut options = match &config.creds {
                Some(path) => ConnectOptions::with_credentials_file(path)
                    .await
                    .with_context(|| format!("cannot read the NATS credentials file {}", path.display()))?,
                None => ConnectOptions::new(),
            };
            if let Some(ca) = &config.tls_ca {
                anyhow::ensure!(ca.is_file(), "the NATS TLS CA {} is not a readable file", ca.display());
                options = options.add_root_certificates(ca.clone()).require_tls(true);
            }
            options = options
                .name(&config.name)
                .connection_timeout(Duration::from_secs(5))
                // Requests carry their own timeouts.
                .request_timeout(None)
                .reconnect_delay_callback(|attempts| {
                    Duration::from_millis((100 * (1u64 << attempts.min(5))).min(2000))
                })
                .event_callback(move |event| {
                    let shown = shown.clone();
                    async move {
                        match event {
                            async_nats::Event::Connected => info!("NATS at {shown}: connected"),
                            async_nats::Event::Disconnected => {
                                warn!("NATS at {shown}: disconnected; reconnecting")
                            }
                            other => warn!("NATS at {shown}: {other}"),
                        }
                    }
                });
            if !wait_for_first {
                options = options.retry_on_initial_connect();
            }
            options.connect(url.as_str()).await.map_err(|e| {
                anyhow!("cannot connect to NATS at {url}: {e} (is nats-server running there? start one with `nats-server`)")
            })
        })?;
            Ok(Broker {
                rt,
                client,
                url: config.url.clone(),
            })
        }

        /// The URL as given.
        pub fn url(&self) -> &str {
            &self.url
        }

        /// Whether the connection is up now.
        pub fn is_connected(&self) -> bool {
            self.client.connection_state() == async_nats::connection::State::Connected
        }

        /// The broker's largest message (payload plus headers), once known.
        pub fn max_payload(&self) -> Option<usize> {
            self.client.try_server_info().map(|i| i.max_payload)
        }

        /// The client, for [`spawn`](Self::spawn)ed tasks and [`block_on`](Self::block_on).
        pub fn client(&self) -> &Client {
            &self.client
        }

        /// Runs `f` to completion on the broker's runtime. Blocks this thread.
        pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
            self.rt.block_on(f)
        }

        /// Runs `f` on the broker's runtime in the background; aborting the
        /// handle drops it.
        pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<()>
        where
            F: std::future::Future<Output = ()> + Send + 'static,
        {
            self.rt.spawn(f)
        }

        /// Publishes a message. Returns at once unless the client's outgoing
        /// buffer is full (then it waits for room, which the connection's task
        /// makes by writing, or by failing when disconnected too long).
        pub fn publish(&self, subject: String, headers: HeaderMap, payload: Bytes) -> Result<()> {
            self.rt
                .block_on(self.client.publish_with_headers(subject, headers, payload))
                .map_err(|e| anyhow!("cannot publish to NATS at {}: {e}", self.url))
        }

        /// Sends what is buffered, waiting at most `within`.
        pub fn flush(&self, within: Duration) {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(within, self.client.flush()).await });
        }
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            // Deliver what was published (a worker's last result) before the
            // runtime goes.
            self.flush(Duration::from_secs(1));
        }
    }

    /// A header's value as text, if present.
    pub fn text<'a>(h: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
        h.and_then(|h| h.get(name)).map(|v| v.as_str())
    }

    /// A header's value as a number.
    pub fn number(h: Option<&HeaderMap>, name: &str) -> Result<u64> {
        let v = text(h, name).ok_or_else(|| anyhow!("no {name} header"))?;
        v.trim()
            .parse()
            .map_err(|_| anyhow!("header {name} is not a number: {v:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_are_checked() {
        assert!(check_token("--server-id", "cam-box_1", false).is_ok());
        assert!(check_token("--nats-prefix", "site1.framelink", true).is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "é"] {
            assert!(check_token("--server-id", bad, false).is_err(), "{bad:?}");
        }
        assert!(check_token("--nats-prefix", "a..b", true).is_err());
        assert_eq!(results_subject("framelink", "s1"), "framelink.results.s1");
    }

    #[cfg(feature = "nats")]
    #[test]
    fn header_numbers_are_parsed_or_named() {
        use async_nats::HeaderMap;
        let mut h = HeaderMap::new();
        h.insert(header::FRAME_ID, "42");
        h.insert(header::WIDTH, "wide");
        assert_eq!(number(Some(&h), header::FRAME_ID).unwrap(), 42);
        let e = number(Some(&h), header::WIDTH).unwrap_err().to_string();
        assert!(e.contains("Framelink-Width"), "{e}");
        let e = number(None, header::TOKEN).unwrap_err().to_string();
        assert!(e.contains("no Framelink-Token"), "{e}");
    }
}

//! framelink-worker's command line: [`WorkerOpts`] → the worker's config.

use super::*;

/// Process frames for framelink servers as one worker of a pool behind NATS: ask for a
/// frame when free, run the processor on it, send the result back.
#[cfg(feature = "nats")]
#[derive(Debug, Parser)]
#[command(name = "framelink-worker", version)]
pub struct WorkerOpts {
    /// The NATS broker the servers use: nats://HOST:PORT (comma-separated for a cluster;
    /// tls://HOST:PORT to require TLS).
    #[arg(long, value_name = "URL", required_unless_present = "generate")]
    pub nats: Option<String>,

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
        let Some(url) = self.nats.as_deref() else {
            bail!("give the broker: --nats nats://HOST:PORT");
        };
        if !url.contains("://") {
            bail!("--nats {url:?}: give a URL, e.g. nats://127.0.0.1:4222");
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
                .config(url, format!("framelink-worker {name}"))?,
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

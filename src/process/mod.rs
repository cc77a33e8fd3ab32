//! Processing on the server: a [`Processor`] runs on each client's newest
//! accepted frame on the processing thread, and its [`Output`] goes back to
//! the client that sent the frame as a RESULT message.
//!
//! Processing is latest-only like everything else: a frame replaced by a
//! newer one from the same client before the processor got to it is never
//! processed, and its client is told so (status `skipped`).
//!
//! Built in: [`CountProcessor`] (`count`), [`motion::MotionProcessor`]
//! (`motion`) and [`exec::ExecProcessor`] (`exec:COMMAND`, an external
//! program fed over pipes).

pub mod count;
pub mod exec;
pub mod frame;
pub mod handoff_processor;
pub mod motion;
pub mod takers;

use crate::shutdown::Shutdown;
use crate::wire::{micros_u32, ProcessResult, ResultKind, ResultStatus};
use anyhow::{bail, Result};
use bytes::Bytes;
pub use count::CountProcessor;
use crossbeam_channel::Sender;
pub use frame::{ArrivedFrame, ClientId, FrameView};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a processor made of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Nothing to send back.
    None,
    /// One JSON value (UTF-8 text).
    Json(String),
    /// Plain UTF-8 text.
    Text(String),
    /// A JPEG image, for example the frame with boxes drawn on it.
    Jpeg(Bytes),
}

impl Output {
    /// `value` as a JSON result.
    pub fn json(value: &impl serde::Serialize) -> Self {
        Output::Json(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
    }

    pub(crate) fn into_wire(self) -> (ResultKind, Bytes) {
        match self {
            Output::None => (ResultKind::None, Bytes::new()),
            Output::Json(s) => (ResultKind::Json, Bytes::from(s)),
            Output::Text(s) => (ResultKind::Text, Bytes::from(s)),
            Output::Jpeg(b) => (ResultKind::Jpeg, b),
        }
    }
}

/// A user's algorithm: implement this to run your own code on every fresh
/// frame, and pass it to [`Server::processor`](crate::server::Server::processor).
///
/// It runs on the processing thread, one frame at a time. A slow processor
/// costs only results: frames that arrive meanwhile replace each other and
/// their clients are told they were skipped.
pub trait Processor: Send {
    fn name(&self) -> &str;

    /// Runs on one frame. Call `view.rgb()` for pixels (decoded once, shared).
    /// An error is sent back to the client as a `failed` result.
    fn process(&mut self, view: &mut FrameView) -> Result<Output>;

    /// The client disconnected: forget its state.
    fn client_left(&mut self, _client: ClientId) {}

    /// Blocks until the processor can start on a frame at once; false when
    /// `stop` came first. A pool worker asks for a frame only after this,
    /// so no frame waits for it. Default: ready at once.
    fn wait_ready(&mut self, _stop: &Shutdown) -> bool {
        true
    }
}

/// Which built-in processor to run, as `--processor` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorKind {
    Count,
    Motion,
    /// `exec:COMMAND`: run COMMAND with `sh -c` and feed it frames.
    Exec(String),
    /// `nats://HOST:PORT` (or `tls://`): hand frames to a pool of
    /// `framelink-worker`s through this NATS broker (server only).
    Pool(String),
}

impl std::str::FromStr for ProcessorKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "count" => ProcessorKind::Count,
            "motion" => ProcessorKind::Motion,
            _ if s.starts_with("nats://") || s.starts_with("tls://") => {
                if !cfg!(feature = "nats") {
                    bail!("this build has no NATS support: build with the `nats` feature (on by default)");
                }
                ProcessorKind::Pool(s.to_string())
            }
            _ => match s.strip_prefix("exec:") {
                Some(cmd) if !cmd.trim().is_empty() => ProcessorKind::Exec(cmd.trim().into()),
                Some(_) => bail!("exec: needs a command, e.g. exec:'python3 detector.py'"),
                None => bail!(
                    "unknown processor {s:?}: use count, motion, exec:COMMAND or nats://HOST:PORT"
                ),
            },
        })
    }
}

/// Settings for the built-in processors.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub kind: ProcessorKind,
    /// Longest an `exec` program may take on one frame before it is restarted.
    pub timeout: Duration,
    /// What an `exec` program is fed: the JPEG as it arrived, or gray pixels.
    pub exec_input: exec::ExecInput,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            kind: ProcessorKind::Count,
            timeout: Duration::from_secs(2),
            exec_input: exec::ExecInput::Jpeg,
        }
    }
}

/// Makes the processor `config` names; `stop` ends an `exec` program's run.
pub fn build(config: &ProcessorConfig, stop: &Shutdown) -> Result<Box<dyn Processor>> {
    Ok(match &config.kind {
        ProcessorKind::Count => Box::new(CountProcessor::default()),
        ProcessorKind::Motion => Box::new(motion::MotionProcessor::default()),
        ProcessorKind::Exec(cmd) => Box::new(exec::ExecProcessor::start(
            cmd,
            config.exec_input,
            config.timeout,
            stop.clone(),
        )?),
        ProcessorKind::Pool(url) => {
            bail!("{url} names a worker pool, which runs on the server, not as a processor")
        }
    })
}

/// Counters of the processing thread, readable from any thread.
#[derive(Debug, Default)]
pub struct ProcessingCounts {
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    /// Frames not handed because they grew older than the threshold in
    /// their slot (answered `expired`).
    pub expired: AtomicU64,
    /// When the processor started on the frame in hand (None: idle).
    busy_since: parking_lot::Mutex<Option<Instant>>,
}

/// A processor busy on one frame for longer than this has its skipped
/// frames answered with a note saying so: the client can tell a hung or
/// slow processor from frames that were merely replaced.
pub const BUSY_NOTE_AFTER: Duration = Duration::from_secs(1);

impl ProcessingCounts {
    /// How long the processor has been on the frame in hand, if it is on one.
    pub fn busy_for(&self) -> Option<Duration> {
        self.busy_since.lock().map(|t| t.elapsed())
    }

    /// The processor started on a frame at `since` (Some), or finished (None).
    pub(crate) fn set_busy(&self, since: Option<Instant>) {
        *self.busy_since.lock() = since;
    }
}

/// Where a handed frame's one RESULT goes, with the instants its timings
/// are taken from: `wait_us` from arrival to hand-off, `processing_us`
/// from hand-off to the answer.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    pub frame_id: u64,
    pub arrived: Instant,
    pub handed: Instant,
    /// None when the client did not ask for results.
    pub reply: Option<Sender<ProcessResult>>,
}

impl ReplyTo {
    /// The answer to `frame`, handed at `handed`.
    pub fn new(frame: &ArrivedFrame, handed: Instant) -> Self {
        ReplyTo {
            frame_id: frame.frame_id,
            arrived: frame.arrived,
            handed,
            reply: frame.reply.clone(),
        }
    }

    /// Sends the processor's `out` (`processed`), or its failure's text
    /// (`failed`), and counts it. False when the client's connection has
    /// closed (the count stands: the frame was processed or failed).
    pub fn send(self, out: Result<Output, String>, counts: &ProcessingCounts) -> bool {
        let (status, (kind, result)) = match out {
            Ok(o) => (ResultStatus::Processed, o.into_wire()),
            Err(text) => (ResultStatus::Failed, (ResultKind::Text, Bytes::from(text))),
        };
        self.send_raw(status, kind, result, counts)
    }

    /// Sends a RESULT as it is given (a pool worker's own status and
    /// kind), and counts it as processed, expired or failed.
    pub(crate) fn send_raw(
        self,
        status: ResultStatus,
        kind: ResultKind,
        result: Bytes,
        counts: &ProcessingCounts,
    ) -> bool {
        let counter = match status {
            ResultStatus::Processed => &counts.processed,
            ResultStatus::Expired => &counts.expired,
            _ => &counts.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let Some(reply) = self.reply else {
            return true;
        };
        // Never full (unbounded; the connection bounds what it owes).
        reply
            .try_send(ProcessResult {
                frame_id: self.frame_id,
                status,
                wait_us: micros_u32(self.handed.saturating_duration_since(self.arrived)),
                processing_us: micros_u32(self.handed.elapsed()),
                kind,
                result,
            })
            .is_ok()
    }
}

/// The RESULT for a frame that was `age` old when its turn came, over
/// the threshold `max_age`: it is not processed.
pub(crate) fn expired(frame: &ArrivedFrame, age: Duration, max_age: Duration) -> ProcessResult {
    ProcessResult {
        frame_id: frame.frame_id,
        status: ResultStatus::Expired,
        wait_us: micros_u32(frame.arrived.elapsed()),
        processing_us: 0,
        kind: ResultKind::Text,
        result: Bytes::from(format!(
            "{:.0} ms old when a processor was free, over the {:.0} ms threshold",
            age.as_secs_f64() * 1e3,
            max_age.as_secs_f64() * 1e3
        )),
    }
}

/// The RESULT for a frame that was replaced before the processor took it,
/// with a note when the processor has been `busy` on one frame for over
/// [`BUSY_NOTE_AFTER`] (the frame was replaced because the processor is
/// stuck or slow, not because frames come faster than it works).
pub(crate) fn skipped(frame_id: u64, busy: Option<Duration>) -> ProcessResult {
    let (kind, result) = match busy {
        Some(d) if d >= BUSY_NOTE_AFTER => (
            ResultKind::Text,
            Bytes::from(format!(
                "processor busy for {:.1} s on one frame",
                d.as_secs_f64()
            )),
        ),
        _ => (ResultKind::None, Bytes::new()),
    };
    ProcessResult {
        frame_id,
        status: ResultStatus::Skipped,
        wait_us: 0,
        processing_us: 0,
        kind,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_names_parse() {
        assert_eq!(
            "count".parse::<ProcessorKind>().unwrap(),
            ProcessorKind::Count
        );
        assert_eq!(
            "motion".parse::<ProcessorKind>().unwrap(),
            ProcessorKind::Motion
        );
        assert_eq!(
            "exec: python3 d.py".parse::<ProcessorKind>().unwrap(),
            ProcessorKind::Exec("python3 d.py".into())
        );
        assert!("exec:".parse::<ProcessorKind>().is_err());
        assert!("yolo".parse::<ProcessorKind>().is_err());
    }
}

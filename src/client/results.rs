//! The client's side of processing results: matching each RESULT to the
//! frame it answers (for capture → result time on the client's own clock),
//! `--results-jsonl` and `--save-results`.
//!
//! One JSON line per RESULT:
//!
//! ```text
//! {"frame_id":42,"status":"processed","capture_to_result_ms":6.81,"wait_ms":0.05,"processing_ms":2.3,"kind":"json","result":{"motion":0.031,"changed":146,"box":[312,232,72,56]}}
//! ```
//!
//! `kind` is `json` (`result` is the value), `jpeg` (`file` names the saved
//! picture with `--save-results`, else `bytes` its size), `text` (a failure's
//! message in `result`) or `none`.

use crate::wire::{ProcessResult, ResultKind, ResultStatus};
use anyhow::{Context, Result};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::warn;

/// Frames remembered for matching results, at most (oldest forgotten first).
const REMEMBERED: usize = 256;
/// Longest result shown on the status line.
const SHOWN_CHARS: usize = 120;

/// Frames sent and not yet answered by a RESULT: when each was captured
/// and the adaptation level it was made at.
#[derive(Default)]
pub struct InFlight {
    frames: Mutex<VecDeque<(u64, Instant, usize)>>,
}

impl InFlight {
    /// Frame `id`, captured at `captured` and made at `level`, was sent.
    pub fn sent(&self, id: u64, captured: Instant, level: usize) {
        let mut f = self.frames.lock();
        if f.len() == REMEMBERED {
            f.pop_front();
        }
        f.push_back((id, captured, level));
    }

    /// The level frame `id` was made at.
    pub fn level_of(&self, id: u64) -> Option<usize> {
        let f = self.frames.lock();
        f.iter().rev().find(|e| e.0 == id).map(|e| e.2)
    }

    /// Frame `id` will get no result (it was dropped): forget it.
    pub fn forget(&self, id: u64) {
        self.frames.lock().retain(|e| e.0 != id);
    }

    /// The capture time of frame `id`, forgotten from now on.
    pub fn answered(&self, id: u64) -> Option<Instant> {
        let mut f = self.frames.lock();
        let i = f.iter().position(|e| e.0 == id)?;
        f.remove(i).map(|e| e.1)
    }
}

/// Where results are written (`--results-jsonl`, `--save-results`, and
/// a program's own [`Tap`]).
pub struct ResultsOut {
    jsonl: Option<Box<dyn Write + Send>>,
    save_dir: Option<PathBuf>,
    warned: bool,
    tap: Option<Tap>,
}

/// A result as a [`Tap`] hands it over, with its capture → result time on
/// this client's clock (None when the frame was no longer remembered).
pub type Tapped = (ProcessResult, Option<Duration>);

/// Results handed to the program running the client (the Python binding's
/// `Client.results`), newest kept: when the program reads none for a
/// while, the oldest unread ones make room (at most `capacity` wait).
pub struct Tap {
    tx: crossbeam_channel::Sender<Tapped>,
    drain: crossbeam_channel::Receiver<Tapped>,
}

impl Tap {
    /// A tap and the receiver the program reads results from.
    pub fn new(capacity: usize) -> (Tap, crossbeam_channel::Receiver<Tapped>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        (
            Tap {
                tx,
                drain: rx.clone(),
            },
            rx,
        )
    }

    fn give(&self, mut r: Tapped) {
        loop {
            match self.tx.try_send(r) {
                Err(crossbeam_channel::TrySendError::Full(back)) => {
                    let _ = self.drain.try_recv();
                    r = back;
                }
                _ => return,
            }
        }
    }
}

impl ResultsOut {
    /// Opens the outputs; `-` as the JSONL path means standard output.
    pub fn open(jsonl: Option<&Path>, save_dir: Option<&Path>) -> Result<Self> {
        let jsonl: Option<Box<dyn Write + Send>> = match jsonl {
            None => None,
            Some(p) if p == Path::new("-") => Some(Box::new(std::io::stdout())),
            Some(p) => Some(Box::new(BufWriter::new(File::create(p).with_context(
                || format!("cannot create {} (--results-jsonl)", p.display()),
            )?))),
        };
        if let Some(d) = save_dir {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create {} (--save-results)", d.display()))?;
        }
        Ok(ResultsOut {
            jsonl,
            save_dir: save_dir.map(Path::to_path_buf),
            warned: false,
            tap: None,
        })
    }

    /// Hands every result to `tap` too.
    pub fn with_tap(mut self, tap: Option<Tap>) -> Self {
        self.tap = tap;
        self
    }

    /// Writes one result; a write error is logged once and that output stops.
    pub fn write(&mut self, r: &ProcessResult, capture_to_result: Option<Duration>) {
        if let Some(tap) = &self.tap {
            tap.give((r.clone(), capture_to_result));
        }
        if self.jsonl.is_none() && self.save_dir.is_none() {
            return;
        }
        let mut line = json!({
            "frame_id": r.frame_id,
            "status": r.status.as_str(),
            "capture_to_result_ms": capture_to_result.map(ms),
            "wait_ms": ms(Duration::from_micros(r.wait_us as u64)),
            "processing_ms": ms(Duration::from_micros(r.processing_us as u64)),
            "kind": kind_name(r.kind),
        });
        match r.kind {
            ResultKind::Json => {
                line["result"] = serde_json::from_slice::<Value>(&r.result)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.result).into()));
            }
            ResultKind::Text => {
                line["result"] = Value::String(String::from_utf8_lossy(&r.result).into());
            }
            ResultKind::Jpeg | ResultKind::Other(_) => {
                line["bytes"] = r.result.len().into();
                if let (ResultKind::Jpeg, Some(dir)) = (r.kind, &self.save_dir) {
                    let path = dir.join(format!("{:06}.jpg", r.frame_id));
                    match std::fs::write(&path, &r.result) {
                        Ok(()) => line["file"] = path.display().to_string().into(),
                        Err(e) => {
                            self.fail(format!("cannot save {}: {e}", path.display()));
                            self.save_dir = None;
                        }
                    }
                }
            }
            ResultKind::None => {}
        }
        if let Some(out) = &mut self.jsonl {
            let mut bytes = line.to_string().into_bytes();
            bytes.push(b'\n');
            if let Err(e) = out.write_all(&bytes).and_then(|_| out.flush()) {
                self.jsonl = None;
                self.fail(format!("cannot write --results-jsonl: {e}"));
            }
        }
    }

    fn fail(&mut self, why: String) {
        if !std::mem::replace(&mut self.warned, true) {
            warn!("{why}; results are no longer written there");
        }
    }
}

/// A result as the status line shows it (None: nothing to show).
pub fn shown(r: &ProcessResult) -> Option<String> {
    let text = match (r.status, r.kind) {
        (ResultStatus::Failed, _) => format!("failed: {}", String::from_utf8_lossy(&r.result)),
        (ResultStatus::Processed, ResultKind::Jpeg) => {
            format!("picture of {} bytes", r.result.len())
        }
        (ResultStatus::Processed, ResultKind::Json | ResultKind::Text) => {
            String::from_utf8_lossy(&r.result).into_owned()
        }
        // The server's note on why: the processor is stuck or slow.
        (ResultStatus::Skipped, ResultKind::Text) => {
            format!("skipped: {}", String::from_utf8_lossy(&r.result))
        }
        (ResultStatus::Expired, _) => {
            format!("expired: {}", String::from_utf8_lossy(&r.result))
        }
        _ => return None,
    };
    Some(text.chars().take(SHOWN_CHARS).collect())
}

fn kind_name(k: ResultKind) -> &'static str {
    match k {
        ResultKind::None => "none",
        ResultKind::Json => "json",
        ResultKind::Jpeg => "jpeg",
        ResultKind::Text => "text",
        ResultKind::Other(_) => "unknown",
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 1e2
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn results_match_their_frames_once() {
        let f = InFlight::default();
        let t = Instant::now();
        f.sent(1, t, 0);
        f.sent(2, t, 3);
        assert_eq!(f.level_of(2), Some(3));
        f.forget(1);
        assert_eq!(f.answered(1), None);
        assert_eq!(f.answered(2), Some(t));
        assert_eq!(f.answered(2), None);
        for i in 0..1000 {
            f.sent(i, t, 0);
        }
        assert_eq!(f.frames.lock().len(), REMEMBERED);
    }

    #[test]
    fn lines_and_pictures_are_written() {
        let tmp = tempfile::tempdir().unwrap();
        let jsonl = tmp.path().join("r.jsonl");
        let pics = tmp.path().join("pics");
        let mut out = ResultsOut::open(Some(&jsonl), Some(&pics)).unwrap();
        let r = |id, kind, bytes: &'static [u8]| ProcessResult {
            frame_id: id,
            status: ResultStatus::Processed,
            wait_us: 10,
            processing_us: 2000,
            kind,
            result: Bytes::from_static(bytes),
        };
        out.write(
            &r(1, ResultKind::Json, br#"{"motion":0.5}"#),
            Some(Duration::from_micros(6810)),
        );
        out.write(&r(2, ResultKind::Jpeg, b"\xFF\xD8pic\xFF\xD9"), None);
        drop(out);
        let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["result"]["motion"], 0.5);
        assert_eq!(lines[0]["capture_to_result_ms"], 6.81);
        assert_eq!(lines[0]["processing_ms"], 2.0);
        assert_eq!(lines[1]["kind"], "jpeg");
        let file = lines[1]["file"].as_str().unwrap();
        assert_eq!(std::fs::read(file).unwrap(), b"\xFF\xD8pic\xFF\xD9");
    }
}

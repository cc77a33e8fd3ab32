//! What a tally says: the summary's figures (as `--summary-json` writes
//! them) and the status line, each in its side's words (a client's frames
//! are "sent", a server's "received"; some figures are the client's alone).

use super::{Histogram, ResultFigures, Tally};
use serde::Serialize;
use std::time::Duration;

/// Which program a tally is of: its summary and status line say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Tally {
    /// The summary figures, keyed as `--summary-json` writes them.
    pub fn figures(&self, side: Side) -> Figures {
        let c = self.counts;
        let client_side = side == Side::Client;
        Figures {
            frames_sent: client_side.then_some(c.sent),
            frames_received: (!client_side).then_some(c.sent),
            frames_accepted: c.accepted,
            frames_dropped_stale: c.dropped_stale,
            frames_rejected: c.rejected,
            frames_superseded: c.superseded,
            frames_too_large: client_side.then_some(c.too_large),
            frames_unchanged: client_side.then_some(c.unchanged),
            frames_unanswered: client_side.then(|| self.unanswered()),
            fps_accepted: round2(self.fps_accepted()),
            age_ms: self.age_ms(),
            transit_ms: self.transit_ms(),
            bytes: c.bytes,
            results: self.results.any().then(|| ResultFigures {
                results_processed: self.results.processed,
                results_skipped: self.results.skipped,
                results_failed: self.results.failed,
                results_expired: self.results.expired,
                results_owed: self.results_owed(),
                capture_to_result_ms: self.results.capture_to_result_ms(),
            }),
        }
    }

    /// One status line over `elapsed` (the interval this tally covers):
    /// frames "sent" on the client's side, "received" on the server's.
    pub fn status_line(&self, elapsed: Duration, side: Side) -> String {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let c = self.counts;
        let age = self.age_ms();
        let transit = self.transit_ms();
        let client_side = side == Side::Client;
        let mut line = format!(
            "{:6.1} fps {} {:6.1} fps accepted | drops: superseded {}{} stale {} rejected {} | age p50 {} p99 {} ms | transit p50 {} p99 {} ms | {:.2} MB/s",
            c.sent as f64 / secs,
            if client_side { "sent" } else { "received" },
            c.accepted as f64 / secs,
            c.superseded,
            if c.unchanged > 0 {
                format!(" unchanged {}", c.unchanged)
            } else {
                String::new()
            },
            c.dropped_stale,
            c.rejected,
            fmt_ms(age.p50),
            fmt_ms(age.p99),
            fmt_ms(transit.p50),
            fmt_ms(transit.p99),
            c.bytes as f64 / secs / 1e6,
        );
        let r = &self.results;
        if r.any() {
            let p = r.capture_to_result_ms();
            line += &format!(
                " | results {} skipped {} failed {}, capture→result p50 {} p99 {} ms",
                r.processed,
                r.skipped,
                r.failed,
                fmt_ms(p.p50),
                fmt_ms(p.p99)
            );
            if let Some(last) = &r.last {
                line += &format!(" | last: {last}");
            }
            if let Some(busy) = &r.busy {
                line += &format!(" | {busy}");
            }
        }
        line
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// p50, p99 and max of a latency distribution, in milliseconds (null when empty).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    pub(super) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles {
                p50: None,
                p99: None,
                max: None,
            };
        }
        let ms = |us: u64| Some((us as f64 / 1000.0 * 1000.0).round() / 1000.0);
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// The figures of a summary, for one client or a total.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_received: Option<u64>,
    pub frames_accepted: u64,
    pub frames_dropped_stale: u64,
    pub frames_rejected: u64,
    pub frames_superseded: u64,
    /// Client: frames over the server's `max_frame_bytes`, never sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_too_large: Option<u64>,
    /// Client: frames left out as equal to the last one kept (`--drop-same-frames`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_unchanged: Option<u64>,
    /// Client: frames sent that got no VERDICT (the connection ended first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_unanswered: Option<u64>,
    pub fps_accepted: f64,
    pub age_ms: Percentiles,
    pub transit_ms: Percentiles,
    pub bytes: u64,
    /// Processing results received (client side, when any came).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultFigures>,
}

impl Figures {
    /// A short human-readable form for the end of a run.
    pub fn describe(&self) -> String {
        let sent = self.frames_sent.or(self.frames_received).unwrap_or(0);
        format!(
            "{} frames {}, {} accepted ({:.1} fps), {} stale, {} rejected, {} superseded; age p50 {} p99 {} max {} ms; transit p50 {} p99 {} ms; {:.1} MB",
            sent,
            if self.frames_sent.is_some() { "sent" } else { "received" },
            self.frames_accepted,
            self.fps_accepted,
            self.frames_dropped_stale,
            self.frames_rejected,
            self.frames_superseded,
            fmt_ms(self.age_ms.p50),
            fmt_ms(self.age_ms.p99),
            fmt_ms(self.age_ms.max),
            fmt_ms(self.transit_ms.p50),
            fmt_ms(self.transit_ms.p99),
            self.bytes as f64 / 1e6,
        ) + &self
            .results
            .as_ref()
            .map(|r| {
                format!(
                    "; results {} processed, {} skipped, {} failed, {} expired, capture→result p50 {} p99 {} ms",
                    r.results_processed,
                    r.results_skipped,
                    r.results_failed,
                    r.results_expired,
                    fmt_ms(r.capture_to_result_ms.p50),
                    fmt_ms(r.capture_to_result_ms.p99)
                )
            })
            .unwrap_or_default()
    }
}

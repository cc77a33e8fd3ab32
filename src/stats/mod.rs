//! Counters and latency histograms, the periodic status line and the final
//! summary (printed, and written as JSON with `--summary-json`).
//!
//! Memory is fixed: latencies go into HDR histograms (microseconds, 2
//! significant digits, i.e. within 1 %, up to an hour; 26 KiB each), never
//! into growing lists. Three significant digits cost 184 KiB a histogram,
//! over a megabyte per connection with the status interval's copies.

mod figures;

pub use figures::{Figures, Percentiles, Side};

use crate::wire::{Outcome, ResultStatus};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Highest latency a histogram records; larger values are clamped to it.
const MAX_RECORDED_US: u64 = 3_600_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_RECORDED_US, 2).expect("valid histogram bounds")
}

/// Frame counts by fate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames put on the wire (client) or received whole (server).
    pub sent: u64,
    pub accepted: u64,
    pub dropped_stale: u64,
    pub rejected: u64,
    /// Frames replaced by a newer one before they were used: before sending on
    /// the client, before the processing thread took them on the server.
    pub superseded: u64,
    /// Payload bytes of the frames in `sent`.
    pub bytes: u64,
    /// Client: frames over the server's size limit, so not sent.
    pub too_large: u64,
    /// Client: frames left out as equal to the last one kept (`--drop-same-frames`).
    pub unchanged: u64,
}

/// Processing results a client got back, and how long they took.
#[derive(Clone)]
pub struct Results {
    pub processed: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Frames that grew older than the server's threshold before a
    /// processor was free for them (status `expired`).
    pub expired: u64,
    /// Client clock: from capture to the result's arrival.
    capture_to_result: Histogram<u64>,
    /// The newest result, shortened, for the status line.
    pub last: Option<String>,
    /// The newest note on a skipped frame (the processor is busy), if any.
    pub busy: Option<String>,
}

impl Default for Results {
    fn default() -> Self {
        Results {
            processed: 0,
            skipped: 0,
            failed: 0,
            expired: 0,
            capture_to_result: new_histogram(),
            last: None,
            busy: None,
        }
    }
}

impl Results {
    pub fn any(&self) -> bool {
        self.processed + self.skipped + self.failed + self.expired > 0
    }

    fn merge(&mut self, o: &Results) {
        self.processed += o.processed;
        self.skipped += o.skipped;
        self.failed += o.failed;
        self.expired += o.expired;
        let _ = self.capture_to_result.add(&o.capture_to_result);
        if o.last.is_some() {
            self.last.clone_from(&o.last);
        }
        if o.busy.is_some() {
            self.busy.clone_from(&o.busy);
        }
    }

    pub fn capture_to_result_ms(&self) -> Percentiles {
        Percentiles::of(&self.capture_to_result)
    }
}

/// The results part of a client's summary.
#[derive(Debug, Clone, Serialize)]
pub struct ResultFigures {
    pub results_processed: u64,
    pub results_skipped: u64,
    pub results_failed: u64,
    /// Frames that grew older than the server's threshold before a
    /// processor was free for them: never processed.
    pub results_expired: u64,
    /// Accepted frames whose RESULT never came (a connection that ended
    /// first; a clean stop waits for them): processed + skipped + failed +
    /// expired + owed = accepted.
    pub results_owed: u64,
    /// Client clock, from capture to the result's arrival (processed results).
    pub capture_to_result_ms: Percentiles,
}

/// Counts plus age/transit distributions and the span of accepted frames.
#[derive(Clone)]
pub struct Tally {
    pub counts: Counts,
    age: Histogram<u64>,
    transit: Histogram<u64>,
    first_accepted: Option<Instant>,
    last_accepted: Option<Instant>,
    pub results: Results,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counts: Counts::default(),
            age: new_histogram(),
            transit: new_histogram(),
            first_accepted: None,
            last_accepted: None,
            results: Results::default(),
        }
    }
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Tally {
    /// One frame sent (client) or received (server) with `bytes` of payload.
    pub fn record_sent(&mut self, bytes: usize) {
        self.counts.sent += 1;
        self.counts.bytes += bytes as u64;
    }

    /// A frame over the server's size limit (client): not sent.
    pub fn record_too_large(&mut self) {
        self.counts.too_large += 1;
    }

    /// The server's verdict on one frame, with the figures it was judged by.
    pub fn record_verdict(
        &mut self,
        outcome: Outcome,
        age: Duration,
        transit: Duration,
        at: Instant,
    ) {
        match outcome {
            Outcome::Accepted => {
                self.counts.accepted += 1;
                self.first_accepted.get_or_insert(at);
                self.last_accepted = Some(at);
            }
            Outcome::DroppedStale => self.counts.dropped_stale += 1,
            Outcome::Rejected => {
                self.counts.rejected += 1;
                return; // a rejected frame's age says nothing about the link
            }
        }
        self.age
            .saturating_record((age.as_micros() as u64).clamp(1, MAX_RECORDED_US));
        self.transit
            .saturating_record((transit.as_micros() as u64).clamp(1, MAX_RECORDED_US));
    }

    /// One RESULT: its status, the capture → result time when known, and
    /// the result shortened for display.
    pub fn record_result(
        &mut self,
        status: ResultStatus,
        capture_to_result: Option<Duration>,
        shown: Option<String>,
    ) {
        let r = &mut self.results;
        match status {
            ResultStatus::Processed => r.processed += 1,
            ResultStatus::Failed => r.failed += 1,
            ResultStatus::Expired => r.expired += 1,
            ResultStatus::Skipped | ResultStatus::Other(_) => r.skipped += 1,
        }
        if let (ResultStatus::Processed, Some(d)) = (status, capture_to_result) {
            r.capture_to_result
                .saturating_record((d.as_micros() as u64).clamp(1, MAX_RECORDED_US));
        }
        if matches!(status, ResultStatus::Skipped | ResultStatus::Expired) {
            if shown.is_some() {
                r.busy = shown;
            }
        } else if shown.is_some() {
            r.last = shown;
        }
    }

    /// Adds another tally into this one (per-client tallies into a total).
    pub fn merge(&mut self, other: &Tally) {
        self.results.merge(&other.results);
        let c = &mut self.counts;
        let o = &other.counts;
        c.sent += o.sent;
        c.accepted += o.accepted;
        c.dropped_stale += o.dropped_stale;
        c.rejected += o.rejected;
        c.superseded += o.superseded;
        c.bytes += o.bytes;
        c.too_large += o.too_large;
        c.unchanged += o.unchanged;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.age.add(&other.age);
        let _ = self.transit.add(&other.transit);
        self.first_accepted = match (self.first_accepted, other.first_accepted) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_accepted = match (self.last_accepted, other.last_accepted) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Accepted frames per second between the first and the last accepted
    /// frame (0 with fewer than two).
    pub fn fps_accepted(&self) -> f64 {
        self.fps_accepted_besides(Duration::ZERO)
    }

    /// [`fps_accepted`](Self::fps_accepted) leaving out `outages` (time
    /// without a connection between the first and the last accepted frame).
    pub fn fps_accepted_besides(&self, outages: Duration) -> f64 {
        match (self.first_accepted, self.last_accepted) {
            (Some(a), Some(b)) if b > a && self.counts.accepted > 1 => {
                let span = (b - a)
                    .saturating_sub(outages)
                    .max(Duration::from_millis(1));
                (self.counts.accepted - 1) as f64 / span.as_secs_f64()
            }
            _ => 0.0,
        }
    }

    pub fn age_ms(&self) -> Percentiles {
        Percentiles::of(&self.age)
    }

    pub fn transit_ms(&self) -> Percentiles {
        Percentiles::of(&self.transit)
    }

    /// Client: accepted frames whose RESULT has not come.
    pub fn results_owed(&self) -> u64 {
        let r = &self.results;
        self.counts
            .accepted
            .saturating_sub(r.processed + r.skipped + r.failed + r.expired)
    }

    /// Client: frames sent that have no VERDICT (yet).
    pub fn unanswered(&self) -> u64 {
        let c = self.counts;
        c.sent
            .saturating_sub(c.accepted + c.dropped_stale + c.rejected)
    }

    /// Client: what the server still owes: a VERDICT for each frame sent,
    /// and (when it sends results) a RESULT for each frame accepted.
    pub fn owed(&self, results: bool) -> u64 {
        self.unanswered() + if results { self.results_owed() } else { 0 }
    }
}

/// A tally for the whole run plus one for the current status interval.
#[derive(Debug)]
pub struct Running {
    pub total: Tally,
    pub interval: Tally,
    interval_start: Instant,
}

impl Default for Running {
    fn default() -> Self {
        Running {
            total: Tally::default(),
            interval: Tally::default(),
            interval_start: Instant::now(),
        }
    }
}

impl Running {
    pub fn record_sent(&mut self, bytes: usize) {
        self.total.record_sent(bytes);
        self.interval.record_sent(bytes);
    }

    pub fn record_verdict(
        &mut self,
        outcome: Outcome,
        age: Duration,
        transit: Duration,
        at: Instant,
    ) {
        self.total.record_verdict(outcome, age, transit, at);
        self.interval.record_verdict(outcome, age, transit, at);
    }

    pub fn record_result(
        &mut self,
        status: ResultStatus,
        capture_to_result: Option<Duration>,
        shown: Option<String>,
    ) {
        self.total
            .record_result(status, capture_to_result, shown.clone());
        self.interval
            .record_result(status, capture_to_result, shown);
    }

    pub fn record_too_large(&mut self) {
        self.total.record_too_large();
        self.interval.record_too_large();
    }

    pub fn add_unchanged(&mut self, n: u64) {
        self.total.counts.unchanged += n;
        self.interval.counts.unchanged += n;
    }

    pub fn add_superseded(&mut self, n: u64) {
        self.total.counts.superseded += n;
        self.interval.counts.superseded += n;
    }

    /// Ends the current interval: returns its tally and length, starts a new one.
    pub fn take_interval(&mut self) -> (Tally, Duration) {
        let now = Instant::now();
        let elapsed = now - self.interval_start;
        self.interval_start = now;
        (std::mem::take(&mut self.interval), elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_each_fate_and_percentiles_come_from_the_histogram() {
        let mut t = Tally::default();
        let t0 = Instant::now();
        for i in 0..100u64 {
            t.record_sent(1000);
            t.record_verdict(
                Outcome::Accepted,
                Duration::from_millis(i + 1),
                Duration::from_micros(500),
                t0 + Duration::from_millis(i * 10),
            );
        }
        t.record_sent(1000);
        t.record_verdict(
            Outcome::DroppedStale,
            Duration::from_millis(200),
            Duration::from_millis(150),
            t0,
        );
        t.record_sent(1000);
        t.record_verdict(
            Outcome::Rejected,
            Duration::from_millis(1),
            Duration::ZERO,
            t0,
        );
        let f = t.figures(Side::Client);
        assert_eq!(f.frames_sent, Some(102));
        assert_eq!(f.frames_received, None);
        assert_eq!(
            (f.frames_accepted, f.frames_dropped_stale, f.frames_rejected),
            (100, 1, 1)
        );
        assert_eq!(f.bytes, 102_000);
        // 100 accepted frames over 990 ms: 99 intervals.
        assert!((f.fps_accepted - 100.0).abs() < 0.01, "{}", f.fps_accepted);
        // The median is 50 or 51 ms; histograms are exact to within 1 %.
        let p50 = f.age_ms.p50.unwrap();
        assert!((49.5..=51.6).contains(&p50), "{p50}");
        let max = f.age_ms.max.unwrap();
        assert!((max - 200.0).abs() <= 2.0, "{max}");
    }

    #[test]
    fn merge_adds_counts_and_widens_the_accepted_span() {
        let t0 = Instant::now();
        let mut a = Tally::default();
        a.record_verdict(
            Outcome::Accepted,
            Duration::from_millis(1),
            Duration::from_millis(1),
            t0,
        );
        let mut b = Tally::default();
        b.record_verdict(
            Outcome::Accepted,
            Duration::from_millis(3),
            Duration::from_millis(1),
            t0 + Duration::from_secs(1),
        );
        a.merge(&b);
        assert_eq!(a.counts.accepted, 2);
        assert!((a.fps_accepted() - 1.0).abs() < 1e-6);
        assert!((a.age_ms().max.unwrap() - 3.0).abs() < 0.01);
    }

    #[test]
    fn empty_tally_has_null_percentiles_in_json() {
        let json = serde_json::to_value(Tally::default().figures(Side::Server)).unwrap();
        assert!(json["age_ms"]["p99"].is_null());
        assert_eq!(json["frames_received"], 0);
        assert!(json.get("frames_sent").is_none());
    }
}

//! What the client says: its compact status line and its end-of-run summary.

use super::adapt::{AdaptSummary, Adapter};
use super::session::Tracking;
use super::Link;
use crate::shutdown::Shutdown;
use crate::stats::{Figures, Running, Side};
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The end-of-run figures of a client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientSummary {
    #[serde(flatten)]
    pub figures: Figures,
    pub server: String,
    /// Successful connections (1 when the link never broke).
    pub connections: u64,
    pub duration_s: f64,
    /// Seconds connected.
    pub connected_s: f64,
    /// Times the connection was lost after the first one (and came back, or
    /// the run ended while it was lost).
    pub gaps: u64,
    /// Seconds without a connection after the first one, to the end.
    pub offline_s: f64,
    /// What adaptation did.
    pub adapt: AdaptSummary,
    /// Why the last connection attempt failed or the last connection was
    /// lost or refused, if one was (e.g. "wrong token", a TLS error).
    pub last_problem: Option<String>,
    /// Times the source stopped giving frames (and came back, or the run
    /// ended while it was lost).
    pub source_outages: u64,
    /// Seconds the source was lost, in all.
    pub source_lost_s: f64,
}

impl ClientSummary {
    /// The summary line's figures: the frames', then the outages if any.
    pub fn describe(&self) -> String {
        let mut line = self.figures.describe();
        if self.source_outages > 0 {
            line += &format!(
                "; source lost {} time{} ({:.1} s in all)",
                self.source_outages,
                if self.source_outages == 1 { "" } else { "s" },
                self.source_lost_s
            );
        }
        line
    }

    /// Why the run did nothing, if it did nothing: no connection was ever
    /// made (a wrong token, TLS, a full or absent server). The program then
    /// exits with an error after its summary.
    pub fn never_connected(&self) -> Option<String> {
        (self.connections == 0).then(|| {
            format!(
                "no connection to {} was ever made{}",
                self.server,
                self.last_problem
                    .as_ref()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default()
            )
        })
    }
}

/// What the status line is made of: the run's tally and the counters kept
/// beside it, the adaptation's setting and the link's state.
pub(super) struct StatusLine<'a> {
    pub stats: &'a Mutex<Running>,
    /// Frames replaced in the slot before the sender took them, in all.
    pub superseded: &'a AtomicU64,
    /// Frames left out as unchanged, in all.
    pub unchanged: &'a AtomicU64,
    pub adapter: &'a Adapter,
    pub tracking: &'a Tracking,
    /// `--status detailed`: every figure, not the compact line.
    pub detailed: bool,
    /// Results go to standard output: the line goes to standard error.
    pub results_on_stdout: bool,
}

impl StatusLine<'_> {
    /// Prints a line every `every`, each of that interval's figures, until
    /// `shutdown` (which ends the wait) or until the line's stream is closed.
    pub(super) fn run(&self, every: Duration, shutdown: &Shutdown) {
        let (mut reported, mut reported_unchanged) = (0, 0);
        while !shutdown.wait_timeout(every) {
            let now = self.superseded.load(Ordering::Relaxed);
            let now_unchanged = self.unchanged.load(Ordering::Relaxed);
            let mut st = self.stats.lock();
            st.add_superseded(now - reported);
            st.add_unchanged(now_unchanged - reported_unchanged);
            reported = now;
            reported_unchanged = now_unchanged;
            let (t, elapsed) = st.take_interval();
            drop(st);
            let link = self.tracking.link.lock().clone();
            let mut line = if self.detailed {
                format!(
                    "{} | {} | {}",
                    link.word(),
                    t.status_line(elapsed, Side::Client),
                    self.adapter.status()
                )
            } else {
                let sent = *self.tracking.sent.lock();
                compact_status(&link, &t, elapsed, &self.adapter.setting_text(sent))
            };
            if let Some(lost) = self.tracking.source.lost() {
                line += &format!(
                    " | source lost for {:.0} s: {}",
                    lost.since.elapsed().as_secs_f64(),
                    lost.why
                );
            }
            if !crate::output::line_to(self.results_on_stdout, &line) {
                return;
            }
        }
    }
}

/// The default status line: link state and the figures a user watches, in
/// about 80 columns (`--status detailed` has every figure).
fn compact_status(
    link: &Link,
    t: &crate::stats::Tally,
    elapsed: Duration,
    setting: &str,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let c = t.counts;
    let mut line = format!(
        "{:<10} {:5.1} fps ok",
        link.word(),
        c.accepted as f64 / secs
    );
    let dropped = c.dropped_stale + c.rejected + c.too_large;
    if dropped > 0 {
        line += &format!(", {} stale {} rejected", c.dropped_stale, c.rejected);
        if c.too_large > 0 {
            line += &format!(" {} too large", c.too_large);
        }
    }
    if let Some(p99) = t.age_ms().p99 {
        line += &format!(" | age p99 {p99:.1} ms");
    }
    line += &format!(" | {:.2} MB/s | {setting}", c.bytes as f64 / secs / 1e6);
    let r = &t.results;
    if r.any() {
        line += &format!(" | results {}", r.processed);
        if r.skipped + r.failed + r.expired > 0 {
            line += &format!(" ({} skipped, {} failed", r.skipped, r.failed);
            if r.expired > 0 {
                line += &format!(", {} expired", r.expired);
            }
            line += ")";
        }
        if let Some(busy) = &r.busy {
            line += &format!(" | {busy}");
        }
    }
    if let Link::Retrying(why) | Link::Refused(why) = link {
        let mut short: String = why.chars().take(60).collect();
        if short.len() < why.len() {
            short.push('…');
        }
        line += &format!(" | {short}");
    }
    line
}

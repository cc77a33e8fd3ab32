//! The live figures: every client connected and gone, as the status line,
//! the summary, `/stats.json` and `/metrics` see them.

use super::live_view::{self, StatsSource};
use super::record::Recorder;
use super::source_state::SourceState;
use super::{ClientSummary, ServerSummary, Shared};
use crate::process::ClientId;
use crate::stats::{Percentiles, Running, Side, Tally};
use crate::wire::{ProcessResult, ResultKind, ResultStatus};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most distinct client names kept in the summary; later ones are folded into one entry.
pub(super) const MAX_NAMED_CLIENTS: usize = 256;
/// Largest JSON result kept whole for the live view (larger ones are described).
pub(super) const SHOWN_RESULT_BYTES: usize = 4096;
/// Longest result text kept for the live view's tiles.
pub(super) const SHOWN_RESULT_CHARS: usize = 160;

/// A connected client, as the status reporter, the live view and the summary see it.
pub(super) struct Live {
    pub(super) name: Arc<str>,
    pub(super) peer: SocketAddr,
    pub(super) stats: Mutex<Running>,
    /// Frames replaced in the hand-off before the processing thread took them.
    pub(super) superseded: Arc<AtomicU64>,
    pub(super) superseded_reported: AtomicU64,
    /// Age of the newest accepted frame, in microseconds.
    pub(super) last_age_us: AtomicU64,
    /// Arrival times of the accepted frames of the last second (for live fps).
    pub(super) recent: Mutex<VecDeque<Instant>>,
    /// The newest result, shortened, for the live view.
    pub(super) last_result: Mutex<Option<serde_json::Value>>,
    /// Width and height of the newest frame received (width << 16 | height).
    pub(super) last_size: std::sync::atomic::AtomicU32,
    /// Its camera, as its SOURCE messages say.
    pub(super) source: Arc<SourceState>,
}

impl Live {
    pub(super) fn accepted(&self, age: Duration, at: Instant) {
        self.last_age_us
            .store(age.as_micros() as u64, Ordering::Relaxed);
        let mut r = self.recent.lock();
        r.push_back(at);
        trim_recent(&mut r, at);
    }

    /// Accepted frames over the last second.
    pub(super) fn fps_now(&self) -> f64 {
        let mut r = self.recent.lock();
        trim_recent(&mut r, Instant::now());
        r.len() as f64
    }

    /// Keeps the newest result for the live view: a JSON result as the JSON
    /// value itself (whole, up to [`SHOWN_RESULT_BYTES`]; never cut
    /// mid-value), text as a string (shortened on a character boundary), a
    /// picture or a failure as a small object saying so.
    pub(super) fn saw_result(&self, r: &ProcessResult) {
        let text = || String::from_utf8_lossy(&r.result).into_owned();
        let shown = match (r.status, r.kind) {
            (ResultStatus::Skipped | ResultStatus::Expired, _) => return,
            (ResultStatus::Processed, ResultKind::None) => return,
            (ResultStatus::Failed, _) => serde_json::json!({ "failed": shorten(&text()) }),
            (_, ResultKind::Jpeg) => serde_json::json!({ "jpeg_bytes": r.result.len() }),
            (_, ResultKind::Json) if r.result.len() <= SHOWN_RESULT_BYTES => {
                serde_json::from_slice(&r.result).unwrap_or_else(|_| shorten(&text()).into())
            }
            (_, ResultKind::Json) => serde_json::json!({ "json_bytes": r.result.len() }),
            _ => shorten(&text()).into(),
        };
        *self.last_result.lock() = Some(shown);
    }
}

/// `text` cut to [`SHOWN_RESULT_CHARS`] characters, with "…" when cut.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(SHOWN_RESULT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

pub(super) fn trim_recent(r: &mut VecDeque<Instant>, now: Instant) {
    while r
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(1))
        || r.len() > 10_000
    {
        r.pop_front();
    }
}

/// A client name's finished connections: their figures, how many, and the
/// camera outages they reported.
#[derive(Clone, Default)]
pub(super) struct Gone {
    tally: Tally,
    connections: u64,
    source_outages: u64,
}

/// All clients, connected and gone.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) live: Mutex<HashMap<ClientId, Arc<Live>>>,
    /// Per client name: figures of finished connections, and how many.
    pub(super) gone: Mutex<BTreeMap<Arc<str>, Gone>>,
}

impl Registry {
    pub(super) fn add(&self, id: ClientId, live: Arc<Live>) {
        self.live.lock().insert(id, live);
    }

    pub(super) fn remove(&self, id: ClientId) {
        let Some(live) = self.live.lock().remove(&id) else {
            return;
        };
        let mut total = live.stats.lock().total.clone();
        total.counts.superseded = live.superseded.load(Ordering::Relaxed);
        let mut gone = self.gone.lock();
        let key = if gone.len() < MAX_NAMED_CLIENTS || gone.contains_key(&live.name) {
            live.name.clone()
        } else {
            Arc::from("(other clients)")
        };
        let entry = gone.entry(key).or_default();
        entry.tally.merge(&total);
        entry.connections += 1;
        entry.source_outages += live.source.outages();
    }

    /// One status line over all connected clients, or None when idle.
    pub(super) fn status_line(&self) -> Option<String> {
        let live = self.live.lock();
        if live.is_empty() {
            return None;
        }
        let mut sum = Tally::default();
        let mut elapsed = Duration::ZERO;
        for l in live.values() {
            let (t, e) = l.stats.lock().take_interval();
            sum.merge(&t);
            let now = l.superseded.load(Ordering::Relaxed);
            sum.counts.superseded += now - l.superseded_reported.swap(now, Ordering::Relaxed);
            elapsed = elapsed.max(e);
        }
        let mut line = format!(
            "{} client{} | {}",
            live.len(),
            if live.len() == 1 { "" } else { "s" },
            sum.status_line(elapsed, Side::Server)
        );
        let mut lost: Vec<(ClientId, String)> = live
            .iter()
            .filter_map(|(id, l)| {
                let s = l.source.lost()?;
                Some((*id, format!(" | {}: {} ({})", l.name, s.headline(), s.why)))
            })
            .collect();
        lost.sort();
        for (_, text) in lost {
            line += &text;
        }
        Some(line)
    }

    /// Every connected client's figures now, for `/stats.json` and `/metrics`.
    pub(super) fn snapshot(&self) -> Vec<ClientNow> {
        let mut out: Vec<ClientNow> = self
            .live
            .lock()
            .iter()
            .map(|(id, l)| {
                let st = l.stats.lock();
                let c = st.total.counts;
                let lost = l.source.lost();
                ClientNow {
                    id: *id,
                    name: l.name.to_string(),
                    peer: l.peer.to_string(),
                    fps_accepted: l.fps_now(),
                    last_age_ms: (c.accepted > 0)
                        .then(|| l.last_age_us.load(Ordering::Relaxed) as f64 / 1e3),
                    age_ms: st.total.age_ms(),
                    frames_received: c.sent,
                    frames_accepted: c.accepted,
                    frames_dropped_stale: c.dropped_stale,
                    frames_rejected: c.rejected,
                    frames_superseded: l.superseded.load(Ordering::Relaxed),
                    width: l.last_size.load(Ordering::Relaxed) >> 16,
                    height: l.last_size.load(Ordering::Relaxed) & 0xFFFF,
                    bytes: c.bytes,
                    last_result: l.last_result.lock().clone(),
                    source_up: lost.is_none(),
                    source_lost_since: lost
                        .as_ref()
                        .map(|s| super::source_state::time_of_day(s.since)),
                    source_lost_since_unix_s: lost.as_ref().map(|s| {
                        s.since
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64())
                    }),
                    source_problem: lost.map(|s| s.why),
                    source_outages: l.source.outages(),
                }
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    pub(super) fn summary(&self, duration: Duration) -> ServerSummary {
        let mut per_name: BTreeMap<Arc<str>, Gone> = self.gone.lock().clone();
        // The camera of each name's newest connection (ids grow), if connected.
        let mut up_now: BTreeMap<Arc<str>, (ClientId, bool)> = BTreeMap::new();
        for (id, l) in self.live.lock().iter() {
            let mut t = l.stats.lock().total.clone();
            t.counts.superseded = l.superseded.load(Ordering::Relaxed);
            let e = per_name.entry(l.name.clone()).or_default();
            e.tally.merge(&t);
            e.connections += 1;
            e.source_outages += l.source.outages();
            let up = l.source.lost().is_none();
            let newest = up_now.entry(l.name.clone()).or_insert((*id, up));
            if *id >= newest.0 {
                *newest = (*id, up);
            }
        }
        let mut total = Tally::default();
        let clients = per_name
            .iter()
            .map(|(name, g)| {
                total.merge(&g.tally);
                ClientSummary {
                    name: name.to_string(),
                    connections: g.connections,
                    figures: g.tally.figures(Side::Server),
                    source_up: up_now.get(name).map(|&(_, up)| up),
                    source_outages: g.source_outages,
                }
            })
            .collect();
        ServerSummary {
            total: total.figures(Side::Server),
            processor: String::new(),
            frames_processed: 0,
            frames_process_failed: 0,
            frames_expired: 0,
            duration_s: duration.as_secs_f64(),
            clients,
            recording: None,
        }
    }
}

/// One connected client in `/stats.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ClientNow {
    /// The connection's number: `/stream/<id>.mjpg` shows its video.
    pub id: ClientId,
    pub name: String,
    pub peer: String,
    /// Accepted frames over the last second.
    pub fps_accepted: f64,
    /// Age of the newest accepted frame.
    pub last_age_ms: Option<f64>,
    /// Age of the accepted and stale frames of this connection.
    pub age_ms: Percentiles,
    pub frames_received: u64,
    pub frames_accepted: u64,
    pub frames_dropped_stale: u64,
    pub frames_rejected: u64,
    pub frames_superseded: u64,
    /// Size of the newest frame received (0 before the first).
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// The newest processing result, shortened.
    pub last_result: Option<serde_json::Value>,
    /// False while the client says its camera gives no frames.
    pub source_up: bool,
    /// Since when it is lost: `HH:MM:SS` on this server's clock (local time),
    /// and as Unix seconds.
    pub source_lost_since: Option<String>,
    pub source_lost_since_unix_s: Option<f64>,
    /// Why, as the client says ("no frame for 5.0 s", the device's error).
    pub source_problem: Option<String>,
    /// Outages this connection reported.
    pub source_outages: u64,
}

impl StatsSource for Shared {
    fn stats_json(&self) -> serde_json::Value {
        serde_json::json!({
            "uptime_s": self.epoch.elapsed().as_secs_f64(),
            "max_age_ms": self.config.max_age.as_secs_f64() * 1e3,
            "processor": self.processor_name,
            "frames_processed": self.processing.processed.load(Ordering::Relaxed),
            "frames_process_failed": self.processing.failed.load(Ordering::Relaxed),
            "frames_expired": self.processing.expired.load(Ordering::Relaxed),
            "viewers": self.live_frames.as_ref().map_or(0, |l| l.viewers.load(Ordering::Relaxed)),
            "recording": self.recorder.as_ref().map(Recorder::summary),
            "clients": self.registry.snapshot(),
        })
    }

    fn metrics(&self) -> String {
        let clients = self.registry.snapshot();
        let mut m = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(
                m,
                "# HELP framelink_{name} {help}\n# TYPE framelink_{name} {kind}"
            );
            for (labels, v) in rows {
                let _ = writeln!(m, "framelink_{name}{labels} {}", metric_number(v));
            }
        };
        // Counters are per client name over the server's whole life (finished
        // connections included), so a camera that reconnects keeps counting up
        // and its series do not vanish when it disconnects.
        let named = self.registry.summary(self.epoch.elapsed()).clients;
        let who = |name: &str| format!("client=\"{}\"", live_view::label(name));
        family(
            "clients_connected",
            "gauge",
            "Clients connected now.",
            vec![(String::new(), clients.len() as f64)],
        );
        let mut frames = Vec::new();
        for c in &named {
            let f = &c.figures;
            for (outcome, n) in [
                ("accepted", f.frames_accepted),
                ("dropped_stale", f.frames_dropped_stale),
                ("rejected", f.frames_rejected),
                ("superseded", f.frames_superseded),
            ] {
                frames.push((
                    format!("{{{},outcome=\"{outcome}\"}}", who(&c.name)),
                    n as f64,
                ));
            }
        }
        family(
            "frames_total",
            "counter",
            "Frames received from each client (by name, since the server started), by fate.",
            frames,
        );
        family(
            "received_bytes_total",
            "counter",
            "Frame payload bytes received from each client (by name, since the server started).",
            named
                .iter()
                .map(|c| (format!("{{{}}}", who(&c.name)), c.figures.bytes as f64))
                .collect(),
        );
        // Gauges describe the connection now: the newest one of each name.
        let mut now: BTreeMap<&str, &ClientNow> = BTreeMap::new();
        for c in &clients {
            now.insert(&c.name, c); // sorted by id: the newest wins
        }
        family(
            "fps_accepted",
            "gauge",
            "Frames accepted from each connected client over the last second.",
            now.iter()
                .map(|(name, c)| (format!("{{{}}}", who(name)), c.fps_accepted))
                .collect(),
        );
        family(
            "source_up",
            "gauge",
            "1 while each connected client's camera gives frames, 0 while the client says it is lost.",
            now.iter()
                .map(|(name, c)| (format!("{{{}}}", who(name)), f64::from(u8::from(c.source_up))))
                .collect(),
        );
        let mut age = Vec::new();
        for (name, c) in &now {
            for (q, v) in [("0.5", c.age_ms.p50), ("0.99", c.age_ms.p99)] {
                if let Some(v) = v {
                    age.push((format!("{{{},quantile=\"{q}\"}}", who(name)), v / 1e3));
                }
            }
            let judged = c.frames_accepted + c.frames_dropped_stale;
            age.push((format!("_count{{{}}}", who(name)), judged as f64));
        }
        family(
            "frame_age_seconds",
            "summary",
            "Age on arrival of each connected client's frames (this connection), by quantile.",
            age,
        );
        family(
            "frames_processed_total",
            "counter",
            "Frames the processor handled.",
            vec![(
                String::new(),
                self.processing.processed.load(Ordering::Relaxed) as f64,
            )],
        );
        family(
            "frames_process_failed_total",
            "counter",
            "Frames the processor failed on.",
            vec![(
                String::new(),
                self.processing.failed.load(Ordering::Relaxed) as f64,
            )],
        );
        family(
            "frames_expired_total",
            "counter",
            "Frames not processed because they grew older than the threshold before a processor was free.",
            vec![(
                String::new(),
                self.processing.expired.load(Ordering::Relaxed) as f64,
            )],
        );
        if let Some(l) = &self.live_frames {
            family(
                "viewers",
                "gauge",
                "Live view streams open now.",
                vec![(String::new(), l.viewers.load(Ordering::Relaxed) as f64)],
            );
        }
        if let Some(r) = &self.recorder {
            let s = r.summary();
            family(
                "recorded_frames_total",
                "counter",
                "Frames written to the recording.",
                vec![(String::new(), s.frames_recorded as f64)],
            );
            family(
                "recording_bytes",
                "gauge",
                "JPEG bytes in the recording directory.",
                vec![(String::new(), s.bytes_on_disk as f64)],
            );
            family(
                "recording_left_out_total",
                "counter",
                "Accepted frames left out of the recording.",
                vec![(String::new(), s.frames_left_out as f64)],
            );
        }
        m
    }
}

/// A metric value without float noise: integers as integers, others to
/// six decimals with trailing zeros dropped (0.027903, not 0.027902999999999997).
fn metric_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SourceReport;

    fn live(name: &str) -> Arc<Live> {
        Arc::new(Live {
            name: name.into(),
            peer: "127.0.0.1:9".parse().unwrap(),
            stats: Mutex::new(Running::default()),
            superseded: Arc::default(),
            superseded_reported: AtomicU64::new(0),
            last_age_us: AtomicU64::new(0),
            recent: Mutex::default(),
            last_result: Mutex::default(),
            last_size: std::sync::atomic::AtomicU32::new(0),
            source: Arc::default(),
        })
    }

    #[test]
    fn the_status_line_and_snapshot_say_which_camera_is_lost() {
        let r = Registry::default();
        let (door, yard) = (live("door"), live("yard"));
        r.add(1, door.clone());
        r.add(2, yard);
        assert!(!r.status_line().unwrap().contains("lost"));
        door.source.report(&SourceReport {
            up: false,
            for_us: 0,
            text: "no frame for 5.0 s".into(),
        });
        let line = r.status_line().unwrap();
        assert!(line.contains("| door: camera lost since "), "{line}");
        assert!(line.ends_with("(no frame for 5.0 s)"), "{line}");
        assert!(!line.contains("yard:"), "{line}");
        let now = r.snapshot();
        assert!(!now[0].source_up && now[1].source_up);
        assert_eq!(now[0].source_outages, 1);
        assert_eq!(now[0].source_problem.as_deref(), Some("no frame for 5.0 s"));
        assert_eq!(now[0].source_lost_since.as_ref().map(String::len), Some(8));
        let named = r.summary(Duration::ZERO).clients;
        assert_eq!(
            (named[0].source_up, named[0].source_outages),
            (Some(false), 1)
        );
        assert_eq!(
            (named[1].source_up, named[1].source_outages),
            (Some(true), 0)
        );
        r.remove(1);
        let named = r.summary(Duration::ZERO).clients;
        assert_eq!(
            (named[0].source_up, named[0].source_outages),
            (None, 1),
            "gone, still counted"
        );
    }
}

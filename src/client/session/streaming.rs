//! A connection's two loops once the handshake is done: the sender answers
//! each ticket with the newest frame, the reader takes VERDICTs, TICKETs,
//! RESULTs and GOODBYE; and the watch that notices a server gone silent
//! while it owes a verdict.

use super::{SessionEnd, Tracking};
use crate::client::adapt::Sent;
use crate::client::results;
use crate::client::EncodedFrame;
use crate::latest::LatestReceiver;
use crate::shutdown::{Shutdown, TICK};
use crate::wire::connection::{self, ConnError, Reader, Writer};
use crate::wire::{
    micros_u32, Encoding, FrameHeader, Goodbye, GoodbyeCode, Message, Outcome, Ticket, Welcome,
};
use anyhow::{bail, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Notices a server that stopped answering (frozen, or a link that died
/// without a reset): frames were sent, and nothing came back for longer
/// than the bound (`--io-timeout`). A server owes a VERDICT for every
/// frame within a round trip, so silence while one is owed is not normal;
/// silence while nothing is owed (no frame to send) is.
pub(super) struct Watch {
    /// Triggered when the reader thread has ended (a GOODBYE, EOF, silence).
    pub(super) reader_done: Shutdown,
    /// The server's threshold, and the check that the link's round trip
    /// alone is not over it.
    threshold: Duration,
    link_check: Mutex<crate::gate::LinkCheck>,
    bound: Duration,
    state: Mutex<WatchState>,
}

struct WatchState {
    /// The last message from the server.
    heard: Instant,
    /// Frames sent without a VERDICT yet, and since when one has been owed.
    owed: u64,
    owed_since: Instant,
}

impl Watch {
    pub(super) fn new(bound: Duration, threshold: Duration) -> Self {
        let now = Instant::now();
        Watch {
            reader_done: Shutdown::new(),
            threshold,
            link_check: Mutex::default(),
            bound,
            state: Mutex::new(WatchState {
                heard: now,
                owed: 0,
                owed_since: now,
            }),
        }
    }

    fn sent(&self) {
        let mut s = self.state.lock();
        if s.owed == 0 {
            s.owed_since = Instant::now();
        }
        s.owed += 1;
    }

    fn heard(&self, verdict: bool) {
        let mut s = self.state.lock();
        s.heard = Instant::now();
        if verdict {
            s.owed = s.owed.saturating_sub(1);
        }
    }

    /// Why the server counts as gone, if it does.
    fn silent(&self, server: &str) -> Option<String> {
        let s = self.state.lock();
        let quiet = s.heard.max(s.owed_since).elapsed();
        (s.owed > 0 && quiet > self.bound).then(|| {
            format!(
                "server {server} sent nothing for {:.1} s with {} frame{} unanswered (over --io-timeout): frozen, or the link died; reconnecting",
                quiet.as_secs_f64(),
                s.owed,
                if s.owed == 1 { "" } else { "s" }
            )
        })
    }
}

/// What a GOODBYE from the server means for us.
pub(super) fn goodbye_end(server: &str, g: Goodbye) -> Result<SessionEnd> {
    Ok(match g.code {
        GoodbyeCode::UnsupportedVersion => bail!(
            "the server at {server} refused our protocol version: {}",
            g.text
        ),
        GoodbyeCode::ShuttingDown => SessionEnd::Lost(format!(
            "server {server} is shutting down; waiting for it to come back"
        )),
        GoodbyeCode::ServerFull => {
            SessionEnd::Refused(format!("server {server} is full: {}", g.text))
        }
        code => SessionEnd::Refused(format!(
            "server {server} closed the connection ({code:?}): {}",
            g.text
        )),
    })
}

pub(super) enum SendEnd {
    Stopped,
    ReaderEnded,
    Failed(String),
}

/// Sends the newest frame for each ticket. Blocks on the ticket channel and
/// the frame slot, waking every tick to watch `shutdown`; ends when the
/// reader ends (its ticket sender is dropped) or a send fails.
///
/// The server's `welcome` sets the terms: frames over its `max_frame_bytes`
/// are not sent, and when both sides set `SOURCE_STATE` it is told when the
/// source is lost and back (SOURCE), checked every tick while it waits: at
/// once if the source is lost when the session starts.
pub(super) fn send_loop(
    writer: &mut Writer,
    tickets: &Receiver<(Ticket, Instant)>,
    frames: &LatestReceiver<EncodedFrame>,
    welcome: &Welcome,
    tracking: &Tracking,
    shutdown: &Shutdown,
    watch: &Watch,
) -> SendEnd {
    let max_frame_bytes = welcome.max_frame_bytes;
    let source_state = welcome.capabilities & crate::wire::CAP_SOURCE_STATE != 0;
    let reader_done = &watch.reader_done;
    let mut warned_too_large = false;
    // A new connection starts with the source up: only a loss needs saying.
    let mut told = if tracking.source.lost().is_none() {
        tracking.source.changes()
    } else {
        u64::MAX
    };
    let mut tell_source = |writer: &mut Writer| -> Result<(), String> {
        let now = tracking.source.changes();
        if !source_state || now == told {
            return Ok(());
        }
        told = now;
        let report = tracking.source.report();
        debug!(up = report.up, "telling the server about the source");
        writer
            .send(false, &[&Message::Source(report)])
            .map_err(|e| e.to_string())
    };
    loop {
        // The reader saw the end (a GOODBYE): no frame goes after it.
        if reader_done.is_triggered() {
            return SendEnd::ReaderEnded;
        }
        let (ticket, received) = loop {
            if shutdown.is_triggered() {
                return SendEnd::Stopped;
            }
            if let Err(e) = tell_source(writer) {
                return SendEnd::Failed(e);
            }
            match tickets.recv_timeout(crate::shutdown::TICK) {
                Ok(t) => break t,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return SendEnd::ReaderEnded,
            }
        };
        let frame = loop {
            if shutdown.is_triggered() {
                return SendEnd::Stopped;
            }
            if let Err(e) = tell_source(writer) {
                return SendEnd::Failed(e);
            }
            match frames.recv_timeout(crate::shutdown::TICK) {
                Ok(f) if f.jpeg.len() as u64 > max_frame_bytes as u64 => {
                    if !warned_too_large {
                        warn!("frame of {} bytes is over the server's limit of {max_frame_bytes} bytes: not sent (counted as too_large; adaptation steps down if on, else lower --quality or the size)", f.jpeg.len());
                        warned_too_large = true;
                    }
                    tracking.stats.lock().record_too_large();
                    tracking
                        .adapter
                        .too_large(f.level, f.jpeg.len(), max_frame_bytes);
                }
                Ok(f) if reader_done.is_triggered() => {
                    let _ = f;
                    return SendEnd::ReaderEnded;
                }
                Ok(f) => break f,
                Err(RecvTimeoutError::Timeout) => {
                    if reader_done.is_triggered() {
                        return SendEnd::ReaderEnded;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return SendEnd::Stopped,
            }
        };
        // The source is back: SOURCE up goes before its first frame.
        if let Err(e) = tell_source(writer) {
            return SendEnd::Failed(e);
        }
        let now = Instant::now();
        let header = FrameHeader {
            frame_id: frame.id,
            encoding: Encoding::Jpeg,
            width: frame.width,
            height: frame.height,
            capture_to_send_us: micros_u32(now.saturating_duration_since(frame.captured_at)),
            ticket_held_us: micros_u32(now.saturating_duration_since(received)),
            payload_len: frame.jpeg.len() as u32,
        };
        tracking
            .in_flight
            .sent(frame.id, frame.captured_at, frame.level);
        watch.sent();
        if let Err(e) = writer.send_frame(&header, &frame.jpeg, ticket) {
            return SendEnd::Failed(e.to_string());
        }
        tracking.adapter.send_took(frame.level, now.elapsed());
        tracking.stats.lock().record_sent(frame.jpeg.len());
        *tracking.sent.lock() = Some(Sent {
            width: frame.width,
            height: frame.height,
            as_captured: frame.as_captured,
        });
    }
}

/// Reads tickets (passed to the sender), verdicts (counted) and results
/// (counted, written) until the connection ends; returns how it ended.
pub(super) fn read_loop(
    mut reader: Reader,
    tickets: crossbeam_channel::Sender<(Ticket, Instant)>,
    tracking: &Tracking,
    stop: &Shutdown,
    server: &str,
    stall: Duration,
    watch: &Watch,
) -> SessionEnd {
    loop {
        let read = reader.read_message(Some(TICK), stall, stop);
        match &read {
            Err(ConnError::TimedOut(_, connection::WAITING)) => {
                if let Some(why) = watch.silent(server) {
                    return SessionEnd::Lost(why);
                }
                continue;
            }
            Ok(Some(m)) => watch.heard(matches!(m, Message::Verdict(_))),
            _ => {}
        }
        match read {
            Ok(Some(Message::Ticket(t))) => {
                let now = Instant::now();
                let landed = reader.arrival().map_or(now, |a| a.min(now));
                if tickets.try_send((t, landed)).is_err() {
                    return SessionEnd::Refused(format!(
                        "{server} sent more tickets than its window"
                    ));
                }
            }
            Ok(Some(Message::Verdict(v))) => {
                let (age, transit) = (
                    Duration::from_micros(v.age_us as u64),
                    Duration::from_micros(v.transit_us as u64),
                );
                tracking
                    .stats
                    .lock()
                    .record_verdict(v.outcome, age, transit, Instant::now());
                if v.outcome != Outcome::Rejected {
                    let works = watch
                        .link_check
                        .lock()
                        .observe(transit, age, watch.threshold);
                    if let Some(works) = works {
                        warn!(
                            "the link's round trip alone ({:.1} ms) is over the server's threshold of {} ms: every frame will be stale whatever this client does; a server --max-latency-ms of {} would let frames through",
                            transit.as_secs_f64() * 1e3,
                            watch.threshold.as_millis(),
                            works.as_millis()
                        );
                    }
                }
                if let Some(level) = tracking.in_flight.level_of(v.frame_id) {
                    tracking.adapter.verdict(level, v.outcome, age);
                }
                if v.outcome != Outcome::Accepted {
                    tracking.in_flight.forget(v.frame_id);
                }
                match v.outcome {
                    Outcome::Rejected => warn!(
                        frame = v.frame_id,
                        "server rejected frame: {}",
                        v.reason.describe()
                    ),
                    Outcome::DroppedStale => debug!(
                        frame = v.frame_id,
                        age_ms = v.age_us as f64 / 1e3,
                        "server dropped stale frame"
                    ),
                    Outcome::Accepted => {}
                }
            }
            Ok(Some(Message::Result(r))) => {
                let capture_to_result =
                    tracking.in_flight.answered(r.frame_id).map(|t| t.elapsed());
                debug!(frame = r.frame_id, status = r.status.as_str(), "result");
                tracking.stats.lock().record_result(
                    r.status,
                    capture_to_result,
                    results::shown(&r),
                );
                tracking.out.lock().write(&r, capture_to_result);
            }
            Ok(Some(Message::Goodbye(g))) => {
                return goodbye_end(server, g)
                    .unwrap_or_else(|e| SessionEnd::Refused(e.to_string()))
            }
            Ok(Some(other)) => {
                return SessionEnd::Refused(format!("{server} sent an unexpected {}", other.name()))
            }
            Ok(None) => return SessionEnd::Lost(format!("server {server} closed the connection")),
            Err(ConnError::Shutdown) => return SessionEnd::Stopped,
            Err(e) => return SessionEnd::Lost(format!("connection to {server} lost: {e}")),
        }
    }
}

//! A source that stops giving frames, and comes back: a USB camera
//! unplugged, an ffmpeg child killed, an HTTP camera rebooting, a folder
//! moved away.
//!
//! [`SourceHealth`] is what the rest of the client sees: up, or lost since
//! when and why. It goes *lost* when the source fails (an error from
//! `next_frame`), or when the capture thread has waited in `next_frame` for
//! longer than `--source-timeout` (a source that blocks: a stalled camera,
//! an RTSP stream reconnecting inside ffmpeg); and *up* again with the next
//! frame. The session tells the server (a SOURCE message) and the summary
//! counts the outages. [`Outages`] is the capture thread's side: on a
//! failure it opens the source again (the same `--source`, a camera found
//! again by name or path) with backoff, 250 ms doubling to 5 s, until it
//! opens or the client stops. The connection stays up meanwhile.

use super::Source;
use crate::shutdown::Shutdown;
use crate::wire::{micros_u32, SourceReport};
use anyhow::Result;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Opens the source again after it failed.
pub type Reopen = Box<dyn FnMut() -> Result<Box<dyn Source>> + Send>;

/// First wait before opening a failed source again, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether the source gives frames, shared by the capture thread (which
/// says what happens), the watch (which notices a source that blocks) and
/// the sessions (which tell the server).
#[derive(Debug, Default)]
pub struct SourceHealth {
    state: Mutex<State>,
    /// Bumped at every change between up and lost.
    changes: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    lost: Option<Lost>,
    /// Since when the capture thread waits in `next_frame` (None: not waiting).
    asking_since: Option<Instant>,
    /// Outages so far (the one going on included), and their time, ended ones.
    outages: u64,
    lost_total: Duration,
    /// How long the last outage that ended lasted.
    last_outage: Duration,
}

/// An outage going on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// When the source gave its last frame, or was first asked for the one
    /// that never came.
    pub since: Instant,
    pub why: String,
}

impl SourceHealth {
    /// The capture thread is about to wait for a frame.
    pub fn asking(&self) {
        let mut s = self.state.lock();
        s.asking_since.get_or_insert_with(Instant::now);
    }

    /// A frame came: the source is up (again).
    pub fn frame(&self) {
        let mut s = self.state.lock();
        s.asking_since = None;
        if let Some(lost) = s.lost.take() {
            let took = lost.since.elapsed();
            s.lost_total += took;
            s.last_outage = took;
            drop(s);
            self.changes.fetch_add(1, Ordering::SeqCst);
            info!("source back after {:.1} s", took.as_secs_f64());
        }
    }

    /// The source failed with `why`: lost now (if it was not already).
    pub fn failed(&self, why: &str) {
        let mut s = self.state.lock();
        let since = s.asking_since.take().unwrap_or_else(Instant::now);
        self.lose(s, since, why.to_string());
    }

    /// Called often (by the watch): a source that has kept the capture
    /// thread waiting for longer than `timeout` is lost.
    pub fn check(&self, timeout: Duration) {
        let s = self.state.lock();
        if s.lost.is_some() {
            return;
        }
        if let Some(since) = s.asking_since.filter(|t| t.elapsed() > timeout) {
            let why = format!("no frame for {:.1} s", since.elapsed().as_secs_f64());
            self.lose(s, since, why);
        }
    }

    fn lose(&self, mut s: parking_lot::MutexGuard<'_, State>, since: Instant, why: String) {
        if s.lost.is_some() {
            return;
        }
        s.outages += 1;
        s.lost = Some(Lost {
            since,
            why: why.clone(),
        });
        drop(s);
        self.changes.fetch_add(1, Ordering::SeqCst);
        warn!("source lost: {why}; the connection stays up until it is back");
    }

    /// How many times the source changed between up and lost: a session
    /// compares it with what it last told the server.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// The outage going on, if one is.
    pub fn lost(&self) -> Option<Lost> {
        self.state.lock().lost.clone()
    }

    /// The state as a SOURCE message says it.
    pub fn report(&self) -> SourceReport {
        let s = self.state.lock();
        match &s.lost {
            Some(l) => SourceReport {
                up: false,
                for_us: micros_u32(l.since.elapsed()),
                text: l.why.clone(),
            },
            None => SourceReport {
                up: true,
                for_us: micros_u32(s.last_outage),
                text: String::new(),
            },
        }
    }

    /// Outages so far, and the time lost in them (the one going on included).
    pub fn totals(&self) -> (u64, Duration) {
        let s = self.state.lock();
        let open = s
            .lost
            .as_ref()
            .map_or(Duration::ZERO, |l| l.since.elapsed());
        (s.outages, s.lost_total + open)
    }
}

/// The capture thread's side: says what the source does, and opens it
/// again when it fails.
pub struct Outages {
    pub health: Arc<SourceHealth>,
    /// None: a failure ends the run (standard input, a source of the
    /// caller's own).
    reopen: Option<Reopen>,
}

impl Outages {
    pub fn new(health: Arc<SourceHealth>, reopen: Option<Reopen>) -> Self {
        Outages { health, reopen }
    }

    /// Nothing reopened, nothing watched by anyone (tests, benchmarks).
    pub fn none() -> Self {
        Self::new(Arc::default(), None)
    }

    /// The source failed with `e`. Returns it opened again, after the
    /// backoff, or gives `e` back when it cannot be reopened (no way to,
    /// or a stream that ended: the run is over) and `None` when the client
    /// is stopping. Blocks until one of those; a stop unblocks it within a tick.
    pub fn recover(
        &mut self,
        e: anyhow::Error,
        shutdown: &Shutdown,
    ) -> Result<Option<Box<dyn Source>>> {
        let Some(reopen) = self.reopen.as_mut() else {
            return Err(e);
        };
        if e.downcast_ref::<super::mjpeg::Ended>().is_some() {
            return Err(e);
        }
        self.health.failed(&format!("{e:#}"));
        let mut backoff = FIRST_BACKOFF;
        let mut said = None;
        loop {
            if shutdown.wait_timeout(backoff) {
                return Ok(None);
            }
            match reopen() {
                Ok(source) => {
                    info!("source opened again: {}", source.describe());
                    return Ok(Some(source));
                }
                Err(e) => {
                    let text = format!("{e:#}");
                    if said.as_deref() != Some(text.as_str()) {
                        warn!(
                            "cannot open the source again (retrying every {} s at most): {text}",
                            MAX_BACKOFF.as_secs()
                        );
                        said = Some(text);
                    } else {
                        debug!("cannot open the source again: {text}");
                    }
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_one_outage_until_the_next_frame() {
        let h = SourceHealth::default();
        h.asking();
        h.frame();
        assert_eq!(h.changes(), 0);
        assert!(h.report().up);
        h.asking();
        h.failed("camera failed: No such device");
        h.failed("again");
        let r = h.report();
        assert!(!r.up);
        assert_eq!(r.text, "camera failed: No such device");
        assert_eq!(h.changes(), 1);
        h.frame();
        assert_eq!(h.changes(), 2);
        let back = h.report();
        assert!(back.up && back.text.is_empty());
        assert_eq!(
            back.for_us as u128,
            h.totals().1.as_micros(),
            "up says how long it was lost"
        );
        assert_eq!(h.totals().0, 1);
    }

    #[test]
    fn a_source_that_blocks_is_lost_after_the_timeout_only() {
        let h = SourceHealth::default();
        h.check(Duration::ZERO);
        assert!(h.lost().is_none(), "not waiting: not lost");
        h.asking();
        h.check(Duration::from_secs(60));
        assert!(h.lost().is_none());
        std::thread::sleep(Duration::from_millis(5));
        h.check(Duration::from_millis(1));
        let lost = h.lost().expect("lost");
        assert!(lost.why.starts_with("no frame for"), "{}", lost.why);
        h.frame();
        assert!(h.lost().is_none());
        let (n, t) = h.totals();
        assert_eq!(n, 1);
        assert!(t >= Duration::from_millis(5));
    }

    #[test]
    fn recover_reopens_with_backoff_and_stops_on_shutdown() {
        let tries = Arc::new(AtomicU64::new(0));
        let t = tries.clone();
        let mut o = Outages::new(
            Arc::default(),
            Some(Box::new(move || {
                if t.fetch_add(1, Ordering::SeqCst) < 2 {
                    anyhow::bail!("no such device")
                }
                Ok(
                    Box::new(crate::client::source::test_pattern::TestPattern::new(
                        8, 8, 0.0,
                    )) as Box<dyn Source>,
                )
            })),
        );
        let opened = o
            .recover(anyhow::anyhow!("unplugged"), &Shutdown::new())
            .unwrap();
        assert!(opened.is_some());
        assert_eq!(tries.load(Ordering::SeqCst), 3);
        assert!(o.health.lost().is_some(), "lost until a frame comes");

        let stop = Shutdown::new();
        stop.trigger();
        assert!(o
            .recover(anyhow::anyhow!("again"), &stop)
            .unwrap()
            .is_none());

        let mut none = Outages::none();
        let e = none
            .recover(anyhow::anyhow!("broken"), &Shutdown::new())
            .err()
            .expect("no way to reopen: the error comes back");
        assert_eq!(e.to_string(), "broken");
    }
}

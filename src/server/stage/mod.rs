//! The stages behind the sessions: threads that wait on every client's
//! newest-frame slot at once and hand what they take on. One loop
//! ([`run`]) serves every kind of [`Stage`]:
//!
//! - [`sinks::Sinks`]: the display thread's sinks (the window, a test's probe);
//! - [`local::Local`]: a [`Processor`](crate::process::Processor) on the processing thread;
//! - [`handoff::Takers`]: frames given to takers on threads of their own (Python);
//! - `pool::Pool`: frames given to workers of a pool through NATS.
//!
//! The moment a frame leaves its slot for processing is one function,
//! [`HandOff::hand`]: every processing kind calls it, so what must hold at
//! hand-off (the frame is still fresh) holds for all of them.

pub(super) mod handoff;
pub(super) mod local;
#[cfg(feature = "nats")]
pub(super) mod pool;
mod processing;
pub(super) mod sinks;

pub(super) use processing::Processing;

use crate::latest::LatestReceiver;
use crate::process::{ArrivedFrame, ClientId, ProcessingCounts};
use crate::shutdown::Shutdown;
use crossbeam_channel::{Receiver, Select, SelectedOperation};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// A new client for a stage: its newest-frame receiver.
pub(crate) struct Joined {
    pub(crate) id: ClientId,
    pub(crate) name: Arc<str>,
    pub(crate) frames: LatestReceiver<ArrivedFrame>,
    /// Its camera's state, for the sinks that show it (the window).
    pub(crate) source: Arc<crate::server::source_state::SourceState>,
}

/// One kind of stage: what it does with the events of [`run`]'s loop.
pub(crate) trait Stage {
    /// Events from the stage's own channels (wants, broker messages).
    type Own;

    /// How often [`tick`](Stage::tick) runs, at the least.
    fn tick_every(&self) -> Duration {
        crate::shutdown::TICK
    }

    /// Registers the stage's own channels on `sel`; returns how many.
    fn listen<'a>(&'a self, _sel: &mut Select<'a>) -> usize {
        0
    }

    /// Completes `op` on the stage's own channel number `i` (as registered).
    fn receive(&self, _i: usize, _op: SelectedOperation<'_>) -> Option<Self::Own> {
        None
    }

    /// One of the stage's own events.
    fn own(&mut self, _event: Self::Own, _clients: &[Joined]) {}

    /// Before each wait: deadlines and whatever else is due.
    fn prepare(&mut self, _clients: &[Joined]) {}

    /// Whether frames are taken from the slots now (someone waits for one).
    fn takes_frames(&self) -> bool {
        true
    }

    /// A client's newest frame, taken from its slot.
    fn frame(&mut self, frame: ArrivedFrame, clients: &[Joined]);

    /// `client` disconnected (it is no longer in the clients given).
    fn left(&mut self, _client: &Joined) {}

    /// At least every [`tick_every`](Stage::tick_every). False asks the
    /// server to stop (the window was closed).
    fn tick(&mut self, _clients: &[Joined]) -> bool {
        true
    }

    /// The loop has ended: answer or let go of what the stage still holds.
    fn finish(&mut self) {}
}

/// The loop of every stage: waits on new clients, the stage's own channels
/// and (while the stage takes frames) every client's newest-frame slot at
/// once, then gives the stage that one event. Unblocked by any of them or
/// the tick; ends on shutdown, when every session's sender is gone, or when
/// the stage's tick asks to stop.
pub(crate) fn run<S: Stage>(stage: &mut S, joined: &Receiver<Joined>, shutdown: &Shutdown) {
    let tick = stage.tick_every();
    let mut clients: Vec<Joined> = Vec::new();
    let mut last_tick = Instant::now();
    enum Event<O> {
        Joined(Joined),
        Own(O),
        Frame(ArrivedFrame),
        Left(usize),
        Idle,
    }
    while !shutdown.is_triggered() {
        stage.prepare(&clients);
        let event = {
            let mut sel = Select::new();
            sel.recv(joined);
            let own = stage.listen(&mut sel);
            if stage.takes_frames() {
                for c in &clients {
                    sel.recv(&c.frames);
                }
            }
            match sel.select_timeout(tick) {
                Ok(op) => match op.index() {
                    0 => match op.recv(joined) {
                        Ok(j) => Event::Joined(j),
                        Err(_) => break, // every session's sender is gone: the server is ending
                    },
                    i if i <= own => stage.receive(i - 1, op).map_or(Event::Idle, Event::Own),
                    i => {
                        let c = i - 1 - own;
                        match op.recv(&clients[c].frames) {
                            Ok(frame) => Event::Frame(frame),
                            Err(_) => Event::Left(c),
                        }
                    }
                },
                Err(_) => Event::Idle,
            }
        };
        match event {
            Event::Joined(j) => clients.push(j),
            Event::Own(o) => stage.own(o, &clients),
            Event::Frame(frame) => stage.frame(frame, &clients),
            Event::Left(i) => {
                let gone = clients.remove(i);
                stage.left(&gone);
            }
            Event::Idle => {}
        }
        if last_tick.elapsed() >= tick {
            last_tick = Instant::now();
            if !stage.tick(&clients) {
                break;
            }
        }
    }
    stage.finish();
}

/// A frame at the moment a stage hands it to processing (a processor, a
/// taker, a pool worker).
pub(crate) struct Handed {
    pub(crate) frame: ArrivedFrame,
    /// When it was handed (its RESULT's `wait_us` ends here).
    pub(crate) at: Instant,
}

/// The moment of hand-off, the one place its rule is written: a frame is
/// handed to processing only while its age is within the threshold. One
/// that grew older in its slot (its camera paused or lost, its link
/// stalled, so nothing newer replaced it) is answered `expired`, counted,
/// and not handed: the taker waits for the next fresh frame.
#[derive(Clone)]
pub(crate) struct HandOff {
    pub(crate) max_age: Duration,
    pub(crate) counts: Arc<ProcessingCounts>,
}

impl HandOff {
    pub(crate) fn new(max_age: Duration, counts: Arc<ProcessingCounts>) -> Self {
        HandOff { max_age, counts }
    }

    /// Hands `frame` now, or answers it `expired` (None).
    pub(crate) fn hand(&self, frame: ArrivedFrame) -> Option<Handed> {
        let at = Instant::now();
        let age = frame.age + at.saturating_duration_since(frame.arrived);
        if age > self.max_age {
            self.counts.expired.fetch_add(1, Ordering::Relaxed);
            debug!(
                client = &*frame.client_name,
                frame_id = frame.frame_id,
                age_ms = age.as_secs_f64() * 1e3,
                "expired in its slot: not handed"
            );
            if let Some(reply) = &frame.reply {
                let _ = reply.try_send(crate::process::expired(&frame, age, self.max_age));
            }
            return None;
        }
        Some(Handed { frame, at })
    }
}

/// Failures per client and sink or processor, logged at the 1st, 2nd, 4th, …
/// so a sink failing on every frame fills no log.
#[derive(Default)]
pub(crate) struct Failures {
    counts: HashMap<(ClientId, usize), u64>,
}

impl Failures {
    /// Logs `what` (sink or processor number `k` named `name`) failing on `frame`.
    pub(crate) fn note(
        &mut self,
        frame: &ArrivedFrame,
        k: usize,
        name: &str,
        what: &dyn std::fmt::Display,
    ) {
        let n = self.counts.entry((frame.client, k)).or_default();
        *n += 1;
        if n.is_power_of_two() {
            warn!(
                sink = name,
                client = &*frame.client_name,
                failures = *n,
                "frame {}: {what:#}",
                frame.frame_id
            );
        }
    }

    /// Forgets `client`'s failures.
    pub(crate) fn left(&mut self, client: ClientId) {
        self.counts.retain(|(c, _), _| *c != client);
    }
}

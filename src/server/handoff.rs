//! Processing by code that takes frames at its own pace, on threads of its
//! own (the Python binding's `for frame in server`), instead of by a
//! [`Processor`] on the processing thread.
//!
//! A taker says it wants a frame ([`Handoff::want`]); the processing thread
//! then takes the newest frame of whichever client has one and gives it to
//! that taker as a [`Taken`]. Until someone wants one, frames stay in their
//! latest-only slots and replace each other (the replaced one is answered
//! `skipped` by its session), so a slow taker sees only newest frames.
//!
//! Every taken frame gets exactly one RESULT: [`Taken::reply`] or
//! [`Taken::fail`], or `failed` when the taker let it go without a reply,
//! or at the deadline (`process_timeout`) when it kept it unanswered. A reply
//! after that is refused ([`Late`]).
//!
//! The same [`Taken`] serves a worker of a pool: [`HandoffProcessor`] is a
//! [`Processor`] that gives each frame to a taker
//! and waits for its answer.

use super::pipeline::Joined;
use super::process::{Output, ProcessingCounts, Processor};
use crate::server::sink::{ArrivedFrame, FrameView};
use crate::shutdown::Shutdown;
use crate::wire::{micros_u32, ProcessResult, ResultKind, ResultStatus};
use anyhow::Result;
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most wants waiting at once (a taker per thread: far more than any program has).
const MAX_WANTS: usize = 1024;

/// The takers' side: clone it for each thread that takes frames.
#[derive(Clone)]
pub struct Handoff {
    wants: Sender<Want>,
}

/// The processing thread's side, given to [`Server::handoff`](super::Server::handoff).
pub struct HandoffStage {
    name: String,
    wants: Receiver<Want>,
    timeout: Duration,
}

/// Makes the two sides: `name` is the processor's name in figures and logs,
/// `timeout` how long a taker may keep a frame unanswered.
pub fn channel(name: impl Into<String>, timeout: Duration) -> (Handoff, HandoffStage) {
    let (tx, rx) = crossbeam_channel::bounded(MAX_WANTS);
    (
        Handoff { wants: tx },
        HandoffStage {
            name: name.into(),
            wants: rx,
            timeout,
        },
    )
}

/// The stage has ended (the server stopped): no frame will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server has stopped")]
pub struct Closed;

/// A reply that was not sent: the frame was already answered (at its
/// deadline, or by an earlier reply), or no one waits for it any more (its
/// camera's connection closed, the server stopped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame {frame_id}: this reply was not sent ({why})")]
pub struct Late {
    pub frame_id: u64,
    pub why: String,
}

impl Handoff {
    /// Says that this thread wants a frame; [`Wait::wait`] then gets it.
    /// Keep the [`Wait`] while waiting in slices (to look at signals
    /// between them): dropping it withdraws the want.
    pub fn want(&self) -> Result<Wait, Closed> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let alive = Arc::new(());
        let want = Want {
            tx,
            alive: Arc::downgrade(&alive),
        };
        self.wants.send(want).map_err(|_| Closed)?;
        Ok(Wait { rx, _alive: alive })
    }

    /// Blocks for the next frame, at most `timeout` (None: not in time).
    pub fn take(&self, timeout: Duration) -> Result<Option<Taken>, Closed> {
        self.want()?.wait(timeout)
    }
}

/// One want, waiting for its frame.
pub struct Wait {
    rx: Receiver<Taken>,
    /// The want's [`Want::waits`] is true while this lives.
    _alive: Arc<()>,
}

/// A want as the stage holds it: where its frame goes.
pub(crate) struct Want {
    tx: Sender<Taken>,
    alive: std::sync::Weak<()>,
}

impl Want {
    /// True while its taker still waits (its [`Wait`] is not dropped).
    fn waits(&self) -> bool {
        self.alive.strong_count() > 0
    }

    /// Gives `taken` to the taker, or back when it no longer waits.
    fn give(&self, taken: Taken) -> Option<Taken> {
        if !self.waits() {
            return Some(taken);
        }
        self.tx.try_send(taken).err().map(|e| e.into_inner())
    }
}

impl Wait {
    /// Blocks until the frame comes (Some), `timeout` passes (None: still
    /// wanted, call again) or the server stops ([`Closed`]). Unblocked by
    /// any of these.
    pub fn wait(&self, timeout: Duration) -> Result<Option<Taken>, Closed> {
        match self.rx.recv_timeout(timeout) {
            Ok(t) => Ok(Some(t)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(Closed),
        }
    }
}

/// Where a taken frame's answer goes.
enum To {
    /// Straight to the client's session, as its RESULT.
    Session {
        reply: Option<Sender<ProcessResult>>,
        counts: Arc<ProcessingCounts>,
        frame_id: u64,
        arrived: Instant,
        handed: Instant,
    },
    /// To a [`HandoffProcessor`] waiting for it.
    Caller(Sender<Result<Output>>),
}

/// A taken frame's answer: where it goes until it is given, then why it
/// cannot be given again.
struct Answer {
    to: Mutex<Result<To, String>>,
}

impl Answer {
    fn new(to: To) -> Arc<Answer> {
        Arc::new(Answer {
            to: Mutex::new(Ok(to)),
        })
    }

    /// Sends `out` unless the frame was answered already (then: why it was);
    /// `now` is what a later answer is told.
    fn give(&self, out: Result<Output, String>, now: &str) -> Result<(), String> {
        let to = {
            let mut guard = self.to.lock();
            match &*guard {
                Err(why) => return Err(why.clone()),
                Ok(_) => std::mem::replace(&mut *guard, Err(now.to_string())),
            }
        };
        match to {
            Ok(To::Session {
                reply,
                counts,
                frame_id,
                arrived,
                handed,
            }) => {
                let (status, (kind, result)) = match out {
                    Ok(o) => {
                        counts.processed.fetch_add(1, Ordering::Relaxed);
                        (ResultStatus::Processed, o.into_wire())
                    }
                    Err(text) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        (ResultStatus::Failed, (ResultKind::Text, Bytes::from(text)))
                    }
                };
                if let Some(reply) = reply {
                    // Never full (unbounded; the connection bounds what it owes).
                    let sent = reply.try_send(ProcessResult {
                        frame_id,
                        status,
                        wait_us: micros_u32(handed.saturating_duration_since(arrived)),
                        processing_us: micros_u32(handed.elapsed()),
                        kind,
                        result,
                    });
                    if sent.is_err() {
                        return Err("the camera's connection has closed".into());
                    }
                }
            }
            Ok(To::Caller(tx)) => {
                if tx.send(out.map_err(anyhow::Error::msg)).is_err() {
                    return Err("the pool's server no longer waits for it".into());
                }
            }
            Err(_) => unreachable!("checked above"),
        }
        Ok(())
    }

    fn is_answered(&self) -> bool {
        self.to.lock().is_err()
    }
}

/// A frame given to a taker: answer it once with [`reply`](Taken::reply)
/// or [`fail`](Taken::fail). Dropped unanswered, it is answered `failed`.
pub struct Taken {
    pub frame: ArrivedFrame,
    /// When the stage gave it to the taker.
    pub handed: Instant,
    answer: Arc<Answer>,
    /// The processor's name, which a failure's text starts with.
    name: Arc<str>,
}

impl Taken {
    /// The frame's age now: its age on arrival plus the time since.
    pub fn age(&self) -> Duration {
        self.frame.age + self.frame.arrived.elapsed()
    }

    /// Answers the frame with `out` (status `processed`).
    pub fn reply(&self, out: Output) -> Result<(), Late> {
        self.give(Ok(out), "a reply was sent before")
    }

    /// Answers the frame `failed`, with `why` as the text the client sees.
    pub fn fail(&self, why: &str) -> Result<(), Late> {
        self.give(
            Err(format!("{}: {why}", self.name)),
            "it was answered failed before",
        )
    }

    /// True once the frame has been answered (by a reply, or at its deadline).
    pub fn is_answered(&self) -> bool {
        self.answer.is_answered()
    }

    fn give(&self, out: Result<Output, String>, now: &str) -> Result<(), Late> {
        self.answer.give(out, now).map_err(|why| Late {
            frame_id: self.frame.frame_id,
            why,
        })
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        let _ = self.fail("the frame was let go without a reply");
    }
}

impl HandoffStage {
    /// The processor's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The processing thread with takers: waits on wants, new clients and,
    /// while a taker waits, every client's newest frame; answers frames kept
    /// past the deadline. Unblocked by any of them or the tick; ends on
    /// shutdown, which tells every waiting taker [`Closed`].
    pub(super) fn run(
        self,
        joined: &Receiver<Joined>,
        counts: &Arc<ProcessingCounts>,
        shutdown: &Shutdown,
    ) {
        let name: Arc<str> = self.name.as_str().into();
        let mut clients: Vec<Joined> = Vec::new();
        let mut wants: VecDeque<Want> = VecDeque::new();
        // Frames taken from their slots for a taker that gave up before it
        // got them: at most one per client, given to the next taker.
        let mut stash: Vec<ArrivedFrame> = Vec::new();
        // Frames handed and not yet answered, with their deadlines.
        let mut out: Vec<(Instant, Arc<Answer>)> = Vec::new();
        let timeout_text = format!(
            "no reply within {:.1} s (process_timeout)",
            self.timeout.as_secs_f64()
        );
        enum Event {
            Joined(Joined),
            Want(Want),
            Frame(ArrivedFrame),
            Left(usize),
            Idle,
        }
        while !shutdown.is_triggered() {
            let now = Instant::now();
            out.retain(|(deadline, a)| {
                if a.is_answered() {
                    return false;
                }
                if *deadline <= now {
                    let _ = a.give(
                        Err(format!("{name}: {timeout_text}")),
                        &format!("it was answered failed at its deadline: {timeout_text}"),
                    );
                    return false;
                }
                true
            });
            // A taker that gave up (its `Wait` dropped) wants nothing.
            wants.retain(|w| w.waits());
            let event = {
                let mut sel = Select::new();
                sel.recv(joined);
                sel.recv(&self.wants);
                if !wants.is_empty() && stash.is_empty() {
                    for c in &clients {
                        sel.recv(&c.frames);
                    }
                }
                match sel.select_timeout(crate::shutdown::TICK) {
                    Ok(op) => match op.index() {
                        0 => match op.recv(joined) {
                            Ok(j) => Event::Joined(j),
                            Err(_) => break,
                        },
                        1 => op.recv(&self.wants).map_or(Event::Idle, Event::Want),
                        i => match op.recv(&clients[i - 2].frames) {
                            Ok(f) => Event::Frame(f),
                            Err(_) => Event::Left(i - 2),
                        },
                    },
                    Err(_) => Event::Idle,
                }
            };
            match event {
                Event::Joined(j) => clients.push(j),
                Event::Want(w) => wants.push_back(w),
                Event::Left(i) => {
                    let gone = clients.remove(i);
                    stash.retain(|f| f.client != gone.id);
                }
                Event::Frame(frame) => {
                    // Its client's older stashed frame (if any) is replaced.
                    if let Some(i) = stash.iter().position(|f| f.client == frame.client) {
                        let old = std::mem::replace(&mut stash[i], frame);
                        answer_skipped(&old);
                    } else {
                        stash.push(frame);
                    }
                }
                Event::Idle => {}
            }
            // Give what is stashed to takers that still wait, oldest want first.
            while !stash.is_empty() {
                let Some(w) = wants.pop_front() else { break };
                if !w.waits() {
                    continue;
                }
                let mut frame = stash.remove(0);
                // A newer frame of that client may be in its slot by now.
                if let Some(c) = clients.iter().find(|c| c.id == frame.client) {
                    if let Ok(newer) = c.frames.try_recv() {
                        answer_skipped(&std::mem::replace(&mut frame, newer));
                    }
                }
                let handed = Instant::now();
                let answer = Answer::new(To::Session {
                    reply: frame.reply.clone(),
                    counts: counts.clone(),
                    frame_id: frame.frame_id,
                    arrived: frame.arrived,
                    handed,
                });
                let taken = Taken {
                    frame,
                    handed,
                    answer: answer.clone(),
                    name: name.clone(),
                };
                // Refused only if the taker gave up this instant: then the
                // dropped frame is answered failed, as any frame let go.
                let _ = w.give(taken);
                out.push((handed + self.timeout, answer));
            }
        }
        // Stopping: nobody will take what is stashed.
        for f in stash {
            answer_skipped(&f);
        }
        // Waiting takers see `Closed` when their want is dropped here.
    }
}

/// Answers `skipped` a frame nobody took (replaced by a newer one).
fn answer_skipped(frame: &ArrivedFrame) {
    if let Some(reply) = &frame.reply {
        let _ = reply.try_send(super::process::skipped(frame.frame_id, None));
    }
}

/// A [`Processor`] for a worker of a pool whose frames are taken by code
/// of its own ([`Handoff`]): each frame goes to the next taker and the
/// worker waits for its answer, at most `timeout`.
pub struct HandoffProcessor {
    name: Arc<str>,
    wants: Receiver<Want>,
    /// The want of a taker that waits, once [`Processor::wait_ready`] found one.
    ready: Option<Want>,
    timeout: Duration,
}

impl Clone for HandoffProcessor {
    /// Another processor for the same takers (one per worker thread).
    fn clone(&self) -> Self {
        HandoffProcessor {
            name: self.name.clone(),
            wants: self.wants.clone(),
            ready: None,
            timeout: self.timeout,
        }
    }
}

impl HandoffProcessor {
    /// A processor giving frames to the takers of the returned [`Handoff`].
    pub fn channel(name: impl Into<String>, timeout: Duration) -> (Handoff, HandoffProcessor) {
        let (handoff, stage) = channel(name, timeout);
        (
            handoff,
            HandoffProcessor {
                name: stage.name.as_str().into(),
                wants: stage.wants,
                ready: None,
                timeout,
            },
        )
    }

    /// Waits (at most `within`) for a taker that still waits.
    fn next_want(&self, within: Duration) -> Option<Want> {
        let until = Instant::now() + within;
        loop {
            let w = self.wants.recv_deadline(until).ok()?;
            if w.waits() {
                return Some(w);
            }
        }
    }
}

impl Processor for HandoffProcessor {
    fn name(&self) -> &str {
        &self.name
    }

    fn wait_ready(&mut self, stop: &Shutdown) -> bool {
        if self.ready.as_ref().is_some_and(|w| w.waits()) {
            return true;
        }
        while !stop.is_triggered() {
            if let Some(w) = self.next_want(crate::shutdown::TICK) {
                self.ready = Some(w);
                return true;
            }
        }
        false
    }

    fn process(&mut self, view: &mut FrameView) -> Result<Output> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let answer = Answer::new(To::Caller(tx));
        let mut taken = Taken {
            frame: view.frame.clone(),
            handed: Instant::now(),
            answer: answer.clone(),
            name: self.name.clone(),
        };
        let mut want = self.ready.take();
        loop {
            let Some(w) = want.take().or_else(|| self.next_want(self.timeout)) else {
                let _ = answer.give(Err(String::new()), "nobody waited for it");
                anyhow::bail!(
                    "nobody took the frame within {:.1} s",
                    self.timeout.as_secs_f64()
                );
            };
            match w.give(taken) {
                None => break,
                Some(t) => taken = t,
            }
        }
        match rx.recv_timeout(self.timeout) {
            Ok(out) => out,
            Err(_) => {
                let why = format!(
                    "no reply within {:.1} s (process_timeout)",
                    self.timeout.as_secs_f64()
                );
                match answer.give(
                    Err(String::new()),
                    &format!("it was answered failed at its deadline: {why}"),
                ) {
                    Ok(()) => anyhow::bail!(why),
                    // The taker's answer raced the deadline in: it stands.
                    Err(_) => rx.try_recv().unwrap_or_else(|_| Err(anyhow::anyhow!(why))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latest;
    use crate::server::sink::tests::arrived;

    /// A stage running on its own thread with one client, whose slot and
    /// result channel the test holds.
    struct Rig {
        handoff: Handoff,
        slot: latest::LatestSender<ArrivedFrame>,
        results: Receiver<ProcessResult>,
        reply: Sender<ProcessResult>,
        counts: Arc<ProcessingCounts>,
        shutdown: Shutdown,
        thread: Option<std::thread::JoinHandle<()>>,
        _joined: Sender<Joined>,
    }

    fn rig(timeout: Duration) -> Rig {
        let (handoff, stage) = channel("python", timeout);
        let (joined_tx, joined_rx) = crossbeam_channel::bounded(4);
        let (slot, frames) = latest::channel();
        joined_tx
            .send(Joined {
                id: 1,
                name: "cam".into(),
                frames,
                source: Arc::default(),
            })
            .unwrap();
        let (reply, results) = crossbeam_channel::unbounded();
        let counts = Arc::new(ProcessingCounts::default());
        let shutdown = Shutdown::new();
        let thread = {
            let (counts, shutdown) = (counts.clone(), shutdown.clone());
            std::thread::spawn(move || stage.run(&joined_rx, &counts, &shutdown))
        };
        Rig {
            handoff,
            slot,
            results,
            reply,
            counts,
            shutdown,
            thread: Some(thread),
            _joined: joined_tx,
        }
    }

    impl Rig {
        fn frame(&self, id: u64) {
            let mut f = arrived(crate::media::jpeg::tests::sample_jpeg(16, 8));
            f.frame_id = id;
            f.reply = Some(self.reply.clone());
            self.slot.send(f);
        }
        fn result(&self) -> ProcessResult {
            self.results
                .recv_timeout(Duration::from_secs(5))
                .expect("a result within 5 s")
        }
        fn take(&self) -> Taken {
            self.handoff
                .take(Duration::from_secs(5))
                .unwrap()
                .expect("a frame within 5 s")
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            self.shutdown.trigger();
            self.thread.take().unwrap().join().unwrap();
        }
    }

    #[test]
    fn a_taken_frame_gets_its_reply_once_and_a_second_reply_is_refused() {
        let r = rig(Duration::from_secs(5));
        r.frame(7);
        let t = r.take();
        assert_eq!(t.frame.frame_id, 7);
        t.reply(Output::Json(r#"{"people":3}"#.into())).unwrap();
        let res = r.result();
        assert_eq!((res.frame_id, res.status), (7, ResultStatus::Processed));
        assert_eq!(&res.result[..], br#"{"people":3}"#);
        let late = t.reply(Output::None).unwrap_err();
        assert!(
            late.to_string().contains("a reply was sent before"),
            "{late}"
        );
        drop(t);
        assert!(r.results.try_recv().is_err(), "one RESULT per frame");
        assert_eq!(r.counts.processed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn frames_wait_in_their_slot_until_wanted_and_the_newest_is_given() {
        let r = rig(Duration::from_secs(5));
        for id in 1..=5 {
            r.frame(id);
        }
        // The slot replaced 1..=4 (their sessions answer them skipped).
        assert_eq!(r.slot.superseded_counter().load(Ordering::Relaxed), 4);
        let t = r.take();
        assert_eq!(t.frame.frame_id, 5);
        t.fail("no luck").unwrap();
        let res = r.result();
        assert_eq!((res.frame_id, res.status), (5, ResultStatus::Failed));
        assert_eq!(&res.result[..], b"python: no luck");
    }

    #[test]
    fn a_frame_kept_past_the_deadline_is_answered_failed_and_a_late_reply_refused() {
        let r = rig(Duration::from_millis(200));
        r.frame(3);
        let t = r.take();
        let res = r.result();
        assert_eq!((res.frame_id, res.status), (3, ResultStatus::Failed));
        let text = String::from_utf8_lossy(&res.result).into_owned();
        assert!(text.contains("no reply within 0.2 s"), "{text}");
        let late = t.reply(Output::None).unwrap_err();
        assert!(late.why.contains("deadline"), "{late}");
        assert_eq!(r.counts.failed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_frame_let_go_without_a_reply_is_answered_failed_at_once() {
        let r = rig(Duration::from_secs(30));
        r.frame(4);
        drop(r.take());
        let res = r.result();
        assert_eq!((res.frame_id, res.status), (4, ResultStatus::Failed));
        assert!(String::from_utf8_lossy(&res.result).contains("without a reply"));
    }

    #[test]
    fn a_withdrawn_want_gets_no_frame_and_a_stopped_stage_says_closed() {
        let r = rig(Duration::from_secs(5));
        assert!(r.handoff.take(Duration::from_millis(50)).unwrap().is_none());
        // That want is gone: the next frame goes to the next taker.
        r.frame(9);
        assert_eq!(r.take().frame.frame_id, 9);
        let w = r.handoff.want().unwrap();
        r.shutdown.trigger();
        assert_eq!(w.wait(Duration::from_secs(5)).err(), Some(Closed));
    }

    #[test]
    fn the_pool_processor_waits_for_a_taker_and_returns_its_answer() {
        let (handoff, mut p) = HandoffProcessor::channel("python", Duration::from_millis(300));
        let stop = Shutdown::new();
        let taker = std::thread::spawn(move || {
            let t = handoff.take(Duration::from_secs(5)).unwrap().unwrap();
            t.reply(Output::Json(format!("{}", t.frame.frame_id)))
                .unwrap();
            // A second frame is kept past the deadline.
            let t = handoff.take(Duration::from_secs(5)).unwrap().unwrap();
            let got = handoff.take(Duration::from_secs(5));
            (t.reply(Output::None), got.map(|t| t.is_none()))
        });
        assert!(p.wait_ready(&stop));
        let mut v = FrameView::new(arrived(crate::media::jpeg::tests::sample_jpeg(16, 8)));
        v.frame.frame_id = 11;
        assert_eq!(p.process(&mut v).unwrap(), Output::Json("11".into()));
        assert!(p.wait_ready(&stop));
        let err = p.process(&mut v).unwrap_err();
        assert!(format!("{err}").contains("no reply within 0.3 s"), "{err}");
        // The third want is taken by wait_ready; stopping ends the wait.
        assert!(p.wait_ready(&stop));
        drop(p);
        let (late, _) = taker.join().unwrap();
        assert!(late.is_err());
        let mut idle = HandoffProcessor::channel("python", Duration::from_secs(1)).1;
        stop.trigger();
        assert!(!idle.wait_ready(&stop));
    }
}

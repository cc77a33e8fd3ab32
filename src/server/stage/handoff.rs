//! The processing thread with takers ([`Handoff`](crate::process::takers::Handoff),
//! the Python binding's `for frame in server`): while a taker waits, the
//! newest frame of whichever client has one is handed to it as a
//! [`Taken`]; until someone wants one, frames stay in their latest-only
//! slots and replace each other (the replaced one is answered `skipped` by
//! its session), so a slow taker sees only newest frames.
//!
//! Every taken frame gets exactly one RESULT (see
//! [`takers`](crate::process::takers)); a frame kept unanswered past the
//! deadline (`process_timeout`) is answered `failed` here.

use super::{HandOff, Joined, Stage};
use crate::process::takers::{Answer, Taken, To, Want, Wants};
use crate::process::{ArrivedFrame, ReplyTo};
use crossbeam_channel::{Select, SelectedOperation};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// The takers' stage.
pub(crate) struct Takers {
    wants_rx: Wants,
    hand_off: HandOff,
    name: Arc<str>,
    /// Wants waiting for a frame, oldest first.
    wants: VecDeque<Want>,
    /// Frames taken from their slots for a taker that gave up before it
    /// got them: at most one per client, given to the next taker.
    stash: Vec<ArrivedFrame>,
    /// Frames handed and not yet answered, with their deadlines.
    out: Vec<(Instant, Arc<Answer>)>,
    timeout_text: String,
}

impl Takers {
    pub(crate) fn new(wants: Wants, hand_off: HandOff) -> Self {
        let timeout_text = format!(
            "no reply within {:.1} s (process_timeout)",
            wants.timeout.as_secs_f64()
        );
        Takers {
            name: wants.name.as_str().into(),
            wants_rx: wants,
            hand_off,
            wants: VecDeque::new(),
            stash: Vec::new(),
            out: Vec::new(),
            timeout_text,
        }
    }

    /// Gives what is stashed to takers that still wait, oldest want first.
    fn give_stashed(&mut self, clients: &[Joined]) {
        while !self.stash.is_empty() {
            let Some(w) = self.wants.pop_front() else {
                break;
            };
            if !w.waits() {
                continue;
            }
            let mut frame = self.stash.remove(0);
            // A newer frame of that client may be in its slot by now.
            if let Some(c) = clients.iter().find(|c| c.id == frame.client) {
                if let Ok(newer) = c.frames.try_recv() {
                    answer_skipped(&std::mem::replace(&mut frame, newer));
                }
            }
            let Some(handed) = self.hand_off.hand(frame) else {
                // Answered `expired`: this taker waits for the next fresh frame.
                self.wants.push_front(w);
                continue;
            };
            let answer = Answer::new(To::Session(
                ReplyTo::new(&handed.frame, handed.at),
                self.hand_off.counts.clone(),
            ));
            let deadline = handed.at + self.wants_rx.timeout;
            let taken = Taken::new(handed.frame, handed.at, answer.clone(), self.name.clone());
            // Refused only if the taker gave up this instant: then the
            // dropped frame is answered failed, as any frame let go.
            let _ = w.give(taken);
            self.out.push((deadline, answer));
        }
    }
}

impl Stage for Takers {
    type Own = Want;

    fn listen<'a>(&'a self, sel: &mut Select<'a>) -> usize {
        sel.recv(&self.wants_rx.rx);
        1
    }

    fn receive(&self, _i: usize, op: SelectedOperation<'_>) -> Option<Want> {
        op.recv(&self.wants_rx.rx).ok()
    }

    fn own(&mut self, want: Want, clients: &[Joined]) {
        self.wants.push_back(want);
        self.give_stashed(clients);
    }

    /// Answers frames kept past their deadline; forgets takers that gave up.
    fn prepare(&mut self, _clients: &[Joined]) {
        let now = Instant::now();
        let (name, timeout_text) = (&self.name, &self.timeout_text);
        self.out.retain(|(deadline, a)| {
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
        self.wants.retain(|w| w.waits());
    }

    fn takes_frames(&self) -> bool {
        !self.wants.is_empty() && self.stash.is_empty()
    }

    fn frame(&mut self, frame: ArrivedFrame, clients: &[Joined]) {
        // Its client's older stashed frame (if any) is replaced.
        if let Some(i) = self.stash.iter().position(|f| f.client == frame.client) {
            let old = std::mem::replace(&mut self.stash[i], frame);
            answer_skipped(&old);
        } else {
            self.stash.push(frame);
        }
        self.give_stashed(clients);
    }

    fn left(&mut self, gone: &Joined) {
        self.stash.retain(|f| f.client != gone.id);
    }

    /// Stopping: nobody will take what is stashed. Waiting takers see
    /// `Closed` when their wants are dropped with the stage.
    fn finish(&mut self) {
        for f in std::mem::take(&mut self.stash) {
            answer_skipped(&f);
        }
    }
}

/// Answers `skipped` a frame nobody took (replaced by a newer one).
fn answer_skipped(frame: &ArrivedFrame) {
    if let Some(reply) = &frame.reply {
        let _ = reply.try_send(crate::process::skipped(frame.frame_id, None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latest;
    use crate::process::frame::tests::arrived;
    use crate::process::takers::{channel, Closed, Handoff};
    use crate::process::Output;
    use crate::process::ProcessingCounts;
    use crate::shutdown::Shutdown;
    use crate::wire::{ProcessResult, ResultStatus};
    use crossbeam_channel::{Receiver, Sender};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

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
        rig_with(timeout, Duration::from_secs(1))
    }

    /// A rig whose stage hands only frames up to `max_age` old.
    fn rig_with(timeout: Duration, max_age: Duration) -> Rig {
        let (handoff, wants) = channel("python", timeout);
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
            std::thread::spawn(move || {
                let hand_off = HandOff::new(max_age, counts);
                super::super::run(&mut Takers::new(wants, hand_off), &joined_rx, &shutdown)
            })
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
    fn a_frame_grown_stale_in_its_slot_is_answered_expired_and_the_taker_gets_the_next_fresh_one() {
        let r = rig_with(Duration::from_secs(5), Duration::from_millis(80));
        // Frame 1 waited in its slot until it was 90 ms old: nothing newer came.
        let mut old = arrived(crate::media::jpeg::tests::sample_jpeg(16, 8));
        old.frame_id = 1;
        old.age = Duration::from_millis(90);
        old.reply = Some(r.reply.clone());
        r.slot.send(old);
        let w = r.handoff.want().unwrap();
        let res = r.result();
        assert_eq!((res.frame_id, res.status), (1, ResultStatus::Expired));
        let text = String::from_utf8_lossy(&res.result).into_owned();
        assert!(text.contains("over the 80 ms threshold"), "{text}");
        assert_eq!(r.counts.expired.load(Ordering::Relaxed), 1);
        // The same want is still waiting, and gets the next fresh frame.
        assert!(w.wait(Duration::from_millis(50)).unwrap().is_none());
        r.frame(2);
        let t = w
            .wait(Duration::from_secs(5))
            .unwrap()
            .expect("the fresh frame");
        assert_eq!(t.frame.frame_id, 2);
        assert!(t.age() <= Duration::from_millis(80), "{:?}", t.age());
        t.reply(Output::None).unwrap();
        assert_eq!(r.result().status, ResultStatus::Processed);
        assert!(r.results.try_recv().is_err(), "one RESULT per frame");
    }
}

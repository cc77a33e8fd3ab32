//! A [`Processor`] for a worker of a pool whose frames are taken by code of
//! its own (the Python `Worker`): each frame the worker is handed goes to
//! the next taker of a [`Handoff`], and the worker waits for its answer.

use super::takers::{self, Answer, Handoff, Taken, To, Want};
use super::{FrameView, Output, Processor};
use crate::shutdown::Shutdown;
use anyhow::Result;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        let (handoff, wants) = takers::channel(name, timeout);
        (
            handoff,
            HandoffProcessor {
                name: wants.name.as_str().into(),
                wants: wants.rx,
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
        let mut taken = Taken::new(
            view.frame.clone(),
            Instant::now(),
            answer.clone(),
            self.name.clone(),
        );
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
    use crate::process::frame::tests::arrived;

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

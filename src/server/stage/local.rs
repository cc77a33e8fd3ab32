//! The processing thread with a local [`Processor`]: each client's newest
//! frame is handed to it as soon as it is free, timed, and its output sent
//! back to the frame's client as the frame's RESULT.

use super::{Failures, HandOff, Joined, Stage};
use crate::process::{ArrivedFrame, FrameView, Processor, ReplyTo};

/// A processor on the processing thread.
pub(crate) struct Local {
    processor: Box<dyn Processor>,
    hand_off: HandOff,
    failures: Failures,
    /// The pixels of the frame before, decoded into again by the next one.
    pixels: Vec<u8>,
}

impl Local {
    pub(crate) fn new(processor: Box<dyn Processor>, hand_off: HandOff) -> Self {
        Local {
            processor,
            hand_off,
            failures: Failures::default(),
            pixels: Vec::new(),
        }
    }
}

impl Stage for Local {
    type Own = std::convert::Infallible;

    fn frame(&mut self, frame: ArrivedFrame, _clients: &[Joined]) {
        let Some(handed) = self.hand_off.hand(frame) else {
            return; // answered `expired`: wait for the next fresh frame
        };
        let counts = &self.hand_off.counts;
        let reply_to = ReplyTo::new(&handed.frame, handed.at);
        let mut view = FrameView::reusing(handed.frame, std::mem::take(&mut self.pixels));
        counts.set_busy(Some(handed.at));
        // A processor is user code: a panic in it fails this frame (answered
        // `failed` with the panic's message), not the processing of every client.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.processor.process(&mut view)
        }))
        .unwrap_or_else(|panic| {
            Err(anyhow::anyhow!(
                "panicked: {}",
                crate::logging::panic_text(&*panic)
            ))
        });
        let out = out.map_err(|e| {
            self.failures
                .note(&view.frame, 0, self.processor.name(), &e);
            format!("{}: {e:#}", self.processor.name())
        });
        // The RESULT's processing time ends here, before it is sent.
        let _ = reply_to.send(out, counts);
        counts.set_busy(None);
        self.pixels = view.into_spare();
    }

    fn left(&mut self, gone: &Joined) {
        self.failures.left(gone.id);
        self.processor.client_left(gone.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::frame::tests::arrived;
    use crate::process::{CountProcessor, Output, ProcessingCounts};
    use crate::wire::{ResultKind, ResultStatus};
    use anyhow::{bail, Result};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn the_result_goes_to_the_frame_reply_channel_with_timings() {
        struct Fails;
        impl Processor for Fails {
            fn name(&self) -> &str {
                "fails"
            }
            fn process(&mut self, _: &mut FrameView) -> Result<Output> {
                bail!("no luck")
            }
        }
        let counts = Arc::new(ProcessingCounts::default());
        let (tx, rx) = crossbeam_channel::bounded(4);
        let mut frame = arrived(crate::media::jpeg::tests::sample_jpeg(16, 8));
        frame.reply = Some(tx);
        frame.frame_id = 7;

        let hand_off = HandOff::new(Duration::from_secs(1), counts.clone());
        let mut stage = Local::new(Box::new(CountProcessor::default()), hand_off.clone());
        stage.frame(frame.clone(), &[]);
        let r = rx.try_recv().unwrap();
        assert_eq!(
            (r.frame_id, r.status, r.kind),
            (7, ResultStatus::Processed, ResultKind::Json)
        );
        assert_eq!(&r.result[..], br#"{"count":1}"#);

        let mut stage = Local::new(Box::new(Fails), hand_off);
        stage.frame(frame, &[]);
        let r = rx.try_recv().unwrap();
        assert_eq!((r.status, r.kind), (ResultStatus::Failed, ResultKind::Text));
        assert_eq!(&r.result[..], b"fails: no luck");
        assert_eq!(counts.processed.load(Ordering::Relaxed), 1);
        assert_eq!(counts.failed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_frame_grown_stale_in_its_slot_is_answered_expired_and_never_processed() {
        let counts = Arc::new(ProcessingCounts::default());
        let hand_off = HandOff::new(Duration::from_millis(80), counts.clone());
        let mut stage = Local::new(Box::new(CountProcessor::default()), hand_off);
        let (tx, rx) = crossbeam_channel::bounded(4);
        let mut frame = arrived(crate::media::jpeg::tests::sample_jpeg(16, 8));
        frame.reply = Some(tx);
        frame.frame_id = 3;
        frame.age = Duration::from_millis(81);
        stage.frame(frame.clone(), &[]);
        let r = rx.try_recv().unwrap();
        assert_eq!((r.frame_id, r.status), (3, ResultStatus::Expired));
        assert_eq!(r.processing_us, 0);
        assert!(rx.try_recv().is_err(), "one RESULT per frame");
        // A fresh one is processed, and it is the processor's first.
        frame.frame_id = 4;
        frame.age = Duration::from_millis(10);
        stage.frame(frame, &[]);
        let r = rx.try_recv().unwrap();
        assert_eq!((r.frame_id, r.status), (4, ResultStatus::Processed));
        assert_eq!(&r.result[..], br#"{"count":1}"#);
        assert_eq!(counts.expired.load(Ordering::Relaxed), 1);
        assert_eq!(counts.processed.load(Ordering::Relaxed), 1);
    }
}

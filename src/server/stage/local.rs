//! The processing thread with a local [`Processor`]: each client's newest
//! frame is handed to it as soon as it is free, timed, and its output sent
//! back to the frame's client as the frame's RESULT.

use super::{hand, Failures, Joined, Stage};
use crate::process::{ArrivedFrame, FrameView, ProcessingCounts, Processor, ReplyTo};
use std::sync::Arc;

/// A processor on the processing thread.
pub(crate) struct Local {
    processor: Box<dyn Processor>,
    counts: Arc<ProcessingCounts>,
    failures: Failures,
    /// The pixels of the frame before, decoded into again by the next one.
    pixels: Vec<u8>,
}

impl Local {
    pub(crate) fn new(processor: Box<dyn Processor>, counts: Arc<ProcessingCounts>) -> Self {
        Local {
            processor,
            counts,
            failures: Failures::default(),
            pixels: Vec::new(),
        }
    }
}

impl Stage for Local {
    type Own = std::convert::Infallible;

    fn frame(&mut self, frame: ArrivedFrame, _clients: &[Joined]) {
        let handed = hand(frame);
        let reply_to = ReplyTo::new(&handed.frame, handed.at);
        let mut view = FrameView::reusing(handed.frame, std::mem::take(&mut self.pixels));
        self.counts.set_busy(Some(handed.at));
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
        let _ = reply_to.send(out, &self.counts);
        self.counts.set_busy(None);
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
    use crate::process::{CountProcessor, Output};
    use crate::wire::{ResultKind, ResultStatus};
    use anyhow::{bail, Result};
    use std::sync::atomic::Ordering;

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

        let mut stage = Local::new(Box::new(CountProcessor::default()), counts.clone());
        stage.frame(frame.clone(), &[]);
        let r = rx.try_recv().unwrap();
        assert_eq!(
            (r.frame_id, r.status, r.kind),
            (7, ResultStatus::Processed, ResultKind::Json)
        );
        assert_eq!(&r.result[..], br#"{"count":1}"#);

        let mut stage = Local::new(Box::new(Fails), counts.clone());
        stage.frame(frame, &[]);
        let r = rx.try_recv().unwrap();
        assert_eq!((r.status, r.kind), (ResultStatus::Failed, ResultKind::Text));
        assert_eq!(&r.result[..], b"fails: no luck");
        assert_eq!(counts.processed.load(Ordering::Relaxed), 1);
        assert_eq!(counts.failed.load(Ordering::Relaxed), 1);
    }
}

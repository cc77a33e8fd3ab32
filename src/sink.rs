//! Where accepted frames go on the server: sinks (the display, a processor,
//! and later recorders and viewers) fed by the display/processing thread.
//!
//! A sink sees each client's newest frame only; frames that were replaced
//! before the thread got to them are never decoded. Decoding is lazy and
//! shared: the first sink that asks for pixels pays for it.

use bytes::Bytes;
use image::RgbImage;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection's number on this server, unique for the server's lifetime.
pub type ClientId = u64;

/// A frame the gate accepted, as handed to the display/processing thread.
#[derive(Debug, Clone)]
pub struct ArrivedFrame {
    pub client: ClientId,
    pub client_name: Arc<str>,
    pub frame_id: u64,
    pub width: u16,
    pub height: u16,
    /// The JPEG exactly as it arrived.
    pub jpeg: Bytes,
    /// The frame's age on arrival, as the gate judged it.
    pub age: Duration,
    /// When it arrived (server clock).
    pub arrived: Instant,
}

/// A frame plus its decoded pixels, decoded at most once, on first use.
pub struct FrameView {
    pub frame: ArrivedFrame,
    decoded: Option<Result<RgbImage, String>>,
}

impl FrameView {
    pub fn new(frame: ArrivedFrame) -> Self {
        FrameView {
            frame,
            decoded: None,
        }
    }

    /// The frame as RGB pixels. Fails (with the same message each time) for a
    /// JPEG that does not decode.
    pub fn rgb(&mut self) -> Result<&RgbImage, String> {
        let jpeg = &self.frame.jpeg;
        self.decoded
            .get_or_insert_with(|| crate::encode::decode_rgb(jpeg).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether the pixels were decoded (for tests and stats).
    pub fn was_decoded(&self) -> bool {
        self.decoded.is_some()
    }
}

/// A consumer of accepted frames on the display/processing thread. Sinks
/// live on that one thread (a window must stay on the thread that made it),
/// so they need not be `Send`.
pub trait Sink {
    /// The sink's name, for logs.
    fn name(&self) -> &str;

    /// Takes a client's newest frame. Must not block for long: the thread
    /// serves every client and every sink. An error is logged for that frame
    /// and streaming goes on.
    fn frame(&mut self, view: &mut FrameView) -> anyhow::Result<()>;

    /// The client disconnected: forget its state.
    fn client_left(&mut self, _client: ClientId) {}

    /// Called at least every 100 ms (about every 16 ms with a window open).
    /// Returns false to ask the server to stop (the window was closed).
    fn tick(&mut self) -> bool {
        true
    }

    /// For a processor: how many frames it handled without error.
    fn processed(&self) -> Option<u64> {
        None
    }
}

/// A user's algorithm: implement this to run your own code on every fresh
/// frame, then pass it to [`server::run`](crate::server::run) inside a
/// [`ProcessorSink`].
pub trait Processor: Send {
    fn name(&self) -> &str;

    /// Runs on one frame. Call `view.rgb()` for pixels.
    fn process(&mut self, view: &mut FrameView) -> anyhow::Result<()>;
}

/// Runs a [`Processor`] as a sink and counts what it processed.
pub struct ProcessorSink {
    processor: Box<dyn Processor>,
    processed: u64,
}

impl ProcessorSink {
    pub fn new(processor: Box<dyn Processor>) -> Self {
        ProcessorSink {
            processor,
            processed: 0,
        }
    }
}

impl Sink for ProcessorSink {
    fn name(&self) -> &str {
        self.processor.name()
    }

    fn frame(&mut self, view: &mut FrameView) -> anyhow::Result<()> {
        self.processor.process(view)?;
        self.processed += 1;
        Ok(())
    }

    fn processed(&self) -> Option<u64> {
        Some(self.processed)
    }
}

/// The default processor: counts the frames it is given, per client. It
/// needs no pixels, so on a headless server nothing is ever decoded.
#[derive(Default)]
pub struct CountProcessor {
    per_client: HashMap<Arc<str>, u64>,
}

impl CountProcessor {
    /// Frames counted for the client named `name`.
    pub fn count(&self, name: &str) -> u64 {
        self.per_client.get(name).copied().unwrap_or(0)
    }
}

impl Processor for CountProcessor {
    fn name(&self) -> &str {
        "count"
    }

    fn process(&mut self, view: &mut FrameView) -> anyhow::Result<()> {
        *self
            .per_client
            .entry(view.frame.client_name.clone())
            .or_default() += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrived(jpeg: Vec<u8>) -> ArrivedFrame {
        ArrivedFrame {
            client: 1,
            client_name: "cam".into(),
            frame_id: 1,
            width: 16,
            height: 8,
            jpeg: jpeg.into(),
            age: Duration::ZERO,
            arrived: Instant::now(),
        }
    }

    #[test]
    fn decoding_is_lazy_and_done_once() {
        let mut v = FrameView::new(arrived(crate::jpeg::tests::sample_jpeg(16, 8)));
        assert!(!v.was_decoded());
        assert_eq!(v.rgb().unwrap().dimensions(), (16, 8));
        assert!(v.was_decoded());
        assert_eq!(v.rgb().unwrap().dimensions(), (16, 8));
    }

    #[test]
    fn a_corrupt_jpeg_is_an_error_not_a_panic() {
        let mut j = crate::jpeg::tests::sample_jpeg(16, 8);
        let mid = j.len() / 2;
        j.splice(4..mid, std::iter::repeat_n(0xFF, mid - 4));
        let mut v = FrameView::new(arrived(j));
        assert!(v.rgb().is_err());
    }

    #[test]
    fn count_processor_counts_without_decoding() {
        let mut sink = ProcessorSink::new(Box::new(CountProcessor::default()));
        let mut v = FrameView::new(arrived(crate::jpeg::tests::sample_jpeg(16, 8)));
        sink.frame(&mut v).unwrap();
        sink.frame(&mut v).unwrap();
        assert_eq!(sink.processed(), Some(2));
        assert!(!v.was_decoded());
    }
}

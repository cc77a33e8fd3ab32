//! The frame handed on by the server's stages: an [`ArrivedFrame`] the gate
//! accepted, and the [`FrameView`] a processor or a sink reads it through.
//!
//! Decoding is lazy and shared: the first reader that asks for pixels pays
//! for it; a frame replaced before anyone got to it is never decoded.

use crate::wire::ProcessResult;
use bytes::Bytes;
use crossbeam_channel::Sender;
use image::RgbImage;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection's number on this server, unique for the server's lifetime.
pub type ClientId = u64;

/// A frame the gate accepted, as handed to the display and processing threads.
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
    /// Where the processing result goes back to the client that sent the
    /// frame (None when the client did not ask for results).
    pub reply: Option<Sender<ProcessResult>>,
}

impl ArrivedFrame {
    /// Its age now: its age on arrival plus the time since (server clock).
    pub fn age_now(&self) -> Duration {
        self.age + self.arrived.elapsed()
    }
}

/// A frame plus its decoded pixels, decoded at most once, on first use.
pub struct FrameView {
    pub frame: ArrivedFrame,
    decoded: Option<Result<RgbImage, String>>,
    /// Where the pixels are decoded to: an earlier view's buffer.
    spare: Vec<u8>,
}

impl FrameView {
    pub fn new(frame: ArrivedFrame) -> Self {
        Self::reusing(frame, Vec::new())
    }

    /// A view that decodes into `spare`, the buffer an earlier view gave back
    /// with [`into_spare`](Self::into_spare): a thread that decodes every
    /// frame then allocates for pixels once, not once a frame.
    pub fn reusing(frame: ArrivedFrame, spare: Vec<u8>) -> Self {
        FrameView {
            frame,
            decoded: None,
            spare,
        }
    }

    /// The buffer for the next view: this frame's pixels when they were
    /// decoded, else the spare it was given.
    pub fn into_spare(self) -> Vec<u8> {
        match self.decoded {
            Some(Ok(rgb)) => rgb.into_raw(),
            _ => self.spare,
        }
    }

    /// The frame as RGB pixels. Fails (with the same message each time) for a
    /// JPEG that does not decode.
    pub fn rgb(&mut self) -> Result<&RgbImage, String> {
        let (jpeg, spare) = (&self.frame.jpeg, &mut self.spare);
        self.decoded
            .get_or_insert_with(|| {
                crate::media::decode::decode_rgb_reusing(jpeg, std::mem::take(spare))
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether the pixels were decoded (for tests and stats).
    pub fn was_decoded(&self) -> bool {
        self.decoded.is_some()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn arrived(jpeg: Vec<u8>) -> ArrivedFrame {
        ArrivedFrame {
            client: 1,
            client_name: "cam".into(),
            frame_id: 1,
            width: 16,
            height: 8,
            jpeg: jpeg.into(),
            age: Duration::ZERO,
            arrived: Instant::now(),
            reply: None,
        }
    }

    #[test]
    fn decoding_is_lazy_and_done_once() {
        let mut v = FrameView::new(arrived(crate::media::jpeg::tests::sample_jpeg(16, 8)));
        assert!(!v.was_decoded());
        assert_eq!(v.rgb().unwrap().dimensions(), (16, 8));
        assert!(v.was_decoded());
        assert_eq!(v.rgb().unwrap().dimensions(), (16, 8));
    }

    #[test]
    fn a_reused_buffer_holds_only_the_new_frames_pixels() {
        use crate::media::jpeg::tests::sample_jpeg;
        let fresh = |w, h| {
            FrameView::new(arrived(sample_jpeg(w, h)))
                .rgb()
                .unwrap()
                .clone()
        };
        let big = 64 * 32 * 3;
        let mut first = FrameView::new(arrived(sample_jpeg(64, 32)));
        first.rgb().unwrap();
        let spare = first.into_spare();
        assert_eq!(spare.capacity(), big);
        // A smaller frame is the same image as one decoded into a new buffer
        // (and, with libjpeg-turbo, is decoded into the one given: a new one
        // would be the frame's size).
        let mut second = FrameView::reusing(arrived(sample_jpeg(48, 24)), spare);
        assert_eq!(*second.rgb().unwrap(), fresh(48, 24));
        let kept = |v: &Vec<u8>| v.capacity() == big;
        assert_eq!(
            kept(second.rgb().unwrap().as_raw()),
            cfg!(feature = "turbojpeg")
        );
        // A view that never decoded hands its spare on untouched.
        let spare = second.into_spare();
        let third = FrameView::reusing(arrived(sample_jpeg(48, 24)), spare);
        let spare = third.into_spare();
        assert_eq!(kept(&spare), cfg!(feature = "turbojpeg"));
        // One over four times the frame's size is not kept for it.
        let mut tiny = FrameView::reusing(arrived(sample_jpeg(8, 8)), spare);
        assert_eq!(*tiny.rgb().unwrap(), fresh(8, 8));
        assert_eq!(tiny.into_spare().capacity(), 8 * 8 * 3);
    }

    #[test]
    fn a_corrupt_jpeg_is_an_error_not_a_panic() {
        let mut j = crate::media::jpeg::tests::sample_jpeg(16, 8);
        let mid = j.len() / 2;
        j.splice(4..mid, std::iter::repeat_n(0xFF, mid - 4));
        let mut v = FrameView::new(arrived(j));
        assert!(v.rgb().is_err());
    }
}

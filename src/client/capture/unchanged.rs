//! `--drop-same-frames N`: a frame equal to the last one kept is left out
//! (not encoded, not sent), at most N in a row, so the server still hears
//! from a camera watching a still scene.
//!
//! - A camera's own JPEG (MJPEG) is the same when its image data is: every
//!   segment but APPn and COM (which carry timestamps and the like), hashed.
//! - Raw pixels are compared on a sample (every 16th byte of every 4th row):
//!   the same when at most 0.2 % of the samples moved by more than 12 levels,
//!   so a sensor's noise does not count as a change and a moving object of a
//!   few pixels across does.
//!
//! A left-out frame is never published, so the next frame sent carries its
//! own capture instant: its age stays right.

use super::shape::Shaped;
use crate::media::encode::Yuv;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A sample moved by more than this many levels counts as changed.
const LEVELS: u8 = 12;
/// Rows and bytes between samples.
const ROW_STEP: usize = 4;
const BYTE_STEP: usize = 16;

/// What the last kept frame looked like.
enum Last {
    None,
    Jpeg(u64, usize),
    Pixels {
        layout: u8,
        width: u32,
        height: u32,
        samples: Vec<u8>,
    },
}

/// Leaves out frames equal to the last one kept (see the module docs).
pub struct Unchanged {
    max_in_row: u32,
    in_row: u32,
    last: Last,
    scratch: Vec<u8>,
    /// Frames left out, for the summary and the status line.
    pub count: Arc<AtomicU64>,
}

impl Unchanged {
    /// At most `max_in_row` frames left out in a row (at least 1).
    pub fn new(max_in_row: u32, count: Arc<AtomicU64>) -> Self {
        Unchanged {
            max_in_row: max_in_row.max(1),
            in_row: 0,
            last: Last::None,
            scratch: Vec::new(),
            count,
        }
    }

    /// Whether `frame` is to be left out; remembers it when kept.
    pub(super) fn leaves_out(&mut self, frame: &Shaped<'_>) -> bool {
        let same = match frame {
            Shaped::Skip => return false,
            Shaped::Jpeg(data, ..) => {
                let (hash, len) = image_data_hash(data);
                let same = matches!(self.last, Last::Jpeg(h, l) if h == hash && l == len);
                if !same {
                    self.last = Last::Jpeg(hash, len);
                }
                same
            }
            Shaped::Rgb {
                data,
                width,
                height,
                ..
            } => self.pixels(0, data, *width, *height),
            Shaped::Yuv {
                data,
                width,
                height,
                ..
            } => match data {
                Yuv::Yuyv(d) => self.pixels(1, d, *width, *height),
                Yuv::I420(d) => self.pixels(2, d, *width, *height),
            },
        };
        if same && self.in_row < self.max_in_row {
            self.in_row += 1;
            self.count.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.in_row = 0;
            false
        }
    }

    /// Samples `data` (rows of `width` pixels) and compares them with the
    /// last kept frame's; keeps the new samples when they differ.
    fn pixels(&mut self, layout: u8, data: &[u8], width: u32, height: u32) -> bool {
        let rows = height.max(1) as usize;
        let stride = data.len() / rows;
        self.scratch.clear();
        for row in (0..rows).step_by(ROW_STEP) {
            let line = &data[row * stride..(row + 1) * stride];
            self.scratch.extend(line.iter().step_by(BYTE_STEP));
        }
        let same = match &self.last {
            Last::Pixels {
                layout: l,
                width: w,
                height: h,
                samples,
            } if *l == layout
                && *w == width
                && *h == height
                && samples.len() == self.scratch.len() =>
            {
                let moved = samples
                    .iter()
                    .zip(&self.scratch)
                    .filter(|(a, b)| a.abs_diff(**b) > LEVELS)
                    .count();
                moved * 500 <= samples.len()
            }
            _ => false,
        };
        if !same {
            self.last = Last::Pixels {
                layout,
                width,
                height,
                samples: std::mem::take(&mut self.scratch),
            };
        }
        same
    }
}

/// A hash of a JPEG's image data (every segment but APPn and COM) and its
/// length; the whole bytes when the markers cannot be walked.
fn image_data_hash(jpeg: &[u8]) -> (u64, usize) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut len = 0;
    let walked = crate::media::jpeg::for_each_segment(jpeg, |marker, bytes| {
        if !matches!(marker, 0xE0..=0xEF | 0xFE) {
            h.write(bytes);
            len += bytes.len();
        }
    });
    if walked.is_none() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write(jpeg);
        return (h.finish(), jpeg.len());
    }
    (h.finish(), len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb<'a>(data: &'a [u8], w: u32, h: u32) -> Shaped<'a> {
        Shaped::Rgb {
            data,
            width: w,
            height: h,
            quality: 80,
        }
    }

    #[test]
    fn a_still_picture_is_left_out_at_most_n_in_a_row() {
        let count = Arc::new(AtomicU64::new(0));
        let mut u = Unchanged::new(3, count.clone());
        let still = vec![100u8; 64 * 48 * 3];
        let kept: Vec<bool> = (0..9)
            .map(|_| !u.leaves_out(&rgb(&still, 64, 48)))
            .collect();
        assert_eq!(
            kept,
            [true, false, false, false, true, false, false, false, true]
        );
        assert_eq!(count.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn noise_is_not_a_change_and_a_moving_object_is() {
        let mut u = Unchanged::new(100, Arc::default());
        let (w, h) = (320u32, 240u32);
        let base: Vec<u8> = (0..w * h * 3).map(|i| (i % 200) as u8).collect();
        assert!(!u.leaves_out(&rgb(&base, w, h)));
        // Noise of a few levels everywhere: the same.
        let noisy: Vec<u8> = base
            .iter()
            .enumerate()
            .map(|(i, v)| v.wrapping_add((i % 5) as u8))
            .collect();
        assert!(u.leaves_out(&rgb(&noisy, w, h)));
        // A 24×24 object appears: changed.
        let mut moved = base.clone();
        for y in 100..124 {
            for x in 150..174 {
                let at = (y * w as usize + x) * 3;
                moved[at..at + 3].copy_from_slice(&[255, 0, 255]);
            }
        }
        assert!(!u.leaves_out(&rgb(&moved, w, h)));
        // Another size is another picture.
        assert!(!u.leaves_out(&rgb(&base[..160 * 120 * 3], 160, 120)));
    }

    #[test]
    fn a_jpeg_is_the_same_when_its_image_data_is_whatever_its_app_segments_say() {
        let mut u = Unchanged::new(100, Arc::default());
        // SOI, APP0 with a "timestamp", SOS with two bytes of data, EOI.
        let frame = |stamp: u8, data: u8| {
            vec![
                0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x03, stamp, 0xFF, 0xDA, 0x00, 0x02, data, 0x11,
                0xFF, 0xD9,
            ]
        };
        fn f(b: &[u8]) -> Shaped<'_> {
            Shaped::Jpeg(b, 2, 2)
        }
        assert!(!u.leaves_out(&f(&frame(1, 7))));
        assert!(u.leaves_out(&f(&frame(2, 7))), "only the APP0 changed");
        assert!(!u.leaves_out(&f(&frame(2, 8))), "the image data changed");
    }
}

//! Model-sized input: a frame decoded straight to a detector's input size,
//! letterboxed (aspect kept, centred, padded with a colour), with the
//! geometry to map boxes found on it back onto the frame. The geometry is
//! Ultralytics' `LetterBox` (centred, scaling up and down).
//!
//! With libjpeg-turbo the JPEG is decoded already scaled by its DCT (1/2,
//! 1/4 or 1/8, the largest reduction still at least the target size), so a
//! 1080p frame for a 640 model never decodes at full size; the rest of the
//! way is a bilinear resize.

use crate::media::decode::{self, decoded_size, PixelOrder};
use anyhow::Result;

/// Largest side of a letterbox asked for.
pub const MAX_SIDE: u32 = 8192;

/// Where a frame of `source` size sits inside a letterbox of `size`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// The frame's width and height.
    pub source: (u32, u32),
    /// The letterbox's width and height (the model's input).
    pub size: (u32, u32),
    /// Letterbox pixels per frame pixel.
    pub scale: f64,
    /// The frame's width and height inside the letterbox.
    pub content: (u32, u32),
    /// Padding at the left and the top, in letterbox pixels.
    pub pad: (u32, u32),
}

impl Letterbox {
    /// The geometry of a frame of `source` size in a letterbox of `size`.
    pub fn fit(source: (u32, u32), size: (u32, u32)) -> Letterbox {
        let (w, h) = (source.0.max(1) as f64, source.1.max(1) as f64);
        let scale = (size.0 as f64 / w).min(size.1 as f64 / h);
        let content = (
            ((w * scale).round() as u32).clamp(1, size.0),
            ((h * scale).round() as u32).clamp(1, size.1),
        );
        let half = |room: u32| ((room as f64 / 2.0) - 0.1).round().max(0.0) as u32;
        Letterbox {
            source,
            size,
            scale,
            content,
            pad: (half(size.0 - content.0), half(size.1 - content.1)),
        }
    }

    /// A point on the letterbox as a point on the frame, kept inside it.
    pub fn to_source(&self, x: f64, y: f64) -> (f64, f64) {
        (
            ((x - self.pad.0 as f64) / self.scale).clamp(0.0, self.source.0 as f64),
            ((y - self.pad.1 as f64) / self.scale).clamp(0.0, self.source.1 as f64),
        )
    }
}

/// Decodes frames into letterboxes, keeping its buffers from one to the next.
#[derive(Default)]
pub struct Letterboxer {
    resizer: Option<fast_image_resize::Resizer>,
    /// The frame decoded (scaled by the DCT where it can be).
    decoded: Vec<u8>,
    /// The frame resized to the letterbox's content.
    resized: Vec<u8>,
}

impl Letterboxer {
    /// Decodes `jpeg` into `out` (`size.0 * size.1 * 3` bytes, rows packed,
    /// in `order`) letterboxed, padded with `pad` (its three values in
    /// `order` too).
    pub fn decode(
        &mut self,
        jpeg: &[u8],
        size: (u32, u32),
        pad: [u8; 3],
        order: PixelOrder,
        out: &mut [u8],
    ) -> Result<Letterbox> {
        anyhow::ensure!(
            (1..=MAX_SIDE).contains(&size.0) && (1..=MAX_SIDE).contains(&size.1),
            "a letterbox of {}x{} is not one this program makes (each side 1..={MAX_SIDE})",
            size.0,
            size.1
        );
        let needs = size.0 as usize * size.1 as usize * 3;
        anyhow::ensure!(
            out.len() == needs,
            "a {}x{} letterbox needs {needs} bytes, the buffer has {}",
            size.0,
            size.1,
            out.len()
        );
        let source = decoded_size(jpeg)?;
        let lb = Letterbox::fit(source, size);
        let (dw, dh) = decode::reduced_size(source, lb.content);
        self.decoded.resize(dw as usize * dh as usize * 3, 0);
        decode::decode_reduced_into(jpeg, lb.content, &mut self.decoded, order)?;
        let content = if (dw, dh) == lb.content {
            &self.decoded
        } else {
            let (cw, ch) = lb.content;
            self.resized.resize(cw as usize * ch as usize * 3, 0);
            crate::media::resize::rgb(
                self.resizer
                    .get_or_insert_with(fast_image_resize::Resizer::new),
                &self.decoded,
                dw,
                dh,
                &mut self.resized,
                cw,
                ch,
            )?;
            &self.resized
        };
        // Each row once: padding where the picture is not, the picture
        // where it is.
        let row = size.0 as usize * 3;
        let (cw, pad_x, pad_y) = (
            lb.content.0 as usize * 3,
            lb.pad.0 as usize * 3,
            lb.pad.1 as usize,
        );
        let fill = |to: &mut [u8]| {
            for px in to.chunks_exact_mut(3) {
                px.copy_from_slice(&pad);
            }
        };
        let mut pictured = content.chunks_exact(cw);
        for (y, line) in out.chunks_exact_mut(row).enumerate() {
            let src = if y >= pad_y { pictured.next() } else { None };
            match src {
                Some(src) => {
                    let (left, rest) = line.split_at_mut(pad_x);
                    let (middle, right) = rest.split_at_mut(cw);
                    fill(left);
                    middle.copy_from_slice(src);
                    fill(right);
                }
                None => fill(line),
            }
        }
        Ok(lb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::encode::{Encoder, ImageEncoder};

    fn jpeg_of(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
        let px: Vec<u8> = (0..width * height).flat_map(|_| rgb).collect();
        let mut out = Vec::new();
        ImageEncoder::new(95)
            .encode(&px, width, height, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn the_geometry_is_ultralytics_letterbox() {
        // 1920x1080 into 640x640: scale 1/3, 640x360 centred, 140 px above.
        let lb = Letterbox::fit((1920, 1080), (640, 640));
        assert_eq!((lb.content, lb.pad), ((640, 360), (0, 140)));
        assert!((lb.scale - 1.0 / 3.0).abs() < 1e-12);
        // An odd room: Ultralytics rounds (dh - 0.1) for the top.
        let lb = Letterbox::fit((640, 479), (640, 640));
        assert_eq!((lb.content, lb.pad), ((640, 479), (0, 80)));
        // A small frame is scaled up.
        let lb = Letterbox::fit((320, 240), (640, 640));
        assert_eq!((lb.content, lb.pad), ((640, 480), (0, 80)));
        // Boxes map back onto the frame, kept inside it.
        let lb = Letterbox::fit((1920, 1080), (640, 640));
        assert_eq!(lb.to_source(320.0, 320.0), (960.0, 540.0));
        assert_eq!(lb.to_source(0.0, 0.0), (0.0, 0.0));
        assert_eq!(lb.to_source(640.0, 640.0), (1920.0, 1080.0));
    }

    #[test]
    fn a_frame_is_decoded_into_the_letterbox_with_its_padding_in_the_order_asked() {
        let jpeg = jpeg_of(160, 90, [200, 40, 10]);
        let mut lbx = Letterboxer::default();
        let mut out = vec![0u8; 64 * 64 * 3];
        let lb = lbx
            .decode(&jpeg, (64, 64), [116, 115, 114], PixelOrder::Bgr, &mut out)
            .unwrap();
        assert_eq!((lb.content, lb.pad), ((64, 36), (0, 14)));
        let px = |x: usize, y: usize| &out[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
        assert_eq!(px(0, 0), [116, 115, 114], "padding, BGR");
        assert_eq!(px(63, 63), [116, 115, 114]);
        let mid = px(32, 32);
        let near = |a: u8, b: u8| (a as i32 - b as i32).abs() <= 6;
        assert!(
            near(mid[0], 10) && near(mid[1], 40) && near(mid[2], 200),
            "{mid:?}"
        );
        // Wrong sizes are errors, not panics.
        assert!(lbx
            .decode(&jpeg, (64, 64), [0; 3], PixelOrder::Rgb, &mut out[..10])
            .is_err());
        assert!(lbx
            .decode(&jpeg, (0, 64), [0; 3], PixelOrder::Rgb, &mut out)
            .is_err());
        assert!(lbx
            .decode(
                b"\xFF\xD8 nope",
                (64, 64),
                [0; 3],
                PixelOrder::Rgb,
                &mut out
            )
            .is_err());
    }

    #[test]
    fn a_large_frame_for_a_small_model_is_decoded_scaled_by_the_dct() {
        let jpeg = jpeg_of(1920, 1080, [90, 90, 90]);
        let mut lbx = Letterboxer::default();
        let mut out = vec![0u8; 640 * 640 * 3];
        lbx.decode(&jpeg, (640, 640), [114; 3], PixelOrder::Rgb, &mut out)
            .unwrap();
        // With libjpeg-turbo: 1/2 (960x540) is the largest reduction still
        // at least 640x360; the pure-Rust decoder decodes it whole.
        let full = 1920 * 1080 * 3;
        let half = 960 * 540 * 3;
        let want = if cfg!(feature = "turbojpeg") {
            half
        } else {
            full
        };
        assert_eq!(lbx.decoded.len(), want);
    }
}

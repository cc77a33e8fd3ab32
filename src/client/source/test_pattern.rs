//! A synthetic moving picture that needs no camera and no files: a scrolling
//! colour gradient with fixed noise (so JPEG has real work to do, like a
//! camera image), a sweeping bar, and the frame number and wall-clock time
//! drawn in, so a viewer sees motion and can read how old a frame is.
//!
//! Drawn straight in planar I420 (JPEG's own YCbCr, full range) when the
//! size is even, so an encoder that takes YUV (libjpeg-turbo at 4:2:0)
//! does no colour conversion at all; an odd size is drawn in RGB.

use super::{Captured, Image, Pacer, Source};
use crate::media::draw;
use crate::media::encode::Yuv;
use anyhow::Result;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The test-pattern source.
pub struct TestPattern {
    width: usize,
    height: usize,
    /// Drawn in I420 (even sizes) or RGB.
    i420: bool,
    /// Background twice as wide as the frame, periodic in the width: frame
    /// `n` is the window starting at column `(8 n) mod width`, row by row.
    /// I420: the Y plane (2w × h), then U and V (w × h/2 each); RGB: 2w × h × 3.
    base: Vec<u8>,
    frame: Vec<u8>,
    count: u64,
    fps: f64,
    pacer: Pacer,
}

/// The gradient and its noise at (x, y), in RGB.
fn background(x: usize, y: usize, w: usize, h: usize, noise: i32) -> [i32; 3] {
    let r = (x * 255 / w) as i32;
    let g = (y * 255 / h) as i32;
    let b = ((x + y) * 255 / (w + h)) as i32;
    [r + noise, g + noise, b + noise]
}

/// JFIF RGB → full-range Y, Cb, Cr.
fn ycbcr([r, g, b]: [i32; 3]) -> [u8; 3] {
    let (r, g, b) = (
        r.clamp(0, 255) as f32,
        g.clamp(0, 255) as f32,
        b.clamp(0, 255) as f32,
    );
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    let cb = 128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b;
    let cr = 128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b;
    [y, cb, cr].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

impl TestPattern {
    /// A `width`×`height` pattern produced at `fps` frames a second (0: as fast
    /// as they are asked for).
    pub fn new(width: u32, height: u32, fps: f64) -> Self {
        let (w, h) = (width.max(1) as usize, height.max(1) as usize);
        let i420 = w % 2 == 0 && h % 2 == 0;
        // xorshift noise in -12..=12, as a sensor gives.
        let mut seed: u32 = 0x1234_5678;
        let mut noise = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 25) as i32 - 12
        };
        let (base, frame) = if i420 {
            let (cw, ch) = (w / 2, h / 2);
            let mut base = vec![0u8; 2 * w * h + 2 * 2 * cw * ch];
            let (luma, chroma) = base.split_at_mut(2 * w * h);
            let (u, v) = chroma.split_at_mut(2 * cw * ch);
            for y in 0..h {
                for x in 0..w {
                    let [yy, _, _] = ycbcr(background(x, y, w, h, noise()));
                    luma[y * 2 * w + x] = yy;
                    luma[y * 2 * w + w + x] = yy;
                }
            }
            for cy in 0..ch {
                for cx in 0..cw {
                    // Chroma of the 2×2 block's centre, without the noise
                    // (a sensor's noise is mostly in luma).
                    let [_, cb, cr] = ycbcr(background(2 * cx + 1, 2 * cy + 1, w, h, 0));
                    for copy in 0..2 {
                        u[cy * 2 * cw + copy * cw + cx] = cb;
                        v[cy * 2 * cw + copy * cw + cx] = cr;
                    }
                }
            }
            (base, vec![0u8; w * h + 2 * cw * ch])
        } else {
            let mut base = vec![0u8; 2 * w * h * 3];
            for y in 0..h {
                for x in 0..w {
                    let px = background(x, y, w, h, noise()).map(|c| c.clamp(0, 255) as u8);
                    for copy in 0..2 {
                        let i = (y * 2 * w + copy * w + x) * 3;
                        base[i..i + 3].copy_from_slice(&px);
                    }
                }
            }
            (base, vec![0u8; w * h * 3])
        };
        TestPattern {
            width: w,
            height: h,
            i420,
            base,
            frame,
            count: 0,
            fps,
            pacer: Pacer::new(fps),
        }
    }

    /// Renders frame number `n` into `self.frame`.
    fn render(&mut self, n: u64) {
        let (w, h) = (self.width, self.height);
        // Even when the width is: chroma moves with luma.
        let shift = (n as usize * 8) % w;
        // A white bar sweeping left to right, one pass every 2 s at 30 fps.
        let bar_w = (w / 40).max(2) & !1;
        let bar_x = ((n as usize * w / 60) % w) & !1;
        let label = format!("framelink #{n:06}  {}", clock_now());
        // As large as fits: about a sixth of the height, never wider than the frame.
        let scale = (h / 160).min(w / (draw::text_width(&label, 1) + 16)).max(1);
        if self.i420 {
            let (cw, ch) = (w / 2, h / 2);
            let (luma, chroma) = self.frame.split_at_mut(w * h);
            let (base_luma, base_chroma) = self.base.split_at(2 * w * h);
            for (y, row) in luma.chunks_exact_mut(w).enumerate() {
                row.copy_from_slice(&base_luma[y * 2 * w + shift..][..w]);
            }
            for (i, row) in chroma.chunks_exact_mut(cw).enumerate() {
                // Rows of U, then rows of V: the same layout in the base.
                row.copy_from_slice(&base_chroma[i * 2 * cw + shift / 2..][..cw]);
            }
            draw::fill(w, h, bar_x, 0, bar_w, h, |x, y| luma[y * w + x] = 255);
            let plane = cw * ch;
            draw::fill(cw, ch, bar_x / 2, 0, bar_w / 2, ch, |x, y| {
                chroma[y * cw + x] = 128;
                chroma[plane + y * cw + x] = 128;
            });
            draw::label_i420(&mut self.frame, w, h, scale * 4, scale * 4, scale, &label);
        } else {
            for y in 0..h {
                let src = (y * 2 * w + shift) * 3;
                self.frame[y * w * 3..(y + 1) * w * 3]
                    .copy_from_slice(&self.base[src..src + w * 3]);
            }
            let frame = &mut self.frame;
            draw::fill(w, h, bar_x, 0, bar_w, h, |x, y| {
                let i = (y * w + x) * 3;
                frame[i..i + 3].copy_from_slice(&[255, 255, 255]);
            });
            draw::label_rgb(&mut self.frame, w, h, scale * 4, scale * 4, scale, &label);
        }
    }
}

/// UTC wall-clock time of day, `HH:MM:SS.mmm`.
fn clock_now() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = t.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

impl Source for TestPattern {
    fn on_demand(&self) -> bool {
        self.fps <= 0.0
    }

    fn describe(&self) -> String {
        format!(
            "test pattern {}x{} @ {} fps",
            self.width, self.height, self.fps
        )
    }

    /// Blocks until the next frame time at the configured rate.
    fn next_frame(&mut self) -> Result<Captured<'_>> {
        self.pacer.wait();
        let n = self.count;
        self.count += 1;
        self.render(n);
        let (width, height) = (self.width as u32, self.height as u32);
        Ok(Captured {
            image: if self.i420 {
                Image::Yuv {
                    data: Yuv::I420(&self.frame),
                    width,
                    height,
                }
            } else {
                Image::Rgb {
                    data: &self.frame,
                    width,
                    height,
                }
            },
            at: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame as RGB, whatever it was drawn in.
    fn rgb(p: &mut TestPattern) -> (Vec<u8>, u32, u32) {
        let c = p.next_frame().unwrap();
        let mut out = Vec::new();
        match c.image {
            Image::Rgb {
                data,
                width,
                height,
            } => (data.to_vec(), width, height),
            Image::Yuv {
                data,
                width,
                height,
            } => {
                data.to_rgb(width, height, &mut out);
                (out, width, height)
            }
            Image::Jpeg { .. } => panic!("the test pattern is not a JPEG"),
        }
    }

    #[test]
    fn frames_have_the_asked_size_and_move() {
        for (w, h) in [(64, 48), (63, 47)] {
            let mut p = TestPattern::new(w, h, 0.0);
            let (a, width, height) = rgb(&mut p);
            assert_eq!((width, height, a.len()), (w, h, (w * h * 3) as usize));
            let (b, _, _) = rgb(&mut p);
            let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert!(
                differing > a.len() / 4,
                "{w}x{h}: only {differing} bytes changed between frames"
            );
        }
    }

    #[test]
    fn even_sizes_are_drawn_in_i420_and_look_like_the_rgb_drawing() {
        let mut yuv = TestPattern::new(320, 240, 0.0);
        assert!(matches!(
            yuv.next_frame().unwrap().image,
            Image::Yuv {
                data: Yuv::I420(_),
                ..
            }
        ));
        // The same picture drawn in I420 and (one column wider, so odd) in
        // RGB, compared as RGB away from the label and the bar: close, as a
        // camera's YUV would be (the noise differs pixel by pixel).
        let (a, _, _) = rgb(&mut TestPattern::new(320, 240, 0.0));
        let (b, _, _) = rgb(&mut TestPattern::new(321, 240, 0.0));
        let (mut diff, mut n) = (0u64, 0u64);
        for y in 60..240 {
            for x in 100..300 {
                for c in 0..3 {
                    let pa = a[(y * 320 + x) * 3 + c] as i64;
                    let pb = b[(y * 321 + x) * 3 + c] as i64;
                    diff += pa.abs_diff(pb);
                    n += 1;
                }
            }
        }
        let mean = diff as f64 / n as f64;
        assert!(mean < 16.0, "mean difference {mean:.1} per channel");
    }
}

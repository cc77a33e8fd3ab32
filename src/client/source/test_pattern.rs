//! A synthetic moving picture that needs no camera and no files: a scrolling
//! colour gradient with fixed noise (so JPEG has real work to do, like a
//! camera image), a sweeping bar, and the frame number and wall-clock time
//! drawn in, so a viewer sees motion and can read how old a frame is.

use super::{Captured, Image, Pacer, Source};
use crate::media::draw;
use anyhow::Result;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The test-pattern source.
pub struct TestPattern {
    width: usize,
    height: usize,
    /// Background of width `2 * width`, periodic in `width`: frame `n` is the
    /// window starting at column `(8 n) mod width`, one copy per row.
    base: Vec<u8>,
    frame: Vec<u8>,
    count: u64,
    fps: f64,
    pacer: Pacer,
}

impl TestPattern {
    /// A `width`×`height` pattern produced at `fps` frames a second (0: as fast
    /// as they are asked for).
    pub fn new(width: u32, height: u32, fps: f64) -> Self {
        let (w, h) = (width.max(1) as usize, height.max(1) as usize);
        let mut base = vec![0u8; 2 * w * h * 3];
        let mut seed: u32 = 0x1234_5678;
        for y in 0..h {
            for x in 0..w {
                // xorshift noise in -12..=12, as a sensor gives.
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let noise = (seed % 25) as i32 - 12;
                let r = (x * 255 / w) as i32;
                let g = (y * 255 / h) as i32;
                let b = ((x + y) * 255 / (w + h)) as i32;
                let px = [r, g, b].map(|c| (c + noise).clamp(0, 255) as u8);
                for copy in 0..2 {
                    let i = (y * 2 * w + copy * w + x) * 3;
                    base[i..i + 3].copy_from_slice(&px);
                }
            }
        }
        TestPattern {
            width: w,
            height: h,
            base,
            frame: vec![0u8; w * h * 3],
            count: 0,
            fps,
            pacer: Pacer::new(fps),
        }
    }

    /// Renders frame number `n` into `self.frame`.
    fn render(&mut self, n: u64) {
        let (w, h) = (self.width, self.height);
        let shift = (n as usize * 8) % w;
        for y in 0..h {
            let src = (y * 2 * w + shift) * 3;
            self.frame[y * w * 3..(y + 1) * w * 3].copy_from_slice(&self.base[src..src + w * 3]);
        }
        // A white bar sweeping left to right, one pass every 2 s at 30 fps.
        let bar_w = (w / 40).max(2);
        let bar_x = (n as usize * w / 60) % w;
        let frame = &mut self.frame;
        draw::fill(w, h, bar_x, 0, bar_w, h, |x, y| {
            let i = (y * w + x) * 3;
            frame[i..i + 3].copy_from_slice(&[255, 255, 255]);
        });
        let label = format!("framelink #{n:06}  {}", clock_now());
        // As large as fits: about a sixth of the height, never wider than the frame.
        let scale = (h / 160).min(w / (draw::text_width(&label, 1) + 16)).max(1);
        draw::label_rgb(&mut self.frame, w, h, scale * 4, scale * 4, scale, &label);
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
        Ok(Captured {
            image: Image::Rgb {
                data: &self.frame,
                width: self.width as u32,
                height: self.height as u32,
            },
            at: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_asked_size_and_move() {
        let mut p = TestPattern::new(64, 48, 0.0);
        let a = match p.next_frame().unwrap().image {
            Image::Rgb {
                data,
                width,
                height,
            } => {
                assert_eq!((width, height, data.len()), (64, 48, 64 * 48 * 3));
                data.to_vec()
            }
            _ => panic!("test pattern gives RGB"),
        };
        let b = match p.next_frame().unwrap().image {
            Image::Rgb { data, .. } => data.to_vec(),
            _ => unreachable!(),
        };
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(
            differing > a.len() / 4,
            "only {differing} bytes changed between frames"
        );
    }
}

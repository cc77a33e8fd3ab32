//! `motion`: a lightweight motion detector. Each frame is shrunk to a small
//! grayscale image (box average, about 80 pixels wide) and compared with the
//! same client's previous one; pixels that changed by more than a threshold
//! make the score (the changed fraction) and the bounding box (in the frame's
//! own pixel coordinates).
//!
//! Result (JSON): `{"motion": 0.031, "changed": 146, "box": [x, y, w, h]}`,
//! `box` null when nothing changed. The first frame of a client (or of a new
//! frame size) has nothing to compare with: `motion` 0 and `box` null.

use super::{Output, Processor};
use crate::process::{ClientId, FrameView};
use anyhow::{anyhow, Result};
use image::RgbImage;
use serde::Serialize;
use std::collections::HashMap;

/// Width of the small image frames are compared at.
const SMALL_WIDTH: u32 = 80;
/// A small-image pixel counts as changed past this gray-level difference.
const THRESHOLD: u8 = 24;

/// The motion detector (see the module docs).
#[derive(Default)]
pub struct MotionProcessor {
    previous: HashMap<ClientId, Small>,
}

/// A frame shrunk to gray, with the scale back to the frame.
struct Small {
    width: u32,
    /// Frame pixels per small pixel, across and down.
    cell: (u32, u32),
    gray: Vec<u8>,
    source: (u32, u32),
}

/// What `motion` sends back.
#[derive(Debug, Serialize, PartialEq)]
pub struct Motion {
    /// Fraction of the picture that changed, 0..=1.
    pub motion: f64,
    /// Changed pixels of the small image.
    pub changed: u32,
    /// `[x, y, width, height]` around the change, in frame pixels.
    #[serde(rename = "box")]
    pub bbox: Option<[u32; 4]>,
}

impl Small {
    fn of(rgb: &RgbImage) -> Small {
        let (w, h) = rgb.dimensions();
        let cw = (w / SMALL_WIDTH).max(1);
        let ch = cw.min(h.max(1));
        let (sw, sh) = ((w / cw).max(1), (h / ch).max(1));
        let mut gray = Vec::with_capacity((sw * sh) as usize);
        let raw = rgb.as_raw();
        let stride = w as usize * 3;
        for sy in 0..sh {
            for sx in 0..sw {
                let mut sum = 0u32;
                for y in sy * ch..((sy + 1) * ch).min(h) {
                    let row = &raw[y as usize * stride..];
                    for x in sx * cw..((sx + 1) * cw).min(w) {
                        let p = &row[x as usize * 3..x as usize * 3 + 3];
                        // Integer BT.601 luma.
                        sum += (77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8;
                    }
                }
                gray.push((sum / (cw * ch)) as u8);
            }
        }
        Small {
            width: sw,
            cell: (cw, ch),
            gray,
            source: (w, h),
        }
    }

    /// Compares with an earlier image of the same size.
    fn against(&self, before: &Small) -> Motion {
        let (mut changed, mut x0, mut y0, mut x1, mut y1) = (0u32, u32::MAX, u32::MAX, 0, 0);
        for (i, (a, b)) in self.gray.iter().zip(&before.gray).enumerate() {
            if a.abs_diff(*b) > THRESHOLD {
                let (x, y) = (i as u32 % self.width, i as u32 / self.width);
                changed += 1;
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
        let (cw, ch) = self.cell;
        let bbox = (changed > 0).then(|| {
            let (x, y) = (x0 * cw, y0 * ch);
            let w = ((x1 + 1) * cw).min(self.source.0) - x;
            let h = ((y1 + 1) * ch).min(self.source.1) - y;
            [x, y, w, h]
        });
        let motion = changed as f64 / self.gray.len().max(1) as f64;
        Motion {
            motion: (motion * 1e4).round() / 1e4,
            changed,
            bbox,
        }
    }
}

impl MotionProcessor {
    /// Runs the detector on one decoded frame of `client`.
    pub fn detect(&mut self, client: ClientId, rgb: &RgbImage) -> Motion {
        let now = Small::of(rgb);
        let m = match self.previous.get(&client) {
            Some(before) if before.source == now.source => now.against(before),
            _ => Motion {
                motion: 0.0,
                changed: 0,
                bbox: None,
            },
        };
        self.previous.insert(client, now);
        m
    }
}

impl Processor for MotionProcessor {
    fn name(&self) -> &str {
        "motion"
    }

    fn process(&mut self, view: &mut FrameView) -> Result<Output> {
        let client = view.frame.client;
        let rgb = view.rgb().map_err(|e| anyhow!(e))?;
        Ok(Output::json(&self.detect(client, rgb)))
    }

    fn client_left(&mut self, client: ClientId) {
        self.previous.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(square_at: Option<(u32, u32)>) -> RgbImage {
        RgbImage::from_fn(640, 480, |x, y| match square_at {
            Some((sx, sy)) if (sx..sx + 64).contains(&x) && (sy..sy + 48).contains(&y) => {
                image::Rgb([250, 250, 250])
            }
            _ => image::Rgb([20, 40, 60]),
        })
    }

    #[test]
    fn a_still_scene_has_no_motion() {
        let mut m = MotionProcessor::default();
        assert_eq!(m.detect(1, &scene(None)).bbox, None);
        let still = m.detect(1, &scene(None));
        assert_eq!((still.motion, still.changed, still.bbox), (0.0, 0, None));
    }

    #[test]
    fn a_new_object_is_boxed_where_it_appeared() {
        let mut m = MotionProcessor::default();
        m.detect(1, &scene(None));
        let seen = m.detect(1, &scene(Some((320, 240))));
        let [x, y, w, h] = seen.bbox.expect("a box around the square");
        // The box covers the square, give or take one 8-pixel cell.
        assert!(
            (312..=320).contains(&x) && (232..=240).contains(&y),
            "{seen:?}"
        );
        assert!((64..=80).contains(&w) && (48..=64).contains(&h), "{seen:?}");
        assert!(seen.motion > 0.005 && seen.motion < 0.02, "{seen:?}");
    }

    #[test]
    fn clients_are_compared_with_themselves_only() {
        let mut m = MotionProcessor::default();
        m.detect(1, &scene(None));
        assert_eq!(
            m.detect(2, &scene(Some((0, 0)))).bbox,
            None,
            "first frame of client 2"
        );
        assert_eq!(m.detect(1, &scene(None)).bbox, None);
        m.client_left(1);
        assert_eq!(
            m.detect(1, &scene(Some((0, 0)))).bbox,
            None,
            "state was forgotten"
        );
    }
}

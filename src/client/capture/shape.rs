//! Shaping each captured frame to the adaptation's current setting: frames
//! left out for a lower rate, resized for a smaller size, a camera's JPEG
//! decoded and encoded again only for a lower quality.

use crate::client::adapt::Adapter;
use crate::client::source::Image;
use crate::media::decode::decode_rgb;
use crate::media::encode::Yuv;
use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A captured frame after the adaptation's setting was applied.
pub(super) enum Shaped<'a> {
    /// Left out to lower the frame rate.
    Skip,
    /// A camera's JPEG, sent as it is.
    Jpeg(&'a [u8], u32, u32),
    /// A YUV frame at full size, to encode at `quality` (from YUV where the
    /// encoder can, else through RGB).
    Yuv {
        data: Yuv<'a>,
        width: u32,
        height: u32,
        quality: u8,
    },
    /// Pixels to encode at `quality`.
    Rgb {
        data: &'a [u8],
        width: u32,
        height: u32,
        quality: u8,
    },
}

/// Applies the adaptation's current setting to each captured frame: lower
/// rate (frames left out), smaller size (resized), lower quality (a camera's
/// own JPEG is decoded and encoded again only then).
pub(super) struct Shaper {
    adapter: Arc<Adapter>,
    /// The width of the top setting, which the current one is a fraction of.
    top_width: u32,
    top_fps: f64,
    last_kept: Option<Instant>,
    decoded: Vec<u8>,
    scaled: Vec<u8>,
    resizer: fast_image_resize::Resizer,
}

impl Shaper {
    pub(super) fn new(adapter: Arc<Adapter>) -> Self {
        let top = adapter.top();
        Shaper {
            adapter,
            top_width: top.width.max(1),
            top_fps: top.fps,
            last_kept: None,
            decoded: Vec::new(),
            scaled: Vec::new(),
            resizer: fast_image_resize::Resizer::new(),
        }
    }

    /// The frame as it should be sent now, and the level it was made at.
    pub(super) fn shape<'a>(
        &'a mut self,
        image: Image<'a>,
        at: Instant,
    ) -> Result<(usize, Shaped<'a>)> {
        let (level, setting) = self.adapter.current();
        if setting.fps > 0.0 && (self.top_fps <= 0.0 || setting.fps < self.top_fps) {
            let period = Duration::from_secs_f64(1.0 / setting.fps);
            if self
                .last_kept
                .is_some_and(|t| at.saturating_duration_since(t) < period.mul_f64(0.9))
            {
                return Ok((level, Shaped::Skip));
            }
        }
        self.last_kept = Some(at);
        let (data, width, height): (&[u8], u32, u32) = match image {
            Image::Jpeg {
                data,
                width,
                height,
            } if level == 0 => return Ok((level, Shaped::Jpeg(data, width, height))),
            Image::Jpeg { data, .. } => {
                let rgb = decode_rgb(data)?;
                let (w, h) = rgb.dimensions();
                self.decoded = rgb.into_raw();
                (&self.decoded, w, h)
            }
            Image::Rgb {
                data,
                width,
                height,
            } => (data, width, height),
            Image::Yuv {
                data,
                width,
                height,
            } => {
                if setting.width as f64 / self.top_width as f64 >= 0.999 {
                    return Ok((
                        level,
                        Shaped::Yuv {
                            data,
                            width,
                            height,
                            quality: setting.quality,
                        },
                    ));
                }
                data.to_rgb(width, height, &mut self.decoded);
                (&self.decoded[..], width, height)
            }
        };
        let fraction = setting.width as f64 / self.top_width as f64;
        if fraction < 0.999 {
            let w = ((width as f64 * fraction) as u32 & !1).max(2);
            let h = ((height as f64 * fraction) as u32 & !1).max(2);
            self.scaled.resize(w as usize * h as usize * 3, 0);
            crate::media::resize::rgb(
                &mut self.resizer,
                data,
                width,
                height,
                &mut self.scaled,
                w,
                h,
            )?;
            return Ok((
                level,
                Shaped::Rgb {
                    data: &self.scaled,
                    width: w,
                    height: h,
                    quality: setting.quality,
                },
            ));
        }
        Ok((
            level,
            Shaped::Rgb {
                data,
                width,
                height,
                quality: setting.quality,
            },
        ))
    }
}

//! JPEG encoding of captured RGB frames.

use anyhow::{Context, Result};

/// Turns packed RGB8 frames into JPEG.
pub trait Encoder: Send {
    /// Encodes `rgb` (`width * height * 3` bytes) into `out`, replacing its
    /// contents; `out`'s capacity is reused from frame to frame.
    fn encode(&mut self, rgb: &[u8], width: u32, height: u32, out: &mut Vec<u8>) -> Result<()>;

    /// The encoder's name, for logs and benchmarks.
    fn name(&self) -> &'static str;
}

/// The pure-Rust encoder of the `image` crate: builds anywhere.
pub struct ImageEncoder {
    quality: u8,
}

impl ImageEncoder {
    /// `quality` 1..=100.
    pub fn new(quality: u8) -> Self {
        ImageEncoder {
            quality: quality.clamp(1, 100),
        }
    }
}

impl Encoder for ImageEncoder {
    fn encode(&mut self, rgb: &[u8], width: u32, height: u32, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut *out, self.quality)
            .encode(rgb, width, height, image::ExtendedColorType::Rgb8)
            .with_context(|| format!("JPEG encoding of a {width}x{height} frame failed"))
    }

    fn name(&self) -> &'static str {
        "image (pure Rust)"
    }
}

/// The encoder this build uses by default.
pub fn default_encoder(quality: u8) -> Box<dyn Encoder> {
    Box::new(ImageEncoder::new(quality))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_a_whole_jpeg_that_decodes_to_the_same_size() {
        let (w, h) = (48u32, 32u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        let mut out = vec![1, 2, 3];
        ImageEncoder::new(80).encode(&rgb, w, h, &mut out).unwrap();
        assert!(crate::jpeg::is_whole(&out));
        let img = image::load_from_memory_with_format(&out, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (w, h));
    }
}

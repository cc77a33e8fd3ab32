//! JPEG encoding of captured RGB frames, and decoding on the server.
//!
//! libjpeg-turbo (the `turbojpeg` cargo feature, on by default) is the fast
//! path; the pure-Rust `image` encoder is the fallback that builds anywhere.

use anyhow::{bail, Context, Result};

/// Chroma subsampling of encoded frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Subsampling {
    /// 4:2:0: colour at half resolution both ways (smallest, what cameras send).
    #[value(name = "420")]
    S420,
    /// 4:2:2: colour at half resolution across.
    #[value(name = "422")]
    S422,
    /// 4:4:4: full colour resolution.
    #[value(name = "444")]
    S444,
}

/// Which JPEG encoder the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncoderKind {
    /// libjpeg-turbo when this build has it, else the pure-Rust encoder.
    Auto,
    /// libjpeg-turbo (needs the `turbojpeg` cargo feature).
    Turbojpeg,
    /// The pure-Rust encoder of the `image` crate (always 4:4:4 here).
    Image,
}

/// Turns packed RGB8 frames into JPEG.
pub trait Encoder: Send {
    /// Encodes `rgb` (`width * height * 3` bytes) into `out`, replacing its
    /// contents; `out`'s capacity is reused from frame to frame.
    fn encode(&mut self, rgb: &[u8], width: u32, height: u32, out: &mut Vec<u8>) -> Result<()>;

    /// The encoder's name, for logs and benchmarks.
    fn name(&self) -> &'static str;

    /// Sets the quality (1..=100) for the frames encoded from now on.
    fn set_quality(&mut self, quality: u8) -> Result<()>;
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
        "image (pure Rust, 4:4:4)"
    }

    fn set_quality(&mut self, quality: u8) -> Result<()> {
        self.quality = quality.clamp(1, 100);
        Ok(())
    }
}

/// libjpeg-turbo.
#[cfg(feature = "turbojpeg")]
pub struct TurboEncoder {
    compressor: turbojpeg::Compressor,
}

#[cfg(feature = "turbojpeg")]
impl TurboEncoder {
    pub fn new(quality: u8, subsampling: Subsampling) -> Result<Self> {
        let mut compressor = turbojpeg::Compressor::new().context("cannot start libjpeg-turbo")?;
        compressor.set_quality(quality.clamp(1, 100) as i32)?;
        compressor.set_subsamp(match subsampling {
            Subsampling::S420 => turbojpeg::Subsamp::Sub2x2,
            Subsampling::S422 => turbojpeg::Subsamp::Sub2x1,
            Subsampling::S444 => turbojpeg::Subsamp::None,
        })?;
        Ok(TurboEncoder { compressor })
    }
}

#[cfg(feature = "turbojpeg")]
impl Encoder for TurboEncoder {
    fn encode(&mut self, rgb: &[u8], width: u32, height: u32, out: &mut Vec<u8>) -> Result<()> {
        let (w, h) = (width as usize, height as usize);
        if rgb.len() < w * h * 3 {
            bail!(
                "frame of {} bytes is too short for {width}x{height} RGB",
                rgb.len()
            );
        }
        // Encode into the reused buffer, grown once to libjpeg-turbo's worst case.
        let bound = self.compressor.buf_len(w, h)?;
        if out.len() < bound {
            out.resize(bound, 0);
        }
        let image = turbojpeg::Image {
            pixels: rgb,
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        let n = self
            .compressor
            .compress_to_slice(image, &mut out[..])
            .with_context(|| format!("JPEG encoding of a {width}x{height} frame failed"))?;
        out.truncate(n);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "libjpeg-turbo"
    }

    fn set_quality(&mut self, quality: u8) -> Result<()> {
        Ok(self.compressor.set_quality(quality.clamp(1, 100) as i32)?)
    }
}

/// The encoder asked for; `Auto` is libjpeg-turbo when this build has it.
pub fn encoder(
    kind: EncoderKind,
    quality: u8,
    subsampling: Subsampling,
) -> Result<Box<dyn Encoder>> {
    match kind {
        #[cfg(feature = "turbojpeg")]
        EncoderKind::Auto | EncoderKind::Turbojpeg => Ok(Box::new(TurboEncoder::new(quality, subsampling)?)),
        #[cfg(not(feature = "turbojpeg"))]
        EncoderKind::Turbojpeg => bail!("this build has no libjpeg-turbo (built without the `turbojpeg` feature): use --encoder image"),
        #[cfg(not(feature = "turbojpeg"))]
        EncoderKind::Auto => {
            let _ = subsampling;
            Ok(Box::new(ImageEncoder::new(quality)))
        }
        EncoderKind::Image => Ok(Box::new(ImageEncoder::new(quality))),
    }
}

/// The most pixels [`decode_rgb`] decodes (8192 × 8192: 192 MiB of RGB),
/// whatever it is given: the server's `--max-pixels` may not be higher.
pub const MAX_DECODE_PIXELS: u64 = 8192 * 8192;

/// Decodes a JPEG to RGB8 (libjpeg-turbo when this build has it).
///
/// Refuses before allocating anything for the pixels a JPEG without a single
/// readable frame header, or one larger than [`MAX_DECODE_PIXELS`]: the size
/// in the header is what a decoder allocates for, so a few hundred bytes
/// claiming 60000 × 60000 would otherwise ask for 10 GB.
pub fn decode_rgb(jpeg: &[u8]) -> Result<image::RgbImage> {
    let (w, h) = crate::media::jpeg::dimensions(jpeg)
        .context("frame does not decode as JPEG: no single readable frame header")?;
    let pixels = w as u64 * h as u64;
    anyhow::ensure!(
        pixels <= MAX_DECODE_PIXELS,
        "frame of {w}x{h} is over the {MAX_DECODE_PIXELS} pixels this program decodes"
    );
    #[cfg(feature = "turbojpeg")]
    {
        let img = turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::RGB)
            .context("frame does not decode as JPEG")?;
        let (w, h) = (img.width as u32, img.height as u32);
        let pixels = if img.pitch == img.width * 3 {
            img.pixels
        } else {
            img.pixels
                .chunks(img.pitch)
                .flat_map(|row| &row[..img.width * 3])
                .copied()
                .collect()
        };
        image::RgbImage::from_raw(w, h, pixels).context("decoded frame has the wrong size")
    }
    #[cfg(not(feature = "turbojpeg"))]
    {
        Ok(
            image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
                .context("frame does not decode as JPEG")?
                .into_rgb8(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| [(i % w * 255 / w) as u8, (i / w * 255 / h) as u8, 90])
            .collect()
    }

    fn check_roundtrip(enc: &mut dyn Encoder) {
        let (w, h) = (48u32, 32u32);
        let rgb = gradient(w, h);
        let mut out = vec![1, 2, 3];
        enc.encode(&rgb, w, h, &mut out).unwrap();
        assert!(crate::media::jpeg::is_whole(&out), "{}", enc.name());
        let img = decode_rgb(&out).unwrap();
        assert_eq!(img.dimensions(), (w, h));
        // A smooth gradient survives quality 80 closely.
        let err: u64 = img
            .as_raw()
            .iter()
            .zip(&rgb)
            .map(|(a, b)| (*a as i64 - *b as i64).unsigned_abs())
            .sum();
        assert!(
            err / (rgb.len() as u64) < 8,
            "{}: mean error {}",
            enc.name(),
            err / rgb.len() as u64
        );
        // The buffer is reused: a second frame encodes into the same Vec.
        enc.encode(&rgb, w, h, &mut out).unwrap();
        assert!(crate::media::jpeg::is_whole(&out));
    }

    #[test]
    fn image_encoder_round_trips() {
        check_roundtrip(&mut ImageEncoder::new(80));
    }

    #[cfg(feature = "turbojpeg")]
    #[test]
    fn turbojpeg_encoder_round_trips_in_every_subsampling() {
        for s in [Subsampling::S420, Subsampling::S422, Subsampling::S444] {
            check_roundtrip(&mut TurboEncoder::new(80, s).unwrap());
        }
    }

    #[test]
    fn a_truncated_jpeg_is_an_error_or_at_least_not_a_panic() {
        let mut out = Vec::new();
        ImageEncoder::new(80)
            .encode(&gradient(48, 32), 48, 32, &mut out)
            .unwrap();
        let _ = decode_rgb(&out[..out.len() / 2]);
        assert!(decode_rgb(b"\xFF\xD8 definitely not").is_err());
    }

    #[test]
    fn a_header_claiming_a_huge_size_is_refused_before_decoding() {
        let mut out = Vec::new();
        ImageEncoder::new(80)
            .encode(&gradient(64, 48), 64, 48, &mut out)
            .unwrap();
        let sof = out
            .windows(2)
            .position(|w| w[0] == 0xFF && w[1] == 0xC0)
            .unwrap();
        out[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]); // 60000 x 60000
        let err = decode_rgb(&out).unwrap_err();
        assert!(format!("{err:#}").contains("60000x60000"), "{err:#}");
    }
}

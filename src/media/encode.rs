//! JPEG encoding of captured frames (decoding is in [`decode`](super::decode)).
//!
//! libjpeg-turbo (the `turbojpeg` cargo feature, on by default) is the fast
//! path; the pure-Rust `image` encoder is the fallback that builds anywhere.

use super::convert::i420_to_rgb;
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

    /// Encodes a YUV frame straight from its luma and chroma, without an
    /// RGB detour, when this encoder can. Returns false when it cannot (the
    /// caller converts with [`Yuv::to_rgb`] and calls [`encode`](Self::encode)).
    fn encode_yuv(
        &mut self,
        _yuv: Yuv<'_>,
        _width: u32,
        _height: u32,
        _out: &mut Vec<u8>,
    ) -> Result<bool> {
        Ok(false)
    }
}

/// Raw YUV pixels as a source hands them over.
#[derive(Debug, Clone, Copy)]
pub enum Yuv<'a> {
    /// Packed YUYV (4:2:2, `Y0 U Y1 V`), `width * height * 2` bytes, BT.601
    /// limited range: a camera's raw layout.
    Yuyv(&'a [u8]),
    /// Planar I420: Y (`width * height`), then U and V at half the width
    /// and half the height, full range (JPEG's own YCbCr). Width and height
    /// even.
    I420(&'a [u8]),
}

impl Yuv<'_> {
    /// Converts to packed RGB8 in `out` (for encoders that take only RGB,
    /// and for resizing).
    pub fn to_rgb(&self, width: u32, height: u32, out: &mut Vec<u8>) {
        let (w, h) = (width as usize, height as usize);
        match self {
            Yuv::Yuyv(data) => super::convert::yuyv_to_rgb(data, w, h, out),
            Yuv::I420(data) => i420_to_rgb(data, w, h, out),
        }
    }
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
    subsampling: Subsampling,
    /// Planar Y, U, V made from a YUYV frame, reused.
    planes: Vec<u8>,
    /// libjpeg-turbo's worst case for the frame size, written into and
    /// reused: the JPEG is copied out of it (zeroing a worst-case buffer
    /// per frame cost more than the copy).
    scratch: Vec<u8>,
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
        Ok(TurboEncoder {
            compressor,
            subsampling,
            planes: Vec::new(),
            scratch: Vec::new(),
        })
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
        if self.scratch.len() < bound {
            self.scratch.resize(bound, 0);
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
            .compress_to_slice(image, &mut self.scratch[..])
            .with_context(|| format!("JPEG encoding of a {width}x{height} frame failed"))?;
        out.clear();
        out.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }

    /// YUYV to planar Y, U, V at the subsampling asked for (4:2:2 as it
    /// is, 4:2:0 averaging each pair of rows), then libjpeg-turbo's
    /// encode-from-YUV: no colour conversion at all. I420 goes in as it is
    /// at 4:2:0. Anything else (4:4:4, an odd size) goes through RGB.
    fn encode_yuv(
        &mut self,
        yuv: Yuv<'_>,
        width: u32,
        height: u32,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        let (w, h) = (width as usize, height as usize);
        let even = w % 2 == 0 && h % 2 == 0;
        let (pixels, subsamp) = match (yuv, self.subsampling) {
            (Yuv::Yuyv(yuyv), sub @ (Subsampling::S420 | Subsampling::S422)) => {
                let subsamp = match sub {
                    Subsampling::S420 if even => turbojpeg::Subsamp::Sub2x2,
                    Subsampling::S422 if w % 2 == 0 => turbojpeg::Subsamp::Sub2x1,
                    _ => return Ok(false),
                };
                if yuyv.len() < w * h * 2 {
                    bail!(
                        "frame of {} bytes is too short for {width}x{height} YUYV",
                        yuyv.len()
                    );
                }
                super::convert::yuyv_to_planes(
                    yuyv,
                    w,
                    h,
                    subsamp == turbojpeg::Subsamp::Sub2x2,
                    &mut self.planes,
                );
                (&self.planes[..], subsamp)
            }
            (Yuv::I420(planes), Subsampling::S420) if even => {
                if planes.len() < w * h * 3 / 2 {
                    bail!(
                        "frame of {} bytes is too short for {width}x{height} I420",
                        planes.len()
                    );
                }
                (planes, turbojpeg::Subsamp::Sub2x2)
            }
            _ => return Ok(false),
        };
        let bound = self.compressor.buf_len(w, h)?;
        if self.scratch.len() < bound {
            self.scratch.resize(bound, 0);
        }
        let image = turbojpeg::YuvImage {
            pixels,
            width: w,
            align: 1,
            height: h,
            subsamp,
        };
        let n = self
            .compressor
            .compress_yuv_to_slice(image, &mut self.scratch[..])
            .with_context(|| format!("JPEG encoding of a {width}x{height} YUV frame failed"))?;
        out.clear();
        out.extend_from_slice(&self.scratch[..n]);
        Ok(true)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::decode::decode_rgb;

    #[cfg(feature = "turbojpeg")]
    #[test]
    fn a_yuyv_frame_encoded_from_yuv_matches_the_rgb_path() {
        let (w, h) = (96usize, 64usize);
        let yuyv = crate::media::convert::tests::yuyv_frame(w, h);
        for sub in [Subsampling::S420, Subsampling::S422] {
            let mut enc = TurboEncoder::new(90, sub).unwrap();
            let mut direct = Vec::new();
            assert!(enc
                .encode_yuv(Yuv::Yuyv(&yuyv), w as u32, h as u32, &mut direct)
                .unwrap());
            let mut rgb = Vec::new();
            crate::media::convert::yuyv_to_rgb(&yuyv, w, h, &mut rgb);
            let mut detour = Vec::new();
            enc.encode(&rgb, w as u32, h as u32, &mut detour).unwrap();
            assert_eq!(
                decode_rgb(&direct).unwrap().dimensions(),
                (w as u32, h as u32)
            );
            let (mean, max) = difference(&direct, &detour);
            assert!(mean < 3.0 && max < 48, "{sub:?}: mean {mean}, max {max}");
        }
        // 4:4:4 cannot come from 4:2:2 chroma: the caller goes through RGB.
        let mut enc = TurboEncoder::new(90, Subsampling::S444).unwrap();
        assert!(!enc
            .encode_yuv(Yuv::Yuyv(&yuyv), w as u32, h as u32, &mut Vec::new())
            .unwrap());
    }

    /// Mean and largest difference per channel between two decoded JPEGs.
    #[cfg(feature = "turbojpeg")]
    fn difference(a: &[u8], b: &[u8]) -> (f64, u32) {
        let (a, b) = (decode_rgb(a).unwrap(), decode_rgb(b).unwrap());
        assert_eq!(a.dimensions(), b.dimensions());
        let diffs: Vec<u32> = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&p, &q)| (p as i32 - q as i32).unsigned_abs())
            .collect();
        let mean = diffs.iter().sum::<u32>() as f64 / diffs.len() as f64;
        (mean, *diffs.iter().max().unwrap())
    }

    #[cfg(feature = "turbojpeg")]
    #[test]
    fn nv12_and_i420_frames_encoded_from_yuv_match_the_rgb_path() {
        let (w, h) = (96usize, 64usize);
        // NV12 as a camera gives it: limited range, interleaved chroma.
        let mut nv12 = vec![0u8; w * h * 3 / 2];
        for y in 0..h {
            for x in 0..w {
                nv12[y * w + x] = (16 + (x * 219 / w + y) % 220) as u8;
            }
        }
        // Smooth chroma, as a scene has: U across, V down.
        for (i, c) in nv12[w * h..].chunks_exact_mut(2).enumerate() {
            let (cx, cy) = (i % (w / 2), i / (w / 2));
            c[0] = (60 + cx * 120 / (w / 2)) as u8;
            c[1] = (60 + cy * 120 / (h / 2)) as u8;
        }
        let mut enc = TurboEncoder::new(90, Subsampling::S420).unwrap();
        let mut planes = Vec::new();
        crate::media::convert::nv12_to_i420(&nv12, w, h, &mut planes);
        let mut direct = Vec::new();
        assert!(enc
            .encode_yuv(Yuv::I420(&planes), w as u32, h as u32, &mut direct)
            .unwrap());
        let mut rgb = Vec::new();
        crate::media::convert::nv12_to_rgb(&nv12, w, h, &mut rgb);
        let mut detour = Vec::new();
        enc.encode(&rgb, w as u32, h as u32, &mut detour).unwrap();
        let (mean, max) = difference(&direct, &detour);
        assert!(mean < 3.0 && max < 48, "NV12: mean {mean}, max {max}");

        // I420 converted to RGB here and encoded, against I420 encoded as it is.
        Yuv::I420(&planes).to_rgb(w as u32, h as u32, &mut rgb);
        enc.encode(&rgb, w as u32, h as u32, &mut detour).unwrap();
        let (mean, max) = difference(&direct, &detour);
        assert!(mean < 3.0 && max < 48, "I420: mean {mean}, max {max}");

        // 4:4:4 and odd sizes cannot be encoded from 4:2:0 planes as they are.
        let mut enc444 = TurboEncoder::new(90, Subsampling::S444).unwrap();
        assert!(!enc444
            .encode_yuv(Yuv::I420(&planes), w as u32, h as u32, &mut Vec::new())
            .unwrap());
    }

    pub(crate) fn gradient(w: u32, h: u32) -> Vec<u8> {
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
}

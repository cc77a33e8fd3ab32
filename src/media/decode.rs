//! JPEG decoding: to an RGB image for the server's window and processors,
//! or straight into a caller's buffer in RGB or BGR order (the Python
//! binding decodes into a numpy array this way, with no copy after it).
//!
//! Every JPEG here came from the network: its header is checked and its size
//! capped before anything is allocated, and a decoder's panic is that
//! frame's error.

use anyhow::{Context, Result};

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
    decoded_size(jpeg)?;
    // The decoders are other people's code fed bytes from the network: one
    // that panics on a frame (a bug of theirs, such as an arithmetic overflow
    // on crafted coefficients) fails that frame, not the thread decoding it.
    std::panic::catch_unwind(|| decode_unchecked(jpeg)).unwrap_or_else(|panic| {
        Err(anyhow::anyhow!(
            "frame does not decode as JPEG: the decoder failed on it ({})",
            crate::logging::panic_text(&*panic)
        ))
    })
}

fn decode_unchecked(jpeg: &[u8]) -> Result<image::RgbImage> {
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

/// Decodes a JPEG to RGB8 like [`decode_rgb`], into `buf`: a buffer an
/// earlier frame's pixels were in (see `RgbImage::into_raw`), so a thread
/// that decodes every frame allocates once instead of once a frame, and its
/// resident memory does not rise and fall by a frame each time. A buffer over
/// four times the frame's size (the frames got smaller) is let go rather than
/// kept. The pure-Rust decoder makes its own buffer and `buf` is dropped.
pub fn decode_rgb_reusing(jpeg: &[u8], buf: Vec<u8>) -> Result<image::RgbImage> {
    #[cfg(feature = "turbojpeg")]
    {
        let mut buf = buf;
        let (w, h) = decoded_size(jpeg)?;
        let need = w as usize * h as usize * 3;
        if buf.capacity() > need.saturating_mul(4) {
            buf = Vec::new();
        }
        // Only a grown buffer is written here: the decoder fills every byte.
        buf.resize(need, 0);
        decode_into(jpeg, &mut buf, PixelOrder::Rgb)?;
        image::RgbImage::from_raw(w, h, buf).context("decoded frame has the wrong size")
    }
    #[cfg(not(feature = "turbojpeg"))]
    {
        drop(buf);
        decode_rgb(jpeg)
    }
}

/// The order of the three bytes of a decoded pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelOrder {
    Rgb,
    /// OpenCV's order.
    Bgr,
}

/// A JPEG's width and height as its frame header gives them, checked
/// against [`MAX_DECODE_PIXELS`]: what [`decode_into`] needs room for
/// (`width * height * 3` bytes).
pub fn decoded_size(jpeg: &[u8]) -> Result<(u32, u32)> {
    let (w, h) = crate::media::jpeg::dimensions(jpeg)
        .context("frame does not decode as JPEG: no single readable frame header")?;
    let pixels = w as u64 * h as u64;
    anyhow::ensure!(
        pixels <= MAX_DECODE_PIXELS,
        "frame of {w}x{h} is over the {MAX_DECODE_PIXELS} pixels this program decodes"
    );
    Ok((w as u32, h as u32))
}

/// Decodes `jpeg` into `out`, which must hold exactly
/// `width * height * 3` bytes of [`decoded_size`], rows packed, in `order`.
/// libjpeg-turbo writes there directly; the pure-Rust path decodes to RGB
/// and copies (swapping to BGR when asked).
pub fn decode_into(jpeg: &[u8], out: &mut [u8], order: PixelOrder) -> Result<()> {
    let (w, h) = decoded_size(jpeg)?;
    decode_reduced_into(jpeg, (w, h), out, order).map(|_| ())
}

/// The denominators the decoder can reduce a picture by in its DCT, the
/// largest first: 8, 4, 2 with libjpeg-turbo; the pure-Rust decoder
/// decodes whole.
const REDUCTIONS: &[u32] = if cfg!(feature = "turbojpeg") {
    &[8, 4, 2, 1]
} else {
    &[1]
};

/// The size a picture of `size` decodes to by [`decode_reduced_into`]:
/// reduced by its DCT (1/8, 1/4 or 1/2, rounding up, as libjpeg-turbo
/// does) as far as both sides stay at least `at_least`; whole if no
/// reduction does (or the decoder has none).
pub fn reduced_size(size: (u32, u32), at_least: (u32, u32)) -> (u32, u32) {
    reduced_by(size, reduction(size, at_least))
}

/// The denominator [`reduced_size`] reduces by.
fn reduction(size: (u32, u32), at_least: (u32, u32)) -> u32 {
    REDUCTIONS
        .iter()
        .copied()
        .find(|&d| {
            let (w, h) = reduced_by(size, d);
            w >= at_least.0 && h >= at_least.1
        })
        .unwrap_or(1)
}

fn reduced_by(size: (u32, u32), by: u32) -> (u32, u32) {
    (size.0.div_ceil(by), size.1.div_ceil(by))
}

/// Decodes `jpeg` reduced by its DCT as far as it stays at least
/// `at_least` in both sides (a 1080p frame for a 640-wide model decodes
/// at 960x540, never whole) into `out`, which must hold exactly the
/// [`reduced_size`]'s `width * height * 3` bytes; returns that size.
pub fn decode_reduced_into(
    jpeg: &[u8],
    at_least: (u32, u32),
    out: &mut [u8],
    order: PixelOrder,
) -> Result<(u32, u32)> {
    let full = decoded_size(jpeg)?;
    let by = reduction(full, at_least);
    let (w, h) = reduced_by(full, by);
    anyhow::ensure!(
        out.len() == w as usize * h as usize * 3,
        "a {w}x{h} frame needs {} bytes, the buffer has {}",
        w as usize * h as usize * 3,
        out.len()
    );
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_into_unchecked(jpeg, out, full, by, order)
    }))
    .unwrap_or_else(|panic| {
        Err(anyhow::anyhow!(
            "frame does not decode as JPEG: the decoder failed on it ({})",
            crate::logging::panic_text(&*panic)
        ))
    })?;
    Ok((w, h))
}

#[cfg(feature = "turbojpeg")]
fn decode_into_unchecked(
    jpeg: &[u8],
    out: &mut [u8],
    full: (u32, u32),
    by: u32,
    order: PixelOrder,
) -> Result<()> {
    let (w, h) = reduced_by(full, by);
    let mut d = turbojpeg::Decompressor::new().context("cannot start libjpeg-turbo")?;
    let header = d
        .read_header(jpeg)
        .context("frame does not decode as JPEG")?;
    anyhow::ensure!(
        (header.width, header.height) == (full.0 as usize, full.1 as usize),
        "frame does not decode as JPEG: its headers disagree on its size"
    );
    if by > 1 {
        d.set_scaling_factor(turbojpeg::ScalingFactor::new(1, by as usize))
            .context("libjpeg-turbo cannot reduce by this factor")?;
    }
    let image = turbojpeg::Image {
        pixels: out,
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: match order {
            PixelOrder::Rgb => turbojpeg::PixelFormat::RGB,
            PixelOrder::Bgr => turbojpeg::PixelFormat::BGR,
        },
    };
    d.decompress(jpeg, image)
        .context("frame does not decode as JPEG")
}

#[cfg(not(feature = "turbojpeg"))]
fn decode_into_unchecked(
    jpeg: &[u8],
    out: &mut [u8],
    full: (u32, u32),
    _by: u32,
    order: PixelOrder,
) -> Result<()> {
    let rgb = decode_unchecked(jpeg)?;
    anyhow::ensure!(
        rgb.dimensions() == full,
        "frame does not decode as JPEG: its headers disagree on its size"
    );
    out.copy_from_slice(rgb.as_raw());
    if order == PixelOrder::Bgr {
        for px in out.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::encode::tests::gradient;
    use crate::media::encode::{Encoder, ImageEncoder};

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

    #[test]
    fn a_reduced_decode_is_the_smallest_dct_reduction_still_at_least_the_size_asked() {
        let reduces = cfg!(feature = "turbojpeg");
        let expect = |reduced: (u32, u32), whole: (u32, u32)| if reduces { reduced } else { whole };
        assert_eq!(
            reduced_size((1920, 1080), (640, 360)),
            expect((960, 540), (1920, 1080))
        );
        assert_eq!(
            reduced_size((1920, 1080), (200, 100)),
            expect((240, 135), (1920, 1080))
        );
        // Rounding up, as libjpeg-turbo does.
        assert_eq!(
            reduced_size((1921, 1081), (241, 136)),
            expect((241, 136), (1921, 1081))
        );
        // Asked for more than the picture: whole.
        assert_eq!(reduced_size((320, 240), (640, 640)), (320, 240));

        let mut jpeg = Vec::new();
        ImageEncoder::new(95)
            .encode(&gradient(160, 96), 160, 96, &mut jpeg)
            .unwrap();
        let (w, h) = reduced_size((160, 96), (40, 24));
        let mut out = vec![0u8; w as usize * h as usize * 3];
        assert_eq!(
            decode_reduced_into(&jpeg, (40, 24), &mut out, PixelOrder::Rgb).unwrap(),
            (w, h)
        );
        // The reduced picture is the whole one, smaller: compare a pixel.
        let mut whole = vec![0u8; 160 * 96 * 3];
        decode_into(&jpeg, &mut whole, PixelOrder::Rgb).unwrap();
        let by = 160 / w as usize;
        let (x, y) = (w as usize / 2, h as usize / 2);
        let a = &out[(y * w as usize + x) * 3..][..3];
        let b = &whole[((y * by + by / 2) * 160 + x * by + by / 2) * 3..][..3];
        for (a, b) in a.iter().zip(b) {
            assert!((*a as i32 - *b as i32).abs() <= 24, "{a} against {b}");
        }
        if reduces {
            let e = decode_reduced_into(&jpeg, (40, 24), &mut whole, PixelOrder::Rgb).unwrap_err();
            assert!(format!("{e:#}").contains("needs"), "{e:#}");
        }
    }

    #[test]
    fn decoding_into_a_buffer_gives_the_rgb_pixels_in_either_order() {
        let mut jpeg = Vec::new();
        ImageEncoder::new(90)
            .encode(&gradient(40, 24), 40, 24, &mut jpeg)
            .unwrap();
        let rgb = decode_rgb(&jpeg).unwrap();
        assert_eq!(decoded_size(&jpeg).unwrap(), (40, 24));
        let mut out = vec![0u8; 40 * 24 * 3];
        decode_into(&jpeg, &mut out, PixelOrder::Rgb).unwrap();
        assert_eq!(&out[..], rgb.as_raw().as_slice());
        decode_into(&jpeg, &mut out, PixelOrder::Bgr).unwrap();
        for (bgr, rgb) in out.chunks_exact(3).zip(rgb.as_raw().chunks_exact(3)) {
            assert_eq!([bgr[2], bgr[1], bgr[0]], [rgb[0], rgb[1], rgb[2]]);
        }
        let mut small = vec![0u8; 10];
        assert!(format!(
            "{:#}",
            decode_into(&jpeg, &mut small, PixelOrder::Rgb).unwrap_err()
        )
        .contains("needs 2880 bytes"));
        assert!(decode_into(b"\xFF\xD8 nope", &mut out, PixelOrder::Rgb).is_err());
    }
}

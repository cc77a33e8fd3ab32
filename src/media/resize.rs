//! Resizing pixels (bilinear, SIMD through `fast_image_resize`): the
//! client's adaptation to a thin link and the letterbox of model-sized input.

use anyhow::{Context, Result};
use fast_image_resize::{images, FilterType, PixelType, ResizeAlg, ResizeOptions};

/// Resizes RGB pixels (`width`×`height`) into `out` (`w`×`h`), bilinear.
pub fn rgb(
    resizer: &mut fast_image_resize::Resizer,
    rgb: &[u8],
    width: u32,
    height: u32,
    out: &mut [u8],
    w: u32,
    h: u32,
) -> Result<()> {
    let src = images::ImageRef::new(width, height, rgb, PixelType::U8x3)
        .context("frame buffer does not match its size")?;
    let mut dst = images::Image::from_slice_u8(w, h, out, PixelType::U8x3)
        .context("resize buffer does not match its size")?;
    resizer
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        )
        .context("resizing a frame failed")
}

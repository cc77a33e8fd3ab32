//! Encoder and decoder speed, and the YUYV path against its limit.

use super::*;

/// YUYV 1080p to JPEG (q80, 4:2:0), median ms: framelink's YUV path (planes,
/// then libjpeg-turbo's encode-from-YUV), libjpeg-turbo's encode-from-YUV
/// alone on ready planes (the limit of this path), and the RGB detour.
#[cfg(not(feature = "turbojpeg"))]
pub(crate) fn yuyv_speed(_report: &mut String) -> Result<()> {
    bail!("the YUYV timing needs libjpeg-turbo: build with default features")
}

#[cfg(feature = "turbojpeg")]
pub(crate) fn yuyv_speed(report: &mut String) -> Result<()> {
    use framelink::media::convert::yuyv_to_planes;
    let (w, h) = (1920usize, 1080usize);
    // A camera-layout frame: a moving-looking gradient in limited range.
    let yuyv: Vec<u8> = (0..w * h / 2)
        .flat_map(|i| {
            let (x, y) = ((i * 2) % w, (i * 2) / w);
            [
                (16 + x * 219 / w) as u8,
                (16 + y * 224 / h) as u8,
                (16 + (x + 1) * 219 / w) as u8,
                (240 - y * 224 / h) as u8,
            ]
        })
        .collect();
    let mut enc = encode::encoder(EncoderKind::Turbojpeg, 80, Subsampling::S420)?;
    let mut out = Vec::new();
    let ours = median_ms(60, || {
        enc.encode_yuv(encode::Yuv::Yuyv(&yuyv), w as u32, h as u32, &mut out)
            .map(|_| ())
    })?;
    let mut planes = Vec::new();
    yuyv_to_planes(&yuyv, w, h, true, &mut planes);
    let mut c = turbojpeg::Compressor::new()?;
    c.set_quality(80)?;
    let limit = median_ms(60, || {
        let img = turbojpeg::YuvImage {
            pixels: &planes[..],
            width: w,
            align: 1,
            height: h,
            subsamp: turbojpeg::Subsamp::Sub2x2,
        };
        c.compress_yuv_to_vec(img)?;
        Ok(())
    })?;
    let mut rgb = Vec::new();
    let detour = median_ms(60, || {
        framelink::media::convert::yuyv_to_rgb(&yuyv, w, h, &mut rgb);
        enc.encode(&rgb, w as u32, h as u32, &mut out)
    })?;
    writeln!(
        report,
        "## YUYV 1920x1080 to JPEG (q80, 4:2:0), median of 60, one core\n"
    )?;
    writeln!(report, "| path | ms per frame |\n|---|---|")?;
    writeln!(
        report,
        "| framelink: planes + encode-from-YUV | {ours:.2} |"
    )?;
    writeln!(
        report,
        "| libjpeg-turbo encode-from-YUV alone (the limit) | {limit:.2} |"
    )?;
    writeln!(report, "| RGB detour (YUYV → RGB → encode) | {detour:.2} |")?;
    writeln!(report, "\nframelink / limit: {:.2}x", ours / limit)?;
    Ok(())
}

/// Median ms of encode (image, turbo) and decode (turbo), and the JPEG size.
pub(crate) fn codec_speed(w: u32, h: u32) -> Result<(f64, f64, f64, f64, f64)> {
    let mut pattern = TestPattern::new(w, h, 0.0);
    let (frame, planes) = match pattern.next_frame()?.image {
        Image::Rgb { data, .. } => (data.to_vec(), None),
        Image::Yuv {
            data: yuv @ encode::Yuv::I420(planes),
            ..
        } => {
            let mut rgb = Vec::new();
            yuv.to_rgb(w, h, &mut rgb);
            (rgb, Some(planes.to_vec()))
        }
        Image::Jpeg { .. } | Image::Yuv { .. } => bail!("the test pattern gives RGB or I420"),
    };
    let mut out = Vec::new();
    let mut image_enc = encode::encoder(EncoderKind::Image, 80, Subsampling::S444)?;
    let image_ms = median_ms(15, || image_enc.encode(&frame, w, h, &mut out))?;
    let mut turbo = encode::encoder(EncoderKind::Auto, 80, Subsampling::S420)?;
    let turbo_ms = median_ms(40, || turbo.encode(&frame, w, h, &mut out))?;
    let jpeg = out.clone();
    let i420_ms = match &planes {
        Some(p) => median_ms(40, || {
            turbo
                .encode_yuv(encode::Yuv::I420(p), w, h, &mut out)
                .map(|_| ())
        })?,
        None => f64::NAN,
    };
    let decode_ms = median_ms(40, || {
        framelink::media::decode::decode_rgb(&jpeg).map(|_| ())
    })?;
    Ok((
        image_ms,
        turbo_ms,
        i420_ms,
        decode_ms,
        jpeg.len() as f64 / 1000.0,
    ))
}

/// The median of `n` timed runs of `f`, in ms.
fn median_ms(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[n / 2])
}

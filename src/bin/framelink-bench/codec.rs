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
    use framelink::media::encode::yuyv_to_planes;
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
    let median = |f: &mut dyn FnMut()| {
        let mut t: Vec<f64> = (0..60)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let mut enc = encode::encoder(EncoderKind::Turbojpeg, 80, Subsampling::S420)?;
    let mut out = Vec::new();
    let ours = median(&mut || {
        enc.encode_yuv(encode::Yuv::Yuyv(&yuyv), w as u32, h as u32, &mut out)
            .unwrap();
    });
    let mut planes = Vec::new();
    yuyv_to_planes(&yuyv, w, h, true, &mut planes);
    let mut c = turbojpeg::Compressor::new()?;
    c.set_quality(80)?;
    let limit = median(&mut || {
        let img = turbojpeg::YuvImage {
            pixels: &planes[..],
            width: w,
            align: 1,
            height: h,
            subsamp: turbojpeg::Subsamp::Sub2x2,
        };
        c.compress_yuv_to_vec(img).unwrap();
    });
    let mut rgb = Vec::new();
    let detour = median(&mut || {
        framelink::client::source::camera::yuyv_to_rgb(&yuyv, w, h, &mut rgb);
        enc.encode(&rgb, w as u32, h as u32, &mut out).unwrap();
    });
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
    let time = |n: usize, mut f: Box<dyn FnMut() -> Result<()> + '_>| -> Result<f64> {
        let mut t = Vec::with_capacity(n);
        for _ in 0..n {
            let s = Instant::now();
            f()?;
            t.push(s.elapsed().as_secs_f64() * 1000.0);
        }
        t.sort_by(|a, b| a.total_cmp(b));
        Ok(t[n / 2])
    };
    let mut out = Vec::new();
    let mut image_enc = encode::encoder(EncoderKind::Image, 80, Subsampling::S444)?;
    let image_ms = time(15, Box::new(|| image_enc.encode(&frame, w, h, &mut out)))?;
    let mut turbo = encode::encoder(EncoderKind::Auto, 80, Subsampling::S420)?;
    let turbo_ms = time(40, Box::new(|| turbo.encode(&frame, w, h, &mut out)))?;
    let jpeg = out.clone();
    let i420_ms = match &planes {
        Some(p) => time(
            40,
            Box::new(|| {
                turbo
                    .encode_yuv(encode::Yuv::I420(p), w, h, &mut out)
                    .map(|_| ())
            }),
        )?,
        None => f64::NAN,
    };
    let decode_ms = time(40, Box::new(|| encode::decode_rgb(&jpeg).map(|_| ())))?;
    Ok((
        image_ms,
        turbo_ms,
        i420_ms,
        decode_ms,
        jpeg.len() as f64 / 1000.0,
    ))
}

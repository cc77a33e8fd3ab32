//! Raw camera pixel formats to RGB8 (BT.601, limited range): what the
//! client does to a YUYV or NV12 frame before an encoder that takes RGB.

/// Packed YUYV (4:2:2) to RGB8, BT.601 limited range.
pub fn yuyv_to_rgb(src: &[u8], width: usize, height: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(width * height * 3, 0);
    let pairs = (width * height / 2).min(src.len() / 4);
    for i in 0..pairs {
        let [y0, u, y1, v] = [src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]];
        let a = yuv_to_rgb(y0, u, v);
        let b = yuv_to_rgb(y1, u, v);
        out[6 * i..6 * i + 3].copy_from_slice(&a);
        out[6 * i + 3..6 * i + 6].copy_from_slice(&b);
    }
}

/// NV12 (Y plane, then interleaved UV at half resolution) to RGB8.
pub fn nv12_to_rgb(src: &[u8], width: usize, height: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(width * height * 3, 0);
    let y_len = width * height;
    if src.len() < y_len + y_len / 2 {
        return;
    }
    let (ys, uv) = src.split_at(y_len);
    for y in 0..height {
        for x in 0..width {
            let c = (y / 2) * width + (x / 2) * 2;
            let px = yuv_to_rgb(ys[y * width + x], uv[c], uv[c + 1]);
            let o = (y * width + x) * 3;
            out[o..o + 3].copy_from_slice(&px);
        }
    }
}

fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (y as i32 - 16) * 298;
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(c + 409 * e),
        clamp(c - 100 * d - 208 * e),
        clamp(c + 516 * d),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_grey_and_white_convert() {
        // Two pixel pairs: black (Y=16) and white (Y=235), neutral chroma.
        let src = [16, 128, 16, 128, 235, 128, 235, 128];
        let mut out = Vec::new();
        yuyv_to_rgb(&src, 4, 1, &mut out);
        assert_eq!(&out[..6], &[0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[6..], &[255; 6]);
    }
}

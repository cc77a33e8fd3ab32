//! Decoded pixels (H×W×3 `uint8`, rows packed) laid out as a model takes
//! them: channels first (3×H×W) and/or `float32` scaled to 0–1.

/// `hwc` as 3×H×W.
pub(crate) fn to_chw(hwc: &[u8], out: &mut [u8]) {
    planes(hwc, out, |v| v);
}

/// `hwc` as `float32` in 0–1, channels first when `chw`.
pub(crate) fn to_f32(hwc: &[u8], chw: bool, out: &mut [f32]) {
    const SCALE: f32 = 1.0 / 255.0;
    let scaled = |v: u8| v as f32 * SCALE;
    if chw {
        planes(hwc, out, scaled);
    } else {
        for (o, &v) in out.iter_mut().zip(hwc) {
            *o = scaled(v);
        }
    }
}

/// Each pixel's three values of `hwc`, made by `value`, into `out`'s three
/// planes.
fn planes<T>(hwc: &[u8], out: &mut [T], value: impl Fn(u8) -> T) {
    let plane = hwc.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (((px, r), g), b) in hwc.chunks_exact(3).zip(r).zip(g).zip(b) {
        (*r, *g, *b) = (value(px[0]), value(px[1]), value(px[2]));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn channels_go_first_and_floats_are_scaled_to_one() {
        // Two pixels: (1, 2, 3) and (4, 5, 255).
        let hwc = [1, 2, 3, 4, 5, 255];
        let mut chw = [0u8; 6];
        super::to_chw(&hwc, &mut chw);
        assert_eq!(chw, [1, 4, 2, 5, 3, 255]);
        let mut f = [0f32; 6];
        super::to_f32(&hwc, true, &mut f);
        assert_eq!(f[4], 3.0 / 255.0);
        assert_eq!(f[5], 1.0);
        super::to_f32(&hwc, false, &mut f);
        assert_eq!(f[2], 3.0 / 255.0);
        assert_eq!(f[5], 1.0);
    }
}

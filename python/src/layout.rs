//! Decoded pixels (H×W×3 `uint8`, rows packed) laid out as a model takes
//! them: channels first (3×H×W) and/or `float32` scaled to 0–1.

/// `hwc` as 3×H×W.
pub(crate) fn to_chw(hwc: &[u8], out: &mut [u8]) {
    let plane = hwc.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (((px, r), g), b) in hwc.chunks_exact(3).zip(r).zip(g).zip(b) {
        (*r, *g, *b) = (px[0], px[1], px[2]);
    }
}

/// `hwc` as `float32` in 0–1, channels first when `chw`.
pub(crate) fn to_f32(hwc: &[u8], chw: bool, out: &mut [f32]) {
    const SCALE: f32 = 1.0 / 255.0;
    if !chw {
        for (o, &v) in out.iter_mut().zip(hwc) {
            *o = v as f32 * SCALE;
        }
        return;
    }
    let plane = hwc.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (((px, r), g), b) in hwc.chunks_exact(3).zip(r).zip(g).zip(b) {
        *r = px[0] as f32 * SCALE;
        *g = px[1] as f32 * SCALE;
        *b = px[2] as f32 * SCALE;
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

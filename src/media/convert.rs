//! Pixel formats: raw camera frames (YUYV, NV12; BT.601 limited range) to
//! RGB8 for encoders that take RGB, and to planar full-range I420 (JPEG's
//! own YCbCr) for libjpeg-turbo's YUV input, with SIMD paths on x86_64 and
//! aarch64.

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

/// Full-range planar I420 (JPEG's YCbCr, JFIF) to packed RGB8.
pub fn i420_to_rgb(planes: &[u8], w: usize, h: usize, out: &mut Vec<u8>) {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    out.clear();
    out.resize(w * h * 3, 0);
    if planes.len() < w * h + 2 * cw * ch {
        return;
    }
    let (y, chroma) = planes.split_at(w * h);
    let (u, v) = chroma.split_at(cw * ch);
    for row in 0..h {
        let (urow, vrow) = (&u[row / 2 * cw..][..cw], &v[row / 2 * cw..][..cw]);
        let yrow = &y[row * w..][..w];
        let orow = &mut out[row * w * 3..][..w * 3];
        for (x, (px, &yy)) in orow.chunks_exact_mut(3).zip(yrow).enumerate() {
            let (cb, cr) = (urow[x / 2] as i32 - 128, vrow[x / 2] as i32 - 128);
            let yy = (yy as i32) << 16;
            // JFIF: R = Y + 1.402 Cr, G = Y - 0.344136 Cb - 0.714136 Cr, B = Y + 1.772 Cb (16.16 fixed point).
            let r = (yy + 91881 * cr + 32768) >> 16;
            let g = (yy - 22554 * cb - 46802 * cr + 32768) >> 16;
            let b = (yy + 116130 * cb + 32768) >> 16;
            px[0] = r.clamp(0, 255) as u8;
            px[1] = g.clamp(0, 255) as u8;
            px[2] = b.clamp(0, 255) as u8;
        }
    }
}

/// Packed YUYV (`Y0 U Y1 V` per pixel pair) to planar Y, then U and V at
/// half the width, and half the height too when `half_height` (rows
/// averaged in pairs). `w` is even, and `h` too when `half_height`.
///
/// Cameras send BT.601 *limited* range (Y 16–235, chroma 16–240); a JPEG's
/// YCbCr is full range (0–255), so each sample is stretched on the way (a
/// table lookup: still no colour conversion).
pub fn yuyv_to_planes(yuyv: &[u8], w: usize, h: usize, half_height: bool, out: &mut Vec<u8>) {
    split_yuyv(yuyv, w, h, half_height, out, true)
}

/// [`yuyv_to_planes`], with SSE2 (x86_64) or NEON (aarch64) for the bulk of
/// each plane when `simd` (the same values as the tables, to the level).
fn split_yuyv(yuyv: &[u8], w: usize, h: usize, half_height: bool, out: &mut Vec<u8>, simd: bool) {
    let luma = luma_full_range();
    // Indexed by the sum of two samples (0..=510).
    let pair: Vec<u8> = (0..=510u16)
        .map(|v| chroma_full_range(v as f64 / 2.0))
        .collect();
    let cw = w / 2;
    let ch = if half_height { h / 2 } else { h };
    out.clear();
    out.resize(w * h + 2 * cw * ch, 0);
    let (y, chroma) = out.split_at_mut(w * h);
    let (u, v) = chroma.split_at_mut(cw * ch);
    let yuyv = &yuyv[..w * h * 2];
    let done = if simd { simd::luma(yuyv, y) } else { 0 };
    for (dst, src) in y[done..]
        .chunks_exact_mut(2)
        .zip(yuyv[done * 2..].chunks_exact(4))
    {
        dst[0] = luma[src[0] as usize];
        dst[1] = luma[src[2] as usize];
    }
    let rows_per_chroma_row = if half_height { 2 } else { 1 };
    for ((urow, vrow), rows) in u
        .chunks_exact_mut(cw)
        .zip(v.chunks_exact_mut(cw))
        .zip(yuyv.chunks_exact(w * 2 * rows_per_chroma_row))
    {
        let (first, second) = if half_height {
            rows.split_at(w * 2)
        } else {
            (rows, rows)
        };
        let done = if simd {
            simd::chroma(first, second, urow, vrow)
        } else {
            0
        };
        for (((du, dv), a), b) in urow[done..]
            .iter_mut()
            .zip(vrow[done..].iter_mut())
            .zip(first[done * 4..].chunks_exact(4))
            .zip(second[done * 4..].chunks_exact(4))
        {
            *du = pair[(a[1] as u16 + b[1] as u16) as usize];
            *dv = pair[(a[3] as u16 + b[3] as u16) as usize];
        }
    }
}

/// The YUYV split's bulk in SSE2 (part of every x86_64 CPU) or NEON (every
/// aarch64 CPU): the same arithmetic as the range tables, many samples at a
/// time. Each returns how many samples it did; the caller does the rest.
mod simd {
    #[cfg(target_arch = "x86_64")]
    pub fn luma(yuyv: &[u8], y: &mut [u8]) -> usize {
        use std::arch::x86_64::*;
        let n = (y.len() / 16).min(yuyv.len() / 32);
        // SAFETY: SSE2 is baseline on x86_64; every load reads 16 bytes
        // inside `yuyv[32 i..32 i + 32]` and every store writes
        // `y[16 i..16 i + 16]`, both in bounds for i < n.
        unsafe {
            let low = _mm_set1_epi16(0x00FF);
            let sixteen = _mm_set1_epi16(16);
            // (y - 16) · 128 · 19077 / 2^16 / 2^5 = (y - 16) · 255 / 219, rounded.
            let k = _mm_set1_epi16(19077);
            for i in 0..n {
                let src = yuyv.as_ptr().add(32 * i);
                let a = _mm_loadu_si128(src as *const __m128i);
                let b = _mm_loadu_si128(src.add(16) as *const __m128i);
                let stretch = |x: __m128i| {
                    let t = _mm_slli_epi16(_mm_sub_epi16(_mm_and_si128(x, low), sixteen), 7);
                    _mm_srai_epi16(_mm_add_epi16(_mm_mulhi_epi16(t, k), sixteen), 5)
                };
                let out = _mm_packus_epi16(stretch(a), stretch(b));
                _mm_storeu_si128(y.as_mut_ptr().add(16 * i) as *mut __m128i, out);
            }
        }
        n * 16
    }

    #[cfg(target_arch = "x86_64")]
    pub fn chroma(first: &[u8], second: &[u8], u: &mut [u8], v: &mut [u8]) -> usize {
        use std::arch::x86_64::*;
        let n = (u.len() / 8).min(first.len() / 32).min(second.len() / 32);
        // SAFETY: SSE2 is baseline on x86_64; loads read 16 bytes inside
        // `first`/`second[32 i..32 i + 32]` and stores write 8 bytes at
        // `u`/`v[8 i..8 i + 8]`, all in bounds for i < n.
        unsafe {
            let k256 = _mm_set1_epi16(256);
            let k128 = _mm_set1_epi16(128);
            let sixteen = _mm_set1_epi16(16);
            // (s - 256) · 64 · 18651 / 2^16 / 2^5 = (s/2 - 128) · 255 / 224, rounded.
            let k = _mm_set1_epi16(18651);
            let low = _mm_set1_epi16(0x00FF);
            let zero = _mm_setzero_si128();
            for i in 0..n {
                let load = |p: &[u8], at: usize| {
                    _mm_srli_epi16(_mm_loadu_si128(p.as_ptr().add(at) as *const __m128i), 8)
                };
                // U V U V … of two rows, summed: 0..=510 in 16-bit lanes.
                let s0 = _mm_add_epi16(load(first, 32 * i), load(second, 32 * i));
                let s1 = _mm_add_epi16(load(first, 32 * i + 16), load(second, 32 * i + 16));
                let stretch = |s: __m128i| {
                    let t = _mm_slli_epi16(_mm_sub_epi16(s, k256), 6);
                    let r = _mm_srai_epi16(_mm_add_epi16(_mm_mulhi_epi16(t, k), sixteen), 5);
                    _mm_add_epi16(r, k128)
                };
                // U0 V0 U1 V1 … U7 V7, then U and V apart (8 bytes each).
                let uv = _mm_packus_epi16(stretch(s0), stretch(s1));
                let us = _mm_packus_epi16(_mm_and_si128(uv, low), zero);
                let vs = _mm_packus_epi16(_mm_srli_epi16(uv, 8), zero);
                _mm_storel_epi64(u.as_mut_ptr().add(8 * i) as *mut __m128i, us);
                _mm_storel_epi64(v.as_mut_ptr().add(8 * i) as *mut __m128i, vs);
            }
        }
        n * 8
    }

    /// `(a · b) >> 16` per signed 16-bit lane, as SSE2's `_mm_mulhi_epi16`.
    #[cfg(target_arch = "aarch64")]
    fn mulhi(
        a: std::arch::aarch64::int16x8_t,
        b: std::arch::aarch64::int16x8_t,
    ) -> std::arch::aarch64::int16x8_t {
        use std::arch::aarch64::*;
        // SAFETY: NEON is baseline on aarch64; no memory is touched.
        unsafe {
            let lo = vmull_s16(vget_low_s16(a), vget_low_s16(b));
            let hi = vmull_high_s16(a, b);
            vcombine_s16(vshrn_n_s32::<16>(lo), vshrn_n_s32::<16>(hi))
        }
    }

    /// The same arithmetic as the SSE2 version, in NEON (part of every
    /// aarch64 CPU: Raspberry Pi 4/5, Jetson): 16 luma samples at a time.
    #[cfg(target_arch = "aarch64")]
    pub fn luma(yuyv: &[u8], y: &mut [u8]) -> usize {
        use std::arch::aarch64::*;
        let n = (y.len() / 16).min(yuyv.len() / 32);
        // SAFETY: NEON is baseline on aarch64; every load reads
        // `yuyv[32 i..32 i + 32]` and every store writes `y[16 i..16 i + 16]`,
        // both in bounds for i < n.
        unsafe {
            let sixteen = vdupq_n_s16(16);
            let k = vdupq_n_s16(19077);
            let stretch = |x: uint8x8_t| {
                let t = vshlq_n_s16::<7>(vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(x)), sixteen));
                vqmovun_s16(vshrq_n_s16::<5>(vaddq_s16(mulhi(t, k), sixteen)))
            };
            for i in 0..n {
                // Lane 0: Y0 Y1 … (every even byte); lane 1: U V U V ….
                let pairs = vld2q_u8(yuyv.as_ptr().add(32 * i));
                let out = vcombine_u8(
                    stretch(vget_low_u8(pairs.0)),
                    stretch(vget_high_u8(pairs.0)),
                );
                vst1q_u8(y.as_mut_ptr().add(16 * i), out);
            }
        }
        n * 16
    }

    /// The same arithmetic as the SSE2 version, in NEON: 16 chroma pairs
    /// at a time.
    #[cfg(target_arch = "aarch64")]
    pub fn chroma(first: &[u8], second: &[u8], u: &mut [u8], v: &mut [u8]) -> usize {
        use std::arch::aarch64::*;
        let n = (u.len() / 16)
            .min(v.len() / 16)
            .min(first.len() / 64)
            .min(second.len() / 64);
        // SAFETY: NEON is baseline on aarch64; loads read
        // `first`/`second[64 i..64 i + 64]` and stores write
        // `u`/`v[16 i..16 i + 16]`, all in bounds for i < n.
        unsafe {
            let k256 = vdupq_n_s16(256);
            let k128 = vdupq_n_s16(128);
            let sixteen = vdupq_n_s16(16);
            let k = vdupq_n_s16(18651);
            // Two rows' samples summed (0..=510), stretched, narrowed.
            let stretch = |a: uint8x8_t, b: uint8x8_t| {
                let s = vreinterpretq_s16_u16(vaddl_u8(a, b));
                let t = vshlq_n_s16::<6>(vsubq_s16(s, k256));
                let r = vshrq_n_s16::<5>(vaddq_s16(mulhi(t, k), sixteen));
                vqmovun_s16(vaddq_s16(r, k128))
            };
            let both = |a: uint8x16_t, b: uint8x16_t| {
                vcombine_u8(
                    stretch(vget_low_u8(a), vget_low_u8(b)),
                    stretch(vget_high_u8(a), vget_high_u8(b)),
                )
            };
            for i in 0..n {
                // Lanes: Y0, U, Y1, V of 16 pixel pairs.
                let a = vld4q_u8(first.as_ptr().add(64 * i));
                let b = vld4q_u8(second.as_ptr().add(64 * i));
                vst1q_u8(u.as_mut_ptr().add(16 * i), both(a.1, b.1));
                vst1q_u8(v.as_mut_ptr().add(16 * i), both(a.3, b.3));
            }
        }
        n * 16
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub fn luma(_: &[u8], _: &mut [u8]) -> usize {
        0
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub fn chroma(_: &[u8], _: &[u8], _: &mut [u8], _: &mut [u8]) -> usize {
        0
    }
}

/// BT.601 limited-range luma (16–235) to full range (0–255), by table.
fn luma_full_range() -> [u8; 256] {
    std::array::from_fn(|v| {
        ((v as f64 - 16.0) * 255.0 / 219.0)
            .round()
            .clamp(0.0, 255.0) as u8
    })
}

/// A limited-range chroma sample (16–240) to full range.
fn chroma_full_range(v: f64) -> u8 {
    ((v - 128.0) * 255.0 / 224.0 + 128.0)
        .round()
        .clamp(0.0, 255.0) as u8
}

/// NV12 (Y plane, then interleaved U V at half width and height, BT.601
/// limited range, as a camera gives it) to full-range planar I420, ready
/// for an encode from YUV. `w` and `h` even; `nv12` at least `w * h * 3 / 2`
/// bytes.
pub fn nv12_to_i420(nv12: &[u8], w: usize, h: usize, out: &mut Vec<u8>) {
    let luma = luma_full_range();
    let chroma: [u8; 256] = std::array::from_fn(|v| chroma_full_range(v as f64));
    let (cw, ch) = (w / 2, h / 2);
    out.clear();
    out.resize(w * h + 2 * cw * ch, 0);
    let (y, planes) = out.split_at_mut(w * h);
    let (u, v) = planes.split_at_mut(cw * ch);
    for (d, s) in y.iter_mut().zip(&nv12[..w * h]) {
        *d = luma[*s as usize];
    }
    for ((du, dv), s) in u
        .iter_mut()
        .zip(v.iter_mut())
        .zip(nv12[w * h..w * h + 2 * cw * ch].chunks_exact(2))
    {
        *du = chroma[s[0] as usize];
        *dv = chroma[s[1] as usize];
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame as a YUYV camera lays it out (BT.601, limited range), made
    /// from a smooth RGB picture.
    pub(crate) fn yuyv_frame(w: usize, h: usize) -> Vec<u8> {
        let rgb = |x: usize, y: usize| {
            [
                (x * 255 / w) as f64,
                (y * 255 / h) as f64,
                (128.0 + 100.0 * ((x + y) as f64 / 20.0).sin()),
            ]
        };
        let yuv = |[r, g, b]: [f64; 3]| {
            (
                16.0 + 0.257 * r + 0.504 * g + 0.098 * b,
                128.0 - 0.148 * r - 0.291 * g + 0.439 * b,
                128.0 + 0.439 * r - 0.368 * g - 0.071 * b,
            )
        };
        let mut out = Vec::with_capacity(w * h * 2);
        for y in 0..h {
            for x in (0..w).step_by(2) {
                let (y0, u0, v0) = yuv(rgb(x, y));
                let (y1, u1, v1) = yuv(rgb(x + 1, y));
                out.extend([
                    y0.round() as u8,
                    ((u0 + u1) / 2.0).round() as u8,
                    y1.round() as u8,
                    ((v0 + v1) / 2.0).round() as u8,
                ]);
            }
        }
        out
    }

    #[test]
    fn the_simd_split_gives_the_tables_values_at_any_width() {
        for (w, h) in [(1920usize, 4usize), (100, 6), (34, 2), (2, 2)] {
            let yuyv: Vec<u8> = (0..w * h * 2).map(|i| (i * 7919 % 256) as u8).collect();
            for half in [true, false] {
                let (mut fast, mut plain) = (Vec::new(), Vec::new());
                split_yuyv(&yuyv, w, h, half, &mut fast, true);
                split_yuyv(&yuyv, w, h, half, &mut plain, false);
                assert_eq!(fast, plain, "{w}x{h}, 4:2:0 {half}");
            }
        }
    }

    #[test]
    fn yuyv_splits_into_planes_at_either_subsampling() {
        // 4x2, limited range in: Y 16 (black), 235 (white), 126 (mid);
        // chroma 16 / 240 / 128 at the extremes and the middle.
        let yuyv = [
            16, 16, 235, 240, 126, 128, 126, 128, //
            16, 240, 235, 16, 126, 128, 126, 128,
        ];
        let mut p = Vec::new();
        yuyv_to_planes(&yuyv, 4, 2, false, &mut p);
        // Full range out: Y 0, 255, 128; chroma 1 (0.5 rounded) / 255 / 128.
        assert_eq!(
            p,
            [0, 255, 128, 128, 0, 255, 128, 128, 1, 128, 255, 128, 255, 128, 1, 128]
        );
        yuyv_to_planes(&yuyv, 4, 2, true, &mut p);
        // Rows averaged: U (16+240)/2 = 128, V (240+16)/2 = 128.
        assert_eq!(p, [0, 255, 128, 128, 0, 255, 128, 128, 128, 128, 128, 128]);
    }

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

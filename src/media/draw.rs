//! Text and boxes drawn into frames: the test pattern's frame number and
//! clock, and the display's per-client labels. 8×8 glyphs from `font8x8`.

use font8x8::{UnicodeFonts, BASIC_FONTS};

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * 8 * scale
}

/// Draws `text` with its top-left corner at (x, y), each glyph pixel a
/// `scale`×`scale` square, calling `put(x, y)` for every lit pixel that falls
/// inside `width`×`height`.
pub fn text(
    width: usize,
    height: usize,
    x: usize,
    y: usize,
    scale: usize,
    text: &str,
    mut put: impl FnMut(usize, usize),
) {
    let scale = scale.max(1);
    for (i, ch) in text.chars().enumerate() {
        let glyph = BASIC_FONTS
            .get(ch)
            .or_else(|| BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        let gx = x + i * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = gx + col * scale + dx;
                        let py = y + row * scale + dy;
                        if px < width && py < height {
                            put(px, py);
                        }
                    }
                }
            }
        }
    }
}

/// Fills the rectangle (x, y, w, h), clipped to `width`×`height`.
pub fn fill(
    width: usize,
    height: usize,
    x: usize,
    y: usize,
    w: usize,
    h: usize,
    mut put: impl FnMut(usize, usize),
) {
    for py in y..(y + h).min(height) {
        for px in x..(x + w).min(width) {
            put(px, py);
        }
    }
}

/// The padding, width and height of a label's box.
fn label_box(label: &str, scale: usize) -> (usize, usize, usize) {
    let pad = scale;
    (pad, text_width(label, scale) + 2 * pad, 8 * scale + 2 * pad)
}

/// Draws `label` on a black box into a packed RGB8 buffer.
pub fn label_rgb(
    buf: &mut [u8],
    width: usize,
    height: usize,
    x: usize,
    y: usize,
    scale: usize,
    label: &str,
) {
    let (pad, w, h) = label_box(label, scale);
    fill(width, height, x, y, w, h, |px, py| {
        let i = (py * width + px) * 3;
        buf[i..i + 3].copy_from_slice(&[0, 0, 0]);
    });
    text(width, height, x + pad, y + pad, scale, label, |px, py| {
        let i = (py * width + px) * 3;
        buf[i..i + 3].copy_from_slice(&[255, 255, 255]);
    });
}

/// Draws `label` white on a black box into planar I420 (`width`×`height`,
/// both even): luma drawn, chroma under the box made neutral (grey).
pub fn label_i420(
    buf: &mut [u8],
    width: usize,
    height: usize,
    x: usize,
    y: usize,
    scale: usize,
    label: &str,
) {
    let (pad, w, h) = label_box(label, scale);
    let (luma, chroma) = buf.split_at_mut(width * height);
    fill(width, height, x, y, w, h, |px, py| {
        luma[py * width + px] = 0
    });
    text(width, height, x + pad, y + pad, scale, label, |px, py| {
        luma[py * width + px] = 255
    });
    let cw = width / 2;
    let plane = cw * (height / 2);
    fill(
        cw,
        height / 2,
        x / 2,
        y / 2,
        w.div_ceil(2) + 1,
        h.div_ceil(2) + 1,
        |px, py| {
            chroma[py * cw + px] = 128;
            chroma[plane + py * cw + px] = 128;
        },
    );
}

/// Draws `label` on a black box into a 0RGB `u32` buffer (minifb's format).
pub fn label_u32(
    buf: &mut [u32],
    width: usize,
    height: usize,
    x: usize,
    y: usize,
    scale: usize,
    label: &str,
) {
    let (pad, w, h) = label_box(label, scale);
    fill(width, height, x, y, w, h, |px, py| buf[py * width + px] = 0);
    text(width, height, x + pad, y + pad, scale, label, |px, py| {
        buf[py * width + px] = 0x00FF_FFFF
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lights_pixels_inside_its_box_only() {
        let (w, h) = (40, 12);
        let mut lit = vec![false; w * h];
        text(w, h, 2, 2, 1, "A1", |x, y| lit[y * w + x] = true);
        assert!(lit.iter().any(|&l| l));
        for y in 0..h {
            for x in 0..w {
                if lit[y * w + x] {
                    assert!((2..18).contains(&x) && (2..10).contains(&y), "({x},{y})");
                }
            }
        }
    }

    #[test]
    fn drawing_past_the_edge_is_clipped() {
        let mut buf = vec![0u32; 10 * 10];
        label_u32(&mut buf, 10, 10, 0, 0, 2, "AAAA");
        assert!(buf.contains(&0x00FF_FFFF));
    }
}

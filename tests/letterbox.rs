//! Model-sized input: a box drawn at known coordinates on a frame is found,
//! in the letterbox made of it, where the letterbox's geometry maps it
//! (within 1 px), and maps back onto the frame. Run on both decoders (CI
//! runs it in the pure-Rust build too).

use framelink::media::decode::PixelOrder;
use framelink::media::encode::{Encoder, ImageEncoder};
use framelink::media::letterbox::{Letterbox, Letterboxer};

/// A black picture with a white box from (x0, y0) to (x1, y1) (exclusive).
fn picture_with_box(w: u32, h: u32, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> Vec<u8> {
    let mut px = vec![0u8; (w * h * 3) as usize];
    for y in y0..y1 {
        for x in x0..x1 {
            let at = ((y * w + x) * 3) as usize;
            px[at..at + 3].copy_from_slice(&[255, 255, 255]);
        }
    }
    let mut jpeg = Vec::new();
    ImageEncoder::new(95).encode(&px, w, h, &mut jpeg).unwrap();
    jpeg
}

/// The bounding box (x0, y0, x1, y1 exclusive) of the bright pixels.
fn bright_box(out: &[u8], w: u32) -> (f64, f64, f64, f64) {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (i, px) in out.chunks_exact(3).enumerate() {
        if px.iter().map(|&c| c as u32).sum::<u32>() > 3 * 128 {
            let (x, y) = (i as u32 % w, i as u32 / w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
        }
    }
    assert!(x0 < x1, "no box found");
    (x0 as f64, y0 as f64, x1 as f64, y1 as f64)
}

fn check(source: (u32, u32), drawn: (u32, u32, u32, u32), size: (u32, u32)) {
    let jpeg = picture_with_box(source.0, source.1, drawn);
    let mut out = vec![0u8; (size.0 * size.1 * 3) as usize];
    let pad = [114, 114, 114];
    let lb = Letterboxer::default()
        .decode(&jpeg, size, pad, PixelOrder::Rgb, &mut out)
        .unwrap();
    assert_eq!(lb, Letterbox::fit(source, size));

    // Where the geometry says the box is, in letterbox pixels.
    let at = |x: u32, y: u32| {
        (
            x as f64 * lb.scale + lb.pad.0 as f64,
            y as f64 * lb.scale + lb.pad.1 as f64,
        )
    };
    let (ex0, ey0) = at(drawn.0, drawn.1);
    let (ex1, ey1) = at(drawn.2, drawn.3);
    let found = bright_box(&out, size.0);
    for (f, e) in [
        (found.0, ex0),
        (found.1, ey0),
        (found.2, ex1),
        (found.3, ey1),
    ] {
        assert!(
            (f - e).abs() <= 1.0,
            "{source:?} into {size:?}: box found at {found:?}, expected ({ex0:.1}, {ey0:.1}, {ex1:.1}, {ey1:.1})"
        );
    }
    // And it maps back onto the frame (1 letterbox pixel is 1/scale there).
    let (bx0, by0) = lb.to_source(found.0, found.1);
    let (bx1, by1) = lb.to_source(found.2, found.3);
    let tolerance = 1.0 / lb.scale;
    for (b, d) in [
        (bx0, drawn.0),
        (by0, drawn.1),
        (bx1, drawn.2),
        (by1, drawn.3),
    ] {
        assert!(
            (b - d as f64).abs() <= tolerance,
            "mapped back to ({bx0:.1}, {by0:.1}, {bx1:.1}, {by1:.1}), drawn at {drawn:?}"
        );
    }
    // The padding is the colour asked for, outside the picture.
    if lb.pad.1 > 0 {
        assert_eq!(&out[..3], &pad);
        assert_eq!(&out[out.len() - 3..], &pad);
    }
}

#[test]
fn a_box_on_a_1080p_frame_is_found_where_the_640_letterbox_maps_it() {
    check((1920, 1080), (600, 300, 1000, 720), (640, 640));
}

#[test]
fn a_box_on_a_small_frame_scaled_up_and_on_a_tall_frame() {
    check((320, 240), (40, 60, 200, 180), (640, 640));
    check((480, 640), (100, 120, 300, 500), (320, 320));
    check((640, 480), (0, 0, 320, 240), (416, 256));
}

//! JPEG structure checks that need no decoding: where a JPEG ends, whether a
//! payload is a whole JPEG, and its dimensions.
//!
//! A decoder is no help for these: `image`/zune-jpeg return Ok on a JPEG cut
//! to half its length, and cameras hand back buffers with padding after the
//! end-of-image marker.

/// Start-of-image marker.
pub const SOI: [u8; 2] = [0xFF, 0xD8];
/// End-of-image marker.
pub const EOI: [u8; 2] = [0xFF, 0xD9];

/// True when `b` starts with SOI and ends with EOI: the check the server
/// makes on every frame as it arrives.
pub fn is_whole(b: &[u8]) -> bool {
    b.len() >= 4 && b[..2] == SOI && b[b.len() - 2..] == EOI
}

/// A marker segment: the marker byte (after FF) and its payload range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    marker: u8,
    /// Offset of the FF of the marker.
    start: usize,
    /// Offset just past the segment (and past the entropy data after SOS).
    end: usize,
}

/// Walks the marker segments from SOI to EOI. Stops with `None` at anything
/// malformed or cut short.
fn segments(b: &[u8], mut visit: impl FnMut(Segment) -> bool) -> Option<usize> {
    if b.len() < 2 || b[..2] != SOI {
        return None;
    }
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of FF fill bytes.
        if *b.get(i)? != 0xFF {
            return None;
        }
        while *b.get(i + 1)? == 0xFF {
            i += 1;
        }
        let start = i;
        let marker = b[i + 1];
        i += 2;
        match marker {
            0xD9 => return Some(i),
            0xD0..=0xD7 | 0x01 => continue,
            0x00 => return None,
            _ => {}
        }
        let len = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as usize;
        if len < 2 {
            return None;
        }
        i = i.checked_add(len)?;
        if i > b.len() {
            return None;
        }
        if marker == 0xDA {
            // Entropy-coded data: runs to the next FF that is neither a
            // stuffed FF 00 nor a restart marker.
            loop {
                let at = i + b.get(i..)?.iter().position(|&x| x == 0xFF)?;
                match *b.get(at + 1)? {
                    0x00 | 0xD0..=0xD7 | 0xFF => i = at + 1,
                    _ => {
                        i = at;
                        break;
                    }
                }
            }
        }
        if !visit(Segment {
            marker,
            start,
            end: i,
        }) {
            return Some(i);
        }
    }
}

/// The length of the JPEG at the start of `b`, through its EOI marker: what a
/// camera buffer should be cut to. `None` when no whole JPEG is there.
pub fn whole_len(b: &[u8]) -> Option<usize> {
    segments(b, |_| true)
}

/// Width and height from the frame header (SOFn), without decoding.
pub fn dimensions(b: &[u8]) -> Option<(u16, u16)> {
    let mut dims = None;
    segments(b, |s| {
        let is_sof = matches!(s.marker, 0xC0..=0xCF) && !matches!(s.marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof && s.end >= s.start + 9 {
            let h = u16::from_be_bytes([b[s.start + 5], b[s.start + 6]]);
            let w = u16::from_be_bytes([b[s.start + 7], b[s.start + 8]]);
            dims = Some((w, h));
            return false;
        }
        true
    });
    dims.filter(|&(w, h)| w > 0 && h > 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real 16×8 JPEG made by the `image` encoder.
    pub(crate) fn sample_jpeg(w: u32, h: u32) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 13) as u8, 99]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode(&img, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn whole_len_finds_the_end_through_padding() {
        let j = sample_jpeg(16, 8);
        assert_eq!(whole_len(&j), Some(j.len()));
        let mut padded = j.clone();
        padded.extend_from_slice(&[0u8; 100]);
        padded.extend_from_slice(&j[..50]); // bytes of an older frame
        assert_eq!(whole_len(&padded), Some(j.len()));
        assert!(is_whole(&padded[..j.len()]));
        assert!(!is_whole(&padded));
    }

    #[test]
    fn cut_jpegs_have_no_whole_len() {
        let j = sample_jpeg(16, 8);
        for cut in [0, 1, 2, 3, 10, j.len() / 2, j.len() - 1] {
            assert_eq!(whole_len(&j[..cut]), None, "cut at {cut}");
        }
        assert!(!is_whole(&j[..j.len() / 2]));
    }

    #[test]
    fn dimensions_come_from_the_frame_header() {
        assert_eq!(dimensions(&sample_jpeg(16, 8)), Some((16, 8)));
        assert_eq!(dimensions(&sample_jpeg(33, 65)), Some((33, 65)));
        assert_eq!(dimensions(b"not a jpeg"), None);
    }
}

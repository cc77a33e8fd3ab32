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
                let at = i + memchr::memchr(0xFF, b.get(i..)?)?;
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

/// Calls `visit` with each marker segment's marker byte and bytes (the
/// marker included; after SOS, its entropy-coded data too), SOI and EOI
/// left out. `None` when the JPEG does not walk whole from SOI to EOI.
pub fn for_each_segment(b: &[u8], mut visit: impl FnMut(u8, &[u8])) -> Option<()> {
    segments(b, |s| {
        visit(s.marker, &b[s.start..s.end]);
        true
    })
    .map(|_| ())
}

/// The length of the JPEG at the start of `b`, through its EOI marker: what a
/// camera buffer should be cut to. `None` when no whole JPEG is there.
pub fn whole_len(b: &[u8]) -> Option<usize> {
    segments(b, |_| true)
}

/// Width and height from the frame header (SOFn), without decoding.
///
/// `None` unless the JPEG walks whole from SOI to EOI with exactly one frame
/// header giving both sizes (a height of 0, to be set later by a DNL marker,
/// is refused): a decoder then has one size to allocate for, and it is this
/// one.
pub fn dimensions(b: &[u8]) -> Option<(u16, u16)> {
    let mut dims = None;
    let mut sofs = 0;
    segments(b, |s| {
        let is_sof = matches!(s.marker, 0xC0..=0xCF) && !matches!(s.marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            sofs += 1;
            if s.end >= s.start + 9 {
                let h = u16::from_be_bytes([b[s.start + 5], b[s.start + 6]]);
                let w = u16::from_be_bytes([b[s.start + 7], b[s.start + 8]]);
                dims = Some((w, h));
            }
        }
        sofs <= 1
    })?;
    if sofs != 1 {
        return None;
    }
    dims.filter(|&(w, h)| w > 0 && h > 0)
}

/// The Huffman tables of the JPEG standard (ITU T.81 Annex K.3), as one DHT
/// segment: luminance DC and AC (ids 0), chrominance DC and AC (ids 1).
/// Motion-JPEG cameras that omit their DHT (as AVI MJPEG allows) mean these.
fn standard_dht() -> Vec<u8> {
    const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
    const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
    const AC_LUMA_VALUES: [u8; 162] = [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52,
        0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6,
        0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3,
        0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8,
        0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ];
    const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
    const AC_CHROMA_VALUES: [u8; 162] = [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33,
        0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18,
        0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4,
        0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA,
        0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7,
        0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ];
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &DC_LUMA_BITS, &DC_VALUES),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES),
        (0x01, &DC_CHROMA_BITS, &DC_VALUES),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES),
    ];
    let len: usize = 2 + tables.iter().map(|(_, _, v)| 17 + v.len()).sum::<usize>();
    let mut seg = vec![0xFF, 0xC4, (len >> 8) as u8, len as u8];
    for (class_id, bits, values) in tables {
        seg.push(class_id);
        seg.extend_from_slice(bits);
        seg.extend_from_slice(values);
    }
    seg
}

/// Makes a camera's MJPEG frame a JPEG every decoder accepts: cuts it at its
/// end-of-image marker, and inserts the standard Huffman tables before the
/// first scan when the frame has none (`image`/zune-jpeg then fail with `No
/// DC table for component Y`; libjpeg-turbo copes). Writes the result to
/// `out`; `None` when `frame` holds no whole JPEG.
pub fn normalize_mjpeg(frame: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let end = whole_len(frame)?;
    let frame = &frame[..end];
    let mut has_dht = false;
    let mut first_scan = None;
    segments(frame, |s| {
        match s.marker {
            0xC4 => has_dht = true,
            0xDA => {
                first_scan = Some(s.start);
                return false;
            }
            _ => {}
        }
        true
    });
    out.clear();
    match first_scan {
        Some(at) if !has_dht => {
            out.extend_from_slice(&frame[..at]);
            out.extend_from_slice(&standard_dht());
            out.extend_from_slice(&frame[at..]);
        }
        _ => out.extend_from_slice(frame),
    }
    Some(())
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

    /// `jpeg` with every DHT segment taken out, as some MJPEG cameras send it.
    fn without_dht(jpeg: &[u8]) -> Vec<u8> {
        let mut cut = Vec::new();
        let mut out = jpeg[..2].to_vec();
        segments(jpeg, |s| {
            if s.marker == 0xC4 {
                cut.push((s.start, s.end));
            }
            true
        });
        let mut at = 2;
        for (start, end) in cut {
            out.extend_from_slice(&jpeg[at..start]);
            at = end;
        }
        out.extend_from_slice(&jpeg[at..]);
        out
    }

    #[test]
    fn the_standard_huffman_tables_make_a_dht_less_mjpeg_frame_decode() {
        // The image encoder uses exactly the standard tables, so after taking
        // its DHT out and putting the standard one back the pixels must match.
        let original = sample_jpeg(64, 48);
        let stripped = without_dht(&original);
        assert!(
            stripped.len() < original.len() - 400,
            "the DHT segments were removed"
        );
        let err = image::load_from_memory_with_format(&stripped, image::ImageFormat::Jpeg)
            .unwrap_err()
            .to_string();
        assert!(
            err.to_lowercase().contains("table"),
            "a decoder needs the tables: {err}"
        );
        let mut padded = stripped.clone();
        padded.extend_from_slice(&[0u8; 256]); // driver buffer padding after EOI
        let mut fixed = Vec::new();
        normalize_mjpeg(&padded, &mut fixed).unwrap();
        assert!(is_whole(&fixed));
        let a = image::load_from_memory_with_format(&original, image::ImageFormat::Jpeg)
            .unwrap()
            .into_rgb8();
        let b = image::load_from_memory_with_format(&fixed, image::ImageFormat::Jpeg)
            .unwrap()
            .into_rgb8();
        assert_eq!(a, b);
    }

    #[test]
    fn a_frame_with_tables_is_only_cut_at_its_end() {
        let original = sample_jpeg(16, 8);
        let mut padded = original.clone();
        padded.extend_from_slice(&[0xAB; 32]);
        let mut out = Vec::new();
        normalize_mjpeg(&padded, &mut out).unwrap();
        assert_eq!(out, original);
        assert!(normalize_mjpeg(&original[..original.len() / 2], &mut out).is_none());
    }

    #[test]
    fn dimensions_come_from_the_frame_header() {
        assert_eq!(dimensions(&sample_jpeg(16, 8)), Some((16, 8)));
        assert_eq!(dimensions(&sample_jpeg(33, 65)), Some((33, 65)));
        assert_eq!(dimensions(b"not a jpeg"), None);
    }

    #[test]
    fn a_second_frame_header_or_a_cut_jpeg_has_no_dimensions() {
        let j = sample_jpeg(16, 8);
        assert_eq!(dimensions(&j[..j.len() - 2]), None, "no EOI");
        // Repeat the SOF segment: two frame headers, two sizes to believe.
        let sof = j
            .windows(2)
            .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC2))
            .unwrap();
        let len = u16::from_be_bytes([j[sof + 2], j[sof + 3]]) as usize + 2;
        let mut twice = j[..sof + len].to_vec();
        twice.extend_from_slice(&j[sof..]);
        assert_eq!(dimensions(&twice), None);
    }
}

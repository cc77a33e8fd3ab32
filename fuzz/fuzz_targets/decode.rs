//! Everything framelink decodes from the network, fed arbitrary bytes: the
//! preface, a stream of messages, the JPEG checks run on every frame, the
//! server's frame check, and the decoder behind the window and processors.
//! It must never panic (a panic inside the third-party JPEG decoder must be
//! contained as an error), never allocate past libFuzzer's memory limit (a
//! JPEG header claiming a huge size), and whatever decodes must encode
//! back to itself.
#![no_main]

use framelink::wire::{self, Limits};
use libfuzzer_sys::fuzz_target;

/// The pure-Rust JPEG decoder (zune-jpeg) panics on some crafted inputs
/// (seeds `jpeg-dc-overflow`, `jpeg-idct-panic`): a bug of theirs that
/// `decode_rgb` contains, turning it into that frame's error (checked below:
/// it returns). A panic there is let through to be caught; a panic anywhere
/// else still aborts the run as a finding.
fn let_decoder_panics_through() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info
                .location()
                .is_some_and(framelink::logging::in_jpeg_decoder)
            {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_decoder_panics_through();
    let _ = wire::check_preface(data);
    // Small limits, so length checks are exercised, and the defaults.
    for limits in [
        Limits {
            max_frame_bytes: 64,
            max_result_bytes: 64,
        },
        Limits::default(),
    ] {
        let mut rest = data;
        while !rest.is_empty() {
            match wire::decode(rest, &limits) {
                Ok((message, used)) => {
                    assert!(used > 0 && used <= rest.len());
                    let mut again = Vec::new();
                    message.encode(&mut again);
                    let (back, n) = wire::decode(&again, &limits).expect("re-encoded message decodes");
                    assert_eq!(n, again.len());
                    assert_eq!(back, message);
                    rest = &rest[used..];
                }
                Err(wire::Error::Incomplete) => {
                    // Incomplete means more bytes could complete it: the
                    // length it needs is known and within the limits.
                    if let Ok(Some(n)) = wire::needed(rest, &limits) {
                        assert!(n > rest.len());
                    }
                    break;
                }
                Err(_) => break,
            }
        }
    }
    let _ = framelink::media::jpeg::is_whole(data);
    let _ = framelink::media::jpeg::dimensions(data);
    let _ = framelink::media::jpeg::whole_len(data);
    let mut out = Vec::new();
    let _ = framelink::media::jpeg::normalize_mjpeg(data, &mut out);
    // The server decodes only what passes its frame check, sized as the
    // FRAME says; the decoder guards itself as well.
    if let Some((w, h)) = framelink::media::jpeg::dimensions(data) {
        let header = wire::FrameHeader {
            frame_id: 0,
            encoding: wire::Encoding::Jpeg,
            width: w,
            height: h,
            capture_to_send_us: 0,
            ticket_held_us: 0,
            payload_len: data.len() as u32,
        };
        let pixels = w as u64 * h as u64;
        let passed = framelink::gate::check_frame(&header, data, 1 << 20).is_none();
        assert!(!passed || pixels <= 1 << 20, "the frame check bounds the size");
        if passed {
            // Small enough to decode at speed: decodes to its header's size or fails.
            if let Ok(img) = framelink::media::decode::decode_rgb(data) {
                assert_eq!(img.dimensions(), (w as u32, h as u32));
            }
        } else if pixels > framelink::media::decode::MAX_DECODE_PIXELS {
            // Refused before anything is allocated for the pixels.
            assert!(framelink::media::decode::decode_rgb(data).is_err());
        }
    }
});

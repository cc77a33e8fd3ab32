//! Everything framelink decodes from the network, fed arbitrary bytes: the
//! preface, a stream of messages, and the JPEG checks run on every frame.
//! It must never panic, and whatever decodes must encode back to itself.
#![no_main]

use framelink::protocol::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = protocol::check_preface(data);
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
            match protocol::decode(rest, &limits) {
                Ok((message, used)) => {
                    assert!(used > 0 && used <= rest.len());
                    let mut again = Vec::new();
                    message.encode(&mut again);
                    let (back, n) = protocol::decode(&again, &limits).expect("re-encoded message decodes");
                    assert_eq!(n, again.len());
                    assert_eq!(back, message);
                    rest = &rest[used..];
                }
                Err(protocol::Error::Incomplete) => {
                    // Incomplete means more bytes could complete it: the
                    // length it needs is known and within the limits.
                    if let Ok(Some(n)) = protocol::needed(rest, &limits) {
                        assert!(n > rest.len());
                    }
                    break;
                }
                Err(_) => break,
            }
        }
    }
    let _ = framelink::jpeg::is_whole(data);
    let _ = framelink::jpeg::dimensions(data);
    let _ = framelink::jpeg::whole_len(data);
    let mut out = Vec::new();
    let _ = framelink::jpeg::normalize_mjpeg(data, &mut out);
});

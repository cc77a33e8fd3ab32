//! Property tests of the decoder (run in CI; the fuzzer in fuzz/ goes
//! further): every message survives a round trip, any bytes are refused
//! without panicking, and a stream cut into any pieces reads back the same
//! through the real connection reader.

use bytes::Bytes;
use framelink::shutdown::Shutdown;
use framelink::wire::connection::Reader;
use framelink::wire::*;
use proptest::prelude::*;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._é-]{1,20}"
}

fn proof() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), prop::collection::vec(any::<u8>(), 32)]
}

fn ticket() -> impl Strategy<Value = Ticket> {
    (any::<u32>(), any::<u64>()).prop_map(|(id, issued_us)| Ticket { id, issued_us })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|nonce| Message::Challenge(Challenge { nonce })),
        (any::<u32>(), name(), any::<[u8; 32]>(), proof()).prop_map(|(c, n, nonce, p)| {
            Message::Hello(Hello {
                capabilities: c,
                name: n,
                client_nonce: nonce,
                proof: p,
            })
        }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            1..=u16::MAX,
            proof()
        )
            .prop_map(|(c, a, m, w, p)| {
                Message::Welcome(Welcome {
                    capabilities: c,
                    max_age_us: a,
                    max_frame_bytes: m,
                    window: w,
                    proof: p,
                })
            }),
        ticket().prop_map(Message::Ticket),
        (
            any::<u64>(),
            any::<u8>(),
            any::<(u16, u16, u32, u32)>(),
            prop::collection::vec(any::<u8>(), 0..300),
            ticket()
        )
            .prop_map(|(id, enc, (w, h, c, held), payload, t)| {
                Message::Frame(Frame {
                    header: FrameHeader {
                        frame_id: id,
                        encoding: Encoding::from_code(enc),
                        width: w,
                        height: h,
                        capture_to_send_us: c,
                        ticket_held_us: held,
                        payload_len: payload.len() as u32,
                    },
                    payload: Bytes::from(payload),
                    ticket: t,
                })
            }),
        (
            any::<(u64, u32, u32, u32)>(),
            0u8..3,
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|((f, t, a, tr), o, r, result)| {
                Message::Verdict(Verdict {
                    frame_id: f,
                    ticket_id: t,
                    outcome: Outcome::from_code(o).unwrap(),
                    reason: Reason::from_code(r),
                    age_us: a,
                    transit_us: tr,
                    result_kind: 0,
                    result: Bytes::from(result),
                })
            }),
        (
            any::<(u64, u8, u32, u32, u8)>(),
            prop::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|((f, s, w, p, k), result)| {
                Message::Result(ProcessResult {
                    frame_id: f,
                    status: ResultStatus::from_code(s),
                    wait_us: w,
                    processing_us: p,
                    kind: ResultKind::from_code(k),
                    result: Bytes::from(result),
                })
            }),
        (any::<u16>(), "[ -~]{0,60}").prop_map(|(c, t)| Message::Goodbye(Goodbye {
            code: GoodbyeCode::from_code(c),
            text: t,
        })),
        (any::<(bool, u32)>(), "[ -~]{0,60}").prop_map(|((up, f), t)| {
            Message::Source(SourceReport {
                up,
                for_us: f,
                text: t,
            })
        }),
    ]
}

fn encoded(m: &Message) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode(&mut v);
    v
}

proptest! {
    #[test]
    fn every_message_round_trips(m in message()) {
        let bytes = encoded(&m);
        let (back, used) = decode(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(back, m);
        // And every strict prefix is merely incomplete.
        let cut = bytes.len() / 2;
        prop_assert_eq!(decode(&bytes[..cut], &Limits::default()).unwrap_err(), Error::Incomplete);
    }

    #[test]
    fn any_bytes_are_refused_or_decoded_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = Limits { max_frame_bytes: 100, max_result_bytes: 100 };
        match decode(&bytes, &limits) {
            Ok((_, used)) => prop_assert!(used <= bytes.len()),
            Err(Error::Incomplete) => {
                // Only ever waits for a body within the limits.
                if let Ok(Some(n)) = needed(&bytes, &limits) {
                    prop_assert!(n <= 5 + 100 + 64 + 37);
                }
            }
            Err(_) => {}
        }
        let _ = check_preface(&bytes);
    }

    #[test]
    fn a_valid_message_mutated_is_refused_or_decodes_to_itself_again(
        m in message(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
        how in 0u8..3,
    ) {
        // Start from a well-formed message, so every branch of the decoder
        // runs (whole, incomplete, malformed), then break it one way.
        let mut bytes = encoded(&m);
        match how {
            0 => { let i = at.index(bytes.len()); bytes[i] = byte; }
            1 => bytes.truncate(cut.index(bytes.len())),
            _ => {
                // A body length off by a little, the body unchanged.
                let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
                let off = len.wrapping_add(byte as u32 % 5).wrapping_sub(2);
                bytes[1..5].copy_from_slice(&off.to_be_bytes());
            }
        }
        let limits = Limits::default();
        match decode(&bytes, &limits) {
            Ok((back, used)) => {
                prop_assert!(used <= bytes.len());
                let again = encoded(&back);
                let (twice, n) = decode(&again, &limits).unwrap();
                prop_assert_eq!(n, again.len());
                prop_assert_eq!(twice, back);
            }
            Err(Error::Incomplete) => {
                let n = needed(&bytes, &limits).unwrap();
                if let Some(n) = n {
                    prop_assert!(n > bytes.len());
                    prop_assert!(n <= 5 + 37 + limits.max_frame_bytes as usize);
                }
            }
            Err(_) => {}
        }
    }

    #[test]
    fn a_length_over_the_limit_is_refused_from_the_envelope_alone(kind in 1u8..=8, len in 1_000_000u32..) {
        let limits = Limits { max_frame_bytes: 1000, max_result_bytes: 1000 };
        let mut env = vec![kind];
        env.extend_from_slice(&len.to_be_bytes());
        let refused = matches!(check(&env, &limits), Err(Error::TooLarge { .. }));
        prop_assert!(refused);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_stream_cut_anywhere_reads_back_the_same(
        msgs in prop::collection::vec(message(), 1..8),
        cuts in prop::collection::vec(1usize..64, 1..40),
    ) {
        let mut bytes = preface().to_vec();
        for m in &msgs {
            m.encode(&mut bytes);
        }
        let (a, b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        a.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let writer = std::thread::spawn(move || {
            let mut a = a;
            let mut rest = &bytes[..];
            for c in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = (*c).min(rest.len());
                a.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
            }
        });
        let mut reader = Reader::new(b, Limits::default());
        let stop = Shutdown::new();
        let wait = Duration::from_secs(5);
        prop_assert_eq!(reader.read_preface(Instant::now() + wait, &stop).unwrap(), VERSION);
        for m in &msgs {
            let got = reader.read_message(Some(wait), wait, &stop).unwrap();
            prop_assert_eq!(got.as_ref(), Some(m));
        }
        writer.join().unwrap();
    }
}

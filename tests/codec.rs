//! The codec message by message: every message round-trips, every cut is
//! incomplete rather than malformed, every length is capped from the
//! envelope alone, and broken fields are named.

use byteorder::{BigEndian, ByteOrder};
use bytes::Bytes;
use framelink::wire::*;

fn samples() -> Vec<Message> {
    let payload = Bytes::from_static(&[0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9]);
    vec![
        Message::Challenge(Challenge { nonce: [3; 32] }),
        Message::Hello(Hello {
            capabilities: 0,
            name: "cam-01".into(),
            client_nonce: [1; 32],
            proof: Vec::new(),
        }),
        Message::Hello(Hello {
            capabilities: 7,
            name: "é".repeat(32),
            client_nonce: [2; 32],
            proof: vec![9; 32],
        }),
        Message::Welcome(Welcome {
            capabilities: 0,
            max_age_us: 80_000,
            max_frame_bytes: 1 << 24,
            window: 2,
            proof: Vec::new(),
        }),
        Message::Welcome(Welcome {
            capabilities: 1,
            max_age_us: 1,
            max_frame_bytes: 1,
            window: 64,
            proof: vec![5; 32],
        }),
        Message::Ticket(Ticket {
            id: 9,
            issued_us: 123_456_789,
        }),
        Message::Frame(Frame {
            header: FrameHeader {
                frame_id: 42,
                encoding: Encoding::Jpeg,
                width: 640,
                height: 480,
                capture_to_send_us: 1500,
                ticket_held_us: 20,
                payload_len: payload.len() as u32,
            },
            payload,
            ticket: Ticket {
                id: 9,
                issued_us: 123_456_789,
            },
        }),
        Message::Frame(Frame {
            header: FrameHeader {
                frame_id: 0,
                encoding: Encoding::Other(9),
                width: 1,
                height: 1,
                capture_to_send_us: 0,
                ticket_held_us: 0,
                payload_len: 0,
            },
            payload: Bytes::new(),
            ticket: Ticket {
                id: 0,
                issued_us: 0,
            },
        }),
        Message::Verdict(Verdict {
            frame_id: 42,
            ticket_id: 9,
            outcome: Outcome::DroppedStale,
            reason: Reason::None,
            age_us: 91_000,
            transit_us: 300,
            result_kind: 0,
            result: Bytes::new(),
        }),
        Message::Verdict(Verdict {
            frame_id: 43,
            ticket_id: 10,
            outcome: Outcome::Rejected,
            reason: Reason::NotJpeg,
            age_us: 1,
            transit_us: 1,
            result_kind: 1,
            result: Bytes::from_static(b"{\"n\":1}"),
        }),
        Message::Goodbye(Goodbye {
            code: GoodbyeCode::ServerFull,
            text: "64 clients already".into(),
        }),
        Message::Result(ProcessResult {
            frame_id: 42,
            status: ResultStatus::Processed,
            wait_us: 150,
            processing_us: 2_300,
            kind: ResultKind::Json,
            result: Bytes::from_static(b"{\"motion\":0.25}"),
        }),
        Message::Result(ProcessResult {
            frame_id: 44,
            status: ResultStatus::Skipped,
            wait_us: 0,
            processing_us: 0,
            kind: ResultKind::None,
            result: Bytes::new(),
        }),
        Message::Source(SourceReport {
            up: false,
            for_us: 5_000_000,
            text: "camera failed: No such device (os error 19)".into(),
        }),
        Message::Source(SourceReport {
            up: true,
            for_us: 12_300_000,
            text: String::new(),
        }),
    ]
}

fn encoded(m: &Message) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode(&mut v);
    v
}

#[test]
fn every_message_round_trips() {
    for m in samples() {
        let bytes = encoded(&m);
        let (back, used) = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(used, bytes.len(), "{}", m.name());
        assert_eq!(back, m);
    }
}

#[test]
fn every_truncation_is_incomplete_not_malformed() {
    for m in samples() {
        let bytes = encoded(&m);
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut], &Limits::default()).unwrap_err(),
                Error::Incomplete,
                "{} cut at {cut}",
                m.name()
            );
        }
    }
}

#[test]
fn two_messages_back_to_back_decode_one_at_a_time() {
    let a = encoded(&Message::Ticket(Ticket {
        id: 1,
        issued_us: 2,
    }));
    let b = encoded(&Message::Goodbye(Goodbye {
        code: GoodbyeCode::ShuttingDown,
        text: String::new(),
    }));
    let mut both = a.clone();
    both.extend_from_slice(&b);
    let (_, n) = decode(&both, &Limits::default()).unwrap();
    assert_eq!(n, a.len());
    let (m, _) = decode(&both[n..], &Limits::default()).unwrap();
    assert!(matches!(m, Message::Goodbye(_)));
}

#[test]
fn oversized_frame_is_refused_from_its_envelope_alone() {
    let limits = Limits {
        max_frame_bytes: 1000,
        max_result_bytes: 0,
    };
    // Only the 5-byte envelope: a FRAME claiming 4 GiB.
    let env = [kind::FRAME, 0xFF, 0xFF, 0xFF, 0xFF];
    match check(&env, &limits) {
        Err(Error::TooLarge {
            what: "FRAME payload",
            max: 1000,
            ..
        }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let mut v = Vec::new();
    let payload = Bytes::from(vec![0u8; 1001]);
    let h = FrameHeader {
        frame_id: 1,
        encoding: Encoding::Jpeg,
        width: 1,
        height: 1,
        capture_to_send_us: 0,
        ticket_held_us: 0,
        payload_len: 1001,
    };
    Message::Frame(Frame {
        header: h,
        payload,
        ticket: Ticket {
            id: 0,
            issued_us: 0,
        },
    })
    .encode(&mut v);
    assert!(matches!(
        check(&v, &limits),
        Err(Error::TooLarge { len: 1001, .. })
    ));
}

#[test]
fn frame_with_inconsistent_payload_len_is_malformed() {
    let m = &samples()[6];
    let mut bytes = encoded(m);
    // payload_len lives at envelope(5) + 21..25; claim one byte more.
    let at = ENVELOPE_LEN + 21;
    let n = BigEndian::read_u32(&bytes[at..at + 4]) + 1;
    BigEndian::write_u32(&mut bytes[at..at + 4], n);
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(Error::Malformed { kind: "FRAME", .. })
    ));
}

#[test]
fn unknown_kind_and_bad_fields_are_malformed() {
    assert_eq!(
        check(&[0x7F], &Limits::default()),
        Err(Error::UnknownKind(0x7F))
    );
    // HELLO with an empty name.
    let body = [0, 0, 0, 0, 0];
    let mut msg = vec![kind::HELLO, 0, 0, 0, 5];
    msg.extend_from_slice(&body);
    assert!(matches!(
        decode(&msg, &Limits::default()),
        Err(Error::Malformed { kind: "HELLO", .. })
    ));
    // VERDICT with outcome 9.
    let mut v = encoded(&samples()[8]);
    v[ENVELOPE_LEN + 12] = 9;
    assert!(matches!(
        decode(&v, &Limits::default()),
        Err(Error::Malformed {
            kind: "VERDICT",
            ..
        })
    ));
    // WELCOME with window 0.
    let mut w = encoded(&samples()[3]);
    let at = ENVELOPE_LEN + 12;
    w[at] = 0;
    w[at + 1] = 0;
    assert!(matches!(
        decode(&w, &Limits::default()),
        Err(Error::Malformed {
            kind: "WELCOME",
            ..
        })
    ));
}

#[test]
fn preface_checks_magic_before_version() {
    assert_eq!(check_preface(&preface()), Ok(VERSION));
    assert_eq!(check_preface(b"FL"), Err(Error::Incomplete));
    assert_eq!(check_preface(b"FLNK\x00\x02"), Ok(2));
    let http = check_preface(b"GET / HTTP/1.1\r\n")
        .unwrap_err()
        .to_string();
    assert!(http.contains("HTTP"), "{http}");
    let junk = check_preface(&[0xde, 0xad, 0xbe, 0xef, 0, 0])
        .unwrap_err()
        .to_string();
    assert!(junk.contains("de ad be ef"), "{junk}");
}

#[test]
fn long_names_are_cut_on_a_char_boundary() {
    let m = Message::Hello(Hello {
        capabilities: 0,
        name: "ü".repeat(40),
        client_nonce: [0; 32],
        proof: Vec::new(),
    });
    let (back, _) = decode(&encoded(&m), &Limits::default()).unwrap();
    match back {
        Message::Hello(h) => assert_eq!(h.name, "ü".repeat(32)),
        _ => unreachable!(),
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz: many pseudo-random messages.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let (mut parsed, mut incomplete) = (0, 0);
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..2000 {
        let len = (next() % 64) as usize;
        let mut buf = Vec::with_capacity(len);
        for _ in 0..len {
            buf.push(next() as u8);
        }
        if let Some(b) = buf.first_mut() {
            *b = 1 + (*b % 8); // a valid kind, so the body parsers run
        }
        // A body length that matches the bytes (most of the time), so
        // the parsers run on random bodies instead of waiting for more.
        if len >= ENVELOPE_LEN && next() % 8 != 0 {
            BigEndian::write_u32(&mut buf[1..5], (len - ENVELOPE_LEN) as u32);
        }
        match decode(&buf, &Limits::default()) {
            Ok((m, used)) => {
                parsed += 1;
                let mut again = Vec::new();
                m.encode(&mut again);
                assert_eq!(
                    decode(&again, &Limits::default()).unwrap(),
                    (m, again.len())
                );
                assert!(used <= buf.len());
            }
            Err(Error::Incomplete) => incomplete += 1,
            Err(_) => {}
        }
        let _ = check_preface(&buf);
    }
    // All three branches ran (tests/properties.rs mutates valid messages
    // for many more whole ones).
    assert!(
        parsed > 0 && incomplete > 0 && parsed + incomplete < 2000,
        "{parsed} parsed, {incomplete} incomplete"
    );
}

#[test]
fn a_goodbye_of_invalid_utf8_decodes_to_what_encodes_back_the_same() {
    // 400 bytes that are not UTF-8: each becomes U+FFFD (3 bytes), over the cap.
    let mut body = vec![0, 4, 0x01, 0x90];
    body.extend(std::iter::repeat_n(0xFFu8, 400));
    let mut msg = vec![kind::GOODBYE];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    let (m, _) = decode(&msg, &Limits::default()).unwrap();
    let mut again = Vec::new();
    m.encode(&mut again);
    assert_eq!(decode(&again, &Limits::default()).unwrap().0, m);
}

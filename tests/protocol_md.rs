//! The worked example in protocol.md, byte for byte: these tests keep the
//! document and the code equal, step by step.

use bytes::Bytes;
use framelink::wire::*;
/// (direction, description, bytes) of each step of the example exchange.
fn steps() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let enc = |msgs: &[Message], pre: bool| {
        let mut v = Vec::new();
        if pre {
            v.extend_from_slice(&preface());
        }
        for m in msgs {
            m.encode(&mut v);
        }
        v
    };
    let payload = Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]);
    let token = framelink::wire::auth::Token::new("s3cret").unwrap();
    let server_nonce: [u8; 32] = std::array::from_fn(|i| i as u8);
    let client_nonce: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);
    vec![
        ("C->S", "preface", enc(&[], true)),
        (
            "S->C",
            "preface, CHALLENGE",
            enc(
                &[Message::Challenge(Challenge {
                    nonce: server_nonce,
                })],
                true,
            ),
        ),
        (
            "C->S",
            "HELLO",
            enc(
                &[Message::Hello(Hello {
                    capabilities: CAP_RESULTS,
                    name: "cam-01".into(),
                    client_nonce,
                    proof: token.hello_proof(&server_nonce, &client_nonce),
                })],
                false,
            ),
        ),
        (
            "S->C",
            "WELCOME, TICKET",
            enc(
                &[
                    Message::Welcome(Welcome {
                        capabilities: CAP_RESULTS,
                        max_age_us: 80_000,
                        max_frame_bytes: 16 * 1024 * 1024,
                        window: 1,
                        proof: token.welcome_proof(&client_nonce, &server_nonce),
                    }),
                    Message::Ticket(Ticket {
                        id: 0,
                        issued_us: 1_500_000,
                    }),
                ],
                false,
            ),
        ),
        (
            "C->S",
            "FRAME",
            enc(
                &[Message::Frame(Frame {
                    header: FrameHeader {
                        frame_id: 7,
                        encoding: Encoding::Jpeg,
                        width: 640,
                        height: 480,
                        capture_to_send_us: 4_200,
                        ticket_held_us: 31_000,
                        payload_len: 4,
                    },
                    payload,
                    ticket: Ticket {
                        id: 0,
                        issued_us: 1_500_000,
                    },
                })],
                false,
            ),
        ),
        (
            "S->C",
            "VERDICT, TICKET",
            enc(
                &[
                    Message::Verdict(Verdict {
                        frame_id: 7,
                        ticket_id: 0,
                        outcome: Outcome::Accepted,
                        reason: Reason::None,
                        age_us: 4_650,
                        transit_us: 450,
                        result_kind: 0,
                        result: Bytes::new(),
                    }),
                    Message::Ticket(Ticket {
                        id: 1,
                        issued_us: 1_531_460,
                    }),
                ],
                false,
            ),
        ),
        (
            "S->C",
            "RESULT",
            enc(
                &[Message::Result(ProcessResult {
                    frame_id: 7,
                    status: ResultStatus::Processed,
                    wait_us: 120,
                    processing_us: 850,
                    kind: ResultKind::Json,
                    result: Bytes::from_static(b"{\"count\":1}"),
                })],
                false,
            ),
        ),
        (
            "C->S",
            "GOODBYE",
            enc(
                &[Message::Goodbye(Goodbye {
                    code: GoodbyeCode::ShuttingDown,
                    text: "bye".into(),
                })],
                false,
            ),
        ),
    ]
}

fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The dump as protocol.md shows it.
pub(crate) fn dump() -> String {
    steps()
        .iter()
        .map(|(dir, what, bytes)| {
            format!(
                "# {dir}: {what} ({} bytes)\n{}\n",
                bytes.len(),
                hex_lines(bytes)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn protocol_md_shows_exactly_these_bytes() {
    let doc = include_str!("../protocol.md");
    let start = doc
        .find("<!-- hexdump:start -->")
        .expect("protocol.md has the hexdump markers");
    let end = doc.find("<!-- hexdump:end -->").unwrap();
    let block = &doc[start..end];
    let block = block
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    assert_eq!(
        block.trim(),
        dump().trim(),
        "protocol.md's hex dump is out of date; it should read:\n{}",
        dump()
    );
}

#[test]
fn the_example_decodes() {
    for (_, _, bytes) in steps() {
        let mut rest = &bytes[..];
        if rest.starts_with(&MAGIC) {
            assert_eq!(check_preface(rest), Ok(VERSION));
            rest = &rest[PREFACE_LEN..];
        }
        while !rest.is_empty() {
            let (_, n) = decode(rest, &Limits::default()).unwrap();
            rest = &rest[n..];
        }
    }
}

//! Wrong peers and broken input get a clear GOODBYE for their own connection,
//! while a good client on the same server keeps streaming.

mod support;

use framelink::server::ServerConfig;
use framelink::wire::{
    self, kind, Encoding, FrameHeader, GoodbyeCode, Message, Outcome, Reason, Ticket,
};
use std::time::{Duration, Instant};
use support::{good_client_goes_on, server_config, RawPeer, TestClient, TestServer};

/// A server with a good client already streaming.
fn with_good_client(config: ServerConfig) -> (TestServer, TestClient) {
    support::with_good_client(TestServer::start(config))
}

fn expect_goodbye(m: Option<Message>, code: GoodbyeCode) -> String {
    match m {
        Some(Message::Goodbye(g)) if g.code == code => g.text,
        other => panic!("expected GOODBYE {code:?}, got {other:?}"),
    }
}

/// A raw peer past the handshake, holding the ticket it was given.
fn handshaken(server: &TestServer, name: &str) -> (RawPeer, Ticket) {
    let mut peer = RawPeer::connect(server.addr);
    let window = match peer.hello(name, None) {
        Some(Message::Welcome(w)) => w.window,
        other => panic!("expected WELCOME, got {other:?}"),
    };
    // The server hands out `window` tickets at once; answer the first.
    let tickets: Vec<Ticket> = (0..window)
        .map(|_| match peer.read() {
            Some(Message::Ticket(t)) => t,
            other => panic!("expected TICKET, got {other:?}"),
        })
        .collect();
    (peer, tickets[0])
}

/// A FRAME header with a fresh frame id (ids must increase on a connection).
fn header(payload_len: usize) -> FrameHeader {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    FrameHeader {
        frame_id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        encoding: Encoding::Jpeg,
        width: 16,
        height: 8,
        capture_to_send_us: 0,
        ticket_held_us: 0,
        payload_len: payload_len as u32,
    }
}

#[test]
fn an_http_request_is_told_it_is_not_framelink() {
    let (server, good) = with_good_client(server_config());
    let mut peer = RawPeer::connect(server.addr);
    peer.write_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let text = expect_goodbye(peer.read_reply(), GoodbyeCode::ProtocolError);
    assert!(text.contains("HTTP"), "{text}");
    assert_eq!(peer.read(), None, "then the server closes");
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn random_bytes_are_refused() {
    let (server, good) = with_good_client(server_config());
    let mut peer = RawPeer::connect(server.addr);
    peer.write_raw(&[0x00, 0x13, 0x37, 0xC0, 0xFF, 0xEE, 0x42, 0x99]);
    let text = expect_goodbye(peer.read_reply(), GoodbyeCode::ProtocolError);
    assert!(text.contains("magic"), "{text}");
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn another_protocol_version_is_refused_with_ours_named() {
    let (server, good) = with_good_client(server_config());
    let mut peer = RawPeer::connect(server.addr);
    peer.write_raw(b"FLNK\x00\x63");
    let text = expect_goodbye(peer.read_reply(), GoodbyeCode::UnsupportedVersion);
    assert!(
        text.contains(&format!("version {}", wire::VERSION)) && text.contains("version 99"),
        "{text}"
    );
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_4_gib_length_is_refused_before_anything_is_allocated() {
    let (server, good) = with_good_client(server_config());
    let (mut peer, _ticket) = handshaken(&server, "liar");
    peer.write_raw(&[kind::FRAME, 0xFF, 0xFF, 0xFF, 0xFF]);
    let text = expect_goodbye(peer.read(), GoodbyeCode::TooLarge);
    assert!(text.contains("16777216"), "names the limit: {text}");
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_frame_over_max_frame_bytes_is_refused() {
    let (server, good) = with_good_client(ServerConfig {
        max_frame_bytes: 200_000,
        ..server_config()
    });
    let (mut peer, ticket) = handshaken(&server, "big");
    let payload = vec![0u8; 200_001];
    peer.writer
        .send_frame(&header(payload.len()), &payload, ticket)
        .unwrap();
    expect_goodbye(peer.read(), GoodbyeCode::TooLarge);
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_cut_or_corrupt_jpeg_is_rejected_and_the_stream_goes_on() {
    let (server, good) = with_good_client(server_config());
    let (mut peer, ticket) = handshaken(&server, "broken");
    // A JPEG start with no end: a frame cut off by a buggy camera driver.
    let payload = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4];
    peer.writer
        .send_frame(&header(payload.len()), &payload, ticket)
        .unwrap();
    match peer.read() {
        Some(Message::Verdict(v)) => {
            assert_eq!(v.outcome, Outcome::Rejected);
            assert_eq!(v.reason, Reason::NotJpeg);
        }
        other => panic!("expected a VERDICT, got {other:?}"),
    }
    let Some(Message::Ticket(next)) = peer.read() else {
        panic!("a new ticket follows: the connection lives on")
    };
    // A corrupt JPEG: the right start and end, garbage between.
    let mut corrupt = vec![0xFF, 0xD8];
    corrupt.extend((0..200u32).map(|i| (i * 37 % 251) as u8));
    corrupt.extend([0xFF, 0xD9]);
    peer.writer
        .send_frame(&header(corrupt.len()), &corrupt, next)
        .unwrap();
    match peer.read() {
        Some(Message::Verdict(v)) => {
            assert_eq!(
                (v.outcome, v.reason),
                (Outcome::Rejected, Reason::BrokenJpeg)
            );
        }
        other => panic!("expected a VERDICT, got {other:?}"),
    }
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    let s = server.stop();
    let broken = s.clients.iter().find(|c| c.name == "broken").unwrap();
    assert_eq!(broken.figures.frames_rejected, 2);
}

#[test]
fn a_forged_ticket_is_a_protocol_error() {
    let (server, good) = with_good_client(server_config());
    let (mut peer, ticket) = handshaken(&server, "forger");
    let forged = Ticket {
        id: ticket.id,
        issued_us: ticket.issued_us + 1_000_000,
    };
    let payload = [0xFF, 0xD8, 0xFF, 0xD9];
    peer.writer
        .send_frame(&header(payload.len()), &payload, forged)
        .unwrap();
    let text = expect_goodbye(peer.read(), GoodbyeCode::ProtocolError);
    assert!(text.contains("ticket"), "{text}");
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_client_stalled_mid_frame_is_dropped_after_the_io_timeout() {
    let config = ServerConfig {
        io_timeout: Duration::from_millis(300),
        ..server_config()
    };
    let (server, good) = with_good_client(config);
    let (mut peer, ticket) = handshaken(&server, "staller");
    let payload = vec![0xFFu8; 1000];
    let (head, _) = wire::frame_parts(&header(payload.len()), ticket);
    peer.write_raw(&head);
    peer.write_raw(&payload[..300]);
    expect_goodbye(peer.read(), GoodbyeCode::Timeout);
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_client_that_says_nothing_is_dropped_after_the_io_timeout() {
    let config = ServerConfig {
        io_timeout: Duration::from_millis(300),
        ..server_config()
    };
    let (server, good) = with_good_client(config);
    let mut peer = RawPeer::connect(server.addr);
    // No preface at all: after its challenge the server closes without a
    // word (there is no framelink peer to speak to).
    assert_eq!(peer.read_reply(), None);
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn one_client_more_than_max_clients_is_told_the_server_is_full() {
    let (server, good) = with_good_client(ServerConfig {
        max_clients: 1,
        ..server_config()
    });
    let mut peer = RawPeer::connect(server.addr);
    let text = expect_goodbye(peer.hello("extra", None), GoodbyeCode::ServerFull);
    assert!(text.contains("--max-clients"), "{text}");
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_client_vanishing_mid_frame_frees_its_slot() {
    let (server, good) = with_good_client(ServerConfig {
        max_clients: 2,
        ..server_config()
    });
    let (mut peer, ticket) = handshaken(&server, "vanisher");
    let (head, _) = wire::frame_parts(&header(5000), ticket);
    peer.write_raw(&head);
    peer.write_raw(&[0xFF; 100]);
    drop(peer);
    // Its place is free again: a new client gets in (max_clients is 2).
    // The server notices the close at once, but allow for the race by
    // retrying the handshake until it is welcomed.
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let mut p = RawPeer::connect(server.addr);
        match p.hello("next", None) {
            Some(Message::Welcome(_)) => break,
            Some(Message::Goodbye(g))
                if g.code == GoodbyeCode::ServerFull && std::time::Instant::now() < deadline =>
            {
                continue
            }
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

/// Reads a VERDICT and the TICKET that follows it.
fn verdict_and_ticket(peer: &mut RawPeer) -> (framelink::wire::Verdict, Ticket) {
    let v = match peer.read() {
        Some(Message::Verdict(v)) => v,
        other => panic!("expected a VERDICT, got {other:?}"),
    };
    match peer.read() {
        Some(Message::Ticket(t)) => (v, t),
        other => panic!("expected a TICKET after the VERDICT, got {other:?}"),
    }
}

fn sized(payload: &[u8], width: u16, height: u16) -> FrameHeader {
    FrameHeader {
        width,
        height,
        ..header(payload.len())
    }
}

#[test]
fn a_jpeg_claiming_a_huge_size_is_rejected_before_anything_decodes_it() {
    let (server, good) = with_good_client(server_config());
    let (mut peer, ticket) = handshaken(&server, "bomb");
    // 60000 x 60000 in the JPEG's header: 10.8 GB of RGB to a decoder.
    let bomb = support::claiming(support::jpeg(64, 48), 60000, 60000);
    peer.writer
        .send_frame(&sized(&bomb, 60000, 60000), &bomb, ticket)
        .unwrap();
    let (v, ticket) = verdict_and_ticket(&mut peer);
    assert_eq!(
        (v.outcome, v.reason),
        (Outcome::Rejected, Reason::TooManyPixels)
    );
    // The FRAME says 64 x 48 but the JPEG claims more: sizes must agree.
    peer.writer
        .send_frame(&sized(&bomb, 64, 48), &bomb, ticket)
        .unwrap();
    let (v, ticket) = verdict_and_ticket(&mut peer);
    assert_eq!(
        (v.outcome, v.reason),
        (Outcome::Rejected, Reason::BadDimensions)
    );
    // An honest frame on the same connection is accepted.
    let honest = support::jpeg(64, 48);
    peer.writer
        .send_frame(&sized(&honest, 64, 48), &honest, ticket)
        .unwrap();
    let (v, _) = verdict_and_ticket(&mut peer);
    assert_eq!((v.outcome, v.reason), (Outcome::Accepted, Reason::None));
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    let s = server.stop();
    let bomb = s.clients.iter().find(|c| c.name == "bomb").unwrap();
    assert_eq!(
        (bomb.figures.frames_rejected, bomb.figures.frames_accepted),
        (2, 1)
    );
}

/// JPEGs that break the pure-Rust decoder (found by fuzzing): DC
/// coefficients that add up past `i32` once scaled by a 16-bit quantisation
/// table (an overflow: a panic where overflow checks are on; 320 x 8, grey),
/// and one whose blocks make its IDCT unwrap nothing (a panic in release
/// builds too; 40 x 30, colour).
fn decoder_breakers() -> [(Vec<u8>, u16, u16); 2] {
    let seed = |name: &str| {
        std::fs::read(format!("{}/fuzz/seeds/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    [
        (seed("jpeg-dc-overflow"), 320, 8),
        (seed("jpeg-idct-panic"), 40, 30),
    ]
}

/// A frame that makes the JPEG decoder fail inside is a frame that does not
/// decode: its processing is answered `failed` saying so, and everyone else
/// is served on. (The window decodes through the same call: a decoder panic
/// there used to stop the whole server.)
#[test]
fn a_jpeg_that_breaks_the_decoder_fails_only_its_own_processing() {
    use framelink::process::{ProcessorConfig, ProcessorKind};
    let config = ServerConfig {
        processor: ProcessorConfig {
            kind: ProcessorKind::Motion,
            ..Default::default()
        },
        // Tickets wait while the first frame is answered: age is not the point.
        max_age: Duration::from_secs(60),
        ..server_config()
    };
    let (server, good) = with_good_client(config);
    let mut peer = RawPeer::connect(server.addr);
    match peer.hello_with("poison", None, wire::CAP_RESULTS) {
        Some(Message::Welcome(_)) => {}
        other => panic!("expected WELCOME, got {other:?}"),
    }
    let mut tickets = std::collections::VecDeque::new();
    for (jpeg, width, height) in decoder_breakers() {
        assert_eq!(
            framelink::media::jpeg::dimensions(&jpeg),
            Some((width, height))
        );
        let ticket = loop {
            match tickets.pop_front() {
                Some(t) => break t,
                None => match peer.read() {
                    Some(Message::Ticket(t)) => tickets.push_back(t),
                    other => panic!("expected TICKET, got {other:?}"),
                },
            }
        };
        let h = sized(&jpeg, width, height);
        peer.writer.send_frame(&h, &jpeg, ticket).unwrap();
        let (mut accepted, mut result) = (false, None);
        while result.is_none() {
            match peer.read() {
                Some(Message::Ticket(t)) => tickets.push_back(t),
                Some(Message::Verdict(v)) => {
                    assert_eq!((v.frame_id, v.outcome), (h.frame_id, Outcome::Accepted));
                    accepted = true;
                }
                Some(Message::Result(r)) => result = Some(r),
                other => panic!("expected its VERDICT and RESULT, got {other:?}"),
            }
        }
        assert!(accepted, "the VERDICT comes before the RESULT");
        let r = result.unwrap();
        assert_eq!(r.frame_id, h.frame_id);
        // The pure-Rust decoder fails, said as such; libjpeg-turbo (or
        // wrapping arithmetic) may decode it to something.
        if r.status != wire::ResultStatus::Processed {
            assert_eq!(r.status, wire::ResultStatus::Failed);
            let text = String::from_utf8_lossy(&r.result);
            assert!(text.contains("does not decode"), "{text}");
        }
    }
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    let s = server.stop();
    assert!(s.clients.iter().any(|c| c.name == "poison"));
}

#[test]
fn a_frame_over_max_pixels_is_rejected_with_that_reason() {
    let (server, good) = with_good_client(ServerConfig {
        max_pixels: 160 * 120, // the good client's frames, exactly
        ..server_config()
    });
    let (mut peer, ticket) = handshaken(&server, "big");
    let jpeg = support::jpeg(200, 100);
    peer.writer
        .send_frame(&sized(&jpeg, 200, 100), &jpeg, ticket)
        .unwrap();
    let (v, _) = verdict_and_ticket(&mut peer);
    assert_eq!(
        (v.outcome, v.reason),
        (Outcome::Rejected, Reason::TooManyPixels)
    );
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_ticket_held_longer_than_it_existed_is_rejected() {
    let (server, good) = with_good_client(server_config());
    let (mut peer, ticket) = handshaken(&server, "liar");
    let jpeg = support::jpeg(64, 48);
    // Claims to have held, for a minute, a ticket issued moments ago: that
    // would make a frame of any age look fresh.
    let h = FrameHeader {
        ticket_held_us: 60_000_000,
        ..sized(&jpeg, 64, 48)
    };
    peer.writer.send_frame(&h, &jpeg, ticket).unwrap();
    let (v, ticket) = verdict_and_ticket(&mut peer);
    assert_eq!(
        (v.outcome, v.reason),
        (Outcome::Rejected, Reason::ImplausibleTiming)
    );
    // An honest hold is fine.
    peer.writer
        .send_frame(&sized(&jpeg, 64, 48), &jpeg, ticket)
        .unwrap();
    let (v, _) = verdict_and_ticket(&mut peer);
    assert_eq!(v.outcome, Outcome::Accepted);
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_repeated_frame_id_is_rejected_and_tickets_may_be_answered_in_any_order() {
    let (server, good) = with_good_client(server_config());
    let mut peer = RawPeer::connect(server.addr);
    let window = match peer.hello("repeat", None) {
        Some(Message::Welcome(w)) => w.window as usize,
        other => panic!("expected WELCOME, got {other:?}"),
    };
    assert!(window >= 2, "this test needs two tickets at once");
    let mut tickets = std::collections::VecDeque::new();
    while tickets.len() < window {
        match peer.read() {
            Some(Message::Ticket(t)) => tickets.push_back(t),
            other => panic!("expected a TICKET, got {other:?}"),
        }
    }
    let jpeg = support::jpeg(64, 48);
    let first = sized(&jpeg, 64, 48);
    let mut send = |frame_id: u64, ticket: Ticket| {
        let h = FrameHeader { frame_id, ..first };
        peer.writer.send_frame(&h, &jpeg, ticket).unwrap();
        let (v, t) = verdict_and_ticket(&mut peer);
        assert_eq!(v.frame_id, frame_id);
        (v.outcome, v.reason, t)
    };
    // The newest ticket first: allowed.
    let newest = tickets.pop_back().unwrap();
    let (o, r, t) = send(first.frame_id, newest);
    assert_eq!((o, r), (Outcome::Accepted, Reason::None));
    tickets.push_back(t);
    // The same id again, then a lower one: rejected with reason 7.
    for id in [first.frame_id, first.frame_id - 1] {
        let (o, r, t) = send(id, tickets.pop_front().unwrap());
        assert_eq!((o, r), (Outcome::Rejected, Reason::FrameIdNotIncreasing));
        tickets.push_back(t);
    }
    // A higher one is fine.
    let (o, _, _) = send(first.frame_id + 1, tickets.pop_front().unwrap());
    assert_eq!(o, Outcome::Accepted);
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

/// Sends `message` where the HELLO belongs: it must be refused as a FRAME
/// before the handshake finished, and the server go on serving.
fn a_frame_in_place_of_hello_is_refused(message: &[u8]) {
    let (server, good) = with_good_client(server_config());
    let mut peer = RawPeer::connect(server.addr);
    let mut bytes = wire::preface().to_vec();
    bytes.extend(message);
    peer.write_raw(&bytes);
    let text = expect_goodbye(peer.read_reply(), GoodbyeCode::ProtocolError);
    assert!(
        text.contains("FRAME before the handshake finished"),
        "{text}"
    );
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn before_welcome_only_handshake_sized_messages_are_read() {
    // A FRAME of 1 MiB announced instead of HELLO: under --max-frame-bytes,
    // but nothing that large is read from a peer not yet welcomed.
    a_frame_in_place_of_hello_is_refused(&[kind::FRAME, 0x00, 0x10, 0x00, 0x00]);
}

#[test]
fn a_small_frame_instead_of_hello_is_named_for_what_it_is() {
    // A 100-byte FRAME where the HELLO belongs: the size of a handshake
    // message, but not one.
    let mut message = vec![kind::FRAME, 0x00, 0x00, 0x00, 100];
    message.extend([0u8; 100]);
    a_frame_in_place_of_hello_is_refused(&message);
}

/// Writes `bytes` one at a time, `every` apart, on its own thread, until
/// done or the server closes; returns a flag set when all were written.
fn trickle(
    peer: &RawPeer,
    bytes: Vec<u8>,
    every: Duration,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::io::Write;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let mut stream = peer.stream.try_clone().unwrap();
    std::thread::spawn(move || {
        for b in bytes {
            std::thread::sleep(every); // the trickle's pace, not a synchronization
            if stream.write_all(&[b]).is_err() {
                return;
            }
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    done
}

fn hello_bytes(name: &str) -> Vec<u8> {
    let mut bytes = wire::preface().to_vec();
    Message::Hello(framelink::wire::Hello {
        capabilities: 0,
        name: name.into(),
        client_nonce: [1; 32],
        proof: Vec::new(),
    })
    .encode(&mut bytes);
    bytes
}

#[test]
fn a_handshake_trickled_a_byte_at_a_time_is_cut_at_its_deadline() {
    let (server, good) = with_good_client(ServerConfig {
        io_timeout: Duration::from_secs(1),
        ..server_config()
    });
    let mut peer = RawPeer::connect(server.addr);
    // ~80 bytes at 100 ms each: 8 s, while the whole handshake has 1 s.
    let done = trickle(&peer, hello_bytes("trickler"), Duration::from_millis(100));
    let text = expect_goodbye(peer.read_reply(), GoodbyeCode::Timeout);
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "the server waited for the whole trickle: {text}"
    );
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_frame_trickled_a_byte_at_a_time_is_cut_at_its_deadline() {
    let (server, good) = with_good_client(ServerConfig {
        io_timeout: Duration::from_secs(1),
        ..server_config()
    });
    let (mut peer, ticket) = handshaken(&server, "trickler");
    let jpeg = support::jpeg(64, 48);
    let (head, tail) = wire::frame_parts(&sized(&jpeg, 64, 48), ticket);
    peer.write_raw(&head);
    let mut rest = jpeg.clone();
    rest.extend_from_slice(&tail);
    // Each byte well within the old per-read timeout; the whole far past it.
    let done = trickle(&peer, rest, Duration::from_millis(100));
    let text = expect_goodbye(peer.read(), GoodbyeCode::Timeout);
    assert!(text.contains("middle of a message"), "{text}");
    assert!(!done.load(std::sync::atomic::Ordering::SeqCst));
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_turned_away_client_trickling_bytes_is_closed_within_two_seconds() {
    let (server, good) = with_good_client(ServerConfig {
        max_clients: 1,
        ..server_config()
    });
    let mut peer = RawPeer::connect(server.addr);
    // A well-formed GOODBYE of ~200 bytes at 100 ms a byte: 20 s of
    // trickle against a drain of 2 s in all.
    let mut bytes = wire::preface().to_vec();
    Message::Goodbye(framelink::wire::Goodbye {
        code: GoodbyeCode::ShuttingDown,
        text: "x".repeat(190),
    })
    .encode(&mut bytes);
    let done = trickle(&peer, bytes, Duration::from_millis(100));
    expect_goodbye(peer.read_reply(), GoodbyeCode::ServerFull);
    let started = Instant::now();
    // Then the server closes: EOF (or a reset) long before the trickle ends.
    let _ = peer.reader.read_message(
        Some(support::WAIT),
        support::WAIT,
        &framelink::shutdown::Shutdown::new(),
    );
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "closed only after {:?}",
        started.elapsed()
    );
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

/// Holds the processing thread on its first frame until told to go on.
struct Stuck(crossbeam_channel::Receiver<()>);

impl framelink::process::Processor for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    fn process(
        &mut self,
        _view: &mut framelink::process::FrameView,
    ) -> anyhow::Result<framelink::process::Output> {
        let _ = self.0.recv_timeout(support::WAIT);
        Ok(framelink::process::Output::None)
    }
}

/// Handshakes, retrying while the server says it is full because a
/// closed connection's place is not free yet; returns what finally came.
fn hello_past_full(server: &TestServer, name: &str) -> Option<Message> {
    let deadline = Instant::now() + support::WAIT;
    loop {
        let mut p = RawPeer::connect(server.addr);
        match p.hello(name, None) {
            Some(Message::Goodbye(g))
                if g.code == GoodbyeCode::ServerFull
                    && g.text.contains("--max-clients")
                    && Instant::now() < deadline =>
            {
                continue
            }
            other => return other,
        }
    }
}

#[test]
fn a_client_the_stuck_processing_stage_cannot_take_is_told_the_server_is_busy() {
    let (go, wait) = crossbeam_channel::bounded(1);
    let server = TestServer::start_processor(
        ServerConfig {
            max_clients: 1,
            ..server_config()
        },
        Box::new(Stuck(wait)),
    );
    // The first client's frame holds the processing thread.
    let (mut first, ticket) = handshaken(&server, "first");
    let jpeg = support::jpeg(64, 48);
    peer_frame(&mut first, ticket, &jpeg);
    drop(first);
    // The next client joins the queue of new clients the stuck thread has not taken...
    assert!(matches!(
        hello_past_full(&server, "second"),
        Some(Message::Welcome(_))
    ));
    // ...which is now full: the one after is turned away as busy, not
    // welcomed into a stage that would never see its frames.
    match hello_past_full(&server, "third") {
        Some(Message::Goodbye(g)) => {
            assert_eq!(g.code, GoodbyeCode::ServerFull);
            assert!(g.text.contains("busy"), "{}", g.text);
        }
        other => panic!("expected GOODBYE ServerFull (busy), got {other:?}"),
    }
    // Once the processor moves on, clients get in again.
    go.send(()).unwrap();
    assert!(matches!(
        hello_past_full(&server, "fourth"),
        Some(Message::Welcome(_))
    ));
    server.stop();
}

fn peer_frame(peer: &mut RawPeer, ticket: Ticket, jpeg: &[u8]) {
    peer.writer
        .send_frame(&sized(jpeg, 64, 48), jpeg, ticket)
        .unwrap();
    let (v, _) = verdict_and_ticket(peer);
    assert_eq!(v.outcome, Outcome::Accepted);
}

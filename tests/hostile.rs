//! Wrong peers and broken input get a clear GOODBYE for their own connection,
//! while a good client on the same server keeps streaming.

mod support;

use framelink::protocol::{
    self, kind, Encoding, FrameHeader, GoodbyeCode, Message, Outcome, Reason, Ticket,
};
use framelink::server::ServerConfig;
use std::time::Duration;
use support::{server_config, RawPeer, TestClient, TestServer};

/// A server with a good client already streaming.
fn with_good_client(config: ServerConfig) -> (TestServer, TestClient) {
    let server = TestServer::start(config);
    let good = TestClient::pattern(server.addr, "good", 160, 120, 60.0);
    server.wait_frames(Some("good"), 3);
    (server, good)
}

/// The good client is still streaming: more of its frames arrive.
fn good_client_goes_on(server: &TestServer) {
    server.wait_frames(Some("good"), 5);
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

fn header(payload_len: usize) -> FrameHeader {
    FrameHeader {
        frame_id: 1,
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
    good_client_goes_on(&server);
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
    good_client_goes_on(&server);
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
        text.contains(&format!("version {}", protocol::VERSION)) && text.contains("version 99"),
        "{text}"
    );
    good_client_goes_on(&server);
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
    good_client_goes_on(&server);
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
    good_client_goes_on(&server);
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
    good_client_goes_on(&server);
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
    good_client_goes_on(&server);
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
    let (head, _) = protocol::frame_parts(&header(payload.len()), ticket);
    peer.write_raw(&head);
    peer.write_raw(&payload[..300]);
    expect_goodbye(peer.read(), GoodbyeCode::Timeout);
    good_client_goes_on(&server);
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
    good_client_goes_on(&server);
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
    good_client_goes_on(&server);
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
    let (head, _) = protocol::frame_parts(&header(5000), ticket);
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
    good_client_goes_on(&server);
    good.stop().unwrap();
    server.stop();
}

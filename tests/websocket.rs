//! The WebSocket transport (`/ws/camera` on the live view) without a
//! browser: a peer speaks the protocol through the library's bridge, and
//! hostile WebSocket peers get what hostile TCP peers get, while a good
//! camera on the same server streams on.

mod support;

use framelink::server::ServerConfig;
use framelink::wire::{GoodbyeCode, Message, Outcome, Ticket, CAP_RESULTS};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::{
    frame_header, good_client_goes_on, jpeg, server_config, ws_upgrade, RawPeer, TestClient,
    TestServer,
};

/// A server with a live view and a good TCP camera already streaming.
fn with_good_client(config: ServerConfig) -> (TestServer, TestClient) {
    support::with_good_client(TestServer::start_http(config))
}

fn tickets(peer: &mut RawPeer, window: u16) -> Vec<Ticket> {
    (0..window)
        .map(|_| match peer.read() {
            Some(Message::Ticket(t)) => t,
            other => panic!("expected TICKET, got {other:?}"),
        })
        .collect()
}

#[test]
fn a_websocket_camera_is_judged_handed_on_and_answered_like_any_client() {
    let (server, good) = with_good_client(server_config());
    // The second frame is bigger than one WebSocket message (64 KiB), so it
    // is carried in several, as the page sends it. (Made before the
    // handshake: a ticket held while encoding would make them stale.)
    let payload = jpeg(640, 480);
    let big = jpeg(1920, 1080);
    assert!(big.len() > 64 * 1024, "{} bytes", big.len());
    let mut peer = RawPeer::websocket(server.http.unwrap());
    let window = match peer.hello_with("ws-cam", None, CAP_RESULTS) {
        Some(Message::Welcome(w)) => w.window,
        other => panic!("expected WELCOME, got {other:?}"),
    };
    let mut held = tickets(&mut peer, window);
    let mut results = 0;
    for (id, (jpeg, w, h)) in [(payload, 640, 480), (big, 1920, 1080)]
        .into_iter()
        .enumerate()
    {
        let ticket = held.remove(0);
        peer.writer
            .send_frame(
                &frame_header(id as u64 + 1, w, h, jpeg.len()),
                &jpeg,
                ticket,
            )
            .unwrap();
        let mut verdict = None;
        while verdict.is_none() {
            match peer.read() {
                Some(Message::Verdict(v)) => verdict = Some(v),
                Some(Message::Ticket(t)) => held.push(t),
                Some(Message::Result(_)) => results += 1,
                other => panic!("expected a VERDICT, got {other:?}"),
            }
        }
        let v = verdict.unwrap();
        assert_eq!(v.outcome, Outcome::Accepted, "{v:?}");
        assert_eq!(v.frame_id, id as u64 + 1);
        // Handed on before the next is sent (a newer frame would replace
        // it in its latest-only slot if the sinks had not taken it yet).
        let seen = server.next_frame(Some("ws-cam"));
        assert_eq!((seen.width, seen.height), (w, h));
    }
    // The result of each accepted frame comes back over the WebSocket.
    let deadline = Instant::now() + support::WAIT;
    while results < 2 && Instant::now() < deadline {
        match peer.read() {
            Some(Message::Result(_)) => results += 1,
            Some(Message::Ticket(_)) => {}
            other => panic!("expected a RESULT, got {other:?}"),
        }
    }
    assert_eq!(results, 2);
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    let summary = server.stop();
    let cam = summary.clients.iter().find(|c| c.name == "ws-cam").unwrap();
    assert_eq!(cam.figures.frames_accepted, 2);
}

#[test]
fn a_frame_in_place_of_hello_over_websocket_is_a_protocol_error() {
    let (server, good) = with_good_client(server_config());
    let mut peer = RawPeer::websocket(server.http.unwrap());
    peer.writer.send(true, &[]).unwrap();
    let body = jpeg(64, 48);
    peer.writer
        .send_frame(
            &frame_header(1, 64, 48, body.len()),
            &body,
            Ticket {
                id: 0,
                issued_us: 0,
            },
        )
        .unwrap();
    match peer.read_reply() {
        Some(Message::Goodbye(g)) => {
            assert_eq!(g.code, GoodbyeCode::ProtocolError);
            assert!(g.text.contains("FRAME before the handshake"), "{}", g.text);
        }
        other => panic!("expected GOODBYE, got {other:?}"),
    }
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

/// A masked client frame (RFC 6455 §5.2) of `opcode` with `len` bytes of
/// payload announced, carrying `payload` (which may be shorter).
fn raw_frame(opcode: u8, len: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    let mask = [1u8, 2, 3, 4];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads the WebSocket's own socket until the server closes it; returns
/// what came (a close frame is `0x88`, its code in the two bytes after
/// the length).
fn read_to_close(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    all
}

/// The close code of the last close frame in `bytes` from the server.
fn close_code(bytes: &[u8]) -> Option<u16> {
    let at = bytes.windows(2).rposition(|w| w[0] == 0x88 && w[1] >= 2)?;
    Some(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]))
}

#[test]
fn a_message_over_64_kib_ends_the_connection_before_it_is_buffered() {
    let (server, good) = with_good_client(server_config());
    let (mut ws, status, _) = ws_upgrade(server.http.unwrap(), "/ws/camera", &[]);
    assert_eq!(status, 101);
    // Announce a 1 GiB binary message and send only its first bytes.
    ws.write_all(&raw_frame(0x2, 1 << 30, b"FLNK\x00\x02"))
        .unwrap();
    let got = read_to_close(&mut ws);
    assert_eq!(close_code(&got), Some(1009), "closed as too big: {got:?}");
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_text_message_ends_the_connection() {
    let (server, good) = with_good_client(server_config());
    let (mut ws, status, _) = ws_upgrade(server.http.unwrap(), "/ws/camera", &[]);
    assert_eq!(status, 101);
    ws.write_all(&raw_frame(0x1, 5, b"hello")).unwrap();
    let got = read_to_close(&mut ws);
    assert_eq!(
        close_code(&got),
        Some(1003),
        "closed as unsupported: {got:?}"
    );
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_websocket_peer_that_says_nothing_is_dropped_at_the_handshake_deadline() {
    let (server, good) = with_good_client(ServerConfig {
        io_timeout: Duration::from_millis(500),
        ..server_config()
    });
    let mut peer = RawPeer::websocket(server.http.unwrap());
    let started = Instant::now();
    // The server speaks first (preface and CHALLENGE), then waits for a
    // HELLO that never comes.
    peer.writer.send(true, &[]).unwrap();
    match peer.read_reply() {
        Some(Message::Goodbye(g)) => assert_eq!(g.code, GoodbyeCode::Timeout),
        other => panic!("expected GOODBYE Timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn a_full_server_turns_a_websocket_camera_away() {
    let (server, good) = with_good_client(ServerConfig {
        max_clients: 1,
        ..server_config()
    });
    let mut peer = RawPeer::websocket(server.http.unwrap());
    peer.writer.send(true, &[]).unwrap();
    match peer.read_reply() {
        Some(Message::Goodbye(g)) => {
            assert_eq!(g.code, GoodbyeCode::ServerFull);
            assert!(g.text.contains("--max-clients"), "{}", g.text);
        }
        other => panic!("expected GOODBYE ServerFull, got {other:?}"),
    }
    good_client_goes_on(&server, Instant::now());
    good.stop().unwrap();
    server.stop();
}

#[test]
fn another_sites_page_and_plain_requests_cannot_open_the_camera_socket() {
    let server = TestServer::start_http(server_config());
    let http = server.http.unwrap();
    let (_, status, head) = ws_upgrade(http, "/ws/camera", &["Origin: https://evil.example"]);
    assert_eq!(status, 403, "{head}");
    let (_, status, head) = ws_upgrade(http, "/ws/camera", &[&format!("Origin: http://{http}")]);
    assert_eq!(status, 101, "the server's own page may: {head}");
    let (status, _, body) = support::http_get(http, "/ws/camera");
    assert_eq!(status, 426, "{}", String::from_utf8_lossy(&body));
    server.stop();
}

#[test]
fn the_stats_socket_pushes_the_figures() {
    let server = TestServer::start_http(server_config());
    let good = TestClient::pattern(server.addr, "good", 160, 120, 30.0);
    server.wait_frames(Some("good"), 3);
    let (ws, status, _) = ws_upgrade(server.http.unwrap(), "/ws/stats", &[]);
    assert_eq!(status, 101);
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(ws, tungstenite::protocol::Role::Client, None);
    // At once, then every second: two documents naming the camera.
    for _ in 0..2 {
        let msg = ws.read().expect("a pushed document");
        let stats: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert_eq!(stats["clients"][0]["name"], "good", "{stats}");
    }
    good.stop().unwrap();
    server.stop();
}

//! Denial of service by any peer that can reach the port (no token is the
//! default), against the server as a user runs it: a separate process, its
//! address space capped as on a small machine, its exit status checked.

mod support;

use framelink::wire::{self, Encoding, FrameHeader, GoodbyeCode, Message, Outcome, Reason, Ticket};
use std::time::Duration;
use support::{RawPeer, ServerProcess};

/// 4 GiB of address space: plenty to serve (thread stacks and malloc
/// arenas included), far below the 10.8 GB a 60000 x 60000 JPEG asks for.
const LIMIT: u64 = 4 << 30;

fn welcomed(server: &ServerProcess, name: &str) -> (RawPeer, Ticket) {
    let mut peer = RawPeer::connect(server.addr);
    match peer.hello(name, None) {
        Some(Message::Welcome(_)) => {}
        other => panic!("expected WELCOME, got {other:?}"),
    }
    match peer.read() {
        Some(Message::Ticket(t)) => (peer, t),
        other => panic!("expected a TICKET, got {other:?}"),
    }
}

fn send(
    peer: &mut RawPeer,
    ticket: Ticket,
    jpeg: &[u8],
    width: u16,
    height: u16,
) -> (Outcome, Reason) {
    let h = FrameHeader {
        frame_id: 1,
        encoding: Encoding::Jpeg,
        width,
        height,
        capture_to_send_us: 0,
        ticket_held_us: 0,
        payload_len: jpeg.len() as u32,
    };
    peer.writer.send_frame(&h, jpeg, ticket).unwrap();
    loop {
        match peer.read() {
            Some(Message::Verdict(v)) => return (v.outcome, v.reason),
            Some(Message::Ticket(_)) => continue,
            other => panic!("expected a VERDICT, got {other:?}"),
        }
    }
}

#[test]
fn a_decompression_bomb_is_rejected_and_the_server_goes_on() {
    // The motion processor decodes every accepted frame, as the window does.
    let mut server = ServerProcess::start_limited(
        LIMIT,
        &["--processor", "motion", "--max-pixels", "67108864"],
    );
    let bomb = support::claiming(support::jpeg(640, 480), 60000, 60000);
    // Sent as a client written from protocol.md would: the FRAME says what
    // the JPEG says, or what the camera really gave.
    for (w, h, reason) in [
        (60000, 60000, Reason::TooManyPixels),
        (640, 480, Reason::BadDimensions),
    ] {
        let (mut peer, ticket) = welcomed(&server, "bomber");
        assert_eq!(
            send(&mut peer, ticket, &bomb, w, h),
            (Outcome::Rejected, reason)
        );
    }
    assert!(server.is_running(), "the server is still up");
    // An honest frame after the bombs is accepted and processed.
    let (mut peer, ticket) = welcomed(&server, "honest");
    let honest = support::jpeg(640, 480);
    assert_eq!(
        send(&mut peer, ticket, &honest, 640, 480),
        (Outcome::Accepted, Reason::None)
    );
    drop(peer);
    let stderr = server.stderr.clone();
    let summary = server.stop();
    assert_eq!(summary["frames_rejected"], 2, "{summary}");
    assert_eq!(summary["frames_accepted"], 1, "{summary}");
    assert!(
        stderr
            .text()
            .contains("width x height is over the server's --max-pixels"),
        "the rejection is logged with its reason: {}",
        stderr.text()
    );
}

#[test]
fn a_trickling_peer_loses_its_place_at_the_handshake_deadline() {
    let server = ServerProcess::start_limited(LIMIT, &["--max-clients", "1", "--io-timeout", "1"]);
    let mut trickler = RawPeer::connect(server.addr);
    trickler.write_raw(&wire::preface());
    let mut hello = Vec::new();
    Message::Hello(wire::Hello {
        capabilities: 0,
        name: "trickler".into(),
        client_nonce: [1; 32],
        proof: Vec::new(),
    })
    .encode(&mut hello);
    // The preface at once, then HELLO at one byte every 300 ms: each byte
    // within a per-read timeout of 1 s, the whole HELLO (~75 bytes) 22 s.
    let mut stream = trickler.stream.try_clone().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        for b in hello {
            std::thread::sleep(Duration::from_millis(300)); // the trickle's pace
            if stream.write_all(&[b]).is_err() {
                return;
            }
        }
    });
    match trickler.read_reply() {
        Some(Message::Goodbye(g)) => assert_eq!(g.code, GoodbyeCode::Timeout, "{}", g.text),
        other => panic!("expected GOODBYE Timeout, got {other:?}"),
    }
    // Its place is free: a real client is welcomed.
    let (_peer, _ticket) = welcomed(&server, "next");
    server.stop();
}

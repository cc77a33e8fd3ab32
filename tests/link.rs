//! The client's side of the link when the server misbehaves: a frozen
//! server, a GOODBYE mid-stream, a server of another version, frames over
//! the server's limit, and refusals that never go away.

mod support;

use framelink::client::ClientConfig;
use framelink::shutdown::Shutdown;
use framelink::wire::connection::{self, Reader, Writer};
use framelink::wire::{self, Challenge, GoodbyeCode, Limits, Message, Ticket, Welcome};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use support::{server_config, TestClient, TestServer, WAIT};

/// One accepted connection of a server written in the test.
struct Fake {
    reader: Reader,
    writer: Writer,
    stream: TcpStream,
}

impl Fake {
    fn accept(listener: &TcpListener) -> Fake {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + WAIT;
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::park_timeout(Duration::from_millis(10))
                }
                Err(e) => panic!("no client connected within {WAIT:?}: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        Self::from(stream)
    }

    fn from(stream: TcpStream) -> Fake {
        connection::configure(&stream, WAIT).unwrap();
        Fake {
            reader: Reader::new(stream.try_clone().unwrap(), Limits::default()),
            writer: Writer::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// The server's half of the handshake: WELCOME with `window` tickets.
    fn handshake(&mut self, window: u16) {
        self.writer
            .send(true, &[&Message::Challenge(Challenge { nonce: [3; 32] })])
            .unwrap();
        self.reader
            .read_preface(Instant::now() + WAIT, &Shutdown::new())
            .unwrap();
        assert!(matches!(self.read(), Some(Message::Hello(_))));
        let mut messages = vec![Message::Welcome(Welcome {
            capabilities: 0,
            max_age_us: 80_000,
            max_frame_bytes: 1 << 20,
            window,
            proof: Vec::new(),
        })];
        for id in 0..window as u32 {
            messages.push(Message::Ticket(Ticket { id, issued_us: 1 }));
        }
        let refs: Vec<&Message> = messages.iter().collect();
        self.writer.send(false, &refs).unwrap();
    }

    fn read(&mut self) -> Option<Message> {
        self.reader
            .read_message(Some(WAIT), WAIT, &Shutdown::new())
            .unwrap()
    }
}

fn client(addr: SocketAddr, fps: f64) -> ClientConfig {
    let mut c = ClientConfig::test_pattern(addr.to_string(), 160, 120, fps);
    c.io_timeout = Duration::from_secs(1);
    c.max_backoff = Duration::from_millis(200);
    c
}

#[test]
fn a_frozen_server_is_noticed_and_the_client_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TestClient::start(client(listener.local_addr().unwrap(), 30.0));
    // Takes one frame, then says nothing more: frozen (SIGSTOP, or a link
    // that died without a reset look the same from the client).
    let mut frozen = Fake::accept(&listener);
    frozen.handshake(1);
    assert!(matches!(frozen.read(), Some(Message::Frame(_))));
    // The client gives up on it after --io-timeout and connects again.
    let mut next = Fake::accept(&listener);
    next.handshake(1);
    assert!(matches!(next.read(), Some(Message::Frame(_))));
    let summary = client.stop().unwrap();
    let problem = summary.last_problem.unwrap_or_default();
    assert!(problem.contains("sent nothing for"), "{problem}");
    assert!(problem.contains("1 frame unanswered"), "{problem}");
    drop(frozen);
}

#[test]
fn no_frame_is_sent_after_the_servers_goodbye_and_every_frame_is_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TestClient::start(client(listener.local_addr().unwrap(), 5.0));
    let mut server = Fake::accept(&listener);
    // Four tickets: the client could send three more frames.
    server.handshake(4);
    assert!(matches!(server.read(), Some(Message::Frame(_))));
    server
        .writer
        .goodbye(false, GoodbyeCode::ShuttingDown, "stopping")
        .unwrap();
    // Until the client closes: nothing but its own GOODBYE, if anything.
    while let Some(m) = server.read() {
        assert!(matches!(m, Message::Goodbye(_)), "after GOODBYE: {m:?}");
    }
    let summary = client.stop().unwrap();
    let f = &summary.figures;
    assert_eq!(f.frames_sent, Some(1), "{f:?}");
    assert_eq!(f.frames_unanswered, Some(1), "{f:?}");
    assert!(
        summary
            .last_problem
            .unwrap_or_default()
            .contains("shutting down"),
        "the GOODBYE is read"
    );
}

/// A server of version 3: its preface, then `then`.
fn server_of_version_3(then: Message) -> (SocketAddr, std::thread::JoinHandle<Option<Message>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut fake = Fake::accept(&listener);
        let mut bytes = b"FLNK\x00\x03".to_vec();
        then.encode(&mut bytes);
        use std::io::Write;
        fake.stream.write_all(&bytes).unwrap();
        // What the client says after its preface: nothing, it stops.
        fake.reader
            .read_preface(Instant::now() + WAIT, &Shutdown::new())
            .unwrap();
        fake.reader
            .read_message(Some(WAIT), WAIT, &Shutdown::new())
            .ok()
            .flatten()
    });
    (addr, server)
}

#[test]
fn a_server_of_another_version_stops_the_client_with_the_reason() {
    for then in [
        Message::Goodbye(wire::Goodbye {
            code: GoodbyeCode::UnsupportedVersion,
            text: "this server speaks version 3".into(),
        }),
        Message::Challenge(Challenge { nonce: [1; 32] }),
    ] {
        let (addr, server) = server_of_version_3(then);
        let client = TestClient::start(client(addr, 30.0));
        let e = client.wait_end().unwrap_err().to_string();
        assert!(e.contains("protocol version 3"), "{e}");
        assert_eq!(
            server.join().unwrap(),
            None,
            "no HELLO to a version 3 server"
        );
    }
}

#[test]
fn frames_over_the_servers_limit_are_counted_and_adaptation_shrinks_them() {
    let mut config = server_config();
    config.max_frame_bytes = 12_000;
    let server = TestServer::start(config);
    // 1280x720 at quality 90 is far over 12 000 bytes.
    let mut c = ClientConfig::test_pattern(server.addr.to_string(), 1280, 720, 30.0);
    c.quality = 90;
    c.adapt = true;
    let client = TestClient::start(c);
    let first = server.next_frame(None);
    assert!(first.jpeg_len <= 12_000, "{first:?}");
    let summary = client.stop().unwrap();
    server.stop();
    assert!(
        summary.figures.frames_too_large.unwrap() >= 1,
        "{summary:?}"
    );
    assert!(summary.adapt.steps_down >= 1, "{summary:?}");
}

#[test]
fn without_adaptation_frames_over_the_limit_are_counted_not_lost() {
    let mut config = server_config();
    config.max_frame_bytes = 2_000;
    let server = TestServer::start(config);
    let mut c = ClientConfig::test_pattern(server.addr.to_string(), 640, 480, 30.0);
    c.adapt = false;
    // A run of one second: about 30 frames made, none small enough.
    let client = TestClient::start(c);
    client.shutdown.trigger_after(Duration::from_secs(1));
    let summary = client.wait_end().unwrap();
    server.stop();
    let f = &summary.figures;
    assert!(f.frames_too_large.unwrap() >= 5, "{f:?}");
    assert_eq!(f.frames_sent, Some(0), "{f:?}");
}

#[test]
fn a_client_ending_while_disconnected_counts_that_outage() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TestClient::start(client(listener.local_addr().unwrap(), 30.0));
    let mut server = Fake::accept(&listener);
    server.handshake(1);
    assert!(matches!(server.read(), Some(Message::Frame(_))));
    drop(server); // the link breaks
                  // The client is retrying (a backoff of at least 100 ms after the loss):
                  // this attempt is closed unanswered, and the client stops disconnected.
    drop(Fake::accept(&listener));
    let c = client.stop().unwrap();
    assert_eq!((c.connections, c.gaps), (1, 1), "{c:?}");
    assert!(c.offline_s >= 0.1, "{c:?}");
    assert!(c.connected_s + c.offline_s <= c.duration_s + 0.002, "{c:?}");
}

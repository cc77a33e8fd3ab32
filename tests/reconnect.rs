//! The client reconnects by itself when the server goes away and comes back.

mod support;

use support::{server_config, ServerProcess, TestClient, TestServer};

#[test]
fn a_server_killed_mid_stream_and_restarted_gets_the_client_back() {
    let first = ServerProcess::start(&[]);
    let addr = first.addr;
    let client = TestClient::pattern(addr, "survivor", 320, 240, 30.0);
    // Wait until it streams: the server logs the connection.
    first
        .stderr
        .wait_for("connected: survivor", support::WAIT)
        .expect("the client connected");
    first.kill(); // no goodbye: the client sees the link break mid-stream
    let second = TestServer::start_with(server_config(), &addr.to_string(), Vec::new);
    second.wait_frames(Some("survivor"), 10);
    let c = client.stop().unwrap();
    second.stop();
    assert_eq!((c.connections, c.gaps), (2, 1), "{c:?}");
    assert!(c.offline_s > 0.0 && c.offline_s < 10.0, "{c:?}");
}

#[test]
fn the_client_reconnects_after_the_server_restarts() {
    let first = TestServer::start(server_config());
    let addr = first.addr;
    let client = TestClient::pattern(addr, "roamer", 160, 120, 30.0);
    first.wait_frames(Some("roamer"), 5);
    let before = first.stop();
    assert!(before.total.frames_accepted >= 5);

    // A new server on the same port: frames flow again without touching the client.
    let second = TestServer::start_with(server_config(), &addr.to_string(), Vec::new);
    second.wait_frames(Some("roamer"), 5);
    let c = client.stop().unwrap();
    let after = second.stop();
    assert_eq!(c.connections, 2, "{c:?}");
    assert_eq!(c.gaps, 1, "{c:?}");
    assert!(c.offline_s > 0.0, "{c:?}");
    assert!(after.total.frames_accepted >= 5);
    assert_eq!(
        c.figures.frames_accepted,
        before.total.frames_accepted + after.total.frames_accepted
    );
}

#[test]
fn a_client_started_before_its_server_connects_when_it_appears() {
    // Reserve a port, free it, start the client towards it, then the server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = TestClient::pattern(port, "early", 160, 120, 30.0);
    let server = TestServer::start_with(server_config(), &port.to_string(), Vec::new);
    server.wait_frames(Some("early"), 3);
    let c = client.stop().unwrap();
    server.stop();
    assert_eq!(c.connections, 1);
}

/// A server that welcomes each client, takes one frame, then shuts down
/// cleanly (GOODBYE ShuttingDown) while the client is busy sending.
fn server_that_says_goodbye(listener: &std::net::TcpListener, connections: usize) {
    use framelink::shutdown::Shutdown;
    use framelink::wire::connection::{self, Reader, Writer};
    use framelink::wire::*;
    for _ in 0..connections {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        connection::configure(&stream, support::WAIT).unwrap();
        let mut reader = Reader::new(stream.try_clone().unwrap(), Limits::default());
        let mut writer = Writer::new(stream);
        let stop = Shutdown::new();
        writer
            .send(true, &[&Message::Challenge(Challenge { nonce: [5; 32] })])
            .unwrap();
        reader
            .read_preface(std::time::Instant::now() + support::WAIT, &stop)
            .unwrap();
        let Ok(Some(Message::Hello(_))) =
            reader.read_message(Some(support::WAIT), support::WAIT, &stop)
        else {
            panic!("expected HELLO");
        };
        let welcome = Message::Welcome(Welcome {
            capabilities: 0,
            max_age_us: 80_000,
            max_frame_bytes: 1 << 20,
            window: 4,
            proof: Vec::new(),
        });
        let tickets: Vec<Message> = (0..4)
            .map(|id| Message::Ticket(Ticket { id, issued_us: 1 }))
            .collect();
        let mut out = vec![&welcome];
        out.extend(tickets.iter());
        writer.send(false, &out).unwrap();
        let _ = reader.read_message(Some(support::WAIT), support::WAIT, &stop);
        let _ = writer.goodbye(false, GoodbyeCode::ShuttingDown, "server is shutting down");
        drop(reader);
    }
}

#[test]
fn a_clean_server_shutdown_is_reported_as_such_not_as_a_broken_pipe() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        server_that_says_goodbye(&listener, 5);
        listener // kept open: the next attempt waits in the backlog, no new problem
    });
    let client = TestClient::pattern(addr, "busy", 160, 120, 500.0);
    let listener = server.join().unwrap();
    let c = client.stop().unwrap();
    drop(listener);
    let why = c.last_problem.unwrap_or_default();
    assert!(why.contains("shutting down"), "the client says: {why:?}");
    assert!(!why.contains("Broken pipe"), "{why:?}");
}

/// A port with nothing listening on it.
fn dead_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn with_a_server_list_the_client_skips_a_server_that_is_down() {
    let down = dead_port();
    let up = TestServer::start(server_config());
    let mut config = framelink::client::ClientConfig::test_pattern(
        format!("{down},{}", up.addr),
        160,
        120,
        30.0,
    );
    config.name = "listed".into();
    let client = TestClient::start(config);
    up.wait_frames(Some("listed"), 5);
    let c = client.stop().unwrap();
    up.stop();
    assert_eq!(c.connections, 1, "{c:?}");
    assert!(
        c.last_problem
            .as_deref()
            .unwrap_or("")
            .contains(&down.to_string()),
        "the first server's failure is named: {c:?}"
    );
}

#[test]
fn a_client_fails_over_to_the_next_server_when_its_server_dies() {
    let first = ServerProcess::start(&[]);
    let second = TestServer::start(server_config());
    let mut config = framelink::client::ClientConfig::test_pattern(
        format!("{},{}", first.addr, second.addr),
        160,
        120,
        30.0,
    );
    config.name = "mover".into();
    let client = TestClient::start(config);
    first
        .stderr
        .wait_for("connected: mover", support::WAIT)
        .expect("the client took the first server in its list");
    first.kill();
    second.wait_frames(Some("mover"), 5);
    let c = client.stop().unwrap();
    second.stop();
    assert_eq!((c.connections, c.gaps), (2, 1), "{c:?}");
}

#[test]
fn a_full_server_sends_the_client_to_the_next_one() {
    let full = TestServer::start(framelink::server::ServerConfig {
        max_clients: 1,
        ..server_config()
    });
    let holder = TestClient::pattern(full.addr, "holder", 160, 120, 30.0);
    full.wait_frames(Some("holder"), 1);
    let spare = TestServer::start(server_config());
    let mut config = framelink::client::ClientConfig::test_pattern(
        format!("{},{}", full.addr, spare.addr),
        160,
        120,
        30.0,
    );
    config.name = "overflow".into();
    let client = TestClient::start(config);
    spare.wait_frames(Some("overflow"), 5);
    let c = client.stop().unwrap();
    holder.stop().unwrap();
    spare.stop();
    full.stop();
    assert_eq!(c.connections, 1, "{c:?}");
    assert!(
        c.last_problem.as_deref().unwrap_or("").contains("full"),
        "{c:?}"
    );
}

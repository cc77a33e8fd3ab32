//! The client reconnects by itself when the server goes away and comes back.

mod support;

use support::{server_config, TestClient, TestServer};

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

//! Nobody streams or watches without the key: token checks on the frame port
//! and the live view, each while a good client keeps streaming.

mod support;

use framelink::client::ClientConfig;
use framelink::server::ServerConfig;
use framelink::wire::auth::Token;
use framelink::wire::{GoodbyeCode, Message};
use support::{http_get, server_config, RawPeer, TestClient, TestServer};

fn token(s: &str) -> Option<Token> {
    Some(Token::new(s).unwrap())
}

fn guarded() -> ServerConfig {
    ServerConfig {
        token: token("correct horse"),
        ..server_config()
    }
}

fn client(server: &TestServer, name: &str, secret: Option<&str>) -> TestClient {
    let mut c = ClientConfig::test_pattern(server.addr.to_string(), 160, 120, 30.0);
    c.name = name.into();
    c.token = secret.and_then(token);
    TestClient::start(c)
}

#[test]
fn only_a_client_with_the_token_streams() {
    let server = TestServer::start(guarded());
    let good = client(&server, "good", Some("correct horse"));
    server.wait_frames(Some("good"), 5);

    let mut peer = RawPeer::connect(server.addr);
    match peer.hello("nobody", None) {
        Some(Message::Goodbye(g)) if g.code == GoodbyeCode::Unauthorized => {
            assert!(g.text.contains("needs a token"), "{}", g.text)
        }
        other => panic!("expected GOODBYE Unauthorized, got {other:?}"),
    }
    let mut peer = RawPeer::connect(server.addr);
    match peer.hello("guesser", token("battery staple").as_ref()) {
        Some(Message::Goodbye(g)) if g.code == GoodbyeCode::Unauthorized => {
            assert_eq!(g.text, "wrong token")
        }
        other => panic!("expected GOODBYE Unauthorized, got {other:?}"),
    }
    // A real client with the wrong token keeps being refused, and says why.
    let wrong = client(&server, "wrong", Some("battery staple"));
    server.wait_frames(Some("good"), 30);
    let w = wrong.stop().unwrap();
    assert_eq!(w.connections, 0);
    assert_eq!(w.figures.frames_sent, Some(0));
    let why = w.last_problem.unwrap_or_default();
    assert!(why.contains("wrong token"), "{why:?}");

    let g = good.stop().unwrap();
    let s = server.stop();
    assert!(g.figures.frames_accepted >= 30);
    assert!(
        s.clients.iter().all(|c| c.name == "good"),
        "{:?}",
        s.clients
    );
}

#[test]
fn a_client_with_a_token_will_not_stream_to_a_server_without_one() {
    let server = TestServer::start(server_config());
    let careful = client(&server, "careful", Some("correct horse"));
    let open = client(&server, "open", None);
    server.wait_frames(Some("open"), 30);
    let c = careful.stop().unwrap();
    assert_eq!((c.connections, c.figures.frames_sent), (0, Some(0)));
    let why = c.last_problem.unwrap_or_default();
    assert!(why.contains("token"), "{why:?}");
    open.stop().unwrap();
    server.stop();
}

#[test]
fn the_live_view_needs_the_token_too() {
    let server = TestServer::start_http(guarded());
    let http = server.http.unwrap();
    let good = client(&server, "good", Some("correct horse"));
    server.wait_frames(Some("good"), 3);
    for path in [
        "/",
        "/stats.json",
        "/metrics",
        "/stream/1.mjpg",
        "/snapshot/1.jpg",
    ] {
        assert_eq!(http_get(http, path).0, 401, "{path}");
        assert_eq!(
            http_get(http, &format!("{path}?token=wrong")).0,
            401,
            "{path}"
        );
    }
    assert_eq!(http_get(http, "/stats.json?token=correct+horse").0, 200);
    assert_eq!(
        http_get(http, "/snapshot/1.jpg?token=correct%20horse").0,
        200
    );
    good.stop().unwrap();
    server.stop();
}

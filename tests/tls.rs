//! TLS: frames and results cross a TLS connection, nothing readable crosses
//! the wire, and a client that does not trust the server's certificate (or
//! speaks plain TCP to it) is refused with a clear reason.

mod support;

use framelink::client::{ClientConfig, ClientTls};
use framelink::server::ServerConfig;
use framelink::wire::transport::tls;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use support::{json_lines, server_config, TestClient, TestServer};

/// Writes a self-signed certificate for localhost and 127.0.0.1 to `dir`.
fn certificate(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

fn tls_server(cert: &Path, key: &Path) -> TestServer {
    TestServer::start(ServerConfig {
        tls: Some(tls::server_config(cert, key).unwrap()),
        ..server_config()
    })
}

fn tls_client(addr: SocketAddr, name: &str, ca: &Path, jsonl: Option<&Path>) -> TestClient {
    let mut c = ClientConfig::test_pattern(addr.to_string(), 160, 120, 30.0);
    c.name = name.into();
    c.tls = Some(ClientTls {
        config: tls::client_config(ca).unwrap(),
        name: Some(tls::server_name("localhost").unwrap()),
    });
    c.results_jsonl = jsonl.map(Into::into);
    TestClient::start(c)
}

/// A relay that keeps a copy of every byte the client sends.
fn tap(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for down in listener.incoming().flatten() {
            let up = TcpStream::connect(upstream).unwrap();
            let (mut d, mut u) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut u, &mut d));
            let (mut d, mut u, s) = (down, up, s.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = d.read(&mut buf) {
                    if n == 0 || u.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn frames_and_results_cross_tls_and_nothing_readable_crosses_the_wire() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(tmp.path(), "server");
    let server = tls_server(&cert, &key);
    let (wire, seen) = tap(server.addr);
    let jsonl = tmp.path().join("results.jsonl");
    let client = tls_client(wire, "secret-cam", &cert, Some(&jsonl));
    let frames = server.wait_frames(Some("secret-cam"), 20);
    assert!(frames.iter().all(|f| f.width == 160));
    let c = client.stop().unwrap();
    server.stop();
    assert_eq!(c.connections, 1);
    assert!(json_lines(&jsonl)
        .iter()
        .any(|l| l["status"] == "processed"));
    let bytes = seen.lock().unwrap();
    assert!(bytes.len() > 100_000, "{} bytes", bytes.len());
    let find = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!find(b"FLNK"), "the preface crossed in the clear");
    assert!(
        !find(b"secret-cam"),
        "the client's name crossed in the clear"
    );
    assert!(!find(b"JFIF"), "a JPEG crossed in the clear");
}

#[test]
fn a_client_that_does_not_trust_the_certificate_is_refused_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(tmp.path(), "server");
    let (other, _) = certificate(tmp.path(), "other");
    let server = tls_server(&cert, &key);
    let good = tls_client(server.addr, "good", &cert, None);
    let doubter = tls_client(server.addr, "doubter", &other, None);
    let plain = TestClient::pattern(server.addr, "plain", 160, 120, 30.0);
    server.wait_frames(Some("good"), 30);
    let d = doubter.stop().unwrap();
    let p = plain.stop().unwrap();
    good.stop().unwrap();
    server.stop();
    assert_eq!((d.connections, d.figures.frames_sent), (0, Some(0)));
    assert_eq!((p.connections, p.figures.frames_sent), (0, Some(0)));
    // Each says why.
    let why = d.last_problem.unwrap_or_default();
    assert!(
        why.contains("invalid peer certificate"),
        "the doubter says: {why:?}"
    );
    let why = p.last_problem.unwrap_or_default();
    assert!(why.contains("TLS"), "the plain client says: {why:?}");
}

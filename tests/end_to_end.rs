//! Frames flow from a test-pattern client to the server over loopback.

mod support;

use framelink::client::ClientConfig;
use std::time::Duration;
use support::{server_config, TestClient, TestServer};

#[test]
fn frames_flow_end_to_end_and_both_summaries_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let server_json = dir.path().join("server.json");
    let client_json = dir.path().join("client.json");
    let server = TestServer::start(framelink::server::ServerConfig {
        summary_json: Some(server_json.clone()),
        ..server_config()
    });
    let mut cfg = ClientConfig::test_pattern(server.addr.to_string(), 320, 240, 30.0);
    cfg.name = "cam-a".into();
    cfg.summary_json = Some(client_json.clone());
    let client = TestClient::start(cfg);

    let seen = server.wait_frames(Some("cam-a"), 20);
    assert!(
        seen.windows(2).all(|w| w[0].frame_id < w[1].frame_id),
        "frames arrive newest-last, never repeated"
    );
    assert!(
        seen.iter().all(|s| s.age > Duration::ZERO),
        "every frame's age is measured (capture to arrival is never zero)"
    );

    let c = client.stop().unwrap();
    let s = server.stop();
    assert!(c.figures.frames_accepted >= 20);
    assert_eq!(c.connections, 1);

    let cj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&client_json).unwrap()).unwrap();
    let sj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&server_json).unwrap()).unwrap();
    for key in [
        "frames_sent",
        "frames_accepted",
        "frames_dropped_stale",
        "frames_rejected",
        "frames_superseded",
        "fps_accepted",
        "age_ms",
        "transit_ms",
        "bytes",
    ] {
        assert!(cj.get(key).is_some(), "client summary lacks {key}: {cj}");
    }
    assert!(cj["frames_sent"].as_u64().unwrap() >= cj["frames_accepted"].as_u64().unwrap());
    // The client's figures are the server's verdicts, counted on its side.
    assert_eq!(cj["frames_accepted"], sj_accepted(&server_json));
    let (p50, p99) = (
        cj["age_ms"]["p50"].as_f64().unwrap(),
        cj["age_ms"]["p99"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99, "{cj}");

    assert_eq!(
        sj["frames_accepted"].as_u64().unwrap(),
        s.total.frames_accepted
    );
    // 30 fps on a loaded 2-core machine: most frames fresh, most of the rate.
    let stale = sj["frames_dropped_stale"].as_u64().unwrap();
    assert!(
        stale * 20 <= s.total.frames_accepted,
        "over 5 % stale: {sj}"
    );
    assert!(sj["fps_accepted"].as_f64().unwrap() > 10.0, "{sj}");
    let clients = sj["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0]["name"], "cam-a");
    assert_eq!(clients[0]["frames_accepted"], sj["frames_accepted"]);
    // Every frame the client counted as accepted, the server accepted too.
    assert_eq!(c.figures.frames_accepted, s.total.frames_accepted);
}

/// `frames_accepted` in a server summary file.
fn sj_accepted(path: &std::path::Path) -> serde_json::Value {
    let sj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    sj["frames_accepted"].clone()
}

#[test]
fn small_frames_on_loopback_are_not_delayed() {
    // The reference design's three small writes per frame without TCP_NODELAY
    // sit near 88 ms on loopback (Nagle plus delayed ACK). Ours must not.
    let server = TestServer::start(server_config());
    let client = TestClient::pattern(server.addr, "tiny", 64, 48, 200.0);
    server.wait_frames(Some("tiny"), 200);
    client.stop().unwrap();
    let s = server.stop();
    // Nagle's algorithm with delayed ACKs holds each small frame 40 ms or
    // more; a scheduler on two busy cores adds a few ms now and then. So the
    // median must be far below 40 ms, and the tail too, allowing for noise.
    let transit_p50 = s.total.transit_ms.p50.unwrap();
    let age_p50 = s.total.age_ms.p50.unwrap();
    let transit_p99 = s.total.transit_ms.p99.unwrap();
    assert!(transit_p50 < 10.0, "transit p50 {transit_p50} ms");
    assert!(age_p50 < 15.0, "age p50 {age_p50} ms");
    assert!(transit_p99 < 35.0, "transit p99 {transit_p99} ms");
}

#[test]
fn several_clients_stream_at_once_and_are_counted_apart() {
    let server = TestServer::start(server_config());
    let a = TestClient::pattern(server.addr, "a", 160, 120, 30.0);
    let b = TestClient::pattern(server.addr, "b", 320, 240, 30.0);
    server.wait_frames(Some("a"), 5);
    server.wait_frames(Some("b"), 5);
    a.stop().unwrap();
    b.stop().unwrap();
    let s = server.stop();
    let names: Vec<_> = s.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let sum: u64 = s.clients.iter().map(|c| c.figures.frames_accepted).sum();
    assert_eq!(sum, s.total.frames_accepted);
}

#[test]
fn shutdown_returns_while_clients_are_connected() {
    let server = TestServer::start(server_config());
    let client = TestClient::pattern(server.addr, "cam", 160, 120, 30.0);
    server.wait_frames(Some("cam"), 3);
    // stop() fails the test unless server::run returns within the wait limit.
    let s = server.stop();
    assert!(s.total.frames_accepted >= 3);
    // The client outlives the server and stops cleanly too.
    let c = client.stop().unwrap();
    assert!(c.figures.frames_accepted >= 3);
}

#[test]
fn a_folder_of_jpegs_is_sent_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_fn(48, 32, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 128]));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode(&img, 48, 32, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(dir.path().join("0001.jpg"), &jpeg).unwrap();
    let server = TestServer::start(server_config());
    let mut cfg = ClientConfig::test_pattern(server.addr.to_string(), 48, 32, 30.0);
    cfg.name = "files".into();
    cfg.source.kind = framelink::client::source::SourceKind::Folder(dir.path().to_path_buf());
    let client = TestClient::start(cfg);
    let seen = server.wait_frames(Some("files"), 3);
    assert!(seen.iter().all(|s| s.jpeg_len == jpeg.len()));
    client.stop().unwrap();
    server.stop();
}

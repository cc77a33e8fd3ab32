//! The live view: page, `/stats.json`, `/metrics`, MJPEG streams that deliver
//! each part at once, and viewers that cannot slow a camera down.

mod support;

use framelink::server::ServerConfig;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{http_get, server_config, TestClient, TestServer, WAIT};

#[test]
fn the_page_stats_and_metrics_describe_the_clients() {
    let server = TestServer::start_http(server_config());
    let http = server.http.unwrap();
    let client = TestClient::pattern(server.addr, "porch", 160, 120, 30.0);
    server.wait_frames(Some("porch"), 5);

    let (status, head, page) = http_get(http, "/");
    assert_eq!(status, 200);
    assert!(head.contains("text/html"));
    assert!(String::from_utf8_lossy(&page).contains("<title>framelink live view</title>"));

    let (status, _, body) = http_get(http, "/stats.json");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let c = &stats["clients"][0];
    assert_eq!(c["name"], "porch");
    assert!(c["frames_accepted"].as_u64().unwrap() >= 5, "{c}");
    assert!(c["last_age_ms"].as_f64().unwrap() > 0.0, "{c}");
    // The count processor's newest result, as the JSON object it is (once
    // one has been written back to the client).
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, body) = http_get(http, "/stats.json");
        let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let r = &stats["clients"][0]["last_result"];
        if !r.is_null() {
            assert!(r["count"].as_u64().unwrap() >= 1, "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "no result shown: {stats}");
        server.shutdown.wait_timeout(Duration::from_millis(50));
    }
    let id = c["id"].as_u64().unwrap();

    let (status, head, metrics) = http_get(http, "/metrics");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"));
    let metrics = String::from_utf8(metrics).unwrap();
    let accepted = "framelink_frames_total{client=\"porch\",outcome=\"accepted\"} ";
    let line = metrics
        .lines()
        .find(|l| l.starts_with(accepted))
        .unwrap_or_else(|| panic!("no {accepted} in\n{metrics}"));
    assert!(line[accepted.len()..].parse::<f64>().unwrap() >= 5.0);
    assert!(metrics.contains("framelink_clients_connected 1"));

    let (status, head, jpeg) = http_get(http, &format!("/snapshot/{id}.jpg"));
    assert_eq!(status, 200);
    assert!(head.contains("image/jpeg"));
    assert_eq!(framelink::media::jpeg::dimensions(&jpeg), Some((160, 120)));

    assert_eq!(http_get(http, "/stream/999.mjpg").0, 404);
    assert_eq!(http_get(http, "/nothing-here").0, 404);
    client.stop().unwrap();
    server.stop();
}

#[test]
fn bad_requests_get_an_error_and_the_view_goes_on() {
    let server = TestServer::start_http(server_config());
    let http = server.http.unwrap();
    for request in [
        &b"POST /stats.json HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\x16\x03\x01 not http at all\r\n\r\n",
        &[b'A'; 9000][..],
    ] {
        let mut s = TcpStream::connect_timeout(&http, WAIT).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let _ = s.write_all(request);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        let status: u16 = answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        assert!((400..500).contains(&status), "{answer:?}");
    }
    assert_eq!(http_get(http, "/stats.json").0, 200);
    server.stop();
}

/// Opens `/stream/<id>.mjpg` and reads through the response head.
fn open_stream(http: std::net::SocketAddr, id: u64) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect_timeout(&http, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET /stream/{id}.mjpg HTTP/1.0\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut boundary = None;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if let Some(b) = line
            .trim()
            .strip_prefix("Content-Type: multipart/x-mixed-replace; boundary=")
        {
            boundary = Some(b.to_string());
        }
        if line == "\r\n" {
            break;
        }
    }
    assert!(boundary.is_some(), "a multipart stream");
    r
}

/// Reads one MJPEG part and returns its JPEG.
fn read_part(r: &mut BufReader<TcpStream>) -> Vec<u8> {
    try_read_part(r).expect("a whole part")
}

/// One MJPEG part's JPEG, or None when the stream ends.
fn try_read_part(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    let mut len = None;
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(n) = line.trim().strip_prefix("Content-Length: ") {
            len = n.parse::<usize>().ok();
        }
        if line == "\r\n" && len.is_some() {
            break;
        }
    }
    let mut jpeg = vec![0; len?];
    r.read_exact(&mut jpeg).ok()?;
    Some(jpeg)
}

#[test]
fn a_part_arrives_without_waiting_for_the_next_frame() {
    let server = TestServer::start_http(server_config());
    let http = server.http.unwrap();
    // One frame every four seconds: a part held back until the next frame
    // would arrive seconds late.
    let client = TestClient::pattern(server.addr, "slow", 160, 120, 0.25);
    server.next_frame(Some("slow"));
    let asked = Instant::now();
    let mut stream = open_stream(http, 1);
    let jpeg = read_part(&mut stream);
    let took = asked.elapsed();
    assert!(framelink::media::jpeg::is_whole(&jpeg));
    assert!(
        took < Duration::from_secs(2),
        "the first part took {took:?}"
    );
    // The next part is the next frame, whole.
    server.next_frame(Some("slow"));
    assert!(framelink::media::jpeg::is_whole(&read_part(&mut stream)));
    client.stop().unwrap();
    server.stop();
}

#[test]
fn viewers_that_never_read_do_not_slow_the_camera_and_are_dropped() {
    let server = TestServer::start_http(ServerConfig {
        io_timeout: Duration::from_secs(1),
        ..server_config()
    });
    let http = server.http.unwrap();
    let client = TestClient::pattern(server.addr, "cam", 640, 480, 30.0);
    server.next_frame(Some("cam"));
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let s = TcpStream::connect_timeout(&http, WAIT).unwrap();
            socket2::SockRef::from(&s)
                .set_recv_buffer_size(4096)
                .unwrap();
            (&s).write_all(b"GET /stream/1.mjpg HTTP/1.1\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    // A healthy viewer keeps getting frames meanwhile, until the server stops.
    let mut healthy_stream = open_stream(http, 1);
    let healthy = std::thread::spawn(move || {
        let mut parts = 0;
        while let Some(jpeg) = try_read_part(&mut healthy_stream) {
            assert!(framelink::media::jpeg::is_whole(&jpeg));
            parts += 1;
        }
        parts
    });
    server.wait_frames(Some("cam"), 90);
    // The stalled viewers are dropped after --io-timeout; the healthy one stays.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, body) = http_get(http, "/stats.json");
        let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if stats["viewers"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stalled viewers still counted: {stats}"
        );
        server.shutdown.wait_timeout(Duration::from_millis(100));
    }
    let c = client.stop().unwrap();
    server.stop();
    drop(stalled);
    let parts = healthy.join().unwrap();
    assert!(parts >= 60, "the healthy viewer got {parts} frames");
    // Stalled viewers would hold the camera to their pace (near 0 fps):
    // most of its 30 fps and nearly every frame fresh on a loaded machine.
    assert!(
        c.figures.fps_accepted >= 20.0
            && c.figures.frames_dropped_stale * 20 <= c.figures.frames_accepted,
        "{:?}",
        c.figures
    );
}

#[test]
fn a_request_head_trickled_a_byte_at_a_time_is_cut_at_its_deadline() {
    let server = TestServer::start_http(server_config());
    let http = server.http.unwrap();
    let mut s = TcpStream::connect_timeout(&http, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    // A head that never ends, one byte every 250 ms: each byte within a
    // per-read timeout of 5 s, the whole far past the head's deadline.
    let trickled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (mut w, count) = (s.try_clone().unwrap(), trickled.clone());
    std::thread::spawn(move || {
        let head = format!("GET / HTTP/1.1\r\nX-Pad: {}", "a".repeat(200));
        for b in head.bytes() {
            std::thread::sleep(Duration::from_millis(250)); // the trickle's pace
            if w.write_all(&[b]).is_err() {
                return;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    let sent = trickled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 200, "the head was read for {sent} trickled bytes");
    // The view goes on serving.
    assert_eq!(http_get(http, "/stats.json").0, 200);
    server.stop();
}

/// A counter in `/metrics`, by its whole name and labels.
fn metric(http: std::net::SocketAddr, series: &str) -> Option<f64> {
    let (_, _, body) = http_get(http, "/metrics");
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_are_kept_per_client_name_across_reconnects() {
    let server = TestServer::start_http(server_config());
    let http = server.http.unwrap();
    let series = "framelink_frames_total{client=\"porch\",outcome=\"accepted\"}";
    let first = TestClient::pattern(server.addr, "porch", 160, 120, 30.0);
    server.wait_frames(Some("porch"), 5);
    let c = first.stop().unwrap();
    // Gone, and still counted.
    let after_first = when_gone(&server, http, series);
    assert_eq!(after_first as u64, c.figures.frames_accepted);
    // The same camera again: the counter goes on from there, never back to 0.
    let second = TestClient::pattern(server.addr, "porch", 160, 120, 30.0);
    let deadline = Instant::now() + WAIT;
    while metric(http, series).unwrap() < after_first + 5.0 {
        assert!(
            Instant::now() < deadline,
            "the second connection's frames are not counted"
        );
        server.shutdown.wait_timeout(Duration::from_millis(50));
    }
    let (_, _, body) = http_get(http, "/metrics");
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("# TYPE framelink_frame_age_seconds summary"),
        "{text}"
    );
    assert!(
        text.contains("framelink_frame_age_seconds_count{client=\"porch\"}"),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.len() <= 20, "float noise in {line:?}");
    }
    let c2 = second.stop().unwrap();
    let total = when_gone(&server, http, series);
    assert_eq!(
        total as u64,
        c.figures.frames_accepted + c2.figures.frames_accepted
    );
    server.stop();
}

/// The series' value once no client is connected any more.
fn when_gone(server: &TestServer, http: std::net::SocketAddr, series: &str) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, body) = http_get(http, "/stats.json");
        let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if stats["clients"].as_array().unwrap().is_empty() {
            return metric(http, series).expect("the series outlives the connection");
        }
        assert!(Instant::now() < deadline, "the client never left: {stats}");
        server.shutdown.wait_timeout(Duration::from_millis(50));
    }
}

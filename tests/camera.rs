//! The browser camera in a real browser: headless Chromium opens `/camera`
//! with its fake camera, and the page streams to the server over the
//! WebSocket as a framelink client. Needs Debian's `chromium`
//! (scripts/setup.sh installs it), so a plain `cargo test` skips these:
//! `cargo test --test camera -- --ignored` runs them.

mod support;

use framelink::process::{ProcessorConfig, ProcessorKind};
use framelink::server::ServerConfig;
use framelink::testkit::delay_proxy::DelayProxy;
use serde_json::Value;
use std::time::Duration;
use support::chromium::Chromium;
use support::{http_get, server_config, TestServer};

const WITHIN: Duration = Duration::from_secs(30);

/// The figures the server shows for the client named `name`, if connected.
fn client(http: std::net::SocketAddr, name: &str) -> Option<Value> {
    let (_, _, body) = http_get(http, "/stats.json");
    let stats: Value = serde_json::from_slice(&body).ok()?;
    stats["clients"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

fn clients(http: std::net::SocketAddr) -> usize {
    let (_, _, body) = http_get(http, "/stats.json");
    let stats: Value = serde_json::from_slice(&body).unwrap();
    stats["clients"].as_array().unwrap().len()
}

/// Waits until the server has no client (at most `WITHIN`); fails with `why`.
fn no_clients_within(http: std::net::SocketAddr, why: &str) {
    let deadline = std::time::Instant::now() + WITHIN;
    while clients(http) != 0 {
        assert!(std::time::Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn the_page_streams_its_camera_and_shows_the_results() {
    let server = TestServer::start_http(ServerConfig {
        processor: ProcessorConfig {
            kind: ProcessorKind::Motion,
            ..ProcessorConfig::default()
        },
        ..server_config()
    });
    let http = server.http.unwrap();
    let mut page = Chromium::open(&format!("http://{http}/camera?name=phone"), &[]);
    page.wait_for(
        "window.framelinkCamera && window.framelinkCamera.accepted >= 20",
        WITHIN,
        "the page's frames are accepted",
    );
    // The server took them like any client's: handed to its sinks, with a
    // plausible age (over zero, under the threshold).
    let seen = server.wait_frames(Some("phone"), 5);
    assert!(
        seen.iter().all(|f| f.width == 640 && f.height == 480),
        "{:?}",
        seen[0]
    );
    let c = client(http, "phone").expect("the page is a client of the server");
    let age = c["age_ms"]["p50"].as_f64().unwrap();
    assert!(age > 0.0 && age < 80.0, "age p50 {age} ms");
    assert_eq!(c["frames_rejected"], 0, "{c}");
    // The results come back to the page and are shown: motion's text, and
    // its box drawn over the video (the fake camera's picture moves).
    let shown = page.wait_for(
        "document.getElementById('result').textContent.includes('\"motion\"') && document.getElementById('result').textContent",
        WITHIN,
        "a result is shown on the page",
    );
    assert!(
        shown.as_str().unwrap().starts_with("result for frame "),
        "{shown}"
    );
    page.wait_for(
        "Number(document.getElementById('overlay').dataset.boxes) > 0",
        WITHIN,
        "motion's box is drawn over the video",
    );
    let state = page.eval("document.getElementById('state').textContent");
    assert!(
        state.as_str().unwrap().contains("streaming as phone"),
        "{state}"
    );
    // The newest frame by name, at once.
    let (status, head, jpeg) = http_get(http, "/snapshot/phone.jpg");
    assert_eq!(status, 200, "{head}");
    let snap = image::load_from_memory(&jpeg).unwrap();
    assert_eq!((snap.width(), snap.height()), (640, 480));
    drop(page);
    server.stop();
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn frames_over_a_slow_link_are_dropped_as_stale() {
    let server = TestServer::start_http(ServerConfig {
        max_age: Duration::from_millis(40),
        ..server_config()
    });
    let http = server.http.unwrap();
    // 60 ms each way between the page and the server: every frame's age is
    // at least 60 ms on arrival, over the 40 ms threshold.
    let link = DelayProxy::start(http, Duration::from_millis(60)).unwrap();
    let mut page = Chromium::open(&format!("http://{}/camera?name=far", link.addr), &[]);
    page.wait_for(
        "window.framelinkCamera.stale >= 5",
        WITHIN,
        "frames are dropped as stale",
    );
    let figures = page.eval("window.framelinkCamera");
    assert_eq!(figures["accepted"], 0, "{figures}");
    assert!(figures["lastAgeMs"].as_f64().unwrap() >= 60.0, "{figures}");
    let c = client(http, "far").unwrap();
    assert_eq!(c["frames_accepted"], 0, "{c}");
    assert!(c["frames_dropped_stale"].as_u64().unwrap() >= 5, "{c}");
    drop(page);
    server.stop();
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn a_wrong_token_is_refused_with_the_reason_on_the_page() {
    let server = TestServer::start_http(ServerConfig {
        token: Some(framelink::wire::auth::Token::new("s3cret").unwrap()),
        ..server_config()
    });
    let http = server.http.unwrap();
    // The camera page itself needs no token in its address.
    let mut page = Chromium::open(&format!("http://{http}/camera?name=guest"), &[]);
    page.wait_for(
        "document.getElementById('state').textContent.includes('this server needs its token')",
        WITHIN,
        "a page without the token is told the server needs it",
    );
    let set = |token: &str| {
        format!(
            "document.getElementById('token').value = '{token}'; document.getElementById('apply').click(); true"
        )
    };
    page.eval(&set("wrong"));
    let said = page.wait_for(
        "document.getElementById('state').textContent.includes('wrong token') && document.getElementById('state').textContent",
        WITHIN,
        "a wrong token is said to be wrong",
    );
    assert!(said.as_str().unwrap().contains("Unauthorized"), "{said}");
    assert_eq!(page.eval("window.framelinkCamera.sent"), 0);
    // The right one is kept in the page's storage and streams.
    page.eval(&set("s3cret"));
    page.wait_for(
        "window.framelinkCamera.accepted >= 3",
        WITHIN,
        "with the right token the page streams",
    );
    assert_eq!(
        page.eval("localStorage.getItem('framelink-token')"),
        "s3cret"
    );
    assert!(!page
        .eval("location.href")
        .as_str()
        .unwrap()
        .contains("s3cret"));
    drop(page);
    server.stop();
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn a_closed_tab_frees_the_servers_place() {
    let server = TestServer::start_http(ServerConfig {
        max_clients: 1,
        ..server_config()
    });
    let http = server.http.unwrap();
    let mut page = Chromium::open(&format!("http://{http}/camera?name=tab"), &[]);
    page.wait_for(
        "window.framelinkCamera.accepted >= 3",
        WITHIN,
        "the page streams",
    );
    assert_eq!(clients(http), 1);
    page.close_tab();
    no_clients_within(http, "the closed tab still holds the server's place");
    // The place is free: a TCP camera takes it.
    let cam = support::TestClient::pattern(server.addr, "after", 320, 240, 30.0);
    server.wait_frames(Some("after"), 3);
    cam.stop().unwrap();
    drop(page);
    server.stop();
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn the_page_streams_over_https_with_a_self_signed_certificate() {
    let server = support::ServerProcess::start(&["--http", "127.0.0.1:0", "--self-signed"]);
    let line = server
        .stdout
        .wait_for("browser camera: https://", WITHIN)
        .expect("the camera's https address is printed");
    let url = line
        .lines()
        .find_map(|l| l.strip_prefix("browser camera: "))
        .unwrap()
        .split(", ")
        .next()
        .unwrap()
        .to_string();
    let said = server
        .stdout
        .wait_for("self-signed certificate, SHA-256 ", WITHIN)
        .unwrap();
    let fingerprint = said
        .split("SHA-256 ")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .unwrap();
    assert_eq!(fingerprint.len(), 2, "hex bytes with colons: {said}");
    // The browser is told to accept the certificate, as a user does once.
    let mut page = Chromium::open(
        &format!("{url}?name=secure-phone"),
        &["--ignore-certificate-errors"],
    );
    page.wait_for(
        "window.framelinkCamera && window.framelinkCamera.accepted >= 5",
        WITHIN,
        "the page's frames are accepted over https and wss",
    );
    assert_eq!(page.eval("location.protocol"), "https:");
    drop(page);
    let summary = server.stop();
    let cam = summary["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "secure-phone")
        .cloned()
        .expect("the page was a client");
    assert!(cam["frames_accepted"].as_u64().unwrap() >= 5, "{cam}");
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn the_live_view_page_gets_its_figures_pushed_not_polled() {
    let server = TestServer::start_http(server_config());
    let http = server.http.unwrap();
    let cam = support::TestClient::pattern(server.addr, "pushed", 320, 240, 30.0);
    server.wait_frames(Some("pushed"), 3);
    let mut page = Chromium::open(&format!("http://{http}/"), &[]);
    let figures = "(document.querySelector('.tile .figures') || {}).textContent";
    let first = page.wait_for(figures, WITHIN, "the page shows the camera's figures");
    // The figures change (pushed every second) ...
    page.wait_for(
        &format!("{figures} !== {first}"),
        WITHIN,
        "the figures are updated",
    );
    page.wait_for(
        &format!("{figures} !== {first}"),
        WITHIN,
        "the figures are updated",
    );
    // ... while /stats.json was fetched once, when the page opened.
    let fetched = page.eval(
        "performance.getEntriesByType('resource').filter(e => e.name.includes('/stats.json')).length",
    );
    assert_eq!(fetched, 1, "the page polls /stats.json");
    drop(page);
    cam.stop().unwrap();
    server.stop();
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn the_page_gives_the_camera_back_while_hidden_and_reconnects_by_itself() {
    // A fixed live view port, so a second server can take the first's place.
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let at = http.to_string();
    let first = support::ServerProcess::start(&["--http", &at]);
    let mut page = Chromium::open(&format!("http://{at}/camera?name=roamer"), &[]);
    page.wait_for(
        "window.framelinkCamera.accepted >= 3",
        WITHIN,
        "the page streams",
    );
    // Hidden: the camera is released and the server's place given back.
    let visibility = |hidden: bool| {
        format!(
            "Object.defineProperty(document, 'hidden', {{value: {hidden}, configurable: true}}); document.dispatchEvent(new Event('visibilitychange')); true"
        )
    };
    page.eval(&visibility(true));
    page.wait_for(
        "window.framelinkCamera.state === 'paused' && document.getElementById('video').srcObject === null",
        WITHIN,
        "a hidden page releases the camera",
    );
    no_clients_within(http, "a hidden page holds its place");
    // Shown again: the camera is taken again and streaming goes on.
    let before = page
        .eval("window.framelinkCamera.accepted")
        .as_u64()
        .unwrap();
    page.eval(&visibility(false));
    page.wait_for(
        &format!(
            "window.framelinkCamera.accepted >= {} && window.framelinkCamera.connections === 2",
            before + 3
        ),
        WITHIN,
        "a page shown again streams again",
    );
    // The server goes away and another comes on the same port: the page
    // says so and reconnects by itself.
    first.stop();
    page.wait_for(
        "['reconnecting', 'error'].includes(window.framelinkCamera.state)",
        WITHIN,
        "the page says the connection is lost",
    );
    let second = support::ServerProcess::start(&["--http", &at]);
    page.wait_for(
        "window.framelinkCamera.connections === 3 && window.framelinkCamera.state === 'streaming'",
        WITHIN,
        "the page reconnects to the new server",
    );
    let c = (0..300)
        .find_map(|_| {
            let c = client(http, "roamer").filter(|c| c["frames_accepted"].as_u64() > Some(2));
            if c.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            c
        })
        .expect("the new server takes the page's frames");
    assert!(c["frames_accepted"].as_u64().unwrap() > 2);
    drop(page);
    second.stop();
}

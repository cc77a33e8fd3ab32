//! The live view in a real browser: headless Chromium opens the page and two
//! screenshots show the test pattern moving in it. Needs Debian's `chromium`
//! (scripts/setup.sh installs it), so a plain `cargo test` skips it:
//! `cargo test --test browser -- --ignored` runs it.

mod support;

use std::path::Path;
use std::process::Command;
use support::{server_config, TestClient, TestServer};

/// Headless Chromium on `url` for a few seconds of virtual time (so the
/// page's scripts ran and the MJPEG parts were drawn), doing `what`
/// (`--screenshot=…` or `--dump-dom`), with its profile in `profile`.
fn chromium(url: &str, profile: &Path, what: &str) -> std::process::Output {
    // Time-limited: a browser that hangs fails the test instead of stalling CI.
    Command::new("timeout")
        .args(["60", "chromium"])
        .args(support::chromium::HEADLESS)
        .args([
            "--hide-scrollbars",
            "--window-size=1280,800",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(url)
        .output()
        .expect("chromium is installed (Debian package chromium; scripts/setup.sh installs it)")
}

/// A screenshot of `url` after the page has run, as an RGB image.
fn screenshot(url: &str, dir: &Path, name: &str) -> image::RgbImage {
    let file = dir.join(name);
    let out = chromium(
        url,
        &dir.join(format!("profile-{name}")),
        &format!("--screenshot={}", file.display()),
    );
    assert!(
        file.exists(),
        "chromium made no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    image::open(&file).unwrap().to_rgb8()
}

/// Pixels of the test pattern's colours: far from the page's grays.
fn colourful(p: &image::Rgb<u8>) -> bool {
    let [r, g, b] = p.0;
    r.max(g).max(b) - r.min(g).min(b) > 60
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn the_page_shows_every_client_live() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_http(server_config());
    let url = format!("http://{}/", server.http.unwrap());
    let a = TestClient::pattern(server.addr, "front-door", 640, 480, 30.0);
    let b = TestClient::pattern(server.addr, "back-door", 320, 240, 30.0);
    server.wait_frames(Some("front-door"), 3);
    server.wait_frames(Some("back-door"), 3);

    let first = screenshot(&url, tmp.path(), "first.png");
    server.wait_frames(Some("front-door"), 15);
    let second = screenshot(&url, tmp.path(), "second.png");
    first.save("target/live-view-first.png").ok();
    second.save("target/live-view-second.png").ok();

    // Both tiles show video: a large share of the window is pattern colour.
    let shown = first.pixels().filter(|p| colourful(p)).count();
    assert!(
        shown > 2 * 300 * 200,
        "only {shown} video pixels: see target/live-view-first.png"
    );
    // And it moves: the video pixels differ between the two screenshots.
    let moved = first
        .pixels()
        .zip(second.pixels())
        .filter(|(p, q)| (colourful(p) || colourful(q)) && p != q)
        .count();
    assert!(
        moved > shown / 10,
        "the video did not move ({moved} of {shown} pixels changed): see target/live-view-*.png"
    );
    a.stop().unwrap();
    b.stop().unwrap();
    server.stop();
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn a_camera_whose_frames_are_all_stale_is_said_to_be_so() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = server_config();
    config.max_age = std::time::Duration::from_micros(1); // nothing is that fresh
    let server = TestServer::start_http(config);
    let url = format!("http://{}/", server.http.unwrap());
    let cam = TestClient::pattern(server.addr, "late-cam", 320, 240, 30.0);
    // The page after its scripts ran, as the browser has it.
    let deadline = std::time::Instant::now() + support::WAIT;
    let dom = loop {
        let out = chromium(&url, &tmp.path().join("profile"), "--dump-dom");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.contains("late-cam") || std::time::Instant::now() > deadline {
            break dom;
        }
    };
    assert!(dom.contains("all frames stale: age p99"), "{dom}");
    assert!(dom.contains("threshold 0.0 ms"), "{dom}");
    assert!(dom.contains("320×240"), "the frame size is shown: {dom}");
    cam.stop().unwrap();
    server.stop();
}

#[test]
#[ignore = "needs chromium: run by scripts/test.sh"]
fn a_camera_lost_shows_no_signal_on_the_page_until_it_is_back() {
    use framelink::wire::{Message, SourceReport, CAP_SOURCE_STATE};
    let server = TestServer::start_http(server_config());
    let http = server.http.unwrap();
    let mut peer = support::RawPeer::connect(server.addr);
    assert!(matches!(
        peer.hello_with("porch", None, CAP_SOURCE_STATE),
        Some(Message::Welcome(_))
    ));
    let mut page = support::chromium::Chromium::open(&format!("http://{http}/"), &[]);
    let tile = "document.querySelector('.tile .nosignal')";
    page.wait_for(
        &format!("{tile} !== null"),
        support::WAIT,
        "the client's tile",
    );
    assert_eq!(
        page.eval(&format!("{tile}.hidden")),
        serde_json::json!(true)
    );
    let say = |peer: &mut support::RawPeer, up: bool| {
        let report = Message::Source(SourceReport {
            up,
            for_us: 2_000_000,
            text: if up {
                String::new()
            } else {
                "no frame for 2.0 s".into()
            },
        });
        peer.writer.send(false, &[&report]).unwrap();
    };
    say(&mut peer, false);
    page.wait_for(&format!("!{tile}.hidden"), support::WAIT, "NO SIGNAL shown");
    let text = page.eval(&format!("{tile}.innerText"));
    let text = text.as_str().unwrap();
    assert!(text.contains("NO SIGNAL"), "{text}");
    assert!(text.contains("camera lost since "), "{text}");
    assert!(text.contains("no frame for 2.0 s"), "{text}");
    say(&mut peer, true);
    page.wait_for(&format!("{tile}.hidden"), support::WAIT, "NO SIGNAL gone");
    server.stop();
}

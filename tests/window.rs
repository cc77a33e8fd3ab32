//! The server's window, under a virtual X display (Xvfb): it opens, and a
//! screenshot shows the client's moving test pattern. Needs `Xvfb` and `xwd`
//! (Debian: xvfb, x11-apps; scripts/setup.sh installs them), so a plain
//! `cargo test` skips it: `cargo test --test window -- --ignored` runs it.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// Kills the child when dropped.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Xvfb on a display number of its own choosing (`-displayfd`:
/// it writes the number once it accepts connections, so tests running in
/// parallel, or an X server left by an earlier run, never collide) and
/// waits for it, at most [`WAIT`] (the wait ends sooner if Xvfb exits).
fn xvfb() -> (Killed, String) {
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1280x720x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Xvfb is installed (Debian package xvfb; scripts/setup.sh installs it)");
    let out = support::Collected::read(child.stdout.take().unwrap());
    let err = support::Collected::read(child.stderr.take().unwrap());
    let child = Killed(child);
    let said = out.wait_for("\n", WAIT).unwrap_or_default();
    match said.trim().parse::<u32>() {
        Ok(n) => (child, format!(":{n}")),
        Err(_) => panic!(
            "Xvfb did not start within {WAIT:?}; it said: {}",
            err.text()
        ),
    }
}

/// A screenshot of the whole screen as (width, height, RGB bytes), from `xwd`.
fn screenshot(display: &str) -> (usize, usize, Vec<u8>) {
    // Time-limited: a stuck X server fails the test instead of stalling CI.
    let out = Command::new("timeout")
        .args(["20", "xwd", "-root", "-silent", "-display", display])
        .output()
        .expect("xwd is installed (Debian package x11-apps)");
    assert!(out.status.success(), "xwd failed");
    parse_xwd(&out.stdout)
}

/// Decodes a 24/32-bit TrueColor XWD dump (what xwd gives of an Xvfb screen).
fn parse_xwd(b: &[u8]) -> (usize, usize, Vec<u8>) {
    let be = |i: usize| u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap()) as usize;
    let (header, width, height) = (be(0), be(4), be(5));
    let (byte_order, bits_per_pixel, bytes_per_line, ncolors) = (be(7), be(11), be(12), be(19));
    assert_eq!(bits_per_pixel, 32, "expected a 32-bit dump");
    let data = &b[header + ncolors * 12..];
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let p = &data[y * bytes_per_line + x * 4..][..4];
            let v = if byte_order == 0 {
                u32::from_le_bytes(p.try_into().unwrap())
            } else {
                u32::from_be_bytes(p.try_into().unwrap())
            };
            rgb.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
        }
    }
    (width, height, rgb)
}

#[test]
#[ignore = "needs Xvfb and xwd: run with --ignored (scripts/test.sh does)"]
fn the_window_shows_the_moving_test_pattern() {
    let (_x, display) = xvfb();
    let _running = window_and_client(
        &display,
        &[
            "--source",
            "test-pattern",
            "--width",
            "640",
            "--height",
            "480",
            "--name",
            "xvfb-cam",
        ],
    );

    // Wait until the screen shows the pattern: many distinct colours (the
    // gradient), then take a second shot and see it moved.
    let deadline = Instant::now() + WAIT;
    let first = loop {
        let shot = screenshot(&display);
        if colours(&shot.2) > 2000 {
            break shot;
        }
        assert!(
            Instant::now() < deadline,
            "the window never showed the pattern"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    };
    let second = loop {
        let shot = screenshot(&display);
        let changed = shot.2.iter().zip(&first.2).filter(|(a, b)| a != b).count();
        if changed > shot.2.len() / 20 {
            break shot;
        }
        assert!(
            Instant::now() < deadline,
            "the picture in the window did not move"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("window.png");
    image::save_buffer(
        &out,
        &second.2,
        second.0 as u32,
        second.1 as u32,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    eprintln!("screenshot: {}", out.display());
}

/// A server showing its window on `display`, and a client streaming to it
/// with `client_args` (both killed when dropped).
fn window_and_client(display: &str, client_args: &[&str]) -> (Killed, Killed) {
    let (server, out, _err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-server"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--duration",
            "40",
            "--stats-interval",
            "0",
        ],
        None,
        &[("DISPLAY", display)],
    );
    let server = Killed(server);
    let addr = support::listening_address(&out).to_string();
    let client = Command::new(env!("CARGO_BIN_EXE_framelink-client"))
        .args(client_args)
        .args(["--stats-interval", "0", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (server, Killed(client))
}

/// Distinct colours on the screen (5 bits a channel).
fn colours(rgb: &[u8]) -> usize {
    rgb.chunks(3)
        .map(|p| (p[0] >> 3, p[1] >> 3, p[2] >> 3))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Takes screenshots until `ok` holds for one (failing after [`WAIT`]).
fn screen_until(display: &str, what: &str, ok: impl Fn(&[u8]) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if ok(&screenshot(display).2) {
            return;
        }
        assert!(Instant::now() < deadline, "the window never showed {what}");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs Xvfb and xwd: run with --ignored (scripts/test.sh does)"]
fn a_camera_lost_is_a_dimmed_no_signal_tile_until_it_is_back() {
    let (_x, display) = xvfb();
    let tmp = tempfile::tempdir().unwrap();
    let cam = tmp.path().join("cam");
    std::fs::create_dir(&cam).unwrap();
    std::fs::write(cam.join("frame.jpg"), support::jpeg(640, 480)).unwrap();
    let cam_arg = cam.to_str().unwrap();
    let _running = window_and_client(
        &display,
        &[
            "--source",
            cam_arg,
            "--fps",
            "10",
            "--source-timeout",
            "1",
            "--name",
            "porch",
        ],
    );
    let white = |rgb: &[u8]| rgb.chunks(3).filter(|p| p == &[255, 255, 255]).count();
    screen_until(&display, "the picture", |rgb| colours(rgb) > 1000);
    let label_only = white(&screenshot(&display).2);

    let away = tmp.path().join("away");
    std::fs::rename(&cam, &away).unwrap();
    // The picture dimmed (few colours left) and NO SIGNAL written over it.
    screen_until(&display, "NO SIGNAL", |rgb| {
        colours(rgb) < 600 && white(rgb) > label_only + 1000
    });
    std::fs::rename(&away, &cam).unwrap();
    screen_until(&display, "the picture again", |rgb| {
        colours(rgb) > 1000 && white(rgb) < label_only + 500
    });
}

#[test]
#[ignore = "needs Xvfb: run with --ignored (scripts/test.sh does)"]
fn losing_the_display_leaves_the_server_serving_headless() {
    let (x, display) = xvfb();
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    let (mut server, out, err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-server"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--stats-interval",
            "0",
            "--summary-json",
            summary.to_str().unwrap(),
        ],
        None,
        &[("DISPLAY", display.as_str())],
    );
    let addr = support::listening_address(&out);
    let client = support::TestClient::pattern(addr, "cam", 320, 240, 30.0);
    err.wait_for("connected: cam", WAIT)
        .expect("the client connected");
    drop(x); // the X server goes away
    err.wait_for("the display went away", WAIT)
        .unwrap_or_else(|| panic!("a warning, not an exit: {}", err.text()));
    // Still serving: a frame from a new client is accepted.
    let mut peer = support::RawPeer::connect(addr);
    let Some(framelink::wire::Message::Welcome(_)) = peer.hello("late", None) else {
        panic!("a client after the loss is welcomed")
    };
    let Some(framelink::wire::Message::Ticket(ticket)) = peer.read() else {
        panic!("a TICKET")
    };
    let jpeg = support::jpeg(64, 48);
    let h = support::frame_header(1, 64, 48, jpeg.len());
    peer.writer.send_frame(&h, &jpeg, ticket).unwrap();
    loop {
        match peer.read() {
            Some(framelink::wire::Message::Verdict(v)) => {
                assert_eq!(v.outcome, framelink::wire::Outcome::Accepted);
                break;
            }
            Some(framelink::wire::Message::Ticket(_)) => continue,
            other => panic!("expected a VERDICT, got {other:?}"),
        }
    }
    client.stop().unwrap();
    // SAFETY: kill(2) with SIGINT on our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
    let status = support::wait_exit(&mut server, "the server");
    assert!(status.success(), "{}", err.text());
    assert!(out.wait_end(WAIT).contains("summary: "));
    assert!(summary.exists());
}

//! The sources a user has besides a camera: an MJPEG stream on standard
//! input (fed by the test, and by ffmpeg), MJPEG over HTTP (a small server
//! in the test, and framelink's own live view as a relay), one JPEG file,
//! and PNG files in a folder. Stream frames arrive byte for byte as sent.

mod support;

use framelink::client::source::SourceKind;
use framelink::client::ClientConfig;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use support::{server_config, TestClient, TestServer, WAIT};

/// A test-pattern-like JPEG of `w` x `h` with `seed` in its pixels.
fn frame(w: u32, h: u32, seed: u8) -> Vec<u8> {
    use framelink::media::encode::Encoder;
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| [(i % w) as u8 ^ seed, (i / w) as u8, seed])
        .collect();
    let mut out = Vec::new();
    framelink::media::encode::ImageEncoder::new(85)
        .encode(&rgb, w, h, &mut out)
        .unwrap();
    out
}

fn client_of(server: &TestServer, kind: SourceKind) -> ClientConfig {
    let mut c = ClientConfig::test_pattern(server.addr.to_string(), 320, 240, 30.0);
    c.source.kind = kind;
    c
}

/// The client program reading `--source -`, named `name`, and its stderr.
fn stdin_client(server: &TestServer, name: &str) -> (std::process::Child, support::Collected) {
    let mut client = Command::new(env!("CARGO_BIN_EXE_framelink-client"))
        .args(["--source", "-", "--stats-interval", "0", "--name", name])
        .arg(server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = support::Collected::read(client.stderr.take().unwrap());
    (client, err)
}

#[test]
fn mjpeg_on_standard_input_is_sent_byte_for_byte_and_its_end_ends_the_run() {
    let server = TestServer::start(server_config());
    let (mut client, err) = stdin_client(&server, "pipe");
    let mut pipe = client.stdin.take().unwrap();
    // Each frame with a little junk before it, as a muxer may leave; one
    // at a time, each waited for at the server.
    for seed in 0..5u8 {
        let sent = frame(160 + 16 * seed as u32, 120, seed);
        pipe.write_all(b"\r\n--frame\r\n\r\n").unwrap();
        pipe.write_all(&sent).unwrap();
        pipe.flush().unwrap();
        let got = server.next_frame(Some("pipe"));
        assert_eq!(&got.jpeg[..], &sent[..], "frame {seed} arrived as sent");
        assert_eq!((got.width, got.height), (160 + 16 * seed as u16, 120));
    }
    drop(pipe); // the writer ends: so does the client, cleanly
    let status = support::wait_exit(&mut client, "the client");
    let err = err.wait_end(WAIT);
    assert!(status.success(), "{err}");
    assert!(err.contains("standard input ended after 5 frames"), "{err}");
    server.stop();
}

/// A stream that ends at once (a short file piped in) still gets its newest
/// frame to the server: the run waits for it to go out instead of ending
/// before the first connection is made.
#[test]
fn a_stream_that_ends_at_once_still_sends_its_newest_frame() {
    let server = TestServer::start(server_config());
    let (mut client, err) = stdin_client(&server, "short");
    let (first, last) = (frame(32, 24, 1), frame(48, 24, 2));
    let both = [&first[..], &last[..]].concat();
    // One write of at most PIPE_BUF bytes: the client reads both at once.
    assert!(both.len() <= 4096, "{} bytes", both.len());
    let mut pipe = client.stdin.take().unwrap();
    pipe.write_all(&both).unwrap();
    drop(pipe);
    let status = support::wait_exit(&mut client, "the client");
    let err = err.wait_end(WAIT);
    assert!(status.success(), "{err}");
    let got = server.next_frame(Some("short"));
    assert_eq!(&got.jpeg[..], &last[..], "the newest frame, as sent");
    assert!(err.contains("standard input ended after 1 frame"), "{err}");
    server.stop();
}

#[test]
fn ffmpeg_piping_mjpeg_into_the_client_streams() {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        panic!("ffmpeg is not installed (Debian package ffmpeg; scripts/setup.sh installs it)");
    }
    let server = TestServer::start(server_config());
    let ffmpeg = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            "20",
            "-f",
            "mjpeg",
            "-q:v",
            "3",
            "-",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ffmpeg = Killed(ffmpeg);
    let client = Command::new(env!("CARGO_BIN_EXE_framelink-client"))
        .args(["--source", "-", "--stats-interval", "0", "--name", "ffmpeg"])
        .arg(server.addr.to_string())
        .stdin(ffmpeg.0.stdout.take().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _client = Killed(client);
    let frames = server.wait_frames(Some("ffmpeg"), 10);
    assert!(frames.iter().all(|f| (f.width, f.height) == (320, 240)));
    server.stop();
}

#[test]
fn an_ffmpeg_input_streams_through_the_client_and_its_end_ends_the_run() {
    let server = TestServer::start(server_config());
    let (mut client, _out, err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-client"),
        &[
            "--source",
            "ffmpeg:-re -f lavfi -i testsrc=size=320x240:rate=30 -t 2",
            "--stats-interval",
            "0",
            "--name",
            "lavfi",
            &server.addr.to_string(),
        ],
        None,
        &[],
    );
    let frames = server.wait_frames(Some("lavfi"), 10);
    assert!(frames.iter().all(|f| (f.width, f.height) == (320, 240)));
    let status = support::wait_exit(&mut client, "the client");
    let err = err.wait_end(WAIT);
    assert!(status.success(), "{err}");
    assert!(err.contains("ended after"), "{err}");
    server.stop();
}

/// The children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn the_ffmpeg_child_dies_with_a_killed_client() {
    // ffmpeg waits on a FIFO nobody writes: it never writes a byte, so no
    // broken pipe would end it (a stalled camera looks the same). Only the
    // kernel's parent-death signal can.
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("silent");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let source = format!(
        "ffmpeg:-f rawvideo -pix_fmt gray -video_size 16x16 -i '{}'",
        fifo.display()
    );
    let (mut client, _out, _err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-client"),
        &["--source", &source, "--stats-interval", "0", "127.0.0.1:9"],
        None,
        &[],
    );
    let deadline = std::time::Instant::now() + WAIT;
    // The ffmpeg reading the FIFO (not the `ffmpeg -version` probe before it).
    let reading = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.contains("rawvideo"))
    };
    let ffmpeg = loop {
        if let Some(&one) = children(client.id()).iter().find(|p| reading(p)) {
            break one;
        }
        assert!(std::time::Instant::now() < deadline, "no ffmpeg child");
        std::thread::park_timeout(std::time::Duration::from_millis(20));
    };
    client.kill().unwrap(); // SIGKILL: no chance to clean up
    client.wait().unwrap();
    while !gone(ffmpeg) {
        assert!(
            std::time::Instant::now() < deadline,
            "ffmpeg outlived the client"
        );
        std::thread::park_timeout(std::time::Duration::from_millis(20));
    }
}

#[test]
fn an_rtsp_camera_is_read_through_ffmpeg_over_tcp() {
    let kind: SourceKind = "rtsp://10.0.0.9:554/stream1".parse().unwrap();
    let SourceKind::Ffmpeg(input) = &kind else {
        panic!("{kind:?}")
    };
    assert_eq!(
        input.args,
        "-rtsp_transport tcp -i 'rtsp://10.0.0.9:554/stream1'"
    );
    assert!(input.live, "a camera that drops the stream is opened again");
    assert_eq!(kind.to_string(), "rtsp://10.0.0.9:554/stream1");
    let kind: SourceKind = "ffmpeg:-i clip.mp4".parse().unwrap();
    assert!(matches!(&kind, SourceKind::Ffmpeg(i) if i.args == "-i clip.mp4" && !i.live));
}

/// Kills the child when dropped.
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `frames` once as `multipart/x-mixed-replace` to the first GET,
/// each part with a Content-Length or without, then holds the connection.
fn mjpeg_http_server(frames: Vec<Vec<u8>>) -> (String, crossbeam_channel::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/video.mjpg", listener.local_addr().unwrap());
    let (next_tx, next) = crossbeam_channel::bounded::<()>(0);
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut head);
        s.write_all(
            b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=camframe\r\n\r\n",
        )
        .unwrap();
        for (i, f) in frames.iter().enumerate() {
            // Sent when the test asks: one frame at a time.
            if next.recv_timeout(WAIT).is_err() {
                return;
            }
            let mut part = b"--camframe\r\nContent-Type: image/jpeg\r\n".to_vec();
            if i % 2 == 0 {
                part.extend(format!("Content-Length: {}\r\n", f.len()).bytes());
            }
            part.extend(b"\r\n");
            part.extend(f);
            part.extend(b"\r\n");
            if s.write_all(&part).is_err() {
                return;
            }
        }
        let _ = next.recv_timeout(WAIT);
    });
    (url, next_tx)
}

#[test]
fn mjpeg_over_http_is_sent_byte_for_byte() {
    let frames: Vec<Vec<u8>> = (0..4u8)
        .map(|s| frame(200, 100 + 8 * s as u32, s))
        .collect();
    let (url, next) = mjpeg_http_server(frames.clone());
    let server = TestServer::start(server_config());
    let mut c = client_of(&server, SourceKind::Http(url));
    c.name = "ipcam".into();
    let client = TestClient::start(c);
    for f in &frames {
        next.send(()).unwrap();
        let got = server.next_frame(Some("ipcam"));
        assert_eq!(&got.jpeg[..], &f[..]);
    }
    client.stop().unwrap();
    server.stop();
}

#[test]
fn a_page_that_is_not_a_stream_is_refused_at_start() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut head);
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html></html>");
    });
    let server = TestServer::start(server_config());
    let e = framelink::client::run(
        client_of(&server, SourceKind::Http(url)),
        framelink::shutdown::Shutdown::new(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("not an MJPEG stream"), "{e:#}");
    server.stop();
}

#[test]
fn the_live_view_of_one_server_is_a_source_for_another() {
    let first = TestServer::start_http(server_config());
    let cam = TestClient::pattern(first.addr, "cam", 320, 240, 30.0);
    first.wait_frames(Some("cam"), 2);
    // The first client's id on the first server is 1.
    let url = format!("http://{}/stream/1.mjpg", first.http.unwrap());
    let second = TestServer::start(server_config());
    let mut c = client_of(&second, SourceKind::Http(url));
    c.name = "relay".into();
    let relay = TestClient::start(c);
    let frames = second.wait_frames(Some("relay"), 5);
    assert!(frames.iter().all(|f| (f.width, f.height) == (320, 240)));
    relay.stop().unwrap();
    cam.stop().unwrap();
    second.stop();
    first.stop();
}

#[test]
fn one_jpeg_file_is_sent_again_and_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("still.jpg");
    let still = frame(96, 64, 7);
    std::fs::write(&path, &still).unwrap();
    let server = TestServer::start(server_config());
    let client = TestClient::start(client_of(&server, SourceKind::Folder(path)));
    let frames = server.wait_frames(None, 3);
    assert!(frames.iter().all(|f| f.jpeg[..] == still[..]));
    client.stop().unwrap();
    server.stop();
}

#[test]
fn png_files_in_a_folder_are_encoded_and_sent() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (w, h)) in [(64u32, 48u32), (80, 40)].into_iter().enumerate() {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 90]));
        img.save(dir.path().join(format!("{i}.png"))).unwrap();
    }
    let server = TestServer::start(server_config());
    let client = TestClient::start(client_of(&server, SourceKind::Folder(dir.path().into())));
    let frames = server.wait_frames(None, 4);
    let sizes: std::collections::HashSet<_> = frames.iter().map(|f| (f.width, f.height)).collect();
    assert_eq!(sizes, [(64, 48), (80, 40)].into_iter().collect());
    assert!(frames.iter().all(|f| f.jpeg.starts_with(&[0xFF, 0xD8])));
    client.stop().unwrap();
    server.stop();
}

#[test]
fn a_still_scene_is_sent_once_in_n_plus_one_frames_with_drop_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("still.jpg");
    std::fs::write(&path, frame(96, 64, 7)).unwrap();
    let server = TestServer::start(server_config());
    let mut c = client_of(&server, SourceKind::Folder(path));
    c.drop_same_frames = Some(4);
    let client = TestClient::start(c);
    // The camera is still heard from: a frame at least every fifth capture.
    server.wait_frames(None, 6);
    let summary = client.stop().unwrap();
    let unchanged = summary.figures.frames_unchanged.unwrap();
    let sent = summary.figures.frames_sent.unwrap();
    assert!(
        unchanged >= 4 * (sent - 1),
        "{unchanged} left out, {sent} sent"
    );
    assert!(
        unchanged <= 4 * sent,
        "at most 4 in a row: {unchanged} left out, {sent} sent"
    );
    server.stop();
}

//! A camera lost and back, with the connection up through it: a folder
//! moved away and back, the ffmpeg child killed, an HTTP camera stopped and
//! started again, and a USB camera unplugged (a double of the device the
//! camera thread reads). The server is told (SOURCE), its sinks, `/stats.json`
//! and `/metrics` say so, and the client's summary counts the outage.

mod support;

#[cfg(feature = "camera")]
use framelink::client::source::camera::{CameraSource, Device, Raw};
use framelink::client::source::{ffmpeg, SourceKind};
use framelink::client::{ClientConfig, ClientSummary};
use framelink::wire::{self, GoodbyeCode, Message, SourceReport};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{http_get, server_config, RawPeer, TestClient, TestServer, WAIT};

fn config(server: &TestServer, name: &str, kind: SourceKind, fps: f64) -> ClientConfig {
    let mut c = ClientConfig::test_pattern(server.addr.to_string(), 160, 120, fps);
    c.name = name.into();
    c.source.kind = kind;
    c.source_timeout = Duration::from_secs(1);
    c
}

/// The client in `/stats.json` named `name`.
fn stats_of(http: SocketAddr, name: &str) -> serde_json::Value {
    let (status, _, body) = http_get(http, "/stats.json");
    assert_eq!(status, 200);
    let s: serde_json::Value = serde_json::from_slice(&body).unwrap();
    s["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {s}"))
        .clone()
}

/// `framelink_source_up{client="name"}`'s value in `/metrics`.
fn source_up_metric(http: SocketAddr, name: &str) -> Option<String> {
    let (_, _, body) = http_get(http, "/metrics");
    let text = String::from_utf8(body).unwrap();
    let key = format!("framelink_source_up{{client=\"{name}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key).map(str::to_string))
}

/// Waits for `name`'s camera to be said lost, and returns why.
fn lost_because(server: &TestServer, name: &str) -> String {
    server.wait_source(name, true).lost.expect("a reason")
}

/// Waits for `name`'s camera to be said back, then for a frame of it that
/// arrived after `since`.
fn back_and_streaming(server: &TestServer, name: &str, since: Instant) {
    server.wait_source(name, false);
    while server.next_frame(Some(name)).at <= since {}
}

/// The outage as the client's summary counts it: one, over one connection.
fn one_outage(summary: &ClientSummary, at_least: Duration) {
    assert_eq!(
        summary.connections, 1,
        "the connection stayed up: {summary:?}"
    );
    assert_eq!(summary.source_outages, 1, "{summary:?}");
    assert!(
        summary.source_lost_s >= at_least.as_secs_f64(),
        "lost for {} s, at least {at_least:?}",
        summary.source_lost_s
    );
}

#[test]
fn a_folder_moved_away_and_back_is_a_camera_lost_and_back_on_one_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let cam = tmp.path().join("cam");
    std::fs::create_dir(&cam).unwrap();
    for i in 0..3u8 {
        std::fs::write(
            cam.join(format!("{i}.jpg")),
            support::jpeg(64, 48 + u32::from(i)),
        )
        .unwrap();
    }
    let server = TestServer::start_http(server_config());
    let http = server.http.unwrap();
    let client = TestClient::start(config(
        &server,
        "folder",
        SourceKind::Folder(cam.clone()),
        20.0,
    ));
    server.wait_frames(Some("folder"), 3);
    assert_eq!(stats_of(http, "folder")["source_up"], true);
    assert_eq!(source_up_metric(http, "folder").as_deref(), Some("1"));

    let away = tmp.path().join("away");
    std::fs::rename(&cam, &away).unwrap();
    let lost_at = Instant::now();
    let why = lost_because(&server, "folder");
    assert!(why.contains("usable"), "{why}");
    let c = stats_of(http, "folder");
    assert_eq!(c["source_up"], false, "{c}");
    assert_eq!(c["source_outages"], 1, "{c}");
    let since = c["source_lost_since"].as_str().unwrap();
    assert_eq!(since.len(), 8, "HH:MM:SS: {since}");
    assert!(
        c["source_problem"].as_str().unwrap().contains("usable"),
        "{c}"
    );
    assert_eq!(source_up_metric(http, "folder").as_deref(), Some("0"));

    std::fs::rename(&away, &cam).unwrap();
    // Frames flow again, on the same connection.
    back_and_streaming(&server, "folder", lost_at);
    assert_eq!(stats_of(http, "folder")["source_up"], true);
    assert_eq!(source_up_metric(http, "folder").as_deref(), Some("1"));
    let summary = client.stop().unwrap();
    one_outage(&summary, Duration::from_millis(100));
    let folder = server
        .stop()
        .clients
        .into_iter()
        .find(|c| c.name == "folder")
        .unwrap();
    assert_eq!(
        folder.source_outages, 1,
        "the server's summary counts it too"
    );
    assert_eq!(folder.source_up, None, "not connected at the end");
}

/// The pids of this test process's children whose command line has `needle`.
fn children_running(needle: &str) -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let parent = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| Some(s.rsplit(')').next()?.split_whitespace().nth(1)?.to_string()));
            let cmd = std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
            parent.as_deref() == Some(me.as_str()) && cmd.contains(needle)
        })
        .collect()
}

#[test]
fn the_ffmpeg_child_killed_is_a_camera_lost_and_started_again() {
    // A size of its own, to tell this test's ffmpeg from others'.
    let input = ffmpeg::Input::args("-re -f lavfi -i testsrc=size=176x144:rate=20");
    let server = TestServer::start(server_config());
    let client = TestClient::start(config(&server, "lavfi", SourceKind::Ffmpeg(input), 20.0));
    server.wait_frames(Some("lavfi"), 3);
    let first = children_running("176x144");
    assert_eq!(first.len(), 1, "one ffmpeg: {first:?}");
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(first[0], libc::SIGKILL) }, 0);
    let lost_at = Instant::now();
    let why = lost_because(&server, "lavfi");
    assert!(why.contains("was killed (signal 9)"), "{why}");
    back_and_streaming(&server, "lavfi", lost_at);
    let again = children_running("176x144");
    assert!(
        again.len() == 1 && again != first,
        "a new ffmpeg: {again:?}"
    );
    let summary = client.stop().unwrap();
    one_outage(&summary, Duration::ZERO);
    server.stop();
}

/// An MJPEG camera over HTTP on `port` (0: any), sending a frame every
/// 50 ms to each viewer until stopped.
struct HttpCamera {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpCamera {
    fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let quit = stop.clone();
        let frame = support::jpeg(96, 64);
        let thread = std::thread::spawn(move || {
            let mut viewers = Vec::new();
            while !quit.load(Ordering::SeqCst) {
                if let Ok((mut s, _)) = listener.accept() {
                    s.set_nonblocking(false).unwrap();
                    s.set_write_timeout(Some(WAIT)).unwrap();
                    s.set_read_timeout(Some(WAIT)).unwrap();
                    let mut head = [0u8; 1024];
                    let _ = std::io::Read::read(&mut s, &mut head);
                    let ok = s.write_all(
                        b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n",
                    );
                    if ok.is_ok() {
                        viewers.push(s);
                    }
                }
                let mut part = format!(
                    "--f\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    frame.len()
                )
                .into_bytes();
                part.extend(&frame);
                part.extend(b"\r\n");
                viewers.retain_mut(|s| s.write_all(&part).is_ok());
                std::thread::sleep(Duration::from_millis(50)); // the camera's frame rate
            }
            // Dropping the sockets and the listener: the camera is gone.
        });
        HttpCamera {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u16 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.addr.port()
    }
}

#[test]
fn an_http_camera_stopped_and_started_again_is_a_camera_lost_and_back() {
    let camera = HttpCamera::start(0);
    let url = format!("http://{}/video.mjpg", camera.addr);
    let server = TestServer::start(server_config());
    let client = TestClient::start(config(&server, "ipcam", SourceKind::Http(url), 20.0));
    server.wait_frames(Some("ipcam"), 3);
    let port = camera.stop();
    let lost_at = Instant::now();
    let why = lost_because(&server, "ipcam");
    assert!(why.starts_with("no frame for"), "{why}");
    let _camera = HttpCamera::start(port);
    back_and_streaming(&server, "ipcam", lost_at);
    let summary = client.stop().unwrap();
    one_outage(&summary, Duration::from_secs(1));
    server.stop();
}

/// A USB camera's device: `frames` MJPEG frames at 50 fps, then unplugged
/// (the error V4L2 gives for a device gone), or for ever.
#[cfg(feature = "camera")]
struct UsbDouble {
    frames: Option<usize>,
    jpeg: Vec<u8>,
}

#[cfg(feature = "camera")]
impl Device for UsbDouble {
    fn frame(&mut self) -> Result<Raw, String> {
        if let Some(n) = self.frames.as_mut() {
            if *n == 0 {
                return Err("Could not capture frame: No such device (os error 19)".into());
            }
            *n -= 1;
        }
        std::thread::sleep(Duration::from_millis(20)); // the device's frame time
        Ok(Raw::mjpeg(self.jpeg.clone(), 80, 60))
    }
}

#[cfg(feature = "camera")]
#[test]
fn a_usb_camera_unplugged_and_plugged_in_again_is_opened_again() {
    let server = TestServer::start(server_config());
    let opens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = opens.clone();
    let image = support::jpeg(80, 60);
    // First open: a camera unplugged after 30 frames; then two tries while
    // it is away; then it is back for good.
    let reopen = Box::new(
        move || -> anyhow::Result<Box<dyn framelink::client::source::Source>> {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let frames = match n {
                0 => Some(30),
                1 | 2 => anyhow::bail!("cannot open camera 0: No such file or directory"),
                _ => None,
            };
            let jpeg = image.clone();
            let cam = CameraSource::start(0, move || {
                Ok((
                    Box::new(UsbDouble { frames, jpeg }) as Box<dyn Device>,
                    "usb double".into(),
                ))
            })?;
            Ok(Box::new(cam))
        },
    );
    let cfg = config(&server, "usb", SourceKind::Camera, 0.0);
    let stop = framelink::shutdown::Shutdown::new();
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let sd = stop.clone();
    std::thread::spawn(move || {
        let _ = done_tx.send(framelink::client::run_reopening(cfg, reopen, sd));
    });
    server.wait_frames(Some("usb"), 3);
    let lost_at = Instant::now();
    let why = lost_because(&server, "usb");
    assert!(
        why.contains("No such device (os error 19) (unplugged?)"),
        "{why}"
    );
    back_and_streaming(&server, "usb", lost_at);
    assert!(
        opens.load(Ordering::SeqCst) >= 4,
        "opened again after two failed tries"
    );
    stop.trigger();
    let summary = done.recv_timeout(WAIT).expect("the client stops").unwrap();
    // Two failed opens wait 250 + 500 ms at least.
    one_outage(&summary, Duration::from_millis(750));
    server.stop();
}

#[test]
fn source_messages_are_read_only_from_a_client_that_set_the_capability() {
    let server = TestServer::start(server_config());
    let mut peer = RawPeer::connect(server.addr);
    match peer.hello_with("raw", None, wire::CAP_SOURCE_STATE) {
        Some(Message::Welcome(w)) => {
            assert_eq!(
                w.capabilities & wire::CAP_SOURCE_STATE,
                wire::CAP_SOURCE_STATE
            )
        }
        other => panic!("{other:?}"),
    }
    let lost = Message::Source(SourceReport {
        up: false,
        for_us: 3_000_000,
        text: "unplugged".into(),
    });
    peer.writer.send(false, &[&lost]).unwrap();
    let seen = server.wait_source("raw", true);
    assert_eq!(seen.lost.as_deref(), Some("unplugged"));
    let back = Message::Source(SourceReport {
        up: true,
        for_us: 4_000_000,
        text: String::new(),
    });
    peer.writer.send(false, &[&back]).unwrap();
    server.wait_source("raw", false);

    // Without the capability a SOURCE breaks the protocol.
    let mut old = RawPeer::connect(server.addr);
    match old.hello_with("old", None, 0) {
        Some(Message::Welcome(w)) => assert_eq!(w.capabilities & wire::CAP_SOURCE_STATE, 0),
        other => panic!("{other:?}"),
    }
    old.writer.send(false, &[&lost]).unwrap();
    loop {
        match old.read() {
            Some(Message::Ticket(_)) => continue,
            Some(Message::Goodbye(g)) => {
                assert_eq!(g.code, GoodbyeCode::ProtocolError);
                assert!(g.text.contains("SOURCE"), "{}", g.text);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    server.stop();
}

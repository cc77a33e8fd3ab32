//! The server as a system service: socket activation (the listeners a
//! `.socket` unit opens, through Debian's `systemd-socket-activate`, which
//! needs no systemd running), readiness and watchdog pings on the socket
//! systemd would listen on, and logs fit for the journal.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::{spawn_program, WAIT};

const SERVER: &str = env!("CARGO_BIN_EXE_framelink-server");

/// A free loopback port (bound and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[ignore = "needs systemd-socket-activate (Debian's systemd package): run by scripts/test.sh"]
fn the_server_serves_on_the_listeners_socket_activation_hands_it() {
    let (frames, http) = (free_port(), free_port());
    let (f, h) = (format!("127.0.0.1:{frames}"), format!("127.0.0.1:{http}"));
    let (mut child, stdout, stderr) = spawn_program(
        "systemd-socket-activate",
        &[
            "-l",
            &f,
            "-l",
            &h,
            SERVER,
            "--no-display",
            "--stats-interval",
            "0",
        ],
        None,
        &[],
    );
    // The first connection starts the server, which takes both sockets
    // instead of binding its own (its --listen default, port 1998, is not used).
    let good = support::TestClient::pattern(f.parse().unwrap(), "activated", 160, 120, 30.0);
    let line = stdout
        .wait_for("listening on", WAIT)
        .unwrap_or_else(|| panic!("the server did not start: {}", stderr.text()));
    assert!(line.contains(&f), "{line}");
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, body) = support::http_get(h.parse().unwrap(), "/stats.json");
        let stats: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if stats["clients"][0]["frames_accepted"].as_u64() > Some(3) {
            assert_eq!(stats["clients"][0]["name"], "activated");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no frames through the activated sockets: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stderr.text().contains("socket activation"),
        "{}",
        stderr.text()
    );
    good.stop().unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads the notification socket's messages until `want` has come (or `WAIT`).
fn wait_message(sock: &UnixDatagram, seen: &mut Vec<String>, want: &str) -> bool {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = msg.lines().any(|l| l == want);
            seen.push(msg);
            if found {
                return true;
            }
        }
    }
    false
}

#[test]
fn the_server_says_ready_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (mut child, _stdout, stderr) = spawn_program(
        SERVER,
        &[
            "--listen",
            "127.0.0.1:0",
            "--no-display",
            "--stats-interval",
            "0",
        ],
        None,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut seen = Vec::new();
    assert!(
        wait_message(&sock, &mut seen, "READY=1"),
        "READY: {seen:?} {}",
        stderr.text()
    );
    // Pinged every 100 ms while the server serves: several within a second.
    let started = Instant::now();
    for _ in 0..3 {
        assert!(
            wait_message(&sock, &mut seen, "WATCHDOG=1"),
            "WATCHDOG: {seen:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{seen:?}");
    // Ctrl-C: it says it is stopping.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(
        wait_message(&sock, &mut seen, "STOPPING=1"),
        "STOPPING: {seen:?}"
    );
    support::wait_exit(&mut child, "the server");
}

#[test]
fn under_the_journal_logs_carry_no_timestamps_or_colours_of_their_own() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    // JOURNAL_STREAM names stderr's device and inode, as systemd sets it.
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let run = |journal: Option<&str>| {
        let mut cmd = std::process::Command::new(SERVER);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--no-display",
            "--duration",
            "0.2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        cmd.env_remove("JOURNAL_STREAM");
        if let Some(s) = journal {
            cmd.env("JOURNAL_STREAM", s);
        }
        let mut child = cmd.spawn().unwrap();
        support::wait_exit(&mut child, "the server");
        std::fs::read_to_string(&log).unwrap()
    };
    // The file is truncated but keeps its inode between the runs.
    let journal = run(Some(&stream));
    let warning = journal.lines().find(|l| l.contains("no --token")).unwrap();
    assert!(
        warning.starts_with(" WARN") || warning.starts_with("WARN"),
        "{journal}"
    );
    assert!(!journal.contains('\u{1b}'), "no colours: {journal:?}");
    let elsewhere = run(None);
    let warning = elsewhere
        .lines()
        .find(|l| l.contains("no --token"))
        .unwrap();
    assert!(warning.starts_with("20"), "a timestamp first: {elsewhere}");
}

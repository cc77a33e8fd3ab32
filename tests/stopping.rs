//! An `exec:` processor never outlives the server, however the server stops:
//! Ctrl-C while it is busy on a frame, or `kill -9`.

mod support;

use framelink::wire::{Message, Outcome};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{RawPeer, ServerProcess, WAIT};

/// A processor that starts a grandchild (its PID written to `pid_file`),
/// reads frames and never answers: busy on every frame.
fn hung_processor(pid_file: &Path) -> String {
    format!(
        "exec:sleep 1000 & echo $! > {}; cat > /dev/null",
        pid_file.display()
    )
}

/// The server with that processor, its process timeout far beyond [`WAIT`],
/// once the processor holds a frame.
fn busy_server(dir: &Path) -> (ServerProcess, i32) {
    let pid_file = dir.join("grandchild.pid");
    let processor = hung_processor(&pid_file);
    let server = ServerProcess::start(&["--processor", &processor, "--process-timeout", "300"]);
    let mut peer = RawPeer::connect(server.addr);
    assert!(matches!(peer.hello("cam", None), Some(Message::Welcome(_))));
    let Some(Message::Ticket(ticket)) = peer.read() else {
        panic!("expected a TICKET")
    };
    let jpeg = support::jpeg(64, 48);
    let header = support::frame_header(1, 64, 48, jpeg.len());
    peer.writer.send_frame(&header, &jpeg, ticket).unwrap();
    loop {
        match peer.read() {
            Some(Message::Verdict(v)) => {
                assert_eq!(v.outcome, Outcome::Accepted);
                break;
            }
            Some(Message::Ticket(_)) => continue,
            other => panic!("expected a VERDICT, got {other:?}"),
        }
    }
    let pid = wait_pid(&pid_file);
    (server, pid)
}

fn wait_pid(file: &Path) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "the processor never started");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// Alive: exists and is not a zombie waiting for a reaper.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn assert_dies(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the processor's child {pid} outlived the server"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_with_a_busy_processor_stops_at_once_and_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pid) = busy_server(dir.path());
    let started = Instant::now();
    let stderr = server.stderr.clone();
    // stop() fails unless it exits 0 with its summary within WAIT (30 s),
    // a tenth of the processor's timeout.
    let summary = server.stop();
    assert!(started.elapsed() < WAIT);
    assert_dies(pid);
    assert_eq!(summary["frames_accepted"], 1, "{summary}");
    let text = stderr.text();
    assert!(
        !text.contains("restarting it"),
        "no restart while stopping: {text}"
    );
}

#[test]
fn the_processor_dies_with_a_killed_server() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pid) = busy_server(dir.path());
    server.kill();
    assert_dies(pid);
}

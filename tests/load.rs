//! Load: many clients at once, and many connections come and gone, against
//! the server as a separate process (its memory, threads and files read from
//! /proc).

mod support;

use framelink::wire::{self, Message};
use std::time::{Duration, Instant};
use support::{RawPeer, ServerProcess, TestClient, WAIT};

/// Measured here: a peak of about 17 MB with 32 clients at 640x480 (the
/// server keeps at most a few frames and a few fixed-size histograms per
/// client; 47 MB before the histograms went from 3 to 2 significant digits).
/// The bound leaves room for allocator slack.
const MAX_RSS_KB: u64 = 64 * 1024;

#[test]
fn thirty_two_clients_all_stream_and_memory_stays_bounded() {
    let server = ServerProcess::start(&["--max-clients", "40"]);
    let clients: Vec<TestClient> = (0..32)
        .map(|i| TestClient::pattern(server.addr, &format!("cam-{i:02}"), 640, 480, 10.0))
        .collect();
    // Run long enough for each client to send many frames, watching the memory.
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        peak = peak.max(server.rss_kb());
        clients[0].shutdown.wait_timeout(Duration::from_millis(200));
    }
    let summaries: Vec<_> = clients.into_iter().map(|c| c.stop().unwrap()).collect();
    let s = server.stop();
    eprintln!("server peak RSS with 32 clients: {} KiB", peak);
    assert!(peak < MAX_RSS_KB, "server RSS {peak} KiB");
    for (i, c) in summaries.iter().enumerate() {
        assert!(
            c.figures.frames_accepted >= 10,
            "cam-{i:02}: {:?}",
            c.figures
        );
    }
    let named = s["clients"].as_array().unwrap();
    assert_eq!(named.len(), 32);
    assert!(named
        .iter()
        .all(|c| c["frames_accepted"].as_u64().unwrap() >= 10));
}

#[test]
fn a_thousand_connections_leave_threads_and_files_where_they_were() {
    let server = ServerProcess::start(&[]);
    // Warm up, then take the baseline.
    let mut p = RawPeer::connect(server.addr);
    assert!(matches!(
        p.hello("warm-up", None),
        Some(Message::Welcome(_))
    ));
    drop(p);
    let settle = |threads: u64, files: usize| {
        let deadline = Instant::now() + WAIT;
        loop {
            let (t, f) = (server.threads(), server.open_files());
            if t <= threads && f <= files {
                return (t, f);
            }
            assert!(
                Instant::now() < deadline,
                "threads {t} (from {threads}), files {f} (from {files})"
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
    };
    // The baseline may still count the warm-up's thread: that only makes it lenient.
    let (threads, files) = (server.threads(), server.open_files());
    for i in 0..1000 {
        let mut p = RawPeer::connect(server.addr);
        match i % 4 {
            // A whole handshake, then gone without a word.
            0 => assert!(matches!(p.hello("cycle", None), Some(Message::Welcome(_)))),
            // A whole handshake and a goodbye.
            1 => {
                assert!(matches!(p.hello("cycle", None), Some(Message::Welcome(_))));
                p.writer
                    .goodbye(false, wire::GoodbyeCode::ShuttingDown, "bye")
                    .unwrap();
            }
            // Half a preface.
            2 => p.write_raw(b"FL"),
            // Nothing at all.
            _ => {}
        }
    }
    let (t, f) = settle(threads, files);
    eprintln!("after 1000 connections: {t} threads (before {threads}), {f} files (before {files})");
    let s = server.stop();
    // Every whole handshake was counted as a connection of "cycle" (plus
    // the warm-up), and none of them sent a frame.
    let cycle = s["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cycle")
        .expect("the cycling client in the summary");
    assert_eq!(cycle["connections"], 500, "{cycle}");
    assert_eq!(s["frames_received"], 0, "{s}");
}

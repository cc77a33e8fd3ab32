//! A bug that panics is contained where the work is user code (a
//! processor: that frame is answered failed, every client goes on), and
//! otherwise ends the program with a message and an error, never a hang
//! or a silent half-dead server.

mod support;

use framelink::client::source::{Captured, Source};
use framelink::client::ClientConfig;
use framelink::process::FrameView;
use framelink::process::{Output, Processor};
use framelink::server::sink::Sink;
use framelink::server::Server;
use framelink::shutdown::Shutdown;
use std::net::TcpListener;
use support::{json_lines, server_config, TestClient, TestServer, WAIT};

/// Panics on every third frame, answers the others.
struct Flaky(u64);

impl Processor for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn process(&mut self, _view: &mut FrameView) -> anyhow::Result<Output> {
        self.0 += 1;
        if self.0.is_multiple_of(3) {
            panic!("flaky processor gave up on call {}", self.0);
        }
        Ok(Output::json(&self.0))
    }
}

#[test]
fn a_panicking_processor_fails_that_frame_and_processing_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_processor(server_config(), Box::new(Flaky(0)));
    let mut clients = Vec::new();
    for name in ["a", "b"] {
        let mut c = ClientConfig::test_pattern(server.addr.to_string(), 160, 120, 30.0);
        c.name = name.into();
        c.results_jsonl = Some(tmp.path().join(name));
        clients.push(TestClient::start(c));
    }
    server.wait_frames(Some("a"), 30);
    server.wait_frames(Some("b"), 30);
    for c in clients {
        c.stop().unwrap();
    }
    let s = server.stop();
    assert!(s.frames_process_failed >= 5, "{s:?}");
    assert!(s.frames_processed >= 10, "{s:?}");
    for name in ["a", "b"] {
        let lines = json_lines(&tmp.path().join(name));
        let failed: Vec<_> = lines.iter().filter(|l| l["status"] == "failed").collect();
        assert!(!failed.is_empty(), "{name}: {lines:?}");
        assert!(
            failed[0]["result"]
                .as_str()
                .unwrap()
                .contains("panicked: flaky processor"),
            "{}",
            failed[0]
        );
        // Processed results after the first failure: processing went on.
        let first = lines.iter().position(|l| l["status"] == "failed").unwrap();
        assert!(
            lines[first..].iter().any(|l| l["status"] == "processed"),
            "{name}: nothing processed after the panic"
        );
    }
}

/// A display-thread sink with a bug.
struct Buggy;

impl Sink for Buggy {
    fn name(&self) -> &str {
        "buggy"
    }
    fn frame(&mut self, _view: &mut FrameView) -> anyhow::Result<()> {
        panic!("buggy sink");
    }
}

#[test]
fn a_panic_in_the_display_thread_ends_the_server_with_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let config = framelink::server::ServerConfig {
        summary_json: Some(json.clone()),
        ..server_config()
    };
    std::thread::spawn(move || {
        let r = Server::new(listener, config)
            .sink(Box::new(Buggy))
            .run(Shutdown::new());
        let _ = done_tx.send(r);
    });
    let client = TestClient::pattern(addr, "cam", 160, 120, 30.0);
    // No shutdown is asked for: the panic alone ends the run.
    let r = done.recv_timeout(WAIT).expect("the server ended by itself");
    let err = format!("{:#}", r.unwrap_err());
    assert!(
        err.contains("the display thread failed") && err.contains("buggy sink"),
        "{err}"
    );
    assert!(json.exists(), "the summary is still written");
    let c = client.stop().unwrap();
    assert!(c.figures.frames_accepted >= 1);
}

/// A source whose capture code has a bug.
struct Broken;

impl Source for Broken {
    fn describe(&self) -> String {
        "broken".into()
    }
    fn next_frame(&mut self) -> anyhow::Result<Captured<'_>> {
        panic!("broken source");
    }
}

#[test]
fn a_panic_in_the_capture_thread_ends_the_client_with_an_error() {
    let server = TestServer::start(server_config());
    let config = ClientConfig::test_pattern(server.addr.to_string(), 160, 120, 30.0);
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let r = framelink::client::run_with_source(config, Box::new(Broken), Shutdown::new());
        let _ = tx.send(r);
    });
    let r = rx.recv_timeout(WAIT).expect("the client ended by itself");
    let err = format!("{:#}", r.unwrap_err());
    assert!(
        err.contains("capture thread") && err.contains("broken source"),
        "{err}"
    );
    server.stop();
}

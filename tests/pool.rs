//! A pool of workers behind a real nats-server: every accepted frame gets
//! exactly one RESULT, workers see only newest frames, and a worker, the
//! broker or a server going away costs answers (`failed`, with the reason),
//! never the stream.
//!
//! They need nats-server (and the Python one nats-py), which scripts/test.sh
//! installs and runs them with: `cargo test --test pool -- --ignored`.

mod support;

use framelink::client::ClientConfig;
use framelink::nats::PoolConfig;
use framelink::process::FrameView;
use framelink::process::{Output, Processor, ProcessorConfig};
use framelink::server::ServerConfig;
use framelink::shutdown::Shutdown;
use framelink::worker::{self, WorkerConfig, WorkerSummary};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};
use support::nats::NatsServer;
use support::{json_lines, json_lines_so_far, server_config, TestClient, TestServer, WAIT};

fn pool_server(nats: &NatsServer, id: &str, timeout: Duration) -> TestServer {
    let mut nc = framelink::nats::NatsConfig::new(nats.url());
    nc.name = format!("test server {id}");
    TestServer::start(ServerConfig {
        pool: Some(PoolConfig {
            nats: nc,
            server_id: id.into(),
            timeout,
        }),
        ..server_config()
    })
}

fn client(server: &TestServer, name: &str, fps: f64, jsonl: &Path) -> TestClient {
    let mut c = ClientConfig::test_pattern(server.addr.to_string(), 160, 120, fps);
    c.name = name.into();
    c.results_jsonl = Some(jsonl.into());
    TestClient::start(c)
}

/// A worker on its own thread.
struct TestWorker {
    shutdown: Shutdown,
    done: crossbeam_channel::Receiver<anyhow::Result<WorkerSummary>>,
}

impl TestWorker {
    fn start(
        nats: &NatsServer,
        name: &str,
        make: impl Fn() -> Box<dyn Processor> + Send + 'static,
    ) -> Self {
        let mut config = WorkerConfig::new(nats.url(), ProcessorConfig::default());
        config.name = name.into();
        let shutdown = Shutdown::new();
        let (tx, done) = crossbeam_channel::bounded(1);
        let sd = shutdown.clone();
        std::thread::spawn(move || {
            let _ = tx.send(worker::run_with(config, sd, || Ok(make())));
        });
        TestWorker { shutdown, done }
    }

    fn stop(self) -> WorkerSummary {
        self.shutdown.trigger();
        self.done
            .recv_timeout(WAIT)
            .expect("the worker stopped")
            .expect("the worker ran")
    }
}

/// Answers with the frame it was given and who it was from.
struct Echo(&'static str);

impl Processor for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn process(&mut self, view: &mut FrameView) -> anyhow::Result<Output> {
        Ok(Output::json(&serde_json::json!({
            "worker": self.0,
            "client": &*view.frame.client_name,
            "frame_id": view.frame.frame_id,
            "width": view.frame.width,
        })))
    }
}

/// Takes `ms` per frame.
struct Slow(u64);

impl Processor for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn process(&mut self, view: &mut FrameView) -> anyhow::Result<Output> {
        std::thread::sleep(Duration::from_millis(self.0));
        Ok(Output::json(
            &serde_json::json!({ "frame_id": view.frame.frame_id }),
        ))
    }
}

/// Polls the results file until `done` holds for its lines.
fn wait_results(jsonl: &Path, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = json_lines_so_far(jsonl);
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}: {lines:?}"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

fn with_status<'a>(lines: &'a [Value], status: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["status"] == status).collect()
}

/// Every result names a distinct frame, and every accepted frame but the
/// few in flight at the end has one.
/// One result per frame, and none owed: the client stopped cleanly, so the
/// RESULT of every frame the server accepted came before its GOODBYE.
fn exactly_one_each(lines: &[Value], summary: &framelink::client::ClientSummary) {
    let ids: Vec<u64> = lines
        .iter()
        .map(|l| l["frame_id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "one result per frame: {ids:?}"
    );
    let accepted = summary.figures.frames_accepted;
    assert_eq!(
        ids.len() as u64,
        accepted,
        "{} results for {accepted} accepted frames",
        ids.len()
    );
    let owed = summary.figures.results.as_ref().map(|r| r.results_owed);
    assert_eq!(owed, Some(0), "results owed at a clean stop");
}

fn exactly_one_result_per_frame_with(workers: usize) {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let server = pool_server(&nats, "s1", Duration::from_secs(5));
    let names = ["w0", "w1", "w2", "w3"];
    let pool: Vec<_> = names[..workers]
        .iter()
        .map(|&n| TestWorker::start(&nats, n, move || Box::new(Echo(n))))
        .collect();
    let c = client(&server, "cam", 30.0, &jsonl);
    wait_results(&jsonl, "60 processed", |l| {
        with_status(l, "processed").len() >= 60
    });
    let summary = c.stop().unwrap();
    let workers: Vec<_> = pool.into_iter().map(TestWorker::stop).collect();
    server.stop();
    let lines = json_lines(&jsonl);
    exactly_one_each(&lines, &summary);
    for l in with_status(&lines, "processed") {
        assert_eq!(l["result"]["client"], "cam", "{l}");
        assert_eq!(l["result"]["frame_id"], l["frame_id"], "{l}");
        assert_eq!(l["result"]["width"], 160, "{l}");
    }
    assert!(with_status(&lines, "failed").is_empty(), "{lines:?}");
    let processed: u64 = workers.iter().map(|w| w.frames_processed).sum();
    assert!(processed >= 60, "{workers:?}");
    for w in &workers {
        assert!(w.frames_processed > 0, "every worker got work: {workers:?}");
        assert_eq!(w.per_server.get("s1"), Some(&w.frames_processed), "{w:?}");
    }
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn every_accepted_frame_gets_exactly_one_result_through_one_worker() {
    exactly_one_result_per_frame_with(1);
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn every_accepted_frame_gets_exactly_one_result_through_three_workers() {
    exactly_one_result_per_frame_with(3);
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn a_slow_worker_gets_only_newest_frames_and_the_rest_are_skipped() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let server = pool_server(&nats, "s1", Duration::from_secs(5));
    let slow = TestWorker::start(&nats, "slow", || Box::new(Slow(200)));
    let c = client(&server, "cam", 30.0, &jsonl);
    let lines = wait_results(&jsonl, "8 processed", |l| {
        with_status(l, "processed").len() >= 8
    });
    let summary = c.stop().unwrap();
    slow.stop();
    server.stop();
    let skipped = with_status(&lines, "skipped").len();
    let processed = with_status(&lines, "processed");
    assert!(
        skipped > processed.len() * 3,
        "{skipped} skipped, {} processed",
        processed.len()
    );
    // Handed out the moment the worker asked: each processed frame waited
    // at most about one frame interval for it, never behind other frames.
    for l in &processed {
        let waited = l["wait_ms"].as_f64().unwrap();
        assert!(
            waited < 60.0,
            "a frame waited {waited} ms for the worker: {l}"
        );
    }
    exactly_one_each(&json_lines(&jsonl), &summary);
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn a_worker_killed_holding_a_frame_costs_that_frame_only() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let flag = tmp.path().join("took-a-frame");
    let server = pool_server(&nats, "s1", Duration::from_secs(1));
    let healthy = TestWorker::start(&nats, "healthy", || Box::new(Echo("healthy")));
    // Beside it, a worker whose program reads the start of its first frame, says so,
    // and never answers.
    let command = format!(
        "exec:head -c 1 >/dev/null; touch '{}'; sleep 600",
        flag.display()
    );
    let (mut doomed, _out, err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-worker"),
        &[
            "--nats",
            &nats.url(),
            "--name",
            "doomed",
            "--processor",
            &command,
            "--process-timeout",
            "600",
            "--stats-interval",
            "0",
        ],
        None,
        &[],
    );
    let c = client(&server, "cam", 30.0, &jsonl);
    let deadline = Instant::now() + WAIT;
    while !flag.exists() {
        assert!(
            Instant::now() < deadline,
            "the worker took no frame: {}",
            err.text()
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let lines = wait_results(&jsonl, "a failed frame, then 10 processed", |l| {
        l.iter().any(|r| r["status"] == "failed") && with_status(l, "processed").len() >= 10
    });
    let failed = with_status(&lines, "failed");
    assert_eq!(
        failed.len(),
        1,
        "only the frame the dead worker held: {failed:?}"
    );
    let why = failed[0]["result"].as_str().unwrap();
    assert!(
        why.contains("doomed") && why.contains("no result within 1.0 s"),
        "{why}"
    );
    let summary = c.stop().unwrap();
    healthy.stop();
    server.stop();
    exactly_one_each(&json_lines(&jsonl), &summary);
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn the_broker_killed_and_restarted_costs_answers_never_the_stream() {
    let mut nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let server = pool_server(&nats, "s1", Duration::from_secs(2));
    let w = TestWorker::start(&nats, "w", || Box::new(Echo("w")));
    let c = client(&server, "cam", 30.0, &jsonl);
    wait_results(&jsonl, "5 processed", |l| {
        with_status(l, "processed").len() >= 5
    });
    nats.kill();
    let lines = wait_results(&jsonl, "failed while NATS is down", |l| {
        l.iter().any(|r| {
            r["status"] == "failed" && r["result"].as_str().unwrap_or("").contains("unreachable")
        })
    });
    let before = lines.len();
    // Streaming went on: the server still accepts frames.
    server.wait_frames(Some("cam"), 5);
    nats.restart();
    wait_results(&jsonl, "processed again after the restart", |l| {
        l.len() > before && with_status(&l[before..], "processed").len() >= 5
    });
    let summary = c.stop().unwrap();
    w.stop();
    server.stop();
    assert_eq!(
        summary.connections, 1,
        "the client never lost its server: {summary:?}"
    );
    exactly_one_each(&json_lines(&jsonl), &summary);
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn without_a_broker_the_server_serves_and_answers_failed_and_a_worker_says_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let mut nc = framelink::nats::NatsConfig::new(url.clone());
    nc.name = "test".into();
    let server = TestServer::start(ServerConfig {
        pool: Some(PoolConfig {
            nats: nc,
            server_id: "s1".into(),
            timeout: Duration::from_secs(1),
        }),
        ..server_config()
    });
    let c = client(&server, "cam", 30.0, &jsonl);
    let lines = wait_results(&jsonl, "3 failed", |l| with_status(l, "failed").len() >= 3);
    let why = lines[0]["result"].as_str().unwrap();
    assert!(why.contains(&url) && why.contains("unreachable"), "{why}");
    c.stop().unwrap();
    server.stop();

    worker_cannot_connect(&url, "a worker without NATS");
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn two_servers_share_one_pool() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = pool_server(&nats, "a", Duration::from_secs(5));
    let b = pool_server(&nats, "b", Duration::from_secs(5));
    let w = TestWorker::start(&nats, "w", || Box::new(Echo("w")));
    let (ja, jb) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    let ca = client(&a, "cam-a", 30.0, &ja);
    let cb = client(&b, "cam-b", 30.0, &jb);
    for (j, name) in [(&ja, "cam-a"), (&jb, "cam-b")] {
        let lines = wait_results(j, "10 processed", |l| {
            with_status(l, "processed").len() >= 10
        });
        for l in with_status(&lines, "processed") {
            assert_eq!(
                l["result"]["client"], name,
                "each server's results go to its own clients: {l}"
            );
        }
    }
    ca.stop().unwrap();
    cb.stop().unwrap();
    let ws = w.stop();
    a.stop();
    b.stop();
    assert!(
        ws.per_server["a"] >= 10 && ws.per_server["b"] >= 10,
        "{ws:?}"
    );
}

#[test]
#[ignore = "needs nats-server and nats-py: scripts/test.sh installs them"]
fn the_python_worker_answers_frames() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let server = pool_server(&nats, "s1", Duration::from_secs(5));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nats/worker.py");
    let (mut py, _out, err) = support::spawn_program(
        "python3",
        &[
            script.to_str().unwrap(),
            "--nats",
            &nats.url(),
            "--name",
            "py",
        ],
        None,
        &[],
    );
    let c = client(&server, "cam", 30.0, &jsonl);
    let lines = wait_results(&jsonl, "10 processed by Python", |l| {
        with_status(l, "processed").len() >= 10
    });
    let summary = c.stop().unwrap();
    let _ = py.kill();
    let _ = py.wait();
    server.stop();
    for l in with_status(&lines, "processed") {
        let r = &l["result"];
        assert_eq!(r["worker"], "py", "{l} {}", err.text());
        assert_eq!(r["frame_id"], l["frame_id"], "{l}");
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            (Some(160), Some(120)),
            "{l}"
        );
        assert!(r["jpeg_bytes"].as_u64().unwrap() > 100, "{l}");
    }
    exactly_one_each(&json_lines(&jsonl), &summary);
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn a_spare_server_without_cameras_holds_no_worker_back() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let busy = pool_server(&nats, "busy", Duration::from_secs(5));
    let spare = pool_server(&nats, "spare", Duration::from_secs(5));
    let w = TestWorker::start(&nats, "w", || Box::new(Echo("w")));
    let c = client(&busy, "cam", 30.0, &jsonl);
    wait_results(&jsonl, "30 processed", |l| {
        with_status(l, "processed").len() >= 30
    });
    // The worker stops first: its last ask is answered with a frame.
    let ws = w.stop();
    c.stop().unwrap();
    busy.stop();
    spare.stop();
    // A server with no cameras takes no requests: none was held there
    // (and answered idle a second later) while the busy one had frames.
    assert_eq!(ws.idle_replies, 0, "{ws:?}");
    assert!(!ws.per_server.contains_key("spare"), "{ws:?}");
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn a_stopping_worker_finishes_the_frame_in_hand_and_answers_it() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let server = pool_server(&nats, "s1", Duration::from_secs(5));
    let w = TestWorker::start(&nats, "slow", || Box::new(Slow(300)));
    let c = client(&server, "cam", 30.0, &jsonl);
    wait_results(&jsonl, "3 processed", |l| {
        with_status(l, "processed").len() >= 3
    });
    // Stopped while on a frame (it is busy 300 ms of every ~300): that frame
    // is finished and answered, and no frame it took goes unanswered.
    let ws = w.stop();
    let lines = wait_results(&jsonl, "every frame the worker took answered", |l| {
        with_status(l, "processed").len() as u64 >= ws.frames_processed
    });
    c.stop().unwrap();
    server.stop();
    assert_eq!(
        with_status(&lines, "processed").len() as u64,
        ws.frames_processed,
        "{ws:?}"
    );
    assert!(with_status(&lines, "failed").is_empty(), "{lines:?}");
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn the_pool_works_through_a_tls_broker_and_an_untrusted_one_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let nats = NatsServer::start_tls(tmp.path(), &cert, &key);
    let url = format!("tls://localhost:{}", nats.port);
    let mut nc = framelink::nats::NatsConfig::new(url.clone());
    nc.tls_ca = Some(cert.clone());
    let server = TestServer::start(ServerConfig {
        pool: Some(PoolConfig {
            nats: nc.clone(),
            server_id: "s1".into(),
            timeout: Duration::from_secs(5),
        }),
        ..server_config()
    });
    let mut wc = WorkerConfig::new(url.clone(), ProcessorConfig::default());
    wc.nats = nc;
    let shutdown = Shutdown::new();
    let sd = shutdown.clone();
    let worker = std::thread::spawn(move || worker::run(wc, sd));
    let jsonl = tmp.path().join("r.jsonl");
    let c = client(&server, "cam", 30.0, &jsonl);
    wait_results(&jsonl, "5 processed over TLS", |l| {
        with_status(l, "processed").len() >= 5
    });
    c.stop().unwrap();
    shutdown.trigger();
    let ws = worker.join().unwrap().unwrap();
    server.stop();
    assert!(ws.frames_processed >= 5, "{ws:?}");

    // Without the CA the worker stops at start, saying why.
    worker_cannot_connect(&url, "a worker not trusting the broker");
}

/// The worker program given `--nats URL` alone exits 1 at start, naming
/// the broker it cannot connect to.
fn worker_cannot_connect(url: &str, what: &str) {
    let (mut w, _out, err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-worker"),
        &["--nats", url],
        None,
        &[],
    );
    let status = support::wait_exit(&mut w, what);
    assert_eq!(status.code(), Some(1));
    let text = err.wait_end(WAIT);
    assert!(
        text.contains("cannot connect to NATS") && text.contains(url),
        "{text}"
    );
}

/// Busy on its first frame until released; reports the frames it is handed.
struct BusyOnFirst {
    started: crossbeam_channel::Sender<()>,
    release: crossbeam_channel::Receiver<()>,
    handed: crossbeam_channel::Sender<u64>,
    first: bool,
}

impl Processor for BusyOnFirst {
    fn name(&self) -> &str {
        "busy"
    }
    fn process(&mut self, view: &mut FrameView) -> anyhow::Result<Output> {
        let _ = self.handed.send(view.frame.frame_id);
        if std::mem::take(&mut self.first) {
            let _ = self.started.send(());
            let _ = self.release.recv_timeout(WAIT);
        }
        Ok(Output::None)
    }
}

#[test]
#[ignore = "needs nats-server: scripts/test.sh installs it"]
fn a_frame_that_grew_stale_while_the_pool_was_busy_is_answered_expired_not_sent() {
    use framelink::wire::{Message, ResultStatus, CAP_RESULTS};
    use support::{fresh_header, read_result_of, read_until_accepted, RawPeer};
    let nats = NatsServer::start();
    let server = pool_server(&nats, "s1", Duration::from_secs(5));
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let (release_tx, release) = crossbeam_channel::bounded::<()>(1);
    let (handed_tx, handed) = crossbeam_channel::unbounded();
    let release = std::sync::Mutex::new(Some(release));
    let worker = TestWorker::start(&nats, "busy", move || {
        Box::new(BusyOnFirst {
            started: started_tx.clone(),
            release: release.lock().unwrap().take().expect("one processor"),
            handed: handed_tx.clone(),
            first: true,
        })
    });
    let mut peer = RawPeer::connect(server.addr);
    assert!(matches!(
        peer.hello_with("paused", None, CAP_RESULTS),
        Some(Message::Welcome(_))
    ));
    let mut tickets = std::collections::VecDeque::new();
    while tickets.len() < 2 {
        match peer.read() {
            Some(Message::Ticket(t)) => tickets.push_back((t, Instant::now())),
            other => panic!("expected a TICKET, got {other:?}"),
        }
    }
    let jpeg = support::jpeg(64, 48);
    let mut results = Vec::new();
    let mut id = 0;
    let mut send = |peer: &mut RawPeer,
                    tickets: &mut std::collections::VecDeque<_>,
                    results: &mut Vec<framelink::wire::ProcessResult>| {
        id += 1;
        let (t, got) = tickets.pop_front().expect("a ticket");
        peer.writer
            .send_frame(&fresh_header(id, &jpeg, got), &jpeg, t)
            .unwrap();
        tickets.push_back(read_until_accepted(peer, id, results));
        id
    };
    // Frames until the worker (asking once it is up) takes one and stays busy.
    let busy_on = loop {
        let id = send(&mut peer, &mut tickets, &mut results);
        if started.recv_timeout(Duration::from_millis(200)).is_ok() {
            break id;
        }
        assert!(id < 100, "the worker never took a frame");
    };
    let grown = send(&mut peer, &mut tickets, &mut results);
    // The camera pauses while the only worker is busy: that frame grows old.
    std::thread::sleep(server_config().max_age * 2);
    release_tx.send(()).unwrap();
    assert_eq!(
        read_result_of(&mut peer, busy_on, &mut results).status,
        ResultStatus::Processed
    );
    let r = read_result_of(&mut peer, grown, &mut results);
    assert_eq!(r.status, ResultStatus::Expired, "{r:?}");
    // The worker's request was kept for the next fresh frame.
    let fresh = send(&mut peer, &mut tickets, &mut results);
    assert_eq!(
        read_result_of(&mut peer, fresh, &mut results).status,
        ResultStatus::Processed
    );
    worker.stop();
    let s = server.stop();
    assert_eq!(handed.try_iter().collect::<Vec<_>>(), [busy_on, fresh]);
    assert_eq!(s.frames_processed, 2);
    assert!(s.frames_expired >= 1, "{}", s.frames_expired);
}

//! Processing results go back to the client that sent the frame, from the
//! built-in processors, a user's Rust processor, and an external program.

mod support;

use framelink::client::ClientConfig;
use framelink::process::exec::ExecInput;
use framelink::process::FrameView;
use framelink::process::{Output, Processor, ProcessorConfig, ProcessorKind};
use framelink::server::ServerConfig;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use support::{json_lines, server_config, TestClient, TestServer};

/// Answers with the name of the client and the frame it was given.
struct Echo;

impl Processor for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn process(&mut self, view: &mut FrameView) -> anyhow::Result<Output> {
        Ok(Output::json(&serde_json::json!({
            "client": &*view.frame.client_name,
            "frame_id": view.frame.frame_id,
        })))
    }
}

fn client_with_results(server: &TestServer, name: &str, fps: f64, jsonl: &Path) -> TestClient {
    let mut c = ClientConfig::test_pattern(server.addr.to_string(), 160, 120, fps);
    c.name = name.into();
    c.results_jsonl = Some(jsonl.into());
    TestClient::start(c)
}

fn processed(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["status"] == "processed")
        .collect()
}

#[test]
fn each_client_gets_the_results_of_its_own_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_processor(server_config(), Box::new(Echo));
    let names = ["left", "right", "middle"];
    let clients: Vec<_> = names
        .iter()
        .map(|n| client_with_results(&server, n, 30.0, &tmp.path().join(n)))
        .collect();
    for n in names {
        server.wait_frames(Some(n), 15);
    }
    let summaries: Vec<_> = clients.into_iter().map(|c| c.stop().unwrap()).collect();
    server.stop();
    for (n, summary) in names.iter().zip(&summaries) {
        let lines = json_lines(&tmp.path().join(n));
        let done = processed(&lines);
        assert!(done.len() >= 10, "{n}: {} results", done.len());
        for l in &done {
            assert_eq!(l["result"]["client"], *n, "{l}");
            assert_eq!(l["result"]["frame_id"], l["frame_id"], "{l}");
            let ms = l["capture_to_result_ms"]
                .as_f64()
                .expect("timed on the client");
            assert!(ms > 0.0 && ms < 10_000.0, "{l}");
        }
        let r = summary
            .figures
            .results
            .as_ref()
            .expect("results in the summary");
        assert_eq!(r.results_processed as usize, done.len());
        let p50 = r
            .capture_to_result_ms
            .p50
            .expect("capture to result measured");
        assert!(p50 > 0.0 && p50 < 1000.0, "{r:?}");
    }
}

/// Takes a quarter of a second per frame.
struct Slow;

impl Processor for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn process(&mut self, _view: &mut FrameView) -> anyhow::Result<Output> {
        std::thread::sleep(Duration::from_millis(250));
        Ok(Output::None)
    }
}

#[test]
fn a_frame_the_processor_never_saw_is_answered_skipped_once() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let server = TestServer::start_processor(server_config(), Box::new(Slow));
    let client = client_with_results(&server, "fast", 60.0, &jsonl);
    server.wait_frames(Some("fast"), 60);
    let c = client.stop().unwrap();
    server.stop();
    let lines = json_lines(&jsonl);
    let ids: Vec<u64> = lines
        .iter()
        .map(|l| l["frame_id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "one result per frame"
    );
    let skipped = lines.iter().filter(|l| l["status"] == "skipped").count();
    let done = processed(&lines).len();
    // A processor busy 250 ms a frame is slow, not stuck: no note.
    assert!(
        lines
            .iter()
            .filter(|l| l["status"] == "skipped")
            .all(|l| l["kind"] == "none"),
        "{lines:?}"
    );
    assert!(
        done >= 1 && skipped > done * 5,
        "{done} processed, {skipped} skipped"
    );
    // Every accepted frame is answered, except the few still in flight at the end.
    assert!(
        lines.len() as u64 + 4 >= c.figures.frames_accepted,
        "{} results for {} accepted frames",
        lines.len(),
        c.figures.frames_accepted
    );
}

/// Stuck on its first frame until the test lets it go.
struct Stuck(crossbeam_channel::Receiver<()>);

impl Processor for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    fn process(&mut self, _view: &mut FrameView) -> anyhow::Result<Output> {
        let _ = self.0.recv_timeout(support::WAIT);
        Ok(Output::None)
    }
}

#[test]
fn frames_skipped_behind_a_stuck_processor_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let (release, held) = crossbeam_channel::bounded(1);
    let server = TestServer::start_processor(server_config(), Box::new(Stuck(held)));
    let client = client_with_results(&server, "cam", 30.0, &jsonl);
    // After a second on one frame, skipped frames carry the server's note.
    let deadline = std::time::Instant::now() + support::WAIT;
    let note = loop {
        let lines = support::json_lines_so_far(&jsonl);
        if let Some(l) = lines
            .iter()
            .find(|l| l["status"] == "skipped" && l["kind"] == "text")
        {
            break l["result"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no note: {lines:?}");
        std::thread::park_timeout(Duration::from_millis(50));
    };
    assert!(note.starts_with("processor busy for "), "{note}");
    drop(release); // every later wait ends at once
    client.stop().unwrap();
    server.stop();
}

fn exec_server(command: String, input: ExecInput) -> TestServer {
    TestServer::start(ServerConfig {
        processor: ProcessorConfig {
            kind: ProcessorKind::Exec(command),
            timeout: Duration::from_secs(5),
            exec_input: input,
        },
        ..server_config()
    })
}

#[test]
fn the_shipped_python_example_answers_every_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/exec/detector.py");
    let server = exec_server(format!("python3 '{}'", script.display()), ExecInput::Gray);
    let client = client_with_results(&server, "cam", 30.0, &jsonl);
    server.wait_frames(Some("cam"), 20);
    client.stop().unwrap();
    let s = server.stop();
    assert_eq!(s.processor, "exec");
    assert_eq!(s.frames_process_failed, 0);
    let lines = json_lines(&jsonl);
    let done = processed(&lines);
    assert!(done.len() >= 10, "{lines:?}");
    for l in done {
        let mean = l["result"]["mean"].as_f64().expect("a mean brightness");
        assert!(mean > 0.0 && mean < 255.0, "{l}");
        assert_eq!(l["result"]["frame_id"], l["frame_id"]);
    }
}

#[test]
fn a_crashing_program_is_restarted_and_streaming_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    // Answers three frames, then dies.
    let crasher = r#"i=0; while IFS= read -r line; do n=$(printf '%s' "$line" | sed 's/.*"bytes":\([0-9]*\).*/\1/'); dd bs=1 count="$n" status=none >/dev/null; i=$((i+1)); if [ $i -gt 3 ]; then exit 1; fi; echo '{"alive":true}'; done"#;
    let server = exec_server(crasher.into(), ExecInput::Jpeg);
    let client = client_with_results(&server, "cam", 30.0, &jsonl);
    server.wait_frames(Some("cam"), 60);
    let c = client.stop().unwrap();
    let s = server.stop();
    assert!(c.figures.frames_accepted >= 60);
    let lines = json_lines(&jsonl);
    let first_failure = lines
        .iter()
        .position(|l| l["status"] == "failed")
        .expect("a failed result");
    assert!(
        lines[first_failure]["result"]
            .as_str()
            .unwrap()
            .contains("exited"),
        "{}",
        lines[first_failure]
    );
    assert!(
        lines[first_failure..]
            .iter()
            .any(|l| l["status"] == "processed" && l["result"]["alive"] == true),
        "answers again after a restart"
    );
    assert!(
        s.frames_process_failed >= 1 && s.frames_processed >= 6,
        "{s:?}"
    );
}

#[test]
fn a_picture_result_is_saved_by_the_client() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let pictures = tmp.path().join("pictures");
    // Sends every frame back as its result.
    let mirror = r#"while IFS= read -r line; do n=$(printf '%s' "$line" | sed 's/.*"bytes":\([0-9]*\).*/\1/'); printf '{"jpeg_bytes":%s}\n' "$n"; dd bs=4096 iflag=fullblock count=$((n / 4096)) status=none; dd bs=1 count=$((n % 4096)) status=none; done"#;
    let server = exec_server(mirror.into(), ExecInput::Jpeg);
    let mut c = ClientConfig::test_pattern(server.addr.to_string(), 160, 120, 30.0);
    c.results_jsonl = Some(jsonl.clone());
    c.save_results = Some(pictures.clone());
    let client = TestClient::start(c);
    server.wait_frames(None, 10);
    client.stop().unwrap();
    server.stop();
    let lines = json_lines(&jsonl);
    let saved: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "jpeg").collect();
    assert!(saved.len() >= 5, "{lines:?}");
    for l in saved {
        let jpeg = std::fs::read(l["file"].as_str().unwrap()).unwrap();
        assert!(framelink::media::jpeg::is_whole(&jpeg));
        assert_eq!(
            framelink::media::jpeg::dimensions(&jpeg).unwrap(),
            (160, 120)
        );
    }
}

/// Takes the given time per frame: a processor slower than the camera.
struct Takes(Duration);

impl Processor for Takes {
    fn name(&self) -> &str {
        "takes"
    }
    fn process(&mut self, _view: &mut FrameView) -> anyhow::Result<Output> {
        std::thread::sleep(self.0); // stands for real work
        Ok(Output::json(&"done"))
    }
}

/// protocol.md's contract, checked frame by frame on the wire: every frame
/// the server accepted gets exactly one RESULT, and never before its own
/// VERDICT, even when the downlink is slow (a small TCP window read in
/// small bites) and most frames are superseded before the processor gets
/// to them.
#[test]
fn every_accepted_frame_gets_exactly_one_result_after_its_verdict() {
    use framelink::wire::{self, Encoding, FrameHeader, Message, Outcome, ResultStatus};
    use std::collections::{HashMap, VecDeque};
    use std::time::Instant;
    let server = TestServer::start_processor(
        ServerConfig {
            window: 8,
            ..server_config()
        },
        Box::new(Takes(Duration::from_millis(15))),
    );
    let mut peer = support::RawPeer::connect_small_window(server.addr, 4096);
    match peer.hello_with("slow-downlink", None, wire::CAP_RESULTS) {
        Some(Message::Welcome(w)) => assert_eq!(w.capabilities, wire::CAP_RESULTS),
        other => panic!("expected WELCOME, got {other:?}"),
    }
    let jpeg = support::jpeg(32, 24);
    let mut tickets = VecDeque::new();
    // frame id -> whether its VERDICT accepted it; results per frame id.
    let mut verdicts: HashMap<u64, bool> = HashMap::new();
    let mut results: HashMap<u64, Vec<ResultStatus>> = HashMap::new();
    let (total, mut sent) = (300u64, 0u64);
    let deadline = Instant::now() + support::WAIT;
    loop {
        while sent < total {
            let Some(ticket) = tickets.pop_front() else {
                break;
            };
            sent += 1;
            let h = FrameHeader {
                frame_id: sent,
                encoding: Encoding::Jpeg,
                width: 32,
                height: 24,
                capture_to_send_us: 100,
                ticket_held_us: 0,
                payload_len: jpeg.len() as u32,
            };
            peer.writer.send_frame(&h, &jpeg, ticket).unwrap();
        }
        let accepted: Vec<u64> = verdicts.iter().filter(|v| *v.1).map(|v| *v.0).collect();
        if sent == total
            && verdicts.len() as u64 == total
            && accepted.iter().all(|id| results.contains_key(id))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted frames answered",
            accepted
                .iter()
                .filter(|id| results.contains_key(id))
                .count(),
            accepted.len()
        );
        // A slow reader: small bites, a pause between them.
        std::thread::sleep(Duration::from_micros(300));
        match peer.read() {
            Some(Message::Ticket(t)) => tickets.push_back(t),
            Some(Message::Verdict(v)) => {
                verdicts.insert(v.frame_id, v.outcome == Outcome::Accepted);
            }
            Some(Message::Result(r)) => {
                assert!(
                    verdicts.get(&r.frame_id) == Some(&true),
                    "RESULT for frame {} came before its accepting VERDICT",
                    r.frame_id
                );
                results.entry(r.frame_id).or_default().push(r.status);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let accepted: Vec<u64> = verdicts.iter().filter(|v| *v.1).map(|v| *v.0).collect();
    for id in &accepted {
        assert_eq!(results[id].len(), 1, "frame {id}: {:?}", results[id]);
    }
    assert_eq!(
        results.len(),
        accepted.len(),
        "results only for accepted frames"
    );
    let skipped = results
        .values()
        .filter(|r| r[0] == ResultStatus::Skipped)
        .count();
    assert!(
        skipped > 0 && skipped < accepted.len(),
        "both processed and skipped frames: {skipped} of {} skipped",
        accepted.len()
    );
    server.stop();
}

/// The summary of a client that stopped cleanly adds up, nothing owed:
/// every accepted frame's RESULT came before its GOODBYE, and each is a
/// line of `--results-jsonl`.
fn nothing_owed(summary: &framelink::client::ClientSummary, jsonl: &Path) {
    let r = summary.figures.results.as_ref().expect("results came");
    let text = serde_json::to_string(summary).unwrap();
    assert_eq!(r.results_owed, 0, "{text}");
    assert_eq!(
        r.results_processed
            + r.results_skipped
            + r.results_failed
            + r.results_expired
            + r.results_owed,
        summary.figures.frames_accepted,
        "{text}"
    );
    assert!(r.results_processed >= 1, "{text}");
    let ids: HashSet<u64> = json_lines(jsonl)
        .iter()
        .map(|l| l["frame_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, summary.figures.frames_accepted, "{text}");
}

#[test]
fn a_stopping_client_waits_for_the_result_a_slow_processor_owes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    // 300 ms a frame at 30 fps: at the stop, a frame is being processed.
    let server =
        TestServer::start_processor(server_config(), Box::new(Takes(Duration::from_millis(300))));
    let client = client_with_results(&server, "cam", 30.0, &jsonl);
    server.wait_frames(Some("cam"), 10);
    let summary = client.stop().unwrap();
    server.stop();
    nothing_owed(&summary, &jsonl);
}

#[test]
fn a_stopping_client_waits_for_the_result_an_exec_program_owes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("r.jsonl");
    let program = tmp.path().join("slow.py");
    std::fs::write(
        &program,
        "import json, sys, time\n\
         for line in sys.stdin.buffer:\n\
         \x20   sys.stdin.buffer.read(json.loads(line)['bytes'])\n\
         \x20   time.sleep(0.2)\n\
         \x20   print(json.dumps({'ok': True}), flush=True)\n",
    )
    .unwrap();
    let server = exec_server(format!("python3 '{}'", program.display()), ExecInput::Jpeg);
    let client = client_with_results(&server, "cam", 30.0, &jsonl);
    server.wait_frames(Some("cam"), 10);
    let summary = client.stop().unwrap();
    server.stop();
    nothing_owed(&summary, &jsonl);
}

//! Fresh when handed: a frame that grew older than the threshold in its
//! slot while the processor was busy and nothing newer came (the camera
//! paused) is answered `expired` and never handed to the processor.

mod support;

use framelink::process::{FrameView, Output, Processor};
use framelink::wire::{
    Encoding, FrameHeader, Message, Outcome, ProcessResult, ResultStatus, Ticket, CAP_RESULTS,
};
use std::time::Duration;
use support::{server_config, RawPeer, TestServer, WAIT};

/// Busy on its first frame until the test releases it; says which frames
/// it was handed, and how old each was then.
struct Busy {
    started: crossbeam_channel::Sender<()>,
    release: crossbeam_channel::Receiver<()>,
    handed: crossbeam_channel::Sender<(u64, Duration)>,
}

impl Processor for Busy {
    fn name(&self) -> &str {
        "busy"
    }
    fn process(&mut self, view: &mut FrameView) -> anyhow::Result<Output> {
        let _ = self
            .handed
            .send((view.frame.frame_id, view.frame.age_now()));
        if view.frame.frame_id == 1 {
            let _ = self.started.send(());
            let _ = self.release.recv_timeout(WAIT);
        }
        Ok(Output::None)
    }
}

/// A FRAME header for a frame captured as it is sent, answering a ticket
/// held since `got` (the client's honest hold, so only the link counts).
fn header(frame_id: u64, jpeg: &[u8], got: std::time::Instant) -> FrameHeader {
    FrameHeader {
        frame_id,
        encoding: Encoding::Jpeg,
        width: 64,
        height: 48,
        capture_to_send_us: 0,
        ticket_held_us: got.elapsed().as_micros() as u32,
        payload_len: jpeg.len() as u32,
    }
}

/// Reads until the VERDICT of `frame_id` and a TICKET have come; RESULTs
/// read on the way go to `results`.
fn accepted(
    peer: &mut RawPeer,
    frame_id: u64,
    results: &mut Vec<ProcessResult>,
) -> (Ticket, std::time::Instant) {
    let mut verdict = None;
    loop {
        match peer.read() {
            Some(Message::Verdict(v)) if v.frame_id == frame_id => verdict = Some(v.outcome),
            Some(Message::Ticket(t)) if verdict.is_some() => {
                assert_eq!(verdict, Some(Outcome::Accepted), "frame {frame_id}");
                return (t, std::time::Instant::now());
            }
            Some(Message::Result(r)) => results.push(r),
            Some(_) => {}
            None => panic!("the server closed the connection"),
        }
    }
}

/// Reads RESULTs until one for `frame_id` has come.
fn result_of(peer: &mut RawPeer, frame_id: u64, results: &mut Vec<ProcessResult>) -> ProcessResult {
    loop {
        if let Some(r) = results.iter().find(|r| r.frame_id == frame_id) {
            return r.clone();
        }
        match peer.read() {
            Some(Message::Result(r)) => results.push(r),
            Some(_) => {}
            None => panic!("the server closed the connection before RESULT {frame_id}"),
        }
    }
}

#[test]
fn a_frame_that_grew_stale_behind_a_busy_processor_is_answered_expired_not_handed() {
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let (release_tx, release) = crossbeam_channel::bounded(1);
    let (handed_tx, handed) = crossbeam_channel::unbounded();
    let server = TestServer::start_processor(
        server_config(),
        Box::new(Busy {
            started: started_tx,
            release,
            handed: handed_tx,
        }),
    );
    let max_age = server_config().max_age;
    let mut peer = RawPeer::connect(server.addr);
    let window = match peer.hello_with("paused", None, CAP_RESULTS) {
        Some(Message::Welcome(w)) => w.window,
        other => panic!("expected WELCOME, got {other:?}"),
    };
    assert!(window >= 2, "this test needs two tickets at once");
    let mut tickets = Vec::new();
    while tickets.len() < 2 {
        match peer.read() {
            Some(Message::Ticket(t)) => tickets.push((t, std::time::Instant::now())),
            other => panic!("expected a TICKET, got {other:?}"),
        }
    }
    let jpeg = support::jpeg(64, 48);
    let mut results = Vec::new();
    // Frame 1 keeps the processor busy; frame 2 arrives fresh meanwhile, then
    // the camera pauses: nothing replaces frame 2 in its slot.
    let (t, got) = tickets.remove(0);
    peer.writer
        .send_frame(&header(1, &jpeg, got), &jpeg, t)
        .unwrap();
    let next = accepted(&mut peer, 1, &mut results);
    started
        .recv_timeout(WAIT)
        .expect("the processor took frame 1");
    let (t, got) = tickets.remove(0);
    peer.writer
        .send_frame(&header(2, &jpeg, got), &jpeg, t)
        .unwrap();
    accepted(&mut peer, 2, &mut results);
    // The pause: frame 2 grows older than the threshold in its slot.
    std::thread::sleep(max_age * 2);
    release_tx.send(()).unwrap();
    assert_eq!(
        result_of(&mut peer, 1, &mut results).status,
        ResultStatus::Processed
    );
    let r = result_of(&mut peer, 2, &mut results);
    assert_eq!(r.status, ResultStatus::Expired, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.result).contains("threshold"),
        "the reason is said: {r:?}"
    );
    // The camera is back: its next frame is fresh, and processed.
    let (t, got) = next;
    peer.writer
        .send_frame(&header(3, &jpeg, got), &jpeg, t)
        .unwrap();
    accepted(&mut peer, 3, &mut results);
    assert_eq!(
        result_of(&mut peer, 3, &mut results).status,
        ResultStatus::Processed
    );
    assert_eq!(
        results.iter().filter(|r| r.frame_id == 2).count(),
        1,
        "exactly one RESULT per accepted frame"
    );
    let s = server.stop();
    let seen: Vec<(u64, Duration)> = handed.try_iter().collect();
    assert_eq!(
        seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 3],
        "frame 2 never reached the processor"
    );
    for (id, age) in &seen {
        assert!(*age <= max_age, "frame {id} was handed {age:?} old");
    }
    assert_eq!((s.frames_processed, s.frames_expired), (2, 1));
}

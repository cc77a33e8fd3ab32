//! Fresh when handed: a frame that grew older than the threshold in its
//! slot while the processor was busy and nothing newer came (the camera
//! paused) is answered `expired` and never handed to the processor.

mod support;

use framelink::process::{FrameView, Output, Processor};
use framelink::wire::{Message, ResultStatus, CAP_RESULTS};
use std::time::{Duration, Instant};
use support::{fresh_header, read_result_of, read_until_accepted};
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
            Some(Message::Ticket(t)) => tickets.push((t, Instant::now())),
            other => panic!("expected a TICKET, got {other:?}"),
        }
    }
    let jpeg = support::jpeg(64, 48);
    let mut results = Vec::new();
    // Frame 1 keeps the processor busy; frame 2 arrives fresh meanwhile, then
    // the camera pauses: nothing replaces frame 2 in its slot.
    let (t, got) = tickets.remove(0);
    peer.writer
        .send_frame(&fresh_header(1, &jpeg, got), &jpeg, t)
        .unwrap();
    let next = read_until_accepted(&mut peer, 1, &mut results);
    started
        .recv_timeout(WAIT)
        .expect("the processor took frame 1");
    let (t, got) = tickets.remove(0);
    peer.writer
        .send_frame(&fresh_header(2, &jpeg, got), &jpeg, t)
        .unwrap();
    read_until_accepted(&mut peer, 2, &mut results);
    // The pause: frame 2 grows older than the threshold in its slot.
    std::thread::sleep(max_age * 2);
    release_tx.send(()).unwrap();
    assert_eq!(
        read_result_of(&mut peer, 1, &mut results).status,
        ResultStatus::Processed
    );
    let r = read_result_of(&mut peer, 2, &mut results);
    assert_eq!(r.status, ResultStatus::Expired, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.result).contains("threshold"),
        "the reason is said: {r:?}"
    );
    // The camera is back: its next frame is fresh, and processed.
    let (t, got) = next;
    peer.writer
        .send_frame(&fresh_header(3, &jpeg, got), &jpeg, t)
        .unwrap();
    read_until_accepted(&mut peer, 3, &mut results);
    assert_eq!(
        read_result_of(&mut peer, 3, &mut results).status,
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

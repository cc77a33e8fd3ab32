//! The staleness gate and latest-only behaviour, through a delaying link and
//! a stalled processor.

mod support;

use framelink::client::ClientConfig;
use framelink::process::FrameView;
use framelink::process::{Output, Processor};
use framelink::server::ServerConfig;
use framelink::testkit::delay_proxy::DelayProxy;
use std::time::Duration;
use support::{server_config, TestClient, TestServer};

/// Streams through a link with `one_way` delay each way for a dozen round
/// trips; returns both summaries.
fn stream_through_delay(
    config: ServerConfig,
    one_way: Duration,
) -> (
    framelink::client::ClientSummary,
    framelink::server::ServerSummary,
) {
    let server = TestServer::start(config);
    let proxy = DelayProxy::start(server.addr, one_way).unwrap();
    let mut cfg = ClientConfig::test_pattern(proxy.addr.to_string(), 160, 120, 30.0);
    cfg.name = "far".into();
    let client = TestClient::start(cfg);
    // Stream for about a dozen round trips through the proxy.
    assert!(!client.shutdown.wait_timeout(one_way * 2 * 12));
    let c = client.stop().unwrap();
    drop(proxy);
    (c, server.stop())
}

#[test]
fn frames_older_than_the_threshold_are_dropped_and_counted() {
    // 60 ms each way: every frame's age includes a 120 ms round trip > 80 ms.
    let config = ServerConfig {
        window: 1,
        ..server_config()
    };
    let (c, s) = stream_through_delay(config, Duration::from_millis(60));
    assert!(c.figures.frames_dropped_stale >= 3, "{c:?}");
    assert_eq!(c.figures.frames_accepted, 0, "{c:?}");
    assert_eq!(s.total.frames_dropped_stale, c.figures.frames_dropped_stale);
    let age = s.total.age_ms.p50.unwrap();
    assert!(age >= 120.0, "the measured age counts the link: {age} ms");
    // Stop-and-wait at 120 ms round trip sends about 8 fps of 30 captured:
    // the rest were replaced in the slot, never queued.
    assert!(
        c.figures.frames_superseded > c.figures.frames_sent.unwrap(),
        "{c:?}"
    );
}

#[test]
fn raising_the_threshold_above_the_delay_accepts_them() {
    let config = ServerConfig {
        max_age: Duration::from_millis(1000),
        ..server_config()
    };
    let (c, s) = stream_through_delay(config, Duration::from_millis(60));
    assert!(c.figures.frames_accepted >= 3, "{c:?}");
    assert_eq!(c.figures.frames_dropped_stale, 0);
    assert_eq!(s.total.frames_accepted, c.figures.frames_accepted);
}

/// A processor that blocks the processing thread on its first frame until
/// the test releases it.
struct Stall {
    stalled: crossbeam_channel::Sender<()>,
    release: crossbeam_channel::Receiver<()>,
    first: bool,
}

impl Processor for Stall {
    fn name(&self) -> &str {
        "stall"
    }
    fn process(&mut self, _view: &mut FrameView) -> anyhow::Result<Output> {
        if std::mem::take(&mut self.first) {
            let _ = self.stalled.send(());
            let _ = self.release.recv_timeout(support::WAIT);
        }
        Ok(Output::None)
    }
}

#[test]
fn a_stalled_processor_does_not_slow_receiving_and_keeps_only_the_newest() {
    let (stalled_tx, stalled) = crossbeam_channel::bounded(1);
    let (release_tx, release) = crossbeam_channel::bounded(1);
    let server = TestServer::start_processor(
        server_config(),
        Box::new(Stall {
            stalled: stalled_tx,
            release,
            first: true,
        }),
    );
    let client = TestClient::pattern(server.addr, "fast", 160, 120, 100.0);
    stalled
        .recv_timeout(support::WAIT)
        .expect("the stalling sink got a frame");
    // While processing is stuck, receiving goes on: run the client a while.
    let waited = client.shutdown.wait_timeout(Duration::from_millis(1500));
    assert!(!waited);
    let c = client.stop().unwrap();
    release_tx.send(()).unwrap();
    let s = server.stop();
    assert!(
        c.figures.frames_accepted >= 50,
        "receiving went on while processing stalled: {c:?}"
    );
    // The processing side took the first frame, then at most the newest one
    // left in the hand-off: everything in between was superseded, not queued.
    assert!(s.frames_processed <= 2, "{}", s.frames_processed);
    assert!(
        s.total.frames_superseded + s.frames_processed >= s.total.frames_accepted - 1,
        "{:?}",
        s.total
    );
}

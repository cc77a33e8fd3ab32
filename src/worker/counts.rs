//! What a worker counts: each frame's fate and time, per server.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A worker's figures, shared by its threads and its status line.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) processed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) expired: AtomicU64,
    pub(super) idle: AtomicU64,
    pub(super) no_server: AtomicU64,
    pub(super) busy_us: AtomicU64,
    pub(super) times: Mutex<Option<hdrhistogram::Histogram<u64>>>,
    pub(super) per_server: Mutex<HashMap<String, u64>>,
}

impl Counts {
    pub(super) fn record(&self, took: Duration, server: &str, status: Status) {
        match status {
            Status::Processed => &self.processed,
            Status::Failed => &self.failed,
            Status::Expired => &self.expired,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.busy_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if let Some(h) = self.times.lock().as_mut() {
            let _ = h.record(took.as_micros().max(1) as u64);
        }
        let mut per = self.per_server.lock();
        if let Some(n) = per.get_mut(server) {
            *n += 1;
        } else if per.len() < 1024 {
            per.insert(server.to_string(), 1);
        }
    }
}

/// What became of a frame a worker took.
#[derive(Clone, Copy)]
pub(super) enum Status {
    Processed,
    Failed,
    Expired,
}

impl Status {
    /// Its `Framelink-Status` (protocol.md).
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Processed => "processed",
            Status::Failed => "failed",
            Status::Expired => "expired",
        }
    }
}

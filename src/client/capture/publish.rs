//! Releasing encoded frames into the latest-only slot in capture order,
//! whichever encoder thread finishes first.

use super::EncodedFrame;
use crate::latest::LatestSender;
use crate::shutdown::{Shutdown, TICK};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Publishes encoded frames in increasing id order, dropping late ones.
pub(super) struct Publisher {
    pub(super) slot: Mutex<(LatestSender<EncodedFrame>, Option<u64>)>,
    /// Wait for the sender to take a frame instead of replacing it (an
    /// on-demand source; see [`Source::on_demand`]). The wait ends on
    /// `shutdown` or when nobody reads.
    pub(super) wait_for_sender: Option<Shutdown>,
    /// Frames that never reach the sender: replaced or finished too late.
    pub(super) superseded: Arc<AtomicU64>,
    /// Frames handed to encoder threads, by id, in capture order: None while
    /// encoding, then the result (None: it failed).
    pub(super) order: Mutex<std::collections::BTreeMap<u64, Option<Option<EncodedFrame>>>>,
}

impl Publisher {
    /// Frame `id` went to an encoder thread: frames after it wait for it.
    pub(super) fn expect(&self, id: u64) {
        self.order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, None);
    }

    /// Frame `id` is encoded (or failed): publishes every frame now ready
    /// in capture order.
    pub(super) fn finish(&self, id: u64, frame: Option<EncodedFrame>) {
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        order.insert(id, Some(frame));
        while let Some(entry) = order.first_entry() {
            if entry.get().is_none() {
                break; // an earlier frame is still encoding
            }
            if let Some(Some(frame)) = entry.remove() {
                self.publish(frame);
            }
        }
    }

    /// Puts `frame` in the slot, unless a newer one went there first.
    fn publish(&self, frame: EncodedFrame) {
        let mut guard = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (slot, last) = &mut *guard;
        if last.is_some_and(|l| frame.id <= l) {
            // A newer frame was published while this one was encoding.
            self.superseded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(frame.id);
        let Some(shutdown) = &self.wait_for_sender else {
            slot.send(frame);
            return;
        };
        let mut frame = frame;
        while let Err(back) = slot.send_when_empty(frame, TICK) {
            if shutdown.is_triggered() || slot.is_orphaned() {
                return;
            }
            frame = back;
        }
    }

    /// Waits until every frame handed to an encoder is published and the
    /// sender has taken the last one from the slot, for at most `grace`;
    /// `shutdown` or a gone sender end the wait sooner. For a stream that
    /// ended: its last frame still goes out (it may have ended before the
    /// first connection was even made).
    pub(super) fn flush(&self, shutdown: &Shutdown, grace: Duration) {
        let until = Instant::now() + grace;
        while Instant::now() < until && !self.is_orphaned() {
            let encoding = !self
                .order
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            let waiting = !self
                .slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .is_empty();
            if !encoding && !waiting {
                return;
            }
            if shutdown.wait_timeout(Duration::from_millis(5)) {
                return;
            }
        }
    }

    pub(super) fn is_orphaned(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .is_orphaned()
    }
}

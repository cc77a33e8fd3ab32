//! Latest-only hand-off: a one-place channel where a new value replaces an
//! unread one instead of waiting behind it.
//!
//! Used on the client between capture and sending, and on the server between
//! each connection and the display and processing threads. The sender never blocks;
//! the receiver derefs to a plain [`crossbeam_channel::Receiver`], so it works
//! with `recv_timeout` and `Select`, and sees disconnection when the sender is
//! gone.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// The sending half. Not `Clone`: one producer per slot.
pub struct LatestSender<T> {
    tx: Sender<T>,
    /// A receiver of our own, used only to take out a value nobody read.
    drain: Receiver<T>,
    superseded: Arc<AtomicU64>,
    /// Alive while the receiving half is.
    receiver_alive: Weak<()>,
}

/// The receiving half: a crossbeam receiver (by `Deref`), not `Clone`.
pub struct LatestReceiver<T> {
    rx: Receiver<T>,
    _alive: Arc<()>,
}

impl<T> std::ops::Deref for LatestReceiver<T> {
    type Target = Receiver<T>;
    fn deref(&self) -> &Receiver<T> {
        &self.rx
    }
}

/// Creates a latest-only channel.
pub fn channel<T>() -> (LatestSender<T>, LatestReceiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let alive = Arc::new(());
    let sender = LatestSender {
        tx,
        drain: rx.clone(),
        superseded: Arc::new(AtomicU64::new(0)),
        receiver_alive: Arc::downgrade(&alive),
    };
    (sender, LatestReceiver { rx, _alive: alive })
}

impl<T> LatestSender<T> {
    /// Puts `value` in the slot, replacing any value not yet received, and
    /// returns the replaced one (counted as superseded). Never blocks. When
    /// the receivers are all gone the value just waits in the slot: check
    /// [`is_orphaned`](Self::is_orphaned) to stop producing.
    pub fn send(&self, value: T) -> Option<T> {
        let mut replaced = None;
        let mut value = value;
        loop {
            // Our own `drain` receiver keeps the channel connected, so the
            // only failure here is `Full`.
            match self.tx.try_send(value) {
                Ok(()) => return replaced,
                Err(TrySendError::Full(v)) | Err(TrySendError::Disconnected(v)) => {
                    value = v;
                    if let Ok(old) = self.drain.try_recv() {
                        self.superseded.fetch_add(1, Ordering::Relaxed);
                        replaced = Some(old);
                    }
                    // Empty: the receiver took it in between, so the slot is free now.
                }
            }
        }
    }

    /// Puts `value` in the slot once it is empty (the receiver took the
    /// last one), waiting at most `timeout`: for a producer that should
    /// wait for its consumer rather than replace. Gives `value` back when
    /// the slot was still full at the timeout.
    pub fn send_when_empty(&self, value: T, timeout: std::time::Duration) -> Result<(), T> {
        // Our own `drain` receiver keeps the channel connected: the only
        // failure is the timeout.
        self.tx
            .send_timeout(value, timeout)
            .map_err(|e| e.into_inner())
    }

    /// How many values were replaced before anyone received them.
    pub fn superseded(&self) -> u64 {
        self.superseded.load(Ordering::Relaxed)
    }

    /// A shared handle on the superseded count, readable after the sender is gone.
    pub fn superseded_counter(&self) -> Arc<AtomicU64> {
        self.superseded.clone()
    }

    /// True when no value waits in the slot (the receiver took the last one).
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// True when the receiving half is gone: nobody will read.
    pub fn is_orphaned(&self) -> bool {
        self.receiver_alive.strong_count() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_new_value_replaces_an_unread_one() {
        let (tx, rx) = channel();
        assert_eq!(tx.send(1), None);
        assert_eq!(tx.send(2), Some(1));
        assert_eq!(tx.send(3), Some(2));
        assert_eq!(rx.try_recv().unwrap(), 3);
        assert!(rx.try_recv().is_err());
        assert_eq!(tx.superseded(), 2);
    }

    #[test]
    fn a_value_that_was_read_is_not_superseded() {
        let (tx, rx) = channel();
        tx.send(1);
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), 1);
        assert_eq!(tx.send(2), None);
        assert_eq!(tx.superseded(), 0);
    }

    #[test]
    fn receiver_sees_disconnection_when_sender_goes() {
        let (tx, rx) = channel::<u8>();
        tx.send(7);
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), 7);
        assert!(rx
            .recv_timeout(Duration::from_secs(1))
            .unwrap_err()
            .is_disconnected());
    }

    #[test]
    fn a_waiting_send_waits_for_the_reader_and_replaces_nothing() {
        let (tx, rx) = channel();
        assert_eq!(tx.send_when_empty(1, Duration::from_millis(1)), Ok(()));
        assert_eq!(tx.send_when_empty(2, Duration::from_millis(10)), Err(2));
        let reader = std::thread::spawn(move || {
            let a = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            let b = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            (a, b)
        });
        // Unblocked by the reader taking 1.
        assert_eq!(tx.send_when_empty(2, Duration::from_secs(5)), Ok(()));
        assert_eq!(reader.join().unwrap(), (1, 2));
        assert_eq!(tx.superseded(), 0);
    }

    #[test]
    fn sender_knows_when_nobody_reads() {
        let (tx, rx) = channel::<u8>();
        assert!(!tx.is_orphaned());
        drop(rx);
        assert!(tx.is_orphaned());
    }

    #[test]
    fn memory_stays_at_one_value_however_fast_the_producer() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        /// Counts the values alive: made and not yet dropped.
        struct Counted(u32, Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.1.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let alive = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = channel();
        let made = alive.clone();
        let producer = std::thread::spawn(move || {
            for i in 0..100_000u32 {
                made.fetch_add(1, Ordering::SeqCst);
                tx.send(Counted(i, made.clone()));
            }
            tx.superseded()
        });
        let (mut got, mut last) = (0u64, None);
        while let Ok(v) = rx.recv_timeout(Duration::from_secs(5)) {
            got += 1;
            // The one in hand, the one in the slot, the one being sent:
            // a queue would hold thousands.
            let n = alive.load(Ordering::SeqCst);
            assert!(n <= 3, "{n} values alive");
            assert!(last < Some(v.0), "newest only, in order");
            last = Some(v.0);
        }
        let superseded = producer.join().unwrap();
        assert_eq!(got + superseded, 100_000);
    }
}

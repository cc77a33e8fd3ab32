//! Turning peers away and saying so once: a client beyond `--max-clients`
//! is told the server is full (GOODBYE `ServerFull`, on a short thread), and
//! refusals are logged once a minute per address and kind of failure, so a
//! misconfigured or hostile peer retrying every second costs one warning
//! and one bounded entry.

use super::{wrap, Slot};
use crate::server::Shared;
use crate::wire::connection::{ConnError, Reader, Writer};
use crate::wire::transport::Stream;
use crate::wire::{self, GoodbyeCode, Limits};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Most connections being turned away (server full) at once; more are just closed.
const MAX_REFUSING: usize = 16;

/// Tells a client beyond `--max-clients` why it is turned away, on a short
/// thread (at most [`MAX_REFUSING`] at once) that reads the client's hello
/// before closing, so the goodbye is not lost to a reset.
pub(in crate::server) fn refuse_full<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    stream: TcpStream,
    peer: SocketAddr,
    shared: &'s Shared,
) {
    let place = Slot(&shared.refusing);
    if shared.refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
        note_full(peer, shared);
        return;
    }
    let _ = std::thread::Builder::new()
        .name(format!("refuse {peer}"))
        .spawn_scoped(s, move || {
            let _place = place;
            if let Ok((stream, _)) = wrap(stream, shared) {
                refuse(stream, peer, shared);
            }
        });
}

fn note_full(peer: SocketAddr, shared: &Shared) {
    if shared.notices.first(peer, "server full") {
        warn!(%peer, max_clients = shared.config.max_clients, "refused: server full{}", Notices::NOTE);
    } else {
        debug!(%peer, "refused again: server full");
    }
}

/// Tells a client on `stream` that the server is full (GOODBYE
/// `ServerFull`), then drains what it sends until it closes, two seconds
/// at most. Runs on the calling thread.
pub(in crate::server) fn refuse(stream: Stream, peer: SocketAddr, shared: &Shared) {
    note_full(peer, shared);
    let text = format!(
        "server full: {} clients are connected (--max-clients)",
        shared.config.max_clients
    );
    let Ok(r) = stream.try_clone() else {
        return;
    };
    let mut reader = Reader::new(r, Limits::handshake());
    let mut writer = Writer::new(stream);
    if writer.goodbye(true, GoodbyeCode::ServerFull, text).is_ok() {
        // Drain until the client closes (it reads the goodbye, then
        // closes): two seconds in all, however the bytes trickle.
        let deadline = Instant::now() + Duration::from_secs(2);
        if reader.read_preface(deadline, &shared.shutdown).is_ok() {
            while let Ok(Some(_)) = reader.read_message_by(deadline, &shared.shutdown) {}
        }
    }
}

/// Remembers which refusals were logged, per peer address and reason, so a
/// misconfigured client retrying every few seconds shows once a minute, not
/// on every retry. Bounded: forgets everything past [`Notices::MAX`] entries.
#[derive(Default)]
pub(in crate::server) struct Notices {
    logged: parking_lot::Mutex<std::collections::HashMap<(std::net::IpAddr, String), Instant>>,
}

impl Notices {
    /// How long a logged refusal keeps its repeats at debug level.
    pub const QUIET: Duration = Duration::from_secs(60);
    const MAX: usize = 4096;
    const PRUNE_AT: usize = 64;
    pub const NOTE: &'static str =
        " (repeats from this address for 60 s are logged at debug level)";

    /// True when this refusal of this address was not logged in the last
    /// [`QUIET`](Self::QUIET): log it at warning level then.
    pub fn first(&self, peer: SocketAddr, why: &str) -> bool {
        let mut logged = self.logged.lock();
        let now = Instant::now();
        let key = (peer.ip(), why.to_string());
        if logged
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < Self::QUIET)
        {
            return false;
        }
        // Only the last QUIET's refusals are kept: a peer refused every
        // second for months costs one entry, not one per refusal.
        if logged.len() >= Self::PRUNE_AT {
            logged.retain(|_, t| now.duration_since(*t) < Self::QUIET);
            if logged.len() >= Self::MAX {
                logged.clear();
            }
        }
        logged.insert(key, now);
        true
    }
}

/// What kind of failure `e` is, for [`Notices`]: the same kind from the
/// same address is logged once a minute, although its text may change
/// every time (a foreign peer's first bytes, a length).
pub(super) fn failure_kind(e: &ConnError) -> String {
    match e {
        ConnError::Protocol(wire::Error::NotFramelink(text)) => {
            let what = if text.contains("HTTP") {
                "HTTP"
            } else if text.contains("TLS") {
                "TLS"
            } else {
                "foreign bytes"
            };
            format!("not framelink: {what}")
        }
        ConnError::Protocol(wire::Error::TooLarge { what, .. }) => format!("too large: {what}"),
        ConnError::Protocol(wire::Error::Malformed { kind, .. }) => format!("malformed: {kind}"),
        ConnError::Protocol(wire::Error::UnknownKind(_)) => "unknown message kind".into(),
        ConnError::Protocol(wire::Error::Early(what)) => format!("early: {what}"),
        ConnError::Protocol(wire::Error::Incomplete) => "incomplete".into(),
        ConnError::Io(e) => format!("i/o: {:?}", e.kind()),
        ConnError::Closed { mid_message } => format!("closed (mid-message {mid_message})"),
        ConnError::TimedOut(_, what) => format!("timed out {what}"),
        ConnError::Shutdown => "shutdown".into(),
        ConnError::Refused(text) => format!("refused: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreign(bytes: &[u8]) -> ConnError {
        ConnError::Protocol(wire::check_preface(bytes).unwrap_err())
    }

    #[test]
    fn a_peer_refused_again_and_again_with_changing_text_is_one_notice() {
        let notices = Notices::default();
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let (a, b) = (foreign(&[1, 2, 3, 4, 5, 6]), foreign(&[9, 8, 7, 6, 5, 4]));
        assert_ne!(a.to_string(), b.to_string(), "the texts differ");
        assert_eq!(failure_kind(&a), failure_kind(&b));
        assert!(notices.first(peer, &failure_kind(&a)));
        assert!(
            !notices.first(peer, &failure_kind(&b)),
            "logged once a minute"
        );
        // Another kind from the same address is its own notice.
        let http = foreign(b"GET / HTTP/1.1\r\n");
        assert!(notices.first(peer, &failure_kind(&http)));
        // Thousands of refusals keep one entry per address and kind.
        for i in 0..10_000u32 {
            notices.first(peer, &failure_kind(&foreign(&i.to_be_bytes())));
        }
        assert_eq!(notices.logged.lock().len(), 2);
    }
}

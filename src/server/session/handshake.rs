//! A connection's handshake: the server's preface and CHALLENGE, the
//! client's preface and HELLO (its proof checked), then WELCOME and the
//! first tickets, under one deadline and handshake-sized limits.

use super::{refuse_for, Connection, Notices, RESULTS_OWED};
use crate::gate;
use crate::latest;
use crate::server::registry::Live;
use crate::server::stage::Joined;
use crate::server::Shared;
use crate::stats::Running;
use crate::wire::auth;
use crate::wire::connection::{ConnError, Reader, Writer};
use crate::wire::transport::Stream;
use crate::wire::{self, Challenge, GoodbyeCode, Limits, Message, Welcome};
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

impl<'a> Connection<'a> {
    /// Reads the client's preface and HELLO, answers WELCOME and the first
    /// tickets. A wrong peer or version is told why (GOODBYE) and closed.
    ///
    /// The whole handshake (TLS included) must be done by `deadline`, and
    /// until WELCOME only handshake-sized messages are read
    /// ([`Limits::handshake`]): an unauthenticated peer holds a place for at
    /// most `--io-timeout` and a few kilobytes, whatever it trickles.
    pub(super) fn start(
        stream: Stream,
        peer: SocketAddr,
        deadline: Instant,
        shared: &'a Shared,
        span: &tracing::Span,
    ) -> Result<Self, ConnError> {
        let mut reader = Reader::new(stream.try_clone()?, Limits::handshake());
        if shared.config.kernel_arrival {
            reader.stamp_arrivals();
        }
        let mut writer = Writer::new(stream);
        // The server speaks first: its preface and a fresh challenge.
        let server_nonce = auth::nonce();
        writer.send(
            true,
            &[&Message::Challenge(Challenge {
                nonce: server_nonce,
            })],
        )?;
        let refuse = |writer: &mut Writer, code, text: String| {
            let _ = writer.goodbye(false, code, text);
        };
        let version = match reader.read_preface(deadline, &shared.shutdown) {
            Ok(v) => v,
            Err(e) => {
                if let ConnError::Protocol(p) = &e {
                    refuse(&mut writer, GoodbyeCode::ProtocolError, p.to_string());
                }
                return Err(e);
            }
        };
        if version != wire::VERSION {
            let text = format!("this server speaks framelink protocol version {}, the client sent version {version}", wire::VERSION);
            refuse(&mut writer, GoodbyeCode::UnsupportedVersion, text.clone());
            return Err(ConnError::Protocol(wire::Error::Malformed {
                kind: "preface",
                reason: text,
            }));
        }
        let hello = match reader.read_message_by(deadline, &shared.shutdown) {
            Ok(Some(Message::Hello(h))) => h,
            Ok(Some(other)) => {
                let text = format!("expected HELLO after the preface, got {}", other.name());
                refuse(&mut writer, GoodbyeCode::ProtocolError, text.clone());
                return Err(ConnError::Protocol(wire::Error::Malformed {
                    kind: "handshake",
                    reason: text,
                }));
            }
            Ok(None) => return Err(ConnError::Closed { mid_message: false }),
            Err(e) => {
                refuse_for(&Mutex::new(writer), &e);
                return Err(e);
            }
        };
        span.record("name", hello.name.as_str());
        if let Some(token) = &shared.config.token {
            if !token.check_hello(&server_nonce, &hello.client_nonce, &hello.proof) {
                let text = if hello.proof.is_empty() {
                    "this server needs a token: give the client --token or FRAMELINK_TOKEN"
                } else {
                    "wrong token"
                };
                if shared.notices.first(peer, text) {
                    warn!(%peer, client = %hello.name, "refused: {text}{}", Notices::NOTE);
                } else {
                    debug!(%peer, client = %hello.name, "refused again: {text}");
                }
                refuse(&mut writer, GoodbyeCode::Unauthorized, text.into());
                return Err(ConnError::Refused(text.into()));
            }
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let source = Arc::new(crate::server::source_state::SourceState::default());
        let client_name: Arc<str> = hello.name.as_str().into();
        // A stage that does not take the client within a second (stuck on a
        // frame, or closing down) would leave it streaming into nowhere:
        // turn it away as busy instead, and it retries.
        let join = |stage: &Sender<Joined>, name: &str| {
            let (tx, rx) = latest::channel();
            let joined = Joined {
                id,
                name: client_name.clone(),
                frames: rx,
                source: source.clone(),
            };
            match stage.send_timeout(joined, Duration::from_secs(1)) {
                Ok(()) => Ok(tx),
                Err(_) => Err(format!(
                    "server busy: its {name} stage is not taking new clients; retry later"
                )),
            }
        };
        let joined = join(&shared.to_processing, "processing").and_then(|p| {
            let d = shared
                .to_display
                .as_ref()
                .map(|d| join(d, "display"))
                .transpose()?;
            Ok((p, d))
        });
        let (to_processing, to_display) = match joined {
            Ok(j) => j,
            Err(text) => {
                if shared.notices.first(peer, &text) {
                    warn!(%peer, client = %hello.name, "refused: {text}{}", Notices::NOTE);
                } else {
                    debug!(%peer, client = %hello.name, "refused again: {text}");
                }
                refuse(&mut writer, GoodbyeCode::ServerFull, text.clone());
                return Err(ConnError::Refused(text));
            }
        };
        let live = Arc::new(Live {
            name: client_name,
            peer,
            stats: Mutex::new(Running::default()),
            superseded: to_processing.superseded_counter(),
            superseded_reported: AtomicU64::new(0),
            last_age_us: AtomicU64::new(0),
            recent: Mutex::default(),
            last_result: Mutex::default(),
            last_size: std::sync::atomic::AtomicU32::new(0),
            source: source.clone(),
        });
        shared.registry.add(id, live.clone());
        let wants_results = hello.capabilities & wire::CAP_RESULTS != 0;
        let (results, results_rx) = if wants_results {
            // Unbounded, but never longer than RESULTS_OWED: see `owed`.
            let (tx, rx) = crossbeam_channel::unbounded();
            let (owed_tx, owed_rx) = crossbeam_channel::bounded(RESULTS_OWED);
            (Some((tx, owed_tx)), Some((rx, owed_rx)))
        } else {
            (None, None)
        };
        // Authenticated (or no token needed): frames may come now.
        reader.set_limits(shared.limits);
        let mut conn = Connection {
            id,
            shared,
            reader,
            writer: Arc::new(Mutex::new(writer)),
            live,
            to_processing,
            to_display,
            results,
            results_rx,
            outstanding: VecDeque::new(),
            last_frame_id: None,
            source_state: hello.capabilities & wire::CAP_SOURCE_STATE != 0,
            link_check: gate::LinkCheck::default(),
            next_ticket: 0,
        };
        let welcome = Message::Welcome(Welcome {
            capabilities: hello.capabilities & (wire::CAP_RESULTS | wire::CAP_SOURCE_STATE),
            max_age_us: wire::micros_u32(shared.config.max_age),
            max_frame_bytes: shared.config.max_frame_bytes,
            window: shared.config.window,
            proof: shared
                .config
                .token
                .as_ref()
                .map(|t| t.welcome_proof(&hello.client_nonce, &server_nonce))
                .unwrap_or_default(),
        });
        let tickets: Vec<Message> = (0..shared.config.window)
            .map(|_| Message::Ticket(conn.issue_ticket()))
            .collect();
        let mut out: Vec<&Message> = vec![&welcome];
        out.extend(tickets.iter());
        if let Err(e) = conn.writer.lock().send(false, &out) {
            shared.registry.remove(id);
            return Err(e.into());
        }
        info!(
            capabilities = hello.capabilities,
            "connected: {} (peer {peer})", hello.name
        );
        Ok(conn)
    }
}

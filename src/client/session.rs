//! The client's link to the server: connect (and reconnect with backoff),
//! the handshake, then two threads per connection: one sends the newest
//! frame for each ticket held, the other reads VERDICTs, TICKETs and RESULTs
//! (those two loops, and the watch on a server gone silent, are in
//! [`streaming`]).

mod streaming;

use super::adapt::{Adapter, Sent};
use super::results::{InFlight, ResultsOut};
use super::{ClientConfig, EncodedFrame};
use crate::latest::LatestReceiver;
use crate::shutdown::Shutdown;
use crate::stats::Running;
use crate::wire::auth::{self};
use crate::wire::connection::{self, ConnError, Reader, Writer};
use crate::wire::transport::tls;
use crate::wire::transport::Stream;
use crate::wire::{self, GoodbyeCode, Hello, Limits, Message, Ticket};
use anyhow::{anyhow, bail, Context, Result};
use parking_lot::Mutex;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streaming::{goodbye_end, read_loop, send_loop, SendEnd, Watch};
use tracing::{debug, info, warn};

/// Time without a connection after the first one: the gaps a user sees.
#[derive(Default)]
pub(super) struct Gaps {
    pub(super) lost_at: Option<Instant>,
    pub(super) count: u64,
    pub(super) total: Duration,
}

/// Where the link to the server stands, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Before the first connection attempt ends.
    Connecting,
    Connected,
    /// Lost or not reached: retrying with backoff.
    Retrying(String),
    /// The server will not take us until something changes (a token, TLS,
    /// a full server): retrying slowly.
    Refused(String),
}

impl Link {
    /// One word for the status line.
    pub fn word(&self) -> &'static str {
        match self {
            Link::Connecting => "connecting",
            Link::Connected => "connected",
            Link::Retrying(_) => "retrying",
            Link::Refused(_) => "refused",
        }
    }
}

/// How long a refused client waits before trying again (or `--max-backoff`
/// if that is longer): the reason will not go away in 100 ms.
pub const REFUSED_RETRY: Duration = Duration::from_secs(5);

/// What the sender, the reader and the status line keep count with.
pub(super) struct Tracking {
    pub(super) link: Mutex<Link>,
    /// Time spent connected, sessions that ended; plus when the current one began.
    pub(super) connected: Mutex<(Duration, Option<Instant>)>,
    pub(super) gaps: Mutex<Gaps>,
    pub(super) stats: Arc<Mutex<Running>>,
    pub(super) adapter: Arc<Adapter>,
    /// Frames sent and not yet answered, for capture → result times.
    pub(super) in_flight: InFlight,
    pub(super) out: Mutex<ResultsOut>,
    /// The last frame sent, for the status line.
    pub(super) sent: Mutex<Option<Sent>>,
    /// Whether the source gives frames: told to the server in SOURCE messages.
    pub(super) source: Arc<crate::client::source::outage::SourceHealth>,
}

/// Why a session with the server ended.
pub(super) enum SessionEnd {
    /// Our own shutdown: stop.
    Stopped,
    /// The server said goodbye or the link broke: reconnect.
    Lost(String),
    /// The server will not talk to us until something changes: reconnect,
    /// but warn.
    Refused(String),
}

/// Connects, streams, and reconnects with capped backoff until shutdown.
/// Logs a line per change of state, not per retry.
///
/// With several servers (`--server a,b,c`) a server that is down, full or
/// refuses us, or a connection that breaks, moves us on to the next server
/// at once; the backoff is waited only after every server in the list
/// failed in a row, so failover takes one connection attempt.
pub(super) fn connect_loop(
    config: &ClientConfig,
    frames: &LatestReceiver<EncodedFrame>,
    tracking: &Tracking,
    shutdown: &Shutdown,
    connections: &mut u64,
    last_problem: &mut Option<String>,
) -> Result<()> {
    let servers = config.servers();
    let mut backoff = Duration::from_millis(100);
    let mut next = 0;
    // Servers that failed since the last one that took us.
    let mut failed_in_a_row = 0;
    while !shutdown.is_triggered() {
        let server = servers[next % servers.len()];
        next += 1;
        let attempt = resolve(server).and_then(|addr| {
            TcpStream::connect_timeout(&addr, config.connect_timeout)
                .map_err(|e| anyhow!("cannot connect to {server}: {e}"))
        });
        let end = match attempt {
            Ok(stream) => match session(stream, server, config, frames, tracking, shutdown) {
                Ok((end, connected)) => {
                    if connected {
                        *connections += 1;
                        backoff = Duration::from_millis(100);
                        failed_in_a_row = 0;
                        if !matches!(end, SessionEnd::Stopped) {
                            tracking.gaps.lock().lost_at = Some(Instant::now());
                        }
                        // The same server is tried first again: a
                        // restart or a blip should not move us.
                        next -= 1;
                    } else {
                        failed_in_a_row += 1;
                    }
                    end
                }
                Err(e) => return Err(e),
            },
            Err(e) => {
                failed_in_a_row += 1;
                SessionEnd::Lost(format!("{e:#}"))
            }
        };
        tracking.session_over();
        let problem = match end {
            SessionEnd::Stopped => return Ok(()),
            SessionEnd::Lost(why) => (why, false),
            SessionEnd::Refused(why) => (why, true),
        };
        *tracking.link.lock() = if problem.1 {
            Link::Refused(problem.0.clone())
        } else {
            Link::Retrying(problem.0.clone())
        };
        let round_over = failed_in_a_row > 0 && failed_in_a_row % servers.len() == 0;
        if problem.1 && round_over {
            backoff = backoff.max(REFUSED_RETRY).max(config.max_backoff);
        }
        if last_problem.as_deref() != Some(problem.0.as_str()) {
            let then = if servers.len() > 1 && !round_over {
                "trying the next server"
            } else {
                "retrying"
            };
            if problem.1 {
                warn!("{}; {then}", problem.0);
            } else {
                info!("{}; {then}", problem.0);
            }
            *last_problem = Some(problem.0);
        } else {
            debug!("still {}; retrying in {backoff:?}", problem.0);
        }
        if failed_in_a_row == 0 || round_over {
            if shutdown.wait_timeout(backoff) {
                return Ok(());
            }
            if !problem.1 {
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
    Ok(())
}

impl Tracking {
    /// The handshake succeeded.
    fn session_began(&self) {
        *self.link.lock() = Link::Connected;
        self.connected.lock().1 = Some(Instant::now());
    }

    /// A session ended (or an attempt failed): its time is counted.
    fn session_over(&self) {
        let mut c = self.connected.lock();
        if let Some(t) = c.1.take() {
            c.0 += t.elapsed();
        }
    }

    /// Time connected so far.
    pub(super) fn connected_time(&self) -> Duration {
        let c = self.connected.lock();
        c.0 + c.1.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

pub(super) fn resolve(server: &str) -> Result<SocketAddr> {
    server
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve server address {server}"))?
        .next()
        .ok_or_else(|| anyhow!("server address {server} resolves to nothing"))
}

/// One connection: handshake, then frames until it ends. Returns how it
/// ended and whether the handshake succeeded. Fails only for what retrying
/// cannot fix (a server speaking another protocol version).
pub(super) fn session(
    stream: TcpStream,
    server: &str,
    config: &ClientConfig,
    frames: &LatestReceiver<EncodedFrame>,
    tracking: &Tracking,
    shutdown: &Shutdown,
) -> Result<(SessionEnd, bool)> {
    connection::configure(&stream, config.io_timeout)?;
    let limits = Limits {
        max_frame_bytes: 0,
        max_result_bytes: 16 * 1024 * 1024,
    };
    let (stream, tls_error) = match &config.tls {
        None => (Stream::Tcp(stream), None),
        Some(t) => {
            let name = match &t.name {
                Some(n) => n.clone(),
                None => tls::server_name(server)?,
            };
            let (plain, error) = tls::connect(stream, &t.config, name)?;
            connection::configure_local(&plain, config.io_timeout)?;
            (plain, Some(error))
        }
    };
    // A failed TLS handshake shows as a closed connection: say why.
    let tls_failed = || {
        tls_error
            .as_ref()
            .and_then(|e| e.lock().clone())
            .map(|e| {
                SessionEnd::Refused(format!(
                    "TLS with {server} failed: {e} (does --tls-ca hold the server's certificate or its CA, and does the certificate name the host you connect to?)"
                ))
            })
    };
    let mut reader = Reader::new(stream.try_clone()?, limits);
    // A ticket's hold starts when it landed, not when this thread read it.
    reader.stamp_arrivals();
    let mut writer = Writer::new(stream);
    // Our preface goes at once, so a server of another version can say so;
    // the server opens with its preface and a challenge.
    if let Err(e) = writer.send(true, &[]) {
        return Ok((
            SessionEnd::Lost(format!("connection to {server} failed: {e}")),
            false,
        ));
    }
    let io = config.io_timeout;
    let client_nonce = auth::nonce();
    let mut server_nonce = None;
    let handshake = reader
        .read_preface(Instant::now() + io, shutdown)
        .and_then(|version| {
            let msg = reader.read_message(Some(io), io, shutdown);
            if version != wire::VERSION {
                // Stop and report: retrying cannot help.
                return Ok((version, msg.ok().flatten()));
            }
            let msg = msg?;
            let Some(Message::Challenge(c)) = msg else {
                return Ok((version, msg));
            };
            server_nonce = Some(c.nonce);
            let hello = Message::Hello(Hello {
                capabilities: wire::CAP_RESULTS | wire::CAP_SOURCE_STATE,
                name: config.name.clone(),
                client_nonce,
                proof: config
                    .token
                    .as_ref()
                    .map(|t| t.hello_proof(&c.nonce, &client_nonce))
                    .unwrap_or_default(),
            });
            writer.send(false, &[&hello])?;
            Ok((version, reader.read_message(Some(io), io, shutdown)?))
        });
    let welcome = match handshake {
        Ok((version, msg)) if version != wire::VERSION => {
            let said = match msg {
                Some(Message::Goodbye(g)) => format!(" (it said: {})", g.text),
                _ => String::new(),
            };
            bail!("the server at {server} speaks framelink protocol version {version}; this client speaks version {}{said}: upgrade the older side", wire::VERSION);
        }
        Ok((_, Some(Message::Welcome(w)))) if server_nonce.is_some() => w,
        Ok((_, Some(Message::Goodbye(g)))) => return goodbye_end(server, g).map(|e| (e, false)),
        Ok((_, other)) => {
            let got = other.map(|m| m.name()).unwrap_or("end of stream");
            let expected = if server_nonce.is_some() {
                "WELCOME"
            } else {
                "CHALLENGE"
            };
            return Ok((
                SessionEnd::Refused(format!(
                    "{server} sent {got} instead of {expected}: is it a framelink server?"
                )),
                false,
            ));
        }
        Err(ConnError::Shutdown) => return Ok((SessionEnd::Stopped, false)),
        Err(ConnError::Protocol(e)) => {
            return Ok((
                SessionEnd::Refused(format!("{server} is not a framelink server: {e}")),
                false,
            ))
        }
        Err(e) => {
            let end = tls_failed().unwrap_or_else(|| {
                SessionEnd::Lost(format!("handshake with {server} failed: {e}"))
            });
            return Ok((end, false));
        }
    };
    if let (Some(token), Some(sn)) = (&config.token, server_nonce) {
        let why = if welcome.proof.is_empty() {
            Some("does not check tokens (start it with the same --token)")
        } else if !token.check_welcome(&client_nonce, &sn, &welcome.proof) {
            Some("does not know our token: is it the server you meant?")
        } else {
            None
        };
        if let Some(why) = why {
            let _ = writer.goodbye(
                false,
                GoodbyeCode::Unauthorized,
                "the server failed the token check",
            );
            return Ok((SessionEnd::Refused(format!("server {server} {why}")), false));
        }
    }
    tracking
        .adapter
        .set_threshold(Duration::from_micros(welcome.max_age_us as u64));
    tracking.session_began();
    info!(
        "connected to {server}: frames older than {:.0} ms are dropped, window {}",
        welcome.max_age_us as f64 / 1000.0,
        welcome.window
    );
    {
        let mut g = tracking.gaps.lock();
        if let Some(lost) = g.lost_at.take() {
            let gap = lost.elapsed();
            g.count += 1;
            g.total += gap;
            info!("back after {:.1} s without a connection", gap.as_secs_f64());
        }
    }
    if welcome.max_frame_bytes == 0 {
        return Ok((
            SessionEnd::Refused(format!(
                "{server} accepts no frame bytes (max_frame_bytes 0)"
            )),
            true,
        ));
    }

    // What earlier sessions left owed (their connection ended first) is
    // not waited for at the end of this one.
    let results = welcome.capabilities & wire::CAP_RESULTS != 0;
    let owed_before = tracking.stats.lock().total.owed(results);
    let owed = || {
        tracking
            .stats
            .lock()
            .total
            .owed(results)
            .saturating_sub(owed_before)
    };

    // The reader thread takes tickets and verdicts; this thread sends frames.
    let watch = Watch::new(io, Duration::from_micros(welcome.max_age_us as u64));
    let session_stop = Shutdown::new();
    let reader_done = &watch.reader_done;
    let (tickets_tx, tickets) =
        crossbeam_channel::bounded::<(Ticket, Instant)>(welcome.window as usize);
    let end = std::thread::scope(|s| {
        let reader_thread = {
            let (session_stop, watch) = (&session_stop, &watch);
            s.spawn(move || {
                let end = read_loop(
                    reader,
                    tickets_tx,
                    tracking,
                    session_stop,
                    server,
                    io,
                    watch,
                );
                watch.reader_done.trigger();
                end
            })
        };
        let sent = send_loop(
            &mut writer,
            &tickets,
            frames,
            &welcome,
            tracking,
            shutdown,
            &watch,
        );
        let stopping = matches!(sent, SendEnd::Stopped);
        if stopping && owed() > 0 {
            // A clean stop: the verdicts and results of the frames already
            // sent come first (bounded), then GOODBYE.
            info!(
                "stopping: waiting up to {} s for the {} verdicts and results the server owes",
                OWED_GRACE.as_secs(),
                owed()
            );
            let deadline = Instant::now() + OWED_GRACE;
            while owed() > 0 && !reader_done.is_triggered() && Instant::now() < deadline {
                reader_done.wait_timeout(Duration::from_millis(10));
            }
            let left = owed();
            if left > 0 && !reader_done.is_triggered() {
                warn!(
                    "stopping with {left} verdicts or results owed: the server did not send them within {} s",
                    OWED_GRACE.as_secs()
                );
            }
        }
        if stopping {
            let _ = writer.goodbye(false, GoodbyeCode::ShuttingDown, "client stopping");
            // Let the last verdicts arrive, briefly.
            let deadline = Instant::now() + Duration::from_secs(1);
            reader_done.wait_timeout(deadline - Instant::now());
        }
        if matches!(sent, SendEnd::Failed(_)) {
            // A send fails when the server closed first: its GOODBYE (say,
            // shutting down) is then on its way to the reader, and says
            // more than "Broken pipe". Give the reader a moment to see it.
            reader_done.wait_timeout(Duration::from_millis(500));
        }
        let reader_saw_the_end = reader_done.is_triggered();
        session_stop.trigger();
        let read_end = reader_thread
            .join()
            .unwrap_or_else(|_| SessionEnd::Lost("reader thread failed".into()));
        match sent {
            SendEnd::Stopped => SessionEnd::Stopped,
            SendEnd::Failed(_) if reader_saw_the_end => read_end,
            SendEnd::Failed(why) => SessionEnd::Lost(format!("connection to {server} lost: {why}")),
            SendEnd::ReaderEnded => read_end,
        }
    });
    Ok((end, true))
}

/// How long a stopping client waits for the verdicts and results it is
/// still owed before its GOODBYE.
const OWED_GRACE: Duration = Duration::from_secs(5);

//! Running as a system service (systemd, or anything speaking its
//! protocols; `sd-notify` does the talking):
//!
//! - **Socket activation** (`LISTEN_FDS`): the listeners a `.socket` unit
//!   opened are taken instead of binding: the first is the frame port
//!   (`--listen`), a second the live view (`--http`).
//! - **Readiness and the watchdog** (`NOTIFY_SOCKET`, `WATCHDOG_USEC`):
//!   `READY=1` once the server serves, `WATCHDOG=1` while its accept loop
//!   is alive (a stuck server is restarted by the service manager), and
//!   `STOPPING=1` when it stops.
//! - **The journal** (`JOURNAL_STREAM`): when stderr is the journal, logs
//!   carry no colours and no timestamps of their own (the journal has both).
//!
//! Without those variables everything here does nothing.

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// The listening sockets handed over by socket activation, in the order
/// the `.socket` unit lists them (none when not activated).
pub fn activated_listeners() -> Result<Vec<TcpListener>> {
    let fds = sd_notify::listen_fds().context("LISTEN_FDS is set but cannot be read")?;
    let mut out = Vec::new();
    for fd in fds {
        let borrowed = unsafe_borrow(fd);
        let sock = socket2::SockRef::from(&borrowed);
        let listening = sock.r#type().ok() == Some(socket2::Type::STREAM)
            && sock.local_addr().ok().and_then(|a| a.as_socket()).is_some();
        if !listening {
            bail!("socket activation handed over descriptor {fd}, which is not a TCP socket: the .socket unit needs ListenStream= lines");
        }
        // SAFETY: the service manager passed this descriptor to this
        // process to own (LISTEN_PID is ours), and it is taken only here.
        out.push(unsafe { TcpListener::from_raw_fd(fd) });
    }
    Ok(out)
}

/// A borrowed view of a descriptor, to look at it before taking it.
fn unsafe_borrow(fd: std::os::fd::RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: `fd` is open for the whole process (passed by the service
    // manager, not closed before it is taken by `activated_listeners`).
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Whether stderr is the journal (`JOURNAL_STREAM` names its device and inode).
pub fn logs_to_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let stderr = std::fs::metadata("/proc/self/fd/2");
    match (stderr, dev.parse::<u64>(), ino.parse::<u64>()) {
        (Ok(m), Ok(dev), Ok(ino)) => m.dev() == dev && m.ino() == ino,
        _ => false,
    }
}

/// Tells the service manager the program is ready, with a status text.
pub fn ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells the service manager the program is stopping.
pub fn stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("cannot tell the service manager ({states:?}): {e}");
    }
}

/// The watchdog's side in the program: the loop that must stay alive calls
/// [`beat`](Watchdog::beat); [`run`](Watchdog::run) pings the service
/// manager only while beats are recent.
pub struct Watchdog {
    origin: Instant,
    last_beat_ms: AtomicU64,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            origin: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
        }
    }
}

impl Watchdog {
    /// The interval the service manager wants pings within, if it wants any.
    pub fn interval() -> Option<Duration> {
        sd_notify::watchdog_enabled()
    }

    /// The watched loop is alive.
    pub fn beat(&self) {
        self.last_beat_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long since the last beat.
    fn silence(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_beat_ms.load(Ordering::Relaxed)))
    }

    /// Pings `WATCHDOG=1` every half `interval` while the loop beats, until
    /// `stop`; a loop silent for half the interval is not pinged for, so the
    /// service manager restarts the program. Blocks; unblocked by `stop`.
    pub fn run(&self, interval: Duration, stop: &crate::shutdown::Shutdown) {
        let every = interval / 2;
        debug!("watchdog: pinging every {every:?} while the accept loop runs");
        while !stop.wait_timeout(every) {
            let quiet = self.silence();
            if quiet < every {
                notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                warn!(
                    "the accept loop has not run for {:.1} s: not telling the watchdog it is alive",
                    quiet.as_secs_f64()
                );
            }
        }
    }
}

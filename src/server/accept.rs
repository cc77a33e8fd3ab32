//! How connections come in: the accept loop (a thread per client, turned
//! away when the server is full), the browser camera's way in from the live
//! view, and the addresses to give clients.

use super::session::{refuse, refuse_full, serve, serve_websocket, Slot};
use super::{live_view, Shared};
use crate::wire::connection;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::warn;

/// Accepts connections until shutdown. Polls a non-blocking listener, so a
/// shutdown is seen within 25 ms.
pub(super) fn accept_loop<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    listener: &'s TcpListener,
    shared: &'s Shared,
) {
    let mut trim = crate::memory::Trim::default();
    while !shared.shutdown.is_triggered() {
        shared.watchdog.beat();
        trim.maybe();
        match listener.accept() {
            Ok((stream, peer)) => {
                let accepted = Instant::now();
                if let Err(e) = stream
                    .set_nonblocking(false)
                    .and_then(|_| connection::configure(&stream, shared.config.io_timeout))
                {
                    warn!(%peer, "cannot set up the connection: {e}");
                    continue;
                }
                if shared.active.load(Ordering::SeqCst) >= shared.config.max_clients {
                    refuse_full(s, stream, peer, shared);
                    continue;
                }
                shared.active.fetch_add(1, Ordering::SeqCst);
                let spawned = std::thread::Builder::new()
                    .name(format!("conn {peer}"))
                    .spawn_scoped(s, move || {
                        let _slot = Slot(&shared.active);
                        contained(peer, || serve(stream, peer, accepted, shared))
                    });
                if let Err(e) = spawned {
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                    warn!(%peer, "cannot start a thread for the connection: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                shared.shutdown.wait_timeout(Duration::from_millis(25));
            }
            Err(e) => {
                // Out of file descriptors and the like: say so, back off, go on.
                warn!("accept failed: {e}");
                shared.shutdown.wait_timeout(Duration::from_millis(100));
            }
        }
    }
}

/// Runs one connection (its place in `--max-clients` is held by the
/// caller, given back however this ends): a bug's panic there is logged and
/// ends only that connection; the server goes on.
fn contained(peer: SocketAddr, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        tracing::error!(
            %peer,
            "connection ended by an internal error (a bug; please report it): {}",
            crate::logging::panic_text(&panic)
        );
    }
}

impl live_view::Cameras for Shared {
    fn serve_camera(
        &self,
        stream: crate::wire::transport::Stream,
        bridge: crate::wire::transport::StopReason,
        peer: SocketAddr,
        accepted: Instant,
    ) {
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.config.max_clients {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return refuse(stream, peer, self);
        }
        let _slot = Slot(&self.active);
        contained(peer, || {
            serve_websocket(stream, bridge, peer, accepted, self)
        })
    }
}

/// The addresses clients can use to reach a server bound to `local`: every
/// interface address when bound to the unspecified address, else `local`.
pub fn advertised_addresses(local: SocketAddr) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let mut out: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| ip.is_ipv4() == local.is_ipv4())
        .filter(
            |ip| !matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80),
        )
        .map(|ip| SocketAddr::new(ip, local.port()))
        .collect();
    out.sort_by_key(|a| (a.ip().is_loopback(), *a));
    out.dedup();
    if out.is_empty() {
        out.push(local);
    }
    out
}

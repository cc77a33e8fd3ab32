//! A TCP proxy that makes a slow, long link on loopback, for tests and the
//! benchmark: every byte is delayed by a fixed time in each direction, and
//! optionally the link carries only so many bits a second (each direction
//! on its own, like a full-duplex link; the limit can change while it runs).
//! Stops when dropped. Not for production use: it buffers whatever arrives,
//! like a router with a deep queue.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes the link sends as one piece: small enough that pieces of
/// different messages interleave as packets would.
const PIECE: usize = 16 * 1024;

pub struct DelayProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Bits a second each direction carries; 0 = no limit.
    rate: Arc<AtomicU64>,
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl DelayProxy {
    /// Forwards connections on a new loopback port to `upstream`, each byte
    /// `one_way` late in each direction (a round trip of twice that).
    pub fn start(upstream: SocketAddr, one_way: Duration) -> std::io::Result<Self> {
        Self::throttled(upstream, one_way, 0)
    }

    /// As [`start`](Self::start), carrying at most `bits_per_second` each
    /// way (0: no limit).
    pub fn throttled(
        upstream: SocketAddr,
        one_way: Duration,
        bits_per_second: u64,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let rate = Arc::new(AtomicU64::new(bits_per_second));
        let s = stop.clone();
        let r = rate.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((down, _)) => {
                        down.set_nonblocking(false).unwrap();
                        let Ok(up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))
                        else {
                            continue;
                        };
                        for (from, to) in [
                            (down.try_clone().unwrap(), up.try_clone().unwrap()),
                            (up, down),
                        ] {
                            let (s, r) = (s.clone(), r.clone());
                            std::thread::spawn(move || pump(from, to, one_way, r, s));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::park_timeout(Duration::from_millis(10))
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(DelayProxy { addr, stop, rate })
    }

    /// Changes the limit, in bits a second each way (0: no limit), from the
    /// next piece of data on.
    pub fn set_rate(&self, bits_per_second: u64) {
        self.rate.store(bits_per_second, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`: each piece leaves when the link has sent the ones
/// before it (at `rate` bits a second, if set) and arrives `delay` later.
fn pump(
    mut from: TcpStream,
    to: TcpStream,
    delay: Duration,
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = from.set_nodelay(true);
    let _ = to.set_nodelay(true);
    let (tx, rx) = crossbeam_channel::unbounded::<(Instant, Vec<u8>)>();
    let Ok(mut to_writer) = to.try_clone() else {
        return;
    };
    let writer = {
        std::thread::spawn(move || {
            // When the link has finished sending what it was given.
            let mut link_free = Instant::now();
            'pieces: while let Ok((at, chunk)) = rx.recv() {
                for piece in chunk.chunks(PIECE) {
                    let bps = rate.load(Ordering::SeqCst);
                    let start = link_free.max(at);
                    let sent = if bps == 0 {
                        start
                    } else {
                        start + Duration::from_secs_f64(piece.len() as f64 * 8.0 / bps as f64)
                    };
                    link_free = sent;
                    let due = sent + delay;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now); // the delay is what this proxy is for
                    }
                    if to_writer.write_all(piece).is_err() {
                        break 'pieces;
                    }
                }
            }
            let _ = to_writer.shutdown(std::net::Shutdown::Write);
        })
    };
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        }
    }
    drop(tx);
    let _ = writer.join();
    drop(to);
}

//! A TCP proxy that delays every byte by a fixed time in each direction: a
//! long link on loopback, for tests and the benchmark. Stops when dropped.
//! Not for production use: it buffers whatever arrives.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct DelayProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
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
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
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
                            let s = s.clone();
                            std::thread::spawn(move || pump(from, to, one_way, s));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::park_timeout(Duration::from_millis(10))
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(DelayProxy { addr, stop })
    }
}

/// Copies `from` to `to`, holding each chunk until `delay` after it was read.
fn pump(mut from: TcpStream, to: TcpStream, delay: Duration, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = from.set_nodelay(true);
    let _ = to.set_nodelay(true);
    let (tx, rx) = crossbeam_channel::unbounded::<(Instant, Vec<u8>)>();
    let Ok(mut to_writer) = to.try_clone() else {
        return;
    };
    let writer = {
        std::thread::spawn(move || {
            while let Ok((at, chunk)) = rx.recv() {
                let due = at + delay;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now); // the delay is what this proxy is for
                }
                if to_writer.write_all(&chunk).is_err() {
                    break;
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

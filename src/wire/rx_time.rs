//! When bytes really arrived: the kernel's receive timestamp of a TCP
//! socket's data (`SO_TIMESTAMPING`, software receive stamps, read with
//! `recvmsg`), so a frame's arrival is the instant its bytes landed, not
//! the later instant a busy server's thread got round to reading them.
//!
//! 64-bit Linux only; elsewhere, and where the kernel gives no stamp (behind the
//! TLS bridge, whose plaintext side is a local socket; or the first packets
//! after the first socket of the machine asked, since the kernel turns
//! stamping on a moment later), the reader's own clock is used.

use std::time::{Duration, Instant};

#[cfg(all(
    target_os = "linux",
    target_pointer_width = "64",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
))]
mod imp {
    use std::io;
    use std::net::TcpStream;
    use std::time::Duration;

    /// `SO_TIMESTAMPING` with 64-bit `timespec`s in its messages on 64-bit
    /// targets (`SO_TIMESTAMPING_OLD` in the kernel's headers; the same number
    /// on x86, ARM and RISC-V).
    const SO_TIMESTAMPING: libc::c_int = 37;

    /// Asks the kernel to stamp received data on `stream`.
    pub fn enable(stream: &TcpStream) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let flags: libc::c_int =
            (libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE) as libc::c_int;
        // SAFETY: setsockopt(2) with a pointer to a live c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_TIMESTAMPING,
                (&flags as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads like `read(2)`, and returns with the bytes the kernel's stamp of
    /// the newest data read (time since the Unix epoch, `CLOCK_REALTIME`), if
    /// it gave one.
    pub fn read(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<Duration>)> {
        use std::os::fd::AsRawFd;
        // Room for one SCM_TIMESTAMPING (three timespecs) and spare.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: recvmsg(2) on our socket with buffers that live through the call.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut stamp = None;
        // SAFETY: walking the control messages the kernel wrote, with the libc
        // macros, within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let c = &*cmsg;
                if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == SO_TIMESTAMPING {
                    // struct scm_timestamping { struct timespec ts[3]; }: ts[0] is
                    // the software stamp.
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if ts.tv_sec > 0 {
                        stamp = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok((n as usize, stamp))
    }
}

#[cfg(not(all(
    target_os = "linux",
    target_pointer_width = "64",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
)))]
mod imp {
    use std::io;
    use std::net::TcpStream;
    use std::time::Duration;

    /// Asks the kernel to stamp received data: not here.
    pub fn enable(_stream: &TcpStream) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "kernel receive timestamps are read on 64-bit Linux only",
        ))
    }

    pub fn read(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<Duration>)> {
        use std::io::Read;
        Ok((Read::read(&mut &*stream, buf)?, None))
    }
}

pub use imp::{enable, read};

/// The instant (on the monotonic clock) of a kernel stamp taken on the
/// wall clock: now, less how long ago the stamp was. A stamp from the
/// future or from over a second ago (the wall clock was stepped) gives
/// None: the caller then uses its own clock.
pub fn to_instant(stamp: Duration) -> Option<Instant> {
    // The two clocks are read back to back; a thread preempted between the
    // reads would shift the result by the preemption, so the pair is read
    // again when they are over 50 µs apart. The wall clock is read first:
    // what error remains puts the instant later (an age over-, never
    // under-estimated).
    let mut pair = None;
    for _ in 0..4 {
        let before = Instant::now();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        let after = Instant::now();
        pair = Some((wall, after));
        if after.duration_since(before) < Duration::from_micros(50) {
            break;
        }
    }
    let (wall, now) = pair?;
    let ago = wall.checked_sub(stamp)?;
    (ago < Duration::from_secs(1)).then(|| now - ago)
}

#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn data_read_carries_the_instant_it_arrived() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (rx, _) = listener.accept().unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        enable(&rx).unwrap();
        // The kernel turns stamping on a moment after the first socket asks
        // (deferred work): data before that has none. Wait for the first.
        let mut buf = [0u8; 16];
        for _ in 0..1000 {
            tx.write_all(b"x").unwrap();
            if let (1, Some(_)) = read(&rx, &mut buf).unwrap() {
                break;
            }
        }
        // A read with no stamp, or a stamp that does not convert, sends the
        // caller to its own clock. Both were seen in some runs of the whole
        // suite, their cause not pinned down (likely: the kernel's stamping,
        // shared by every socket of the machine, switching as other tests'
        // sockets come and go; a wall clock adjusted between stamp and read),
        // so the measurement is taken again, at most three times, and what
        // came is said if none gives an instant.
        let mut tries = Vec::new();
        let (sent, arrived, read_at) = loop {
            tx.write_all(b"hello").unwrap();
            let sent = Instant::now();
            // Read well after it landed: the stamp says when it landed.
            std::thread::sleep(Duration::from_millis(30)); // the delay being measured
            let (n, stamp) = read(&rx, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            if let Some(arrived) = stamp.and_then(to_instant) {
                break (sent, arrived, Instant::now());
            }
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            tries.push(format!("stamp {stamp:?} read at wall clock {wall:?}"));
            assert!(tries.len() < 3, "no stamp gave an instant: {tries:?}");
        };
        assert!(
            read_at.duration_since(arrived) >= Duration::from_millis(25),
            "the stamp is the arrival, not the read: {:?} before the read",
            read_at.duration_since(arrived)
        );
        assert!(
            arrived.saturating_duration_since(sent) < Duration::from_millis(5)
                && sent.saturating_duration_since(arrived) < Duration::from_millis(5),
            "arrival within a few ms of the send"
        );
    }
}

//! How precise the server's age estimate is, on one clock.

use super::*;

/// The server's age estimate against the truth, in one process on one
/// clock: a client written here sends a frame captured at `c` and notes
/// when its write returned (`w`: on loopback the bytes have landed by
/// then); the true age is `w − c`, the estimate is the VERDICT's `age_us`.
pub(crate) fn age_precision(frames: usize, report: &mut String) -> Result<()> {
    writeln!(
        report,
        "## Age precision: estimate − true age, loopback, {frames} frames at 100 fps each\n"
    )?;
    writeln!(report, "True age: from capture to the client's write returning (the bytes have landed on loopback by then); frames whose write took the client over 0.2 ms are left out (their truth is not known to that precision). Busy: one spinning thread per core beside both programs.\n")?;
    writeln!(report, "| arrival taken from | cores | p50 ms | p99 ms | max ms | min ms | estimates fresher than truth by > 0.1 ms |")?;
    writeln!(report, "|---|---|---|---|---|---|---|")?;
    for busy in [false, true] {
        for kernel in [false, true] {
            let (e, skipped) = age_errors(frames, kernel, busy)?;
            let q = |p: f64| e[((e.len() - 1) as f64 * p) as usize];
            let fresher = e.iter().filter(|&&x| x < -0.1).count();
            writeln!(
                report,
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} of {} ({} left out) |",
                if kernel {
                    "kernel stamp (SO_TIMESTAMPING)"
                } else {
                    "reading thread's clock"
                },
                if busy { "all busy" } else { "idle" },
                q(0.5),
                q(0.99),
                e[e.len() - 1],
                e[0],
                fresher,
                e.len(),
                skipped
            )?;
            eprintln!(
                "age precision kernel={kernel} busy={busy}: p99 {:.3} ms",
                q(0.99)
            );
        }
    }
    Ok(())
}

/// Sorted estimate − truth, in ms, for `frames` frames; and how many frames
/// were left out because the client's own write took over 0.2 ms (the
/// truth is then unknown to that precision).
fn age_errors(frames: usize, kernel: bool, busy: bool) -> Result<(Vec<f64>, usize)> {
    use framelink::server::{Server, ServerConfig};
    use framelink::shutdown::Shutdown;
    use framelink::wire::connection::{self, Reader, Writer};
    use framelink::wire::{self, Encoding, FrameHeader, Hello, Limits, Message};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let config = ServerConfig {
        kernel_arrival: kernel,
        stats_interval: None,
        max_age: Duration::from_secs(10),
        window: 1,
        ..ServerConfig::default()
    };
    let shutdown = Shutdown::new();
    let server = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || Server::new(listener, config).run(shutdown))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..if busy { nproc() } else { 0 })
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let result = (|| -> Result<(Vec<f64>, usize)> {
        let stream = std::net::TcpStream::connect(addr)?;
        connection::configure(&stream, Duration::from_secs(10))?;
        let mut reader = Reader::new(stream.try_clone()?, Limits::default());
        reader.stamp_arrivals();
        let mut writer = Writer::new(stream);
        let never = Shutdown::new();
        let wait = Duration::from_secs(10);
        writer.send(true, &[])?;
        reader.read_preface(Instant::now() + wait, &never)?;
        let Some(Message::Challenge(_)) = reader.read_message(Some(wait), wait, &never)? else {
            bail!("no CHALLENGE");
        };
        writer.send(
            false,
            &[&Message::Hello(Hello {
                capabilities: 0,
                name: "age".into(),
                client_nonce: [1; 32],
                proof: Vec::new(),
            })],
        )?;
        let Some(Message::Welcome(_)) = reader.read_message(Some(wait), wait, &never)? else {
            bail!("no WELCOME");
        };
        let ticket_now = |reader: &mut Reader| -> Result<(wire::Ticket, Instant)> {
            match reader.read_message(Some(wait), wait, &never)? {
                Some(Message::Ticket(t)) => {
                    let now = Instant::now();
                    Ok((t, reader.arrival().map_or(now, |a| a.min(now))))
                }
                other => bail!("expected a TICKET, got {other:?}"),
            }
        };
        let (mut ticket, mut landed) = ticket_now(&mut reader)?;
        let jpeg = {
            let rgb = vec![128u8; 64 * 48 * 3];
            let mut out = Vec::new();
            encode::encoder(EncoderKind::Auto, 80, Subsampling::S420)?
                .encode(&rgb, 64, 48, &mut out)?;
            out
        };
        let mut errors = Vec::with_capacity(frames);
        let mut skipped = 0;
        for id in 1..=frames as u64 {
            std::thread::sleep(Duration::from_millis(10));
            let captured = Instant::now();
            let h = FrameHeader {
                frame_id: id,
                encoding: Encoding::Jpeg,
                width: 64,
                height: 48,
                capture_to_send_us: 0,
                ticket_held_us: wire::micros_u32(captured.saturating_duration_since(landed)),
                payload_len: jpeg.len() as u32,
            };
            let before = Instant::now();
            writer.send_frame(&h, &jpeg, ticket)?;
            let written = Instant::now();
            let verdict = match reader.read_message(Some(wait), wait, &never)? {
                Some(Message::Verdict(v)) => v,
                other => bail!("expected a VERDICT, got {other:?}"),
            };
            (ticket, landed) = ticket_now(&mut reader)?;
            // The bytes landed between `before` and `written`: a sample
            // where the client itself was held up there says nothing.
            if written.duration_since(before) > Duration::from_micros(200) {
                skipped += 1;
                continue;
            }
            let truth = written.duration_since(captured).as_secs_f64() * 1e3;
            errors.push(verdict.age_us as f64 / 1e3 - truth);
        }
        errors.sort_by(f64::total_cmp);
        Ok((errors, skipped))
    })();
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    shutdown.trigger();
    let _ = server.join();
    result
}

//! The client's capture stage: grab frames from the source, encode them, and
//! publish each to the latest-only slot the sender takes from.
//!
//! With one encoder, the capture thread encodes each frame itself. With more
//! (spare cores), the capture thread copies each raw frame into a second
//! latest-only slot, from which the encoder threads take the newest; a frame
//! that finishes encoding after a newer one was published is dropped, so the
//! sender still only ever sees frames newer than the last. Buffers are reused
//! through a small pool: no full-frame allocation per frame.

use crate::client::EncodedFrame;
use crate::connection::TICK;
use crate::encode::Encoder;
use crate::latest::{self, LatestSender};
use crate::shutdown::Shutdown;
use crate::source::{Image, Source};
use anyhow::{Context, Result};
use bytes::Bytes;
use crossbeam_channel::RecvTimeoutError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Publishes encoded frames in increasing id order, dropping late ones.
struct Publisher {
    slot: Mutex<(LatestSender<EncodedFrame>, Option<u64>)>,
    /// Frames that never reach the sender: replaced or finished too late.
    superseded: Arc<AtomicU64>,
}

impl Publisher {
    fn publish(&self, frame: EncodedFrame) {
        let mut guard = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (slot, last) = &mut *guard;
        if last.is_some_and(|l| frame.id <= l) {
            // A newer frame was published while this one was encoding.
            self.superseded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(frame.id);
        slot.send(frame);
    }

    fn is_orphaned(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .is_orphaned()
    }
}

/// A raw frame on its way to an encoder thread.
struct RawFrame {
    id: u64,
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    at: Instant,
}

fn dims(w: u32, h: u32) -> Result<(u16, u16)> {
    Ok((
        u16::try_from(w).context("frame wider than 65535")?,
        u16::try_from(h).context("frame taller than 65535")?,
    ))
}

/// Runs the capture stage until shutdown, until nobody reads the slot, or
/// until the source fails (the error is returned). `encoders` must not be
/// empty; with more than one, encoding runs on that many threads.
/// Blocks in the source's `next_frame` (see [`Source::next_frame`]).
pub fn run(
    mut source: Box<dyn Source>,
    mut encoders: Vec<Box<dyn Encoder>>,
    slot: LatestSender<EncodedFrame>,
    shutdown: &Shutdown,
) -> Result<()> {
    let superseded = slot.superseded_counter();
    let publisher = Arc::new(Publisher {
        slot: Mutex::new((slot, None)),
        superseded: superseded.clone(),
    });
    let mut id = 0u64;

    if encoders.len() <= 1 {
        let mut encoder = encoders.pop().context("no encoder")?;
        let mut buf = Vec::new();
        while !shutdown.is_triggered() && !publisher.is_orphaned() {
            let captured = source.next_frame()?;
            let (w, h) = captured.image.dimensions();
            let jpeg = match captured.image {
                Image::Jpeg { data, .. } => Bytes::copy_from_slice(data),
                Image::Rgb {
                    data,
                    width,
                    height,
                } => {
                    encoder.encode(data, width, height, &mut buf)?;
                    Bytes::copy_from_slice(&buf)
                }
            };
            let (width, height) = dims(w, h)?;
            publisher.publish(EncodedFrame {
                id,
                jpeg,
                width,
                height,
                captured_at: captured.at,
            });
            id += 1;
        }
        return Ok(());
    }

    let (raw_tx, raw_rx) = latest::channel::<RawFrame>();
    // One buffer per encoder plus one being filled: the capture thread waits
    // for a free buffer, so it never renders or copies frames faster than they
    // can be encoded (a camera keeps its own newest frame meanwhile).
    let buffers = encoders.len() + 1;
    let (pool_tx, pool_rx) = crossbeam_channel::bounded::<Vec<u8>>(buffers);
    for _ in 0..buffers {
        let _ = pool_tx.try_send(Vec::new());
    }
    for (i, mut encoder) in encoders.into_iter().enumerate() {
        let (rx, publisher, pool, shutdown) = (
            (*raw_rx).clone(),
            publisher.clone(),
            pool_tx.clone(),
            shutdown.clone(),
        );
        std::thread::Builder::new()
            .name(format!("encode {i}"))
            .spawn(move || {
                let mut buf = Vec::new();
                // Ends when the capture thread is gone (disconnected), on shutdown,
                // or when nobody reads the output slot.
                loop {
                    let raw = match rx.recv_timeout(TICK) {
                        Ok(raw) => raw,
                        Err(RecvTimeoutError::Timeout)
                            if !shutdown.is_triggered() && !publisher.is_orphaned() =>
                        {
                            continue
                        }
                        Err(_) => return,
                    };
                    match encoder
                        .encode(&raw.rgb, raw.width, raw.height, &mut buf)
                        .and_then(|_| dims(raw.width, raw.height))
                    {
                        Ok((width, height)) => publisher.publish(EncodedFrame {
                            id: raw.id,
                            jpeg: Bytes::copy_from_slice(&buf),
                            width,
                            height,
                            captured_at: raw.at,
                        }),
                        Err(e) => tracing::warn!("frame {} not encoded: {e:#}", raw.id),
                    }
                    let _ = pool.try_send(raw.rgb);
                }
            })?;
    }
    while !shutdown.is_triggered() && !publisher.is_orphaned() {
        let mut rgb = match pool_rx.recv_timeout(TICK) {
            Ok(buf) => buf,
            Err(_) => continue,
        };
        let captured = source.next_frame()?;
        match captured.image {
            Image::Jpeg {
                data,
                width,
                height,
            } => {
                let (width, height) = dims(width, height)?;
                publisher.publish(EncodedFrame {
                    id,
                    jpeg: Bytes::copy_from_slice(data),
                    width,
                    height,
                    captured_at: captured.at,
                });
                let _ = pool_tx.try_send(rgb);
            }
            Image::Rgb {
                data,
                width,
                height,
            } => {
                rgb.clear();
                rgb.extend_from_slice(data);
                if let Some(old) = raw_tx.send(RawFrame {
                    id,
                    rgb,
                    width,
                    height,
                    at: captured.at,
                }) {
                    superseded.fetch_add(1, Ordering::Relaxed);
                    let _ = pool_tx.try_send(old.rgb);
                }
            }
        }
        id += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encoder, EncoderKind, Subsampling};
    use crate::source::test_pattern::TestPattern;
    use std::time::Duration;

    /// Runs the stage with `n` encoders and collects what the sender would see.
    fn collect(n: usize) -> (Vec<EncodedFrame>, u64) {
        let (slot, rx) = latest::channel();
        let superseded = slot.superseded_counter();
        let shutdown = Shutdown::new();
        let encoders = (0..n)
            .map(|_| encoder(EncoderKind::Auto, 80, Subsampling::S420).unwrap())
            .collect();
        let sd = shutdown.clone();
        let stage = std::thread::spawn(move || {
            run(
                Box::new(TestPattern::new(160, 120, 0.0)),
                encoders,
                slot,
                &sd,
            )
        });
        let mut got = Vec::new();
        while got.len() < 100 {
            got.push(
                rx.recv_timeout(Duration::from_secs(20))
                    .expect("frames keep coming"),
            );
        }
        shutdown.trigger();
        stage.join().unwrap().unwrap();
        (got, superseded.load(Ordering::Relaxed))
    }

    #[test]
    fn frames_reach_the_sender_newest_last_with_one_or_several_encoders() {
        for n in [1, 3] {
            let (got, _) = collect(n);
            assert!(
                got.windows(2).all(|w| w[0].id < w[1].id),
                "{n} encoders: ids must increase"
            );
            assert!(got
                .iter()
                .all(|f| crate::jpeg::is_whole(&f.jpeg) && (f.width, f.height) == (160, 120)));
        }
    }
}

//! The client's capture stage: grab frames from the source, encode them, and
//! publish each to the latest-only slot the sender takes from.
//!
//! With one encoder, the capture thread encodes each frame itself. With more
//! (`--encode-threads N`, spare cores), the capture thread hands successive
//! raw frames to the N encoder threads, and the frames are released into the
//! latest-only slot in capture order: a frame that finishes before an
//! earlier one waits for it, so no finished encode is thrown away just for
//! finishing late, and the sender still only ever sees frames newer than the
//! last. Buffers are reused through a pool of N + 1: the capture thread waits
//! for a free one, so at most N + 1 raw frames exist and nothing queues up
//! (a camera keeps its own newest frame meanwhile).
//!
//! [`shape`] applies the adaptation's setting to each frame; [`publish`]
//! releases encoded frames in capture order.

mod publish;
mod shape;
mod unchanged;

pub use unchanged::Unchanged;

use crate::client::adapt::Adapter;
use crate::client::source::outage::Outages;
use crate::client::source::Source;
use crate::latest::LatestSender;
use crate::media::encode::{Encoder, Yuv};
use crate::shutdown::Shutdown;
use crate::shutdown::TICK;
use anyhow::{Context, Result};
use bytes::Bytes;
use crossbeam_channel::RecvTimeoutError;
use publish::Publisher;
use shape::{Shaped, Shaper};
use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A captured, encoded frame waiting in the slot.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub id: u64,
    pub jpeg: Bytes,
    pub width: u16,
    pub height: u16,
    pub captured_at: Instant,
    /// The adaptation level it was made at (0: the setting asked for).
    pub level: usize,
    /// The source's own JPEG, sent as it came (not encoded here).
    pub as_captured: bool,
}

/// An encoder and the quality it was last set to: a quality change (from
/// adaptation) is applied once, not per frame.
struct Tuned {
    encoder: Box<dyn Encoder>,
    quality: Option<u8>,
    /// For YUV frames the encoder cannot take as they are.
    rgb: Vec<u8>,
}

impl Tuned {
    fn new(encoder: Box<dyn Encoder>) -> Self {
        Tuned {
            encoder,
            quality: None,
            rgb: Vec::new(),
        }
    }

    fn set_quality(&mut self, quality: u8) -> Result<()> {
        if self.quality != Some(quality) {
            self.encoder.set_quality(quality)?;
            self.quality = Some(quality);
        }
        Ok(())
    }

    /// Encodes RGB pixels at `quality` into `out`.
    fn rgb(&mut self, data: &[u8], w: u32, h: u32, quality: u8, out: &mut Vec<u8>) -> Result<()> {
        self.set_quality(quality)?;
        self.encoder.encode(data, w, h, out)
    }

    /// Encodes a YUV frame at `quality` into `out`: from YUV where the
    /// encoder can, else through RGB.
    fn yuv(&mut self, data: Yuv<'_>, w: u32, h: u32, quality: u8, out: &mut Vec<u8>) -> Result<()> {
        self.set_quality(quality)?;
        if !self.encoder.encode_yuv(data, w, h, out)? {
            data.to_rgb(w, h, &mut self.rgb);
            self.encoder.encode(&self.rgb, w, h, out)?;
        }
        Ok(())
    }
}

/// How a raw frame's pixels are laid out.
#[derive(Clone, Copy)]
enum Layout {
    Rgb,
    Yuyv,
    I420,
}

/// A raw frame on its way to an encoder thread.
struct RawFrame {
    id: u64,
    /// The pixels, copied as the source gave them (no conversion here: the
    /// encoder thread converts if its encoder needs to).
    pixels: Vec<u8>,
    layout: Layout,
    width: u32,
    height: u32,
    at: Instant,
    quality: u8,
    level: usize,
}

fn dims(w: u32, h: u32) -> Result<(u16, u16)> {
    Ok((
        u16::try_from(w).context("frame wider than 65535")?,
        u16::try_from(h).context("frame taller than 65535")?,
    ))
}

/// Runs the capture stage until shutdown, until nobody reads the slot, or
/// until the source fails and `outages` cannot open it again (the error is
/// returned). `encoders` must not be empty; with more than one, encoding
/// runs on that many threads. Blocks in the source's `next_frame` (see
/// [`Source::next_frame`]) and, while the source is lost, in
/// [`Outages::recover`].
pub fn run(
    mut source: Box<dyn Source>,
    mut encoders: Vec<Box<dyn Encoder>>,
    slot: LatestSender<EncodedFrame>,
    adapter: Arc<Adapter>,
    mut unchanged: Option<Unchanged>,
    mut outages: Outages,
    shutdown: &Shutdown,
) -> Result<()> {
    let mut shaper = Shaper::new(adapter);
    let mut left_out =
        |shaped: &Shaped<'_>| unchanged.as_mut().is_some_and(|u| u.leaves_out(shaped));
    let superseded = slot.superseded_counter();
    let publisher = Arc::new(Publisher {
        slot: Mutex::new((slot, None)),
        wait_for_sender: source.on_demand().then(|| shutdown.clone()),
        superseded: superseded.clone(),
        order: Mutex::default(),
    });
    let mut id = 0u64;

    if encoders.len() <= 1 {
        let mut encoder = Tuned::new(encoders.pop().context("no encoder")?);
        let mut buf = Vec::new();
        while !shutdown.is_triggered() && !publisher.is_orphaned() {
            outages.health.asking();
            let captured = match source.next_frame() {
                Ok(c) => c,
                Err(e) => match failed(&mut outages, e, &publisher, shutdown) {
                    Continue(again) => {
                        source = again;
                        continue;
                    }
                    Break(end) => return end,
                },
            };
            outages.health.frame();
            let at = captured.at;
            let (level, (jpeg, w, h, as_captured)) = match shaper.shape(captured.image, at)? {
                (_, Shaped::Skip) => continue,
                (_, ref shaped) if left_out(shaped) => continue,
                (level, Shaped::Jpeg(data, w, h)) => {
                    (level, (Bytes::copy_from_slice(data), w, h, true))
                }
                (
                    level,
                    Shaped::Rgb {
                        data,
                        width,
                        height,
                        quality,
                    },
                ) => {
                    encoder.rgb(data, width, height, quality, &mut buf)?;
                    (level, (Bytes::copy_from_slice(&buf), width, height, false))
                }
                (
                    level,
                    Shaped::Yuv {
                        data,
                        width,
                        height,
                        quality,
                    },
                ) => {
                    encoder.yuv(data, width, height, quality, &mut buf)?;
                    (level, (Bytes::copy_from_slice(&buf), width, height, false))
                }
            };
            let (width, height) = dims(w, h)?;
            publisher.publish(EncodedFrame {
                id,
                jpeg,
                width,
                height,
                captured_at: at,
                level,
                as_captured,
            });
            id += 1;
        }
        return Ok(());
    }

    // One buffer per encoder plus one being filled: the capture thread waits
    // for a free buffer, so it never renders or copies frames faster than they
    // can be encoded (a camera keeps its own newest frame meanwhile), and this
    // queue never holds more than the buffers there are.
    let buffers = encoders.len() + 1;
    let (raw_tx, raw_rx) = crossbeam_channel::bounded::<RawFrame>(buffers);
    let (pool_tx, pool_rx) = crossbeam_channel::bounded::<Vec<u8>>(buffers);
    for _ in 0..buffers {
        let _ = pool_tx.try_send(Vec::new());
    }
    for (i, encoder) in encoders.into_iter().enumerate() {
        let (rx, publisher, pool, shutdown) = (
            raw_rx.clone(),
            publisher.clone(),
            pool_tx.clone(),
            shutdown.clone(),
        );
        std::thread::Builder::new()
            .name(format!("encode {i}"))
            .spawn(move || {
                let mut buf = Vec::new();
                let mut encoder = Tuned::new(encoder);
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
                    let (w, h, q) = (raw.width, raw.height, raw.quality);
                    let encoded = match raw.layout {
                        Layout::Rgb => encoder.rgb(&raw.pixels, w, h, q, &mut buf),
                        Layout::Yuyv => encoder.yuv(Yuv::Yuyv(&raw.pixels), w, h, q, &mut buf),
                        Layout::I420 => encoder.yuv(Yuv::I420(&raw.pixels), w, h, q, &mut buf),
                    };
                    match encoded.and_then(|_| dims(w, h)) {
                        Ok((width, height)) => publisher.finish(
                            raw.id,
                            Some(EncodedFrame {
                                id: raw.id,
                                jpeg: Bytes::copy_from_slice(&buf),
                                width,
                                height,
                                captured_at: raw.at,
                                level: raw.level,
                                as_captured: false,
                            }),
                        ),
                        Err(e) => {
                            tracing::warn!("frame {} not encoded: {e:#}", raw.id);
                            publisher.finish(raw.id, None);
                        }
                    }
                    let _ = pool.try_send(raw.pixels);
                }
            })?;
    }
    while !shutdown.is_triggered() && !publisher.is_orphaned() {
        let buffer = match pool_rx.recv_timeout(TICK) {
            Ok(buf) => buf,
            Err(_) => continue,
        };
        outages.health.asking();
        let captured = match source.next_frame() {
            Ok(c) => c,
            Err(e) => {
                let _ = pool_tx.try_send(buffer);
                match failed(&mut outages, e, &publisher, shutdown) {
                    Continue(again) => {
                        source = again;
                        continue;
                    }
                    Break(end) => return end,
                }
            }
        };
        outages.health.frame();
        let at = captured.at;
        match shaper.shape(captured.image, at)? {
            (_, Shaped::Skip) => {
                let _ = pool_tx.try_send(buffer);
                continue;
            }
            (_, ref shaped) if left_out(shaped) => {
                let _ = pool_tx.try_send(buffer);
                continue;
            }
            (level, Shaped::Jpeg(data, width, height)) => {
                let (width, height) = dims(width, height)?;
                // After the frames still encoding: in capture order.
                publisher.expect(id);
                publisher.finish(
                    id,
                    Some(EncodedFrame {
                        id,
                        jpeg: Bytes::copy_from_slice(data),
                        width,
                        height,
                        captured_at: at,
                        level,
                        as_captured: true,
                    }),
                );
                let _ = pool_tx.try_send(buffer);
            }
            (level, shaped @ (Shaped::Rgb { .. } | Shaped::Yuv { .. })) => {
                // Copied as it is: an encoder thread converts if it must.
                let (data, layout, width, height, quality) = match shaped {
                    Shaped::Rgb {
                        data,
                        width,
                        height,
                        quality,
                    } => (data, Layout::Rgb, width, height, quality),
                    Shaped::Yuv {
                        data: Yuv::Yuyv(data),
                        width,
                        height,
                        quality,
                    } => (data, Layout::Yuyv, width, height, quality),
                    Shaped::Yuv {
                        data: Yuv::I420(data),
                        width,
                        height,
                        quality,
                    } => (data, Layout::I420, width, height, quality),
                    Shaped::Skip | Shaped::Jpeg(..) => unreachable!("matched above"),
                };
                let mut pixels = buffer;
                pixels.clear();
                pixels.extend_from_slice(data);
                publisher.expect(id);
                // Never full: there are only as many buffers as it holds.
                if raw_tx
                    .try_send(RawFrame {
                        id,
                        pixels,
                        layout,
                        width,
                        height,
                        at,
                        quality,
                        level,
                    })
                    .is_err()
                {
                    publisher.finish(id, None);
                }
            }
        }
        id += 1;
    }
    Ok(())
}

/// The source failed with `e`: it is opened again (Continue), or the stage
/// ends (Break: stopping, or `e` when it cannot be reopened).
fn failed(
    outages: &mut Outages,
    e: anyhow::Error,
    publisher: &Publisher,
    shutdown: &Shutdown,
) -> ControlFlow<Result<()>, Box<dyn Source>> {
    match outages.recover(e, shutdown) {
        Ok(Some(again)) => Continue(again),
        Ok(None) => Break(Ok(())),
        Err(e) => Break(Err(ended(e, publisher, shutdown))),
    }
}

/// How long a stream that ended waits for its last frame to go out.
const ENDED_GRACE: Duration = Duration::from_secs(5);

/// `e` from the source, returned once a stream that ended (`Ended`) got its
/// last frame to the sender (see [`Publisher::flush`]).
fn ended(e: anyhow::Error, publisher: &Publisher, shutdown: &Shutdown) -> anyhow::Error {
    if e.downcast_ref::<crate::client::source::mjpeg::Ended>()
        .is_some()
    {
        publisher.flush(shutdown, ENDED_GRACE);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::source::test_pattern::TestPattern;
    use crate::client::source::Image;
    use crate::latest;
    use crate::media::encode::{encoder, EncoderKind, Subsampling};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    /// Runs the stage with `n` encoders and collects what the sender would see.
    fn collect(n: usize) -> (Vec<EncodedFrame>, u64) {
        collect_from(n, Box::new(TestPattern::new(160, 120, 0.0)))
    }

    /// A camera giving YUYV frames as fast as they are taken.
    struct YuyvCamera(Vec<u8>);

    impl Source for YuyvCamera {
        fn describe(&self) -> String {
            "yuyv".into()
        }
        fn next_frame(&mut self) -> Result<crate::client::source::Captured<'_>> {
            Ok(crate::client::source::Captured {
                image: Image::Yuv {
                    data: Yuv::Yuyv(&self.0),
                    width: 160,
                    height: 120,
                },
                at: Instant::now(),
            })
        }
    }

    #[test]
    fn yuyv_camera_frames_are_encoded_with_one_or_several_encoders() {
        let yuyv = crate::media::convert::tests::yuyv_frame(160, 120);
        for n in [1, 3] {
            let (got, _) = collect_from(n, Box::new(YuyvCamera(yuyv.clone())));
            let decoded = crate::media::decode::decode_rgb(&got[0].jpeg).unwrap();
            assert_eq!(decoded.dimensions(), (160, 120), "{n} encoders");
            assert!(got.windows(2).all(|w| w[0].id < w[1].id));
        }
    }

    fn collect_from(n: usize, source: Box<dyn Source>) -> (Vec<EncodedFrame>, u64) {
        collect_slowly(n, source, Duration::ZERO)
    }

    /// A camera: frames come at its own pace, whether taken or not.
    struct Camera(TestPattern);

    impl Source for Camera {
        fn describe(&self) -> String {
            "camera".into()
        }
        fn next_frame(&mut self) -> Result<crate::client::source::Captured<'_>> {
            self.0.next_frame()
        }
    }

    #[test]
    fn an_on_demand_source_waits_for_a_slow_sender_and_wastes_nothing() {
        // The test pattern at --fps 0 with a sender slower than three
        // encoders: every frame encoded is sent.
        let (got, superseded) = collect_slowly(
            3,
            Box::new(TestPattern::new(160, 120, 0.0)),
            Duration::from_millis(3),
        );
        assert_eq!(superseded, 0);
        assert!(
            got.windows(2).all(|w| w[1].id == w[0].id + 1),
            "none left out"
        );
        // A camera does not wait for anyone: its frames replace each other.
        let (got, superseded) = collect_slowly(
            3,
            Box::new(Camera(TestPattern::new(160, 120, 0.0))),
            Duration::from_millis(3),
        );
        assert!(superseded > 0, "latest-only for a camera");
        assert!(got.windows(2).all(|w| w[0].id < w[1].id));
    }

    /// Runs the stage with `n` encoders; the sender takes a frame every `pause`.
    fn collect_slowly(
        n: usize,
        source: Box<dyn Source>,
        pause: Duration,
    ) -> (Vec<EncodedFrame>, u64) {
        let (slot, rx) = latest::channel();
        let superseded = slot.superseded_counter();
        let shutdown = Shutdown::new();
        let encoders = (0..n)
            .map(|_| encoder(EncoderKind::Auto, 80, Subsampling::S420).unwrap())
            .collect();
        let sd = shutdown.clone();
        let stage = std::thread::spawn(move || {
            run(
                source,
                encoders,
                slot,
                Arc::new(Adapter::fixed(160, 120, 80, 0.0)),
                None,
                Outages::none(),
                &sd,
            )
        });
        let mut got = Vec::new();
        while got.len() < 100 {
            got.push(
                rx.recv_timeout(Duration::from_secs(20))
                    .expect("frames keep coming"),
            );
            // A slow sender (a load, not a synchronization).
            std::thread::sleep(pause);
        }
        shutdown.trigger();
        stage.join().unwrap().unwrap();
        (got, superseded.load(Ordering::Relaxed))
    }

    #[test]
    fn frames_encoded_out_of_order_are_released_in_capture_order_none_wasted() {
        let (slot, rx) = latest::channel();
        let p = Publisher {
            superseded: slot.superseded_counter(),
            slot: Mutex::new((slot, None)),
            wait_for_sender: None,
            order: Mutex::default(),
        };
        let frame = |id| EncodedFrame {
            id,
            jpeg: Bytes::new(),
            width: 1,
            height: 1,
            captured_at: Instant::now(),
            level: 0,
            as_captured: false,
        };
        for id in 1..=4 {
            p.expect(id);
        }
        p.finish(3, Some(frame(3)));
        p.finish(2, Some(frame(2)));
        assert!(rx.try_recv().is_err(), "2 and 3 wait for 1");
        p.finish(1, Some(frame(1)));
        // 1, 2, 3 went out in order: the slot keeps the newest of them.
        assert_eq!(rx.try_recv().unwrap().id, 3);
        p.finish(4, None); // a failed encode does not hold the others up
        p.expect(5);
        p.finish(5, Some(frame(5)));
        assert_eq!(rx.try_recv().unwrap().id, 5);
        // Only the slot's own replacing (the sender was not reading), no
        // encode dropped for finishing late.
        assert_eq!(p.superseded.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn frames_reach_the_sender_newest_last_with_one_or_several_encoders() {
        for n in [1, 3] {
            let (got, _) = collect(n);
            assert!(
                got.windows(2).all(|w| w[0].id < w[1].id),
                "{n} encoders: ids must increase"
            );
            assert!(got.iter().all(
                |f| crate::media::jpeg::is_whole(&f.jpeg) && (f.width, f.height) == (160, 120)
            ));
        }
    }
}

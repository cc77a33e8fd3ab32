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
    raw: Raw,
    /// The pixels, copied as the source gave them (no conversion here: the
    /// encoder thread converts if its encoder needs to).
    pixels: Vec<u8>,
    layout: Layout,
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
    let mut encoding = if encoders.len() <= 1 {
        Encoding::Here {
            encoder: Tuned::new(encoders.pop().context("no encoder")?),
            buf: Vec::new(),
        }
    } else {
        Encoding::threads(encoders, &publisher, shutdown)?
    };
    let mut id = 0u64;
    while !shutdown.is_triggered() && !publisher.is_orphaned() {
        if !encoding.ready() {
            continue;
        }
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
        let (level, shaped) = shaper.shape(captured.image, at)?;
        let (pixels, width, height, quality) = match shaped {
            Shaped::Skip => continue,
            ref shaped if left_out(shaped) => continue,
            Shaped::Jpeg(data, width, height) => {
                let (width, height) = dims(width, height)?;
                // After the frames still encoding: in capture order.
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
                id += 1;
                continue;
            }
            Shaped::Rgb {
                data,
                width,
                height,
                quality,
            } => (Pixels::Rgb(data), width, height, quality),
            Shaped::Yuv {
                data,
                width,
                height,
                quality,
            } => (Pixels::Yuv(data), width, height, quality),
        };
        let raw = Raw {
            id,
            width,
            height,
            at,
            quality,
            level,
        };
        encoding.encode(raw, pixels, &publisher)?;
        id += 1;
    }
    Ok(())
}

/// A frame's pixels as the shaper gives them.
enum Pixels<'a> {
    Rgb(&'a [u8]),
    Yuv(Yuv<'a>),
}

/// What is known of a frame to encode, besides its pixels.
#[derive(Clone, Copy)]
struct Raw {
    id: u64,
    width: u32,
    height: u32,
    at: Instant,
    quality: u8,
    level: usize,
}

impl Raw {
    fn encoded(&self, jpeg: &[u8]) -> Result<EncodedFrame> {
        let (width, height) = dims(self.width, self.height)?;
        Ok(EncodedFrame {
            id: self.id,
            jpeg: Bytes::copy_from_slice(jpeg),
            width,
            height,
            captured_at: self.at,
            level: self.level,
            as_captured: false,
        })
    }
}

/// Where the capture loop's frames are encoded.
enum Encoding {
    /// On the capture thread itself (one encoder): an encoder's error ends
    /// the stage.
    Here { encoder: Tuned, buf: Vec<u8> },
    /// On encoder threads: raw frames go to them with a buffer from a pool
    /// of one per encoder plus one being filled, so the capture thread waits
    /// for a free buffer and never renders or copies frames faster than they
    /// can be encoded (a camera keeps its own newest frame meanwhile), and
    /// the queue never holds more than the buffers there are. A frame that
    /// fails to encode is logged and left out.
    Threads {
        raw: crossbeam_channel::Sender<RawFrame>,
        free: crossbeam_channel::Receiver<Vec<u8>>,
        /// The free buffer the next frame is copied into.
        held: Option<Vec<u8>>,
    },
}

impl Encoding {
    /// Starts an encoder thread for each of `encoders`. Each ends when the
    /// capture thread is gone (the raw frames' channel disconnects), on
    /// `shutdown`, or when nobody reads the output slot.
    fn threads(
        encoders: Vec<Box<dyn Encoder>>,
        publisher: &Arc<Publisher>,
        shutdown: &Shutdown,
    ) -> Result<Encoding> {
        let buffers = encoders.len() + 1;
        let (raw_tx, raw_rx) = crossbeam_channel::bounded::<RawFrame>(buffers);
        let (free_tx, free_rx) = crossbeam_channel::bounded::<Vec<u8>>(buffers);
        for _ in 0..buffers {
            let _ = free_tx.try_send(Vec::new());
        }
        for (i, encoder) in encoders.into_iter().enumerate() {
            let (rx, publisher, free, shutdown) = (
                raw_rx.clone(),
                publisher.clone(),
                free_tx.clone(),
                shutdown.clone(),
            );
            std::thread::Builder::new()
                .name(format!("encode {i}"))
                .spawn(move || {
                    encode_thread(Tuned::new(encoder), rx, &publisher, free, &shutdown)
                })?;
        }
        Ok(Encoding::Threads {
            raw: raw_tx,
            free: free_rx,
            held: None,
        })
    }

    /// True when a frame can be taken from the source: always when encoding
    /// here; on threads, once a buffer is free (false after waiting a
    /// [`TICK`] for one: look at the shutdown and ask again).
    fn ready(&mut self) -> bool {
        match self {
            Encoding::Here { .. } => true,
            Encoding::Threads { free, held, .. } => {
                if held.is_none() {
                    *held = free.recv_timeout(TICK).ok();
                }
                held.is_some()
            }
        }
    }

    /// Encodes the frame here and publishes it, or hands it to an encoder
    /// thread (in capture order: frames after it wait for it).
    fn encode(&mut self, raw: Raw, pixels: Pixels<'_>, publisher: &Publisher) -> Result<()> {
        let (w, h, q) = (raw.width, raw.height, raw.quality);
        match self {
            Encoding::Here { encoder, buf } => {
                match pixels {
                    Pixels::Rgb(data) => encoder.rgb(data, w, h, q, buf)?,
                    Pixels::Yuv(data) => encoder.yuv(data, w, h, q, buf)?,
                }
                publisher.finish(raw.id, Some(raw.encoded(buf)?));
            }
            Encoding::Threads {
                raw: to_encoders,
                held,
                ..
            } => {
                // Copied as it is: an encoder thread converts if it must.
                let (data, layout) = match pixels {
                    Pixels::Rgb(data) => (data, Layout::Rgb),
                    Pixels::Yuv(Yuv::Yuyv(data)) => (data, Layout::Yuyv),
                    Pixels::Yuv(Yuv::I420(data)) => (data, Layout::I420),
                };
                let mut buffer = held.take().unwrap_or_default();
                buffer.clear();
                buffer.extend_from_slice(data);
                publisher.expect(raw.id);
                // Never full: there are only as many buffers as it holds.
                let sent = to_encoders.try_send(RawFrame {
                    raw,
                    pixels: buffer,
                    layout,
                });
                if sent.is_err() {
                    publisher.finish(raw.id, None);
                }
            }
        }
        Ok(())
    }
}

/// An encoder thread: encodes raw frames until the capture thread is gone
/// (disconnected), on shutdown, or when nobody reads the output slot;
/// returns each buffer to the pool.
fn encode_thread(
    mut encoder: Tuned,
    rx: crossbeam_channel::Receiver<RawFrame>,
    publisher: &Publisher,
    free: crossbeam_channel::Sender<Vec<u8>>,
    shutdown: &Shutdown,
) {
    let mut buf = Vec::new();
    loop {
        let RawFrame {
            raw,
            pixels,
            layout,
        } = match rx.recv_timeout(TICK) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout)
                if !shutdown.is_triggered() && !publisher.is_orphaned() =>
            {
                continue
            }
            Err(_) => return,
        };
        let (w, h, q) = (raw.width, raw.height, raw.quality);
        let encoded = match layout {
            Layout::Rgb => encoder.rgb(&pixels, w, h, q, &mut buf),
            Layout::Yuyv => encoder.yuv(Yuv::Yuyv(&pixels), w, h, q, &mut buf),
            Layout::I420 => encoder.yuv(Yuv::I420(&pixels), w, h, q, &mut buf),
        };
        match encoded.and_then(|_| raw.encoded(&buf)) {
            Ok(frame) => publisher.finish(raw.id, Some(frame)),
            Err(e) => {
                tracing::warn!("frame {} not encoded: {e:#}", raw.id);
                publisher.finish(raw.id, None);
            }
        }
        let _ = free.try_send(pixels);
    }
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

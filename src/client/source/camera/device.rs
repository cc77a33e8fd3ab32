//! A real camera through nokhwa (V4L2 on Linux; feature `camera`).

use super::super::{Captured, Image, Source};
use super::{no_camera_message, STALL_FAIL, STALL_WARN};
use crate::media::convert::nv12_to_rgb;
use crate::media::encode::Yuv;
use crate::media::jpeg;
use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::RecvTimeoutError;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use std::time::Instant;

/// One buffer as the device delivered it.
pub struct Raw {
    data: Vec<u8>,
    format: FrameFormat,
    width: u32,
    height: u32,
    at: Instant,
}

impl Raw {
    /// An MJPEG buffer captured now (for a [`Device`] of a test's own).
    pub fn mjpeg(data: Vec<u8>, width: u32, height: u32) -> Self {
        Raw {
            data,
            format: FrameFormat::MJPEG,
            width,
            height,
            at: Instant::now(),
        }
    }
}

/// What the camera thread reads: nokhwa's camera, or a test's double of it.
pub trait Device {
    /// Blocks until the device delivers a buffer; an error ends the
    /// thread (a device unplugged: ENODEV).
    fn frame(&mut self) -> Result<Raw, String>;
    /// Stops the stream (the thread is ending).
    fn stop(&mut self) {}
}

impl Device for nokhwa::Camera {
    fn frame(&mut self) -> Result<Raw, String> {
        let b = nokhwa::Camera::frame(self).map_err(|e| e.to_string())?;
        let res = b.resolution();
        Ok(Raw {
            data: b.buffer().to_vec(),
            format: b.source_frame_format(),
            width: res.width(),
            height: res.height(),
            at: Instant::now(),
        })
    }
    fn stop(&mut self) {
        let _ = self.stop_stream();
    }
}

/// The camera source.
pub struct CameraSource {
    describe: String,
    frames: crate::latest::LatestReceiver<Result<Raw, String>>,
    rgb: Vec<u8>,
    /// The current MJPEG frame, cut at its end and with Huffman tables.
    jpeg: Vec<u8>,
    /// The current YUV frame: YUYV as the camera gave it, or NV12 made
    /// planar (I420, full range).
    yuv: Vec<u8>,
}

/// The cameras the system lists (empty when it lists none or cannot).
fn entries() -> Vec<super::CameraEntry> {
    nokhwa::query(ApiBackend::Auto)
        .map(|list| {
            list.iter()
                .filter_map(|c| {
                    let index = c.index().as_index().ok()?;
                    Some(super::CameraEntry {
                        index,
                        name: c.human_name(),
                        path: if cfg!(target_os = "linux") {
                            format!("/dev/video{index}")
                        } else {
                            c.misc()
                        },
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn list_cameras() -> Vec<String> {
    entries()
        .iter()
        .map(|c| format!("{} = {} ({})", c.index, c.name, c.path))
        .collect()
}

/// `--list-cameras`: every camera with each format, size and rate it
/// offers (a camera that cannot be opened says why).
pub fn list() -> Result<String> {
    let cams = entries();
    if cams.is_empty() {
        return Ok("no cameras found (on Linux: is there a /dev/video* device, and are you in the `video` group?)".into());
    }
    let mut out = String::new();
    for c in cams {
        out += &format!("{}  {}  {}\n", c.index, c.path, c.name);
        let request =
            RequestedFormat::new::<nokhwa::pixel_format::RgbFormat>(RequestedFormatType::None);
        match nokhwa::Camera::new(CameraIndex::Index(c.index), request)
            .and_then(|mut cam| cam.compatible_camera_formats())
        {
            Ok(mut formats) => {
                formats.sort_by_key(|f| {
                    (
                        f.format().to_string(),
                        f.width(),
                        f.height(),
                        f.frame_rate(),
                    )
                });
                for f in formats {
                    out += &format!(
                        "    {} {}x{} @ {} fps\n",
                        f.format(),
                        f.width(),
                        f.height(),
                        f.frame_rate()
                    );
                }
            }
            Err(e) => out += &format!("    (cannot read its formats: {e})\n"),
        }
    }
    Ok(out.trim_end().to_string())
}

/// Opens camera `index`, asking for the closest mode to `width`×`height`
/// at `fps`, preferring MJPEG (sent without re-encoding). Fails now, with
/// the list of cameras found, if the camera cannot be opened.
pub fn open(
    spec: &str,
    format: super::super::CameraFormat,
    width: u32,
    height: u32,
    fps: f64,
) -> Result<Box<dyn Source>> {
    // A stable link (/dev/v4l/by-id/usb-…-video-index0, by-path/…) names
    // the device whatever number it gets when plugged in again.
    let linked = std::fs::canonicalize(spec.trim())
        .ok()
        .filter(|_| spec.trim().starts_with('/'))
        .map(|p| p.to_string_lossy().into_owned());
    let spec = linked.as_deref().unwrap_or(spec);
    let index = match spec.trim().parse::<u32>() {
        Ok(i) => i,
        Err(_) => super::select(spec, &entries())
            .map_err(|e| anyhow!("{e}\n  to stream without a camera use --source test-pattern"))?,
    };
    let fps_u = fps.round().max(1.0) as u32;
    let opened = CameraSource::start(index, move || {
        use super::super::CameraFormat as Wanted;
        let (first, formats): (FrameFormat, &[FrameFormat]) = match format {
            Wanted::Auto => (
                FrameFormat::MJPEG,
                &[
                    FrameFormat::MJPEG,
                    FrameFormat::YUYV,
                    FrameFormat::NV12,
                    FrameFormat::GRAY,
                    FrameFormat::RAWRGB,
                    FrameFormat::RAWBGR,
                ],
            ),
            Wanted::Mjpeg => (FrameFormat::MJPEG, &[FrameFormat::MJPEG]),
            Wanted::Yuyv => (FrameFormat::YUYV, &[FrameFormat::YUYV]),
            Wanted::Nv12 => (FrameFormat::NV12, &[FrameFormat::NV12]),
            Wanted::Gray => (FrameFormat::GRAY, &[FrameFormat::GRAY]),
            Wanted::Rgb => (FrameFormat::RAWRGB, &[FrameFormat::RAWRGB]),
        };
        let wanted = CameraFormat::new_from(width, height, first, fps_u);
        let request = RequestedFormat::with_formats(RequestedFormatType::Closest(wanted), formats);
        let cam = nokhwa::Camera::new(CameraIndex::Index(index), request)
            .and_then(|mut c| c.open_stream().map(|_| c))
            .map_err(|e| e.to_string())?;
        let f = cam.camera_format();
        let describe = format!(
            "camera {index} ({}) {}x{} {} @ {} fps",
            cam.info().human_name(),
            f.width(),
            f.height(),
            f.format(),
            f.frame_rate()
        );
        Ok((Box::new(cam) as Box<dyn Device>, describe))
    })?;
    Ok(Box::new(opened))
}

impl CameraSource {
    /// Reads the device `open` opens, on a thread of its own (nokhwa's
    /// camera must stay on the thread that made it, and may block in the
    /// driver for ever). Returns once it is open, or fails with the list of
    /// cameras found and the way out; `index` names it in that message.
    pub fn start(
        index: u32,
        open: impl FnOnce() -> Result<(Box<dyn Device>, String), String> + Send + 'static,
    ) -> Result<CameraSource> {
        let (tx, frames) = crate::latest::channel();
        let (opened_tx, opened) = crossbeam_channel::bounded::<Result<String, String>>(1);
        std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                let mut cam = match open() {
                    Ok((cam, describe)) => {
                        let _ = opened_tx.send(Ok(describe));
                        cam
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                // Ends when the source is dropped (nobody reads) or the device fails.
                loop {
                    let item = cam.frame();
                    let failed = item.is_err();
                    tx.send(item);
                    if failed || tx.is_orphaned() {
                        cam.stop();
                        return;
                    }
                }
            })
            .context("cannot start the camera thread")?;
        let describe = match opened.recv() {
            Ok(Ok(d)) => d,
            Ok(Err(cause)) => bail!(no_camera_message(index, &list_cameras(), &cause)),
            Err(_) => bail!(no_camera_message(
                index,
                &list_cameras(),
                "the camera thread ended while opening"
            )),
        };
        Ok(CameraSource {
            describe,
            frames,
            rgb: Vec::new(),
            jpeg: Vec::new(),
            yuv: Vec::new(),
        })
    }
}

impl Source for CameraSource {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    /// Blocks until the camera delivers a frame; warns after 2 s of
    /// silence and fails after 10 s.
    fn next_frame(&mut self) -> Result<Captured<'_>> {
        let started = Instant::now();
        let mut warned = false;
        let raw = loop {
            match self.frames.recv_timeout(STALL_WARN) {
                Ok(Ok(raw)) => break raw,
                Ok(Err(e)) if e.contains("os error 19") || e.contains("No such device") => {
                    bail!("camera failed: {e} (unplugged?)")
                }
                Ok(Err(e)) => bail!("camera failed: {e}"),
                Err(RecvTimeoutError::Disconnected) => bail!("the camera thread ended"),
                Err(RecvTimeoutError::Timeout) => {
                    if started.elapsed() >= STALL_FAIL {
                        bail!(
                            "camera delivered no frame for {} s: is it still connected?",
                            STALL_FAIL.as_secs()
                        );
                    }
                    if !warned {
                        tracing::warn!(
                            "camera has delivered no frame for {} s",
                            STALL_WARN.as_secs()
                        );
                        warned = true;
                    }
                }
            }
        };
        let (w, h) = (raw.width as usize, raw.height as usize);
        let at = raw.at;
        match raw.format {
            FrameFormat::MJPEG => {
                jpeg::normalize_mjpeg(&raw.data, &mut self.jpeg).ok_or_else(|| {
                    anyhow!("camera gave an MJPEG frame with no end-of-image marker")
                })?;
            }
            // Kept as it is: encoded from YUV (no RGB detour) where it can be.
            FrameFormat::YUYV => {
                if raw.data.len() < w * h * 2 {
                    bail!(
                        "camera frame is {} bytes, too short for {w}x{h} YUYV",
                        raw.data.len()
                    );
                }
                self.yuv = raw.data;
            }
            FrameFormat::NV12 if w % 2 == 0 && h % 2 == 0 => {
                if raw.data.len() < w * h * 3 / 2 {
                    bail!(
                        "camera frame is {} bytes, too short for {w}x{h} NV12",
                        raw.data.len()
                    );
                }
                crate::media::convert::nv12_to_i420(&raw.data, w, h, &mut self.yuv);
            }
            FrameFormat::NV12 => nv12_to_rgb(&raw.data, w, h, &mut self.rgb),
            FrameFormat::GRAY => {
                self.rgb.clear();
                self.rgb
                    .extend(raw.data.iter().take(w * h).flat_map(|&g| [g, g, g]));
            }
            FrameFormat::RAWRGB => {
                self.rgb.clear();
                self.rgb
                    .extend_from_slice(&raw.data[..(w * h * 3).min(raw.data.len())]);
            }
            FrameFormat::RAWBGR => {
                self.rgb.clear();
                self.rgb.extend(
                    raw.data
                        .chunks_exact(3)
                        .take(w * h)
                        .flat_map(|p| [p[2], p[1], p[0]]),
                );
            }
        }
        let image = if raw.format == FrameFormat::MJPEG {
            Image::Jpeg {
                data: &self.jpeg,
                width: w as u32,
                height: h as u32,
            }
        } else if raw.format == FrameFormat::YUYV {
            Image::Yuv {
                data: Yuv::Yuyv(&self.yuv[..w * h * 2]),
                width: w as u32,
                height: h as u32,
            }
        } else if raw.format == FrameFormat::NV12 && w % 2 == 0 && h % 2 == 0 {
            Image::Yuv {
                data: Yuv::I420(&self.yuv[..w * h * 3 / 2]),
                width: w as u32,
                height: h as u32,
            }
        } else {
            if self.rgb.len() != w * h * 3 {
                bail!(
                    "camera frame is {} bytes, too short for {w}x{h}",
                    self.rgb.len()
                );
            }
            Image::Rgb {
                data: &self.rgb,
                width: w as u32,
                height: h as u32,
            }
        };
        Ok(Captured { image, at })
    }
}

//! Where frames come from: a camera, the synthetic test pattern, a folder of
//! JPEG or PNG files (or one file), an MJPEG stream on standard input,
//! MJPEG over HTTP, or anything an installed ffmpeg reads (RTSP cameras).
//! The [`Source`] trait makes them interchangeable, so tests
//! and benchmarks run the same client with a deterministic source.

use anyhow::Result;
use std::path::PathBuf;
use std::time::Instant;

pub mod camera;
pub mod ffmpeg;
pub mod files;
pub mod mjpeg;
pub mod outage;
pub mod pushed;
pub mod test_pattern;

/// One captured image, borrowed from the source until the next capture.
pub enum Image<'a> {
    /// Packed 8-bit RGB, `width * height * 3` bytes: needs encoding.
    Rgb {
        data: &'a [u8],
        width: u32,
        height: u32,
    },
    /// A whole JPEG (SOI..EOI), sent as it is.
    Jpeg {
        data: &'a [u8],
        width: u32,
        height: u32,
    },
    /// Raw YUV (a camera's YUYV or NV12, the test pattern's I420): encoded
    /// from its luma and chroma where the encoder can, else through RGB.
    Yuv {
        data: crate::media::encode::Yuv<'a>,
        width: u32,
        height: u32,
    },
}

impl Image<'_> {
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Image::Rgb { width, height, .. }
            | Image::Jpeg { width, height, .. }
            | Image::Yuv { width, height, .. } => (*width, *height),
        }
    }
}

/// A frame as the source hands it over.
pub struct Captured<'a> {
    pub image: Image<'a>,
    /// When the frame was captured, on this machine's monotonic clock.
    pub at: Instant,
}

/// A source of frames.
pub trait Source: Send {
    /// What this source is, for logs ("test pattern 640x480 @ 30 fps").
    fn describe(&self) -> String;

    /// Blocks until the next frame is captured and returns it. What unblocks
    /// it: the device delivering a frame (camera; nokhwa has no timeout, so a
    /// stalled camera blocks here and the client's watchdog reports it), or
    /// the next frame time at the configured rate (test pattern, folder).
    fn next_frame(&mut self) -> Result<Captured<'_>>;

    /// True for a source that makes a frame when asked, not when the world
    /// moves (the test pattern or files at `--fps 0`): waiting for the
    /// sender loses no newer moment, so its frames wait for the sender
    /// instead of replacing each other (nothing is encoded for nothing).
    fn on_demand(&self) -> bool {
        false
    }
}

/// Which source to open, as `--source` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Camera,
    TestPattern,
    /// A folder of JPEG/PNG files, or one such file.
    Folder(PathBuf),
    /// An MJPEG byte stream on standard input (`-`).
    Stdin,
    /// MJPEG over HTTP.
    Http(String),
    /// Through an installed ffmpeg: `rtsp://…` or `ffmpeg:ARGS`.
    Ffmpeg(ffmpeg::Input),
}

impl std::str::FromStr for SourceKind {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "camera" => SourceKind::Camera,
            "test-pattern" => SourceKind::TestPattern,
            "-" | "stdin" => SourceKind::Stdin,
            url if url.starts_with("http://") || url.starts_with("https://") => {
                SourceKind::Http(url.to_string())
            }
            url if url.starts_with("rtsp://") || url.starts_with("rtsps://") => {
                SourceKind::Ffmpeg(ffmpeg::Input::rtsp(url))
            }
            args if args.starts_with("ffmpeg:") => {
                SourceKind::Ffmpeg(ffmpeg::Input::args(&args["ffmpeg:".len()..]))
            }
            path => SourceKind::Folder(PathBuf::from(path)),
        })
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKind::Camera => f.write_str("camera"),
            SourceKind::TestPattern => f.write_str("test-pattern"),
            SourceKind::Folder(p) => write!(f, "{}", p.display()),
            SourceKind::Stdin => f.write_str("-"),
            SourceKind::Http(url) => f.write_str(url),
            SourceKind::Ffmpeg(input) => f.write_str(&input.name),
        }
    }
}

/// Which pixel format to ask a camera for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CameraFormat {
    /// MJPEG when the camera offers it (sent without re-encoding), else YUYV or another raw format.
    Auto,
    /// MJPEG only: the camera's own JPEG frames, passed through.
    Mjpeg,
    /// YUYV (4:2:2) only: raw frames, encoded by the client.
    Yuyv,
    /// NV12 (4:2:0) only: raw frames, encoded by the client.
    Nv12,
    /// 8-bit grey only.
    Gray,
    /// Raw RGB only.
    Rgb,
}

/// What a source is asked for. The camera treats size and rate as wishes and
/// picks its closest mode; the others produce exactly this.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// Which camera: an index, a `/dev/videoN` path, or part of its name.
    pub camera: String,
    pub camera_format: CameraFormat,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

/// Opens the configured source, failing now (before any connection is made)
/// with an error that says what to do instead.
pub fn open(cfg: &SourceConfig) -> Result<Box<dyn Source>> {
    Ok(match &cfg.kind {
        SourceKind::Camera => camera::open(
            &cfg.camera,
            cfg.camera_format,
            cfg.width,
            cfg.height,
            cfg.fps,
        )?,
        SourceKind::TestPattern => Box::new(test_pattern::TestPattern::new(
            cfg.width, cfg.height, cfg.fps,
        )),
        SourceKind::Folder(dir) => Box::new(files::Folder::open(dir, cfg.fps)?),
        SourceKind::Stdin => Box::new(mjpeg::StreamSource::stdin()),
        SourceKind::Http(url) => Box::new(mjpeg::HttpSource::open(url)?),
        SourceKind::Ffmpeg(input) => Box::new(ffmpeg::FfmpegSource::open(input.clone())?),
    })
}

/// Paces a source to a frame rate: `wait()` sleeps until the next frame time.
/// After a stall it does not try to catch up with a burst.
pub(crate) struct Pacer {
    period: Option<std::time::Duration>,
    next: Instant,
}

impl Pacer {
    /// `fps` of 0 means as fast as the consumer takes them.
    pub(crate) fn new(fps: f64) -> Self {
        let period = (fps > 0.0).then(|| std::time::Duration::from_secs_f64(1.0 / fps));
        Pacer {
            period,
            next: Instant::now(),
        }
    }

    pub(crate) fn wait(&mut self) {
        let Some(period) = self.period else { return };
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
            self.next += period;
        } else {
            self.next = now + period;
        }
    }
}

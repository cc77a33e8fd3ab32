//! framelink-client's command line: [`ClientOpts`] → [`ClientConfig`].

use super::*;

/// Stream live camera frames to a framelink server, newest first: a frame
/// replaced before it could be sent is never sent.
#[derive(Debug, Parser)]
#[command(name = "framelink-client", version)]
pub struct ClientOpts {
    /// The server, as HOST or HOST:PORT (default port 1998); or several, comma-separated
    /// (`hostA,hostB:2000`): the client uses the first that takes it and moves to the next
    /// when one is down, full or refuses it.
    #[arg(required_unless_present_any = ["list_cameras", "generate"])]
    pub server: Option<String>,

    /// Where frames come from: `camera`, `test-pattern` (synthetic, needs nothing), `-` (an
    /// MJPEG stream on standard input, e.g. from `rpicam-vid --codec mjpeg -o -` or ffmpeg),
    /// an `http://` MJPEG stream (IP camera, ESP32-CAM, mjpg-streamer), an `rtsp://` camera
    /// or `ffmpeg:ARGS` (any input ffmpeg reads, e.g. 'ffmpeg:-i video.mp4'; needs ffmpeg), a
    /// JPEG or PNG file (sent again and again), or a folder of them (name order, looped).
    #[arg(long, default_value = "camera")]
    pub source: SourceKind,

    /// Which camera: an index, a device path (`/dev/video2`), or part of its name
    /// (`--list-cameras` shows them).
    #[arg(long, default_value = "0", value_name = "INDEX|PATH|NAME")]
    pub camera: String,

    /// List the cameras (index, name, device path, and every format, size and rate each
    /// offers), then exit.
    #[arg(long)]
    pub list_cameras: bool,

    /// Pixel format to ask the camera for: `auto` prefers MJPEG, which is sent as the camera
    /// made it (no decode, no re-encode).
    #[arg(long, value_enum, default_value_t = CameraFormat::Auto)]
    pub camera_format: CameraFormat,

    /// Frame width: the camera picks its closest mode.
    #[arg(long, default_value_t = 640)]
    pub width: u32,

    /// Frame height: the camera picks its closest mode.
    #[arg(long, default_value_t = 480)]
    pub height: u32,

    /// Frames a second to capture; 0 means as fast as possible (test pattern and folder only).
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,

    /// JPEG quality, 1-100, for frames this client encodes.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,

    /// JPEG encoder for frames this client encodes: `auto` is libjpeg-turbo when built in.
    #[arg(long, value_enum, default_value_t = EncoderKind::Auto)]
    pub encoder: EncoderKind,

    /// Threads encoding frames, released in capture order (1..=16). Default: one per
    /// core for a source that makes frames on demand (`--fps 0`: the test pattern, files,
    /// a folder), where more encoders mean more frames (BENCHMARKS.md); one at a paced
    /// rate, where one keeps up and a second would cost CPU for nothing.
    #[arg(long, value_name = "N")]
    pub encode_threads: Option<usize>,

    /// Leave out a frame equal to the last one sent (a camera's JPEG: the same image data;
    /// raw pixels: the same on a sample, within a sensor's noise), at most N in a row so the
    /// server still hears from the camera: a still scene costs neither encoding nor bytes.
    #[arg(long, value_name = "N")]
    pub drop_same_frames: Option<u32>,

    /// Seconds without a frame before the source counts as lost (at least three frame
    /// times at --fps): the server is told and shows NO SIGNAL; a source that fails is
    /// opened again, with backoff, while the connection stays up.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub source_timeout: f64,

    /// Chroma subsampling for frames encoded with libjpeg-turbo.
    #[arg(long, value_enum, default_value_t = Subsampling::S420)]
    pub subsampling: Subsampling,

    /// Name shown by the server for this client (default: this machine's host name).
    #[arg(long)]
    pub name: Option<String>,

    #[command(flatten)]
    pub common: CommonOpts,

    /// Write every processing result the server sends back as one JSON line to this file
    /// (`-` for standard output), with its capture→result time.
    #[arg(long, value_name = "PATH")]
    pub results_jsonl: Option<PathBuf>,

    /// Save results that are pictures (e.g. annotated frames) in this folder as FRAME_ID.jpg.
    #[arg(long, value_name = "DIR")]
    pub save_results: Option<PathBuf>,

    /// Adapt to the link: lower JPEG quality, then the frame size, then the frame rate when
    /// frames arrive too old for the server, and step back up when there is headroom.
    #[arg(long, value_enum, default_value = "on", value_name = "on|off")]
    pub adapt: OnOff,

    /// The lowest JPEG quality adaptation may use (1-100, at most --quality).
    #[arg(long, default_value_t = 30, value_name = "Q",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub min_quality: u8,

    /// The narrowest frame adaptation may send, in pixels.
    #[arg(long, default_value_t = 320, value_name = "PIXELS")]
    pub min_width: u32,

    /// Connect with TLS, trusting the server certificate (or its CA) in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,

    /// The name the server's certificate must carry (default: the host in SERVER).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_name: Option<String>,

    /// Seconds to wait for the server to accept a connection.
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub connect_timeout: f64,

    /// Seconds the server may stall mid-message, and a send may block, before reconnecting.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub io_timeout: f64,

    /// Longest wait, in seconds, between reconnection attempts.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub max_backoff: f64,

    /// Status lines: `compact` (link state, accepted fps, drops, age p99, rate, setting,
    /// results) or `detailed` (every figure: sent, superseded, transit, age p50, last result).
    #[arg(long, value_enum, default_value_t = StatusStyle::Compact)]
    pub status: StatusStyle,
}

/// How much a client status line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusStyle {
    Compact,
    Detailed,
}

impl ClientOpts {
    /// Parses the command line, and says which of the flags given there do
    /// not apply to the source chosen (so none is silently ignored).
    pub fn parse_noting_ignored() -> (Self, Vec<String>) {
        let (opts, matches) = super::parse::<Self>();
        let given =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let ignored = opts.ignored_flags(given);
        (opts, ignored)
    }

    /// The flags `given` on the command line that the chosen source does not
    /// use, each with why.
    pub fn ignored_flags(&self, given: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        // `id` is the field's name, as clap knows the flag.
        let mut not = |id: &str, why: &str| {
            if given(id) {
                out.push(format!("--{} does not apply: {why}", id.replace('_', "-")));
            }
        };
        match &self.source {
            SourceKind::Folder(_) => {
                let why = "the folder's files are sent at their own size";
                not("width", why);
                not("height", why);
                not(
                    "quality",
                    "JPEG files are sent as they are (only PNG files are encoded at --quality)",
                );
                not("camera", "the source is a folder");
                not("camera_format", "the source is a folder");
            }
            SourceKind::TestPattern => {
                not("camera", "the source is the test pattern");
                not("camera_format", "the source is the test pattern");
            }
            SourceKind::Stdin | SourceKind::Http(_) | SourceKind::Ffmpeg(_) => {
                let why = "the stream's JPEG frames are sent as they are";
                not("width", why);
                not("height", why);
                not("quality", why);
                not("fps", "the stream sets the rate");
                not("camera", "the source is a stream");
                not("camera_format", "the source is a stream");
            }
            SourceKind::Camera => {}
        }
        out
    }

    pub fn config(&self) -> Result<ClientConfig> {
        if !(self.fps >= 0.0 && self.fps <= 1000.0) {
            bail!("--fps must be 0..=1000, got {}", self.fps);
        }
        crate::client::check_size(self.width, self.height)?;
        let name = self.name.clone().unwrap_or_else(host_name);
        if name.is_empty()
            || name.len() > crate::wire::MAX_NAME_BYTES
            || name.chars().any(char::is_control)
        {
            bail!(
                "--name must be 1 to {} bytes with no control characters",
                crate::wire::MAX_NAME_BYTES
            );
        }
        Ok(ClientConfig {
            server: server_list(self.server.as_deref().unwrap_or_default())?,
            name,
            source: SourceConfig {
                kind: self.source.clone(),
                camera: self.camera.clone(),
                camera_format: self.camera_format,
                width: self.width,
                height: self.height,
                fps: self.fps,
            },
            quality: self.quality,
            encoder: self.encoder,
            subsampling: self.subsampling,
            encode_threads: match self.encode_threads {
                Some(n @ 1..=16) => n,
                Some(n) => bail!("--encode-threads must be 1..=16, got {n}"),
                None => default_encode_threads(self.fps),
            },
            drop_same_frames: match self.drop_same_frames {
                Some(0) => bail!(
                    "--drop-same-frames must be at least 1 (leave it out to send every frame)"
                ),
                n => n,
            },
            connect_timeout: seconds("--connect-timeout", self.connect_timeout)?,
            io_timeout: seconds("--io-timeout", self.io_timeout)?,
            source_timeout: seconds("--source-timeout", self.source_timeout)?,
            max_backoff: seconds("--max-backoff", self.max_backoff)?,
            stats_interval: self.common.stats_interval()?,
            summary_json: self.common.summary_json()?,
            results_jsonl: self.results_jsonl.clone(),
            save_results: self.save_results.clone(),
            adapt: self.adapt == OnOff::On,
            detailed_status: self.status == StatusStyle::Detailed,
            token: self.common.token()?,
            // Both are 1..=100 by their value parsers.
            min_quality: match self.min_quality {
                q if q > self.quality => bail!(
                    "--min-quality {q} is above --quality {}: adaptation lowers quality from \
                     --quality down to --min-quality",
                    self.quality
                ),
                q => q,
            },
            min_width: match self.min_width {
                w @ 16..=65535 => w,
                w => bail!("--min-width must be 16..=65535, got {w}"),
            },
            tls: match &self.tls_ca {
                Some(ca) => Some(crate::client::ClientTls {
                    config: crate::wire::transport::tls::client_config(ca)?,
                    name: match &self.tls_name {
                        Some(n) => Some(crate::wire::transport::tls::server_name(n)?),
                        None => {
                            // Each server's own host is checked when connecting to it:
                            // check here that every one can be a certificate's name.
                            for s in
                                server_list(self.server.as_deref().unwrap_or_default())?.split(',')
                            {
                                crate::wire::transport::tls::server_name(s)?;
                            }
                            None
                        }
                    },
                }),
                None => None,
            },
        })
    }

    pub fn duration(&self) -> Result<Option<Duration>> {
        self.common.duration()
    }
}

/// `--encode-threads` when not given: one per core (at most 16) for an
/// on-demand source (`--fps 0`), else one.
fn default_encode_threads(fps: f64) -> usize {
    if fps == 0.0 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
    } else {
        1
    }
}

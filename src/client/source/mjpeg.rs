//! MJPEG byte streams: JPEG after JPEG with anything between them, as
//! `rpicam-vid --codec mjpeg -o -` or `ffmpeg -f mjpeg -` write to a pipe
//! (`--source -`), and as MJPEG-over-HTTP cameras serve them
//! (`--source http://…`, `multipart/x-mixed-replace`). Frames are cut at
//! their SOI..EOI markers, whatever separates them (part headers, boundary
//! lines, nothing), and passed on untouched: no decode, no re-encode (a
//! frame without Huffman tables, as some camera encoders make, gets the
//! standard ones inserted, as from a camera).
//!
//! Latest-only here too: when more than one whole frame is waiting, the
//! newest is taken and the older ones are dropped (counted). A frame's
//! capture time is when its last byte was read, which leaves out the
//! camera's own latency (exposure, its encoder, the pipe): framelink cannot
//! see it.

use super::{Captured, Image, Source};
use crate::media::jpeg;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::time::{Duration, Instant};

/// The most bytes kept while looking for a frame's end: a frame larger than
/// this is dropped (no camera makes one), and memory stays bounded whatever
/// the stream holds.
pub const MAX_FRAME_BYTES: usize = 32 << 20;
/// Bytes read at a time.
const CHUNK: usize = 256 << 10;

/// Cuts whole JPEGs out of a byte stream.
#[derive(Default)]
pub struct Cutter {
    buf: Vec<u8>,
    /// Frames dropped: replaced by a newer whole frame before they were
    /// taken, or too large.
    pub dropped: u64,
}

impl Cutter {
    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the newest whole JPEG now buffered (older whole ones are
    /// dropped), keeping what follows it. None: no whole frame yet.
    pub fn newest(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.newest_into(&mut out).then_some(out)
    }

    /// [`newest`](Self::newest) into `out` (its capacity reused); false
    /// when no whole frame is buffered yet.
    pub fn newest_into(&mut self, out: &mut Vec<u8>) -> bool {
        let mut newest: Option<(usize, usize)> = None;
        let mut at = 0;
        loop {
            let Some(start) = find_soi(&self.buf[at..]).map(|s| at + s) else {
                // No frame start: nothing is worth keeping but the last two
                // bytes, which may begin one (FF D8 of FF D8 FF).
                at = at.max(self.buf.len().saturating_sub(2));
                break;
            };
            match jpeg::whole_len(&self.buf[start..]) {
                Some(n) => {
                    if newest.is_some() {
                        self.dropped += 1;
                    }
                    newest = Some((start, start + n));
                    at = start + n;
                }
                None if self.buf.len() - start > MAX_FRAME_BYTES => {
                    // Too long without an end: not a frame. Look past its SOI.
                    self.dropped += 1;
                    at = start + 2;
                }
                None => {
                    at = start;
                    break;
                }
            }
        }
        // Cut from the buffer straight into `out`: one copy per frame.
        let found =
            newest.is_some_and(|(s, e)| jpeg::normalize_mjpeg(&self.buf[s..e], out).is_some());
        self.buf.drain(..at);
        found
    }
}

/// Where the next SOI (FF D8 FF) starts in `b`.
fn find_soi(b: &[u8]) -> Option<usize> {
    memchr::memmem::find(b, &[0xFF, 0xD8, 0xFF])
}

/// A source reading MJPEG from any byte stream (standard input, a pipe).
pub struct StreamSource {
    name: String,
    input: Box<dyn Read + Send>,
    cutter: Cutter,
    frame: Vec<u8>,
    /// When `frame`'s last byte was read.
    at: Instant,
    /// Where reads land, reused.
    chunk: Vec<u8>,
    frames: u64,
}

/// The stream ended: the client stops by itself, without an error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Ended(pub String);

impl StreamSource {
    /// Reads frames from `input`, named `name` in logs ("standard input").
    pub fn new(name: impl Into<String>, input: Box<dyn Read + Send>) -> Self {
        StreamSource {
            name: name.into(),
            input,
            cutter: Cutter::default(),
            frame: Vec::new(),
            at: Instant::now(),
            chunk: vec![0u8; CHUNK],
            frames: 0,
        }
    }

    /// Standard input (`--source -`).
    pub fn stdin() -> Self {
        Self::new("standard input", Box::new(std::io::stdin()))
    }

    /// The frame the last [`next_frame`](Source::next_frame) returned, again.
    pub fn last_frame(&self) -> Result<Captured<'_>> {
        whole_frame(&self.frame, self.at)
    }
}

impl Source for StreamSource {
    fn describe(&self) -> String {
        format!("MJPEG from {}", self.name)
    }

    /// Blocks until a whole frame has been read; the stream's writer
    /// unblocks it (a frame, or the end of the stream).
    fn next_frame(&mut self) -> Result<Captured<'_>> {
        loop {
            if self.cutter.newest_into(&mut self.frame) {
                break;
            }
            let n = self
                .input
                .read(&mut self.chunk)
                .with_context(|| format!("cannot read {}", self.name))?;
            if n == 0 {
                return Err(Ended(format!(
                    "{} ended after {} frame{}",
                    self.name,
                    self.frames,
                    if self.frames == 1 { "" } else { "s" }
                ))
                .into());
            }
            self.cutter.push(&self.chunk[..n]);
        }
        self.frames += 1;
        self.at = Instant::now();
        whole_frame(&self.frame, self.at)
    }
}

/// The frame as the capture stage takes it, with its size from its header.
fn whole_frame(frame: &[u8], at: Instant) -> Result<Captured<'_>> {
    let Some((w, h)) = jpeg::dimensions(frame) else {
        bail!("a frame with no readable size (not exactly one frame header)");
    };
    Ok(Captured {
        image: Image::Jpeg {
            data: frame,
            width: w as u32,
            height: h as u32,
        },
        at,
    })
}

/// MJPEG over HTTP (`--source http://HOST/PATH`): an IP camera, an ESP32-CAM,
/// mjpg-streamer, an IP-webcam app, or framelink's own live view
/// (`/stream/<id>.mjpg`). Reconnects by itself, 100 ms doubling to 5 s.
pub struct HttpSource {
    url: String,
    agent: ureq::Agent,
    body: Option<Box<dyn Read + Send>>,
    cutter: Cutter,
    frame: Vec<u8>,
    /// Where reads land, reused.
    chunk: Vec<u8>,
    backoff: Duration,
    /// The last problem, so each is logged once.
    problem: Option<String>,
}

impl HttpSource {
    /// Checks the URL and connects once, so a wrong address or a page that
    /// is not a stream fails at start with its reason.
    pub fn open(url: &str) -> Result<Self> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout_read(Duration::from_secs(10))
            .build();
        let mut s = HttpSource {
            url: url.to_string(),
            agent,
            body: None,
            cutter: Cutter::default(),
            frame: Vec::new(),
            chunk: vec![0u8; CHUNK],
            backoff: Duration::from_millis(100),
            problem: None,
        };
        s.body = Some(s.connect()?);
        Ok(s)
    }

    fn connect(&self) -> Result<Box<dyn Read + Send>> {
        let resp = self.agent.get(&self.url).call().map_err(|e| {
            anyhow::anyhow!(
                "cannot get the MJPEG stream {}: {}",
                self.url,
                http_error(e)
            )
        })?;
        let kind = resp.content_type().to_ascii_lowercase();
        if !(kind.starts_with("multipart/") || kind == "image/jpeg") {
            bail!(
                "{} is {kind}, not an MJPEG stream (multipart/x-mixed-replace of JPEGs)",
                self.url
            );
        }
        Ok(Box::new(resp.into_reader()))
    }
}

impl HttpSource {
    /// Logs a problem once, drops the connection and waits before the next.
    fn trouble(&mut self, why: String) {
        if self.problem.as_deref() != Some(why.as_str()) {
            tracing::warn!("{}: {why}; reconnecting", self.url);
            self.problem = Some(why);
        }
        self.body = None;
        self.cutter = Cutter::default();
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
    }
}

impl Source for HttpSource {
    fn describe(&self) -> String {
        format!("MJPEG over HTTP from {}", self.url)
    }

    /// Blocks until a whole frame has been read; the camera unblocks it, or
    /// the read timeout (10 s) after which it reconnects.
    fn next_frame(&mut self) -> Result<Captured<'_>> {
        loop {
            if self.cutter.newest_into(&mut self.frame) {
                self.backoff = Duration::from_millis(100);
                if self.problem.take().is_some() {
                    tracing::info!("{}: frames again", self.url);
                }
                break;
            }
            if self.body.is_none() {
                match self.connect() {
                    Ok(body) => self.body = Some(body),
                    Err(e) => {
                        self.trouble(format!("{e:#}"));
                        continue;
                    }
                }
            }
            let body = self.body.as_mut().expect("connected above");
            match body.read(&mut self.chunk) {
                Ok(0) => self.trouble("the stream ended".into()),
                Ok(n) => self.cutter.push(&self.chunk[..n]),
                Err(e) => self.trouble(format!("cannot read it: {e}")),
            }
        }
        whole_frame(&self.frame, Instant::now())
    }
}

/// An HTTP failure said once: ureq's own text repeats the URL and its cause.
fn http_error(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, resp) => {
            format!("the server answered {code} {}", resp.status_text())
        }
        ureq::Error::Transport(t) => match std::error::Error::source(&t) {
            Some(cause) => format!("{}: {cause}", t.kind()),
            None => t.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::jpeg::tests::sample_jpeg;

    #[test]
    fn frames_are_cut_whatever_lies_between_them() {
        let (a, b) = (sample_jpeg(16, 8), sample_jpeg(32, 16));
        let mut stream = b"--boundary\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
        stream.extend(&a);
        stream.extend(b"\r\n--boundary\r\n\r\n");
        stream.extend(&b);
        let mut c = Cutter::default();
        // Byte by byte: every frame is found once, whole, never early.
        let mut got = Vec::new();
        for byte in &stream {
            c.push(std::slice::from_ref(byte));
            if let Some(f) = c.newest() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![a, b]);
        assert_eq!(c.dropped, 0);
    }

    #[test]
    fn of_several_whole_frames_only_the_newest_is_taken() {
        let frames: Vec<Vec<u8>> = (1..=3).map(|i| sample_jpeg(8 * i, 8)).collect();
        let mut c = Cutter::default();
        for f in &frames {
            c.push(f);
        }
        c.push(&frames[0][..10]); // the start of a fourth
        assert_eq!(c.newest().as_ref(), Some(&frames[2]));
        assert_eq!(c.dropped, 2);
        assert_eq!(c.newest(), None, "the fourth is not whole yet");
        c.push(&frames[0][10..]);
        assert_eq!(c.newest().as_ref(), Some(&frames[0]));
    }

    #[test]
    fn memory_stays_bounded_on_a_stream_that_never_ends_a_frame() {
        let mut c = Cutter::default();
        c.push(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10]);
        let junk = vec![0x11u8; 1 << 20];
        for _ in 0..40 {
            c.push(&junk);
            assert_eq!(c.newest(), None);
            assert!(c.buf.len() <= MAX_FRAME_BYTES + junk.len());
        }
        assert!(c.dropped >= 1);
    }

    #[test]
    fn a_stream_source_passes_frames_through_untouched_and_ends() {
        let (a, b) = (sample_jpeg(16, 8), sample_jpeg(32, 16));
        let mut bytes = a.clone();
        bytes.extend(&b);
        let mut s = StreamSource::new("test", Box::new(std::io::Cursor::new(bytes)));
        let f = s.next_frame().unwrap();
        assert!(matches!(f.image, Image::Jpeg { data, width: 32, height: 16 } if data == &b[..]));
        let e = s.next_frame().err().unwrap();
        assert!(e.downcast_ref::<Ended>().is_some(), "{e:#}");
    }
}

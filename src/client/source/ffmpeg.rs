//! Anything ffmpeg can read, through an installed `ffmpeg`: an RTSP IP
//! camera (`--source rtsp://…`), or any input you describe
//! (`--source 'ffmpeg:-f v4l2 -i /dev/video0'`, a video file, a test
//! source). ffmpeg runs as a child writing MJPEG to a pipe
//! (`-f mjpeg -q:v 3 -`), which is cut into frames like `--source -`.
//!
//! The child never outlives the client: it is killed when the source is
//! dropped, and the kernel kills it if the client dies (`PR_SET_PDEATHSIG`).
//! An RTSP camera that drops the stream (a reboot, the network) is opened
//! again with backoff, 1 s doubling to 10 s; any other input that ends by
//! itself (a file) ends the run cleanly, and one whose ffmpeg is killed or
//! fails is an error, which the capture stage takes as the source lost and
//! opens again (see [`outage`](super::outage)).

use super::mjpeg::{Ended, StreamSource};
use super::{Captured, Source};
use anyhow::{bail, Context, Result};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tracing::warn;

/// What ffmpeg is told to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// ffmpeg's input options, as a shell would split them (`-i URL`, …).
    pub args: String,
    /// A live stream to open again when it drops (RTSP).
    pub live: bool,
    /// For logs: the URL, or `ffmpeg ARGS`.
    pub name: String,
}

impl Input {
    /// `rtsp://…`: over TCP (no lost UDP packets smearing frames).
    pub fn rtsp(url: &str) -> Input {
        Input {
            args: format!("-rtsp_transport tcp -i '{}'", url.replace('\'', "'\\''")),
            live: true,
            name: url.to_string(),
        }
    }

    /// `ffmpeg:ARGS`.
    pub fn args(args: &str) -> Input {
        Input {
            args: args.to_string(),
            live: false,
            name: format!("ffmpeg {args}"),
        }
    }
}

/// A source reading ffmpeg's MJPEG output.
pub struct FfmpegSource {
    input: Input,
    child: Option<Child>,
    stream: Option<StreamSource>,
    backoff: Duration,
}

impl FfmpegSource {
    /// Starts ffmpeg; fails at once if it is not installed.
    pub fn open(input: Input) -> Result<Self> {
        if Command::new("ffmpeg")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            bail!(
                "{} needs ffmpeg, which is not installed: install it (Debian/Ubuntu/Raspberry Pi OS: sudo apt install ffmpeg), or pipe MJPEG in yourself with --source -",
                input.name
            );
        }
        let mut s = FfmpegSource {
            input,
            child: None,
            stream: None,
            backoff: Duration::from_secs(1),
        };
        s.start()?;
        Ok(s)
    }

    fn start(&mut self) -> Result<()> {
        self.stop();
        // The shell splits ARGS as a user would type them, then becomes ffmpeg.
        let script = format!(
            "exec ffmpeg -hide_banner -loglevel error -nostdin {} -an -f mjpeg -q:v 3 -",
            self.input.args
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        crate::shutdown::signal_when_parent_dies(&mut cmd, libc::SIGKILL);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start ffmpeg for {}", self.input.name))?;
        let out = child.stdout.take().context("ffmpeg's output")?;
        self.stream = Some(StreamSource::new(self.input.name.clone(), Box::new(out)));
        self.child = Some(child);
        Ok(())
    }

    fn stop(&mut self) {
        self.stream = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// "was killed (signal 9)", "exited with status 1".
fn exit_text(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.signal(), st.code()) {
        (Some(sig), _) => format!("was killed (signal {sig})"),
        (_, Some(code)) => format!("exited with status {code}"),
        _ => format!("ended ({st})"),
    }
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Source for FfmpegSource {
    fn describe(&self) -> String {
        format!("{} through ffmpeg", self.input.name)
    }

    /// Blocks until ffmpeg writes a whole frame; unblocked by its next
    /// frame or its exit.
    fn next_frame(&mut self) -> Result<Captured<'_>> {
        loop {
            let stream = self.stream.as_mut().context("ffmpeg is not running")?;
            match stream.next_frame() {
                // Re-borrowed to return it: the loop ends here.
                Ok(_) => break,
                Err(e) if self.input.live && e.downcast_ref::<Ended>().is_some() => {
                    warn!(
                        "{} ended; opening it again in {:.0} s",
                        self.input.name,
                        self.backoff.as_secs_f64()
                    );
                    self.stop();
                    std::thread::sleep(self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(10));
                    self.start()?;
                }
                Err(e) if e.downcast_ref::<Ended>().is_some() => {
                    // Any other input: an exit of its own (a file read to
                    // its end) ends the run; ffmpeg killed or failing is a
                    // source lost, opened again by the capture stage.
                    let status = self.child.as_mut().map(|c| c.wait());
                    self.stop();
                    match status {
                        Some(Ok(st)) if st.success() => return Err(e),
                        Some(Ok(st)) => bail!("ffmpeg for {} {}", self.input.name, exit_text(st)),
                        _ => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.backoff = Duration::from_secs(1);
        self.stream
            .as_mut()
            .context("ffmpeg is not running")?
            .last_frame()
    }
}

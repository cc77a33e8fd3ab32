//! `exec:COMMAND`: an external program as the processor, so a detector in
//! Python (or anything else) plugs in without Rust. COMMAND runs under
//! `sh -c` with frames on its stdin and results on its stdout; its stderr is
//! the server's. One frame is in flight at a time.
//!
//! To the program, per frame: one header line of JSON, then exactly `bytes`
//! bytes of picture:
//!
//! ```text
//! {"frame_id":12,"client":"cam1","width":640,"height":480,"format":"jpeg","bytes":34567}\n
//! <34567 bytes: the JPEG as it arrived>
//! ```
//!
//! With `--exec-input gray` the format is `"gray"` and the bytes are
//! `width × height` 8-bit luma values, row by row (no decoder needed).
//!
//! From the program, per frame: one line holding one JSON value, which goes
//! back to the client as a JSON result (`null`: no result). To send a
//! picture back instead, print an object with `"jpeg_bytes": N` and then
//! exactly N bytes of JPEG. Lines are at most 1 MiB, pictures 16 MiB.
//!
//! A program that exits, prints something that is not a JSON line, or takes
//! longer than `--process-timeout` on a frame is killed (with everything it
//! started) and started again on a later frame, after 0.1 s at first and up
//! to 5 s while it keeps failing. Each such frame gets a `failed` result that
//! says why; streaming is not affected.
//!
//! The program never outlives the server: on shutdown its process group is
//! killed at once (a frame in hand is answered `failed`), also on a second
//! Ctrl-C. If the server itself is killed (`kill -9`), the shell that runs
//! COMMAND kills its whole process group, told both by a pipe only the server
//! writes to reaching its end and by the kernel's SIGTERM
//! (`PR_SET_PDEATHSIG`); see [`SUPERVISOR`].

use super::Output;
use super::Processor;
use crate::process::FrameView;
use crate::shutdown::{Shutdown, TICK};
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Longest result line accepted from the program.
pub const MAX_LINE: usize = 1 << 20;
/// Largest picture accepted from the program.
pub const MAX_JPEG: usize = 16 << 20;

/// The shell script COMMAND runs under (as `$1`): COMMAND in a subshell with
/// the frames pipe as its standard input, and a shell that waits for it and
/// passes on its exit status. The process group (COMMAND and all it
/// started) is killed when the server dies, two ways: a watcher blocked on
/// reading fd 4, the lifeline (a pipe whose only writer is the server, so it
/// reads end-of-file the moment the server is gone, however it went), and
/// the shell's trap on SIGTERM, which the kernel sends it then too
/// (`PR_SET_PDEATHSIG`). The watcher holds none of the other pipes, so
/// COMMAND's own end is still seen as the end of its output.
pub const SUPERVISOR: &str = concat!(
    "exec 3<&0; trap 'kill -KILL 0' TERM; ",
    "{ read -r line <&4; kill -KILL 0; } <&- 3<&- >/dev/null 2>&1 & ",
    r#"(eval "$1") <&3 3<&- 4<&- & wait $!; exit $?"#
);

/// The file descriptor the lifeline's reading end has in the supervising shell.
const LIFELINE_FD: i32 = 4;

/// What the program is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecInput {
    /// The JPEG exactly as it arrived.
    Jpeg,
    /// Decoded 8-bit grayscale, width × height bytes.
    Gray,
}

/// The `exec:COMMAND` processor (see the module docs).
pub struct ExecProcessor {
    command: String,
    input: ExecInput,
    timeout: Duration,
    /// Stops a wait for the program's answer, and any restart.
    stop: Shutdown,
    child: Option<Running>,
    /// Failures in a row; sets the restart delay.
    failures: u32,
    restart_at: Option<Instant>,
}

/// The program while it runs, with its two pipe threads.
struct Running {
    child: Child,
    to_child: Sender<Vec<u8>>,
    replies: Receiver<Result<Output, String>>,
    /// The lifeline's writing end (see [`SUPERVISOR`]): never written, only
    /// held; closed with the server.
    _lifeline: std::io::PipeWriter,
}

impl ExecProcessor {
    /// Starts COMMAND. Fails only if no process can be started at all.
    /// Triggering `stop` kills the program and ends the wait on it.
    pub fn start(
        command: &str,
        input: ExecInput,
        timeout: Duration,
        stop: Shutdown,
    ) -> Result<Self> {
        let mut p = ExecProcessor {
            command: command.to_string(),
            input,
            timeout,
            stop,
            child: None,
            failures: 0,
            restart_at: None,
        };
        p.child = Some(p.spawn()?);
        info!("exec processor started: {command}");
        Ok(p)
    }

    fn spawn(&self) -> Result<Running> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("framelink-exec")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        // Started from the server's main or processing thread: both live as
        // long as the server.
        crate::shutdown::signal_when_parent_dies(&mut command, libc::SIGTERM);
        let (lifeline_read, lifeline) =
            std::io::pipe().context("cannot make a pipe for the exec processor")?;
        let read_fd = lifeline_read.as_raw_fd();
        // SAFETY: only dup2(2) or fcntl(2) between fork and exec: the
        // lifeline's reading end becomes fd 4, kept across exec (both ends
        // are close-on-exec otherwise).
        unsafe {
            command.pre_exec(move || {
                let kept = if read_fd == LIFELINE_FD {
                    libc::fcntl(LIFELINE_FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(read_fd, LIFELINE_FD)
                };
                if kept < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start the exec processor `{}`", self.command))?;
        drop(lifeline_read);
        crate::shutdown::own_child_group(child.id() as i32);
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (to_child, frames) = crossbeam_channel::bounded::<Vec<u8>>(1);
        let (replies_tx, replies) = crossbeam_channel::bounded(1);
        // Both threads end when the program does (broken pipe, end of file).
        std::thread::Builder::new()
            .name("exec stdin".into())
            .spawn(move || {
                for buf in frames {
                    if stdin.write_all(&buf).and_then(|_| stdin.flush()).is_err() {
                        break;
                    }
                }
            })?;
        std::thread::Builder::new()
            .name("exec stdout".into())
            .spawn(move || {
                let mut out = BufReader::new(stdout);
                loop {
                    let reply = read_reply(&mut out);
                    let stop = reply.is_err();
                    if replies_tx.send(reply).is_err() || stop {
                        break;
                    }
                }
            })?;
        Ok(Running {
            _lifeline: lifeline,
            child,
            to_child,
            replies,
        })
    }

    /// Kills the program and everything it started; returns how it ended.
    fn kill(&mut self) -> String {
        let Some(mut r) = self.child.take() else {
            return String::new();
        };
        crate::shutdown::kill_child_group(r.child.id() as i32);
        match r.child.wait() {
            // The shell's own codes: the command was not there, or not runnable.
            Ok(s) if s.code() == Some(127) => format!(" ({s}: the command was not found)"),
            Ok(s) if s.code() == Some(126) => format!(" ({s}: the command cannot be run)"),
            Ok(s) => format!(" ({s})"),
            Err(_) => String::new(),
        }
    }

    /// Kills the program and everything it started; schedules a restart.
    fn fail(&mut self, why: String) -> anyhow::Error {
        let status = self.kill();
        self.failures += 1;
        let delay = Duration::from_millis(100 << self.failures.min(6).saturating_sub(1))
            .min(Duration::from_secs(5));
        self.restart_at = Some(Instant::now() + delay);
        warn!(
            "exec processor `{}` {why}{status}; restarting it in {delay:?}",
            self.command
        );
        anyhow!("`{}` {why}{status}; restarting it", self.command)
    }

    /// The header line and picture bytes for one frame.
    fn input_for(&self, view: &mut FrameView) -> Result<Vec<u8>> {
        let (format, width, height, gray) = match self.input {
            ExecInput::Jpeg => (
                "jpeg",
                view.frame.width as u32,
                view.frame.height as u32,
                None,
            ),
            ExecInput::Gray => {
                let rgb = view.rgb().map_err(|e| anyhow!(e))?;
                let gray: Vec<u8> = rgb
                    .as_raw()
                    .chunks_exact(3)
                    .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8)
                    .collect();
                ("gray", rgb.width(), rgb.height(), Some(gray))
            }
        };
        let f = &view.frame;
        let body = gray.as_deref().unwrap_or(&f.jpeg);
        let header = serde_json::json!({
            "frame_id": f.frame_id,
            "client": &*f.client_name,
            "width": width,
            "height": height,
            "format": format,
            "bytes": body.len(),
        });
        let mut buf = serde_json::to_vec(&header)?;
        buf.push(b'\n');
        buf.extend_from_slice(body);
        Ok(buf)
    }
}

/// Reads one reply: a JSON line, and the picture it announces.
fn read_reply(out: &mut impl BufRead) -> Result<Output, String> {
    let mut line = Vec::new();
    let n = out
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("could not be read: {e}"))?;
    if n == 0 {
        return Err("exited".into());
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_LINE {
            format!("printed a line over {MAX_LINE} bytes")
        } else {
            "exited mid-line".into()
        });
    }
    let text =
        std::str::from_utf8(&line).map_err(|_| "printed bytes that are not UTF-8".to_string())?;
    let text = text.trim();
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let shown: String = text.chars().take(80).collect();
        format!("printed a line that is not JSON ({e}): {shown:?}")
    })?;
    match value.get("jpeg_bytes") {
        Some(n) => {
            let n = n
                .as_u64()
                .filter(|&n| n <= MAX_JPEG as u64)
                .ok_or_else(|| format!("announced jpeg_bytes {n}, not 0..={MAX_JPEG}"))?;
            let mut jpeg = vec![0u8; n as usize];
            out.read_exact(&mut jpeg)
                .map_err(|e| format!("announced {n} JPEG bytes but sent fewer: {e}"))?;
            Ok(Output::Jpeg(Bytes::from(jpeg)))
        }
        None if value.is_null() => Ok(Output::None),
        None => Ok(Output::Json(text.to_string())),
    }
}

impl Processor for ExecProcessor {
    fn name(&self) -> &str {
        "exec"
    }

    /// Blocks until the program answers, `--process-timeout` passes, it
    /// exits, or the server shuts down (checked every [`TICK`]).
    fn process(&mut self, view: &mut FrameView) -> Result<Output> {
        if self.stop.is_triggered() {
            self.kill();
            bail!("not run: the server is shutting down");
        }
        if self.child.is_none() {
            if let Some(at) = self.restart_at {
                if Instant::now() < at {
                    bail!("`{}` is restarting after a failure", self.command);
                }
            }
            self.child = Some(self.spawn()?);
            info!("exec processor restarted: {}", self.command);
        }
        let input = self.input_for(view)?;
        let r = self.child.as_ref().expect("running");
        if r.to_child.try_send(input).is_err() {
            return Err(self.fail("is not reading its input".into()));
        }
        let deadline = Instant::now() + self.timeout;
        let reply = loop {
            let wait = deadline.saturating_duration_since(Instant::now()).min(TICK);
            match r.replies.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) if self.stop.is_triggered() => {
                    let status = self.kill();
                    info!("exec processor `{}` stopped{status}", self.command);
                    bail!("stopped: the server is shutting down");
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => continue,
                other => break other,
            }
        };
        match reply {
            Ok(Ok(out)) => {
                self.failures = 0;
                Ok(out)
            }
            Ok(Err(why)) => Err(self.fail(why)),
            Err(RecvTimeoutError::Timeout) => Err(self.fail(format!(
                "gave no result within {:?} (--process-timeout)",
                self.timeout
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(self.fail("exited".into())),
        }
    }
}

impl Drop for ExecProcessor {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::frame::tests::arrived;

    fn view() -> FrameView {
        FrameView::new(arrived(crate::media::jpeg::tests::sample_jpeg(16, 8)))
    }

    #[test]
    fn replies_parse_json_null_and_pictures() {
        let mut r = &b"{\"a\":1}\nnull\n{\"jpeg_bytes\":3}\nxyz7\n"[..];
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Output::Json("{\"a\":1}".into())
        );
        assert_eq!(read_reply(&mut r).unwrap(), Output::None);
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Output::Jpeg(Bytes::from_static(b"xyz"))
        );
        assert_eq!(read_reply(&mut r).unwrap(), Output::Json("7".into()));
        assert_eq!(read_reply(&mut r).unwrap_err(), "exited");
        assert!(read_reply(&mut &b"hello\n"[..])
            .unwrap_err()
            .contains("not JSON"));
        assert!(read_reply(&mut &b"{\"jpeg_bytes\":99999999999}\n"[..])
            .unwrap_err()
            .contains("jpeg_bytes"));
        assert!(read_reply(&mut &b"{\"jpeg_bytes\":5}\nab"[..])
            .unwrap_err()
            .contains("fewer"));
        let long = vec![b'1'; MAX_LINE + 10];
        assert!(read_reply(&mut &long[..]).unwrap_err().contains("over"));
    }

    #[test]
    fn a_program_gets_the_header_and_bytes_and_answers() {
        // Echoes the header line back as its result, and skips the bytes.
        let cmd = r#"while IFS= read -r line; do n=$(printf '%s' "$line" | sed 's/.*"bytes":\([0-9]*\).*/\1/'); dd bs=1 count="$n" status=none >/dev/null; printf '%s\n' "$line"; done"#;
        let mut p = ExecProcessor::start(
            cmd,
            ExecInput::Jpeg,
            Duration::from_secs(10),
            Shutdown::new(),
        )
        .unwrap();
        let mut v = view();
        for _ in 0..3 {
            let Output::Json(j) = p.process(&mut v).unwrap() else {
                panic!("a JSON result")
            };
            let j: serde_json::Value = serde_json::from_str(&j).unwrap();
            assert_eq!(j["frame_id"], 1);
            assert_eq!(j["client"], "cam");
            assert_eq!(
                (j["width"].as_u64(), j["height"].as_u64()),
                (Some(16), Some(8))
            );
            assert_eq!(j["format"], "jpeg");
            assert_eq!(j["bytes"].as_u64(), Some(v.frame.jpeg.len() as u64));
        }
    }

    #[test]
    fn a_hung_program_is_killed_and_restarted() {
        let mut p = ExecProcessor::start(
            "sleep 30",
            ExecInput::Jpeg,
            Duration::from_millis(200),
            Shutdown::new(),
        )
        .unwrap();
        let started = Instant::now();
        let e = p.process(&mut view()).unwrap_err().to_string();
        assert!(e.contains("--process-timeout"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the sleeper was killed"
        );
        let e = p.process(&mut view()).unwrap_err().to_string();
        assert!(e.contains("restarting"), "{e}");
    }

    #[test]
    fn a_crashing_program_is_reported() {
        let mut p = ExecProcessor::start(
            "exit 3",
            ExecInput::Gray,
            Duration::from_secs(10),
            Shutdown::new(),
        )
        .unwrap();
        let e = p.process(&mut view()).unwrap_err().to_string();
        assert!(e.contains("exited") || e.contains("not reading"), "{e}");
    }

    /// A mistyped command says so, not only "exit status: 127".
    #[test]
    fn a_command_that_is_not_there_is_named_as_such() {
        let mut p = ExecProcessor::start(
            "framelink-no-such-command-here",
            ExecInput::Jpeg,
            Duration::from_secs(10),
            Shutdown::new(),
        )
        .unwrap();
        let e = p.process(&mut view()).unwrap_err().to_string();
        assert!(e.contains("the command was not found"), "{e}");
    }
}

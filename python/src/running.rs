//! A library run (server, client, worker) on a Rust thread of its own, and
//! Python's blocking calls on it: waits in slices, signals looked at between.

use crate::{error, Frame, StoppedError, SLICE};
use framelink::process::takers::Handoff;
use framelink::shutdown::Shutdown;
use parking_lot::Mutex;
use pyo3::prelude::*;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the run's thread returns: its summary as JSON.
type Outcome = anyhow::Result<String>;

pub(crate) struct Running {
    pub(crate) shutdown: Shutdown,
    what: &'static str,
    thread: Mutex<Option<JoinHandle<Outcome>>>,
    /// The run's end once joined: the summary, or the error's text.
    ended: Mutex<Option<Result<String, String>>>,
}

impl Running {
    /// Runs `f` on a thread named `what` until `shutdown`.
    pub(crate) fn start(
        what: &'static str,
        shutdown: Shutdown,
        f: impl FnOnce(Shutdown) -> Outcome + Send + 'static,
    ) -> PyResult<Running> {
        let s = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("framelink {what}"))
            .spawn(move || f(s))
            .map_err(|e| error(anyhow::anyhow!("cannot start the {what} thread: {e}")))?;
        Ok(Running {
            shutdown,
            what,
            thread: Mutex::new(Some(thread)),
            ended: Mutex::new(None),
        })
    }

    /// True once the run has ended (closed, `duration`, or an error).
    pub(crate) fn is_finished(&self) -> bool {
        self.ended.lock().is_some() || self.thread.lock().as_ref().is_none_or(|t| t.is_finished())
    }

    /// Joins the thread if it has ended (or `stop`: after asking it to),
    /// waiting without the GIL and looking at signals.
    fn join(&self, py: Python<'_>) -> PyResult<()> {
        let Some(t) = self.thread.lock().take() else {
            return Ok(());
        };
        while !t.is_finished() {
            py.detach(|| std::thread::sleep(Duration::from_millis(5)));
            if let Err(e) = py.check_signals() {
                *self.thread.lock() = Some(t);
                return Err(e);
            }
        }
        let end = match t.join() {
            Ok(Ok(summary)) => Ok(summary),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(panic) => Err(format!(
                "internal error in the {} thread (a bug; please report it): {}",
                self.what,
                framelink::logging::panic_text(&*panic)
            )),
        };
        *self.ended.lock() = Some(end);
        Ok(())
    }

    /// Stops the run and waits for it: its summary (JSON), or its error.
    pub(crate) fn stop(&self, py: Python<'_>) -> PyResult<String> {
        self.shutdown.trigger();
        self.join(py)?;
        match self.ended.lock().clone().expect("joined") {
            Ok(s) => Ok(s),
            Err(e) => Err(crate::Error::new_err(e)),
        }
    }

    /// The error a call on an ended run raises: the run's own error if it
    /// failed, else `StoppedError`.
    pub(crate) fn stopped(&self, py: Python<'_>) -> PyErr {
        if let Err(e) = self.join(py) {
            return e;
        }
        match self.ended.lock().clone() {
            Some(Err(e)) => crate::Error::new_err(e),
            _ => StoppedError::new_err(format!("the {} has stopped", self.what)),
        }
    }

    /// Blocks for the next frame of `handoff`, at most `timeout` seconds
    /// (None: until one comes or the run ends). None when the time is up.
    pub(crate) fn take(
        &self,
        py: Python<'_>,
        handoff: &Handoff,
        timeout: Option<f64>,
    ) -> PyResult<Option<Frame>> {
        let deadline = crate::timeout(timeout)?.map(|t| Instant::now() + t);
        if self.is_finished() {
            return Err(self.stopped(py));
        }
        let want = handoff.want().map_err(|_| self.stopped(py))?;
        let step = |slice| match want.wait(slice) {
            Ok(Some(taken)) => Step::Got(taken),
            Ok(None) => Step::Nothing,
            Err(_) => Step::Closed,
        };
        match sliced(py, deadline, step, || self.is_finished())? {
            Step::Got(taken) => Ok(Some(Frame::new(taken))),
            Step::Nothing => Ok(None),
            Step::Closed => Err(self.stopped(py)),
        }
    }
}

/// What a wait found.
pub(crate) enum Step<T> {
    Got(T),
    /// Nothing yet (a step), or nothing before the deadline (the wait).
    Nothing,
    /// Nothing will come: the channel closed, or the run ended.
    Closed,
}

/// Waits until `deadline` (None: no limit) in steps of at most [`SLICE`],
/// each `step(slice)` run without the GIL, looking at Python's signals
/// between them (a pending one's error, e.g. KeyboardInterrupt, is
/// returned). After a step that found nothing, `ended()` true closes the wait.
pub(crate) fn sliced<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    step: impl Fn(Duration) -> Step<T> + Sync,
    ended: impl Fn() -> bool,
) -> PyResult<Step<T>> {
    loop {
        let slice = deadline
            .map(|d| d.saturating_duration_since(Instant::now()).min(SLICE))
            .unwrap_or(SLICE);
        match py.detach(|| step(slice)) {
            Step::Nothing => {}
            found => return Ok(found),
        }
        py.check_signals()?;
        if ended() {
            return Ok(Step::Closed);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Step::Nothing);
        }
    }
}

impl Running {
    /// `next()` of a loop over `handoff`'s frames: blocks until one comes;
    /// the loop ends (StopIteration) when the run stops cleanly, and raises
    /// the run's error if it failed.
    pub(crate) fn next(&self, py: Python<'_>, handoff: &Handoff) -> PyResult<Frame> {
        match self.take(py, handoff, None) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => unreachable!("no timeout"),
            Err(e) if e.is_instance_of::<StoppedError>(py) => {
                Err(pyo3::exceptions::PyStopIteration::new_err(()))
            }
            Err(e) => Err(e),
        }
    }
}

/// The end of a `with` block: `close()` ran; its error is raised unless
/// the block is already ending by an exception (which then goes on).
pub(crate) fn exit_with<T>(
    closed: PyResult<T>,
    exc_type: Option<Bound<'_, PyAny>>,
) -> PyResult<bool> {
    if exc_type.is_none() {
        closed?;
    }
    Ok(false)
}

impl Drop for Running {
    /// A run whose Python object is gone stops (within 100 ms, on its own).
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

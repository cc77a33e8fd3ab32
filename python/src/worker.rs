//! `framelink.Worker`: a member of a framelink pool behind NATS whose
//! frames are taken by Python.

use crate::running::Running;
use crate::{flags, parse, Frame};
use framelink::cli::WorkerOpts;
use framelink::process::handoff_processor::HandoffProcessor;
use framelink::process::takers::Handoff;
use framelink::shutdown::Shutdown;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A pool worker: asks the servers behind the NATS broker `nats` for a
/// frame whenever a Python thread waits in `for frame in worker`, and sends
/// the reply back as the frame's result. Keyword arguments are
/// framelink-worker's flags (`concurrency`: how many Python threads take
/// frames at once; `process_timeout`).
#[pyclass(module = "framelink")]
pub struct Worker {
    handoff: Handoff,
    running: Running,
}

/// framelink-worker's flags `Worker` does not take as keywords: the
/// broker is its first argument, and its frames go to Python.
pub(crate) const NOT_KEYWORDS: &[&str] = &["nats", "processor"];

#[pymethods]
impl Worker {
    #[new]
    #[pyo3(signature = (nats, **kwargs))]
    fn new(nats: &str, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Worker> {
        if let Some(k) = kwargs {
            if k.contains("processor")? {
                return Err(PyValueError::new_err(
                    "processor: a Python worker hands its frames to Python; processor= is framelink-worker's",
                ));
            }
        }
        let mut args = vec!["--nats".to_string(), nats.to_string()];
        args.extend(flags(kwargs)?);
        crate::no_status_line_unless_asked(&mut args);
        let opts: WorkerOpts = parse("Worker", args)?;
        let config = opts.config().map_err(crate::invalid)?;
        let duration = opts.duration().map_err(crate::invalid)?;
        let timeout = config.processor.timeout;
        let (handoff, processor) = HandoffProcessor::channel("python", timeout);
        let shutdown = Shutdown::new();
        if let Some(d) = duration {
            shutdown.trigger_after(d);
        }
        let running = Running::start("worker", shutdown, move |shutdown| {
            let summary = framelink::worker::run_with(config, shutdown, move || {
                Ok(Box::new(processor.clone()))
            })?;
            Ok(serde_json::to_string(&summary)?)
        })?;
        Ok(Worker { handoff, running })
    }

    /// True until the worker stops (closed, `duration` over, or an error).
    #[getter]
    fn running(&self) -> bool {
        !self.running.is_finished()
    }

    /// `async for frame in worker`: the same frames for an asyncio program;
    /// each take waits in the event loop's default executor (one at a
    /// time), so the loop goes on with its other coroutines meanwhile. Ends
    /// when the worker stops; raises its error if it failed.
    fn __aiter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        crate::async_frames(slf.into_any())
    }

    /// `async for frame in worker.aframes()`: as `async for frame in worker`.
    fn aframes<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        crate::async_frames(slf.into_any())
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next frame a server handed this worker; blocks until one comes.
    /// Ends the loop when the worker stops; raises its error if it failed
    /// (NATS unreachable at start, say).
    fn __next__(&self, py: Python<'_>) -> PyResult<Frame> {
        self.running.next(py, &self.handoff)
    }

    /// Like `next(worker)`, waiting at most `timeout` seconds; None when
    /// none came in time.
    #[pyo3(signature = (timeout = None))]
    fn take(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Frame>> {
        self.running.take(py, &self.handoff, timeout)
    }

    /// Stops the worker (the frame in hand is answered) and returns its summary.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.running.stop(py)?;
        crate::json_to_py(py, &text)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        crate::running::exit_with(self.running.stop(py), exc_type)
    }
}

//! `framelink.Server`: the framelink server, its fresh frames taken by Python.

use crate::running::Running;
use crate::{error, flags, json_to_py, parse, Frame};
use framelink::cli::ServerOpts;
use framelink::process::takers::{self, Handoff};
use framelink::server::{Server as Core, SummaryNow};
use framelink::shutdown::Shutdown;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A framelink server on threads of its own: cameras connect, stale frames
/// are dropped, and each camera's newest fresh frame waits for Python
/// (`for frame in server`). Keyword arguments are framelink-server's flags.
#[pyclass(module = "framelink")]
pub struct Server {
    handoff: Handoff,
    running: Running,
    now: SummaryNow,
    address: String,
    http_address: Option<String>,
}

/// framelink-server's flags `Server` does not take as keywords:
/// `processor` (its frames go to Python), `no_display` (`display=True`).
pub(crate) const NOT_KEYWORDS: &[&str] = &["processor", "no_display"];

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (**kwargs))]
    fn new(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Server> {
        let kwargs = kwargs.map(|k| k.copy()).transpose()?;
        let mut display = false;
        if let Some(k) = &kwargs {
            if let Some(d) = k.get_item("display")? {
                display = d.is_truthy()?;
                k.del_item("display")?;
            }
            if k.contains("processor")? {
                return Err(PyValueError::new_err(
                    "processor: a Python server hands its frames to Python (`for frame in server`); \
                     processor= is framelink-server's (count, motion, exec:, nats://)",
                ));
            }
            if k.contains("no_display")? {
                return Err(PyValueError::new_err(
                    "no_display: use display=True to open a window (off by default)",
                ));
            }
        }
        let mut args = flags(kwargs.as_ref())?;
        crate::no_status_line_unless_asked(&mut args);
        if !display {
            args.push("--no-display".into());
        }
        let opts: ServerOpts = parse("Server", args)?;
        let config = opts.config().map_err(crate::invalid)?;
        let timeout = opts.processing.timeout().map_err(crate::invalid)?;
        let duration = opts.duration().map_err(crate::invalid)?;
        let (listener, http) = opts.bind().map_err(error)?;
        let address = listener
            .local_addr()
            .map_err(|e| error(e.into()))?
            .to_string();
        let http_address = http
            .as_ref()
            .map(|h| h.local_addr().map(|a| a.to_string()))
            .transpose()
            .map_err(|e| error(e.into()))?;
        let (handoff, stage) = takers::channel("python", timeout);
        let shutdown = Shutdown::new();
        if let Some(d) = duration {
            shutdown.trigger_after(d);
        }
        // The server (its window, a sink, is not Send) is made on its own
        // thread; the handle reading its figures comes back from there.
        let (now_tx, now_rx) = crossbeam_channel::bounded(1);
        let running = Running::start("server", shutdown, move |shutdown| {
            let mut core = Core::new(listener, config).handoff(stage);
            if let Some(http) = http {
                core = core.live_view(http);
            }
            let _ = now_tx.send(core.summary_now());
            if display {
                match framelink::server::display::DisplaySink::open("framelink-server") {
                    Ok(w) => core = core.sink(Box::new(w)),
                    Err(e) => {
                        tracing::warn!("no display available ({e:#}): running without a window")
                    }
                }
            }
            let summary = core.run(shutdown)?;
            Ok(serde_json::to_string(&summary)?)
        })?;
        let now = now_rx
            .recv()
            .map_err(|_| error(anyhow::anyhow!("the server thread ended before it started")))?;
        Ok(Server {
            handoff,
            running,
            now,
            address,
            http_address,
        })
    }

    /// The address cameras connect to, as `HOST:PORT`.
    #[getter]
    fn address(&self) -> &str {
        &self.address
    }

    /// The port cameras connect to (useful with `listen=":0"`).
    #[getter]
    fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The live view's address (`http=`), or None.
    #[getter]
    fn http_address(&self) -> Option<&str> {
        self.http_address.as_deref()
    }

    /// True until the server stops (closed, `duration` over, or an error).
    #[getter]
    fn running(&self) -> bool {
        !self.running.is_finished()
    }

    /// `async for frame in server`: the same frames for an asyncio program;
    /// each take waits in the event loop's default executor (one at a
    /// time), so the loop goes on with its other coroutines meanwhile. Ends
    /// when the server stops; raises its error if it failed.
    fn __aiter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        crate::async_frames(slf.into_any())
    }

    /// `async for frame in server.aframes()`: as `async for frame in server`.
    fn aframes<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        crate::async_frames(slf.into_any())
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The newest fresh frame of whichever camera has one; blocks until one
    /// comes. Ends the loop when the server stops; raises its error if it failed.
    fn __next__(&self, py: Python<'_>) -> PyResult<Frame> {
        self.running.next(py, &self.handoff)
    }

    /// Like `next(server)`, waiting at most `timeout` seconds (None: no
    /// limit); returns None when none came in time. Raises `StoppedError`
    /// once the server has stopped.
    #[pyo3(signature = (timeout = None))]
    fn take(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Frame>> {
        self.running.take(py, &self.handoff, timeout)
    }

    /// The summary so far, as `summary_json` would write it (the same keys,
    /// with a `clients` list per camera name). None once stopped: `close()`
    /// returns the final one.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let now = self.now.clone();
        match py.detach(move || now.now()) {
            Some(s) => {
                let text = serde_json::to_string(&s).map_err(|e| error(e.into()))?;
                Ok(Some(json_to_py(py, &text)?))
            }
            None => Ok(None),
        }
    }

    /// Stops the server (closing every connection and the sockets) and
    /// returns the final summary. Raises the server's error if it failed.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.running.stop(py)?;
        json_to_py(py, &text)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Closes the server; an error of the server is raised unless the
    /// block is already ending by an exception.
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        crate::running::exit_with(self.running.stop(py), exc_type)
    }

    fn __repr__(&self) -> String {
        format!(
            "<framelink.Server {} {}>",
            self.address,
            if self.running.is_finished() {
                "stopped"
            } else {
                "running"
            }
        )
    }
}

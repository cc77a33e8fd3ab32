//! `framelink.Client`: frames captured in Python, encoded and sent by the
//! framelink client on Rust threads, results back.

use crate::running::{sliced, Running, Step};
use crate::{flags, json_to_py, parse, StoppedError};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use framelink::cli::ClientOpts;
use framelink::client::results::{Tap, Tapped};
use framelink::client::source::pushed::{self, Picture, Pushed, Pusher};
use framelink::shutdown::Shutdown;
use framelink::wire::ResultKind;
use numpy::{PyReadonlyArray3, PyUntypedArrayMethods};
use parking_lot::Mutex;
use pyo3::exceptions::{PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Results kept for Python when it reads none for a while.
const RESULTS_KEPT: usize = 1024;

/// A framelink client: `send()` a frame whenever you have one; it is
/// encoded and sent to the server on Rust threads (the newest only: a frame
/// not yet sent is replaced), reconnecting by itself. Keyword arguments are
/// framelink-client's flags.
#[pyclass(module = "framelink")]
pub struct Client {
    pusher: Mutex<Option<Pusher>>,
    results: Receiver<Tapped>,
    running: Arc<Running>,
    summary: Mutex<Option<String>>,
}

/// framelink-client's flags `Client` does not take as keywords: the
/// server is its first argument, and the source flags are the program's
/// (a Python client sends the frames given to `send()`).
pub(crate) const NOT_KEYWORDS: &[&str] = &[
    "server",
    "source",
    "camera",
    "list_cameras",
    "camera_format",
];

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (server, **kwargs))]
    fn new(server: &str, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Client> {
        if let Some(k) = kwargs {
            for key in NOT_KEYWORDS.iter().filter(|k| **k != "server") {
                if k.contains(key)? {
                    return Err(PyValueError::new_err(format!(
                        "{key}: a Python client sends the frames given to send(); {key}= is framelink-client's"
                    )));
                }
            }
        }
        let mut args = vec![server.to_string()];
        args.extend(flags(kwargs)?);
        crate::no_status_line_unless_asked(&mut args);
        let opts: ClientOpts = parse("Client", args)?;
        let mut config = opts.config().map_err(crate::invalid)?;
        let duration = opts.duration().map_err(crate::invalid)?;
        // Frames come at the program's pace, at their own size.
        config.source.fps = 0.0;
        let (pusher, source) = pushed::channel();
        let (tap, results) = Tap::new(RESULTS_KEPT);
        let shutdown = Shutdown::new();
        if let Some(d) = duration {
            shutdown.trigger_after(d);
        }
        let running = Running::start("client", shutdown, move |shutdown| {
            let summary =
                framelink::client::run_with(config, Box::new(source), Some(tap), shutdown)?;
            Ok(serde_json::to_string(&summary)?)
        })?;
        Ok(Client {
            pusher: Mutex::new(Some(pusher)),
            results,
            running: Arc::new(running),
            summary: Mutex::new(None),
        })
    }

    /// Hands a frame over: a H×W×3 `uint8` numpy array (BGR, OpenCV's
    /// order, unless `rgb=True`) or a whole JPEG as `bytes`. Never blocks:
    /// a frame not yet sent is replaced. Its capture instant is now.
    #[pyo3(signature = (image, rgb = false))]
    fn send(&self, py: Python<'_>, image: Bound<'_, PyAny>, rgb: bool) -> PyResult<()> {
        let at = Instant::now();
        let pushed = if let Ok(b) = image.cast::<PyBytes>() {
            jpeg(b.as_bytes().to_vec(), at)?
        } else if let Ok(b) = image.cast::<PyByteArray>() {
            jpeg(b.to_vec(), at)?
        } else if let Ok(a) = image.extract::<PyReadonlyArray3<'_, u8>>() {
            let shape = a.shape();
            let (h, w, c) = (shape[0], shape[1], shape[2]);
            if c != 3 {
                return Err(PyValueError::new_err(format!(
                    "an image is H×W×3 (3 colour channels); this one is {h}×{w}×{c}"
                )));
            }
            let pixels = match a.as_slice() {
                Ok(s) => py.detach(|| s.to_vec()),
                // Not contiguous (a slice of a larger picture): copied row by row.
                Err(_) => a.as_array().iter().copied().collect(),
            };
            Pushed {
                picture: if rgb {
                    Picture::Rgb(pixels)
                } else {
                    Picture::Bgr(pixels)
                },
                width: w as u32,
                height: h as u32,
                at,
            }
        } else {
            return Err(PyTypeError::new_err(format!(
                "send() takes a H×W×3 uint8 numpy array or JPEG bytes, not {}",
                image.get_type().name()?
            )));
        };
        if self.running.is_finished() {
            return Err(self.running.stopped(py));
        }
        match &*self.pusher.lock() {
            Some(p) => p.push(pushed).map_err(crate::invalid),
            None => Err(StoppedError::new_err("the client has been closed")),
        }
    }

    /// The results coming back, one dict each (the keys of
    /// framelink-client's `--results-jsonl` lines: `frame_id`, `status`,
    /// `capture_to_result_ms`, `wait_ms`, `processing_ms`, `kind`,
    /// `result`), as they come. The iteration ends when none came for
    /// `timeout` seconds (None: when the client stops).
    #[pyo3(signature = (timeout = None))]
    fn results(&self, timeout: Option<f64>) -> PyResult<Results> {
        Ok(Results {
            rx: self.results.clone(),
            timeout: crate::timeout(timeout)?,
            running: self.running.clone(),
        })
    }

    /// True until the client stops (closed, `duration` over, or an error).
    #[getter]
    fn running(&self) -> bool {
        !self.running.is_finished()
    }

    /// Stops the client (the connection closed with GOODBYE) and returns
    /// its summary, as `summary_json` would write it.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(text) = self.summary.lock().clone() {
            return json_to_py(py, &text);
        }
        self.running.shutdown.trigger();
        // The capture thread waits for frames: no more will come.
        self.pusher.lock().take();
        let text = self.running.stop(py)?;
        *self.summary.lock() = Some(text.clone());
        json_to_py(py, &text)
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
        crate::running::exit_with(self.close(py), exc_type)
    }
}

fn jpeg(data: Vec<u8>, at: Instant) -> PyResult<Pushed> {
    let (w, h) = framelink::media::jpeg::dimensions(&data).ok_or_else(|| {
        PyValueError::new_err("these bytes are not a JPEG (no readable frame header): send JPEG bytes or a numpy image")
    })?;
    Ok(Pushed {
        picture: Picture::Jpeg(data),
        width: w as u32,
        height: h as u32,
        at,
    })
}

/// The iterator `Client.results()` returns.
#[pyclass(module = "framelink")]
pub struct Results {
    rx: Receiver<Tapped>,
    timeout: Option<Duration>,
    running: Arc<Running>,
}

#[pymethods]
impl Results {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let step = |slice| match self.rx.recv_timeout(slice) {
            Ok(r) => Step::Got(r),
            Err(RecvTimeoutError::Timeout) => Step::Nothing,
            Err(RecvTimeoutError::Disconnected) => Step::Closed,
        };
        let ended = || self.running.is_finished() && self.rx.is_empty();
        match sliced(py, deadline, step, ended)? {
            Step::Got(r) => result_dict(py, r),
            Step::Nothing | Step::Closed => Err(PyStopIteration::new_err(())),
        }
    }
}

fn ms(us: u32) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

/// A result as the dict `--results-jsonl` writes as a line.
fn result_dict<'py>(
    py: Python<'py>,
    (r, capture_to_result): Tapped,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("frame_id", r.frame_id)?;
    d.set_item("status", r.status.as_str())?;
    d.set_item(
        "capture_to_result_ms",
        capture_to_result.map(|c| (c.as_secs_f64() * 1e5).round() / 1e2),
    )?;
    d.set_item("wait_ms", ms(r.wait_us))?;
    d.set_item("processing_ms", ms(r.processing_us))?;
    let (kind, value): (&str, Bound<'py, PyAny>) = match r.kind {
        ResultKind::None => ("none", py.None().into_bound(py)),
        ResultKind::Json => match std::str::from_utf8(&r.result)
            .ok()
            .map(|t| json_to_py(py, t))
        {
            Some(Ok(v)) => ("json", v),
            _ => ("json", PyBytes::new(py, &r.result).into_any()),
        },
        ResultKind::Text => (
            "text",
            String::from_utf8_lossy(&r.result)
                .into_pyobject(py)?
                .into_any(),
        ),
        ResultKind::Jpeg => ("jpeg", PyBytes::new(py, &r.result).into_any()),
        ResultKind::Other(_) => ("unknown", PyBytes::new(py, &r.result).into_any()),
    };
    d.set_item("kind", kind)?;
    d.set_item("result", value)?;
    Ok(d)
}

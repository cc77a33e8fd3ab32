//! `framelink.Frame`: one frame handed to Python, answered once.

use crate::DecodeError;
use framelink::media::decode::{self, PixelOrder};
use framelink::process::takers::Taken;
use framelink::process::Output;
use numpy::{PyArray1, PyArray3, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fresh frame from a camera. Answer it once with `reply()` (or `fail()`);
/// one let go without an answer is answered `failed`, as is one kept past
/// the server's `process_timeout`.
#[pyclass(module = "framelink", frozen)]
pub struct Frame {
    taken: Taken,
    received_at: f64,
}

/// Keeps a frame's JPEG alive for the numpy arrays that view it.
#[pyclass(module = "framelink", frozen)]
struct JpegOwner {
    bytes: bytes::Bytes,
}

impl Frame {
    pub(crate) fn new(taken: Taken) -> Frame {
        let ago = taken.frame.arrived.elapsed();
        let received_at = SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        Frame { taken, received_at }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[pymethods]
impl Frame {
    /// The camera's name (the client's `--name`).
    #[getter]
    fn camera(&self) -> &str {
        &self.taken.frame.client_name
    }

    /// The frame's number on its connection (increasing).
    #[getter]
    fn frame_id(&self) -> u64 {
        self.taken.frame.frame_id
    }

    /// The picture's width in pixels (from its JPEG header).
    #[getter]
    fn width(&self) -> u16 {
        self.taken.frame.width
    }

    /// The picture's height in pixels.
    #[getter]
    fn height(&self) -> u16 {
        self.taken.frame.height
    }

    /// How old the picture is now, in ms: from its capture on the camera's
    /// device (no clock synchronisation needed) to this moment.
    #[getter]
    fn age_ms(&self) -> f64 {
        ms(self.taken.age())
    }

    /// Its age when it had fully arrived, in ms: what the staleness gate judged.
    #[getter]
    fn arrival_age_ms(&self) -> f64 {
        ms(self.taken.frame.age)
    }

    /// When it had fully arrived, in seconds since the epoch (as `time.time()`).
    #[getter]
    fn received_at(&self) -> f64 {
        self.received_at
    }

    /// The JPEG as it arrived: a read-only 1-D numpy `uint8` array over the
    /// received bytes (no copy; `bytes(frame.jpeg)` makes one,
    /// `cv2.imdecode(frame.jpeg, cv2.IMREAD_COLOR)` takes it as it is).
    #[getter]
    fn jpeg<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let bytes = self.taken.frame.jpeg.clone();
        let owner = Bound::new(py, JpegOwner { bytes })?;
        let data: &[u8] = &owner.get().bytes;
        let view = numpy::ndarray::ArrayView1::from(data);
        // Safety: the array's memory is `owner`'s bytes, which are never
        // changed and live as long as the array (it holds `owner`).
        let array = unsafe { PyArray1::borrow_from_array(&view, owner.clone().into_any()) };
        array.call_method1("setflags", (false,))?;
        Ok(array)
    }

    /// Decodes the frame (libjpeg-turbo, without the GIL) into a new
    /// H×W×3 `uint8` array, BGR (OpenCV's order) unless `rgb=True`.
    #[pyo3(signature = (rgb = false))]
    fn to_numpy<'py>(&self, py: Python<'py>, rgb: bool) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let jpeg = &self.taken.frame.jpeg;
        let (w, h) =
            decode::decoded_size(jpeg).map_err(|e| DecodeError::new_err(format!("{e:#}")))?;
        let array = unsafe { PyArray3::<u8>::new(py, [h as usize, w as usize, 3], false) };
        // Safety: the array is new and not yet shared with Python code.
        let out = unsafe { array.as_slice_mut() }
            .map_err(|e| DecodeError::new_err(format!("cannot write the new array: {e}")))?;
        let order = if rgb {
            PixelOrder::Rgb
        } else {
            PixelOrder::Bgr
        };
        py.detach(|| decode::decode_into(jpeg, out, order))
            .map_err(|e| {
                DecodeError::new_err(format!("frame {}: {e:#}", self.taken.frame.frame_id))
            })?;
        Ok(array)
    }

    /// Answers the frame: its RESULT goes back to the camera that sent it.
    /// `result`: a dict, list, number (sent as JSON), a str (text), JPEG
    /// `bytes` (a picture) or None (processed, nothing to say). Returns
    /// False when this reply was not sent: the frame was already answered
    /// (kept past the server's `process_timeout`, or replied to before), or
    /// its camera is gone (disconnected, or the server closed).
    #[pyo3(signature = (result = None))]
    fn reply(&self, py: Python<'_>, result: Option<Bound<'_, PyAny>>) -> PyResult<bool> {
        let out = output(py, result)?;
        Ok(self.taken.reply(out).is_ok())
    }

    /// Answers the frame `failed`, with `reason` as the text the camera sees.
    /// Returns False when it was not sent (as for `reply()`).
    fn fail(&self, reason: &str) -> bool {
        self.taken.fail(reason).is_ok()
    }

    /// True once the frame has been answered.
    #[getter]
    fn answered(&self) -> bool {
        self.taken.is_answered()
    }

    fn __repr__(&self) -> String {
        format!(
            "<framelink.Frame camera={:?} frame_id={} {}x{} age_ms={:.1}>",
            &*self.taken.frame.client_name,
            self.taken.frame.frame_id,
            self.taken.frame.width,
            self.taken.frame.height,
            self.age_ms()
        )
    }
}

/// A Python reply as a processor's output.
pub(crate) fn output(py: Python<'_>, result: Option<Bound<'_, PyAny>>) -> PyResult<Output> {
    let Some(r) = result.filter(|r| !r.is_none()) else {
        return Ok(Output::None);
    };
    if let Ok(s) = r.cast::<PyString>() {
        return Ok(Output::Text(s.to_cow()?.into_owned()));
    }
    let bytes: Option<Vec<u8>> = if let Ok(b) = r.cast::<PyBytes>() {
        Some(b.as_bytes().to_vec())
    } else if let Ok(b) = r.cast::<PyByteArray>() {
        Some(b.to_vec())
    } else {
        None
    };
    if let Some(b) = bytes {
        if !b.starts_with(&[0xFF, 0xD8]) {
            return Err(PyValueError::new_err(
                "a bytes reply is a JPEG picture (it must start with FF D8); send text as a str, data as a dict",
            ));
        }
        return Ok(Output::Jpeg(b.into()));
    }
    let text: String = py
        .import("json")?
        .call_method1("dumps", (&r,))
        .map_err(|e| {
            PyTypeError::new_err(format!(
                "a reply is a dict, list, number, str, JPEG bytes or None; this one is not JSON-serializable: {e}"
            ))
        })?
        .extract()?;
    Ok(Output::Json(text))
}

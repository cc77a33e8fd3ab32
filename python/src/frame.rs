//! `framelink.Frame`: one frame handed to Python, answered once.

use crate::layout;
use crate::DecodeError;
use framelink::media::decode::{self, PixelOrder};
use framelink::media::letterbox::{self, Letterboxer, MAX_SIDE};
use framelink::process::takers::Taken;
use framelink::process::Output;
use numpy::{Element, PyArray1, PyArray3, PyArrayMethods, PyReadwriteArray2};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use std::cell::RefCell;
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

thread_local! {
    /// Each thread's letterboxer: its decode and resize buffers are kept
    /// from one frame to the next.
    static LETTERBOXER: RefCell<Letterboxer> = RefCell::default();
    /// Pixels decoded before they are laid out as CHW or as floats.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A new array of `shape`, its elements written by `fill` without the GIL.
fn filled<'py, T: Element + Send>(
    py: Python<'py>,
    shape: [usize; 3],
    fill: impl FnOnce(&mut [T]) -> anyhow::Result<()> + Send,
) -> anyhow::Result<Bound<'py, PyAny>> {
    let array = unsafe { PyArray3::<T>::new(py, shape, false) };
    // Safety: the array is new and not yet shared with Python code.
    let out = unsafe { array.as_slice_mut() }
        .map_err(|e| anyhow::anyhow!("cannot write the new array: {e}"))?;
    py.detach(|| fill(out))?;
    Ok(array.into_any())
}

/// A model's input size: `(w, h)`, or one number for a square.
#[derive(FromPyObject, Clone, Copy)]
pub(crate) enum Size {
    Square(i64),
    Sides(i64, i64),
}

impl Size {
    fn checked(self) -> PyResult<(u32, u32)> {
        let (w, h) = match self {
            Size::Square(s) => (s, s),
            Size::Sides(w, h) => (w, h),
        };
        let side = |v: i64| {
            u32::try_from(v)
                .ok()
                .filter(|v| (1..=MAX_SIDE).contains(v))
                .ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "size is (width, height) or one side, each 1..={MAX_SIDE}; got {w}x{h}"
                    ))
                })
        };
        Ok((side(w)?, side(h)?))
    }
}

/// The padding's colour: a grey level, or three values.
#[derive(FromPyObject)]
pub(crate) enum Pad {
    Grey(u8),
    Colour(u8, u8, u8),
}

impl Pad {
    fn colour(&self) -> [u8; 3] {
        match *self {
            Pad::Grey(v) => [v; 3],
            Pad::Colour(a, b, c) => [a, b, c],
        }
    }
}

/// Where a frame sits in a letterbox (a model's input made by
/// `frame.to_numpy(size=...)`), to map boxes found there back onto it.
#[pyclass(module = "framelink", frozen)]
pub struct Letterbox(letterbox::Letterbox);

#[pymethods]
impl Letterbox {
    /// The letterbox's (width, height): the model's input size.
    #[getter]
    fn size(&self) -> (u32, u32) {
        self.0.size
    }

    /// The frame's (width, height).
    #[getter]
    fn source(&self) -> (u32, u32) {
        self.0.source
    }

    /// Letterbox pixels per frame pixel.
    #[getter]
    fn scale(&self) -> f64 {
        self.0.scale
    }

    /// The padding at the left and at the top, in letterbox pixels.
    #[getter]
    fn pad(&self) -> (u32, u32) {
        self.0.pad
    }

    /// The frame's (width, height) inside the letterbox.
    #[getter]
    fn content(&self) -> (u32, u32) {
        self.0.content
    }

    /// Boxes found on the letterbox as boxes on the frame: `boxes` is N×4
    /// or wider (x1, y1, x2, y2 in letterbox pixels, then anything: score,
    /// class), or one box; returns a new float64 array of the same shape,
    /// the first four columns in frame pixels (kept inside the frame), the
    /// rest as they were.
    fn to_frame<'py>(
        &self,
        py: Python<'py>,
        boxes: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // A copy of their own (numpy.array copies), mapped in place; one
        // box is seen as a row of it.
        let array = py
            .import("numpy")?
            .call_method1("array", (boxes, "float64"))?;
        let ndim: usize = array.getattr("ndim")?.extract()?;
        let rows = match ndim {
            1 => array.call_method1("reshape", (1, -1))?,
            2 => array.clone(),
            n => {
                return Err(PyValueError::new_err(format!(
                    "boxes are N×4 or wider (x1, y1, x2, y2, ...), or one box; got {n} dimensions"
                )))
            }
        };
        let mut rows: PyReadwriteArray2<f64> = rows.extract()?;
        let mut rows = rows.as_array_mut();
        if rows.ncols() < 4 {
            return Err(PyValueError::new_err(format!(
                "boxes are x1, y1, x2, y2 (then anything); these have {} columns",
                rows.ncols()
            )));
        }
        for mut b in rows.rows_mut() {
            let (x1, y1) = self.0.to_source(b[0], b[1]);
            let (x2, y2) = self.0.to_source(b[2], b[3]);
            (b[0], b[1], b[2], b[3]) = (x1, y1, x2, y2);
        }
        Ok(array)
    }

    fn __repr__(&self) -> String {
        let l = &self.0;
        format!(
            "<framelink.Letterbox {}x{} in {}x{}: scale={:.4} pad=({}, {})>",
            l.source.0, l.source.1, l.size.0, l.size.1, l.scale, l.pad.0, l.pad.1
        )
    }
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

    /// Decodes the frame (libjpeg-turbo, without the GIL) into a new numpy
    /// array: H×W×3 `uint8`, BGR (OpenCV's order) unless `rgb=True`.
    ///
    /// `size=(w, h)` (or one number for a square) letterboxes it to a
    /// model's input: aspect kept, centred, padded with `pad` (one grey
    /// level, or three values in the array's channel order), Ultralytics'
    /// geometry; the JPEG is decoded already reduced by its DCT (a 1080p
    /// frame for a 640 model never decodes whole) and resized in Rust.
    /// `frame.letterbox(size)` maps boxes found on it back onto the frame.
    ///
    /// `layout="chw"` gives 3×H×W, `dtype="float32"` values scaled to 0–1:
    /// `to_numpy(size=640, rgb=True, layout="chw", dtype="float32")[None]`
    /// is what a YOLO ONNX model's `images` input takes as it is.
    #[pyo3(signature = (rgb = false, size = None, pad = Pad::Grey(114), layout = "hwc", dtype = "uint8"))]
    fn to_numpy<'py>(
        &self,
        py: Python<'py>,
        rgb: bool,
        size: Option<Size>,
        pad: Pad,
        layout: &str,
        dtype: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let order = if rgb {
            PixelOrder::Rgb
        } else {
            PixelOrder::Bgr
        };
        let chw = match layout {
            "hwc" => false,
            "chw" => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "layout is \"hwc\" or \"chw\", not {other:?}"
                )))
            }
        };
        let float = match dtype {
            "uint8" => false,
            "float32" => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "dtype is \"uint8\" or \"float32\", not {other:?}"
                )))
            }
        };
        let jpeg = &self.taken.frame.jpeg;
        let id = self.taken.frame.frame_id;
        let (w, h) = match size {
            Some(s) => s.checked()?,
            None => {
                decode::decoded_size(jpeg).map_err(|e| DecodeError::new_err(format!("{e:#}")))?
            }
        };
        let (w, h) = (w as usize, h as usize);
        let shape = if chw { [3, h, w] } else { [h, w, 3] };
        let pad = pad.colour();
        let picture = move |out: &mut [u8]| -> anyhow::Result<()> {
            match size {
                None => decode::decode_into(jpeg, out, order),
                Some(_) => LETTERBOXER.with_borrow_mut(|l| {
                    l.decode(jpeg, (w as u32, h as u32), pad, order, out)
                        .map(|_| ())
                }),
            }
        };
        // The picture decoded into a buffer of this thread's, then laid out
        // as asked.
        let laid_out = |lay: &mut dyn FnMut(&[u8])| {
            SCRATCH.with_borrow_mut(|scratch| {
                scratch.resize(w * h * 3, 0);
                picture(scratch)?;
                lay(scratch);
                Ok(())
            })
        };
        let array = match (chw, float) {
            (false, false) => filled::<u8>(py, shape, picture),
            (_, true) => filled::<f32>(py, shape, |out| {
                laid_out(&mut |px| layout::to_f32(px, chw, out))
            }),
            (true, false) => {
                filled::<u8>(py, shape, |out| laid_out(&mut |px| layout::to_chw(px, out)))
            }
        };
        array.map_err(|e| DecodeError::new_err(format!("frame {id}: {e:#}")))
    }

    /// Where this frame sits in a letterbox of `size` (what
    /// `to_numpy(size=...)` makes): its scale and padding, and
    /// `to_frame(boxes)` to map boxes found on the letterbox back onto the
    /// frame. Computed from the frame's size alone (nothing is decoded).
    fn letterbox(&self, size: Size) -> PyResult<Letterbox> {
        let source = (
            self.taken.frame.width as u32,
            self.taken.frame.height as u32,
        );
        Ok(Letterbox(letterbox::Letterbox::fit(
            source,
            size.checked()?,
        )))
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

//! The `framelink` Python package's extension: the library's server,
//! client and pool worker on Rust threads, frames handed to Python as
//! numpy arrays. Python code blocks only in calls that release the GIL and
//! look at signals every [`SLICE`], so Ctrl-C interrupts any of them.
//!
//! Keyword arguments are the programs' flags (`max_latency_ms=80` is
//! `--max-latency-ms 80`), parsed and checked by the same code, so every
//! option and every error text is the programs' own.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::time::Duration;

mod client;
mod frame;
mod keywords;
mod layout;
mod running;
mod server;
mod worker;

pub(crate) use frame::Frame;

pyo3::create_exception!(
    _framelink,
    Error,
    pyo3::exceptions::PyException,
    "The base of framelink's errors: the text says what went wrong and what to do."
);
pyo3::create_exception!(
    _framelink,
    DecodeError,
    Error,
    "A frame's JPEG does not decode (it passed the server's checks, which do not decode it)."
);
pyo3::create_exception!(
    _framelink,
    StoppedError,
    Error,
    "The server, client or worker has stopped (closed, or ended by an error)."
);

/// How long a blocking call waits between looks at Python's signals.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// A `timeout=` argument in seconds: None (no limit), or a number >= 0.
pub(crate) fn timeout(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        Some(t) if !(t >= 0.0 && t.is_finite()) => Err(PyValueError::new_err(format!(
            "timeout must be a number of seconds >= 0, got {t}"
        ))),
        t => Ok(t.map(Duration::from_secs_f64)),
    }
}

/// A bad argument the library found (its text names the flag) as `ValueError`.
pub(crate) fn invalid(e: anyhow::Error) -> PyErr {
    PyValueError::new_err(format!("{e:#}"))
}

/// The run's figures go to Python (`stats()`, `close()`), so no status line
/// on stderr unless `stats_interval=` asks for one.
pub(crate) fn no_status_line_unless_asked(args: &mut Vec<String>) {
    if !args.iter().any(|a| a == "--stats-interval") {
        args.extend(["--stats-interval".into(), "0".into()]);
    }
}

/// An error of the library as a Python `framelink.Error`, with its causes.
pub(crate) fn error(e: anyhow::Error) -> PyErr {
    Error::new_err(format!("{e:#}"))
}

/// Turns keyword arguments into the program's command line: `a_b=x` is
/// `--a-b x`, `True` a flag alone, `False` and `None` nothing, a list the
/// flag once per item.
pub(crate) fn flags(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<String>> {
    let mut out = Vec::new();
    let Some(kwargs) = kwargs else {
        return Ok(out);
    };
    for (k, v) in kwargs.iter() {
        let key: String = k.extract()?;
        let flag = format!("--{}", key.replace('_', "-"));
        if v.is_none() {
            continue;
        }
        if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
            if b.is_true() {
                out.push(flag);
            }
            continue;
        }
        let items: Vec<Bound<'_, PyAny>> = match v.cast::<PyList>() {
            Ok(list) => list.iter().collect(),
            Err(_) => vec![v],
        };
        for item in items {
            out.push(flag.clone());
            out.push(item.str()?.to_string());
        }
    }
    Ok(out)
}

/// Parses `args` as program `name`'s command line: a clap error becomes a
/// `TypeError` for an unknown keyword, a `ValueError` for a bad value,
/// both naming the keyword.
pub(crate) fn parse<T: clap::Parser>(what: &str, args: Vec<String>) -> PyResult<T> {
    T::try_parse_from(std::iter::once(what.to_string()).chain(args)).map_err(|e| {
        let text = e.render().to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        // `--max-latency-ms <MS>` reads as the keyword `max_latency_ms`.
        let pythonic = keywordize(&first);
        match e.kind() {
            clap::error::ErrorKind::UnknownArgument => {
                use clap::error::{ContextKind, ContextValue};
                let name = |kind| match e.get(kind) {
                    Some(ContextValue::String(s)) => Some(keywordize(s)),
                    Some(ContextValue::Strings(v)) => v.first().map(|s| keywordize(s)),
                    _ => None,
                };
                let arg = name(ContextKind::InvalidArg).unwrap_or(pythonic);
                let tip = name(ContextKind::SuggestedArg)
                    .map(|s| format!(" (did you mean '{}'?)", s.split(' ').next().unwrap_or(&s)))
                    .unwrap_or_default();
                PyTypeError::new_err(format!(
                    "{what}() got an unexpected keyword argument '{arg}'{tip}"
                ))
            }
            _ => PyValueError::new_err(pythonic),
        }
    })
}

/// `'--max-latency-ms <MS>'` → `'max_latency_ms'` in a message.
fn keywordize(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("--") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(after.len());
        out.push_str(&after[..end].replace('-', "_"));
        rest = &after[end..];
        // Drop clap's ` <VALUE>` after the flag.
        if let Some(r) = rest.strip_prefix(" <") {
            if let Some(j) = r.find('>') {
                rest = &r[j + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `async for frame in source` (a `Server` or a `Worker`): the async
/// generator of `framelink/_aio.py`, whose takes wait in the event loop's
/// executor, so the loop never blocks on them.
pub(crate) fn async_frames<'py>(source: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    source
        .py()
        .import("framelink._aio")?
        .call_method1("frames", (source,))
}

/// A JSON text (a summary) as Python objects, through Python's own `json`.
pub(crate) fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

#[pymodule]
fn _framelink(m: &Bound<'_, PyModule>) -> PyResult<()> {
    framelink::logging::init();
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("DecodeError", py.get_type::<DecodeError>())?;
    m.add("StoppedError", py.get_type::<StoppedError>())?;
    m.add_class::<frame::Frame>()?;
    m.add_class::<frame::Letterbox>()?;
    m.add_class::<server::Server>()?;
    m.add_class::<client::Client>()?;
    m.add_class::<worker::Worker>()?;
    m.add("DEFAULT_PORT", framelink::DEFAULT_PORT)?;
    m.add("__version__", framelink::VERSION)?;
    m.add_function(wrap_pyfunction!(keywords::keywords, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_read_as_keywords_in_messages() {
        assert_eq!(
            super::keywordize("invalid value 'x' for '--max-latency-ms <MS>': bad"),
            "invalid value 'x' for 'max_latency_ms': bad"
        );
    }
}

//! The programs' own output (status lines, summaries, addresses): printed
//! without ever panicking. When standard output or standard error fails
//! (a closed pipe such as `| head -1`, a full disk), one warning is logged
//! and later lines to that stream are dropped: this output is the least
//! important thing the programs do, and the streams go on.

use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);
static STDERR_FAILED: AtomicBool = AtomicBool::new(false);

/// Prints `line` on standard output. False once standard output has failed.
pub fn stdout_line(line: &str) -> bool {
    write_line(
        std::io::stdout().lock(),
        &STDOUT_FAILED,
        "standard output",
        line,
    )
}

/// Prints `line` on standard error. False once standard error has failed.
pub fn stderr_line(line: &str) -> bool {
    write_line(
        std::io::stderr().lock(),
        &STDERR_FAILED,
        "standard error",
        line,
    )
}

/// Prints `line` on standard error when `to_stderr`, else on standard output.
pub fn line_to(to_stderr: bool, line: &str) -> bool {
    if to_stderr {
        stderr_line(line)
    } else {
        stdout_line(line)
    }
}

fn write_line(mut w: impl Write, failed: &AtomicBool, name: &str, line: &str) -> bool {
    if failed.load(Ordering::Relaxed) {
        return false;
    }
    match writeln!(w, "{line}").and_then(|_| w.flush()) {
        Ok(()) => true,
        Err(e) => {
            if !failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "cannot write to {name} ({e}): no more status lines or summary there"
                );
            }
            false
        }
    }
}

/// Writes `value` as one JSON object to `path`.
pub fn write_json(path: &std::path::Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the summary to {}", path.display()))
}

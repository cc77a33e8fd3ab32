//! `framelink-worker`: parse the command line, connect to NATS, work. The work is in the library.

use anyhow::Result;
use framelink::cli::WorkerOpts;
use framelink::shutdown::Shutdown;
use framelink::{logging, output, worker};
use std::process::ExitCode;

fn main() -> ExitCode {
    logging::init();
    let (opts, _) = framelink::cli::parse::<WorkerOpts>();
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::stderr_line(&format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(opts: WorkerOpts) -> Result<()> {
    if let Some(what) = opts.common.generate {
        return framelink::cli::generate::<WorkerOpts>(what);
    }
    let config = opts.config()?;
    let duration = opts.duration()?;
    let shutdown = Shutdown::new();
    shutdown.on_ctrl_c()?;
    if let Some(d) = duration {
        shutdown.trigger_after(d);
    }
    output::stdout_line(&format!(
        "framelink-worker {} taking frames from {} ({} at a time)",
        config.name, config.nats.url, config.concurrency
    ));
    let s = worker::run(config, shutdown)?;
    output::stdout_line(&format!(
        "summary: {} frames processed, {} failed, {} expired, busy {:.0}%, processing p50 {:.1} ms p99 {:.1} ms, {} idle replies",
        s.frames_processed,
        s.frames_failed,
        s.frames_expired,
        s.busy * 100.0,
        s.processing_ms_p50,
        s.processing_ms_p99,
        s.idle_replies
    ));
    Ok(())
}

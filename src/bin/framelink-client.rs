//! `framelink-client`: parse the command line, open the source, run. The work is in the library.

use anyhow::Result;
use framelink::cli::ClientOpts;
use framelink::shutdown::Shutdown;
use framelink::{client, logging, output};
use std::process::ExitCode;

fn main() -> ExitCode {
    framelink::memory::settle();
    logging::init();
    let (opts, ignored) = ClientOpts::parse_noting_ignored();
    for why in ignored {
        tracing::warn!("{why}");
    }
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::stderr_line(&format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(opts: ClientOpts) -> Result<()> {
    if let Some(what) = opts.common.generate {
        return framelink::cli::generate::<ClientOpts>(what);
    }
    if opts.list_cameras {
        output::stdout_line(&client::source::camera::list()?);
        return Ok(());
    }
    let config = opts.config()?;
    let duration = opts.duration()?;
    let shutdown = Shutdown::new();
    shutdown.on_ctrl_c()?;
    if let Some(d) = duration {
        shutdown.trigger_after(d);
    }
    let results_on_stdout = config.results_on_stdout();
    let summary = client::run(config, shutdown)?;
    let line = format!("summary: {}", summary.describe());
    // Standard output carries results only when they go there.
    output::line_to(results_on_stdout, &line);
    match summary.never_connected() {
        Some(why) => anyhow::bail!("{why}"),
        None => Ok(()),
    }
}

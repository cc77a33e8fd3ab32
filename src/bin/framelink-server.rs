//! `framelink-server`: parse the command line, bind, run. The work is in the library.

use anyhow::Result;
use framelink::cli::ServerOpts;
use framelink::server::display::DisplaySink;
use framelink::server::Server;
use framelink::shutdown::Shutdown;
use framelink::{logging, output, server};
use std::process::ExitCode;

fn main() -> ExitCode {
    framelink::memory::settle();
    logging::init();
    let (opts, _) = framelink::cli::parse::<ServerOpts>();
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::stderr_line(&format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(opts: ServerOpts) -> Result<()> {
    if let Some(what) = opts.common.generate {
        return framelink::cli::generate::<ServerOpts>(what);
    }
    // Every flag is checked before anything is bound or printed.
    let config = opts.config()?;
    let duration = opts.duration()?;
    let (listener, http) = opts.bind()?;
    let local = listener.local_addr()?;
    let addrs: Vec<String> = server::advertised_addresses(local)
        .iter()
        .map(ToString::to_string)
        .collect();
    output::stdout_line(&format!(
        "framelink-server listening on {local}; clients can connect to: {}",
        addrs.join(", ")
    ));

    if config.token.is_none() {
        tracing::warn!(
            "no --token (or FRAMELINK_TOKEN): anyone who can reach port {} can stream to this server{}",
            local.port(),
            if http.is_some() { ", and anyone who can reach the live view can watch" } else { "" }
        );
    }
    let shutdown = Shutdown::new();
    shutdown.on_ctrl_c()?;
    if let Some(d) = duration {
        shutdown.trigger_after(d);
    }
    let scheme = if config.http_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let fingerprint = config.http_fingerprint.clone();
    let mut server = Server::new(listener, config);
    if let Some(http) = http {
        let at = http.local_addr()?;
        let urls = |path: &str| {
            server::advertised_addresses(at)
                .iter()
                .map(|a| format!("{scheme}://{a}{path}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        output::stdout_line(&format!("live view: {}", urls("/")));
        output::stdout_line(&format!("browser camera: {}", urls("/camera")));
        if let Some(fp) = fingerprint {
            output::stdout_line(&format!(
                "self-signed certificate, SHA-256 {fp}: the browser warns once; proceed if it shows this fingerprint"
            ));
        }
        server = server.live_view(http);
    }
    if !opts.no_display {
        match DisplaySink::open("framelink-server") {
            Ok(display) => server = server.sink(Box::new(display)),
            Err(e) => {
                output::stderr_line(&format!("notice: no display available ({e:#}); running headless. Use --no-display to skip the window."));
            }
        }
    }
    let summary = server.run(shutdown)?;
    output::stdout_line(&format!("summary: {}", summary.total.describe()));
    output::stdout_line(&format!(
        "processor {}: {} frames processed, {} failed, {} expired before processing",
        summary.processor,
        summary.frames_processed,
        summary.frames_process_failed,
        summary.frames_expired
    ));
    if let Some(r) = &summary.recording {
        output::stdout_line(&format!(
            "recording in {}: {} frames, {:.1} MB on disk, {} old files deleted, {} frames left out{}",
            r.dir.display(),
            r.frames_recorded,
            r.bytes_on_disk as f64 / 1e6,
            r.files_deleted,
            r.frames_left_out,
            r.stopped.as_deref().map(|w| format!(" (stopped: {w})")).unwrap_or_default()
        ));
    }
    for c in &summary.clients {
        output::stdout_line(&format!(
            "  {} ({} connection{}): {}",
            c.name,
            c.connections,
            if c.connections == 1 { "" } else { "s" },
            c.figures.describe()
        ));
    }
    Ok(())
}

//! `framelink-server`: parse the command line, bind, run. The work is in the library.

use anyhow::{Context, Result};
use clap::Parser;
use framelink::cli::ServerOpts;
use framelink::display::DisplaySink;
use framelink::shutdown::Shutdown;
use framelink::sink::{CountProcessor, ProcessorSink, Sink};
use framelink::{logging, server};
use std::net::TcpListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    logging::init();
    match run(ServerOpts::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: ServerOpts) -> Result<()> {
    let config = opts.config()?;
    let listener = TcpListener::bind(opts.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another server using that port? choose another with --listen",
            opts.listen
        )
    })?;
    let local = listener.local_addr()?;
    let addrs: Vec<String> = server::advertised_addresses(local)
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "framelink-server listening on {local}; clients can connect to: {}",
        addrs.join(", ")
    );

    let shutdown = Shutdown::new();
    shutdown.on_ctrl_c()?;
    if let Some(d) = opts.duration()? {
        shutdown.trigger_after(d);
    }
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(ProcessorSink::new(Box::new(
        CountProcessor::default(),
    )))];
    if !opts.no_display {
        match DisplaySink::open("framelink-server") {
            Ok(display) => sinks.push(Box::new(display)),
            Err(e) => eprintln!("notice: no display available ({e:#}); running headless. Use --no-display to skip the window."),
        }
    }
    let summary = server::run(listener, config, sinks, shutdown)?;
    println!("summary: {}", summary.total.describe());
    for c in &summary.clients {
        println!(
            "  {} ({} connection{}): {}",
            c.name,
            c.connections,
            if c.connections == 1 { "" } else { "s" },
            c.figures.describe()
        );
    }
    Ok(())
}

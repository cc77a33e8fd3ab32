//! A server running your own processor: logs the mean brightness of every
//! fresh frame. `cargo run --release --example brightness`, then point a
//! client at port 1998.

use framelink::sink::{FrameView, Processor, ProcessorSink, Sink};

struct Brightness;

impl Processor for Brightness {
    fn name(&self) -> &str {
        "brightness"
    }

    fn process(&mut self, view: &mut FrameView) -> anyhow::Result<()> {
        let rgb = view.rgb().map_err(anyhow::Error::msg)?; // decoded once, on first use
        let mean =
            rgb.as_raw().iter().map(|&v| v as u64).sum::<u64>() / rgb.as_raw().len().max(1) as u64;
        tracing::info!(
            client = &*view.frame.client_name,
            frame = view.frame.frame_id,
            mean
        );
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    framelink::logging::init();
    let listener = std::net::TcpListener::bind("0.0.0.0:1998")?;
    let shutdown = framelink::shutdown::Shutdown::new();
    shutdown.on_ctrl_c()?;
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(ProcessorSink::new(Box::new(Brightness)))];
    framelink::server::run(listener, Default::default(), sinks, shutdown)?;
    Ok(())
}

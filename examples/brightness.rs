//! A server running your own processor: the mean brightness of every fresh
//! frame, logged and sent back to its client. `cargo run --release --example brightness`, then point a
//! client at port 1998.

use framelink::process::FrameView;
use framelink::process::{Output, Processor};
use framelink::server::Server;

struct Brightness;

impl Processor for Brightness {
    fn name(&self) -> &str {
        "brightness"
    }

    fn process(&mut self, view: &mut FrameView) -> anyhow::Result<Output> {
        let rgb = view.rgb().map_err(anyhow::Error::msg)?; // decoded once, on first use
        let mean =
            rgb.as_raw().iter().map(|&v| v as u64).sum::<u64>() / rgb.as_raw().len().max(1) as u64;
        tracing::info!(
            client = &*view.frame.client_name,
            frame = view.frame.frame_id,
            mean
        );
        // Sent back to the client that sent the frame.
        Ok(Output::json(&serde_json::json!({ "mean": mean })))
    }
}

fn main() -> anyhow::Result<()> {
    framelink::logging::init();
    let listener = std::net::TcpListener::bind("0.0.0.0:1998")?;
    let shutdown = framelink::shutdown::Shutdown::new();
    shutdown.on_ctrl_c()?;
    Server::new(listener, Default::default())
        .processor(Box::new(Brightness))
        .run(shutdown)?;
    Ok(())
}

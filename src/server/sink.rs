//! Where accepted frames go on the display thread: sinks (the window, or a
//! test's probe). A sink sees each client's newest frame only, as a
//! [`FrameView`] whose pixels are decoded once, by the first sink that asks.

use crate::process::{ClientId, FrameView};

/// A consumer of accepted frames on the display thread (or the processing thread). Sinks
/// live on that one thread (a window must stay on the thread that made it),
/// so they need not be `Send`.
pub trait Sink {
    /// The sink's name, for logs.
    fn name(&self) -> &str;

    /// Takes a client's newest frame. Must not block for long: the thread
    /// serves every client and every sink. An error is logged for that frame
    /// and streaming goes on.
    fn frame(&mut self, view: &mut FrameView) -> anyhow::Result<()>;

    /// The client disconnected: forget its state.
    fn client_left(&mut self, _client: ClientId) {}

    /// The client's camera is lost (`lost` says since when and why) or back
    /// (None). Told at the next tick after the client says so; a viewer shows
    /// it, a processor never gets a frame made up for it.
    fn source_changed(
        &mut self,
        _client: ClientId,
        _name: &str,
        _lost: Option<&crate::server::source_state::LostSource>,
    ) {
    }

    /// Called at least every 100 ms (about every 16 ms with a window open).
    /// Returns false to ask the server to stop (the window was closed).
    fn tick(&mut self) -> bool {
        true
    }
}

//! The display thread's stage: gives each client's newest frame to every
//! sink (the window, a test's probe), tells them of clients leaving and of
//! cameras lost or back, and ticks them.

use super::{Failures, Joined, Stage};
use crate::process::{ArrivedFrame, FrameView};
use crate::server::sink::Sink;
use std::collections::HashMap;
use std::time::Duration;
use tracing::info;

/// The sinks of the display thread.
pub(crate) struct Sinks<'s, 'a> {
    sinks: &'s mut [&'a mut dyn Sink],
    failures: Failures,
    /// Each client's source changes the sinks were told of.
    source_shown: HashMap<crate::process::ClientId, u64>,
    /// The pixels of the frame before, decoded into again by the next one.
    pixels: Vec<u8>,
}

impl<'s, 'a> Sinks<'s, 'a> {
    pub(crate) fn new(sinks: &'s mut [&'a mut dyn Sink]) -> Self {
        Sinks {
            sinks,
            failures: Failures::default(),
            source_shown: HashMap::new(),
            pixels: Vec::new(),
        }
    }
}

impl Stage for Sinks<'_, '_> {
    type Own = std::convert::Infallible;

    fn tick_every(&self) -> Duration {
        if self.sinks.iter().any(|s| s.name() == "display") {
            crate::server::display::DISPLAY_TICK
        } else {
            crate::shutdown::TICK
        }
    }

    fn frame(&mut self, frame: ArrivedFrame, _clients: &[Joined]) {
        let mut view = FrameView::reusing(frame, std::mem::take(&mut self.pixels));
        for (k, sink) in self.sinks.iter_mut().enumerate() {
            if let Err(e) = sink.frame(&mut view) {
                self.failures.note(&view.frame, k, sink.name(), &e);
            }
        }
        self.pixels = view.into_spare();
    }

    fn left(&mut self, gone: &Joined) {
        self.source_shown.remove(&gone.id);
        self.failures.left(gone.id);
        for sink in self.sinks.iter_mut() {
            sink.client_left(gone.id);
        }
    }

    fn tick(&mut self, clients: &[Joined]) -> bool {
        for c in clients {
            let now = c.source.changes();
            let shown = self.source_shown.entry(c.id).or_default();
            if now != *shown {
                *shown = now;
                let lost = c.source.lost();
                for sink in self.sinks.iter_mut() {
                    sink.source_changed(c.id, &c.name, lost.as_ref());
                }
            }
        }
        // Every sink ticks, even after one asked to stop.
        let mut go = true;
        for sink in self.sinks.iter_mut() {
            go &= sink.tick();
        }
        if !go {
            info!("window closed: stopping");
        }
        go
    }
}

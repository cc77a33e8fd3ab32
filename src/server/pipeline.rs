//! The stages behind the sessions: the display thread and the processing
//! thread each wait on every client's newest-frame slot at once and hand
//! what they take to their sinks.

use crate::latest::LatestReceiver;
use crate::server::sink::{ArrivedFrame, ClientId, FrameView, Sink};
use crate::shutdown::Shutdown;
use crossbeam_channel::{Receiver, Select};
use std::collections::HashMap;
use std::time::Instant;
use tracing::{info, warn};

/// A new client for the display or processing thread: its newest-frame receiver.
pub(super) struct Joined {
    pub(super) id: ClientId,
    pub(super) name: std::sync::Arc<str>,
    pub(super) frames: LatestReceiver<ArrivedFrame>,
    /// Its camera's state, for the sinks that show it (the window).
    pub(super) source: std::sync::Arc<crate::server::source_state::SourceState>,
}

/// The display thread and the processing thread: waits on every client's newest-frame
/// receiver at once, gives each frame it takes to every sink, and ticks the
/// sinks. Unblocked by a frame, a client joining or leaving, or the tick;
/// ends on shutdown or when a sink asks to stop.
pub(super) fn pipeline(
    joined: &Receiver<Joined>,
    sinks: &mut [&mut dyn Sink],
    shutdown: &Shutdown,
) {
    let tick = if sinks.iter().any(|s| s.name() == "display") {
        crate::server::display::DISPLAY_TICK
    } else {
        crate::shutdown::TICK
    };
    let mut clients: Vec<Joined> = Vec::new();
    // Each client's source changes the sinks were told of (beside `clients`).
    let mut source_shown: Vec<u64> = Vec::new();
    let mut failures: HashMap<(ClientId, usize), u64> = HashMap::new();
    let mut last_tick = Instant::now();
    // The pixels of the frame before, decoded into again by the next one.
    let mut pixels = Vec::new();
    enum Event {
        Joined(Joined),
        Frame(ArrivedFrame),
        Left(usize),
        Idle,
    }
    while !shutdown.is_triggered() {
        let event = {
            let mut sel = Select::new();
            sel.recv(joined);
            for c in &clients {
                sel.recv(&c.frames);
            }
            match sel.select_timeout(tick) {
                Ok(op) if op.index() == 0 => match op.recv(joined) {
                    Ok(j) => Event::Joined(j),
                    Err(_) => break, // every connection sender is gone: the server is ending
                },
                Ok(op) => {
                    let i = op.index() - 1;
                    match op.recv(&clients[i].frames) {
                        Ok(frame) => Event::Frame(frame),
                        Err(_) => Event::Left(i),
                    }
                }
                Err(_) => Event::Idle,
            }
        };
        match event {
            Event::Joined(j) => {
                clients.push(j);
                source_shown.push(0);
            }
            Event::Frame(frame) => {
                let client = frame.client;
                let mut view = FrameView::reusing(frame, std::mem::take(&mut pixels));
                for (k, sink) in sinks.iter_mut().enumerate() {
                    if let Err(e) = sink.frame(&mut view) {
                        let n = failures.entry((client, k)).or_default();
                        *n += 1;
                        if n.is_power_of_two() {
                            warn!(
                                sink = sink.name(),
                                client = &*view.frame.client_name,
                                failures = *n,
                                "frame {}: {e:#}",
                                view.frame.frame_id
                            );
                        }
                    }
                }
                pixels = view.into_spare();
            }
            Event::Left(i) => {
                let gone = clients.remove(i);
                source_shown.remove(i);
                failures.retain(|(c, _), _| *c != gone.id);
                for sink in sinks.iter_mut() {
                    sink.client_left(gone.id);
                }
            }
            Event::Idle => {}
        }
        if last_tick.elapsed() >= tick {
            last_tick = Instant::now();
            for (c, shown) in clients.iter().zip(source_shown.iter_mut()) {
                let now = c.source.changes();
                if now != *shown {
                    *shown = now;
                    let lost = c.source.lost();
                    for sink in sinks.iter_mut() {
                        sink.source_changed(c.id, &c.name, lost.as_ref());
                    }
                }
            }
            // Every sink ticks, even after one asked to stop.
            let mut go = true;
            for sink in sinks.iter_mut() {
                go &= sink.tick();
            }
            if !go {
                info!("window closed: stopping");
                break;
            }
        }
    }
}

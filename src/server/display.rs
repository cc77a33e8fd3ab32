//! The server's window: every client's newest frame in a grid of tiles, each
//! labelled with the client's name, the frames a second the window shows,
//! and the frame's age on arrival. Closing the window (or Esc) stops the server.

use crate::media::draw;
use crate::server::sink::{ClientId, FrameView, Sink};
use anyhow::{anyhow, Result};
use minifb::{Key, Window, WindowOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Window size in pixels.
const CANVAS_W: usize = 1280;
const CANVAS_H: usize = 720;
/// How often the window is redrawn.
const REFRESH: Duration = Duration::from_millis(16);

/// One client's tile: its newest frame scaled to fit, and its label figures.
struct Tile {
    name: String,
    rgb: image::RgbImage,
    age_ms: f64,
    /// Frames shown in the current second, and the rate over the last one.
    shown: u32,
    since: Instant,
    fps: f64,
}

/// The tiled composition, independent of any window so it can be tested.
pub struct Mosaic {
    tiles: BTreeMap<ClientId, Tile>,
    canvas: Vec<u32>,
    width: usize,
    height: usize,
}

impl Mosaic {
    pub fn new(width: usize, height: usize) -> Self {
        Mosaic {
            tiles: BTreeMap::new(),
            canvas: vec![0; width * height],
            width,
            height,
        }
    }

    /// Stores a client's new frame (decoding it).
    pub fn update(&mut self, view: &mut FrameView) -> Result<()> {
        let client = view.frame.client;
        let name = view.frame.client_name.to_string();
        let age_ms = view.frame.age.as_secs_f64() * 1000.0;
        let rgb = view.rgb().map_err(|e| anyhow!(e))?.clone();
        let now = Instant::now();
        let tile = self.tiles.entry(client).or_insert_with(|| Tile {
            name,
            rgb: image::RgbImage::new(1, 1),
            age_ms,
            shown: 0,
            since: now,
            fps: 0.0,
        });
        tile.rgb = rgb;
        tile.age_ms = age_ms;
        tile.shown += 1;
        let elapsed = now - tile.since;
        if elapsed >= Duration::from_secs(1) {
            tile.fps = tile.shown as f64 / elapsed.as_secs_f64();
            tile.shown = 0;
            tile.since = now;
        }
        Ok(())
    }

    pub fn remove(&mut self, client: ClientId) {
        self.tiles.remove(&client);
    }

    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// Draws every tile into the canvas (0RGB pixels) and returns it.
    pub fn render(&mut self) -> &[u32] {
        self.canvas.fill(0x0020_2020);
        let n = self.tiles.len();
        if n == 0 {
            let msg = "framelink: waiting for clients";
            let x = self.width.saturating_sub(draw::text_width(msg, 2)) / 2;
            draw::label_u32(
                &mut self.canvas,
                self.width,
                self.height,
                x,
                self.height / 2,
                2,
                msg,
            );
            return &self.canvas;
        }
        let cols = (n as f64).sqrt().ceil() as usize;
        let rows = n.div_ceil(cols);
        let (tw, th) = (self.width / cols, self.height / rows);
        for (i, tile) in self.tiles.values().enumerate() {
            let (ox, oy) = ((i % cols) * tw, (i / cols) * th);
            blit_fit(&mut self.canvas, self.width, &tile.rgb, ox, oy, tw, th);
            let label = format!(
                "{}  {:.1} fps  age {:.1} ms",
                tile.name, tile.fps, tile.age_ms
            );
            draw::label_u32(
                &mut self.canvas,
                self.width,
                self.height,
                ox + 4,
                oy + 4,
                2,
                &label,
            );
        }
        &self.canvas
    }
}

/// Scales `img` (nearest neighbour, aspect kept) into the box (ox, oy, bw, bh).
fn blit_fit(
    canvas: &mut [u32],
    stride: usize,
    img: &image::RgbImage,
    ox: usize,
    oy: usize,
    bw: usize,
    bh: usize,
) {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    if iw == 0 || ih == 0 || bw == 0 || bh == 0 {
        return;
    }
    let scale = (bw as f64 / iw as f64).min(bh as f64 / ih as f64);
    let (dw, dh) = (
        ((iw as f64 * scale) as usize).max(1),
        ((ih as f64 * scale) as usize).max(1),
    );
    let (dx, dy) = (ox + (bw - dw.min(bw)) / 2, oy + (bh - dh.min(bh)) / 2);
    let raw = img.as_raw();
    for y in 0..dh.min(bh) {
        let sy = (y * ih / dh).min(ih - 1);
        let row = &mut canvas[(dy + y) * stride + dx..];
        for (x, px) in row.iter_mut().take(dw.min(bw)).enumerate() {
            let sx = (x * iw / dw).min(iw - 1);
            let i = (sy * iw + sx) * 3;
            *px = (raw[i] as u32) << 16 | (raw[i + 1] as u32) << 8 | raw[i + 2] as u32;
        }
    }
}

/// The display sink: a [`Mosaic`] shown in a minifb window.
pub struct DisplaySink {
    window: Window,
    mosaic: Mosaic,
    last_draw: Instant,
    dirty: bool,
}

impl DisplaySink {
    /// Opens the window. Fails (without panicking) when there is no display,
    /// e.g. `XOpenDisplay failed` on a machine with no X server.
    pub fn open(title: &str) -> Result<Self> {
        let opts = WindowOptions {
            resize: true,
            scale_mode: minifb::ScaleMode::AspectRatioStretch,
            ..WindowOptions::default()
        };
        let mut window = Window::new(title, CANVAS_W, CANVAS_H, opts)
            .map_err(|e| anyhow!("cannot open a window: {e}"))?;
        window.set_target_fps(0);
        Ok(DisplaySink {
            window,
            mosaic: Mosaic::new(CANVAS_W, CANVAS_H),
            last_draw: Instant::now() - REFRESH,
            dirty: true,
        })
    }
}

impl Sink for DisplaySink {
    fn name(&self) -> &str {
        "display"
    }

    fn frame(&mut self, view: &mut FrameView) -> Result<()> {
        self.mosaic.update(view)?;
        self.dirty = true;
        Ok(())
    }

    fn client_left(&mut self, client: ClientId) {
        self.mosaic.remove(client);
        self.dirty = true;
    }

    fn tick(&mut self) -> bool {
        if !self.window.is_open() || self.window.is_key_down(Key::Escape) {
            return false;
        }
        if self.last_draw.elapsed() < REFRESH {
            return true;
        }
        self.last_draw = Instant::now();
        if self.dirty {
            self.dirty = false;
            let canvas = self.mosaic.render();
            if let Err(e) = self.window.update_with_buffer(canvas, CANVAS_W, CANVAS_H) {
                tracing::warn!("window update failed: {e}");
            }
        } else {
            self.window.update();
        }
        true
    }
}

/// How often the display thread must call `tick` with a window open.
pub const DISPLAY_TICK: Duration = REFRESH;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::sink::ArrivedFrame;

    fn view(client: ClientId, jpeg: Vec<u8>) -> FrameView {
        FrameView::new(ArrivedFrame {
            client,
            client_name: format!("cam{client}").into(),
            frame_id: 1,
            width: 32,
            height: 16,
            jpeg: jpeg.into(),
            age: Duration::from_millis(3),
            arrived: Instant::now(),
            reply: None,
        })
    }

    #[test]
    fn tiles_appear_and_go_with_clients() {
        let mut m = Mosaic::new(320, 180);
        let red = {
            let img = image::RgbImage::from_pixel(32, 16, image::Rgb([250, 0, 0]));
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
                .encode(&img, 32, 16, image::ExtendedColorType::Rgb8)
                .unwrap();
            out
        };
        m.update(&mut view(1, red.clone())).unwrap();
        m.update(&mut view(2, red)).unwrap();
        assert_eq!(m.len(), 2);
        let reddish = m
            .render()
            .iter()
            .filter(|&&p| (p >> 16) & 0xFF > 200 && (p >> 8) & 0xFF < 50)
            .count();
        assert!(
            reddish > 320 * 180 / 4,
            "two red tiles should cover much of the canvas, got {reddish} px"
        );
        m.remove(1);
        m.remove(2);
        assert!(m.is_empty());
        let reddish = m
            .render()
            .iter()
            .filter(|&&p| (p >> 16) & 0xFF > 200 && (p >> 8) & 0xFF < 50)
            .count();
        assert_eq!(reddish, 0);
    }

    #[test]
    fn a_corrupt_frame_is_an_error_and_leaves_no_tile() {
        let mut m = Mosaic::new(64, 64);
        assert!(m
            .update(&mut view(1, vec![0xFF, 0xD8, 0xFF, 0xD9]))
            .is_err());
        assert!(m.is_empty());
    }
}

//! The server's window: every client's newest frame in a grid of tiles, each
//! labelled with the client's name, the frames a second the window shows,
//! and the frame's age on arrival; NO SIGNAL over the tile of a client whose
//! camera is lost. Closing the window (or Esc) stops the server.
//!
//! The X display going away (the X server stopped, an SSH session with X
//! forwarding closed) does not: Xlib would end the process, so the window
//! asks Xlib (`XSetIOErrorExitHandler`, libX11 1.7 and later) to tell it
//! instead, warns, and the server goes on headless: processing, recording
//! and the live view are unaffected.

use crate::media::draw;
use crate::process::{ClientId, FrameView};
use crate::server::sink::Sink;
use crate::server::source_state::LostSource;
use anyhow::{anyhow, Result};
use minifb::{Key, Window, WindowOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Window size in pixels.
const CANVAS_W: usize = 1280;
const CANVAS_H: usize = 720;
/// Height of the band above each tile's picture that holds its label.
const LABEL_BAND: usize = 22;
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
    /// While the client's camera is lost: "camera lost since 14:03:27".
    lost: Option<String>,
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
            lost: None,
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

    /// Marks a client's tile NO SIGNAL (with `lost`'s time) or clears it; a
    /// client lost before its first frame gets a blank tile to say so.
    pub fn source_changed(&mut self, client: ClientId, name: &str, lost: Option<&LostSource>) {
        let tile = self.tiles.entry(client).or_insert_with(|| Tile {
            name: name.to_string(),
            rgb: image::RgbImage::new(16, 9),
            age_ms: 0.0,
            shown: 0,
            since: Instant::now(),
            fps: 0.0,
            lost: None,
        });
        tile.lost = lost.map(LostSource::headline);
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
            // The label has a band of its own above the picture, never
            // drawn over it (nor over the picture's own text).
            let band = LABEL_BAND.min(th / 2);
            blit_fit(
                &mut self.canvas,
                self.width,
                &tile.rgb,
                ox,
                oy + band,
                tw,
                th - band,
            );
            if let Some(headline) = &tile.lost {
                no_signal(
                    &mut self.canvas,
                    self.width,
                    (ox, oy + band, tw, th - band),
                    headline,
                );
            }
            let label = format!(
                "{}  {:.1} fps  age {:.1} ms",
                tile.name, tile.fps, tile.age_ms
            );
            draw::label_u32(
                &mut self.canvas,
                self.width,
                self.height,
                ox + 4,
                oy + (band.saturating_sub(16)) / 2,
                2,
                &label,
            );
        }
        &self.canvas
    }
}

/// Dims the box (ox, oy, w, h) of a tile whose camera is lost (its last
/// picture stays, darkened) and writes NO SIGNAL and `headline` over it.
fn no_signal(
    canvas: &mut [u32],
    stride: usize,
    (ox, oy, w, h): (usize, usize, usize, usize),
    headline: &str,
) {
    for y in oy..(oy + h).min(canvas.len() / stride) {
        for px in &mut canvas[y * stride + ox..y * stride + (ox + w).min(stride)] {
            *px = (*px >> 2) & 0x003F_3F3F;
        }
    }
    let height = canvas.len() / stride;
    let big = if w >= draw::text_width("NO SIGNAL", 4) + 8 {
        4
    } else {
        2
    };
    let cy = oy + h / 2;
    for (text, scale, y) in [
        ("NO SIGNAL", big, cy.saturating_sub(8 * big + 4)),
        (headline, 2, cy + 4),
    ] {
        let x = ox + w.saturating_sub(draw::text_width(text, scale)) / 2;
        draw::label_u32(canvas, stride, height, x, y, scale, text);
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

/// Set by Xlib's fatal-error exit handler: the X display connection is gone.
static DISPLAY_LOST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Xlib's fatal I/O error handler (the default one prints and exits):
/// notes the loss and returns, so Xlib goes on to the exit handler below.
extern "C" fn display_io_error(_display: *mut std::ffi::c_void) -> std::ffi::c_int {
    DISPLAY_LOST.store(true, std::sync::atomic::Ordering::SeqCst);
    0
}

/// Called by Xlib instead of `exit(1)` when the display connection fails.
extern "C" fn display_lost(_display: *mut std::ffi::c_void, _data: *mut std::ffi::c_void) {
    DISPLAY_LOST.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Asks Xlib to call [`display_lost`] instead of exiting when the window's
/// display connection fails. Returns false where that cannot be done (not
/// X11, or a libX11 older than 1.7): the old behaviour (exit) stays.
fn survive_display_loss(window: &Window) -> bool {
    use raw_window_handle::{HasDisplayHandle, RawDisplayHandle};
    let Ok(handle) = window.display_handle() else {
        return false;
    };
    let RawDisplayHandle::Xlib(xlib) = handle.as_raw() else {
        return false;
    };
    let Some(display) = xlib.display else {
        return false;
    };
    type IoHandler = extern "C" fn(*mut std::ffi::c_void) -> std::ffi::c_int;
    type SetIoHandler = unsafe extern "C" fn(IoHandler) -> *mut std::ffi::c_void;
    type ExitHandler = extern "C" fn(*mut std::ffi::c_void, *mut std::ffi::c_void);
    type SetExitHandler =
        unsafe extern "C" fn(*mut std::ffi::c_void, ExitHandler, *mut std::ffi::c_void);
    // SAFETY: dlopen/dlsym of the libX11 minifb already loaded (NOLOAD: never
    // a second copy); the symbol has the signature above in libX11 >= 1.7.
    unsafe {
        let lib = libc::dlopen(c"libX11.so.6".as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if lib.is_null() {
            return false;
        }
        let set_exit = libc::dlsym(lib, c"XSetIOErrorExitHandler".as_ptr());
        let set_io = libc::dlsym(lib, c"XSetIOErrorHandler".as_ptr());
        if set_exit.is_null() || set_io.is_null() {
            return false;
        }
        let set_exit: SetExitHandler = std::mem::transmute(set_exit);
        let set_io: SetIoHandler = std::mem::transmute(set_io);
        set_exit(display.as_ptr(), display_lost, std::ptr::null_mut());
        set_io(display_io_error);
    }
    true
}

/// The display sink: a [`Mosaic`] shown in a minifb window.
pub struct DisplaySink {
    /// None once the display is lost (the window is then left alone, never
    /// dropped: closing it would talk to a dead connection).
    window: Option<Window>,
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
        if !survive_display_loss(&window) {
            tracing::debug!("cannot ask Xlib to report a lost display (libX11 < 1.7?): losing it will end the server");
        }
        Ok(DisplaySink {
            window: Some(window),
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
        if self.window.is_none() {
            return Ok(()); // headless since the display went away: nothing to decode for
        }
        self.mosaic.update(view)?;
        self.dirty = true;
        Ok(())
    }

    fn client_left(&mut self, client: ClientId) {
        self.mosaic.remove(client);
        self.dirty = true;
    }

    fn source_changed(&mut self, client: ClientId, name: &str, lost: Option<&LostSource>) {
        self.mosaic.source_changed(client, name, lost);
        self.dirty = true;
    }

    fn tick(&mut self) -> bool {
        if DISPLAY_LOST.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(w) = self.window.take() {
                std::mem::forget(w);
                tracing::warn!("the display went away: the window is gone, the server goes on headless (processing, recording and the live view go on)");
            }
            return true;
        }
        let Some(window) = self.window.as_mut() else {
            return true;
        };
        if !window.is_open() || window.is_key_down(Key::Escape) {
            return false;
        }
        if self.last_draw.elapsed() < REFRESH {
            return true;
        }
        self.last_draw = Instant::now();
        if self.dirty {
            self.dirty = false;
            let canvas = self.mosaic.render();
            if let Err(e) = window.update_with_buffer(canvas, CANVAS_W, CANVAS_H) {
                tracing::warn!("window update failed: {e}");
            }
        } else {
            window.update();
        }
        true
    }
}

/// How often the display thread must call `tick` with a window open.
pub const DISPLAY_TICK: Duration = REFRESH;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ArrivedFrame;

    /// A 32x16 JPEG, all red.
    fn red_jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(32, 16, image::Rgb([250, 0, 0]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
            .encode(&img, 32, 16, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

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
        let red = red_jpeg();
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
    fn the_label_sits_in_its_own_band_never_over_the_picture() {
        let (w, h) = (320, 180);
        let mut m = Mosaic::new(w, h);
        m.update(&mut view(1, red_jpeg())).unwrap();
        let canvas = m.render().to_vec();
        let bright = |p: u32| (p >> 8) & 0xFF > 150 && p & 0xFF > 150;
        let (band_rows, picture_rows) = canvas.split_at(LABEL_BAND * w);
        assert!(band_rows.iter().any(|&p| bright(p)), "the label is drawn");
        assert!(
            !picture_rows.iter().any(|&p| bright(p)),
            "no label pixel over the picture"
        );
        // The picture fills the rest: 32x16 scaled to 316x158 below the band.
        let reddish = picture_rows
            .iter()
            .filter(|&&p| (p >> 16) & 0xFF > 200 && (p >> 8) & 0xFF < 50)
            .count();
        assert!(reddish >= 316 * 158 * 9 / 10, "{reddish}");
    }

    #[test]
    fn a_lost_camera_dims_its_tile_and_says_no_signal_until_it_is_back() {
        let (w, h) = (320, 180);
        let mut m = Mosaic::new(w, h);
        m.update(&mut view(1, red_jpeg())).unwrap();
        let reddish = |c: &[u32]| {
            c.iter()
                .filter(|&&p| (p >> 16) & 0xFF > 200 && (p >> 8) & 0xFF < 50)
                .count()
        };
        let white_below_band = |c: &[u32]| {
            c[LABEL_BAND * w..]
                .iter()
                .filter(|&&p| p == 0x00FF_FFFF)
                .count()
        };
        assert!(reddish(m.render()) > w * h / 2);
        let lost = LostSource {
            since: std::time::SystemTime::now(),
            why: "no frame for 5.0 s".into(),
        };
        m.source_changed(1, "cam1", Some(&lost));
        let canvas = m.render().to_vec();
        assert_eq!(reddish(&canvas), 0, "the last picture is dimmed");
        assert!(
            white_below_band(&canvas) > 200,
            "NO SIGNAL is written over it"
        );
        m.source_changed(1, "cam1", None);
        let canvas = m.render().to_vec();
        assert!(reddish(&canvas) > w * h / 2);
        assert_eq!(white_below_band(&canvas), 0);

        // A camera lost before its first frame still gets a tile saying so.
        m.source_changed(2, "cam2", Some(&lost));
        assert_eq!(m.len(), 2);
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

//! Pictures, with no knowledge of the link: [`jpeg`] checks a JPEG's
//! structure without decoding it, [`convert`] turns raw camera formats into
//! RGB, [`encode`] turns pixels into JPEG, [`decode`] JPEG into pixels
//! (libjpeg-turbo or the pure-Rust `image` crate), [`draw`] writes text on
//! frames (the test pattern's labels, the window's captions).

/// The largest picture framelink takes by default, in pixels: 16 Mpx
/// (4096 × 4096; 4K UHD fits twice). The server's default `--max-pixels`,
/// and the client's ceiling on `--width` × `--height`.
pub const DEFAULT_MAX_PIXELS: u64 = 4096 * 4096;

pub mod convert;
pub mod decode;
pub mod draw;
pub mod encode;
pub mod jpeg;
pub mod letterbox;
pub mod resize;

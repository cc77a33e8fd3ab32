//! Pictures, with no knowledge of the link: [`jpeg`] checks a JPEG's
//! structure without decoding it, [`encode`] turns pixels into JPEG, [`decode`] JPEG into pixels
//! (libjpeg-turbo or the pure-Rust `image` crate), [`draw`] writes text on
//! frames (the test pattern's labels, the window's captions).

pub mod decode;
pub mod draw;
pub mod encode;
pub mod jpeg;

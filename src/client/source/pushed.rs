//! Frames pushed by the program itself: the caller captures (picamera2,
//! OpenCV, a simulator: the Python binding's `Client.send`) and hands each
//! frame to a [`Pusher`]; the client encodes and sends it like any camera's.
//!
//! Latest-only from the first step: a frame pushed while the previous one
//! was not yet taken by the capture thread replaces it. Pushing never blocks.

use super::{Captured, Image, Source};
use crate::latest::{self, LatestReceiver, LatestSender};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// A picture as the caller hands it over, owned.
pub enum Picture {
    /// Packed 8-bit pixels, `width * height * 3` bytes, red first.
    Rgb(Vec<u8>),
    /// Packed 8-bit pixels, blue first (OpenCV's order).
    Bgr(Vec<u8>),
    /// A whole JPEG, sent as it is.
    Jpeg(Vec<u8>),
}

/// A pushed frame: the picture, its size and its capture instant.
pub struct Pushed {
    pub picture: Picture,
    pub width: u32,
    pub height: u32,
    pub at: Instant,
}

/// The caller's end: [`push`](Pusher::push) frames; dropping it ends the
/// source (the client then stops, as at the end of a stream).
pub struct Pusher {
    slot: LatestSender<Pushed>,
}

impl Pusher {
    /// Hands a frame to the client, replacing one it has not taken yet.
    /// Never blocks. Checks the picture's size against its bytes.
    pub fn push(&self, frame: Pushed) -> Result<()> {
        let (w, h) = (frame.width, frame.height);
        if let Picture::Rgb(p) | Picture::Bgr(p) = &frame.picture {
            if p.len() != w as usize * h as usize * 3 {
                bail!(
                    "a {w}x{h} picture has {} bytes of pixels, {} were given",
                    w as usize * h as usize * 3,
                    p.len()
                );
            }
        }
        crate::client::check_size(w, h)?;
        self.slot.send(frame);
        Ok(())
    }

    /// Frames replaced before the client took them.
    pub fn superseded(&self) -> u64 {
        self.slot.superseded()
    }
}

/// The client's end: a [`Source`] whose frames are the pushed ones.
pub struct PushSource {
    frames: LatestReceiver<Pushed>,
    current: Option<Pushed>,
}

/// A push source and its pusher.
pub fn channel() -> (Pusher, PushSource) {
    let (slot, frames) = latest::channel();
    (
        Pusher { slot },
        PushSource {
            frames,
            current: None,
        },
    )
}

impl Source for PushSource {
    fn describe(&self) -> String {
        "frames pushed by the program".into()
    }

    /// Blocks until a frame is pushed; the pusher dropped ends the source
    /// ([`Ended`](super::mjpeg::Ended)).
    fn next_frame(&mut self) -> Result<Captured<'_>> {
        let mut frame = loop {
            match self.frames.recv_timeout(Duration::from_secs(3600)) {
                Ok(f) => break f,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(
                        super::mjpeg::Ended("the program stopped pushing frames".into()).into(),
                    )
                }
            }
        };
        if let Picture::Bgr(p) = &mut frame.picture {
            for px in p.chunks_exact_mut(3) {
                px.swap(0, 2);
            }
        }
        let f = self.current.insert(frame);
        let (width, height) = (f.width, f.height);
        let image = match &f.picture {
            Picture::Rgb(data) | Picture::Bgr(data) => Image::Rgb {
                data,
                width,
                height,
            },
            Picture::Jpeg(data) => Image::Jpeg {
                data,
                width,
                height,
            },
        };
        Ok(Captured { image, at: f.at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_push_is_taken_bgr_comes_out_rgb_and_a_wrong_size_is_refused() {
        let (pusher, mut source) = channel();
        let px = |b: u8| Pushed {
            picture: Picture::Bgr(vec![b, 20, 30, b, 20, 30]),
            width: 2,
            height: 1,
            at: Instant::now(),
        };
        pusher.push(px(1)).unwrap();
        pusher.push(px(2)).unwrap();
        assert_eq!(pusher.superseded(), 1);
        match source.next_frame().unwrap().image {
            Image::Rgb { data, width, .. } => {
                assert_eq!((data, width), (&[30, 20, 2, 30, 20, 2][..], 2))
            }
            _ => panic!("RGB expected"),
        }
        let bad = Pushed {
            picture: Picture::Rgb(vec![0; 5]),
            width: 2,
            height: 1,
            at: Instant::now(),
        };
        assert!(pusher
            .push(bad)
            .unwrap_err()
            .to_string()
            .contains("6 bytes"));
        drop(pusher);
        let end = source.next_frame().err().unwrap();
        assert!(end.downcast_ref::<super::super::mjpeg::Ended>().is_some());
    }
}

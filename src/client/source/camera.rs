//! A real camera through nokhwa (V4L2 on Linux, AVFoundation on macOS, Media
//! Foundation on Windows), behind the `camera` cargo feature.
//!
//! The device is read on a thread of its own: nokhwa sets no read timeout, so
//! a stalled camera blocks its `frame()` forever. That thread hands the newest
//! buffer over a latest-only channel; [`next_frame`](crate::client::source::Source::next_frame) waits on it with
//! a watchdog that warns when the camera goes quiet and fails after a long
//! stall, instead of hanging the client.
//!
//! MJPEG frames are cut at their end-of-image marker (nokhwa hands back the
//! whole driver buffer, padding and all), given the standard Huffman tables
//! when the camera left them out, and sent without re-encoding; YUYV, NV12,
//! grey and raw RGB/BGR frames are converted to RGB for the encoder.

#[cfg(feature = "camera")]
pub use device::{list, open, CameraSource, Device, Raw};

#[cfg(not(feature = "camera"))]
pub use disabled::{list, open};

/// A camera as the system lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraEntry {
    pub index: u32,
    pub name: String,
    /// The device node (`/dev/videoN` on Linux).
    pub path: String,
}

/// Picks the camera `spec` names among `cameras`: an index (`2`), a device
/// path (`/dev/video2`), or a case-insensitive part of the name (`c920`).
/// An index or a path is taken as it is even when the list is empty (the
/// open then says what is wrong); a name must match exactly one camera.
pub fn select(spec: &str, cameras: &[CameraEntry]) -> Result<u32, String> {
    let spec = spec.trim();
    if let Ok(i) = spec.parse::<u32>() {
        return Ok(i);
    }
    if let Some(n) = spec
        .strip_prefix("/dev/video")
        .and_then(|n| n.parse::<u32>().ok())
    {
        return Ok(n);
    }
    if let Some(c) = cameras.iter().find(|c| c.path == spec) {
        return Ok(c.index);
    }
    let want = spec.to_lowercase();
    let hits: Vec<&CameraEntry> = cameras
        .iter()
        .filter(|c| c.name.to_lowercase().contains(&want))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one.index),
        [] if cameras.is_empty() => Err(format!(
            "no camera is named like {spec:?}: no cameras were found on this machine"
        )),
        [] => Err(format!(
            "no camera is named like {spec:?}; cameras: {}",
            describe_all(cameras)
        )),
        many => Err(format!(
            "{spec:?} names {} cameras ({}): give more of the name, or an index",
            many.len(),
            many.iter()
                .map(|c| format!("{} = {}", c.index, c.name))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

fn describe_all(cameras: &[CameraEntry]) -> String {
    cameras
        .iter()
        .map(|c| format!("{} = {} ({})", c.index, c.name, c.path))
        .collect::<Vec<_>>()
        .join("; ")
}

/// How long the camera may stay quiet before a warning, and before failing.
pub const STALL_WARN: std::time::Duration = std::time::Duration::from_secs(2);
pub const STALL_FAIL: std::time::Duration = std::time::Duration::from_secs(10);

/// The error for a camera that cannot be opened: what was found, and the way out.
pub fn no_camera_message(index: u32, found: &[String], cause: &str) -> String {
    let listing = if found.is_empty() {
        "no cameras were found on this machine".to_string()
    } else {
        format!("cameras found: {}", found.join("; "))
    };
    format!(
        "cannot open camera {index}: {cause}\n  {listing}\n  \
         to stream without a camera use --source test-pattern (or a file, a folder, `-` for MJPEG on standard input, or an http:// MJPEG stream); \
         to pick another camera use --camera INDEX|PATH|NAME (--list-cameras lists them); on Linux check that /dev/video{index} exists and that you are in the `video` group"
    )
}

#[cfg(not(feature = "camera"))]
mod disabled {
    use anyhow::{bail, Result};

    const NOT_BUILT: &str =
        "this framelink was built without the `camera` feature (rebuild with default features)";

    pub fn open(
        spec: &str,
        _format: super::super::CameraFormat,
        _w: u32,
        _h: u32,
        _fps: f64,
    ) -> Result<Box<dyn super::super::Source>> {
        let index = super::select(spec, &[]).unwrap_or(0);
        bail!(super::no_camera_message(index, &[], NOT_BUILT))
    }

    pub fn list() -> Result<String> {
        bail!("cannot list cameras: {NOT_BUILT}")
    }
}

#[cfg(feature = "camera")]
mod device;

#[cfg(test)]
mod tests {
    use super::{select, CameraEntry};

    fn cams() -> Vec<CameraEntry> {
        [
            (0, "Integrated Webcam"),
            (2, "HD Pro Webcam C920"),
            (4, "C920 second"),
        ]
        .into_iter()
        .map(|(index, name)| CameraEntry {
            index,
            name: name.into(),
            path: format!("/dev/video{index}"),
        })
        .collect()
    }

    #[test]
    fn a_camera_is_picked_by_index_path_or_name() {
        assert_eq!(select("2", &cams()), Ok(2));
        assert_eq!(select("/dev/video4", &cams()), Ok(4));
        assert_eq!(
            select("/dev/video9", &[]),
            Ok(9),
            "a path is tried as given"
        );
        assert_eq!(select("integrated", &cams()), Ok(0));
        assert_eq!(select("HD Pro", &cams()), Ok(2));
        let e = select("c920", &cams()).unwrap_err();
        assert!(e.contains("names 2 cameras"), "{e}");
        let e = select("logitech", &cams()).unwrap_err();
        assert!(e.contains("2 = HD Pro Webcam C920 (/dev/video2)"), "{e}");
        let e = select("logitech", &[]).unwrap_err();
        assert!(e.contains("no cameras were found"), "{e}");
    }

    use super::*;

    #[test]
    fn no_camera_message_names_the_fix() {
        let m = no_camera_message(
            0,
            &[],
            "Could not open device 0: V4L2 Error: No such file or directory",
        );
        assert!(m.contains("--source test-pattern"));
        assert!(m.contains("no cameras were found"));
    }
}

#[cfg(all(test, feature = "camera"))]
mod device_tests {
    use super::{CameraSource, Device, Raw};
    use crate::client::source::{Image, Source};
    use crate::media::jpeg::tests::sample_jpeg;

    /// A camera that gives `frames` MJPEG frames, then is unplugged.
    struct Unplugged {
        frames: usize,
    }

    impl Device for Unplugged {
        fn frame(&mut self) -> Result<Raw, String> {
            if self.frames == 0 {
                return Err("Could not capture frame: No such device (os error 19)".into());
            }
            self.frames -= 1;
            Ok(Raw::mjpeg(sample_jpeg(32, 16), 32, 16))
        }
    }

    #[test]
    fn an_unplugged_camera_gives_its_frames_then_an_error_that_says_so() {
        let mut cam = CameraSource::start(0, || {
            Ok((
                Box::new(Unplugged { frames: 2 }) as Box<dyn Device>,
                "double".into(),
            ))
        })
        .unwrap();
        assert_eq!(cam.describe(), "double");
        for _ in 0..2 {
            // The thread may be a frame ahead: the latest-only channel keeps the
            // newest, so the error can replace a frame not yet taken.
            match cam.next_frame() {
                Ok(f) => assert!(matches!(
                    f.image,
                    Image::Jpeg {
                        width: 32,
                        height: 16,
                        ..
                    }
                )),
                Err(e) => {
                    assert!(format!("{e:#}").contains("unplugged?"), "{e:#}");
                    return;
                }
            }
        }
        let e = cam.next_frame().err().expect("the device is gone");
        assert!(
            format!("{e:#}").contains("No such device (os error 19) (unplugged?)"),
            "{e:#}"
        );
    }

    #[test]
    fn a_camera_that_cannot_be_opened_names_the_fix() {
        let e = CameraSource::start(3, || Err("No such file or directory".into()))
            .err()
            .unwrap();
        let text = format!("{e:#}");
        assert!(text.contains("cannot open camera 3"), "{text}");
        assert!(text.contains("--source test-pattern"), "{text}");
    }
}

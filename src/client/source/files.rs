//! A folder of JPEG (and PNG) files, sent in name order and looped, or one
//! file sent again and again (read and decoded once, again only when it
//! changes), at `--fps`. JPEG files go as they are (no
//! re-encode); PNG files are decoded and encoded like camera frames. For
//! replaying recorded footage through the pipeline.

use super::{Captured, Image, Pacer, Source};
use crate::media::jpeg;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Files larger than this are skipped: no camera frame is that big.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The folder source.
pub struct Folder {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    data: Vec<u8>,
    fps: f64,
    pacer: Pacer,
    /// Files found unusable, so each is reported once.
    bad: std::collections::HashSet<usize>,
    /// What `data` holds. A file sent again unchanged (one file, or a
    /// folder of one) is not read and decoded again.
    loaded: Option<Loaded>,
}

/// A file in `Folder::data`: which, as it was on disk, and what it gave.
#[derive(Clone, Copy, PartialEq)]
struct Loaded {
    file: usize,
    modified: std::time::SystemTime,
    len: u64,
    /// Width, height, and whether it is a JPEG.
    got: (u32, u32, bool),
}

impl Folder {
    /// Lists the `.jpg`/`.jpeg`/`.png` files in `dir` (or takes `dir` itself
    /// when it is such a file); fails if there are none.
    pub fn open(dir: &Path, fps: f64) -> Result<Self> {
        let usable = |p: &Path| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["jpg", "jpeg", "png"]
                        .iter()
                        .any(|x| e.eq_ignore_ascii_case(x))
                })
        };
        if dir.is_file() && !usable(dir) {
            bail!(
                "--source {}: a file source must be a .jpg, .jpeg or .png file",
                dir.display()
            );
        }
        let mut files: Vec<PathBuf> = if dir.is_file() {
            vec![dir.to_path_buf()]
        } else {
            let entries = std::fs::read_dir(dir).with_context(|| {
                format!(
                    "cannot read --source {}: give `camera`, `test-pattern`, `-` (MJPEG on standard input), an http:// MJPEG stream, a JPEG or PNG file, or a folder of them",
                    dir.display()
                )
            })?;
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| usable(p))
                .collect()
        };
        if files.is_empty() {
            bail!(
                "no .jpg, .jpeg or .png files in {}: put frames there, or use --source test-pattern",
                dir.display()
            );
        }
        files.sort();
        Ok(Folder {
            dir: dir.to_path_buf(),
            files,
            next: 0,
            data: Vec::new(),
            fps,
            pacer: Pacer::new(fps),
            bad: Default::default(),
            loaded: None,
        })
    }

    /// Loads file `i` into `self.data`: a JPEG cut at its end-of-image
    /// marker, or a PNG's RGB pixels; returns its dimensions and whether it
    /// is a JPEG, or why it cannot be sent.
    fn load(&mut self, i: usize) -> Result<(u32, u32, bool)> {
        let path = &self.files[i];
        let meta = std::fs::metadata(path)?;
        let (len, modified) = (meta.len(), meta.modified()?);
        if let Some(l) = self.loaded {
            if (l.file, l.modified, l.len) == (i, modified, len) {
                return Ok(l.got);
            }
        }
        self.loaded = None;
        let got = self.read(i, len)?;
        self.loaded = Some(Loaded {
            file: i,
            modified,
            len,
            got,
        });
        Ok(got)
    }

    fn read(&mut self, i: usize, len: u64) -> Result<(u32, u32, bool)> {
        let path = &self.files[i];
        if len > MAX_FILE_BYTES {
            bail!("{len} bytes is over the {MAX_FILE_BYTES}-byte limit");
        }
        self.data = std::fs::read(path)?;
        if self.data.starts_with(b"\x89PNG") {
            let img = image::load_from_memory_with_format(&self.data, image::ImageFormat::Png)
                .context("not a readable PNG")?;
            crate::client::check_size(img.width(), img.height())?;
            let rgb = img.into_rgb8();
            let (w, h) = rgb.dimensions();
            self.data = rgb.into_raw();
            return Ok((w, h, false));
        }
        let end = jpeg::whole_len(&self.data).context("not a whole JPEG (no SOI..EOI)")?;
        self.data.truncate(end);
        let (w, h) = jpeg::dimensions(&self.data).context("no frame header (SOF) with a size")?;
        Ok((w as u32, h as u32, true))
    }
}

impl Source for Folder {
    fn on_demand(&self) -> bool {
        self.fps <= 0.0
    }

    fn describe(&self) -> String {
        format!(
            "{} image files in {} @ {} fps",
            self.files.len(),
            self.dir.display(),
            self.fps
        )
    }

    /// Blocks until the next frame time at the configured rate, then reads
    /// the next usable file.
    fn next_frame(&mut self) -> Result<Captured<'_>> {
        self.pacer.wait();
        for _ in 0..self.files.len() {
            let i = self.next;
            self.next = (self.next + 1) % self.files.len();
            match self.load(i) {
                Ok((width, height, is_jpeg)) => {
                    let data = &self.data;
                    let image = if is_jpeg {
                        Image::Jpeg {
                            data,
                            width,
                            height,
                        }
                    } else {
                        Image::Rgb {
                            data,
                            width,
                            height,
                        }
                    };
                    return Ok(Captured {
                        image,
                        at: Instant::now(),
                    });
                }
                Err(e) => {
                    if self.bad.insert(i) {
                        tracing::warn!(file = %self.files[i].display(), "skipping: {e:#}");
                    }
                }
            }
        }
        bail!(
            "none of the {} files in {} is a usable JPEG",
            self.files.len(),
            self.dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::jpeg::tests::sample_jpeg;

    #[test]
    fn loops_over_jpegs_in_name_order_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jpg"), sample_jpeg(16, 8)).unwrap();
        std::fs::write(dir.path().join("b.JPEG"), b"broken").unwrap();
        let mut padded = sample_jpeg(32, 16);
        padded.extend_from_slice(&[0; 64]);
        std::fs::write(dir.path().join("c.jpeg"), padded).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let mut f = Folder::open(dir.path(), 0.0).unwrap();
        let mut sizes = Vec::new();
        for _ in 0..4 {
            match f.next_frame().unwrap().image {
                Image::Jpeg {
                    data,
                    width,
                    height,
                } => {
                    assert!(jpeg::is_whole(data));
                    sizes.push((width, height));
                }
                _ => panic!("folder gives JPEG"),
            }
        }
        assert_eq!(sizes, vec![(16, 8), (32, 16), (16, 8), (32, 16)]);
    }

    #[test]
    fn one_file_is_read_once_until_it_changes_or_goes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("still.jpg");
        std::fs::write(&file, sample_jpeg(16, 8)).unwrap();
        let mut f = Folder::open(&file, 0.0).unwrap();
        let size = |f: &mut Folder| f.next_frame().map(|c| c.image.dimensions());
        assert_eq!(size(&mut f).unwrap(), (16, 8));
        assert!(f.loaded.is_some());
        assert_eq!(size(&mut f).unwrap(), (16, 8));
        std::fs::write(&file, sample_jpeg(32, 16)).unwrap();
        assert_eq!(
            size(&mut f).unwrap(),
            (32, 16),
            "a changed file is read again"
        );
        std::fs::remove_file(&file).unwrap();
        assert!(
            size(&mut f).is_err(),
            "a file gone is an error, not the copy kept"
        );
    }

    #[test]
    fn empty_folder_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = Folder::open(dir.path(), 0.0).err().unwrap().to_string();
        assert!(err.contains("--source test-pattern"), "{err}");
    }
}

//! A folder of JPEG files, sent in name order and looped, as they are (no
//! re-encode). For replaying recorded footage through the pipeline.

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
}

impl Folder {
    /// Lists the `.jpg`/`.jpeg` files in `dir`; fails if there are none.
    pub fn open(dir: &Path, fps: f64) -> Result<Self> {
        let entries = std::fs::read_dir(dir).with_context(|| {
            format!(
                "cannot read --source {}: give `camera`, `test-pattern`, or a folder of JPEG files",
                dir.display()
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg")
                    })
            })
            .collect();
        if files.is_empty() {
            bail!(
                "no .jpg or .jpeg files in {}: put JPEG frames there, or use --source test-pattern",
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
        })
    }

    /// Loads file `i` into `self.data`, cut at its end-of-image marker;
    /// returns its dimensions, or why it cannot be sent.
    fn load(&mut self, i: usize) -> Result<(u32, u32)> {
        let path = &self.files[i];
        let len = std::fs::metadata(path)?.len();
        if len > MAX_FILE_BYTES {
            bail!("{len} bytes is over the {MAX_FILE_BYTES}-byte limit");
        }
        self.data = std::fs::read(path)?;
        let end = jpeg::whole_len(&self.data).context("not a whole JPEG (no SOI..EOI)")?;
        self.data.truncate(end);
        let (w, h) = jpeg::dimensions(&self.data).context("no frame header (SOF) with a size")?;
        Ok((w as u32, h as u32))
    }
}

impl Source for Folder {
    fn describe(&self) -> String {
        format!(
            "{} JPEG files in {} @ {} fps",
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
                Ok((width, height)) => {
                    return Ok(Captured {
                        image: Image::Jpeg {
                            data: &self.data,
                            width,
                            height,
                        },
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
    fn empty_folder_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = Folder::open(dir.path(), 0.0).err().unwrap().to_string();
        assert!(err.contains("--source test-pattern"), "{err}");
    }
}

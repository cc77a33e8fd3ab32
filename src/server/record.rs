//! Recording (`--record DIR`): every accepted frame is written as the JPEG
//! bytes that arrived (no re-encode) to `DIR/<client>/<arrival µs>-<frame id>.jpg`,
//! with one JSON line per frame in `DIR/<client>/index.jsonl`:
//!
//! ```text
//! {"file":"1764000000123456-000042.jpg","frame_id":42,"connection":3,"arrived_unix_ms":1764000000123.456,"age_ms":1.42,"bytes":34567,"width":640,"height":480}
//! ```
//!
//! `--record-max-mb` bounds the JPEG bytes under DIR, counting what was
//! there at start: the oldest files go first (their index lines stay; the
//! index adds about 150 bytes per frame). Writing runs on its own thread
//! behind a bounded queue (64 frames, 64 MiB): when the disk cannot keep up, frames are left out
//! of the recording (counted), never queued without bound. A write error (a
//! full disk) stops recording with one warning; streaming goes on.

use crate::process::ArrivedFrame;
use crate::shutdown::Shutdown;
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// Frames waiting to be written, at most.
const QUEUE: usize = 64;
/// Bytes of frames waiting to be written, at most.
const QUEUE_BYTES: u64 = 64 << 20;
/// Index files kept open at once.
const MAX_OPEN_INDEXES: usize = 256;

/// What to record, validated.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub dir: PathBuf,
    /// Most JPEG bytes kept under `dir` (None: no bound).
    pub max_bytes: Option<u64>,
}

/// Recording figures, for the summary, `/stats.json` and `/metrics`.
#[derive(Debug, Default)]
pub struct RecordStats {
    pub frames: AtomicU64,
    pub bytes_on_disk: AtomicU64,
    pub files_deleted: AtomicU64,
    /// Frames left out because the disk fell behind, or after recording stopped.
    pub frames_left_out: AtomicU64,
    /// Bytes of the frames in the queue.
    queued_bytes: AtomicU64,
    stopped: AtomicBool,
    stop_reason: Mutex<Option<String>>,
}

/// The recording figures at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSummary {
    pub dir: PathBuf,
    pub frames_recorded: u64,
    pub bytes_on_disk: u64,
    pub files_deleted: u64,
    pub frames_left_out: u64,
    /// Why recording stopped early (null if it did not).
    pub stopped: Option<String>,
}

/// The connections' side: offers frames to the writer thread. Never blocks.
pub struct Recorder {
    tx: Sender<ArrivedFrame>,
    pub stats: Arc<RecordStats>,
    dir: PathBuf,
    warned_behind: AtomicBool,
}

/// The writer thread's side: call [`run`](RecordWriter::run) on a thread.
pub struct RecordWriter {
    rx: Receiver<ArrivedFrame>,
    stats: Arc<RecordStats>,
    config: RecordConfig,
    /// Every recorded file under the directory, oldest first, with its size.
    files: VecDeque<(PathBuf, u64)>,
    on_disk: u64,
    indexes: HashMap<String, File>,
}

/// Creates the directory and takes stock of the JPEGs already in it.
pub fn open(config: RecordConfig) -> Result<(Recorder, RecordWriter)> {
    fs::create_dir_all(&config.dir).with_context(|| {
        format!(
            "cannot create the recording directory {} (--record)",
            config.dir.display()
        )
    })?;
    let mut files = Vec::new();
    for client in fs::read_dir(&config.dir)?.flatten() {
        if !client.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for f in fs::read_dir(client.path())?.flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "jpg") {
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                files.push((f.file_name(), p, size));
            }
        }
    }
    // Names start with the arrival time in microseconds: name order is age order.
    files.sort();
    let on_disk = files.iter().map(|f| f.2).sum();
    let stats = Arc::new(RecordStats::default());
    stats.bytes_on_disk.store(on_disk, Ordering::Relaxed);
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    info!(
        "recording accepted frames to {}{}",
        config.dir.display(),
        match config.max_bytes {
            Some(b) => format!(" (at most {} MB)", b / 1_000_000),
            None => String::new(),
        }
    );
    Ok((
        Recorder {
            tx,
            stats: stats.clone(),
            dir: config.dir.clone(),
            warned_behind: AtomicBool::new(false),
        },
        RecordWriter {
            rx,
            stats,
            files: match config.max_bytes {
                Some(_) => files.into_iter().map(|(_, p, s)| (p, s)).collect(),
                None => VecDeque::new(),
            },
            on_disk,
            config,
            indexes: HashMap::new(),
        },
    ))
}

impl Recorder {
    /// Queues an accepted frame for writing; leaves it out if the queue is full.
    pub fn offer(&self, frame: &ArrivedFrame) {
        if self.stats.stopped.load(Ordering::Relaxed) {
            self.stats.frames_left_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let size = frame.jpeg.len() as u64;
        let queued = self.stats.queued_bytes.fetch_add(size, Ordering::Relaxed);
        let sent = if queued + size > QUEUE_BYTES {
            Err(())
        } else {
            self.tx.try_send(frame.clone()).map_err(|_| ())
        };
        if sent.is_err() {
            self.stats.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.stats.frames_left_out.fetch_add(1, Ordering::Relaxed);
            if !self.warned_behind.swap(true, Ordering::Relaxed) {
                warn!("recording falls behind: frames are being left out of the recording (disk too slow?)");
            }
        }
    }

    pub fn summary(&self) -> RecordSummary {
        let s = &self.stats;
        RecordSummary {
            dir: self.dir.clone(),
            frames_recorded: s.frames.load(Ordering::Relaxed),
            bytes_on_disk: s.bytes_on_disk.load(Ordering::Relaxed),
            files_deleted: s.files_deleted.load(Ordering::Relaxed),
            frames_left_out: s.frames_left_out.load(Ordering::Relaxed),
            stopped: s.stop_reason.lock().clone(),
        }
    }
}

/// A client name made safe as one directory name.
pub fn dir_name(client: &str) -> String {
    let s: String = client
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "client".into()
    } else {
        s
    }
}

#[derive(Serialize)]
struct IndexLine<'a> {
    file: &'a str,
    frame_id: u64,
    connection: u64,
    arrived_unix_ms: f64,
    age_ms: f64,
    bytes: usize,
    width: u16,
    height: u16,
}

impl RecordWriter {
    /// Writes queued frames until `shutdown`, then what is still queued.
    /// Unblocked by a frame or the 100 ms tick.
    pub fn run(mut self, shutdown: &Shutdown) {
        loop {
            match self.rx.recv_timeout(crate::shutdown::TICK) {
                Ok(frame) => self.write_or_stop(&frame),
                Err(RecvTimeoutError::Timeout) if shutdown.is_triggered() => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        while let Ok(frame) = self.rx.try_recv() {
            self.write_or_stop(&frame);
        }
    }

    fn write_or_stop(&mut self, frame: &ArrivedFrame) {
        self.stats
            .queued_bytes
            .fetch_sub(frame.jpeg.len() as u64, Ordering::Relaxed);
        if self.stats.stopped.load(Ordering::Relaxed) {
            self.stats.frames_left_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(e) = self.write(frame) {
            let why = format!("{e:#}");
            warn!("recording stopped: {why}; streaming goes on");
            *self.stats.stop_reason.lock() = Some(why);
            self.stats.stopped.store(true, Ordering::Relaxed);
            self.stats.frames_left_out.fetch_add(1, Ordering::Relaxed);
            self.indexes.clear();
        }
    }

    fn write(&mut self, frame: &ArrivedFrame) -> Result<()> {
        let size = frame.jpeg.len() as u64;
        if let Some(max) = self.config.max_bytes {
            if size > max {
                self.stats.frames_left_out.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            while self.on_disk + size > max {
                let Some((old, old_size)) = self.files.pop_front() else {
                    break;
                };
                match fs::remove_file(&old) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot delete {} to stay in --record-max-mb", old.display())
                        })
                    }
                }
                self.on_disk -= old_size;
                self.stats.files_deleted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let client = dir_name(&frame.client_name);
        let dir = self.config.dir.join(&client);
        let arrived = SystemTime::now() - Instant::now().saturating_duration_since(frame.arrived);
        let since_epoch = arrived.duration_since(UNIX_EPOCH).unwrap_or_default();
        let file = format!("{}-{:06}.jpg", since_epoch.as_micros(), frame.frame_id);
        let path = dir.join(&file);
        if !self.indexes.contains_key(&client) {
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            if self.indexes.len() >= MAX_OPEN_INDEXES {
                self.indexes.clear();
            }
            let index = open_append(&dir.join("index.jsonl"))?;
            self.indexes.insert(client.clone(), index);
        }
        write_whole(&path, &frame.jpeg)?;
        // The files are listed only for the budget to delete the oldest: with
        // no budget, nothing is kept per file (memory stays flat however
        // long the recording runs).
        let listed = self.config.max_bytes.is_some();
        let mut line = serde_json::to_vec(&IndexLine {
            file: &file,
            frame_id: frame.frame_id,
            connection: frame.client,
            arrived_unix_ms: (since_epoch.as_secs_f64() * 1e6).round() / 1e3,
            age_ms: (frame.age.as_secs_f64() * 1e5).round() / 1e2,
            bytes: frame.jpeg.len(),
            width: frame.width,
            height: frame.height,
        })?;
        line.push(b'\n');
        let index = self.indexes.get_mut(&client).expect("opened above");
        if let Err(e) = append_whole(index, &line) {
            // No picture without its index line.
            let _ = fs::remove_file(&path);
            return Err(e)
                .with_context(|| format!("cannot write {}", dir.join("index.jsonl").display()));
        }
        if listed {
            self.files.push_back((path, size));
        }
        self.on_disk += size;
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_on_disk
            .store(self.on_disk, Ordering::Relaxed);
        Ok(())
    }
}

/// Writes a whole file, or none: a failed write (a full disk) removes what
/// it left, so the recording never holds a cut JPEG.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Err(e) = fs::write(path, bytes) {
        let _ = fs::remove_file(path);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Appends a whole line, or none: a failed append is cut back off.
fn append_whole(file: &mut File, line: &[u8]) -> std::io::Result<()> {
    let before = file.metadata()?.len();
    file.write_all(line).inspect_err(|_| {
        let _ = file.set_len(before);
    })
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::frame::tests::arrived;

    #[test]
    fn client_names_become_safe_directory_names() {
        assert_eq!(dir_name("cam-01"), "cam-01");
        assert_eq!(dir_name("../etc/passwd"), ".._etc_passwd");
        assert_eq!(dir_name(".."), "client");
        assert_eq!(dir_name("a b/c"), "a_b_c");
    }

    #[test]
    fn a_failed_write_leaves_no_cut_file() {
        let tmp = tempfile::tempdir().unwrap();
        // A file that takes no bytes, as on a full disk.
        let path = tmp.path().join("1-000001.jpg");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let e = write_whole(&path, b"\xFF\xD8 a JPEG").unwrap_err();
        assert!(format!("{e:#}").contains("1-000001.jpg"), "{e:#}");
        assert!(fs::symlink_metadata(&path).is_err(), "the cut file is gone");
        // A whole write goes through.
        write_whole(&path, b"whole").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
    }

    #[test]
    fn the_budget_deletes_the_oldest_files_first() {
        let tmp = tempfile::tempdir().unwrap();
        let jpeg = crate::media::jpeg::tests::sample_jpeg(16, 8);
        let budget = jpeg.len() as u64 * 3;
        let (rec, mut w) = open(RecordConfig {
            dir: tmp.path().into(),
            max_bytes: Some(budget),
        })
        .unwrap();
        let mut first_file = None;
        for id in 1..=5 {
            let mut f = arrived(jpeg.clone());
            f.frame_id = id;
            rec.offer(&f);
            let queued = w.rx.try_recv().unwrap();
            w.write_or_stop(&queued);
            first_file.get_or_insert_with(|| w.files[0].0.clone());
        }
        let s = rec.summary();
        assert_eq!((s.frames_recorded, s.files_deleted), (5, 2));
        assert!(s.bytes_on_disk <= budget);
        assert_eq!(rec.stats.queued_bytes.load(Ordering::Relaxed), 0);
        assert!(!first_file.unwrap().exists(), "the oldest went first");
        let kept: Vec<_> = fs::read_dir(tmp.path().join("cam"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(kept.len(), 3 + 1, "three frames and the index");
        let index = fs::read_to_string(tmp.path().join("cam/index.jsonl")).unwrap();
        assert_eq!(index.lines().count(), 5);
    }

    #[test]
    fn without_a_budget_nothing_is_kept_per_file() {
        let tmp = tempfile::tempdir().unwrap();
        let jpeg = crate::media::jpeg::tests::sample_jpeg(16, 8);
        // A file from an earlier run is counted, not listed.
        fs::create_dir_all(tmp.path().join("old")).unwrap();
        fs::write(tmp.path().join("old/1-000001.jpg"), &jpeg).unwrap();
        let (rec, mut w) = open(RecordConfig {
            dir: tmp.path().into(),
            max_bytes: None,
        })
        .unwrap();
        for id in 1..=50 {
            let mut f = arrived(jpeg.clone());
            f.frame_id = id;
            rec.offer(&f);
            let queued = w.rx.try_recv().unwrap();
            w.write_or_stop(&queued);
        }
        assert_eq!(rec.summary().frames_recorded, 50);
        assert_eq!(rec.summary().bytes_on_disk, 51 * jpeg.len() as u64);
        assert!(w.files.is_empty(), "{} paths kept", w.files.len());
    }
}

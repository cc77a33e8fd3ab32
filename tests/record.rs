//! `--record`: accepted frames are written as they arrived, within the budget,
//! and a recording that cannot be written never stops the stream.

mod support;

use framelink::client::source::SourceKind;
use framelink::client::ClientConfig;
use framelink::server::record::RecordConfig;
use framelink::server::ServerConfig;
use std::collections::HashSet;
use std::path::Path;
use support::{json_lines, server_config, TestClient, TestServer};

fn recording(dir: &Path, max_bytes: Option<u64>) -> ServerConfig {
    ServerConfig {
        record: Some(RecordConfig {
            dir: dir.into(),
            max_bytes,
        }),
        ..server_config()
    }
}

fn jpegs_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    v
}

#[test]
fn recorded_files_are_the_bytes_that_arrived() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("in");
    std::fs::create_dir(&folder).unwrap();
    let mut originals = HashSet::new();
    for i in 0..4u8 {
        let img = image::RgbImage::from_fn(96, 64, |x, y| image::Rgb([i * 60, x as u8, y as u8]));
        let path = folder.join(format!("{i}.jpg"));
        img.save(&path).unwrap();
        originals.insert(std::fs::read(&path).unwrap());
    }
    let rec = tmp.path().join("rec");
    let server = TestServer::start(recording(&rec, None));
    let mut c = ClientConfig::test_pattern(server.addr.to_string(), 96, 64, 30.0);
    c.name = "files".into();
    c.source.kind = SourceKind::Folder(folder);
    let client = TestClient::start(c);
    server.wait_frames(Some("files"), 12);
    client.stop().unwrap();
    let s = server.stop();
    let r = s.recording.expect("recording figures");
    let files = jpegs_in(&rec.join("files"));
    assert!(files.len() >= 12);
    assert_eq!(files.len() as u64, r.frames_recorded);
    for f in &files {
        assert!(
            originals.contains(&std::fs::read(f).unwrap()),
            "{f:?} was re-encoded"
        );
    }
    let index = json_lines(&rec.join("files/index.jsonl"));
    assert_eq!(index.len(), files.len());
    for (line, file) in index.iter().zip(&files) {
        assert_eq!(line["file"], file.file_name().unwrap().to_str().unwrap());
        assert_eq!(
            line["bytes"].as_u64().unwrap(),
            std::fs::metadata(file).unwrap().len()
        );
        assert!(line["age_ms"].as_f64().unwrap() > 0.0, "{line}");
    }
    // In arrival order: the index is a timeline.
    assert!(
        index
            .windows(2)
            .all(|w| w[0]["arrived_unix_ms"].as_f64() <= w[1]["arrived_unix_ms"].as_f64()),
        "{index:?}"
    );
}

#[test]
fn the_budget_keeps_the_newest_files() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let budget = 150_000;
    let server = TestServer::start(recording(&rec, Some(budget)));
    let client = TestClient::pattern(server.addr, "cam", 320, 240, 30.0);
    server.wait_frames(Some("cam"), 40);
    client.stop().unwrap();
    let s = server.stop();
    let r = s.recording.unwrap();
    let files = jpegs_in(&rec.join("cam"));
    let on_disk: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(on_disk <= budget, "{on_disk} bytes on disk");
    assert_eq!(on_disk, r.bytes_on_disk);
    assert!(r.files_deleted > 0);
    assert_eq!(r.frames_recorded, files.len() as u64 + r.files_deleted);
    // What is left is the end of the run: the index's last lines.
    let index = json_lines(&rec.join("cam/index.jsonl"));
    let last: Vec<_> = index[index.len() - files.len()..]
        .iter()
        .map(|l| l["file"].as_str().unwrap().to_string())
        .collect();
    let kept: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(last, kept);
}

#[test]
fn a_recording_that_cannot_be_written_stops_and_streaming_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    std::fs::create_dir(&rec).unwrap();
    // A file where the client's directory would go: every write fails.
    std::fs::write(rec.join("cam"), b"in the way").unwrap();
    let server = TestServer::start(recording(&rec, None));
    let client = TestClient::pattern(server.addr, "cam", 160, 120, 30.0);
    server.wait_frames(Some("cam"), 30);
    let c = client.stop().unwrap();
    let s = server.stop();
    assert!(c.figures.frames_accepted >= 30);
    let r = s.recording.unwrap();
    assert_eq!(r.frames_recorded, 0);
    assert!(r
        .stopped
        .expect("the reason recording stopped")
        .contains("cam"));
    assert!(r.frames_left_out >= 29);
}

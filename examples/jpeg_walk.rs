//! How long the server's frame check takes on a 1920x1080 test-pattern JPEG
//! (it walks every marker, and the entropy data, from SOI to EOI).
//! `cargo run --release --example jpeg_walk`

use framelink::media::encode::{encoder, EncoderKind, Subsampling};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let (w, h) = (1920u32, 1080u32);
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            [
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x ^ y) & 0xFF) as u8,
            ]
        })
        .collect();
    let mut jpeg = Vec::new();
    encoder(EncoderKind::Auto, 80, Subsampling::S420)?.encode(&rgb, w, h, &mut jpeg)?;
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        assert!(framelink::media::jpeg::dimensions(&jpeg).is_some());
    }
    let per = t.elapsed() / n;
    println!(
        "{} KB JPEG: dimensions() {per:?} per frame",
        jpeg.len() / 1024
    );
    Ok(())
}

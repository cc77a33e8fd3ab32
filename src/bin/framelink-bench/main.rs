//! `framelink-bench`: runs framelink-server and framelink-client (the ones
//! built beside this program) over loopback with the test pattern, and the
//! reference Python pair at the same frame sizes, and prints one Markdown
//! report: fps accepted, CPU per frame on each side, frame age, MB/s, codec
//! speed, and the same through a delaying link with different windows.
//!
//! `cargo build --release && target/release/framelink-bench` (or scripts/bench.sh,
//! which also installs the reference pair's Python packages).

#[cfg(feature = "nats")]
mod pool;

use anyhow::{bail, Context, Result};
use clap::Parser;
use framelink::client::source::{test_pattern::TestPattern, Image, Source};
use framelink::media::encode::{self, EncoderKind, Subsampling};
use framelink::testkit::delay_proxy::DelayProxy;
use serde_json::Value;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Benchmark framelink against the reference pair, over loopback and through delayed links.
#[derive(Debug, Parser)]
#[command(name = "framelink-bench")]
struct Opts {
    /// Seconds each streaming run lasts.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,

    /// The reference pair's folder (server.py, client.py).
    #[arg(long, default_value = "../shared/peers/seed-py")]
    reference: PathBuf,

    /// Skip the reference pair.
    #[arg(long)]
    no_reference: bool,

    /// Skip the delayed-link runs.
    #[arg(long)]
    no_links: bool,

    /// Skip the thin-link (adaptation) runs.
    #[arg(long)]
    no_thin_link: bool,

    /// Run only the thin-link (adaptation) runs.
    #[arg(long)]
    only_thin_link: bool,

    /// Run only the age-precision runs: the server's age estimate against the
    /// true age, with and without kernel receive stamps, idle and with every
    /// core busy.
    #[arg(long)]
    only_age_precision: bool,

    /// Run only the YUYV encode timing (1080p camera-layout frames).
    #[arg(long)]
    only_yuyv: bool,

    /// Run only the worker-pool runs (needs nats-server).
    #[arg(long)]
    only_pool: bool,

    /// Frames per age-precision run.
    #[arg(long, default_value_t = 3000)]
    age_frames: usize,

    /// Seconds each thin-link run lasts; the bandwidth limit is lifted 60% of the way in.
    #[arg(long, default_value_t = 20.0)]
    thin_link_seconds: f64,

    /// Windows to try on the delayed links.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    windows: Vec<u16>,

    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

const SIZES: [(u32, u32); 3] = [(640, 480), (1280, 720), (1920, 1080)];

fn main() -> Result<()> {
    framelink::logging::init();
    let opts = Opts::parse();
    let dir = std::env::current_exe()?
        .parent()
        .context("no folder for the programs")?
        .to_path_buf();
    let mut report = String::new();
    writeln!(
        report,
        "Machine: {}, {} cores. Each streaming run lasts {} s.\n",
        cpu_model(),
        nproc(),
        opts.seconds
    )?;
    if opts.only_pool {
        #[cfg(feature = "nats")]
        pool::pool(opts.seconds, &mut report)?;
        #[cfg(not(feature = "nats"))]
        bail!("this build has no NATS support: build with the `nats` feature");
        #[cfg(feature = "nats")]
        return publish(&report, opts.out.as_deref());
    }
    if opts.only_yuyv {
        yuyv_speed(&mut report)?;
        return publish(&report, opts.out.as_deref());
    }
    if opts.only_age_precision {
        age_precision(opts.age_frames, &mut report)?;
        return publish(&report, opts.out.as_deref());
    }
    if opts.only_thin_link {
        thin_link(&dir, opts.thin_link_seconds, &mut report)?;
        return publish(&report, opts.out.as_deref());
    }

    writeln!(
        report,
        "## Codec speed (one core, test pattern, quality 80), median ms per frame\n"
    )?;
    writeln!(report, "| size | encode image (4:4:4) | encode libjpeg-turbo from RGB (4:2:0) | from I420 (what the test pattern hands over) | decode libjpeg-turbo | JPEG KB (turbo 4:2:0) |")?;
    writeln!(report, "|---|---|---|---|---|---|")?;
    for (w, h) in SIZES {
        let c = codec_speed(w, h)?;
        writeln!(
            report,
            "| {w}x{h} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            c.0, c.1, c.2, c.3, c.4
        )?;
        eprintln!("codec {w}x{h} done");
    }

    writeln!(
        report,
        "\n## Loopback, both programs on this machine, as fast as the client can encode\n"
    )?;
    writeln!(report, "framelink: `--fps 0`, window {}. Reference pair: `--fps 0`; framelink's age is the frame's age on arrival (capture to fully received); the reference's delay is its own gate's figure (server clock now minus the echoed handshake time).\n", default_window())?;
    writeln!(report, "| size | pair | fps accepted | stale | client CPU ms/frame | server CPU ms/frame | age or delay p50 / p99 ms | MB/s |")?;
    writeln!(report, "|---|---|---|---|---|---|---|---|")?;
    for (w, h) in SIZES {
        let ours = run_framelink(&dir, w, h, 0.0, None, None, opts.seconds)?;
        writeln!(report, "{}", ours.row(w, h, "framelink"))?;
        eprintln!("framelink {w}x{h}: {:.1} fps", ours.fps);
        if !opts.no_reference {
            match run_reference(&opts.reference, w, h, true, opts.seconds) {
                Ok(r) => {
                    writeln!(report, "{}", r.row(w, h, "reference --nodelay"))?;
                    writeln!(report, "| {w}x{h} | **ratio** | **{:.2}x** fps | | **{:.2}x** less CPU | **{:.2}x** less CPU | | |", ours.fps / r.fps.max(1e-9), r.client_cpu_ms / ours.client_cpu_ms.max(1e-9), r.server_cpu_ms / ours.server_cpu_ms.max(1e-9))?;
                    if (w, h) == (640, 480) {
                        let r = run_reference(&opts.reference, w, h, false, opts.seconds)?;
                        writeln!(report, "{}", r.row(w, h, "reference as written"))?;
                    }
                }
                Err(e) => {
                    writeln!(report, "| {w}x{h} | reference | not run: {e:#} | | | | | |")?;
                }
            }
        }
    }

    if !opts.no_links {
        writeln!(
            report,
            "\n## 1280x720 at 30 fps through a delaying link (loopback proxy)\n"
        )?;
        writeln!(
            report,
            "| round trip | window | fps accepted | stale | age p50 / p99 ms | transit p50 ms |"
        )?;
        writeln!(report, "|---|---|---|---|---|---|")?;
        for rtt in [20u64, 50, 100] {
            for &window in &opts.windows {
                let r = run_framelink(
                    &dir,
                    1280,
                    720,
                    30.0,
                    Some(Duration::from_millis(rtt / 2)),
                    Some(window),
                    opts.seconds,
                )?;
                writeln!(
                    report,
                    "| {rtt} ms | {window} | {:.1} | {} | {:.1} / {:.1} | {:.1} |",
                    r.fps, r.stale, r.p50, r.p99, r.transit_p50
                )?;
                eprintln!("link {rtt} ms window {window}: {:.1} fps", r.fps);
            }
        }
    }

    if !opts.no_thin_link {
        thin_link(&dir, opts.thin_link_seconds, &mut report)?;
    }
    publish(&report, opts.out.as_deref())
}

/// Prints the report, and writes it to `--out` when given.
fn publish(report: &str, out: Option<&Path>) -> Result<()> {
    println!("{report}");
    if let Some(out) = out {
        std::fs::write(out, report).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

/// One second of a thin-link run, from the client's status line.
#[derive(Default, Clone)]
struct Second {
    accepted: f64,
    stale: u64,
    age_p99: Option<f64>,
    setting: String,
}

/// Parses a client status line (see `stats::Tally::status_line` and `adapt::Adapter::status`).
fn parse_status(line: &str) -> Option<Second> {
    let accepted = line
        .split(" fps accepted")
        .next()?
        .split(" fps sent")
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    let stale = line
        .split(" stale ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let age_p99 = line
        .split("| age p50 ")
        .nth(1)?
        .split(" p99 ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok();
    let setting = line.rsplit(" | ").next()?.split(" (").next()?.to_string();
    Some(Second {
        accepted,
        stale,
        age_p99,
        setting,
    })
}

/// 1920x1080 at 30 fps through a 10 Mbit/s link with a 20 ms round trip,
/// without and with adaptation; the limit is lifted 60% of the way in.
fn thin_link(dir: &Path, seconds: f64, report: &mut String) -> Result<()> {
    let lift = seconds * 0.6;
    writeln!(report, "\n## 1920x1080 at 30 fps through a 10 Mbit/s link, 20 ms round trip (loopback proxy), threshold 80 ms\n")?;
    writeln!(report, "The limit is lifted after {lift:.0} s. Each row is one second of the client's status line: accepted fps, stale drops, age p99 (ms) and, with adaptation, the setting in use.\n")?;
    let mut runs = Vec::new();
    for adapt in ["off", "on"] {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let mut server = Command::new(dir.join("framelink-server"))
            .args(["--no-display", "--stats-interval", "0", "--listen", &addr])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start framelink-server (build it first: cargo build --release)")?;
        let link = DelayProxy::throttled(addr.parse()?, Duration::from_millis(10), 10_000_000)?;
        let mut client = Command::new(dir.join("framelink-client"))
            .args([
                "--source",
                "test-pattern",
                "--name",
                "thin",
                "--width",
                "1920",
            ])
            .args(["--height", "1080", "--fps", "30", "--adapt", adapt])
            .args(["--stats-interval", "1", "--duration", &seconds.to_string()])
            .arg(link.addr.to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        let out = client.stdout.take().context("client stdout")?;
        let lines = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| parse_status(&l))
                .collect::<Vec<_>>()
        });
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < lift {
            std::thread::sleep(Duration::from_millis(50)); // the run's own timeline
        }
        link.set_rate(0);
        let _ = wait_cpu(client, Duration::from_secs_f64(seconds + 30.0))?;
        // SAFETY: sending SIGINT to our own child: it stops.
        unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
        let _ = server.wait();
        let seconds: Vec<Second> = lines.join().unwrap_or_default();
        eprintln!("thin link, adapt {adapt}: {} seconds", seconds.len());
        runs.push(seconds);
    }
    writeln!(report, "| s | no adaptation: fps accepted | stale | age p99 | adaptation: fps accepted | stale | age p99 | setting |")?;
    writeln!(report, "|---|---|---|---|---|---|---|---|")?;
    let n = runs[0].len().max(runs[1].len());
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    for i in 0..n {
        let a = runs[0].get(i).cloned().unwrap_or_default();
        let b = runs[1].get(i).cloned().unwrap_or_default();
        writeln!(
            report,
            "| {}{} | {:.1} | {} | {} | {:.1} | {} | {} | {} |",
            i + 1,
            if (i + 1) as f64 > lift {
                " (no limit)"
            } else {
                ""
            },
            a.accepted,
            a.stale,
            ms(a.age_p99),
            b.accepted,
            b.stale,
            ms(b.age_p99),
            b.setting
        )?;
    }
    Ok(())
}

/// The server's age estimate against the truth, in one process on one
/// clock: a client written here sends a frame captured at `c` and notes
/// when its write returned (`w`: on loopback the bytes have landed by
/// then); the true age is `w − c`, the estimate is the VERDICT's `age_us`.
fn age_precision(frames: usize, report: &mut String) -> Result<()> {
    writeln!(
        report,
        "## Age precision: estimate − true age, loopback, {frames} frames at 100 fps each\n"
    )?;
    writeln!(report, "True age: from capture to the client's write returning (the bytes have landed on loopback by then); frames whose write took the client over 0.2 ms are left out (their truth is not known to that precision). Busy: one spinning thread per core beside both programs.\n")?;
    writeln!(report, "| arrival taken from | cores | p50 ms | p99 ms | max ms | min ms | estimates fresher than truth by > 0.1 ms |")?;
    writeln!(report, "|---|---|---|---|---|---|---|")?;
    for busy in [false, true] {
        for kernel in [false, true] {
            let (e, skipped) = age_errors(frames, kernel, busy)?;
            let q = |p: f64| e[((e.len() - 1) as f64 * p) as usize];
            let fresher = e.iter().filter(|&&x| x < -0.1).count();
            writeln!(
                report,
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} of {} ({} left out) |",
                if kernel {
                    "kernel stamp (SO_TIMESTAMPING)"
                } else {
                    "reading thread's clock"
                },
                if busy { "all busy" } else { "idle" },
                q(0.5),
                q(0.99),
                e[e.len() - 1],
                e[0],
                fresher,
                e.len(),
                skipped
            )?;
            eprintln!(
                "age precision kernel={kernel} busy={busy}: p99 {:.3} ms",
                q(0.99)
            );
        }
    }
    Ok(())
}

/// Sorted estimate − truth, in ms, for `frames` frames; and how many frames
/// were left out because the client's own write took over 0.2 ms (the
/// truth is then unknown to that precision).
fn age_errors(frames: usize, kernel: bool, busy: bool) -> Result<(Vec<f64>, usize)> {
    use framelink::server::{Server, ServerConfig};
    use framelink::shutdown::Shutdown;
    use framelink::wire::connection::{self, Reader, Writer};
    use framelink::wire::{self, Encoding, FrameHeader, Hello, Limits, Message};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let config = ServerConfig {
        kernel_arrival: kernel,
        stats_interval: None,
        max_age: Duration::from_secs(10),
        window: 1,
        ..ServerConfig::default()
    };
    let shutdown = Shutdown::new();
    let server = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || Server::new(listener, config).run(shutdown))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..if busy { nproc() } else { 0 })
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let result = (|| -> Result<(Vec<f64>, usize)> {
        let stream = std::net::TcpStream::connect(addr)?;
        connection::configure(&stream, Duration::from_secs(10))?;
        let mut reader = Reader::new(stream.try_clone()?, Limits::default());
        reader.stamp_arrivals();
        let mut writer = Writer::new(stream);
        let never = Shutdown::new();
        let wait = Duration::from_secs(10);
        writer.send(true, &[])?;
        reader.read_preface(Instant::now() + wait, &never)?;
        let Some(Message::Challenge(_)) = reader.read_message(Some(wait), wait, &never)? else {
            bail!("no CHALLENGE");
        };
        writer.send(
            false,
            &[&Message::Hello(Hello {
                capabilities: 0,
                name: "age".into(),
                client_nonce: [1; 32],
                proof: Vec::new(),
            })],
        )?;
        let Some(Message::Welcome(_)) = reader.read_message(Some(wait), wait, &never)? else {
            bail!("no WELCOME");
        };
        let ticket_now = |reader: &mut Reader| -> Result<(wire::Ticket, Instant)> {
            match reader.read_message(Some(wait), wait, &never)? {
                Some(Message::Ticket(t)) => {
                    let now = Instant::now();
                    Ok((t, reader.arrival().map_or(now, |a| a.min(now))))
                }
                other => bail!("expected a TICKET, got {other:?}"),
            }
        };
        let (mut ticket, mut landed) = ticket_now(&mut reader)?;
        let jpeg = {
            let rgb = vec![128u8; 64 * 48 * 3];
            let mut out = Vec::new();
            encode::encoder(EncoderKind::Auto, 80, Subsampling::S420)?
                .encode(&rgb, 64, 48, &mut out)?;
            out
        };
        let mut errors = Vec::with_capacity(frames);
        let mut skipped = 0;
        for id in 1..=frames as u64 {
            std::thread::sleep(Duration::from_millis(10));
            let captured = Instant::now();
            let h = FrameHeader {
                frame_id: id,
                encoding: Encoding::Jpeg,
                width: 64,
                height: 48,
                capture_to_send_us: 0,
                ticket_held_us: wire::micros_u32(captured.saturating_duration_since(landed)),
                payload_len: jpeg.len() as u32,
            };
            let before = Instant::now();
            writer.send_frame(&h, &jpeg, ticket)?;
            let written = Instant::now();
            let verdict = match reader.read_message(Some(wait), wait, &never)? {
                Some(Message::Verdict(v)) => v,
                other => bail!("expected a VERDICT, got {other:?}"),
            };
            (ticket, landed) = ticket_now(&mut reader)?;
            // The bytes landed between `before` and `written`: a sample
            // where the client itself was held up there says nothing.
            if written.duration_since(before) > Duration::from_micros(200) {
                skipped += 1;
                continue;
            }
            let truth = written.duration_since(captured).as_secs_f64() * 1e3;
            errors.push(verdict.age_us as f64 / 1e3 - truth);
        }
        errors.sort_by(f64::total_cmp);
        Ok((errors, skipped))
    })();
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    shutdown.trigger();
    let _ = server.join();
    result
}

fn default_window() -> u16 {
    framelink::server::ServerConfig::default().window
}

/// The figures of one streaming run.
struct Run {
    fps: f64,
    stale: u64,
    client_cpu_ms: f64,
    server_cpu_ms: f64,
    p50: f64,
    p99: f64,
    transit_p50: f64,
    mb_s: f64,
}

impl Run {
    fn row(&self, w: u32, h: u32, who: &str) -> String {
        format!(
            "| {w}x{h} | {who} | {:.1} | {} | {:.2} | {:.2} | {:.1} / {:.1} | {:.1} |",
            self.fps,
            self.stale,
            self.client_cpu_ms,
            self.server_cpu_ms,
            self.p50,
            self.p99,
            self.mb_s
        )
    }
}

/// CPU seconds used by waited-for children so far (this process's RUSAGE_CHILDREN).
fn children_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Waits for `child`, killing it after `limit`; returns the CPU seconds it used.
fn wait_cpu(mut child: Child, limit: Duration) -> Result<f64> {
    let before = children_cpu();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("a benchmarked program failed: {status}");
            }
            return Ok(children_cpu() - before);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("a benchmarked program did not stop in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn read_json(path: &Path) -> Result<Value> {
    Ok(serde_json::from_str(
        &std::fs::read_to_string(path)
            .with_context(|| format!("no summary at {}", path.display()))?,
    )?)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// One framelink run: server and client as separate processes.
fn run_framelink(
    dir: &Path,
    w: u32,
    h: u32,
    fps: f64,
    one_way: Option<Duration>,
    window: Option<u16>,
    seconds: f64,
) -> Result<Run> {
    let tmp = tempdir()?;
    let (s_json, c_json) = (tmp.join("s.json"), tmp.join("c.json"));
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let window = window.unwrap_or_else(default_window).to_string();
    let server = Command::new(dir.join("framelink-server"))
        .args([
            "--no-display",
            "--stats-interval",
            "0",
            "--listen",
            &addr,
            "--window",
            &window,
            "--summary-json",
        ])
        .arg(&s_json)
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start framelink-server (build it first: cargo build --release)")?;
    let proxy = one_way
        .map(|d| DelayProxy::start(addr.parse().unwrap(), d))
        .transpose()?;
    let target = proxy.as_ref().map(|p| p.addr.to_string()).unwrap_or(addr);
    let client = Command::new(dir.join("framelink-client"))
        .args([
            "--source",
            "test-pattern",
            "--stats-interval",
            "0",
            "--name",
            "bench",
        ])
        .args([
            "--width",
            &w.to_string(),
            "--height",
            &h.to_string(),
            "--fps",
            &fps.to_string(),
        ])
        .args(["--duration", &seconds.to_string(), "--summary-json"])
        .arg(&c_json)
        .arg(&target)
        .stdout(Stdio::null())
        .spawn()?;
    let client_cpu = wait_cpu(client, Duration::from_secs_f64(seconds + 30.0))?;
    drop(proxy);
    // SAFETY: sending SIGINT to our own child: it stops and writes its summary.
    unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
    let server_cpu = wait_cpu(server, Duration::from_secs(30))?;
    let (s, c) = (read_json(&s_json)?, read_json(&c_json)?);
    let sent = f(&c["frames_sent"]).max(1.0);
    let received = f(&s["frames_received"]).max(1.0);
    let elapsed = seconds.max(1e-9);
    Ok(Run {
        fps: f(&s["fps_accepted"]),
        stale: s["frames_dropped_stale"].as_u64().unwrap_or(0),
        client_cpu_ms: client_cpu * 1000.0 / sent,
        server_cpu_ms: server_cpu * 1000.0 / received,
        p50: f(&s["age_ms"]["p50"]),
        p99: f(&s["age_ms"]["p99"]),
        transit_p50: f(&s["transit_ms"]["p50"]),
        mb_s: f(&s["bytes"]) / elapsed / 1e6,
    })
}

/// One run of the reference Python pair.
fn run_reference(dir: &Path, w: u32, h: u32, nodelay: bool, seconds: f64) -> Result<Run> {
    if !dir.join("server.py").exists() {
        bail!("no reference pair in {}", dir.display());
    }
    let ok = Command::new("python3")
        .args(["-c", "import cv2, numpy"])
        .stderr(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("python3 lacks opencv/numpy: python3 -m pip install opencv-python-headless numpy");
    }
    let tmp = tempdir()?;
    let s_json = tmp.join("seed.json");
    let port = free_port()?.to_string();
    let nd: &[&str] = if nodelay { &["--nodelay"] } else { &[] };
    let (ws, hs) = (w.to_string(), h.to_string());
    // The client spends CPU making its 30 synthetic frames before streaming:
    // measure that alone (a run of 0 s) and take it off.
    let warm = Command::new("python3")
        .current_dir(dir)
        .args([
            "client.py",
            "--port",
            "9",
            "--width",
            &ws,
            "--height",
            &hs,
            "--seconds",
            "0",
        ])
        .stdout(Stdio::null())
        .spawn()?;
    let setup_cpu = wait_cpu(warm, Duration::from_secs(120))?;
    let server = Command::new("python3")
        .current_dir(dir)
        .args([
            "server.py",
            "--port",
            &port,
            "--seconds",
            &(seconds + 3.0).to_string(),
            "--summary-json",
        ])
        .arg(&s_json)
        .args(nd)
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500)); // the reference server has no readiness signal
    let c_out = tmp.join("client.out");
    let client = Command::new("python3")
        .current_dir(dir)
        .args([
            "client.py",
            "--port",
            &port,
            "--width",
            &ws,
            "--height",
            &hs,
            "--seconds",
            &seconds.to_string(),
        ])
        .args(nd)
        .stdout(std::fs::File::create(&c_out)?)
        .spawn()?;
    let client_cpu = wait_cpu(client, Duration::from_secs_f64(seconds + 120.0))? - setup_cpu;
    let printed = std::fs::read_to_string(&c_out)?;
    let c: Value =
        serde_json::from_str(printed.lines().find(|l| l.starts_with('{')).unwrap_or("{}"))?;
    let server_cpu = wait_cpu(server, Duration::from_secs_f64(seconds + 60.0))?;
    let s = read_json(&s_json)?;
    let sent = f(&c["frames_sent"]).max(1.0);
    let received = (f(&s["frames_accepted"]) + f(&s["frames_dropped_stale"])).max(1.0);
    Ok(Run {
        fps: f(&s["fps_accepted"]),
        stale: s["frames_dropped_stale"].as_u64().unwrap_or(0),
        client_cpu_ms: client_cpu.max(0.0) * 1000.0 / sent,
        server_cpu_ms: server_cpu * 1000.0 / received,
        p50: f(&s["delay_ms"]["p50"]),
        p99: f(&s["delay_ms"]["p99"]),
        transit_p50: 0.0,
        mb_s: f(&s["bytes"]) / seconds / 1e6,
    })
}

/// YUYV 1080p to JPEG (q80, 4:2:0), median ms: framelink's YUV path (planes,
/// then libjpeg-turbo's encode-from-YUV), libjpeg-turbo's encode-from-YUV
/// alone on ready planes (the limit of this path), and the RGB detour.
#[cfg(not(feature = "turbojpeg"))]
fn yuyv_speed(_report: &mut String) -> Result<()> {
    bail!("the YUYV timing needs libjpeg-turbo: build with default features")
}

#[cfg(feature = "turbojpeg")]
fn yuyv_speed(report: &mut String) -> Result<()> {
    use framelink::media::encode::yuyv_to_planes;
    let (w, h) = (1920usize, 1080usize);
    // A camera-layout frame: a moving-looking gradient in limited range.
    let yuyv: Vec<u8> = (0..w * h / 2)
        .flat_map(|i| {
            let (x, y) = ((i * 2) % w, (i * 2) / w);
            [
                (16 + x * 219 / w) as u8,
                (16 + y * 224 / h) as u8,
                (16 + (x + 1) * 219 / w) as u8,
                (240 - y * 224 / h) as u8,
            ]
        })
        .collect();
    let median = |f: &mut dyn FnMut()| {
        let mut t: Vec<f64> = (0..60)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let mut enc = encode::encoder(EncoderKind::Turbojpeg, 80, Subsampling::S420)?;
    let mut out = Vec::new();
    let ours = median(&mut || {
        enc.encode_yuv(encode::Yuv::Yuyv(&yuyv), w as u32, h as u32, &mut out)
            .unwrap();
    });
    let mut planes = Vec::new();
    yuyv_to_planes(&yuyv, w, h, true, &mut planes);
    let mut c = turbojpeg::Compressor::new()?;
    c.set_quality(80)?;
    let limit = median(&mut || {
        let img = turbojpeg::YuvImage {
            pixels: &planes[..],
            width: w,
            align: 1,
            height: h,
            subsamp: turbojpeg::Subsamp::Sub2x2,
        };
        c.compress_yuv_to_vec(img).unwrap();
    });
    let mut rgb = Vec::new();
    let detour = median(&mut || {
        framelink::client::source::camera::yuyv_to_rgb(&yuyv, w, h, &mut rgb);
        enc.encode(&rgb, w as u32, h as u32, &mut out).unwrap();
    });
    writeln!(
        report,
        "## YUYV 1920x1080 to JPEG (q80, 4:2:0), median of 60, one core\n"
    )?;
    writeln!(report, "| path | ms per frame |\n|---|---|")?;
    writeln!(
        report,
        "| framelink: planes + encode-from-YUV | {ours:.2} |"
    )?;
    writeln!(
        report,
        "| libjpeg-turbo encode-from-YUV alone (the limit) | {limit:.2} |"
    )?;
    writeln!(report, "| RGB detour (YUYV → RGB → encode) | {detour:.2} |")?;
    writeln!(report, "\nframelink / limit: {:.2}x", ours / limit)?;
    Ok(())
}

/// Median ms of encode (image, turbo) and decode (turbo), and the JPEG size.
fn codec_speed(w: u32, h: u32) -> Result<(f64, f64, f64, f64, f64)> {
    let mut pattern = TestPattern::new(w, h, 0.0);
    let (frame, planes) = match pattern.next_frame()?.image {
        Image::Rgb { data, .. } => (data.to_vec(), None),
        Image::Yuv {
            data: yuv @ encode::Yuv::I420(planes),
            ..
        } => {
            let mut rgb = Vec::new();
            yuv.to_rgb(w, h, &mut rgb);
            (rgb, Some(planes.to_vec()))
        }
        Image::Jpeg { .. } | Image::Yuv { .. } => bail!("the test pattern gives RGB or I420"),
    };
    let time = |n: usize, mut f: Box<dyn FnMut() -> Result<()> + '_>| -> Result<f64> {
        let mut t = Vec::with_capacity(n);
        for _ in 0..n {
            let s = Instant::now();
            f()?;
            t.push(s.elapsed().as_secs_f64() * 1000.0);
        }
        t.sort_by(|a, b| a.total_cmp(b));
        Ok(t[n / 2])
    };
    let mut out = Vec::new();
    let mut image_enc = encode::encoder(EncoderKind::Image, 80, Subsampling::S444)?;
    let image_ms = time(15, Box::new(|| image_enc.encode(&frame, w, h, &mut out)))?;
    let mut turbo = encode::encoder(EncoderKind::Auto, 80, Subsampling::S420)?;
    let turbo_ms = time(40, Box::new(|| turbo.encode(&frame, w, h, &mut out)))?;
    let jpeg = out.clone();
    let i420_ms = match &planes {
        Some(p) => time(
            40,
            Box::new(|| {
                turbo
                    .encode_yuv(encode::Yuv::I420(p), w, h, &mut out)
                    .map(|_| ())
            }),
        )?,
        None => f64::NAN,
    };
    let decode_ms = time(40, Box::new(|| encode::decode_rgb(&jpeg).map(|_| ())))?;
    Ok((
        image_ms,
        turbo_ms,
        i420_ms,
        decode_ms,
        jpeg.len() as f64 / 1000.0,
    ))
}

fn tempdir() -> Result<PathBuf> {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("framelink-bench-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn nproc() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

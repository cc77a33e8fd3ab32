//! `framelink-bench`: runs framelink-server and framelink-client (the ones
//! built beside this program) over loopback with the test pattern, and the
//! reference Python pair at the same frame sizes, and prints one Markdown
//! report: fps accepted, CPU per frame on each side, frame age, MB/s, codec
//! speed, and the same through a delaying link with different windows.
//!
//! `cargo build --release && target/release/framelink-bench` (or scripts/bench.sh,
//! which also installs the reference pair's Python packages).

mod age;
mod codec;
#[cfg(feature = "nats")]
mod pool;
mod thin_link;

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
        codec::yuyv_speed(&mut report)?;
        return publish(&report, opts.out.as_deref());
    }
    if opts.only_age_precision {
        age::age_precision(opts.age_frames, &mut report)?;
        return publish(&report, opts.out.as_deref());
    }
    if opts.only_thin_link {
        thin_link::run(&dir, opts.thin_link_seconds, &mut report)?;
        return publish(&report, opts.out.as_deref());
    }

    writeln!(
        report,
        "## Codec speed (one core, test pattern, quality 80), median ms per frame\n"
    )?;
    writeln!(report, "| size | encode image (4:4:4) | encode libjpeg-turbo from RGB (4:2:0) | from I420 (what the test pattern hands over) | decode libjpeg-turbo | JPEG KB (turbo 4:2:0) |")?;
    writeln!(report, "|---|---|---|---|---|---|")?;
    for (w, h) in SIZES {
        let c = codec::codec_speed(w, h)?;
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
        thin_link::run(&dir, opts.thin_link_seconds, &mut report)?;
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

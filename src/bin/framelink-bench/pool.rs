//! The worker pool through a real nats-server: throughput as workers are
//! added, capture→result through NATS against the local processor, and the
//! broker's traffic per result. Everything runs in this process but the
//! broker and the `exec:` programs.

use anyhow::{bail, Context, Result};
use framelink::client::{self, ClientConfig, ClientSummary};
use framelink::nats::{NatsConfig, PoolConfig};
use framelink::process::{ProcessorConfig, ProcessorKind};
use framelink::server::{Server, ServerConfig};
use framelink::shutdown::Shutdown;
use framelink::worker::{self, WorkerConfig, WorkerSummary};
use std::fmt::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program standing for GPU inference: 50 ms of wall time a frame, no CPU.
const SLEEPER: &str = r#"
import json, sys, time
inp = sys.stdin.buffer
while True:
    line = inp.readline()
    if not line:
        break
    inp.read(json.loads(line)["bytes"])
    time.sleep(0.05)
    sys.stdout.write('{"done":1}\n')
    sys.stdout.flush()
"#;

struct Broker {
    child: Child,
    port: u16,
    monitor: u16,
}

impl Broker {
    fn start() -> Result<Broker> {
        let program = ["nats-server", "/usr/sbin/nats-server"]
            .into_iter()
            .find(|p| Command::new(p).arg("--version").output().is_ok())
            .context("nats-server is not installed (scripts/setup.sh installs it)")?;
        let port = super::free_port()?;
        let monitor = super::free_port()?;
        let child = Command::new(program)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Broker {
            child,
            port,
            monitor,
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `/varz` `in_bytes`: every byte the broker took in.
    fn in_bytes(&self) -> Result<u64> {
        let body = ureq::get(&format!("http://127.0.0.1:{}/varz", self.monitor))
            .call()?
            .into_string()?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        v["in_bytes"].as_u64().context("no in_bytes in /varz")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run measured.
struct Run {
    results_per_s: f64,
    p50: f64,
    p99: f64,
    processed: u64,
    mean_frame: f64,
    broker_in: u64,
}

/// `cameras` test-pattern clients at 30 fps (640x480) into one server whose
/// frames go to `workers` workers running `processor` (or, with `workers`
/// 0, to the server's own `processor`), for `seconds`.
fn run(
    broker: Option<&Broker>,
    cameras: usize,
    workers: usize,
    processor: &ProcessorKind,
    seconds: f64,
) -> Result<Run> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let processor_config = ProcessorConfig {
        kind: processor.clone(),
        timeout: Duration::from_secs(2),
        ..ProcessorConfig::default()
    };
    let config = ServerConfig {
        stats_interval: None,
        max_age: Duration::from_millis(200),
        processor: processor_config.clone(),
        pool: broker.filter(|_| workers > 0).map(|b| PoolConfig {
            nats: NatsConfig::new(b.url()),
            server_id: "bench".into(),
            timeout: Duration::from_secs(2),
        }),
        ..ServerConfig::default()
    };
    let server_stop = Shutdown::new();
    let sd = server_stop.clone();
    let server = std::thread::spawn(move || Server::new(listener, config).run(sd));
    let worker_stop = Shutdown::new();
    let pool: Vec<_> = (0..if broker.is_some() { workers } else { 0 })
        .map(|i| {
            let mut wc = WorkerConfig::new(broker.unwrap().url(), processor_config.clone());
            wc.name = format!("w{i}");
            let sd = worker_stop.clone();
            std::thread::spawn(move || worker::run(wc, sd))
        })
        .collect();
    let in_before = broker.map(Broker::in_bytes).transpose()?.unwrap_or(0);
    let client_stop = Shutdown::new();
    let clients: Vec<_> = (0..cameras)
        .map(|i| {
            let mut c = ClientConfig::test_pattern(addr.to_string(), 640, 480, 30.0);
            c.name = format!("cam{i}");
            c.stats_interval = None;
            c.adapt = false;
            let sd = client_stop.clone();
            std::thread::spawn(move || client::run(c, sd))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    client_stop.trigger();
    let summaries: Vec<ClientSummary> = clients
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect::<Result<_>>()?;
    let broker_in = broker.map(Broker::in_bytes).transpose()?.unwrap_or(0) - in_before;
    worker_stop.trigger();
    let _: Vec<WorkerSummary> = pool
        .into_iter()
        .map(|t| t.join().expect("worker thread"))
        .collect::<Result<_>>()?;
    server_stop.trigger();
    server.join().expect("server thread")?;
    let mut run = Run {
        results_per_s: 0.0,
        p50: 0.0,
        p99: 0.0,
        processed: 0,
        mean_frame: 0.0,
        broker_in,
    };
    let (mut bytes, mut sent) = (0u64, 0u64);
    for s in &summaries {
        let r = s.figures.results.as_ref().context("no results came back")?;
        run.processed += r.results_processed;
        run.results_per_s += r.results_processed as f64 / s.duration_s;
        run.p50 += r.capture_to_result_ms.p50.unwrap_or(f64::NAN) / summaries.len() as f64;
        run.p99 = run.p99.max(r.capture_to_result_ms.p99.unwrap_or(f64::NAN));
        bytes += s.figures.bytes;
        sent += s.figures.frames_sent.unwrap_or(0);
    }
    run.mean_frame = bytes as f64 / sent.max(1) as f64;
    Ok(run)
}

pub fn pool(seconds: f64, report: &mut String) -> Result<()> {
    let broker = Broker::start()?;
    let dir = super::tempdir()?;
    let script = dir.join("sleeper.py");
    std::fs::write(&script, SLEEPER)?;
    let sleeper = ProcessorKind::Exec(format!("python3 '{}'", script.display()));

    writeln!(
        report,
        "## A worker pool through NATS (nats-server on loopback)\n"
    )?;
    writeln!(report, "4 test-pattern cameras at 30 fps (640x480) into one server, `--processor nats://…`; each worker runs an `exec:` program that sleeps 50 ms a frame (standing for GPU inference: 20 frames/s a worker). Every program on this machine; {seconds} s a run.\n")?;
    writeln!(report, "| workers | results/s | target (0.9 × N × 20, ≤ 120 offered) | capture→result p50 / worst client's p99 ms |")?;
    writeln!(report, "|---|---|---|---|")?;
    for n in [1usize, 2, 4, 8] {
        let r = run(Some(&broker), 4, n, &sleeper, seconds)?;
        let target = (0.9 * n as f64 * 20.0).min(0.9 * 120.0);
        writeln!(
            report,
            "| {n} | {:.1} | {target:.0} {} | {:.1} / {:.1} |",
            r.results_per_s,
            if r.results_per_s >= target {
                "met"
            } else {
                "**missed**"
            },
            r.p50,
            r.p99
        )?;
        eprintln!("pool {n} workers: {:.1} results/s", r.results_per_s);
    }

    writeln!(
        report,
        "\nOne camera at 30 fps, the `count` processor: capture→result on the client.\n"
    )?;
    writeln!(report, "| processing | p50 ms | p99 ms |")?;
    writeln!(report, "|---|---|---|")?;
    let local = run(None, 1, 0, &ProcessorKind::Count, seconds)?;
    let pooled = run(Some(&broker), 1, 1, &ProcessorKind::Count, seconds)?;
    writeln!(
        report,
        "| on the server | {:.2} | {:.2} |",
        local.p50, local.p99
    )?;
    writeln!(
        report,
        "| one worker through NATS | {:.2} | {:.2} |",
        pooled.p50, pooled.p99
    )?;
    writeln!(
        report,
        "\nThrough NATS adds {:.2} ms at p50 (target ≤ 2 ms: {}).\n",
        pooled.p50 - local.p50,
        if pooled.p50 - local.p50 <= 2.0 {
            "met"
        } else {
            "**missed**"
        }
    )?;

    let r = run(Some(&broker), 4, 1, &sleeper, seconds)?;
    let per_result = r.broker_in as f64 / r.processed.max(1) as f64;
    writeln!(report, "Broker traffic, 4 cameras at 30 fps and one worker at 20 results/s: {} bytes into nats-server (`/varz` `in_bytes`) for {} results = {:.0} bytes a result; mean frame {:.0} bytes: **{:.2}×** the frame size (target ≤ 2×: {}). The cameras sent {:.0} frames/s; the broker saw only the {:.1}/s processed.\n",
        r.broker_in, r.processed, per_result, r.mean_frame, per_result / r.mean_frame,
        if per_result <= 2.0 * r.mean_frame { "met" } else { "**missed**" },
        120.0, r.results_per_s)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

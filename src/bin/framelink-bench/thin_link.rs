//! A thin link: 1080p through 10 Mbit/s, without and with adaptation.

use super::*;

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
pub(crate) fn run(dir: &Path, seconds: f64, report: &mut String) -> Result<()> {
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

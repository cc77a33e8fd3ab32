//! Command lines of the programs (clap derive; the help text is the doc
//! comments), turned into validated configs that tests can also build
//! directly: one file per program (`server.rs`, `client.rs`, `worker.rs`); here
//! the flags and parsers they share.

use crate::client::source::{CameraFormat, SourceConfig, SourceKind};
use crate::client::ClientConfig;
use crate::media::encode::{EncoderKind, Subsampling};
use crate::process::exec::ExecInput;
use crate::process::{ProcessorConfig, ProcessorKind};
use crate::server::record::RecordConfig;
use crate::server::ServerConfig;
use crate::wire::auth::Token;
use crate::wire::host_name;
use crate::DEFAULT_PORT;
use anyhow::{bail, Result};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod client;
mod server;
#[cfg(feature = "nats")]
mod worker;

pub use client::{ClientOpts, StatusStyle};
pub use server::ServerOpts;
#[cfg(feature = "nats")]
pub use worker::WorkerOpts;

/// What `--generate` writes, from the same option definitions as the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// The man page (roff).
    Man,
    /// bash completions.
    Bash,
    /// zsh completions.
    Zsh,
    /// fish completions.
    Fish,
}

/// The environment variable that gives flag `id` (a field name): every flag
/// of every program can be set as `FRAMELINK_<FLAG>`, e.g.
/// `FRAMELINK_MAX_LATENCY_MS=60` for `--max-latency-ms 60`; the command line wins.
pub fn env_name(id: &str) -> String {
    format!("FRAMELINK_{}", id.to_ascii_uppercase().replace('-', "_"))
}

/// Program `T`'s command line, every flag also read from its
/// [`env_name`] (and shown so in `--help`).
pub fn command<T: clap::CommandFactory>() -> clap::Command {
    T::command().mut_args(|a| {
        let id = a.get_id().as_str().to_string();
        if matches!(id.as_str(), "help" | "version" | "generate") {
            a
        } else {
            a.env(env_name(&id))
        }
    })
}

/// Parses program `T`'s command line and environment; exits with clap's
/// message on a mistake, as `Parser::parse` does.
pub fn parse<T: clap::Parser>() -> (T, clap::ArgMatches) {
    let matches = command::<T>().get_matches();
    let opts = T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (opts, matches)
}

/// Writes program `T`'s man page or completions to standard output.
pub fn generate<T: clap::CommandFactory>(what: Generate) -> Result<()> {
    use std::io::Write;
    let mut cmd = command::<T>();
    let name = cmd.get_name().to_string();
    let mut out = std::io::stdout().lock();
    let shell = match what {
        Generate::Man => None,
        Generate::Bash => Some(clap_complete::Shell::Bash),
        Generate::Zsh => Some(clap_complete::Shell::Zsh),
        Generate::Fish => Some(clap_complete::Shell::Fish),
    };
    match shell {
        None => clap_mangen::Man::new(cmd).render(&mut out)?,
        Some(shell) => clap_complete::generate(shell, &mut cmd, name, &mut out),
    }
    out.flush()?;
    Ok(())
}

/// The flags both programs share.
#[derive(Debug, clap::Args)]
pub struct CommonOpts {
    /// Write this program's man page (`man`) or shell completions (`bash`, `zsh`, `fish`) to
    /// standard output, and exit.
    #[arg(long, value_enum, value_name = "WHAT", exclusive = true)]
    pub generate: Option<Generate>,

    /// Shared secret both sides prove they know (it never crosses the wire); the server's
    /// live view wants it too (`?token=` or `Authorization: Bearer`). Default: FRAMELINK_TOKEN.
    #[arg(long, value_name = "SECRET")]
    pub token: Option<String>,

    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// Seconds between status lines; 0 turns them off.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub stats_interval: f64,

    /// Write the final summary to this file as one JSON object.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

impl CommonOpts {
    /// `--summary-json`, checked at start: its folder must exist, so a run
    /// does not end by failing to write what it measured.
    pub fn summary_json(&self) -> Result<Option<PathBuf>> {
        if let Some(p) = &self.summary_json {
            writable_file("--summary-json", p)?;
        }
        Ok(self.summary_json.clone())
    }

    /// `--duration`, checked.
    pub fn duration(&self) -> Result<Option<Duration>> {
        self.duration.map(|d| seconds("--duration", d)).transpose()
    }

    /// `--stats-interval`, checked (None: no status lines).
    pub fn stats_interval(&self) -> Result<Option<Duration>> {
        interval(self.stats_interval)
    }

    /// `--token`, or `FRAMELINK_TOKEN` when the flag is not given.
    pub fn token(&self) -> Result<Option<Token>> {
        Token::from_flag_or_env(self.token.as_deref())
    }
}

/// How a processor runs (the server's, a worker's).
#[derive(Debug, clap::Args)]
pub struct ProcessorOpts {
    /// Seconds an `exec:` processor may take on one frame before it is killed and restarted;
    /// on a server with a pool, seconds a worker may hold a frame before it is answered
    /// `failed`.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub process_timeout: f64,

    /// What an `exec:` processor is fed: `jpeg` (as it arrived) or `gray` (decoded 8-bit pixels).
    #[arg(long, value_enum, default_value = "jpeg")]
    pub exec_input: ExecInput,
}

impl ProcessorOpts {
    /// `--process-timeout`, checked.
    pub fn timeout(&self) -> Result<Duration> {
        seconds("--process-timeout", self.process_timeout)
    }

    /// The settings of a processor of this `kind`, checked.
    pub fn config(&self, kind: &ProcessorKind) -> Result<ProcessorConfig> {
        Ok(ProcessorConfig {
            kind: kind.clone(),
            timeout: self.timeout()?,
            exec_input: self.exec_input,
        })
    }
}

/// How to reach a NATS broker (the server's pool, the worker).
#[derive(Debug, clap::Args)]
pub struct NatsOpts {
    /// A NATS credentials file (JWT and NKey seed, `.creds`).
    #[arg(long, value_name = "PATH")]
    pub nats_creds: Option<PathBuf>,

    /// Trust this CA (PEM) for the NATS broker's TLS certificate (and require TLS).
    #[arg(long, value_name = "PEM")]
    pub nats_tls_ca: Option<PathBuf>,

    /// The first part of every NATS subject: pools on one broker with different
    /// prefixes stay apart.
    #[arg(long, default_value = crate::nats::DEFAULT_PREFIX, value_name = "PREFIX")]
    pub nats_prefix: String,
}

impl NatsOpts {
    /// The broker settings for `url`, checked.
    pub fn config(&self, url: &str, name: String) -> Result<crate::nats::NatsConfig> {
        crate::nats::check_token("--nats-prefix", &self.nats_prefix, true)?;
        if let Some(p) = &self.nats_creds {
            if !p.is_file() {
                bail!("--nats-creds {}: no such file", p.display());
            }
        }
        if let Some(p) = &self.nats_tls_ca {
            if !p.is_file() {
                bail!("--nats-tls-ca {}: no such file", p.display());
            }
        }
        Ok(crate::nats::NatsConfig {
            url: url.to_string(),
            creds: self.nats_creds.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            prefix: self.nats_prefix.clone(),
            name,
        })
    }
}

/// A switch on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// The server address as given, checked at start (retrying cannot fix a
/// malformed one), with the default port added when it has none.
pub fn server_address(server: &str) -> Result<String> {
    let form = "give HOST or HOST:PORT, e.g. 192.168.1.20 or jetson.local:1998";
    if server.trim().is_empty() {
        bail!("the server address is empty: {form}");
    }
    if server.contains("://") {
        bail!("the server address {server:?} is a URL: {form}");
    }
    if server.chars().any(char::is_whitespace) {
        bail!("the server address {server:?} has spaces in it: {form}");
    }
    let unbracketed_v6 = server.parse::<std::net::Ipv6Addr>().is_ok();
    if let Some((host, port)) = server.rsplit_once(':').filter(|_| !unbracketed_v6) {
        if host.is_empty() {
            bail!("the server address {server:?} has no host: {form}");
        }
        if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) {
            match port.parse::<u16>() {
                Ok(0) | Err(_) => bail!("the port in {server:?} is not 1-65535: {form}"),
                Ok(_) => {}
            }
        }
    }
    Ok(with_default_port(server))
}

/// A comma-separated list of servers, each checked by [`server_address`]
/// and given the default port: `a,b:2000` → `a:1998,b:2000`.
pub fn server_list(servers: &str) -> Result<String> {
    let list = servers
        .split(',')
        .map(server_address)
        .collect::<Result<Vec<_>>>()?;
    Ok(list.join(","))
}

/// Parses an address to listen on: `ADDRESS:PORT`, `HOST:PORT` (resolved),
/// `:PORT` or `PORT` (all IPv4 addresses), or an IP address alone (port 1998).
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
    let form = "give ADDRESS:PORT, HOST:PORT, :PORT or PORT, e.g. 0.0.0.0:1998 or 1998";
    let text = text.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let port_only = text.strip_prefix(':').unwrap_or(text);
    if !port_only.is_empty() && port_only.chars().all(|c| c.is_ascii_digit()) {
        return match port_only.parse::<u16>() {
            Ok(p) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p)),
            Err(_) => Err(format!("the port in {text:?} is not 0-65535: {form}")),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => text
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host:?}: {e}: {form}"))?
            .next()
            .ok_or_else(|| format!("{host:?} resolves to no address: {form}")),
        _ => Err(format!("{text:?} is not an address to listen on: {form}")),
    }
}

/// Says why binding `addr` failed in words that name the fix.
pub fn bind_error(addr: SocketAddr, flag: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: the port is in use (another server?); choose another with {flag}"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {addr}: this machine has no address {}; use one of its own, or 0.0.0.0 for all, with {flag}",
            addr.ip()
        ),
        ErrorKind::PermissionDenied => format!(
            "cannot listen on {addr}: permission denied (ports below 1024 need privileges); choose another with {flag}"
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    }
}

/// `HOST` → `HOST:1998`; `HOST:PORT` and `[v6]:PORT` stay; a bare IPv6
/// address gets brackets.
pub fn with_default_port(server: &str) -> String {
    if server.parse::<SocketAddr>().is_ok() {
        return server.to_string();
    }
    if server.parse::<std::net::Ipv6Addr>().is_ok() {
        return format!("[{server}]:{DEFAULT_PORT}");
    }
    if server.starts_with('[') && server.ends_with(']') {
        return format!("{server}:{DEFAULT_PORT}");
    }
    match server.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => server.to_string(),
        _ => format!("{server}:{DEFAULT_PORT}"),
    }
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    if !(s > 0.0 && s < 1e9) {
        bail!("{flag} must be a positive number of seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Checks at start that `path` names a file that can be created: its
/// folder exists and it is not itself a folder.
pub fn writable_file(flag: &str, path: &std::path::Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("{flag} {}: that is a folder, not a file", path.display());
    }
    Ok(())
}

fn interval(s: f64) -> Result<Option<Duration>> {
    if s == 0.0 {
        Ok(None)
    } else {
        seconds("--stats-interval", s).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_take_the_forms_people_type() {
        let all = |p| SocketAddr::from(([0, 0, 0, 0], p));
        assert_eq!(listen_address("21997"), Ok(all(21997)));
        assert_eq!(listen_address(":21997"), Ok(all(21997)));
        assert_eq!(listen_address("0.0.0.0:1998"), Ok(all(1998)));
        assert_eq!(
            listen_address("127.0.0.1"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 1998)))
        );
        assert_eq!(listen_address("localhost:5").unwrap().port(), 5);
        assert_eq!(listen_address("[::1]:7").unwrap().port(), 7);
        for bad in ["", "abc", "99999", "host:port", "tcp://1.2.3.4:5"] {
            let e = listen_address(bad).unwrap_err();
            assert!(e.contains("give ADDRESS:PORT"), "{bad:?}: {e}");
        }
        let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        assert!(bind_error(all(1), "--listen", &in_use).contains("in use"));
        let absent = std::io::Error::from(std::io::ErrorKind::AddrNotAvailable);
        assert!(bind_error(all(1), "--listen", &absent).contains("no address 0.0.0.0"));
    }

    #[test]
    fn a_malformed_server_address_is_refused_at_start() {
        for bad in [
            "",
            " ",
            "127.0.0.1:99999",
            "10.0.0.2:0",
            "tcp://10.0.0.2:1998",
            ":1998",
        ] {
            let e = server_address(bad).unwrap_err().to_string();
            assert!(e.contains("HOST:PORT"), "{bad:?}: {e}");
        }
        assert_eq!(server_address("10.0.0.2").unwrap(), "10.0.0.2:1998");
        assert_eq!(server_address("::1").unwrap(), "[::1]:1998");
        assert_eq!(server_address("[::1]:5").unwrap(), "[::1]:5");
        assert_eq!(
            server_address("jetson.local:80").unwrap(),
            "jetson.local:80"
        );
        let e = ClientOpts::parse_from(["c", "127.0.0.1:99999"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not 1-65535"), "{e}");
    }

    #[test]
    fn a_server_list_gets_default_ports_and_each_entry_is_checked() {
        assert_eq!(
            server_list("a,b:2000,::1").unwrap(),
            "a:1998,b:2000,[::1]:1998"
        );
        let c = ClientOpts::parse_from(["c", "a,b:7"]).config().unwrap();
        assert_eq!(c.servers(), ["a:1998", "b:7"]);
        for bad in ["a,", ",a", "a,,b", "a,b:0"] {
            assert!(server_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_port_is_added_only_when_missing() {
        assert_eq!(with_default_port("10.0.0.2"), "10.0.0.2:1998");
        assert_eq!(with_default_port("10.0.0.2:7000"), "10.0.0.2:7000");
        assert_eq!(with_default_port("jetson.local"), "jetson.local:1998");
        assert_eq!(with_default_port("jetson.local:80"), "jetson.local:80");
        assert_eq!(with_default_port("::1"), "[::1]:1998");
        assert_eq!(with_default_port("[::1]"), "[::1]:1998");
        assert_eq!(with_default_port("[::1]:5"), "[::1]:5");
    }

    #[test]
    fn the_live_view_cannot_share_the_port_of_the_frames() {
        let config = |args: &[&str]| {
            let mut all = vec!["framelink-server"];
            all.extend(args);
            ServerOpts::parse_from(all).config()
        };
        let e = config(&["--http", "1998"]).unwrap_err().to_string();
        assert!(e.contains("is the port of --listen"), "{e}");
        assert!(config(&["--listen", "127.0.0.1:7000", "--http", "0.0.0.0:7000"]).is_err());
        assert!(config(&["--http", "8080"]).is_ok());
        // Two addresses of their own may share a number.
        assert!(config(&["--listen", "127.0.0.1:7000", "--http", "127.0.0.2:7000"]).is_ok());
    }

    #[test]
    fn server_defaults_match_the_documented_ones() {
        let c = ServerOpts::parse_from(["framelink-server"])
            .config()
            .unwrap();
        assert_eq!(c.max_age, Duration::from_millis(80));
        assert_eq!(c.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_clients, 64);
        assert_eq!(
            ServerOpts::parse_from(["framelink-server"]).listen.port(),
            DEFAULT_PORT
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for q in ["0", "101", "300"] {
            let e = ClientOpts::try_parse_from(["c", "h", "--quality", q])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--quality") && e.contains("1..=100"), "{e}");
        }
        for ms in ["0", "1000000000"] {
            let e = ServerOpts::try_parse_from(["s", "--max-latency-ms", ms])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--max-latency-ms") && e.contains("1..=3600000"),
                "{e}"
            );
        }
        let e = ClientOpts::parse_from(["c", "h", "--quality", "50", "--min-quality", "90"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--min-quality 90 is above --quality 50"), "{e}");
        let e = ServerOpts::parse_from(["s", "--summary-json", "/no/such/folder/s.json"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--summary-json") && e.contains("does not exist"),
            "{e}"
        );
        let e = ServerOpts::parse_from(["s", "--record", "/dev/null"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--record /dev/null"), "{e}");
        for (w, h) in [
            ("65535", "65535"),
            ("8000", "8000"),
            ("9000", "100"),
            ("0", "480"),
        ] {
            let e = ClientOpts::parse_from(["c", "h", "--width", w, "--height", h])
                .config()
                .unwrap_err()
                .to_string();
            assert!(e.contains("--width"), "{w}x{h}: {e}");
        }
        assert!(
            ClientOpts::parse_from(["c", "h", "--width", "4096", "--height", "4096"])
                .config()
                .is_ok()
        );
        let e = ServerOpts::parse_from(["s", "--window", "0"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--window"), "{e}");
        let e = ClientOpts::parse_from(["c", "h", "--duration=-1"])
            .duration()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--duration"), "{e}");
    }

    #[test]
    fn flags_the_source_does_not_use_are_named() {
        let opts = ClientOpts::parse_from(["c", "h", "--source", "frames/", "--quality", "10"]);
        let ignored = opts.ignored_flags(|id| id == "quality");
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        assert!(
            ignored[0].contains("--quality does not apply"),
            "{ignored:?}"
        );
        let opts = ClientOpts::parse_from(["c", "h", "--source", "test-pattern", "--camera", "2"]);
        assert!(opts.ignored_flags(|id| id == "camera")[0].contains("--camera"));
        let opts = ClientOpts::parse_from(["c", "h", "--quality", "10"]);
        assert!(
            opts.ignored_flags(|id| id == "quality").is_empty(),
            "a camera encodes"
        );
    }

    #[test]
    fn source_flag_parses_the_three_kinds() {
        let src = |s: &str| ClientOpts::parse_from(["c", "h", "--source", s]).source;
        assert_eq!(src("camera"), SourceKind::Camera);
        assert_eq!(src("test-pattern"), SourceKind::TestPattern);
        assert_eq!(src("frames/"), SourceKind::Folder("frames/".into()));
    }

    #[test]
    fn encoders_default_to_the_cores_for_an_on_demand_source_only() {
        let threads = |args: &[&str]| {
            let mut all = vec!["c", "h"];
            all.extend(args);
            ClientOpts::parse_from(all).config().unwrap().encode_threads
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
        assert_eq!(threads(&["--fps", "0"]), cores);
        assert_eq!(threads(&[]), 1, "a paced source (30 fps) has one");
        assert_eq!(threads(&["--fps", "0", "--encode-threads", "1"]), 1);
        assert_eq!(threads(&["--encode-threads", "3"]), 3);
        let e = ClientOpts::parse_from(["c", "h", "--encode-threads", "0"])
            .config()
            .unwrap_err();
        assert!(e.to_string().contains("1..=16"), "{e}");
    }
}

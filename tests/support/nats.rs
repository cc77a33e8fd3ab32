//! A real nats-server for the pool tests: started on free loopback ports
//! (client and monitoring), killed when dropped.

use super::WAIT;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    pub port: u16,
    /// The monitoring port (`/varz`).
    pub monitor: u16,
    /// A configuration file to start with (TLS), if any.
    config: Option<std::path::PathBuf>,
    child: Option<Child>,
}

/// The nats-server program: on PATH, or where Debian puts it.
fn program() -> String {
    for p in [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ] {
        if Command::new(p).arg("--version").output().is_ok() {
            return p.to_string();
        }
    }
    panic!(
        "nats-server is not installed: scripts/setup.sh installs it (Debian package nats-server)"
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    pub fn start() -> Self {
        let mut s = NatsServer {
            port: free_port(),
            monitor: free_port(),
            config: None,
            child: None,
        };
        s.restart();
        s
    }

    /// A broker that speaks only TLS, with this certificate and key (PEM);
    /// its configuration file is written into `dir`.
    pub fn start_tls(dir: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> Self {
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let mut s = NatsServer {
            port: free_port(),
            monitor: free_port(),
            config: Some(config),
            child: None,
        };
        s.restart();
        s
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the broker at once (no lame-duck goodbye).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on the same ports and waits until it takes connections.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new(program());
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        let child = cmd
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start within {WAIT:?}"
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// `in_bytes` from the monitoring endpoint: bytes the broker took in.
    pub fn in_bytes(&self) -> u64 {
        let (status, _, body) = super::http_get(
            format!("127.0.0.1:{}", self.monitor).parse().unwrap(),
            "/varz",
        );
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["in_bytes"].as_u64().unwrap()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

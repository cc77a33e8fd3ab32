//! Test helpers: a server on port 0 whose accepted frames can be waited on,
//! a client on its own thread, a delaying TCP proxy, and raw protocol peers.
//! Every wait has a timeout; nothing here sleeps to synchronize.
#![allow(dead_code)]

use crossbeam_channel::{Receiver, Sender};
use framelink::auth::Token;
use framelink::client::{self, ClientConfig, ClientSummary};
use framelink::connection::{self, Reader, Writer};
use framelink::process::Processor;
use framelink::protocol::{Hello, Limits, Message};
use framelink::server::Server;
use framelink::server::{ServerConfig, ServerSummary};
use framelink::shutdown::Shutdown;
use framelink::sink::{FrameView, Sink};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// What a test sees of each accepted frame.
#[derive(Debug, Clone)]
pub struct Seen {
    pub client: String,
    pub frame_id: u64,
    pub age: Duration,
    pub jpeg_len: usize,
    pub width: u16,
    pub height: u16,
    /// When the server accepted it.
    pub at: Instant,
}

/// A sink that reports every frame it is given to the test.
struct ChannelSink(Sender<Seen>);

impl Sink for ChannelSink {
    fn name(&self) -> &str {
        "test-channel"
    }
    fn frame(&mut self, view: &mut FrameView) -> anyhow::Result<()> {
        let f = &view.frame;
        let _ = self.0.try_send(Seen {
            client: f.client_name.to_string(),
            frame_id: f.frame_id,
            age: f.age,
            jpeg_len: f.jpeg.len(),
            width: f.width,
            height: f.height,
            at: f.arrived,
        });
        Ok(())
    }
}

/// Headless server settings for tests: no status lines.
pub fn server_config() -> ServerConfig {
    ServerConfig {
        stats_interval: None,
        ..ServerConfig::default()
    }
}

/// A server running on its own thread.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The live view's address, when started with one.
    pub http: Option<SocketAddr>,
    pub shutdown: Shutdown,
    /// Every frame handed to the sinks (bounded; the oldest are kept).
    pub frames: Receiver<Seen>,
    done: Receiver<anyhow::Result<ServerSummary>>,
    _thread: JoinHandle<()>,
}

impl TestServer {
    pub fn start(config: ServerConfig) -> Self {
        Self::start_with(config, "127.0.0.1:0", Vec::new)
    }

    /// Starts on `addr` (e.g. the port of a server that was stopped), with
    /// extra sinks made on the server's thread by `extra`.
    pub fn start_with(
        config: ServerConfig,
        addr: &str,
        extra: impl FnOnce() -> Vec<Box<dyn Sink>> + Send + 'static,
    ) -> Self {
        Self::launch(config, addr, false, None, extra)
    }

    /// Starts with a live view on its own port.
    pub fn start_http(config: ServerConfig) -> Self {
        Self::launch(config, "127.0.0.1:0", true, None, Vec::new)
    }

    /// Starts with `processor` instead of the one `config` names.
    pub fn start_processor(config: ServerConfig, processor: Box<dyn Processor>) -> Self {
        Self::launch(config, "127.0.0.1:0", false, Some(processor), Vec::new)
    }

    fn launch(
        config: ServerConfig,
        addr: &str,
        http: bool,
        processor: Option<Box<dyn Processor>>,
        extra: impl FnOnce() -> Vec<Box<dyn Sink>> + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind(addr).expect("bind the test server");
        let addr = listener.local_addr().unwrap();
        let http_listener =
            http.then(|| TcpListener::bind("127.0.0.1:0").expect("bind the live view"));
        let http = http_listener.as_ref().map(|l| l.local_addr().unwrap());
        let shutdown = Shutdown::new();
        let (tx, frames) = crossbeam_channel::bounded(100_000);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let sd = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let mut server = Server::new(listener, config).sink(Box::new(ChannelSink(tx)));
            for sink in extra() {
                server = server.sink(sink);
            }
            if let Some(p) = processor {
                server = server.processor(p);
            }
            if let Some(l) = http_listener {
                server = server.live_view(l);
            }
            let _ = done_tx.send(server.run(sd));
        });
        TestServer {
            addr,
            http,
            shutdown,
            frames,
            done,
            _thread: thread,
        }
    }

    /// Waits for the next accepted frame from `client` (any client if None).
    pub fn next_frame(&self, client: Option<&str>) -> Seen {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let seen = self
                .frames
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no frame from {client:?} within {WAIT:?}"));
            if client.is_none_or(|c| c == seen.client) {
                return seen;
            }
        }
    }

    /// Waits for `n` more accepted frames from `client`.
    pub fn wait_frames(&self, client: Option<&str>, n: usize) -> Vec<Seen> {
        (0..n).map(|_| self.next_frame(client)).collect()
    }

    /// Stops the server and returns its summary; fails the test if stopping
    /// takes longer than [`WAIT`].
    pub fn stop(self) -> ServerSummary {
        self.shutdown.trigger();
        self.done
            .recv_timeout(WAIT)
            .expect("server::run returned after shutdown")
            .expect("server ran without error")
    }
}

/// A client running on its own thread.
pub struct TestClient {
    pub shutdown: Shutdown,
    done: Receiver<anyhow::Result<ClientSummary>>,
}

impl TestClient {
    pub fn start(config: ClientConfig) -> Self {
        let shutdown = Shutdown::new();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let sd = shutdown.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(client::run(config, sd));
        });
        TestClient { shutdown, done }
    }

    /// A test-pattern client named `name` streaming to `addr`.
    pub fn pattern(addr: SocketAddr, name: &str, width: u32, height: u32, fps: f64) -> Self {
        let mut c = ClientConfig::test_pattern(addr.to_string(), width, height, fps);
        c.name = name.into();
        Self::start(c)
    }

    pub fn stop(self) -> anyhow::Result<ClientSummary> {
        self.shutdown.trigger();
        self.done
            .recv_timeout(WAIT)
            .expect("client::run returned after shutdown")
    }

    /// The client's result if it ended by itself within [`WAIT`].
    pub fn wait_end(&self) -> anyhow::Result<ClientSummary> {
        self.done
            .recv_timeout(WAIT)
            .expect("client::run ended by itself")
    }
}

/// A raw connection for speaking (or breaking) the protocol by hand.
pub struct RawPeer {
    pub reader: Reader,
    pub writer: Writer,
    pub stream: TcpStream,
}

impl RawPeer {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        connection::configure(&stream, WAIT).unwrap();
        let reader = Reader::new(stream.try_clone().unwrap(), Limits::default());
        let writer = Writer::new(stream.try_clone().unwrap());
        RawPeer {
            reader,
            writer,
            stream,
        }
    }

    /// Reads the server's preface and its first message after the
    /// CHALLENGE, if one comes (None at EOF).
    pub fn read_reply(&mut self) -> Option<Message> {
        self.reader
            .read_preface(Instant::now() + WAIT, &Shutdown::new())
            .expect("server preface");
        match self.read() {
            Some(Message::Challenge(_)) => self.read(),
            other => other,
        }
    }

    /// The handshake as a client named `name` (proving `token` if given):
    /// returns the server's answer to the HELLO, or what it sent instead.
    pub fn hello(&mut self, name: &str, token: Option<&Token>) -> Option<Message> {
        self.writer.send(true, &[]).expect("send the preface");
        self.reader
            .read_preface(Instant::now() + WAIT, &Shutdown::new())
            .expect("server preface");
        let challenge = match self.read() {
            Some(Message::Challenge(c)) => c,
            other => return other,
        };
        let client_nonce = [7u8; 32];
        let hello = Message::Hello(Hello {
            capabilities: 0,
            name: name.into(),
            client_nonce,
            proof: token
                .map(|t| t.hello_proof(&challenge.nonce, &client_nonce))
                .unwrap_or_default(),
        });
        self.writer.send(false, &[&hello]).expect("send HELLO");
        self.read()
    }

    pub fn read(&mut self) -> Option<Message> {
        self.reader
            .read_message(Some(WAIT), WAIT, &Shutdown::new())
            .expect("a message or EOF")
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stream.write_all(bytes).expect("write");
    }
}

/// A GET request to the live view: `(status, head, body)`. Reads to the end
/// (every response but a stream closes its connection).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, WAIT).expect("connect to the live view");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("a whole response");
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, head, all[split + 4..].to_vec())
}

/// Reads lines of JSON from `path` (a client's `--results-jsonl`).
pub fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("the results file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// `framelink-server` as a separate process, so its memory, threads and
/// open files can be read from /proc. Killed if dropped unstopped.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: std::process::Child,
    summary: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the server on a free loopback port with `args` added.
    pub fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Starts the server listening on `listen` with `args` added.
    pub fn start_on(listen: &str, args: &[&str]) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let summary = dir.path().join("summary.json");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_framelink-server"))
            .args(["--listen", listen, "--no-display", "--stats-interval", "0"])
            .arg("--summary-json")
            .arg(&summary)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start framelink-server");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        ServerProcess {
            addr,
            child,
            summary,
            _dir: dir,
        }
    }

    fn status_field(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Resident memory, in KiB.
    pub fn rss_kb(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    pub fn threads(&self) -> u64 {
        self.status_field("Threads:")
    }

    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    /// Kills it outright (SIGKILL): no goodbye, no summary.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it as Ctrl-C does and returns its summary.
    pub fn stop(mut self) -> serde_json::Value {
        // SAFETY: kill(2) with SIGINT on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::park_timeout(Duration::from_millis(20));
        }
        serde_json::from_str(&std::fs::read_to_string(&self.summary).unwrap()).unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Test helpers: a server on port 0 whose accepted frames can be waited on,
//! a client on its own thread, a delaying TCP proxy, and raw protocol peers.
//! Every wait has a timeout; nothing here sleeps to synchronize.
#![allow(dead_code)]

pub mod chromium;
pub mod nats;

use crossbeam_channel::{Receiver, Sender};
use framelink::client::{self, ClientConfig, ClientSummary};
use framelink::process::FrameView;
use framelink::process::Processor;
use framelink::server::sink::Sink;
use framelink::server::Server;
use framelink::server::{ServerConfig, ServerSummary};
use framelink::shutdown::Shutdown;
use framelink::wire::auth::Token;
use framelink::wire::connection::{self, Reader, Writer};
use framelink::wire::{
    Encoding, FrameHeader, Hello, Limits, Message, Outcome, ProcessResult, Ticket,
};
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
    /// The frame's bytes as they arrived.
    pub jpeg: bytes::Bytes,
    pub width: u16,
    pub height: u16,
    /// When the server accepted it.
    pub at: Instant,
}

/// A change of a client's camera, as the server's sinks are told it.
#[derive(Debug, Clone)]
pub struct SourceSeen {
    pub client: String,
    /// Why it is lost; None: it is back.
    pub lost: Option<String>,
    pub at: Instant,
}

/// A sink that reports every frame it is given, and every camera lost and
/// back, to the test.
struct ChannelSink(Sender<Seen>, Sender<SourceSeen>);

impl Sink for ChannelSink {
    fn name(&self) -> &str {
        "test-channel"
    }
    fn source_changed(
        &mut self,
        _client: framelink::process::ClientId,
        name: &str,
        lost: Option<&framelink::server::source_state::LostSource>,
    ) {
        let _ = self.1.try_send(SourceSeen {
            client: name.to_string(),
            lost: lost.map(|l| l.why.clone()),
            at: Instant::now(),
        });
    }
    fn frame(&mut self, view: &mut FrameView) -> anyhow::Result<()> {
        let f = &view.frame;
        let _ = self.0.try_send(Seen {
            client: f.client_name.to_string(),
            frame_id: f.frame_id,
            age: f.age,
            jpeg_len: f.jpeg.len(),
            jpeg: f.jpeg.clone(),
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
    /// Every camera lost and back the sinks were told of.
    pub sources: Receiver<SourceSeen>,
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
        let (sources_tx, sources) = crossbeam_channel::bounded(1_000);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let sd = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let mut server =
                Server::new(listener, config).sink(Box::new(ChannelSink(tx, sources_tx)));
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
            sources,
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

    /// Waits until the sinks are told `client`'s camera is lost (`lost`) or
    /// back, and returns what they were told.
    pub fn wait_source(&self, client: &str, lost: bool) -> SourceSeen {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let seen = self.sources.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "{client}'s camera not said {} within {WAIT:?}",
                    if lost { "lost" } else { "back" }
                )
            });
            if seen.client == client && seen.lost.is_some() == lost {
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

/// `server` with a good client named "good" already streaming to it.
pub fn with_good_client(server: TestServer) -> (TestServer, TestClient) {
    let good = TestClient::pattern(server.addr, "good", 160, 120, 60.0);
    server.wait_frames(Some("good"), 3);
    (server, good)
}

/// The good client is still streaming after the hostile act that ended at
/// `since`: five of its frames accepted after that moment arrive (older
/// ones still queued for the test are passed over).
pub fn good_client_goes_on(server: &TestServer, since: Instant) {
    let mut after = 0;
    while after < 5 {
        if server.next_frame(Some("good")).at > since {
            after += 1;
        }
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

    /// A peer speaking through the browser camera's WebSocket (`/ws/camera`
    /// on the live view at `http`): the library's WebSocket transport, client
    /// side, under the same reader and writer. `stream` is the WebSocket's own socket.
    pub fn websocket(http: SocketAddr) -> Self {
        let (stream, status, head) = ws_upgrade(http, "/ws/camera", &[]);
        assert_eq!(status, 101, "the upgrade is taken: {head}");
        let (plain, _) = framelink::wire::transport::websocket::open(
            framelink::wire::transport::Stream::Tcp(stream.try_clone().unwrap()),
            tungstenite::protocol::Role::Client,
            Vec::new(),
        )
        .unwrap();
        connection::configure_local(&plain, WAIT).unwrap();
        RawPeer {
            reader: Reader::new(plain.try_clone().unwrap(), Limits::default()),
            writer: Writer::new(plain),
            stream,
        }
    }

    /// Connects with a receive buffer of about `bytes`, set before the
    /// handshake so the TCP window stays that small: a slow downlink.
    pub fn connect_small_window(addr: SocketAddr, bytes: usize) -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        socket.connect_timeout(&addr.into(), WAIT).expect("connect");
        let stream: TcpStream = socket.into();
        connection::configure(&stream, WAIT).unwrap();
        RawPeer {
            reader: Reader::new(stream.try_clone().unwrap(), Limits::default()),
            writer: Writer::new(stream.try_clone().unwrap()),
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
        self.hello_with(name, token, 0)
    }

    /// [`hello`](Self::hello) asking for `capabilities` (e.g. `CAP_RESULTS`).
    pub fn hello_with(
        &mut self,
        name: &str,
        token: Option<&Token>,
        capabilities: u32,
    ) -> Option<Message> {
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
            capabilities,
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
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
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

/// Asks the live view at `http` to upgrade `path` to a WebSocket, with
/// `extra` header lines: the socket (read exactly to the end of the
/// response head, so nothing after it is lost), the status and the head.
pub fn ws_upgrade(http: SocketAddr, path: &str, extra: &[&str]) -> (TcpStream, u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&http, WAIT).expect("connect to the live view");
    connection::configure(&s, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut ask = format!(
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        ask.push_str(line);
        ask.push_str("\r\n");
    }
    ask.push_str("\r\n");
    s.write_all(ask.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (s, status, head)
}

/// Reads lines of JSON from `path` (a client's `--results-jsonl`).
pub fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("the results file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The whole lines of JSON written to `path` so far, while a client is
/// still writing it: a last line not yet ended by its newline is left for
/// the next look (none if the file is not there yet).
pub fn json_lines_so_far(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A child process's standard output or error, collected by a thread as it
/// comes, so a test can wait for a line and read everything afterwards.
#[derive(Clone, Default)]
pub struct Collected(std::sync::Arc<(std::sync::Mutex<Lines>, std::sync::Condvar)>);

/// What a [`Collected`] stream said so far, and whether it has ended.
#[derive(Default)]
pub struct Lines {
    text: String,
    ended: bool,
}

impl Collected {
    /// Starts a thread reading `from` to its end.
    pub fn read(from: impl std::io::Read + Send + 'static) -> Self {
        use std::io::BufRead;
        let c = Collected::default();
        let c2 = c.clone();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(from);
            let mut line = String::new();
            loop {
                line.clear();
                let more = matches!(r.read_line(&mut line), Ok(n) if n > 0);
                let mut state = c2.0 .0.lock().unwrap();
                state.text.push_str(&line);
                state.ended = !more;
                c2.0 .1.notify_all();
                if !more {
                    break;
                }
            }
        });
        c
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.0 .0.lock().unwrap().text.clone()
    }

    /// Waits until `done` holds for what was said (and whether the stream
    /// ended), at most `within`; returns the text then, or None.
    fn wait_until(&self, within: Duration, done: impl Fn(&Lines) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut state = self.0 .0.lock().unwrap();
        loop {
            if done(&state) {
                return Some(state.text.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.ended || left.is_zero() {
                return None;
            }
            state = self.0 .1.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Waits until the text contains `needle` and returns it; None when the
    /// stream ended or `within` passed without it.
    pub fn wait_for(&self, needle: &str, within: Duration) -> Option<String> {
        self.wait_until(within, |l| l.text.contains(needle))
    }

    /// Waits for the stream's end (the program closed it or exited), at most
    /// `within`, and returns everything it said.
    pub fn wait_end(&self, within: Duration) -> String {
        self.wait_until(within, |l| l.ended)
            .unwrap_or_else(|| self.text())
    }
}

/// Starts one of our programs with both output streams collected. `limit_as`
/// caps its address space (RLIMIT_AS, bytes): an allocation past it fails
/// as it would on a small machine.
pub fn spawn_program(
    program: &str,
    args: &[&str],
    limit_as: Option<u64>,
    env: &[(&str, &str)],
) -> (std::process::Child, Collected, Collected) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(bytes) = limit_as {
        // SAFETY: setrlimit(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let out = Collected::read(child.stdout.take().unwrap());
    let err = Collected::read(child.stderr.take().unwrap());
    (child, out, err)
}

/// Waits for `child` to exit, at most [`WAIT`]; kills it and fails if not.
pub fn wait_exit(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {WAIT:?}");
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// The address a server printed in its first line ("listening on ADDR; ...").
pub fn listening_address(out: &Collected) -> SocketAddr {
    let text = out
        .wait_for("clients can connect", WAIT)
        .unwrap_or_else(|| panic!("the server printed no address: {:?}", out.text()));
    address_in(&text)
}

/// The address in a server's "listening on ADDR; ..." line.
pub fn address_in(text: &str) -> SocketAddr {
    text.split("listening on ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {text:?}"))
}

/// `framelink-server` as a separate process, so its memory, threads, open
/// files, exit status and output can be checked. Killed if dropped unstopped.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: std::process::Child,
    summary: std::path::PathBuf,
    pub stdout: Collected,
    pub stderr: Collected,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the server on a free loopback port with `args` added.
    pub fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Starts the server listening on `listen` with `args` added.
    pub fn start_on(listen: &str, args: &[&str]) -> Self {
        Self::launch(listen, args, None)
    }

    /// Starts the server with its address space capped at `bytes`.
    pub fn start_limited(bytes: u64, args: &[&str]) -> Self {
        Self::launch("127.0.0.1:0", args, Some(bytes))
    }

    fn launch(listen: &str, args: &[&str], limit_as: Option<u64>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let summary = dir.path().join("summary.json");
        let summary_arg = summary.to_str().unwrap().to_string();
        let mut all = vec![
            "--listen",
            listen,
            "--no-display",
            "--stats-interval",
            "0",
            "--summary-json",
            &summary_arg,
        ];
        all.extend_from_slice(args);
        let (child, stdout, stderr) =
            spawn_program(env!("CARGO_BIN_EXE_framelink-server"), &all, limit_as, &[]);
        let addr = listening_address(&stdout);
        ServerProcess {
            addr,
            child,
            summary,
            stdout,
            stderr,
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (it did not crash).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Kills it outright (SIGKILL): no goodbye, no summary.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it as Ctrl-C does and returns its summary. Fails the test
    /// unless it exits with success and without a panic on standard error.
    pub fn stop(mut self) -> serde_json::Value {
        // SAFETY: kill(2) with SIGINT on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = wait_exit(&mut self.child, "the server");
        // Both streams are read to their end before they are judged.
        self.stdout.wait_end(WAIT);
        let stderr = self.stderr.wait_end(WAIT);
        assert!(
            status.success(),
            "the server exited with {status}; its standard error:\n{}",
            self.stderr.text()
        );
        assert!(
            !stderr.contains("panicked"),
            "the server panicked:\n{stderr}"
        );
        let summary = std::fs::read_to_string(&self.summary).expect("the summary JSON");
        assert!(
            self.stdout.text().contains("summary: "),
            "the text summary is printed: {:?}",
            self.stdout.text()
        );
        serde_json::from_str(&summary).unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The header of a FRAME carrying `payload_len` bytes of a `width` ×
/// `height` JPEG captured just now, answering a ticket just received.
pub fn frame_header(
    frame_id: u64,
    width: u16,
    height: u16,
    payload_len: usize,
) -> framelink::wire::FrameHeader {
    framelink::wire::FrameHeader {
        frame_id,
        encoding: framelink::wire::Encoding::Jpeg,
        width,
        height,
        capture_to_send_us: 0,
        ticket_held_us: 0,
        payload_len: payload_len as u32,
    }
}

/// A real JPEG of `width` × `height` (a gradient), as a camera would send.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    use framelink::media::encode::Encoder;
    let rgb: Vec<u8> = (0..width * height)
        .flat_map(|i| [(i % width) as u8, (i / width) as u8, 90])
        .collect();
    let mut out = Vec::new();
    framelink::media::encode::ImageEncoder::new(80)
        .encode(&rgb, width, height, &mut out)
        .unwrap();
    out
}

/// `jpeg` with its frame header (SOF) claiming `width` × `height`: a few
/// hundred bytes a decoder would allocate gigabytes for.
pub fn claiming(mut jpeg: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC2))
        .expect("a frame header");
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// A FRAME header for a frame captured as it is sent, answering a ticket
/// held since `got` (the client's honest hold, so only the link counts).
pub fn fresh_header(frame_id: u64, jpeg: &[u8], got: Instant) -> FrameHeader {
    FrameHeader {
        frame_id,
        encoding: Encoding::Jpeg,
        width: 64,
        height: 48,
        capture_to_send_us: 0,
        ticket_held_us: got.elapsed().as_micros() as u32,
        payload_len: jpeg.len() as u32,
    }
}

/// Reads until the VERDICT of `frame_id` and a TICKET have come; RESULTs
/// read on the way go to `results`.
pub fn read_until_accepted(
    peer: &mut RawPeer,
    frame_id: u64,
    results: &mut Vec<ProcessResult>,
) -> (Ticket, Instant) {
    let mut verdict = None;
    loop {
        match peer.read() {
            Some(Message::Verdict(v)) if v.frame_id == frame_id => verdict = Some(v.outcome),
            Some(Message::Ticket(t)) if verdict.is_some() => {
                assert_eq!(verdict, Some(Outcome::Accepted), "frame {frame_id}");
                return (t, Instant::now());
            }
            Some(Message::Result(r)) => results.push(r),
            Some(_) => {}
            None => panic!("the server closed the connection"),
        }
    }
}

/// Reads RESULTs until one for `frame_id` has come.
pub fn read_result_of(
    peer: &mut RawPeer,
    frame_id: u64,
    results: &mut Vec<ProcessResult>,
) -> ProcessResult {
    loop {
        if let Some(r) = results.iter().find(|r| r.frame_id == frame_id) {
            return r.clone();
        }
        match peer.read() {
            Some(Message::Result(r)) => results.push(r),
            Some(_) => {}
            None => panic!("the server closed the connection before RESULT {frame_id}"),
        }
    }
}

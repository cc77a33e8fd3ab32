//! Headless Chromium driven through its DevTools protocol: open a page, read
//! what it shows (a JavaScript expression evaluated in it), close the tab.
//! Chromium's fake camera stands in for a device's (a moving test picture).
//! Needs Debian's `chromium` (scripts/setup.sh installs it).

use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// The flags every headless Chromium of the tests runs with: no sandbox or
/// GPU, and none of its own network traffic.
pub const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The longest any one DevTools call may take.
const CALL: Duration = Duration::from_secs(10);

pub struct Chromium {
    child: Child,
    page: WebSocket<TcpStream>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chromium {
    /// Starts Chromium with its fake camera (allowed without asking) on `url`;
    /// `extra` adds flags (e.g. `--ignore-certificate-errors`).
    pub fn open(url: &str, extra: &[&str]) -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args(HEADLESS)
            .args([
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromium is installed (Debian package chromium; scripts/setup.sh installs it)",
            );
        let port = devtools_port(profile.path());
        let page = page_socket(port, url);
        Chromium {
            child,
            page,
            next_id: 1,
            _profile: profile,
        }
    }

    /// One DevTools call on the page; its `result`.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let ask = json!({"id": id, "method": method, "params": params});
        self.page
            .send(Message::text(ask.to_string()))
            .expect("a DevTools call");
        let deadline = Instant::now() + CALL;
        loop {
            assert!(
                Instant::now() < deadline,
                "DevTools did not answer {method}"
            );
            let msg = match self.page.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => panic!("DevTools connection failed during {method}: {e}"),
            };
            let Ok(text) = msg.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy in the page (at most `within`), and
    /// returns its value; panics with `what` and the page's state if not.
    pub fn wait_for(&mut self, expr: &str, within: Duration, what: &str) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(expr);
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let page = self.eval(
                    "JSON.stringify(window.framelinkCamera) + ' | ' + document.body.innerText",
                );
                panic!("{what}: not within {within:?}; the page: {page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Closes the tab (its WebSocket goes with it); Chromium keeps running.
    pub fn close_tab(&mut self) {
        let _ = self.page.send(Message::text(
            json!({"id": 0, "method": "Page.close"}).to_string(),
        ));
    }
}

/// The port Chromium chose, from the file it writes in its profile.
fn devtools_port(profile: &Path) -> u16 {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not start its DevTools"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The DevTools socket of the page showing `url`.
fn page_socket(port: u16, url: &str) -> WebSocket<TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    let ws_url = loop {
        let pages: Value = serde_json::from_slice(&list_pages(addr)).unwrap_or(Value::Null);
        let found = pages.as_array().and_then(|list| {
            list.iter()
                .filter(|p| p["type"] == "page")
                .find(|p| {
                    p["url"]
                        .as_str()
                        .is_some_and(|u| u.starts_with(url.split('?').next().unwrap()))
                })
                .or_else(|| list.iter().find(|p| p["type"] == "page"))
                .and_then(|p| p["webSocketDebuggerUrl"].as_str().map(String::from))
        });
        if let Some(u) = found {
            break u;
        }
        assert!(Instant::now() < deadline, "chromium shows no page: {pages}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    tcp.set_write_timeout(Some(CALL)).unwrap();
    let (ws, _) = tungstenite::client(ws_url.as_str(), tcp).expect("the page's DevTools socket");
    ws
}

/// DevTools' `/json/list` (its HTTP checks that the Host is an address).
fn list_pages(addr: std::net::SocketAddr) -> Vec<u8> {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return Vec::new();
    };
    s.set_read_timeout(Some(CALL)).unwrap();
    let _ = write!(
        s,
        "GET /json/list HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    match all.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => all[at + 4..].to_vec(),
        None => Vec::new(),
    }
}

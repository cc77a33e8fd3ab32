//! The two programs as a user runs them.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Waits for `child` to exit; kills it and fails the test after `support::WAIT`.
fn wait(mut child: Child) -> std::process::Output {
    support::wait_exit(&mut child, "the program");
    child.wait_with_output().unwrap()
}

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framelink-client"))
}

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framelink-server"))
}

#[test]
fn a_missing_camera_is_a_clear_error_naming_the_test_pattern() {
    // Camera 99 exists nowhere; the server address is never tried.
    let out = wait(
        client()
            .args(["--camera", "99", "127.0.0.1:9"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open camera 99"), "{err}");
    assert!(err.contains("--source test-pattern"), "{err}");
}

#[test]
fn server_and_test_pattern_client_as_the_readme_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("s.json");
    let json_arg = json.to_str().unwrap();
    let no_display = [("DISPLAY", ""), ("WAYLAND_DISPLAY", "")];
    let (mut srv, srv_out, srv_err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-server"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--duration",
            "5",
            "--stats-interval",
            "0.5",
            "--summary-json",
            json_arg,
        ],
        None,
        &no_display,
    );
    // The first line names the address to use.
    let addr = support::listening_address(&srv_out).to_string();
    let (mut cli, cli_out, cli_err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-client"),
        &[
            "--source",
            "test-pattern",
            "--width",
            "640",
            "--height",
            "480",
            "--duration",
            "3",
            "--stats-interval",
            "0.5",
            &addr,
        ],
        None,
        &[],
    );
    let status = support::wait_exit(&mut cli, "the client");
    assert!(status.success(), "{}", cli_err.text());
    let cli_out = cli_out.wait_for("summary:", WAIT).expect("a summary");
    // The compact status line: the link's state first, within 100 columns.
    let status_line = cli_out
        .lines()
        .find(|l| l.starts_with("connected"))
        .unwrap_or_else(|| panic!("a status line saying connected: {cli_out}"));
    assert!(status_line.contains("fps ok"), "{status_line}");
    assert!(status_line.chars().count() <= 100, "{status_line}");

    let status = support::wait_exit(&mut srv, "the server");
    assert!(status.success(), "{}", srv_err.text());
    let err = srv_err.text();
    assert!(
        err.contains("running headless"),
        "no display: a notice, not a crash: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = srv_out.wait_for("summary:", WAIT).expect("a summary");
    assert!(out.contains("1 client |"), "{out}");

    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // 30 fps asked for 3 s on 2 cores shared with the server and other
    // tests: most of the rate, and nearly every frame fresh.
    let (accepted, stale) = (
        s["frames_accepted"].as_u64().unwrap(),
        s["frames_dropped_stale"].as_u64().unwrap(),
    );
    assert!(s["fps_accepted"].as_f64().unwrap() >= 15.0, "{s}");
    assert!(stale * 20 <= accepted, "over 5 % stale: {s}");
    assert_eq!(s["clients"][0]["frames_accepted"], s["frames_accepted"]);
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let out = wait(
        server()
            .args(["--window", "0"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--window"));
}

#[test]
fn a_server_without_a_token_says_anyone_can_stream_and_one_with_it_does_not() {
    let run = |token: Option<&str>| {
        let mut cmd = server();
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--no-display",
            "--duration",
            "0.5",
        ])
        .env_remove("FRAMELINK_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.env("FRAMELINK_TOKEN", t);
        }
        let out = wait(cmd.spawn().unwrap());
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let open = run(None);
    assert!(open.contains("anyone who can reach port"), "{open}");
    let guarded = run(Some("s3cret"));
    assert!(!guarded.contains("anyone who can reach port"), "{guarded}");
}

#[test]
fn flags_are_checked_before_the_server_listens() {
    for args in [
        ["--duration", "0"],
        ["--summary-json", "/no/such/folder/s.json"],
        ["--record", "/dev/null"],
    ] {
        let (mut srv, out, err) = support::spawn_program(
            env!("CARGO_BIN_EXE_framelink-server"),
            &[&["--listen", "127.0.0.1:0", "--no-display"], &args[..]].concat(),
            None,
            &[],
        );
        let status = support::wait_exit(&mut srv, "the server");
        err.wait_end(WAIT);
        assert!(!status.success(), "{args:?}");
        assert!(err.text().contains(args[0]), "{args:?}: {}", err.text());
        assert!(
            !out.text().contains("listening"),
            "{args:?}: {}",
            out.text()
        );
        assert!(
            !err.text().contains("no --token"),
            "{args:?}: warned before checking"
        );
    }
}

#[test]
fn a_closed_standard_output_stops_the_status_lines_not_the_programs() {
    use std::io::BufRead;
    // As `framelink-server ... | head -1`: the first line is read, then the
    // pipe closes.
    let mut srv = server()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-display",
            "--stats-interval",
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let srv_err = support::Collected::read(srv.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufReader::new(srv.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap(); // the reader is dropped here: standard output is closed
    let addr = support::address_in(&first).to_string();
    // The client's standard output is closed from the start.
    let cli = client()
        .args(["--width", "160", "--height", "120", "--duration", "2"])
        .args(["--stats-interval", "0.2", "--source", "test-pattern", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cli = cli;
    let cli_err = support::Collected::read(cli.stderr.take().unwrap());
    // A client with a closed pipe (not /dev/null) too.
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into our array; we close the read end and own the write end.
    let w = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1])
    };
    let mut cli2 = client()
        .args(["--width", "160", "--height", "120", "--duration", "2"])
        .args([
            "--stats-interval",
            "0.2",
            "--source",
            "test-pattern",
            "--name",
            "piped",
            &addr,
        ])
        .stdout(w)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cli2_err = support::Collected::read(cli2.stderr.take().unwrap());
    assert!(
        support::wait_exit(&mut cli, "the client").success(),
        "{}",
        cli_err.text()
    );
    let status = support::wait_exit(&mut cli2, "the client with a closed pipe");
    assert!(status.success(), "{}", cli2_err.text());
    assert!(
        cli2_err.text().contains("cannot write to standard output"),
        "{}",
        cli2_err.text()
    );
    // The server went on serving both, warned once, and stops cleanly.
    srv_err
        .wait_for("cannot write to standard output", WAIT)
        .expect("one warning");
    // SAFETY: kill(2) with SIGINT on our own child.
    unsafe { libc::kill(srv.id() as i32, libc::SIGINT) };
    let status = support::wait_exit(&mut srv, "the server");
    srv_err.wait_end(WAIT);
    let err = srv_err.text();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.matches("cannot write to standard output").count(),
        1,
        "{err}"
    );
    assert!(err.contains("connected: piped"), "{err}");
}

#[test]
fn flags_the_source_does_not_use_are_named_not_silently_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001.jpg"), support::jpeg(32, 24)).unwrap();
    let folder = dir.path().to_str().unwrap();
    let (mut cli, _out, err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-client"),
        &[
            "--source",
            folder,
            "--quality",
            "10",
            "--width",
            "1920",
            "127.0.0.1:9",
        ],
        None,
        &[],
    );
    // No server is needed to be told: the warnings come before any
    // connection, --width's first and --quality's last.
    let said = err
        .wait_for("--quality does not apply", WAIT)
        .unwrap_or_else(|| err.text());
    let _ = cli.kill();
    let _ = cli.wait();
    assert!(said.contains("--quality does not apply"), "{said}");
    assert!(said.contains("--width does not apply"), "{said}");
    assert!(
        !said.contains("--height does not apply"),
        "only flags given: {said}"
    );
}

#[test]
fn a_client_that_is_always_refused_exits_with_an_error_and_the_server_warns_once() {
    let server = support::ServerProcess::start(&["--token", "right-token"]);
    let addr = server.addr.to_string();
    let run_client = || {
        support::spawn_program(
            env!("CARGO_BIN_EXE_framelink-client"),
            &[
                "--source",
                "test-pattern",
                "--token",
                "wrong-token",
                "--duration",
                "1",
                "--stats-interval",
                "0.2",
                &addr,
            ],
            None,
            &[],
        )
    };
    // Two runs from the same address: each refused.
    for _ in 0..2 {
        let (mut cli, out, err) = run_client();
        let status = support::wait_exit(&mut cli, "the client");
        let err = err.wait_end(WAIT);
        let out = out.wait_end(WAIT);
        assert!(!status.success(), "nothing was ever accepted: {err}");
        assert!(err.contains("no connection to"), "{err}");
        assert!(err.contains("token"), "the reason is named: {err}");
        assert!(out.contains("summary: "), "the summary still comes: {out}");
        assert!(
            out.contains("refused"),
            "the status line says refused: {out}"
        );
    }
    let stderr = server.stderr.clone();
    server.stop();
    let warnings = stderr
        .text()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("wrong token"))
        .count();
    assert_eq!(
        warnings,
        1,
        "once per address and reason: {}",
        stderr.text()
    );
}

#[test]
fn a_link_slower_than_the_threshold_is_named_once_in_both_programs() {
    use framelink::testkit::delay_proxy::DelayProxy;
    let server = support::ServerProcess::start(&["--max-latency-ms", "50"]);
    // 40 ms each way: the round trip alone is 80 ms, over 50.
    let link = DelayProxy::start(server.addr, std::time::Duration::from_millis(40)).unwrap();
    let (mut cli, _out, err) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-client"),
        &[
            "--source",
            "test-pattern",
            "--adapt",
            "off",
            "--stats-interval",
            "0",
            &link.addr.to_string(),
        ],
        None,
        &[],
    );
    let said = err
        .wait_for("round trip alone", WAIT)
        .unwrap_or_else(|| panic!("the client names the link: {}", err.text()));
    assert!(said.contains("--max-latency-ms of 1"), "{said}");
    server
        .stderr
        .wait_for("round trip alone", WAIT)
        .unwrap_or_else(|| panic!("the server names the link: {}", server.stderr.text()));
    // SAFETY: kill(2) with SIGINT on our own child.
    unsafe { libc::kill(cli.id() as i32, libc::SIGINT) };
    support::wait_exit(&mut cli, "the client");
    let text = server.stderr.clone();
    server.stop();
    assert_eq!(text.text().matches("round trip alone").count(), 1, "once");
}

#[test]
fn every_flag_can_be_given_in_the_environment_and_the_command_line_wins() {
    let env = [
        ("FRAMELINK_LISTEN", "127.0.0.1:0"),
        ("FRAMELINK_HTTP", "127.0.0.1:0"),
        ("FRAMELINK_MAX_LATENCY_MS", "7"),
        ("FRAMELINK_NO_DISPLAY", "true"),
        ("FRAMELINK_STATS_INTERVAL", "0"),
        ("FRAMELINK_WINDOW", "3"),
    ];
    let (mut child, stdout, _stderr) = support::spawn_program(
        env!("CARGO_BIN_EXE_framelink-server"),
        &["--window", "5"],
        None,
        &env,
    );
    let said = stdout
        .wait_for("live view: http://", WAIT)
        .expect("the live view's address is printed");
    let http: std::net::SocketAddr = said
        .lines()
        .find_map(|l| l.strip_prefix("live view: http://"))
        .and_then(|l| l.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("the live view's address");
    let (_, _, body) = support::http_get(http, "/stats.json");
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(stats["max_age_ms"], 7.0, "{stats}");
    // The window is the command line's 5, not the environment's 3.
    let addr = support::listening_address(&stdout);
    let mut peer = support::RawPeer::connect(addr);
    match peer.hello("env", None) {
        Some(framelink::wire::Message::Welcome(w)) => assert_eq!(w.window, 5),
        other => panic!("expected WELCOME, got {other:?}"),
    }
    let _ = child.kill();
    let _ = child.wait();
    // --help says so.
    let help = wait(
        server()
            .arg("--help")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[env: FRAMELINK_MAX_LATENCY_MS="), "{help}");
}

#[test]
fn man_pages_and_completions_come_from_the_same_flags() {
    for (program, flag) in [
        (env!("CARGO_BIN_EXE_framelink-server"), "max-latency-ms"),
        (env!("CARGO_BIN_EXE_framelink-client"), "encode-threads"),
    ] {
        let man = wait(
            Command::new(program)
                .args(["--generate", "man"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        assert!(man.status.success());
        let man = String::from_utf8_lossy(&man.stdout);
        assert!(man.contains(".TH framelink-"), "a man page: {man}");
        assert!(
            man.contains(&flag.replace('-', "\\-")),
            "{flag} in the man page"
        );
        assert!(man.contains("FRAMELINK_"), "the environment variables too");
        for shell in ["bash", "zsh", "fish"] {
            let out = wait(
                Command::new(program)
                    .args(["--generate", shell])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            assert!(out.status.success(), "{shell}");
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(flag),
                "{shell} completes --{flag}"
            );
        }
    }
}

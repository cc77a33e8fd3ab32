"""Fixtures of framelink's Python tests: the programs built by cargo, a
delaying TCP link, and subprocesses that are always reaped.

Every wait has a timeout: a test that fails does so in seconds, never hangs.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from delaylink import DelayLink

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("FRAMELINK_BIN_DIR", ROOT / "target" / "debug"))

# How long any single wait in these tests may take before it fails.
WAIT = 20.0


def program(name):
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build --bins` first (or set FRAMELINK_BIN_DIR)")
    return str(path)


class Programs:
    """Starts framelink's programs and reaps them at the end of the test."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.children = []

    def start(self, name, *args, **popen):
        popen.setdefault("stdout", subprocess.DEVNULL)
        popen.setdefault("stderr", subprocess.PIPE)
        child = subprocess.Popen([program(name), *map(str, args)], **popen)
        self.children.append(child)
        return child

    def client(self, address, *args):
        """framelink-client from the test pattern; returns (process, results file)."""
        results = self.tmp_path / f"results-{len(self.children)}.jsonl"
        child = self.start(
            "framelink-client", address, "--source", "test-pattern",
            "--results-jsonl", results, "--stats-interval", "0", *args,
        )
        return child, results

    def python(self, script, *args, **popen):
        """A Python child running `script` (the test's own interpreter)."""
        path = self.tmp_path / f"script-{len(self.children)}.py"
        path.write_text(script)
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        popen.setdefault("text", True)
        child = subprocess.Popen([sys.executable, *args, str(path)], **popen)
        self.children.append(child)
        return child

    def close(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=WAIT)
            for stream in (child.stdout, child.stderr, child.stdin):
                if stream:
                    stream.close()


@pytest.fixture
def programs(tmp_path):
    p = Programs(tmp_path)
    yield p
    p.close()


def finished(child, timeout=WAIT):
    """Waits for a child; returns its stderr (text). Fails if it did not end."""
    try:
        _, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        _, err = child.communicate(timeout=WAIT)
        pytest.fail(f"the child did not end within {timeout} s; its stderr:\n{err}")
    return err.decode() if isinstance(err, bytes) else (err or "")


def first_line(child, timeout=WAIT):
    """The child's next line of output; fails (killing it) if none comes in time."""
    line = []
    reader = threading.Thread(target=lambda: line.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not line:
        child.kill()
        pytest.fail(f"no line of output within {timeout} s; stderr:\n{finished(child)}")
    return line[0]


def results_of(path):
    """The --results-jsonl lines of a client, as dicts."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def take(source, timeout=WAIT):
    """The next frame of a server or worker; fails when none comes in time."""
    frame = source.take(timeout=timeout)
    if frame is None:
        pytest.fail(f"no frame within {timeout} s")
    return frame


@pytest.fixture
def delay_link():
    links = []

    def make(target, delay):
        link = DelayLink(target, delay)
        links.append(link)
        return link

    yield make
    for link in links:
        link.close()


def rust_server(programs, *args):
    """framelink-server on a free loopback port; returns (process, address)."""
    child = programs.start(
        "framelink-server", "--listen", "127.0.0.1:0", "--no-display",
        "--stats-interval", "0", *args, stdout=subprocess.PIPE, text=True,
    )
    line = first_line(child)
    if "listening on " not in line:
        pytest.fail(f"framelink-server printed no address: {line!r} {finished(child)}")
    return child, line.split("listening on ")[1].split(";")[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nats_url(programs):
    """A real nats-server on a free loopback port, taking connections."""
    path = next(
        (p for p in (shutil.which("nats-server"), "/usr/sbin/nats-server", "/usr/bin/nats-server")
         if p and os.path.exists(p)),
        None,
    )
    if path is None:
        pytest.fail("nats-server is missing: scripts/setup.sh installs it (Debian package nats-server)")
    port = free_port()
    child = subprocess.Popen(
        [path, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    programs.children.append(child)
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or child.poll() is not None:
                pytest.fail("nats-server did not start")
            time.sleep(0.02)  # polling a port that is not open yet
    return f"nats://127.0.0.1:{port}"

"""framelink in a Python program's life: Ctrl-C interrupts every blocking
call at once, and nothing is left behind (threads, sockets, warnings)."""

import signal

import pytest

from conftest import WAIT, first_line

BLOCKED = {
    "for frame in server": "for frame in server: pass",
    "server.take()": "server.take()",
    "client.results()": "for r in client.results(): pass",
    "worker.take()": "worker.take()",
}


# Says "ready" once the main thread is at the blocking line (the call
# releases the GIL, so this thread runs while it waits).
ANNOUNCE = """
import sys, threading, time
def announce(line):
    main = threading.main_thread().ident
    while sys._current_frames()[main].f_lineno != line:
        time.sleep(0.001)
    print("ready", flush=True)
"""


def blocked_at(script, call):
    """`script` whose main thread announces itself at `call`'s line."""
    line = ANNOUNCE.count("\n") + 1 + script.splitlines().index(call)
    start = f'threading.Thread(target=announce, args=({line},), daemon=True).start()'
    return ANNOUNCE + script.replace("START", start)


@pytest.mark.parametrize("call", BLOCKED)
def test_ctrl_c_interrupts_a_blocked_call(programs, nats_url, call):
    child = programs.python(blocked_at(f"""import framelink
server = framelink.Server(listen="127.0.0.1:0")
client = framelink.Client(server.address)
worker = framelink.Worker({nats_url!r})
START
try:
    {BLOCKED[call]}
except KeyboardInterrupt:
    print("interrupted", flush=True)
for part in (client, worker, server):
    part.close()
print("closed", flush=True)
""", f"    {BLOCKED[call]}"))
    assert first_line(child) == "ready\n"
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=WAIT)
    assert out == "interrupted\nclosed\n", err
    assert child.returncode == 0, err


def test_an_uncaught_ctrl_c_ends_the_program(programs):
    child = programs.python(blocked_at("""import framelink
with framelink.Server(listen="127.0.0.1:0") as server:
    START
    for frame in server:
        pass
""", "    for frame in server:"))
    assert first_line(child) == "ready\n"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=WAIT)
    assert child.returncode != 0
    assert "KeyboardInterrupt" in err, err


def test_no_resource_warnings_and_an_unclosed_server_does_not_hold_the_exit(programs):
    child = programs.python("""
import gc, numpy as np, framelink
with framelink.Server(listen="127.0.0.1:0") as server:
    with framelink.Client(server.address) as client:
        client.send(np.zeros((48, 64, 3), np.uint8))
        frame = server.take(timeout=20)
        frame.to_numpy(); frame.jpeg
        frame.reply({"ok": 1})
        next(client.results(timeout=20))
# Left open: the program ends all the same, its threads stopped.
left = framelink.Server(listen="127.0.0.1:0")
other = framelink.Client(left.address)
other.send(np.zeros((48, 64, 3), np.uint8))
left.take(timeout=20)
gc.collect()
print("done", flush=True)
""", "-X", "dev", "-W", "error")
    out, err = child.communicate(timeout=WAIT)
    assert child.returncode == 0, err
    assert out == "done\n"
    for bad in ("ResourceWarning", "Exception ignored", "panicked", "Traceback"):
        assert bad not in err, err

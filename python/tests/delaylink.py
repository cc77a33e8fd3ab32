"""A TCP proxy that delays every byte by a fixed time each way: what a slow
radio link does to latency (this kernel has no netem). Used by the tests
and by scripts/bench_python.py."""

import queue
import socket
import threading
import time

WAIT = 20.0


class DelayLink:
    """A TCP proxy that delays every byte by `delay` seconds each way (the
    kernel here has no netem): what a slow radio link does to latency."""

    def __init__(self, target, delay):
        self.target = target
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            host, port = self.target.rsplit(":", 1)
            try:
                up = socket.create_connection((host, int(port)), timeout=WAIT)
            except OSError:
                conn.close()  # nothing listens there (yet): as a refused connection
                continue
            # Each delayed chunk goes out at once (as a router forwards it).
            for sock in (conn, up):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for a, b in ((conn, up), (up, conn)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src, dst):
        chunks = queue.Queue()

        def writer():
            while True:
                due, data = chunks.get()
                if data is None:
                    break
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                try:
                    dst.sendall(data)
                except OSError:
                    break
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        src.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            chunks.put((time.monotonic() + self.delay, data))
        chunks.put((0, None))
        w.join(timeout=WAIT)
        src.close()

    def close(self):
        self.stopping.set()
        self.listener.close()
        for t in self.threads:
            t.join(timeout=WAIT)

"""Hostile and broken clients against one `openbatch serve` on 127.0.0.1
(see bench/README.md, `bench/hostile.sh`).

1. Latency of a normal signed GET (p50/p99, keep-alive) with no other
   connections, then with 2,000 idle connections and 2,000 slow ones open
   (1,000 trickling a request head, 1,000 trickling a signed request's
   body, a byte a second each).
2. The server's peak RSS (VmHWM, reset through /proc/<pid>/clear_refs
   before the phase) while 400 unauthenticated clients each send a 4 MB
   body slowly (64 KiB every 50 ms), next to the idle server's RSS.

Usage: hostile.py BIN [--quick]. Prints a table; nothing is asserted.
"""
import asyncio
import base64
import hashlib
import hmac
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from email.utils import formatdate

ACCOUNT = "benchacct"
KEY = base64.b64encode(os.urandom(32)).decode()
V = "api-version=2025-06-01"


def sign(method, path, headers, key=KEY):
    h = {k.lower(): v for k, v in headers.items()}
    parts = [method] + [h.get(n, "") for n in (
        "content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
        "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")]
    s = "\n".join(parts) + "\n" + "".join(f"{k}:{h[k]}\n" for k in sorted(h) if k.startswith("ocp-"))
    s += f"/{ACCOUNT}{path}\napi-version:2025-06-01"
    sig = base64.b64encode(hmac.new(base64.b64decode(key), s.encode(), hashlib.sha256).digest()).decode()
    return f"SharedKey {ACCOUNT}:{sig}"


def head(method, path, length=None, key=KEY):
    h = {"ocp-date": formatdate(usegmt=True), "Host": "127.0.0.1"}
    if length is not None:
        h["Content-Length"] = str(length)
        h["Content-Type"] = "application/json; odata=minimalmetadata"
    h["Authorization"] = sign(method, path, h, key)
    return (f"{method} {path}?{V} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode()


async def read_response(reader):
    line = await reader.readline()
    status = int(line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.lower() == "content-length":
            length = int(v)
    await reader.readexactly(length)
    return status


async def latencies(port, n):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        writer.write(head("GET", "/jobs"))
        status = await read_response(reader)
        out.append((time.perf_counter() - t) * 1000)
        assert status == 200, status
    writer.close()
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def proc_status(pid):
    d = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                d[k] = int(v.split()[0])
    return d


def reset_peak(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Crowd:
    """Idle and slow connections, kept at their numbers while running."""

    def __init__(self, port, idle, slow_heads, slow_bodies):
        self.port = port
        self.want = {"idle": idle, "head": slow_heads, "body": slow_bodies}
        self.conns = {k: [] for k in self.want}
        self.cut = {k: 0 for k in self.want}
        self.stop = False

    async def open_one(self, kind):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return
        if kind == "head":
            w.write(b"GET /jobs?" + V.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        elif kind == "body":
            w.write(head("POST", "/jobs", 4_000_000))
        self.conns[kind].append((r, w))

    async def fill(self):
        for kind, n in self.want.items():
            missing = n - len(self.conns[kind])
            for i in range(0, missing, 200):
                await asyncio.gather(*(self.open_one(kind) for _ in range(min(200, missing - i))))

    async def tick(self):
        """A byte a second on every slow connection; counts and replaces
        connections the server closed."""
        while not self.stop:
            for kind in self.want:
                alive = []
                for r, w in self.conns[kind]:
                    if r.at_eof() or w.is_closing():
                        self.cut[kind] += 1
                        w.close()
                        continue
                    if kind == "head":
                        w.write(b"x")
                    elif kind == "body":
                        w.write(b" ")
                    alive.append((r, w))
                self.conns[kind] = alive
            await self.fill()
            await asyncio.sleep(1)

    def open_counts(self):
        return {k: len(v) for k, v in self.conns.items()}

    def close(self):
        self.stop = True
        for v in self.conns.values():
            for _, w in v:
                w.close()


async def unauthenticated_upload(port, size, chunk, pause, answered):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    w.write(head("POST", "/jobs", size, key=base64.b64encode(b"not the key").decode()))
    reader = asyncio.ensure_future(read_response(r))
    sent = 0
    block = b" " * chunk
    try:
        while sent < size:
            w.write(block[: size - sent])
            await w.drain()
            sent += chunk
            await asyncio.sleep(pause)
    except (OSError, asyncio.IncompleteReadError):
        pass
    try:
        status = await asyncio.wait_for(reader, 10)
        answered[status] = answered.get(status, 0) + 1
    except Exception:
        answered["none"] = answered.get("none", 0) + 1
    w.close()


class Server:
    """`openbatch serve` on a free loopback port, in a temporary directory."""

    def __init__(self, bin_path):
        self.bin_path = bin_path

    def __enter__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="openbatch-hostile-")
        d = self.dir.name
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.log = open(os.path.join(d, "server.log"), "wb")
        self.proc = subprocess.Popen([self.bin_path, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir",
                                      os.path.join(d, "data"), "--account", ACCOUNT, "--key", KEY],
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.proc.stdout.readline()
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.dir.cleanup()


async def main(bin_path, quick):
    scale = 10 if quick else 1
    n_get = 300 // (2 if quick else 1)
    idle_n, slow_n, uploads = 2000 // scale, 1000 // scale, 400 // scale
    rows = []
    with Server(bin_path) as srv:
        port, pid = srv.port, srv.proc.pid
        await latencies(port, 50)  # warm up
        quiet = await latencies(port, n_get)
        rows.append(("GET /jobs, no other connections", f"p50 {pct(quiet, 50):.2f} ms, p99 {pct(quiet, 99):.2f} ms"))
        crowd = Crowd(port, idle_n, slow_n, slow_n)
        t = time.time()
        await crowd.fill()
        opened = time.time() - t
        ticker = asyncio.ensure_future(crowd.tick())
        await asyncio.sleep(1.5)
        before = crowd.open_counts()
        fds = open_fds(pid)
        busy = await latencies(port, n_get)
        after = crowd.open_counts()
        rows.append((f"GET /jobs, {idle_n} idle + {2 * slow_n} slow connections open",
                     f"p50 {pct(busy, 50):.2f} ms, p99 {pct(busy, 99):.2f} ms"))
        rows.append(("  connections open (idle/head/body) before, after",
                     f"{before['idle']}/{before['head']}/{before['body']}, {after['idle']}/{after['head']}/{after['body']}"
                     f" (server fds {fds}; opening took {opened:.1f} s)"))
        rows.append(("  server RSS with them open", f"{proc_status(pid)['VmRSS'] / 1024:.1f} MiB"))
        crowd.close()
        ticker.cancel()
    # A fresh server: its idle RSS, then its peak under the uploads.
    with Server(bin_path) as srv:
        port, pid = srv.port, srv.proc.pid
        await latencies(port, 50)
        idle_rss = proc_status(pid)["VmRSS"]
        peak_reset = reset_peak(pid)
        answered = {}
        t = time.time()
        await asyncio.gather(*(unauthenticated_upload(port, 4_000_000, 65536, 0.05, answered) for _ in range(uploads)))
        took = time.time() - t
        st = proc_status(pid)
        rows.append(("idle server RSS (a fresh server)", f"{idle_rss / 1024:.1f} MiB"))
        rows.append((f"peak RSS, {uploads} unauthenticated 4 MB uploads at 1.25 MiB/s each",
                     f"{st['VmHWM'] / 1024:.1f} MiB" + ("" if peak_reset else " (process peak: clear_refs not permitted)")))
        rows.append(("  their answers", f"{dict(sorted(answered.items(), key=str))} in {took:.1f} s"))
        still = await latencies(port, 20)
        rows.append(("GET /jobs afterwards", f"p50 {pct(still, 50):.2f} ms"))
    width = max(len(r[0]) for r in rows)
    print(f"openbatch hostile-client bench ({bin_path})")
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--quick" in sys.argv[2:]))

"""Shared fixtures: a real `openbatch serve` process on a free port.

The suites in v15/ and v14/ drive it with the official SDKs; common/ uses the
raw signed client in rawclient.py for what the SDKs cannot send.
"""
import base64
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("OPENBATCH_BIN", os.path.join(HERE, "..", "..", "target", "release", "openbatch"))
ACCOUNT = "compatacct"
KEY = base64.b64encode(os.urandom(32)).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One openbatch server; restartable on the same data directory."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.account = ACCOUNT
        self.key = KEY
        self.proc = None
        self.log = open(os.path.join(data_dir, "server.log"), "ab")

    def start(self):
        assert os.path.exists(BIN), f"openbatch binary not found at {BIN}; build it first"
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
             "--account", self.account, "--key", self.key],
            stdout=subprocess.PIPE, stderr=self.log,
        )
        deadline = time.time() + 20
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if b"http://" in line:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"openbatch exited with {self.proc.returncode}")
        assert f"http://127.0.0.1:{self.port}".encode() in line, line
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("openbatch did not start listening")

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self, kill=False):
        self.stop(kill=kill)
        self.start()


# Pools without nodes that the job and task tests name (jobs must name a pool
# that exists); their tasks are never run.
IDLE_POOLS = ("nopool", "p")


@pytest.fixture(scope="session")
def server():
    from rawclient import Raw
    with tempfile.TemporaryDirectory(prefix="openbatch-compat-") as d:
        s = Server(d)
        s.start()
        raw = Raw(s.endpoint, s.account, s.key)
        for pool in IDLE_POOLS:
            r = raw.request("POST", "/pools", {"id": pool, "vmSize": "standard_d2s_v3"})
            assert r.status_code == 201, r.text
        yield s
        s.stop()


@pytest.fixture
def uid():
    """Unique ids, so tests sharing the session server never collide."""
    def make(prefix="x"):
        return f"{prefix}-{uuid.uuid4().hex[:10]}"
    return make


def wait_for(pred, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")

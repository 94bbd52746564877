"""Shared fixtures: a real `openbatch serve` process on a free port.

The suites in v15/ and v14/ drive it with the official SDKs; common/ uses the
raw signed client in rawclient.py for what the SDKs cannot send. The data
tests also use `azurite` (the Azure Storage emulator standing in for Blob
Storage) and `http_files` (a plain HTTP file server). The dashboard's
browser tests in ui/ share `ui_pool`, `ui_scaled_pool` and the screenshot
directory (their last section).
"""
import base64
import contextlib
import datetime
import functools
import http.server
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

import slurmcluster

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("OPENBATCH_BIN", os.path.join(HERE, "..", "..", "target", "release", "openbatch"))
ACCOUNT = "compatacct"
KEY = base64.b64encode(os.urandom(32)).decode()
# A PostgreSQL server (URL of a database to create others from): every
# Server then keeps its state in a fresh database there (`--database`)
# instead of SQLite in its data directory. tests/compat/run.sh sets it for
# its PostgreSQL pass.
TEST_DATABASE = os.environ.get("OPENBATCH_TEST_DATABASE")


def fresh_database():
    """Creates an empty database on the OPENBATCH_TEST_DATABASE server; its URL."""
    name = "compat_" + uuid.uuid4().hex
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", TEST_DATABASE, "-c", f"CREATE DATABASE {name}"],
                   check=True, stdout=subprocess.DEVNULL)
    base, _, query = TEST_DATABASE.partition("?")
    scheme, _, rest = base.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{name}" + (f"?{query}" if query else "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One openbatch server; restartable on the same data directory (and,
    under OPENBATCH_TEST_DATABASE, the same PostgreSQL database)."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.account = ACCOUNT
        self.key = KEY
        self.proc = None
        self.log = open(os.path.join(data_dir, "server.log"), "ab")
        self.database = fresh_database() if TEST_DATABASE else None

    def start(self):
        assert os.path.exists(BIN), f"openbatch binary not found at {BIN}; build it first"
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
             "--account", self.account, "--key", self.key,
             *(["--database", self.database] if self.database else []), *self.extra_args],
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


def batch_client(server):
    """A 15.x SDK client of `server` (imported here: the 14.x virtualenv has
    another `azure.batch`)."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential
    return BatchClient(endpoint=server.endpoint, credential=AzureNamedKeyCredential(server.account, server.key))


@pytest.fixture(scope="module")
def client(server):
    """A 15.x client of the session server for the module (modules that need
    another server or the 14.x SDK define their own)."""
    return batch_client(server)


@pytest.fixture
def job(client, pool, uid):
    """A job on the module's `pool` fixture, ended after the test."""
    from azure.batch import models
    jid = uid("job")
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pool)))
    yield jid
    end_job(client, jid)


def end_job(client, job_id):
    """Terminates a job through a 15.x client without its poller (the raw
    request); a job that already completed is left as it is."""
    from azure.batch.models import _models as internal
    from azure.core.exceptions import HttpResponseError
    try:
        client._terminate_job_internal(job_id, internal.BatchJobTerminateOptions(termination_reason="cleanup"))
    except HttpResponseError:
        pass  # already completed


def start_pool(client, pool_id, nodes=1, timeout=20, vm_size="standard_d2s_v3", **options):
    """Creates a pool of `nodes` local nodes through a 15.x client and waits
    until all of them are idle."""
    from azure.batch import models
    client.create_pool(models.BatchPoolCreateOptions(id=pool_id, vm_size=vm_size, target_dedicated_nodes=nodes, **options))
    idle = lambda: len([n for n in client.list_nodes(pool_id) if n.state == models.BatchNodeState.IDLE]) == nodes  # noqa: E731
    wait_for(idle, timeout=timeout, what=f"{nodes} idle node(s) in {pool_id}")


def wait_for(pred, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


# --- storage: Azurite and a plain HTTP file server --------------------------

AZURITE_BIN = os.environ.get("AZURITE_BIN", os.path.join(HERE, "node", "node_modules", ".bin", "azurite-blob"))
# Azurite's well-known development account.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite:
    """One Azurite blob service; the blob SDK is imported lazily so that
    conftest also loads in a virtualenv without it."""

    def __init__(self, port):
        self.port = port
        self.account = AZURITE_ACCOUNT
        self.key = AZURITE_KEY
        self.endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        self.connection_string = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                                  f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint};")

    @functools.cached_property
    def service(self):
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient.from_connection_string(self.connection_string)

    def container(self, name):
        """Creates the container `name`; returns its ContainerClient."""
        return self.service.create_container(name)

    def sas_url(self, container, perms="rl"):
        """The container's URL with a container SAS granting `perms` (any of
        racwdl, in any order); the container need not exist."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas
        sas = generate_container_sas(self.account, container, account_key=self.key,
                                     permission=ContainerSasPermissions.from_string(perms), expiry=self._expiry())
        return f"{self.endpoint}/{container}?{sas}"

    def blob_sas_url(self, container, blob, perms="r"):
        """One blob's URL with a blob SAS (the httpUrl style)."""
        from urllib.parse import quote
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas
        sas = generate_blob_sas(self.account, container, blob, account_key=self.key,
                                permission=BlobSasPermissions.from_string(perms), expiry=self._expiry())
        return f"{self.endpoint}/{container}/{quote(blob)}?{sas}"

    @staticmethod
    def _expiry():
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)


@contextlib.contextmanager
def running_azurite(directory):
    """Runs Azurite's blob service with its data in `directory`; yields an
    `Azurite` (also used by bench/data.py)."""
    assert os.access(AZURITE_BIN, os.X_OK), f"Azurite not found at {AZURITE_BIN} (run.sh installs it: npm ci in tests/compat/node)"
    port = free_port()
    log = open(os.path.join(directory, "azurite.log"), "ab")
    # --skipApiVersionCheck: azure-storage-blob 12.31.1 sends a newer
    # x-ms-version than Azurite 3.35.0 knows.
    proc = subprocess.Popen(
        [AZURITE_BIN, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", os.path.join(directory, "data"),
         "--silent", "--disableTelemetry", "--skipApiVersionCheck"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None, f"Azurite exited with {proc.returncode}; see {directory}/azurite.log"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.time() < deadline, "Azurite did not start listening"
                time.sleep(0.1)
        yield Azurite(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def azurite():
    with tempfile.TemporaryDirectory(prefix="openbatch-azurite-") as d:
        with running_azurite(d) as a:
            yield a


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def http_files():
    """A plain HTTP server on loopback serving a fresh directory: yields
    (base_url, directory); files written to the directory are served at
    base_url + "/" + name."""
    with tempfile.TemporaryDirectory(prefix="openbatch-http-") as d:
        handler = functools.partial(_QuietFiles, directory=d)
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.server_address[1]}", d
        finally:
            srv.shutdown()
            srv.server_close()


# --- a private Docker engine for container tasks -----------------------------

DOCKER_IMAGE = "localhost/busybox:test"


@pytest.fixture(scope="session")
def docker_engine():
    """Starts a private dockerd (Debian's docker.io, through runc; no
    registry is reachable) and imports a test image built from Debian's
    static busybox; yields its DOCKER_HOST. scripts/test installs both."""
    import shutil
    dockerd, busybox = shutil.which("dockerd"), "/bin/busybox"
    if os.geteuid() != 0 or not dockerd or not os.path.exists(busybox):
        pytest.skip("container tests need root, dockerd and busybox-static (scripts/test installs them)")
    client = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
    with tempfile.TemporaryDirectory(prefix="openbatch-docker-") as d:
        sock = os.path.join(d, "docker.sock")
        log = open(os.path.join(d, "dockerd.log"), "ab")
        proc = subprocess.Popen([dockerd, "--iptables=false", "--bridge=none", "--data-root", os.path.join(d, "data"),
                                 "--exec-root", os.path.join(d, "exec"), "--pidfile", os.path.join(d, "docker.pid"),
                                 "-H", f"unix://{sock}"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        host = f"unix://{sock}"
        env = dict(os.environ, DOCKER_HOST=host)
        try:
            deadline = time.time() + 30
            while subprocess.run([client, "info"], env=env, capture_output=True).returncode != 0:
                assert proc.poll() is None, f"dockerd exited; see {d}/dockerd.log"
                assert time.time() < deadline, "dockerd did not start"
                time.sleep(0.2)
            rootfs = os.path.join(d, "rootfs")
            os.makedirs(os.path.join(rootfs, "bin"))
            os.makedirs(os.path.join(rootfs, "tmp"))
            shutil.copy(busybox, os.path.join(rootfs, "bin", "busybox"))
            for cmd in ("sh", "echo", "cat", "ls", "sleep", "env", "pwd", "id", "true", "false", "mkdir"):
                os.symlink("busybox", os.path.join(rootfs, "bin", cmd))
            tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
            subprocess.run([client, "import", "-", DOCKER_IMAGE], stdin=tar.stdout, env=env, check=True, capture_output=True)
            tar.wait()
            yield host
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            subprocess.run(["umount", os.path.join(d, "exec", "netns", "default")], capture_output=True)
            log.close()


SLURM_PARTITION = slurmcluster.PARTITION


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-machine Slurm cluster (slurmcluster.py: Debian's slurm-wlm and
    munge, munged, slurmctld and slurmd as root, everything in a temporary
    directory, on free ports); yields the environment its commands need
    (SLURM_CONF). scripts/test installs the packages."""
    if not slurmcluster.available():
        pytest.skip("Slurm tests need root, slurm-wlm and munge (scripts/test installs them)")
    with tempfile.TemporaryDirectory(prefix="openbatch-slurm-") as d:
        with slurmcluster.cluster(d, SLURM_PARTITION) as env:
            yield env


# --- the dashboard (ui/): what its Chromium and Firefox passes share ---------

# Screenshots of each page: `<target dir>/ui-screenshots/` (beside the
# directory holding `release/openbatch`), or $OPENBATCH_UI_SCREENSHOTS.
UI_SHOTS = os.environ.get("OPENBATCH_UI_SCREENSHOTS") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(BIN))), "ui-screenshots")
# The SharedKey reference vectors (shared/reference, beside the repository).
SIGNING_VECTORS = os.path.join(HERE, "..", "..", "..", "shared", "reference", "sharedkey-vectors.jsonl")


def browser_signing_vectors():
    """The valid client-side vectors of SIGNING_VECTORS, for the page's signer."""
    import json
    with open(SIGNING_VECTORS) as f:
        vectors = [json.loads(line) for line in f if line.strip()]
    return [v for v in vectors if v["expect"] == "valid" and "node" not in v["client"]]


@pytest.fixture(scope="session")
def ui_raw(server):
    from rawclient import Raw
    return Raw(server.endpoint, server.account, server.key)


def _idle_nodes(raw, pool_id):
    return [n for n in raw.request("GET", f"/pools/{pool_id}/nodes").json()["value"] if n["state"] == "idle"]


@pytest.fixture(scope="session")
def ui_pool(ui_raw):
    """A pool of one local node with two task slots."""
    pid = "uipool"
    r = ui_raw.request("POST", "/pools", {"id": pid, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1,
                                          "taskSlotsPerNode": 2})
    assert r.status_code == 201, r.text
    wait_for(lambda: _idle_nodes(ui_raw, pid), timeout=30, what="an idle node")
    return pid


@pytest.fixture(scope="session")
def ui_scaled_pool(ui_raw):
    """A pool sized by an autoscale formula (one node)."""
    pid = "uiscale"
    r = ui_raw.request("POST", "/pools", {"id": pid, "vmSize": "standard_d2s_v3", "enableAutoScale": True,
                                          "autoScaleFormula": "$TargetDedicatedNodes = 1;",
                                          "autoScaleEvaluationInterval": "PT5M"})
    assert r.status_code == 201, r.text
    wait_for(lambda: _idle_nodes(ui_raw, pid), timeout=30, what="the autoscaled pool's node")
    return pid


def add_tasks(raw, job, tasks):
    """Adds tasks in collections of 100; every one must be accepted."""
    for i in range(0, len(tasks), 100):
        r = raw.request("POST", f"/jobs/{job}/addtaskcollection", {"value": tasks[i:i + 100]})
        assert r.status_code == 200, r.text
        assert all(v["status"] == "success" for v in r.json()["value"]), r.text

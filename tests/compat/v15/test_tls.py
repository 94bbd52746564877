"""HTTPS: `openbatch serve --tls-cert/--tls-key` with a certificate from a
private CA, driven by azure-batch 15.1.0 trusting that CA. Local nodes join
over wss:// (verifying the server against its certificate file) and run a
task that installs an application package over https; a plain-HTTP request
to the port gets no answer; an agent that trusts another CA cannot join, one
given the right --ca-file can."""
import base64
import datetime
import ipaddress
import os
import re
import socket
import subprocess
import tempfile
import time
import zipfile

import pytest
import requests
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ServiceRequestError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import BIN, free_port, wait_for

POOL = "tlspool"


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


class TlsServer:
    def __init__(self, d):
        self.dir = d
        ca_key, ca_cert = make_ca("openbatch test CA")
        key, cert = make_leaf(ca_key, ca_cert)
        self.ca = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "server.pem")
        self.key_file = os.path.join(d, "server.key")
        with open(self.ca, "wb") as f:
            f.write(pem(ca_cert))
        # The chain: the server's certificate, then its issuer.
        with open(self.cert, "wb") as f:
            f.write(pem(cert) + pem(ca_cert))
        with open(self.key_file, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.other_ca = os.path.join(d, "other-ca.pem")
        with open(self.other_ca, "wb") as f:
            f.write(pem(make_ca("another CA")[1]))
        self.data_dir = os.path.join(d, "data")
        self.port = free_port()
        self.endpoint = f"https://127.0.0.1:{self.port}"
        self.account = "tlsacct"
        self.account_key = base64.b64encode(os.urandom(32)).decode()
        self.log = open(os.path.join(d, "server.log"), "ab")
        env = {k: v for k, v in os.environ.items() if k != "OPENBATCH_CA_FILE"}
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir, "--account", self.account,
             "--key", self.account_key, "--tls-cert", self.cert, "--tls-key", self.key_file],
            stdout=subprocess.PIPE, stderr=self.log, env=env)
        line = self.proc.stdout.readline()
        assert self.endpoint.encode() in line, line
        wait_for(self.listening, timeout=10, what="the TLS server listening")

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def client(self, **kw):
        return BatchClient(endpoint=self.endpoint, credential=AzureNamedKeyCredential(self.account, self.account_key), **kw)

    def agent(self, name, *args):
        """An `openbatch agent` joining POOL from outside; its stderr in a file."""
        with open(os.path.join(self.data_dir, "agent.token")) as f:
            token = f.read().strip()
        log_path = os.path.join(self.dir, f"{name}.log")
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBATCH_CA_FILE", "OPENBATCH_TLS_SERVER_NAME")}
        proc = subprocess.Popen([BIN, "agent", "--server", self.endpoint, "--pool", POOL, "--token", token,
                                 "--root", os.path.join(self.dir, name), *args],
                                stdout=subprocess.DEVNULL, stderr=open(log_path, "ab"), env=env)
        return proc, log_path

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def tls():
    with tempfile.TemporaryDirectory(prefix="openbatch-tls-") as d:
        s = TlsServer(d)
        try:
            yield s
        finally:
            s.stop()


@pytest.fixture(scope="module")
def tls_client(tls):
    return tls.client(connection_verify=tls.ca)


def idle_nodes(client, n):
    return lambda: len([x for x in client.list_nodes(POOL) if x.state == models.BatchNodeState.IDLE]) == n


@pytest.fixture(scope="module")
def pool(tls, tls_client):
    """A pool of one local node, with an application package registered."""
    root = os.path.join(tls.data_dir, "applications", "hello")
    os.makedirs(root, exist_ok=True)
    with zipfile.ZipFile(os.path.join(root, "1.0.zip"), "w") as z:
        info = zipfile.ZipInfo("bin/hello.sh")
        info.external_attr = 0o755 << 16
        z.writestr(info, b"#!/bin/sh\necho hello over tls\n")
    tls_client.create_pool(models.BatchPoolCreateOptions(id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=1))
    # The local agent dialled wss:// and verified the certificate.
    wait_for(idle_nodes(tls_client, 1), timeout=30, what="a local node over wss")
    return POOL


def test_a_local_pool_runs_a_task_over_tls(tls, tls_client, pool):
    tls_client.create_job(models.BatchJobCreateOptions(id="tlsjob", pool_info=models.BatchPoolInfo(pool_id=POOL)))
    tls_client.create_task("tlsjob", models.BatchTaskCreateOptions(
        id="t1", command_line="/bin/sh -c '$AZ_BATCH_APP_PACKAGE_hello_1_0/bin/hello.sh; echo $AZ_BATCH_ACCOUNT_URL'",
        application_package_references=[models.BatchApplicationPackageReference(application_id="hello", version="1.0")]))
    t = wait_for(lambda: (x := tls_client.get_task("tlsjob", "t1")).state == models.BatchTaskState.COMPLETED and x,
                 timeout=30, what="t1 completed")
    assert t.execution_info.exit_code == 0, t.execution_info
    # The package came from the server over https, with the same trust.
    out = b"".join(tls_client.download_task_file("tlsjob", "t1", "stdout.txt")).decode().splitlines()
    assert out[0] == "hello over tls"
    assert out[1].startswith("https://"), out
    assert tls_client.get_job("tlsjob").url.startswith(tls.endpoint)


def test_plain_http_and_untrusted_clients_get_nothing(tls):
    # Plain HTTP to the TLS port: no HTTP answer.
    with socket.create_connection(("127.0.0.1", tls.port), timeout=5) as s:
        s.sendall(b"GET /jobs?api-version=2025-06-01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            data = s.recv(1024)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/"), data
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls.port}/jobs?api-version=2025-06-01", timeout=5)
    # A client that does not trust the CA refuses the server.
    with pytest.raises(ServiceRequestError):
        list(tls.client(connection_verify=tls.other_ca).list_jobs())


def test_agents_need_the_servers_ca(tls, tls_client, pool):
    wrong, wrong_log = tls.agent("wrong-ca", "--ca-file", tls.other_ca)
    try:
        def refused():
            with open(wrong_log) as f:
                text = f.read()
            return "certificate" in text.lower() and text
        text = wait_for(refused, timeout=15, what="the agent with another CA refusing the server")
        assert "UnknownIssuer" in text or "unknown issuer" in text.lower(), text
        assert len(list(tls_client.list_nodes(POOL))) == 1
        assert wrong.poll() is None  # it keeps retrying, as over a broken network
    finally:
        wrong.kill()
        wrong.wait()
    right, right_log = tls.agent("right-ca", "--ca-file", tls.ca)
    try:
        def joined():
            with open(right_log) as f:
                m = re.search(r"joined the pool.*node\S*?=\S*?(tvm\w+)", f.read())
            return m and m.group(1)
        node = wait_for(joined, timeout=30, what="the agent with the right CA joining")
        # (The local provider may then stop its own node: the pool has its one node.)
        assert node in {n.id for n in tls_client.list_nodes(POOL)}
    finally:
        right.kill()
        right.wait()

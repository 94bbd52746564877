"""Task and node files through azure-batch 15.1.0: files of any size stream
from the node (checksums, byte ranges), and nothing a task plants in its
directories — links to root-only files, a linked stdout.txt before a retry —
makes the node read or write outside them."""
import hashlib
import os
import tempfile

import pytest
from azure.batch import models
from azure.core.exceptions import ResourceNotFoundError

from conftest import start_pool, wait_for

BIG = 64 * 1024 * 1024 + 12345


@pytest.fixture(scope="module")
def pool(client):
    start_pool(client, "filespool", nodes=1)
    return "filespool"


def completed(client, jid, tid, timeout=60):
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, what=f"{tid} completed")


def read(client, jid, tid, name, **kw):
    return b"".join(client.download_task_file(jid, tid, name, **kw))


@pytest.fixture
def secret():
    """A private file outside every task directory (root's, when the tests
    run as root as CI does), standing in for /etc/shadow."""
    d = tempfile.mkdtemp(prefix="openbatch-secret-")
    path = os.path.join(d, "shadow")
    with open(path, "w") as f:
        f.write("SECRET-CONTENT\n")
    os.chmod(path, 0o600)
    yield path
    os.unlink(path)
    os.rmdir(d)


def test_a_large_file_streams_whole_and_in_ranges(client, pool, job):
    client.create_task(job, models.BatchTaskCreateOptions(
        id="big", command_line=f"/bin/sh -c 'head -c {BIG} /dev/urandom > big.bin && sha256sum big.bin > big.sha256'"))
    t = completed(client, job, "big")
    assert t.execution_info.exit_code == 0
    want = read(client, job, "big", "wd/big.sha256").split()[0].decode()
    h, chunks, data = hashlib.sha256(), 0, bytearray()
    for chunk in client.download_task_file(job, "big", "wd/big.bin"):
        h.update(chunk)
        data += chunk
        chunks += 1
    assert len(data) == BIG and h.hexdigest() == want
    assert client.get_task_file_properties(job, "big", "wd/big.bin").content_length == BIG
    # Ranges: small (inline from the node), large (streamed), open-ended.
    assert read(client, job, "big", "wd/big.bin", ocp_range="bytes=1000-1999") == data[1000:2000]
    assert read(client, job, "big", "wd/big.bin", ocp_range="bytes=1048576-9437183") == data[1048576:9437184]
    assert read(client, job, "big", "wd/big.bin", ocp_range=f"bytes={BIG - 700000}-") == data[BIG - 700000:]
    # The same file as a node file.
    node = t.node_info.node_id
    path = f"workitems/{job}/job-1/big/wd/big.bin"
    got = hashlib.sha256()
    for chunk in client.download_node_file(pool, node, path):
        got.update(chunk)
    assert got.hexdigest() == want


def test_links_a_task_plants_are_not_followed(client, pool, job, secret):
    secret_dir = os.path.dirname(secret)
    client.create_task(job, models.BatchTaskCreateOptions(
        id="links", command_line=f"/bin/sh -c 'ln -s {secret} leak; ln -s {secret_dir} leakdir; "
                                 "ln -s ../stdout.txt inner; echo ok > plain'"))
    t = completed(client, job, "links")
    assert t.execution_info.exit_code == 0
    assert read(client, job, "links", "wd/plain") == b"ok\n"
    for name in ["wd/leak", "wd/leakdir/shadow", "wd/inner"]:
        with pytest.raises(ResourceNotFoundError):
            read(client, job, "links", name)
        with pytest.raises(ResourceNotFoundError):
            client.get_task_file_properties(job, "links", name)
    names = {f.name for f in client.list_task_files(job, "links", recursive=True)}
    assert "wd/plain" in names and not names & {"wd/leak", "wd/leakdir", "wd/inner"}, names
    with pytest.raises(ResourceNotFoundError):
        b"".join(client.download_node_file(pool, t.node_info.node_id, f"workitems/{job}/job-1/links/wd/leak"))
    # Deleting a link removes the link, not what it points to.
    client.delete_task_file(job, "links", "wd/leakdir", recursive=True)
    client.delete_task_file(job, "links", "wd/leak")
    with open(secret) as f:
        assert f.read() == "SECRET-CONTENT\n"


def test_a_retry_does_not_follow_a_linked_stdout(client, pool, job, secret):
    before = os.stat(secret)
    # The first attempt replaces its stdout.txt with a link to the secret
    # and fails; the retry (same task directory) must write a new file.
    client.create_task(job, models.BatchTaskCreateOptions(
        id="retry", command_line=f"/bin/sh -c 'if [ -e marker ]; then echo second; exit 0; fi; touch marker; "
                                 f"rm -f ../stdout.txt ../stderr.txt; ln -s {secret} ../stdout.txt; "
                                 f"ln -s {secret} ../stderr.txt; exit 1'",
        constraints=models.BatchTaskConstraints(max_task_retry_count=1)))
    t = completed(client, job, "retry")
    assert t.execution_info.exit_code == 0 and t.execution_info.retry_count == 1
    assert read(client, job, "retry", "stdout.txt") == b"second\n"
    after = os.stat(secret)
    with open(secret) as f:
        assert f.read() == "SECRET-CONTENT\n"
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)

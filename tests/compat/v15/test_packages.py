"""Application packages through azure-batch 15.1.0: packages registered in
the server's applications directory (a .zip and a .tar.gz), listed by
/applications, installed on a real local node for the tasks (and pools)
that reference them, with the AZ_BATCH_APP_PACKAGE_* variables."""
import io
import os
import tarfile
import zipfile

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from conftest import end_job, start_pool, wait_for

POOL = "pkgpool"


def script(version):
    return f"#!/bin/sh\necho hello {version}\n".encode()


@pytest.fixture(scope="module")
def registry(server):
    """Registers `hello` 1.0 (zip) and 2.0 (tar.gz, the default) and `plain`
    1 (no default version), as an operator would: files in the directory."""
    root = os.path.join(server.data_dir, "applications")
    os.makedirs(os.path.join(root, "hello"), exist_ok=True)
    with zipfile.ZipFile(os.path.join(root, "hello", "1.0.zip"), "w") as z:
        info = zipfile.ZipInfo("bin/hello.sh")
        info.external_attr = 0o755 << 16
        z.writestr(info, script("1.0"))
    with tarfile.open(os.path.join(root, "hello", "2.0.tar.gz"), "w:gz") as t:
        data = script("2.0")
        info = tarfile.TarInfo("bin/hello.sh")
        info.size, info.mode = len(data), 0o755
        t.addfile(info, io.BytesIO(data))
    with open(os.path.join(root, "hello", "application.toml"), "w") as f:
        f.write('display-name = "Hello tool"\ndefault-version = "2.0"\n')
    os.makedirs(os.path.join(root, "plain"), exist_ok=True)
    with zipfile.ZipFile(os.path.join(root, "plain", "1.zip"), "w") as z:
        z.writestr("readme.txt", "plain")
    return root


@pytest.fixture(scope="module")
def pool(client, registry):
    start_pool(client, POOL, task_slots_per_node=2)
    yield POOL
    client.begin_delete_pool(POOL, polling_interval=0.2).result()


def ref(app, version=None):
    return models.BatchApplicationPackageReference(application_id=app, version=version)


def run(client, jid, tid, command, refs):
    client.create_task(jid, models.BatchTaskCreateOptions(id=tid, command_line=command, application_package_references=refs))
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t, timeout=20, what=tid)


def stdout(client, jid, tid):
    return b"".join(client.download_task_file(jid, tid, "stdout.txt")).decode()


def test_applications_are_listed(client, registry):
    apps = {a.id: a for a in client.list_applications()}
    assert apps["hello"].versions == ["1.0", "2.0"]
    assert apps["hello"].display_name == "Hello tool"
    assert apps["plain"].versions == ["1"] and apps["plain"].display_name == "plain"
    assert client.get_application("hello").versions == ["1.0", "2.0"]
    with pytest.raises(ResourceNotFoundError) as e:
        client.get_application("nope")
    assert e.value.error.code == "ApplicationNotFound"


def test_a_task_gets_the_versions_it_names(client, job):
    t = run(client, job, "v1", "/bin/sh -c '$AZ_BATCH_APP_PACKAGE_hello_1_0/bin/hello.sh'", [ref("hello", "1.0")])
    assert t.execution_info.exit_code == 0, t.execution_info
    assert stdout(client, job, "v1") == "hello 1.0\n"
    # No version: the default one, also under the name without a version.
    t = run(client, job, "dflt", "/bin/sh -c '$AZ_BATCH_APP_PACKAGE_hello/bin/hello.sh; echo $AZ_BATCH_APP_PACKAGE_hello_2_0'",
            [ref("hello")])
    out = stdout(client, job, "dflt").splitlines()
    assert out[0] == "hello 2.0"
    assert out[1].endswith("/applications/hello#2.0")
    # Installed once per node, shared: the second task finds the same directory.
    t2 = run(client, job, "again", "/bin/sh -c 'echo $AZ_BATCH_APP_PACKAGE_hello_2_0'", [ref("hello", "2.0")])
    assert stdout(client, job, "again").strip() == out[1]
    assert t2.node_info.node_id == t.node_info.node_id


@pytest.mark.parametrize("refs, why", [
    ([ref("nope", "1")], "not registered"),
    ([ref("hello", "9.9")], "no version"),
    ([ref("plain")], "no default version"),
])
def test_a_package_that_cannot_be_installed_fails_the_task(client, job, refs, why):
    t = run(client, job, "bad", "/bin/sh -c 'echo ran'", refs)
    info = t.execution_info
    assert info.result == models.BatchTaskExecutionResult.FAILURE
    assert info.exit_code is None
    assert info.failure_info.code == "ApplicationPackageError"
    assert why in info.failure_info.message


def test_pool_packages_reach_every_task(client, registry, uid):
    pid = uid("pkgpool")
    with pytest.raises(HttpResponseError) as e:
        client.create_pool(models.BatchPoolCreateOptions(id=pid, vm_size="x", application_package_references=[ref("plain")]))
    assert e.value.status_code == 409 and e.value.error.code == "InvalidApplicationPackageReferences"
    start_pool(client, pid, application_package_references=[ref("hello", "1.0")])
    try:
        jid = uid("pkg")
        client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pid)))
        run(client, jid, "t", "/bin/sh -c '$AZ_BATCH_APP_PACKAGE_hello_1_0/bin/hello.sh'", None)
        assert stdout(client, jid, "t") == "hello 1.0\n"
        end_job(client, jid)
    finally:
        client.begin_delete_pool(pid, polling_interval=0.2).result()

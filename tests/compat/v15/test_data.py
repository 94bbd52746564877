"""Resource files and output files through azure-batch 15.1.0: tasks on a
real local node fetch their inputs from a plain HTTP server, from Azurite (the
Azure Storage emulator) through container and blob SASs, or from a shared
file:// directory, and upload their outputs to Azurite or to a file://
directory; failures surface as the service reports them (BlobNotFound,
BlobAccessDenied, FileUploadContainerNotFound) and drive the
preProcessingError and fileUploadError exit conditions."""
import os
import shutil
import tempfile
import time
import uuid
from urllib.parse import parse_qsl, urlencode

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from conftest import batch_client, end_job, start_pool, wait_for

POOL = "datapool"
TIMEOUT = 30
PERFORM = models.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION
# Prints every file under the working directory with its content, sorted.
LIST_FILES = "/bin/sh -c 'for f in $(find . -type f | LC_ALL=C sort); do echo \"$f $(cat $f)\"; done'"


@pytest.fixture(scope="module")
def pool(client):
    start_pool(client, POOL, timeout=TIMEOUT, task_slots_per_node=4)
    yield POOL
    client.begin_delete_pool(POOL, polling_interval=0.2).result()


@pytest.fixture
def new_job(client, pool, uid):
    """Creates jobs on the module's pool; terminates them afterwards."""
    made = []

    def make(**kw):
        jid = uid("data")
        client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pool), **kw))
        made.append(jid)
        return jid
    yield make
    for jid in made:
        end_job(client, jid)


@pytest.fixture
def shared_dir():
    """Fresh directories on the node's filesystem for file:// sources and
    destinations (world-accessible: tasks run as an unprivileged user)."""
    made = []

    def make():
        d = tempfile.mkdtemp(prefix="openbatch-shared-")
        os.chmod(d, 0o777)
        made.append(d)
        return d
    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


# --- helpers ----------------------------------------------------------------

def task(tid, command_line, **kw):
    return models.BatchTaskCreateOptions(id=tid, command_line=command_line, **kw)


def run(client, jid, *tasks):
    """Adds the tasks, waits for all of them to complete; returns them by id."""
    result = client.create_task_collection(jid, models.BatchTaskGroup(task_values=list(tasks)))
    assert all(r.status == models.BatchTaskAddStatus.SUCCESS for r in result.result_values), result
    return {t.id: wait_completed(client, jid, t.id) for t in tasks}


def wait_completed(client, jid, tid, timeout=TIMEOUT):
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, what=f"{tid} completed")


def wait_job_completed(client, jid, timeout=TIMEOUT):
    return wait_for(lambda: (j := client.get_job(jid)).state == models.BatchJobState.COMPLETED and j,
                    timeout=timeout, what=f"job {jid} completed")


def read(client, jid, tid, name):
    return b"".join(client.download_task_file(jid, tid, name))


def stdout(client, jid, tid):
    return read(client, jid, tid, "stdout.txt").decode()


def stdout_if_any(client, jid, tid):
    """The task's stdout.txt, or b"" when there is none."""
    try:
        return read(client, jid, tid, "stdout.txt")
    except HttpResponseError as e:
        assert e.status_code in (404, 409), e
        return b""


def succeeded(t):
    info = t.execution_info
    return info.result == models.BatchTaskExecutionResult.SUCCESS and info.exit_code == 0 and info.failure_info is None


def preprocessing_failed(t, code):
    """Completed without running: no exit code, a user error with `code`."""
    info = t.execution_info
    assert t.state == models.BatchTaskState.COMPLETED
    assert info.result == models.BatchTaskExecutionResult.FAILURE, info
    assert info.exit_code is None, info
    assert info.failure_info is not None and info.failure_info.code == code, info.failure_info
    assert info.failure_info.category == models.BatchErrorSourceCategory.USER_ERROR
    return True


def serve(http_files, content):
    """Puts `content` on the HTTP file server under a fresh name; returns its URL."""
    base, directory = http_files
    name = f"f-{uuid.uuid4().hex[:10]}"
    with open(os.path.join(directory, name), "wb") as f:
        f.write(content)
    return f"{base}/{name}"


def rf(**kw):
    return models.ResourceFile(**kw)


def output(pattern, container_url, path=None, condition="taskcompletion", headers=None):
    return models.OutputFile(
        file_pattern=pattern,
        destination=models.OutputFileDestination(container=models.OutputFileBlobContainerDestination(
            container_url=container_url, path=path,
            upload_headers=[models.OutputFileUploadHeader(name=n, value=v) for n, v in (headers or {}).items()] or None)),
        upload_options=models.OutputFileUploadConfiguration(upload_condition=condition))


def blobs(container):
    """{name: bytes} of every blob in a ContainerClient."""
    return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}


def tree(directory):
    """{relative path: bytes} of every file under a directory."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                found[os.path.relpath(p, directory)] = f.read()
    return found


def tampered(url):
    """The URL with its SAS signature replaced by a wrong one."""
    base, query = url.split("?", 1)
    return base + "?" + urlencode([(k, "A" * 43 + "=" if k == "sig" else v) for k, v in parse_qsl(query)])


@pytest.fixture
def inputs(azurite, uid):
    """A container with x/1.txt, x/sub/2.txt and y/3.txt; returns its name."""
    name = uid("in")
    c = azurite.container(name)
    for blob, content in (("x/1.txt", b"one"), ("x/sub/2.txt", b"two"), ("y/3.txt", b"three")):
        c.upload_blob(blob, content)
    return name


# --- resource files ---------------------------------------------------------

def test_http_url_lands_at_file_path(client, new_job, http_files):
    jid = new_job()
    url = serve(http_files, b"alpha\nbeta\n")
    t = run(client, jid, task("cat", "/bin/sh -c 'cat in/a.txt'", resource_files=[rf(http_url=url, file_path="in/a.txt")]))["cat"]
    assert succeeded(t), t.execution_info
    assert stdout(client, jid, "cat") == "alpha\nbeta\n"


def test_file_modes(client, new_job, http_files):
    """fileMode sets the permission bits; without it a file gets 0770."""
    jid = new_job()
    script = serve(http_files, b"#!/bin/sh\necho ran\n")
    files = [rf(http_url=script, file_path="run.sh", file_mode="0755"),
             rf(http_url=serve(http_files, b"s\n"), file_path="secret.txt", file_mode="0600"),
             rf(http_url=serve(http_files, b"p\n"), file_path="plain.txt")]
    ts = run(client, jid,
             task("script", "./run.sh", resource_files=files),
             task("modes", "/bin/sh -c 'stat -c \"%n %a\" run.sh secret.txt plain.txt'", resource_files=files))
    assert all(succeeded(t) for t in ts.values()), {k: t.execution_info for k, t in ts.items()}
    assert stdout(client, jid, "script") == "ran\n"
    assert stdout(client, jid, "modes") == "run.sh 755\nsecret.txt 600\nplain.txt 770\n"


def test_storage_container_url(client, new_job, azurite, inputs):
    """Every blob lands under its full name; blobPrefix filters; filePath
    is the directory they go under."""
    jid = new_job()
    sas = azurite.sas_url(inputs, "rl")
    ts = run(client, jid,
             task("all", LIST_FILES, resource_files=[rf(storage_container_url=sas)]),
             task("prefix", LIST_FILES, resource_files=[rf(storage_container_url=sas, blob_prefix="x/")]),
             task("under", LIST_FILES, resource_files=[rf(storage_container_url=sas, file_path="dl")]))
    assert all(succeeded(t) for t in ts.values()), {k: t.execution_info for k, t in ts.items()}
    assert stdout(client, jid, "all") == "./x/1.txt one\n./x/sub/2.txt two\n./y/3.txt three\n"
    assert stdout(client, jid, "prefix") == "./x/1.txt one\n./x/sub/2.txt two\n"
    assert stdout(client, jid, "under") == "./dl/x/1.txt one\n./dl/x/sub/2.txt two\n./dl/y/3.txt three\n"


def test_http_url_with_blob_sas(client, new_job, azurite, inputs):
    jid = new_job()
    url = azurite.blob_sas_url(inputs, "x/sub/2.txt")
    t = run(client, jid, task("blob", "/bin/sh -c 'cat two.txt'", resource_files=[rf(http_url=url, file_path="two.txt")]))["blob"]
    assert succeeded(t), t.execution_info
    assert stdout(client, jid, "blob") == "two"


def test_missing_or_denied_source_fails_before_running(client, new_job, azurite, inputs, http_files):
    """A 404 is BlobNotFound, a 403 BlobAccessDenied; the command never runs."""
    jid = new_job()
    base, _ = http_files
    echo = "/bin/sh -c 'echo ran'"
    ts = run(client, jid,
             task("nofile", echo, resource_files=[rf(http_url=f"{base}/no-such-file-{uuid.uuid4().hex}", file_path="a.txt")]),
             task("noblob", echo, resource_files=[rf(http_url=azurite.blob_sas_url(inputs, "x/missing.txt"), file_path="a.txt")]),
             task("denied", echo, resource_files=[rf(http_url=tampered(azurite.blob_sas_url(inputs, "x/1.txt")), file_path="a.txt")]),
             task("deniedlist", echo, resource_files=[rf(storage_container_url=tampered(azurite.sas_url(inputs, "rl")))]))
    for tid, code in (("nofile", "BlobNotFound"), ("noblob", "BlobNotFound"), ("denied", "BlobAccessDenied"), ("deniedlist", "BlobAccessDenied")):
        assert preprocessing_failed(ts[tid], code)
        assert stdout_if_any(client, jid, tid) == b"", f"{tid}: the command did not run"


def test_preprocessing_error_terminates_job(client, new_job, http_files):
    jid = new_job(task_failure_mode=PERFORM)
    base, _ = http_files
    client.create_task(jid, task("pre", "/bin/true", resource_files=[rf(http_url=f"{base}/missing-{uuid.uuid4().hex}", file_path="a")],
                                 exit_conditions=models.ExitConditions(pre_processing_error=models.ExitOptions(job_action="terminate"))))
    job = wait_job_completed(client, jid)
    assert job.execution_info.termination_reason == "TaskFailed"
    assert preprocessing_failed(client.get_task(jid, "pre"), "BlobNotFound")


def test_preprocessing_error_dependency_action(client, new_job, http_files):
    """dependencyAction satisfy lets dependents run; without exit conditions
    a pre-processing error blocks them (the default for any failure)."""
    jid = new_job(uses_task_dependencies=True)
    base, _ = http_files
    missing = [rf(http_url=f"{base}/missing-{uuid.uuid4().hex}", file_path="a")]
    after = lambda tid: models.BatchTaskDependencies(task_ids=[tid])  # noqa: E731
    result = client.create_task_collection(jid, models.BatchTaskGroup(task_values=[
        task("pre", "/bin/true", resource_files=missing,
             exit_conditions=models.ExitConditions(pre_processing_error=models.ExitOptions(dependency_action="satisfy"))),
        task("dep", "/bin/sh -c 'echo dep'", depends_on=after("pre")),
        task("pre2", "/bin/true", resource_files=missing),
        task("dep2", "/bin/true", depends_on=after("pre2"))]))
    assert all(r.status == models.BatchTaskAddStatus.SUCCESS for r in result.result_values), result
    assert succeeded(wait_completed(client, jid, "dep"))
    assert stdout(client, jid, "dep") == "dep\n"
    assert preprocessing_failed(client.get_task(jid, "pre"), "BlobNotFound")
    assert preprocessing_failed(wait_completed(client, jid, "pre2"), "BlobNotFound")
    time.sleep(1)
    dep2 = client.get_task(jid, "dep2")
    assert dep2.state == models.BatchTaskState.ACTIVE and (dep2.execution_info is None or dep2.execution_info.start_time is None)


@pytest.mark.parametrize("spec", [
    dict(http_url="http://127.0.0.1:9/a", file_path="../../escape.txt"),
    dict(http_url="http://127.0.0.1:9/a", file_path="in/../../escape.txt"),
    dict(http_url="http://127.0.0.1:9/a", file_path="/tmp/x"),
    dict(storage_container_url="http://127.0.0.1:9/devstoreaccount1/c?sig=x", file_path="../dl"),
], ids=["dotdot", "inner-dotdot", "absolute", "container-dotdot"])
def test_file_path_must_stay_in_working_dir(client, new_job, spec):
    jid = new_job()
    with pytest.raises(HttpResponseError) as e:
        client.create_task(jid, task("esc", "/bin/true", resource_files=[rf(**spec)]))
    assert e.value.status_code == 400
    assert e.value.error.code == "InvalidPropertyValue"


# --- output files -------------------------------------------------------------

WRITE_OUTPUTS = ("/bin/sh -c 'echo a > a.txt; echo b > b.txt; mkdir sub; echo c > sub/c.txt; echo h > .hidden.txt; "
                 "seq 1 500 > data.bin; echo out'")
SEQ = "".join(f"{i}\n" for i in range(1, 501)).encode()


def test_output_files_to_blob_storage(client, new_job, azurite, uid):
    jid = new_job()
    name = uid("out")
    c = azurite.container(name)
    sas = azurite.sas_url(name, "racwl")
    t = run(client, jid, task("outs", WRITE_OUTPUTS, output_files=[
        output("*.txt", sas, path="txt", headers={"x-ms-meta-origin": "openbatch"}),
        output("**/*.txt", sas, path="all"),
        output("data.bin", sas, path="renamed/d.bin"),
        output("../stdout.txt", sas, path="logs/stdout.txt")]))["outs"]
    assert succeeded(t), t.execution_info
    assert blobs(c) == {
        "txt/a.txt": b"a\n", "txt/b.txt": b"b\n",
        "all/a.txt": b"a\n", "all/b.txt": b"b\n", "all/sub/c.txt": b"c\n",
        "renamed/d.bin": SEQ,
        "logs/stdout.txt": b"out\n",
    }
    props = c.get_blob_client("txt/a.txt").get_blob_properties()
    assert props.content_settings.content_type.startswith("text/plain"), props.content_settings.content_type
    assert props.metadata == {"origin": "openbatch"}
    assert c.get_blob_client("all/a.txt").get_blob_properties().metadata == {}
    # A successful upload leaves its log in the task directory.
    names = {f.name for f in client.list_task_files(jid, "outs")}
    assert "fileuploadout.txt" in names, names
    read(client, jid, "outs", "fileuploadout.txt")


def test_upload_conditions(client, new_job, azurite, uid):
    jid = new_job()
    name = uid("cond")
    c = azurite.container(name)
    sas = azurite.sas_url(name, "racwl")

    def conditional(tid, code):
        return task(tid, f"/bin/sh -c 'echo {tid} > m.txt; exit {code}'", output_files=[
            output("m.txt", sas, path=f"{tid}/success.txt", condition="tasksuccess"),
            output("m.txt", sas, path=f"{tid}/failure.txt", condition="taskfailure"),
            output("m.txt", sas, path=f"{tid}/completion.txt", condition="taskcompletion")])
    ts = run(client, jid, conditional("ok", 0), conditional("bad", 3))
    assert succeeded(ts["ok"]), ts["ok"].execution_info
    bad = ts["bad"].execution_info
    assert bad.exit_code == 3 and bad.result == models.BatchTaskExecutionResult.FAILURE
    assert bad.failure_info.code == "FailureExitCode"
    assert blobs(c) == {"ok/success.txt": b"ok\n", "ok/completion.txt": b"ok\n",
                        "bad/failure.txt": b"bad\n", "bad/completion.txt": b"bad\n"}


def test_upload_to_missing_container_fails(client, new_job, azurite, uid):
    jid = new_job()
    sas = azurite.sas_url(uid("nosuch"), "racwl")  # never created
    t = run(client, jid, task("up", "/bin/sh -c 'echo x > a.txt'", output_files=[output("a.txt", sas, path="a.txt")]))["up"]
    info = t.execution_info
    assert info.result == models.BatchTaskExecutionResult.FAILURE, info
    assert info.exit_code == 0, "the process itself succeeded"
    assert info.failure_info is not None and info.failure_info.code == "FileUploadContainerNotFound", info.failure_info
    names = {f.name for f in client.list_task_files(jid, "up")}
    assert {"fileuploadout.txt", "fileuploaderr.txt"} <= names, names
    assert read(client, jid, "up", "fileuploaderr.txt").strip(), "fileuploaderr.txt explains the failure"


def test_upload_error_terminates_job(client, new_job, azurite, uid):
    jid = new_job(task_failure_mode=PERFORM)
    sas = azurite.sas_url(uid("nosuch"), "racwl")
    client.create_task(jid, task("up", "/bin/sh -c 'echo x > a.txt'", output_files=[output("a.txt", sas, path="a.txt")],
                                 exit_conditions=models.ExitConditions(file_upload_error=models.ExitOptions(job_action="terminate"))))
    job = wait_job_completed(client, jid)
    assert job.execution_info.termination_reason == "TaskFailed"
    t = client.get_task(jid, "up")
    assert t.execution_info.failure_info.code == "FileUploadContainerNotFound" and t.execution_info.exit_code == 0


# --- beyond the cloud service: a shared directory -----------------------------

def test_file_urls_on_a_shared_directory(client, new_job, shared_dir):
    """storageContainerUrl file:///dir copies the directory's files in;
    containerUrl file:///dir writes outputs to dir/<path>."""
    src, dst = shared_dir(), shared_dir()
    os.makedirs(os.path.join(src, "d"))
    for rel, content in (("f1.txt", "f1\n"), ("d/f2.txt", "f2\n")):
        with open(os.path.join(src, rel), "w") as f:
            f.write(content)
    jid = new_job()
    t = run(client, jid, task(
        "shared", "/bin/sh -c 'cat in/f1.txt in/d/f2.txt; echo r > r.txt; mkdir o; echo o2 > o/o2.txt'",
        resource_files=[rf(storage_container_url=f"file://{src}", file_path="in")],
        output_files=[output("*.txt", f"file://{dst}", path="out"),
                      output("o/o2.txt", f"file://{dst}", path="single/o2.txt")]))["shared"]
    assert succeeded(t), t.execution_info
    assert stdout(client, jid, "shared") == "f1\nf2\n"
    assert tree(dst) == {"out/r.txt": b"r\n", "single/o2.txt": b"o2\n"}


# --- start tasks ----------------------------------------------------------------

def test_start_task_resource_files(client, uid, http_files):
    good, bad = uid("stdata"), uid("stmiss")
    url = serve(http_files, b"prepared\n")
    base, _ = http_files
    client.create_pool(models.BatchPoolCreateOptions(
        id=good, vm_size="small", target_dedicated_nodes=1,
        start_task=models.BatchStartTask(command_line="/bin/sh -c 'cat st/in.txt'", wait_for_success=True,
                                         resource_files=[rf(http_url=url, file_path="st/in.txt")])))
    client.create_pool(models.BatchPoolCreateOptions(
        id=bad, vm_size="small", target_dedicated_nodes=1,
        start_task=models.BatchStartTask(command_line="/bin/sh -c 'echo ran'", wait_for_success=True,
                                         resource_files=[rf(http_url=f"{base}/missing-{uuid.uuid4().hex}", file_path="x")])))
    try:
        node = wait_for(lambda: [n for n in client.list_nodes(good) if n.state == models.BatchNodeState.IDLE],
                        timeout=TIMEOUT, what="start task done")[0]
        assert node.start_task_info.exit_code == 0
        assert b"".join(client.download_node_file(good, node.id, "startup/stdout.txt")) == b"prepared\n"
        failed = wait_for(lambda: [n for n in client.list_nodes(bad) if n.state == models.BatchNodeState.START_TASK_FAILED],
                          timeout=TIMEOUT, what="start task failed")[0]
        info = failed.start_task_info
        assert info.exit_code is None and info.result == models.BatchTaskExecutionResult.FAILURE
        assert info.failure_info.code == "BlobNotFound"
        assert info.failure_info.category == models.BatchErrorSourceCategory.USER_ERROR
    finally:
        client.begin_delete_pool(good, polling_interval=0.2).result()
        client.begin_delete_pool(bad, polling_interval=0.2).result()


def test_file_roots_confine_shared_directory_transfers(tmp_path):
    """`serve --file-roots DIR`: file:// sources and destinations outside DIR
    are refused (BlobAccessDenied) — tasks cannot reach the node's own files."""
    from conftest import Server
    allowed = tempfile.mkdtemp(prefix="openbatch-roots-")
    os.chmod(allowed, 0o777)
    with open(os.path.join(allowed, "in.txt"), "w") as f:
        f.write("inside")
    s = Server(str(tmp_path), extra_args=["--file-roots", allowed])
    s.start()
    try:
        c = batch_client(s)
        start_pool(c, "roots", timeout=TIMEOUT)
        c.create_job(models.BatchJobCreateOptions(id="j", pool_info=models.BatchPoolInfo(pool_id="roots")))
        ok = run(c, "j", task("in", "/bin/cat in.txt", resource_files=[
            models.ResourceFile(http_url=f"file://{allowed}/in.txt", file_path="in.txt")]))["in"]
        assert succeeded(ok)
        assert stdout(c, "j", "in") == "inside"
        bad = run(c, "j", task("out", "/bin/true", resource_files=[
            models.ResourceFile(http_url="file:///etc/hostname", file_path="h")]))["out"]
        assert bad.execution_info.failure_info.code == "BlobAccessDenied"
    finally:
        s.stop()
        shutil.rmtree(allowed, ignore_errors=True)


def test_auto_storage_container(azurite, tmp_path, uid):
    """`serve --auto-storage <connection string>` (the account's linked
    storage account): autoStorageContainerName reads that account's
    container through a SAS the server makes; without it the task fails
    saying so."""
    from conftest import Server
    name = uid("auto").replace("-", "")
    cc = azurite.container(name)
    for blob, data in (("in/a.txt", b"A"), ("in/b.txt", b"B"), ("other.txt", b"O")):
        cc.upload_blob(blob, data)
    s = Server(str(tmp_path), extra_args=["--auto-storage", azurite.connection_string])
    s.start()
    try:
        c = batch_client(s)
        start_pool(c, "auto", timeout=TIMEOUT)
        c.create_job(models.BatchJobCreateOptions(id="j", pool_info=models.BatchPoolInfo(pool_id="auto")))
        t = run(c, "j", task("t", LIST_FILES, resource_files=[
            models.ResourceFile(auto_storage_container_name=name, blob_prefix="in/")]))["t"]
        assert succeeded(t), t.execution_info
        assert stdout(c, "j", "t").splitlines() == ["./in/a.txt A", "./in/b.txt B"]
    finally:
        s.stop()


def test_auto_storage_needs_an_account(client, new_job):
    jid = new_job()
    t = run(client, jid, task("t", "/bin/true", resource_files=[models.ResourceFile(auto_storage_container_name="c")]))["t"]
    assert t.execution_info.failure_info.code == "BlobDownloadMiscError"
    assert "autoStorageContainerName" in t.execution_info.failure_info.message

"""The command line for people (`openbatch submit`, `job watch`, `task logs`)
run as a process against the live server, checked through azure-batch 15.1.0;
and the operators' logs of `openbatch serve` (no colour codes in a file,
`--log-format json`, a debug line per request)."""
import base64
import json
import os
import signal
import subprocess
import tempfile
import time

import pytest
from azure.batch import models

from conftest import BIN, Server, free_port, start_pool, wait_for

POOL = "clipool"


@pytest.fixture(scope="module")
def pool(client):
    start_pool(client, POOL, nodes=1, task_slots_per_node=4)
    return POOL


def env_for(server, **override):
    """The environment of a CLI process: configured like `az batch`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_BATCH_")}
    env.update(AZURE_BATCH_ENDPOINT=server.endpoint, AZURE_BATCH_ACCOUNT=server.account, AZURE_BATCH_ACCESS_KEY=server.key)
    env.update(override)
    return env


def cli(server, *args, timeout=180, **env):
    """Runs `openbatch ARGS` to its end (stdout and stderr are pipes, not a terminal)."""
    return subprocess.run([BIN, *args], env=env_for(server, **env), capture_output=True, text=True, timeout=timeout)


def test_submit_of_1000_tasks_completes_and_watch_exits_0(server, client, pool, uid):
    jid = uid("cli")
    r = cli(server, "submit", "--pool", pool, "--job", jid, "--command", "echo hello {}", "--range", "1..1000", "--interval", "0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"job {jid} (created): 1000 tasks added" in r.stdout, r.stdout
    assert f"job {jid}: 1000 tasks completed" in r.stdout and "1000 succeeded, 0 failed" in r.stdout, r.stdout
    # Not a terminal: no escape codes, plain progress lines on stderr.
    assert "\x1b[" not in r.stdout + r.stderr
    assert f"job {jid}: 1000/1000" in r.stderr, r.stderr
    # What the service holds agrees.
    counts = client.get_job_task_counts(jid).task_counts
    assert (counts.completed, counts.succeeded, counts.failed) == (1000, 1000, 0)
    t = client.get_task(jid, "task-0042")
    assert t.command_line == "echo hello 42"
    assert b"".join(client.download_task_file(jid, "task-0042", "stdout.txt")) == b"hello 42\n"
    assert len(list(client.list_tasks(jid))) == 1000
    # The same job watched again ends at once, with the same verdict.
    r = cli(server, "job", "watch", jid)
    assert r.returncode == 0 and "1000 succeeded, 0 failed" in r.stdout, r.stdout + r.stderr


def test_failed_tasks_make_watch_exit_non_zero_with_their_ids_and_stderr(server, client, pool, uid, tmp_path):
    jid = uid("clif")
    args = tmp_path / "args.txt"
    args.write_text("".join(f"{n}\n" for n in range(1, 11)) + "\n")
    # Commands run without a shell: the template names one.
    template = "/bin/sh -c 'echo out-{}; echo first-{} >&2; echo stderr-of-{} >&2; test {} -gt 7 && exit 3; exit 0'"
    r = cli(server, "submit", "--pool", pool, "--job", jid, "--command", template, "--args-file", str(args), "--interval", "0.2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "7 succeeded, 3 failed" in r.stdout, r.stdout
    for n in (8, 9, 10):
        assert f"task-{n:02}" in r.stdout and f"stderr-of-{n}" in r.stdout, r.stdout
    for n in (1, 7):
        assert f"task-{n:02} " not in r.stdout and f"stderr-of-{n}\n" not in r.stdout, r.stdout
    # The summary table gives the exit code and the failure.
    row = next(line for line in r.stdout.splitlines() if "task-09" in line)
    assert "| 3 " in row and "FailureExitCode" in row, row
    # `job watch` on its own says the same, and exits 1.
    w = cli(server, "job", "watch", jid, "--tail", "1")
    assert w.returncode == 1, w.stdout + w.stderr
    assert "task-10" in w.stdout and "stderr-of-10" in w.stdout and "first-10" not in w.stdout, w.stdout
    failed = {t.id for t in client.list_tasks(jid) if t.execution_info.result == models.BatchTaskExecutionResult.FAILURE}
    assert failed == {"task-08", "task-09", "task-10"}


def test_task_logs_follow_prints_output_while_the_task_runs_and_stops_when_it_completes(server, client, pool, job):
    script = "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.5; done; echo done-err >&2"
    client.create_task(job, models.BatchTaskCreateOptions(id="slow", command_line=f"/bin/sh -c '{script}'"))
    p = subprocess.Popen([BIN, "task", "logs", job, "slow", "--follow", "--interval", "0.2"], env=env_for(server),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()
        # The first line arrived while the task still runs (it has ~2.5 s to
        # go; its state may still read `preparing`: the agent's `Started`
        # report is written a moment after the process starts).
        state = client.get_task(job, "slow").state
        assert first == "line-1\n", first
        assert state in (models.BatchTaskState.PREPARING, models.BatchTaskState.RUNNING), state
        rest, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert first + rest == "".join(f"line-{i}\n" for i in range(1, 7)), rest
    assert client.get_task(job, "slow").state == models.BatchTaskState.COMPLETED
    # --stderr, without --follow: the file as it is.
    r = cli(server, "task", "logs", job, "slow", "--stderr")
    assert r.returncode == 0 and r.stdout == "done-err\n", r.stdout + r.stderr


def test_wrong_credentials_and_endpoints_give_one_clear_line_and_exit_2(server, uid):
    wrong = base64.b64encode(os.urandom(32)).decode()
    cases = [
        ({"AZURE_BATCH_ACCESS_KEY": wrong}, "the key is wrong"),
        ({"AZURE_BATCH_ACCOUNT": "someoneelse"}, "someoneelse"),
        ({"AZURE_BATCH_ENDPOINT": f"http://127.0.0.1:{free_port()}"}, "cannot reach"),
        ({"AZURE_BATCH_ACCESS_KEY": "not base64 !"}, "not valid base64"),
        ({"AZURE_BATCH_ENDPOINT": ""}, "AZURE_BATCH_ENDPOINT"),
    ]
    for env, expected in cases:
        for args in (("job", "watch", "anyjob"), ("submit", "--pool", "p", "--command", "true", "--range", "1..3", "--no-watch")):
            r = cli(server, *args, timeout=30, **env)
            assert r.returncode == 2, (env, r.stdout, r.stderr)
            assert r.stdout == "", (env, r.stdout)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("openbatch: ") and expected in lines[0], (env, r.stderr)
    # Flags win over the environment.
    r = cli(server, "job", "watch", "nosuchjob", "--key", server.key, timeout=30, AZURE_BATCH_ACCESS_KEY=wrong)
    assert r.returncode == 2 and "JobNotFound" in r.stderr, r.stderr
    # A refused task is named (an id that exists already).
    jid = uid("clid")
    assert cli(server, "submit", "--pool", "nopool", "--job", jid, "--command", "true", "--range", "1..2", "--no-watch").returncode == 0
    r = cli(server, "submit", "--job", jid, "--command", "true", "--range", "2..3", "--no-watch")
    assert r.returncode == 2 and "task task-2 was not added: TaskExists" in r.stderr, r.stderr


def test_the_log_file_has_no_escape_codes_and_json_logs_are_one_object_per_line(server, client, pool):
    # The session server's stderr is a file: plain text.
    with open(os.path.join(server.data_dir, "server.log"), "rb") as f:
        text = f.read()
    assert b"started a local node" in text
    assert b"\x1b[" not in text
    with tempfile.TemporaryDirectory(prefix="openbatch-jsonlog-") as d:
        old = os.environ.get("OPENBATCH_LOG")
        os.environ["OPENBATCH_LOG"] = "info,api=debug"
        try:
            s = Server(d, extra_args=["--log-format", "json"])
            s.start()
        finally:
            if old is None:
                os.environ.pop("OPENBATCH_LOG")
            else:
                os.environ["OPENBATCH_LOG"] = old
        try:
            start_pool(__import__("conftest").batch_client(s), "jsonpool", nodes=1)
            r = cli(s, "job", "watch", "nosuchjob", timeout=30)
            assert r.returncode == 2 and "JobNotFound" in r.stderr
        finally:
            s.stop()
            s.log.close()
        lines = open(os.path.join(d, "server.log"), encoding="utf-8").read().splitlines()
    assert lines
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"timestamp", "level", "message", "target"} <= e.keys() for e in events), events[:3]
    requests = [e for e in events if e["message"] == "request"]
    assert requests and all(e["level"] == "DEBUG" for e in requests)
    missing = [e for e in requests if e.get("op") == "GetJob" and e.get("status") == 404]
    assert missing and isinstance(missing[0]["micros"], int), requests
    assert any(e.get("op") == "CreatePool" and e.get("status") == 201 for e in requests), requests
    # The local node's agent logs in the same format (it shares the stderr).
    assert any(e["target"].startswith("agent") for e in events), [e["target"] for e in events]
    assert not any(e["level"] == "INFO" and e["message"] == "request" for e in events)


def test_ctrl_c_stops_watching_and_says_the_job_goes_on(server, client, uid):
    jid = uid("clic")
    # Tasks on a pool without nodes never run: the watch would wait for ever.
    r = cli(server, "submit", "--pool", "nopool", "--job", jid, "--command", "true", "--range", "1..5", "--no-watch")
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen([BIN, "job", "watch", jid, "--interval", "0.2"], env=env_for(server),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (out, err)
    assert f"interrupted; the job goes on; watch it again with: openbatch job watch {jid}" in err, err
    assert client.get_job(jid).state == models.BatchJobState.ACTIVE

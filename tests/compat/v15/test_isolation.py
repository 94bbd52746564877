"""Tasks cannot read the server's state or credentials, nor another local
node's files or processes (azure-batch 15.1.0 adds the tasks).

A task running as the default non-admin auto-user probes what a hostile
task would try: the server's database and join token, the directory of
local nodes, another node's root and a task file in it, the server's
/proc entries, and the environment of a task running on another node. The
same probe as an admin (root) task shows that each of those exists and is
readable by a privileged user, so the refusals are not vacuous."""
import grp
import os
import stat
import tempfile
import uuid

import pytest
from azure.batch import models

from conftest import end_job, start_pool, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tasks run as another account only when the agent runs as root")

POOL = "isopool"
# The writer's process is found by this exact command line (a number no
# other test sleeps for).
SLEEP = "1234.5678"

PROBE = r"""#!/bin/sh
# probe.sh DATA_DIR SERVER_PID OTHER_ROOT OTHER_FILE
data=$1; pid=$2; other_root=$3; other_file=$4
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name ok"; else echo "$name denied"; fi; }
echo "whoami $(id -un) $(id -gn)"
try sqlite cat "$data/openbatch.sqlite"
try sqlite-wal cat "$data/openbatch.sqlite-wal"
try agent-token cat "$data/agent.token"
try data-list ls "$data"
try nodes-list ls "$data/nodes"
try other-root-list ls "$other_root"
try other-file cat "$other_file"
try own-root-list ls "$AZ_BATCH_NODE_ROOT_DIR"
try server-environ cat "/proc/$pid/environ"
try server-cmdline cat "/proc/$pid/cmdline"
echo "server-cmdline-text $(tr '\000' ' ' < "/proc/$pid/cmdline")"
writer=""
for p in /proc/[0-9]*; do
  if [ "$(tr '\000' ' ' < "$p/cmdline" 2>/dev/null)" = "sleep SLEEP " ]; then writer=$p; fi
done
echo "writer-found ${writer:-none}"
try writer-environ cat "$writer/environ"
try writer-cwd ls "$writer/cwd/"
echo "writer-secret $(tr '\000' '\n' < "$writer/environ" 2>/dev/null | grep '^ISOLATION_SECRET=' | cut -d= -f2)"
""".replace("SLEEP", SLEEP)


@pytest.fixture(scope="module")
def pool(client):
    start_pool(client, POOL, nodes=2, task_slots_per_node=1)
    yield POOL
    client.begin_delete_pool(POOL, polling_interval=0.2).result()


@pytest.fixture(scope="module")
def probe_script():
    with tempfile.TemporaryDirectory(prefix="openbatch-probe-") as d:
        os.chmod(d, 0o755)
        path = os.path.join(d, "probe.sh")
        with open(path, "w") as f:
            f.write(PROBE)
        os.chmod(path, 0o755)
        yield path


def completed(client, jid, tid, timeout=30):
    return wait_for(lambda: (t := client.get_task(jid, tid)).state == models.BatchTaskState.COMPLETED and t,
                    timeout=timeout, what=f"{tid} completed")


def results(client, jid, tid):
    out = b"".join(client.download_task_file(jid, tid, "stdout.txt")).decode()
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in out.splitlines())
    return lines, out


def test_files_are_private_on_disk(server, pool, client):
    data = server.data_dir
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(data) & 0o066 == 0, oct(mode(data))
    assert mode(os.path.join(data, "nodes")) & 0o066 == 0
    for f in ("openbatch.sqlite", "openbatch.sqlite-wal", "openbatch.sqlite-shm", "agent.token"):
        if os.path.exists(os.path.join(data, f)):
            assert mode(os.path.join(data, f)) == 0o600, f
    roots = [os.path.join(data, "nodes", n.id) for n in client.list_nodes(pool)]
    groups = set()
    for root in roots:
        st = os.stat(root)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o750), (root, oct(st.st_mode))
        assert grp.getgrgid(st.st_gid).gr_name.startswith("_azbatch")
        groups.add(st.st_gid)
    assert len(groups) == 2, "each node root has its own node's group"


def test_tasks_cannot_read_the_servers_secrets_or_other_nodes(server, client, pool, probe_script, uid):
    jid = uid("iso")
    secret = uuid.uuid4().hex
    client.create_job(models.BatchJobCreateOptions(id=jid, pool_info=models.BatchPoolInfo(pool_id=pool)))
    try:
        # A long task on one node, with a secret in its environment and in a file.
        client.create_task(jid, models.BatchTaskCreateOptions(
            id="writer", command_line=f"/bin/sh -c 'id -gn; echo {secret} > secret.txt; exec sleep {SLEEP}'",
            environment_settings=[models.EnvironmentSetting(name="ISOLATION_SECRET", value=secret)]))
        writer = wait_for(lambda: (t := client.get_task(jid, "writer")).state == models.BatchTaskState.RUNNING and t, what="writer running")
        writer_node = writer.node_info.node_id
        other_root = os.path.join(server.data_dir, "nodes", writer_node)
        other_file = os.path.join(other_root, writer.node_info.task_root_directory, "wd", "secret.txt")
        wait_for(lambda: os.path.exists(other_file), what="the writer's file")
        args = f"{probe_script} {server.data_dir} {server.proc.pid} {other_root} {other_file}"

        # The writer holds its node's only slot: the probes run on the other node.
        client.create_task(jid, models.BatchTaskCreateOptions(id="probe", command_line=args))
        probe = completed(client, jid, "probe")
        assert probe.node_info.node_id != writer_node
        assert probe.execution_info.exit_code == 0
        client.create_task(jid, models.BatchTaskCreateOptions(id="admin-probe", command_line=args, user_identity=models.UserIdentity(
            auto_user=models.AutoUserSpecification(elevation_level=models.ElevationLevel.ADMIN))))
        admin = completed(client, jid, "admin-probe")
        assert admin.node_info.node_id != writer_node

        user, out = results(client, jid, "probe")
        root, admin_out = results(client, jid, "admin-probe")
        who, group = user["whoami"].split()
        assert who == "_azbatch" and group.startswith("_azbatch"), out
        writer_group = b"".join(client.download_task_file(jid, "writer", "stdout.txt")).decode().strip()
        assert writer_group.startswith("_azbatch") and writer_group != group, (writer_group, group)
        assert root["whoami"].split()[0] == "root", admin_out

        # Everything exists and a privileged task can read it...
        # (Under PostgreSQL there is no database file in the data directory.)
        db_file = () if server.database else ("sqlite",)
        for name in (*db_file, "agent-token", "data-list", "nodes-list", "other-root-list", "other-file",
                     "server-environ", "server-cmdline", "writer-environ", "writer-cwd", "own-root-list"):
            assert root[name] == "ok", (name, admin_out)
        assert root["writer-found"] != "none" and root["writer-secret"] == secret, admin_out
        # ...and the unprivileged task can read none of it.
        for name in (*db_file, "agent-token", "data-list", "nodes-list", "other-root-list", "other-file",
                     "server-environ", "writer-environ", "writer-cwd"):
            assert user[name] == "denied", (name, out)
        if os.path.exists(os.path.join(server.data_dir, "openbatch.sqlite-wal")):
            assert user["sqlite-wal"] == "denied" and root["sqlite-wal"] == "ok"
        assert user["writer-found"] == root["writer-found"], "the process is visible (as on any Linux host), its insides are not"
        assert user["writer-secret"] == "", out
        assert user["own-root-list"] == "ok", "a task still reaches its own node's root"
        # The command line is readable by everyone, but the key given with
        # --key was wiped from it after start.
        assert user["server-cmdline"] == "ok"
        for text in (user["server-cmdline-text"], root["server-cmdline-text"]):
            assert "--key" in text and server.key not in text, text
            assert "x" * len(server.key) in text
    finally:
        try:
            client.terminate_task(jid, "writer")
        finally:
            end_job(client, jid)

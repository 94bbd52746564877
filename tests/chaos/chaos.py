"""Chaos run: SIGKILLs the server and node agents at random under load and
checks that nothing acknowledged is lost and nothing runs twice.

Every task's command appends `start <pid> <ns>` to a marker file named after
the task when it starts and `end <pid> <ns>` when it finishes, so the run can
tell afterwards how often each task's process ran and whether two runs of
one task overlapped. Tasks are added with the official 15.x SDK (one task
collection at a time, acknowledged or not); the server is killed with SIGKILL
and restarted on the same data directory, and node agents are killed with
SIGKILL (the server starts them again on their roots).

What counts:
- lost: an acknowledged task that is missing, or not completed with exit
  code 0 when the run ends;
- ran twice: a task whose process ran to its end more than once, or two of
  whose runs overlapped in time;
- interrupted: runs cut short by an agent kill (their attempts are requeued,
  as Batch does after a node failure); expected with agent kills only, and
  reported.

Used by tests/compat/v15/test_chaos.py (small, in CI) and bench/chaos.sh
(10 server kills and 10 agent kills, printing the figures).
"""
import argparse
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """An `openbatch serve` process on a free port, its stderr in
    `data_dir/server.log` (shared by the chaos and failover runs)."""

    def __init__(self, binary, data_dir):
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.log = open(os.path.join(data_dir, "server.log"), "ab")

    def launch(self, args, env):
        """Starts `serve` with `args` after --listen and --data-dir, and waits until it listens."""
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir, *args],
            stdout=subprocess.DEVNULL, stderr=self.log, env=dict(os.environ, **env), start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"openbatch exited with {self.proc.returncode}")
                time.sleep(0.02)
        raise RuntimeError("openbatch did not start listening")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)  # a paused process must see the SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Server(ServerProcess):
    def __init__(self, binary, data_dir):
        super().__init__(binary, data_dir)
        self.account = "chaos"
        self.key = base64.b64encode(os.urandom(32)).decode()

    def start(self):
        self.launch(["--account", self.account], {"OPENBATCH_KEY": self.key})


def agent_pids(data_dir):
    """The agents the server started for its local nodes (by their --root)."""
    nodes = os.path.join(data_dir, "nodes")
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if len(cmd) > 1 and cmd[1] == b"agent" and any(c.startswith(nodes.encode()) for c in cmd):
            found.append(int(p))
    # A task process between its agent's clone and its exec still shows the
    # agent's command line: it is the agent's child, not an agent (killing
    # it would fail that task with exit code 137, as any killed task fails).
    def parent(pid):
        try:
            return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None
    return [p for p in found if parent(p) not in found]


def task_command(markers, duration):
    # `$$` is the shell's pid: one line pair per run. A run first checks
    # whether an earlier run of the same task is still alive (`overlap`; a
    # zombie waiting to be reaped is dead).
    m = os.path.join(markers, "$AZ_BATCH_TASK_ID")
    return (f"/bin/sh -c 'if [ -f {m} ]; then for p in $(sed -n \"s/^start \\([0-9]*\\) .*/\\1/p\" {m}); do "
            f"s=$(cut -d\\  -f3 /proc/$p/stat 2>/dev/null); [ -n \"$s\" ] && [ \"$s\" != Z ] && echo overlap $p 0 >> {m}; done; fi; "
            f"echo start $$ $(date +%s%N) >> {m}; sleep {duration}; echo end $$ $(date +%s%N) >> {m}'")


def runs_of(path):
    """([(pid, start_ns, end_ns or None)], overlaps) from a marker file:
    its runs, and how many times a run found an earlier one still alive."""
    starts, runs, overlaps = {}, [], 0
    try:
        lines = open(path).read().split("\n")
    except FileNotFoundError:
        return runs, overlaps
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue
        kind, pid, ns = parts[0], parts[1], int(parts[2])
        if kind == "start":
            starts[pid] = ns
        elif kind == "end" and pid in starts:
            runs.append((pid, starts.pop(pid), ns))
        elif kind == "overlap":
            overlaps += 1
    runs.extend((pid, s, None) for pid, s in starts.items())
    return runs, overlaps


def run(binary, server_kills=10, agent_kills=10, tasks=1500, nodes=2, slots=4, seed=None, work_dir=None, log=print):
    from azure.batch import BatchClient, models
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.exceptions import AzureError

    rng = random.Random(seed)
    root = work_dir or tempfile.mkdtemp(prefix="openbatch-chaos-")
    data = os.path.join(root, "data")
    markers = os.path.join(root, "markers")
    os.makedirs(data)
    os.makedirs(markers)
    os.chmod(root, 0o755)
    os.chmod(markers, 0o1777)  # tasks run as the unprivileged task user
    server = Server(binary, data)
    server.start()

    def client():
        return BatchClient(endpoint=server.endpoint,
                           credential=AzureNamedKeyCredential(server.account, server.key),
                           retry_total=0, connection_timeout=2, read_timeout=10)

    def retrying(f, attempts=200):
        for _ in range(attempts):
            try:
                return f(client())
            except AzureError:
                time.sleep(0.1)
        raise RuntimeError("the server did not answer")

    pool, job = "chaospool", "chaosjob"
    retrying(lambda c: c.create_pool(models.BatchPoolCreateOptions(
        id=pool, vm_size="standard_d2s_v3", target_dedicated_nodes=nodes, task_slots_per_node=slots)))
    retrying(lambda c: c.create_job(models.BatchJobCreateOptions(id=job, pool_info=models.BatchPoolInfo(pool_id=pool))))

    acknowledged = set()
    stop = threading.Event()

    def load():
        i = 0
        while i < tasks and not stop.is_set():
            batch = []
            for _ in range(min(50, tasks - i)):
                d = rng.choice(["0", "0", "0.05", "0.2", "0.5"])
                batch.append(models.BatchTaskCreateOptions(id=f"t{i:06d}", command_line=task_command(markers, d)))
                i += 1
            try:
                r = client().create_task_collection(job, models.BatchTaskGroup(task_values=batch))
                acknowledged.update(x.task_id for x in r.result_values
                                    if x.status == models.BatchTaskAddStatus.SUCCESS)
            except AzureError:
                pass  # not acknowledged: may or may not exist
            time.sleep(rng.uniform(0.02, 0.1))
    loader = threading.Thread(target=load)
    loader.start()

    events = ["server"] * server_kills + ["agent"] * agent_kills
    rng.shuffle(events)
    killed = {"server": 0, "agent": 0}
    for e in events:
        time.sleep(rng.uniform(0.5, 2.0))
        if e == "server":
            server.kill()
            killed["server"] += 1
            time.sleep(rng.uniform(0, 0.3))
            server.start()
        else:
            pids = agent_pids(data)
            if pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
                killed["agent"] += 1
    loader.join()

    # Every acknowledged task must complete.
    deadline = time.time() + 120 + tasks * 0.01
    states = {}
    while time.time() < deadline:
        try:
            states = {t.id: t for t in client().list_tasks(job)}
        except AzureError:
            time.sleep(0.5)
            continue
        if all(states.get(t) is not None and states[t].state == models.BatchTaskState.COMPLETED for t in acknowledged):
            break
        time.sleep(1)

    lost = sorted(t for t in acknowledged
                  if t not in states or states[t].state != models.BatchTaskState.COMPLETED
                  or states[t].execution_info.exit_code != 0)
    twice, interrupted, overlapped = [], 0, []
    ran = set()
    for name in os.listdir(markers):
        runs, overlaps = runs_of(os.path.join(markers, name))
        if runs:
            ran.add(name)
        finished = [r for r in runs if r[2] is not None]
        interrupted += len(runs) - len(finished)
        if len(finished) > 1:
            twice.append(name)
        # Two runs at once: one found the other alive, or their recorded
        # spans intersect.
        spans = sorted((s, e) for _, s, e in finished)
        if overlaps or any(spans[k + 1][0] < spans[k][1] for k in range(len(spans) - 1)):
            overlapped.append(name)
    requeued = sum(1 for t in states.values() if t.execution_info and t.execution_info.requeue_count)
    nodes_now = []
    try:
        nodes_now = [n.state for n in client().list_nodes(pool)]
    except AzureError:
        pass
    server.stop()
    result = {
        "server_kills": killed["server"], "agent_kills": killed["agent"],
        "tasks_acknowledged": len(acknowledged), "tasks_existing": len(states), "tasks_that_ran": len(ran),
        "lost": len(lost), "ran_twice": len(set(twice) | set(overlapped)), "overlapping_runs": len(overlapped),
        "interrupted_runs": interrupted, "requeued_tasks": requeued, "nodes_at_end": nodes_now,
        "examples_lost": lost[:5], "examples_twice": sorted(set(twice) | set(overlapped))[:5], "work_dir": root,
    }
    log(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("OPENBATCH_BIN", "target/release/openbatch"))
    ap.add_argument("--server-kills", type=int, default=10)
    ap.add_argument("--agent-kills", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    r = run(os.path.abspath(a.bin), a.server_kills, a.agent_kills, a.tasks, seed=a.seed)
    sys.exit(0 if r["lost"] == 0 and r["ran_twice"] == 0 else 1)

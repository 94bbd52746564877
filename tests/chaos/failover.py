"""Failover run: three `openbatch serve --replica` processes on one PostgreSQL
database under load; the leader is SIGKILLed again and again (and restarted
as a standby), and once SIGSTOPped for longer than its lease and then
resumed. Checks afterwards that nothing acknowledged is lost and nothing
ran twice, and measures the failover time.

Load: tasks added with the official 15.x SDK in collections of 50 through
any replica (a client moves to the next replica when one does not answer);
each task appends `start`/`end` markers to a file named after it (see
chaos.py), run by two remote agents (`openbatch agent --server URL1,URL2,URL3`)
of a pool with no nodes of its own.

Failover time: from the SIGKILL of the leader to the start (by its own
marker) of a probe task added right after the kill to a high-priority job,
i.e. to the first task the new leader starts.

What counts (as in chaos.py): lost (an acknowledged task missing or not
completed with exit code 0 at the end), ran twice (a task whose process ran
to its end more than once, or two runs of one task that overlapped in time).
A paused leader must exit (status 3) once it runs again: it lost its lease.

Used by tests/compat/v15/test_failover.py (small, in CI, on the PostgreSQL
pass) and bench/failover.sh (10 kills, printing the figures).
"""
import argparse
import base64
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos import ServerProcess, runs_of, task_command  # noqa: E402

LOST_LEASE_EXIT = 3


class Replica(ServerProcess):
    def __init__(self, binary, data_dir, database, key, token, ttl_ms):
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        super().__init__(binary, data_dir)
        self.database, self.key, self.ttl_ms = database, key, ttl_ms
        # Replicas share the agents' join token.
        fd = os.open(os.path.join(data_dir, "agent.token"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, token.encode())
        os.close(fd)

    def start(self):
        self.launch(["--account", "failover", "--replica", "--lease-ttl-ms", str(self.ttl_ms)],
                    {"OPENBATCH_KEY": self.key, "OPENBATCH_DATABASE": self.database})

    def signal(self, sig):
        self.proc.send_signal(sig)


def leader_url(database):
    """The advertised URL in the leader's lease (None while it is free)."""
    out = subprocess.run(["psql", "-qAt", database, "-c",
                          "SELECT holder FROM leases WHERE name = 'leader' AND holder IS NOT NULL "
                          "AND expires > (extract(epoch from clock_timestamp()) * 1000)::bigint"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return out.split(" ", 1)[1] if " " in out else None


def run(binary, database, kills=3, pauses=1, ttl_ms=2000, tasks=400, agents=2, slots=4, seed=None, work_dir=None, log=print):
    from azure.batch import BatchClient, models
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.exceptions import AzureError

    rng = random.Random(seed)
    root = work_dir or tempfile.mkdtemp(prefix="openbatch-failover-")
    markers = os.path.join(root, "markers")
    os.makedirs(markers)
    os.chmod(root, 0o755)
    os.chmod(markers, 0o1777)  # tasks run as the unprivileged task user
    key = base64.b64encode(os.urandom(32)).decode()
    token = os.urandom(32).hex()
    replicas = [Replica(binary, os.path.join(root, f"r{i}"), database, key, token, ttl_ms) for i in range(3)]
    for r in replicas:
        r.start()
    procs = []
    agent_logs = open(os.path.join(root, "agents.log"), "ab")

    turn = [0]

    def client():
        # Round robin over the replicas that are running.
        live = [r for r in replicas if r.alive()] or replicas
        turn[0] += 1
        r = live[turn[0] % len(live)]
        return BatchClient(endpoint=r.endpoint, credential=AzureNamedKeyCredential("failover", key),
                           retry_total=0, connection_timeout=2, read_timeout=10)

    def retrying(f, attempts=300):
        for _ in range(attempts):
            try:
                return f(client())
            except AzureError:
                time.sleep(0.1)
        raise RuntimeError("no replica answered")

    pool, job, probes = "fopool", "fojob", "foprobes"
    retrying(lambda c: c.create_pool(models.BatchPoolCreateOptions(
        id=pool, vm_size="byo", target_dedicated_nodes=0, task_slots_per_node=slots)))
    servers = ",".join(r.endpoint for r in replicas)
    for i in range(agents):
        env = dict(os.environ, OPENBATCH_AGENT_TOKEN=token)
        procs.append(subprocess.Popen(
            [binary, "agent", "--server", servers, "--pool", pool, "--root", os.path.join(root, f"node{i}")],
            env=env, stdout=subprocess.DEVNULL, stderr=agent_logs, start_new_session=True))
    retrying(lambda c: c.create_job(models.BatchJobCreateOptions(id=job, pool_info=models.BatchPoolInfo(pool_id=pool))))
    retrying(lambda c: c.create_job(models.BatchJobCreateOptions(
        id=probes, priority=1000, pool_info=models.BatchPoolInfo(pool_id=pool))))

    acknowledged = set()
    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            batch = []
            for _ in range(50):
                d = rng.choice(["0", "0.05", "0.2", "0.5"])
                batch.append(models.BatchTaskCreateOptions(id=f"t{i:06d}", command_line=task_command(markers, d)))
                i += 1
            try:
                r = client().create_task_collection(job, models.BatchTaskGroup(task_values=batch))
                acknowledged.update(x.task_id for x in r.result_values
                                    if x.status == models.BatchTaskAddStatus.SUCCESS)
            except AzureError:
                pass  # not acknowledged: may or may not exist
            # Keep a backlog of at most `tasks` tasks not started yet.
            while not stop.is_set() and len(acknowledged) - len(os.listdir(markers)) > tasks:
                time.sleep(0.1)

    def measure():
        """The kills and pauses, the wait for every acknowledged task, and the checks."""
        def current_leader(timeout=30):
            deadline = time.time() + timeout
            while time.time() < deadline:
                url = leader_url(database)
                found = [r for r in replicas if r.endpoint == url and r.alive()]
                if found:
                    return found[0]
                time.sleep(0.05)
            raise RuntimeError("no leader")

        def probe(n):
            """Adds the probe task `n`; the time its process started (ns), by its marker."""
            tid = f"probe{n:03d}"
            while True:
                try:
                    client().create_task(probes, models.BatchTaskCreateOptions(id=tid, command_line=task_command(markers, "0")))
                    break
                except AzureError as e:
                    if "TaskExists" in str(e):
                        break
                    time.sleep(0.05)
            deadline = time.time() + 60
            path = os.path.join(markers, tid)
            while time.time() < deadline:
                runs, _ = runs_of(path)
                if runs:
                    return min(s for _, s, _ in runs)
                time.sleep(0.02)
            raise RuntimeError(f"probe {tid} never started")

        failovers = []
        exits_after_pause = []
        time.sleep(2)
        events = ["kill"] * kills + ["pause"] * pauses
        rng.shuffle(events)
        for n, e in enumerate(events):
            time.sleep(rng.uniform(0.5, 1.5))
            leader = current_leader()
            if e == "kill":
                killed_at = time.time_ns()
                leader.signal(signal.SIGKILL)
                leader.proc.wait()
                started = probe(n)
                failovers.append((started - killed_at) / 1e9)
                log(f"kill {n}: failover {failovers[-1]:.2f} s")
                leader.start()  # back as a standby
            else:
                leader.signal(signal.SIGSTOP)
                time.sleep(ttl_ms / 1000 * 2.5)
                leader.signal(signal.SIGCONT)
                try:
                    leader.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
                exits_after_pause.append(leader.proc.poll())
                log(f"pause {n}: the resumed leader exited with {exits_after_pause[-1]}")
                if not leader.alive():
                    leader.start()
        stop.set()
        loader.join()

        # Every acknowledged task must complete.
        deadline = time.time() + 120 + len(acknowledged) * 0.01
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
        twice, overlapped, interrupted = [], [], 0
        for name in os.listdir(markers):
            runs, overlaps = runs_of(os.path.join(markers, name))
            finished = [r for r in runs if r[2] is not None]
            interrupted += len(runs) - len(finished)
            if len(finished) > 1:
                twice.append(name)
            spans = sorted((s, e) for _, s, e in finished)
            if overlaps or any(spans[k + 1][0] < spans[k][1] for k in range(len(spans) - 1)):
                overlapped.append(name)
        ordered = sorted(failovers)
        result = {
            "kills": len(failovers), "pauses": len(exits_after_pause), "exits_after_pause": exits_after_pause,
            "failover_s": [round(f, 2) for f in failovers],
            "failover_p50_s": round(ordered[len(ordered) // 2], 2) if ordered else None,
            "failover_max_s": round(ordered[-1], 2) if ordered else None,
            "tasks_acknowledged": len(acknowledged), "tasks_existing": len(states),
            "lost": len(lost), "ran_twice": len(set(twice) | set(overlapped)), "overlapping_runs": len(overlapped),
            "interrupted_runs": interrupted,
            "examples_lost": lost[:5], "examples_twice": sorted(set(twice) | set(overlapped))[:5], "work_dir": root,
        }
        log(json.dumps(result, indent=1))
        return result

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        return measure()
    finally:
        stop.set()
        loader.join(timeout=30)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for r in replicas:
            r.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("OPENBATCH_BIN", "target/release/openbatch"))
    ap.add_argument("--database", required=True, help="an empty PostgreSQL database the replicas share")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--pauses", type=int, default=1)
    ap.add_argument("--ttl-ms", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    r = run(os.path.abspath(a.bin), a.database, a.kills, a.pauses, a.ttl_ms, seed=a.seed)
    ok = r["lost"] == 0 and r["ran_twice"] == 0 and all(x == LOST_LEASE_EXIT for x in r["exits_after_pause"])
    sys.exit(0 if ok else 1)

"""A private one-machine Slurm cluster (Debian's slurm-wlm and munge:
munged, slurmctld and slurmd as root, everything in one directory, on free
ports), shared by the test fixture (conftest.py `slurm_cluster`) and the
provider benchmark (bench/providers.sh, through the command line below).

    python3 slurmcluster.py start DIR   # starts it; prints its SLURM_CONF
    python3 slurmcluster.py stop DIR    # cancels its jobs, stops it
"""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

PARTITION = "obtest"
TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
DAEMONS = ("slurmctld", "slurmd", "munged")


def available():
    """Whether this process can run a cluster (root, the packages installed)."""
    return os.geteuid() == 0 and all(shutil.which(n) for n in TOOLS)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(d, partition=PARTITION, cpus=2):
    """Starts a cluster whose files live in the existing directory `d`; the
    environment its commands need (SLURM_CONF). One node (this machine,
    `cpus` CPUs, each core shared by up to 8 jobs) in `partition`."""
    host = socket.gethostname().split(".")[0]
    key = os.path.join(d, "munge.key")
    with open(key, "wb") as f:
        f.write(os.urandom(1024))
    os.chmod(key, 0o600)
    for sub in ("state", "spool"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    sock = os.path.join(d, "munge.sock")
    subprocess.run([shutil.which("munged"), "--force", f"--socket={sock}", f"--key-file={key}",
                    f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munge.seed"],
                   check=True, capture_output=True)
    conf = os.path.join(d, "slurm.conf")
    with open(conf, "w") as f:
        f.write(f"""ClusterName=openbatch
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=5
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
""")
    env = dict(os.environ, SLURM_CONF=conf)
    try:
        subprocess.run([shutil.which("slurmctld"), "-c"], env=env, check=True, capture_output=True)
        subprocess.run([shutil.which("slurmd")], env=env, check=True, capture_output=True)
        deadline = time.time() + 30
        while True:
            out = subprocess.run(["sinfo", "--noheader", "--format=%t"], env=env, capture_output=True, text=True).stdout
            if out.strip() == "idle":
                break
            if time.time() > deadline:
                raise RuntimeError(f"slurm did not come up ({out!r}); see {d}/slurmctld.log")
            time.sleep(0.2)
    except BaseException:
        stop(d, partition)
        raise
    return env


def stop(d, partition=PARTITION):
    """Cancels the cluster's jobs and stops its daemons."""
    env = dict(os.environ, SLURM_CONF=os.path.join(d, "slurm.conf"))
    subprocess.run(["scancel", "--full", f"--partition={partition}"], env=env, capture_output=True)
    for name in DAEMONS:
        try:
            with open(os.path.join(d, f"{name}.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
    time.sleep(0.5)


@contextlib.contextmanager
def cluster(d, partition=PARTITION):
    """`start` … `stop` around a block; yields the environment."""
    env = start(d, partition)
    try:
        yield env
    finally:
        stop(d, partition)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "start":
        print(start(os.path.abspath(sys.argv[2]))["SLURM_CONF"])
    else:
        stop(os.path.abspath(sys.argv[2]))

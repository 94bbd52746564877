"""Resource-file download and output-file upload throughput (issue "Data in
and out"): 1,000 files of 64 KiB and one 1 GiB file, through openbatch tasks
against Azurite, and the same transfers with the Python storage SDK
(`azure-storage-blob`, 8 files / 4 blocks in flight, as azcopy-like
tools do) in the same run as the baseline. Also the node agent's peak
memory (VmHWM) over the openbatch transfers. Run by bench/data.sh."""
import concurrent.futures
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "compat"))
from conftest import Server, running_azurite, wait_for  # noqa: E402

from azure.batch import BatchClient, models  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402

SMALL, SMALL_SIZE = 1000, 64 * 1024
BIG_SIZE = int(os.environ.get("BENCH_BIG_MIB", "1024")) * 1024 * 1024
MIB = 1024 * 1024


def make_data(root):
    os.makedirs(os.path.join(root, "small"))
    for i in range(SMALL):
        with open(os.path.join(root, "small", f"f{i:04d}.bin"), "wb") as f:
            f.write(os.urandom(SMALL_SIZE))
    block = os.urandom(MIB)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        for i in range(BIG_SIZE // MIB):
            f.write(block[i % 7:] + block[:i % 7])
    for d, _, files in os.walk(root):
        os.chmod(d, 0o755)
        for n in files:
            os.chmod(os.path.join(d, n), 0o644)


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def agent_pid(server_pid):
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == server_pid:
                    return int(p)
            except OSError:
                continue
    return None


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    work = tempfile.mkdtemp(prefix="openbatch-bench-data-")
    os.chmod(work, 0o755)
    src = os.path.join(work, "src")
    print(f"making test data in {src} ...", flush=True)
    make_data(src)
    with running_azurite(work) as az:
        svc = az.service
        for c in ("sdkdata", "obdata"):
            svc.create_container(c)
        res = {}

        # --- baseline: the Python storage SDK -----------------------------------
        def sdk_up_small():
            cc = svc.get_container_client("sdkdata")
            def one(i):
                with open(os.path.join(src, "small", f"f{i:04d}.bin"), "rb") as f:
                    cc.upload_blob(f"small/f{i:04d}.bin", f, overwrite=True)
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                list(ex.map(one, range(SMALL)))

        def sdk_up_big():
            with open(os.path.join(src, "big.bin"), "rb") as f:
                svc.get_container_client("sdkdata").upload_blob("big.bin", f, overwrite=True, max_concurrency=4)

        dst = os.path.join(work, "sdk-dst")
        os.makedirs(dst)

        def sdk_down_small():
            cc = svc.get_container_client("sdkdata")
            def one(i):
                with open(os.path.join(dst, f"f{i:04d}.bin"), "wb") as f:
                    cc.download_blob(f"small/f{i:04d}.bin").readinto(f)
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                list(ex.map(one, range(SMALL)))

        def sdk_down_big():
            with open(os.path.join(dst, "big.bin"), "wb") as f:
                svc.get_container_client("sdkdata").download_blob("big.bin", max_concurrency=4).readinto(f)

        print("baseline (Python storage SDK) ...", flush=True)
        res["sdk"] = {"upload_small_s": timed(sdk_up_small), "upload_big_s": timed(sdk_up_big),
                      "download_small_s": timed(sdk_down_small), "download_big_s": timed(sdk_down_big)}

        # --- openbatch: a node agent moving the same data -----------------------
        sdir = os.path.join(work, "server")
        os.makedirs(sdir)
        server = Server(sdir)
        server.start()
        try:
            client = BatchClient(endpoint=server.endpoint, credential=AzureNamedKeyCredential(server.account, server.key))
            client.create_pool(models.BatchPoolCreateOptions(id="p", vm_size="bench", target_dedicated_nodes=1))
            wait_for(lambda: [n for n in client.list_nodes("p") if n.state == models.BatchNodeState.IDLE], timeout=30, what="node")
            agent = agent_pid(server.proc.pid)
            client.create_job(models.BatchJobCreateOptions(id="j", pool_info=models.BatchPoolInfo(pool_id="p")))
            rss_base = vm(agent, "VmRSS")
            ob_sas = az.sas_url("obdata", "racwl")
            sdk_sas = az.sas_url("sdkdata", "rl")

            def run(tid, **kw):
                def go():
                    client.create_task("j", models.BatchTaskCreateOptions(id=tid, command_line="/bin/true", **kw))
                    t = wait_for(lambda: (t := client.get_task("j", tid)).state == models.BatchTaskState.COMPLETED and t,
                                 timeout=3600, interval=0.02, what=tid)
                    assert t.execution_info.result == models.BatchTaskExecutionResult.SUCCESS, t.execution_info
                return timed(go)

            def upload(pattern, path):
                return [models.OutputFile(
                    file_pattern=pattern,
                    destination=models.OutputFileDestination(container=models.OutputFileBlobContainerDestination(
                        container_url=ob_sas, path=path)),
                    upload_options=models.OutputFileUploadConfiguration(upload_condition="tasksuccess"))]

            print("openbatch (agent) ...", flush=True)
            res["openbatch"] = {
                "upload_small_s": run("up-small", output_files=upload(f"{src}/small/*", "small")),
                "upload_big_s": run("up-big", output_files=upload(f"{src}/big.bin", "big.bin")),
                "download_small_s": run("down-small", resource_files=[
                    models.ResourceFile(storage_container_url=sdk_sas, blob_prefix="small/")]),
                "download_big_s": run("down-big", resource_files=[
                    models.ResourceFile(http_url=az.blob_sas_url("sdkdata", "big.bin"), file_path="big.bin")]),
            }
            # The task's files are on the node; check the big download arrived whole.
            node = client.get_task("j", "down-big").node_info
            props = client.get_node_file_properties("p", node.node_id, f"{node.task_root_directory}/wd/big.bin")
            assert props.content_length == BIG_SIZE, props.content_length
            blobs = {b.name: b.size for b in svc.get_container_client("obdata").list_blobs()}
            assert len(blobs) == SMALL + 1 and blobs["big.bin"] == BIG_SIZE
            res["agent_peak_rss_mib"] = vm(agent, "VmHWM") / MIB
            res["agent_rss_before_mib"] = rss_base / MIB
        finally:
            server.stop()
    os.system(f"rm -rf {work}")

    small_mib = SMALL * SMALL_SIZE / MIB
    big_mib = BIG_SIZE / MIB
    print(f"\nAzurite on loopback; {SMALL:,} files of 64 KiB ({small_mib:.1f} MiB) and one file of {big_mib:,.0f} MiB")
    print(f"{'':28}{'openbatch agent':>18}{'Python SDK':>14}{'ratio':>8}")
    for key, label, mib in [("download_small_s", "download 1,000 x 64 KiB", small_mib), ("download_big_s", f"download 1 x {big_mib:,.0f} MiB", big_mib),
                            ("upload_small_s", "upload 1,000 x 64 KiB", small_mib), ("upload_big_s", f"upload 1 x {big_mib:,.0f} MiB", big_mib)]:
        ob, sdk = res["openbatch"][key], res["sdk"][key]
        print(f"  {label:26}{mib / ob:11.1f} MiB/s{mib / sdk:9.1f} MiB/s{sdk / ob:7.2f}x")
    print(f"  agent peak RSS over the openbatch transfers: {res['agent_peak_rss_mib']:.1f} MiB "
          f"(before: {res['agent_rss_before_mib']:.1f} MiB)")
    out = os.path.join(HERE, "..", "bench-out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "data-summary.json"), "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()

"""Resource files and output files through azure-batch 14.2.0: an httpUrl
input from a plain HTTP server and an output uploaded to Azurite through a
container SAS."""
import os
import uuid

from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials

from conftest import wait_for


def test_resource_and_output_files(server, azurite, http_files, uid):
    client = BatchServiceClient(SharedKeyCredentials(server.account, server.key), batch_url=server.endpoint)
    base, directory = http_files
    name = f"v14-{uuid.uuid4().hex[:10]}"
    with open(os.path.join(directory, name), "wb") as f:
        f.write(b"from http\n")
    container = uid("out14")
    blobs = azurite.container(container)
    pid, jid = uid("data14"), uid("job14")
    client.pool.add(models.PoolAddParameter(id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1))
    try:
        wait_for(lambda: [n for n in client.compute_node.list(pid) if n.state == models.ComputeNodeState.idle], timeout=30, what="idle node")
        client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(pool_id=pid)))
        client.task.add(jid, models.TaskAddParameter(
            id="io", command_line="/bin/sh -c 'cat in/a.txt; tr a-z A-Z < in/a.txt > result.txt'",
            resource_files=[models.ResourceFile(http_url=f"{base}/{name}", file_path="in/a.txt")],
            output_files=[models.OutputFile(
                file_pattern="result.txt",
                destination=models.OutputFileDestination(container=models.OutputFileBlobContainerDestination(
                    container_url=azurite.sas_url(container, "racwl"), path="v14/result.txt",
                    upload_headers=[models.HttpHeader(name="x-ms-meta-sdk", value="v14")])),
                upload_options=models.OutputFileUploadOptions(upload_condition=models.OutputFileUploadCondition.task_success))]))
        t = wait_for(lambda: (t := client.task.get(jid, "io")).state == models.TaskState.completed and t, timeout=30, what="task completed")
        assert t.execution_info.result == models.TaskExecutionResult.success and t.execution_info.exit_code == 0, t.execution_info.as_dict()
        assert t.resource_files[0].file_path == "in/a.txt" and t.output_files[0].destination.container.path == "v14/result.txt"
        assert b"".join(client.file.get_from_task(jid, "io", "stdout.txt")) == b"from http\n"
        assert [b.name for b in blobs.list_blobs()] == ["v14/result.txt"]
        blob = blobs.get_blob_client("v14/result.txt")
        assert blob.download_blob().readall() == b"FROM HTTP\n"
        assert blob.get_blob_properties().metadata == {"sdk": "v14"}
    finally:
        client.pool.delete(pid)

"""Certificates through azure-batch 14.2.0 (the 15.x SDK has none): add
(cer and pfx), get, list, delete and cancel deletion, a pool's
`certificateReferences` installed on its nodes for the tasks that may see
them (`$AZ_BATCH_CERTIFICATES_DIR/sha1-<thumbprint>.cer`, `.pfx`,
`.pfx.pw`), and deletion failing while a pool uses a certificate."""
import base64
import datetime

import pytest
from azure.batch import BatchServiceClient, models
from azure.batch.batch_auth import SharedKeyCredentials
from azure.batch.models import BatchErrorException
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from conftest import wait_for
from rawclient import Raw

API_VERSION = "2024-07-01.20.0"


@pytest.fixture(scope="module")
def client(server):
    return BatchServiceClient(SharedKeyCredentials(server.account, server.key), batch_url=server.endpoint)


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server.endpoint, server.account, server.key, api_version=API_VERSION)


def make_cert(name):
    """A self-signed certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert, key


def cer(name):
    cert, _ = make_cert(name)
    der = cert.public_bytes(serialization.Encoding.DER)
    return cert.fingerprint(hashes.SHA1()).hex().upper(), der


def pfx(name, password):
    cert, key = make_cert(name)
    data = pkcs12.serialize_key_and_certificates(name.encode(), key, cert, None,
                                                 serialization.BestAvailableEncryption(password.encode()))
    return cert.fingerprint(hashes.SHA1()).hex(), data


def error_code(call):
    with pytest.raises(BatchErrorException) as e:
        call()
    return e.value.error.code


def gone(client, tp):
    try:
        client.certificate.get("sha1", tp)
        return False
    except BatchErrorException as e:
        return e.error.code == "CertificateNotFound"


def add_cer(client, tp, der):
    client.certificate.add(models.CertificateAddParameter(
        thumbprint=tp, thumbprint_algorithm="sha1", data=base64.b64encode(der).decode(),
        certificate_format=models.CertificateFormat.cer))


def test_add_get_list_and_refusals(client, raw):
    tp, der = cer("listed")
    add_cer(client, tp, der)
    c = client.certificate.get("sha1", tp)
    assert (c.thumbprint, c.thumbprint_algorithm, c.state) == (tp, "sha1", models.CertificateState.active)
    assert base64.b64decode(c.public_data) == der
    assert c.url.endswith(f"/certificates(thumbprintAlgorithm=sha1,thumbprint={tp})")
    assert c.state_transition_time is not None and c.delete_certificate_error is None
    # Any case of the thumbprint names it.
    assert client.certificate.get("sha1", tp.lower()).thumbprint == tp
    assert error_code(lambda: add_cer(client, tp, der)) == "CertificateExists"

    ptp, data = pfx("listed-pfx", "pw")
    client.certificate.add(models.CertificateAddParameter(
        thumbprint=ptp, thumbprint_algorithm="sha1", data=base64.b64encode(data).decode(), password="pw"))
    p = client.certificate.get("sha1", ptp)
    assert p.state == models.CertificateState.active and p.public_data is None

    # The secret parts are never returned, by get or list.
    for body in [raw.request("GET", f"/certificates(thumbprintAlgorithm=sha1,thumbprint={ptp})").json(),
                 *raw.request("GET", "/certificates").json()["value"]]:
        assert not {"data", "password", "_data", "_password", "_format"} & set(body), body

    active = [c.thumbprint for c in client.certificate.list(
        models.CertificateListOptions(filter="state eq 'active'"))]
    assert tp in active and ptp in active
    only = list(client.certificate.list(models.CertificateListOptions(filter=f"thumbprint eq '{ptp}'", select="thumbprint,state")))
    assert [(c.thumbprint, c.state, c.public_data) for c in only] == [(ptp, models.CertificateState.active, None)]
    assert len(list(client.certificate.list(models.CertificateListOptions(max_results=1)))) >= 2, "pages are followed"

    assert error_code(lambda: client.certificate.get("sha1", "00" * 20)) == "CertificateNotFound"
    assert error_code(lambda: client.certificate.cancel_deletion("sha1", tp)) == "CertificateStateActive"

    def refused(body, code, prop):
        r = raw.request("POST", "/certificates", body)
        assert r.status_code == 400 and r.json()["code"] == code, r.text
        assert {"key": "PropertyName", "value": prop} in r.json()["values"], r.text

    other, other_der = cer("other")
    b64 = base64.b64encode(other_der).decode()
    refused({"thumbprint": tp[:-2] + "00", "thumbprintAlgorithm": "sha1", "data": b64, "certificateFormat": "cer"},
            "InvalidPropertyValue", "thumbprint")
    refused({"thumbprint": other, "thumbprintAlgorithm": "sha1", "data": b64, "certificateFormat": "cer", "password": "x"},
            "InvalidPropertyValue", "password")
    refused({"thumbprint": other, "thumbprintAlgorithm": "sha1", "data": "not base64!", "certificateFormat": "cer"},
            "InvalidPropertyValue", "data")
    refused({"thumbprint": other, "thumbprintAlgorithm": "md5", "data": b64, "certificateFormat": "cer"},
            "InvalidPropertyValue", "thumbprintAlgorithm")
    refused({"thumbprint": "xyz", "thumbprintAlgorithm": "sha1", "data": b64}, "InvalidPropertyValue", "thumbprint")
    refused({"thumbprint": other, "thumbprintAlgorithm": "sha1", "data": b64}, "MissingRequiredProperty", "password")
    refused({"thumbprint": other, "thumbprintAlgorithm": "sha1", "data": b64, "certificateFormat": "p7b"},
            "InvalidPropertyValue", "certificateFormat")
    # The newest api-version has no certificate operations.
    r = raw.request("GET", "/certificates", api_version="2025-06-01")
    assert r.status_code == 400 and r.json()["code"] == "InvalidUri", r.text

    for t in (tp, ptp):
        client.certificate.delete("sha1", t)
        wait_for(lambda: gone(client, t), timeout=10, what="the certificate gone")


def test_pool_certificates_reach_its_tasks_and_block_deletion(client, raw, uid):
    tp, der = cer("installed")
    hidden, hidden_der = cer("start-task-only")
    ptp, data = pfx("installed-pfx", "s3cret pw")
    add_cer(client, tp, der)
    add_cer(client, hidden, hidden_der)
    client.certificate.add(models.CertificateAddParameter(
        thumbprint=ptp, thumbprint_algorithm="sha1", data=base64.b64encode(data).decode(),
        certificate_format=models.CertificateFormat.pfx, password="s3cret pw"))
    pid, other_pid, jid, other_jid = uid("certpool"), uid("nocerts"), uid("certjob"), uid("nocertjob")
    ref = lambda t, vis=None: models.CertificateReference(thumbprint=t, thumbprint_algorithm="sha1", visibility=vis)

    # A reference to a certificate that does not exist is refused.
    missing = "ab" * 20
    with pytest.raises(BatchErrorException) as e:
        client.pool.add(models.PoolAddParameter(id=uid("badref"), vm_size="standard_d2s_v3", certificate_references=[ref(missing)]))
    assert e.value.error.code == "InvalidCertificateReferences"
    assert any(v.value == missing for v in e.value.error.values)
    r = raw.request("PATCH", "/pools/idle14-missing-pool", {"certificateReferences": [{"thumbprint": missing, "thumbprintAlgorithm": "sha1"}]})
    assert r.status_code == 400 and r.json()["code"] == "InvalidCertificateReferences", r.text

    client.pool.add(models.PoolAddParameter(
        id=pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1,
        certificate_references=[ref(tp, [models.CertificateVisibility.task]), ref(ptp),
                                ref(hidden, [models.CertificateVisibility.start_task])]))
    client.pool.add(models.PoolAddParameter(id=other_pid, vm_size="standard_d2s_v3", target_dedicated_nodes=1))
    try:
        assert sorted(r.thumbprint for r in client.pool.get(pid).certificate_references) == sorted([tp, ptp, hidden])
        client.job.add(models.JobAddParameter(id=jid, pool_info=models.PoolInformation(pool_id=pid)))
        client.job.add(models.JobAddParameter(id=other_jid, pool_info=models.PoolInformation(pool_id=other_pid)))
        d = "$AZ_BATCH_CERTIFICATES_DIR"
        client.task.add(jid, models.TaskAddParameter(id="cer", command_line=f"/bin/sh -c 'cat {d}/sha1-{tp.lower()}.cer'"))
        client.task.add(jid, models.TaskAddParameter(id="pw", command_line=f"/bin/sh -c 'cat {d}/sha1-{ptp}.pfx.pw'"))
        client.task.add(jid, models.TaskAddParameter(id="pfx", command_line=f"/bin/sh -c 'cat {d}/sha1-{ptp}.pfx'"))
        client.task.add(jid, models.TaskAddParameter(
            id="ls", command_line=f"/bin/sh -c 'cd {d} && ls && stat -c %a . * && echo $AZ_BATCH_CERTIFICATES_DIR'"))
        client.task.add(other_jid, models.TaskAddParameter(id="none", command_line="/bin/sh -c 'echo dir=${AZ_BATCH_CERTIFICATES_DIR}.'"))

        def done(j, t):
            return wait_for(lambda: (x := client.task.get(j, t)).state == models.TaskState.completed and x, timeout=40, what=t)

        def stdout(j, t):
            assert done(j, t).execution_info.exit_code == 0, client.task.get(j, t).execution_info
            return b"".join(client.file.get_from_task(j, t, "stdout.txt"))

        assert stdout(jid, "cer") == der
        assert stdout(jid, "pw") == b"s3cret pw"
        assert stdout(jid, "pfx") == data
        lines = stdout(jid, "ls").decode().split()
        # Only what the task may see (not the start-task-only certificate), private to its user.
        assert lines[:3] == sorted([f"sha1-{tp.lower()}.cer", f"sha1-{ptp}.pfx", f"sha1-{ptp}.pfx.pw"]), lines
        assert lines[3:7] == ["700", "600", "600", "600"], lines
        assert lines[7].endswith(f"/{jid}/job-1/ls/certs"), lines
        # A node of a pool without references gets none.
        assert stdout(other_jid, "none") == b"dir=.\n"

        # Deleting a certificate a pool uses fails: deletefailed, naming the pool.
        client.certificate.delete("sha1", tp)
        assert client.certificate.get("sha1", tp).state == models.CertificateState.deleting
        assert error_code(lambda: client.certificate.cancel_deletion("sha1", tp)) == "CertificateBeingDeleted"
        assert error_code(lambda: client.certificate.delete("sha1", tp)) == "CertificateBeingDeleted"
        c = wait_for(lambda: (x := client.certificate.get("sha1", tp)).state == models.CertificateState.delete_failed and x,
                     timeout=10, what="deletefailed")
        assert c.previous_state == models.CertificateState.deleting
        err = c.delete_certificate_error
        assert err.code == "CertificateDeleteFailed" and pid in err.message, err
        assert {"name": "PoolId", "value": pid} in [{"name": v.name, "value": v.value} for v in err.values]
        # A pool cannot take a certificate whose deletion failed either.
        with pytest.raises(BatchErrorException) as e:
            client.pool.add(models.PoolAddParameter(id=uid("late"), vm_size="standard_d2s_v3", certificate_references=[ref(tp)]))
        assert e.value.error.code == "InvalidCertificateReferences"
        client.certificate.cancel_deletion("sha1", tp)
        c = client.certificate.get("sha1", tp)
        assert (c.state, c.previous_state, c.delete_certificate_error) == (
            models.CertificateState.active, models.CertificateState.delete_failed, None)
        client.job.terminate(jid)
        client.job.terminate(other_jid)
    finally:
        client.pool.delete(pid)
        client.pool.delete(other_pid)
    # Once the pool and its nodes are gone, the certificates can go.
    wait_for(lambda: not client.pool.exists(pid), timeout=30, what="the pool gone")
    for t in (tp, ptp, hidden):
        client.certificate.delete("sha1", t)
        wait_for(lambda: gone(client, t), timeout=10, what=f"{t} deleted")

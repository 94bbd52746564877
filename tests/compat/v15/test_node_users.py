"""Node user accounts and service logs through azure-batch 15.1.0 (issue 14):
accounts really made on the node by its agent (checked with getent, the
authorized_keys file, the admin group), updated, deleted, removed at their
expiry; the agent never touches an account it did not make and never
follows a link planted in a home; and the agent's own log files uploaded to
Azurite for a time window."""
import base64
import datetime
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from conftest import start_pool, wait_for

POOL = "userspool"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="node user accounts need a root agent (the tests' server runs its local agents as its own user)")


@pytest.fixture(scope="module")
def pool(client):
    start_pool(client, POOL, nodes=1)
    yield POOL
    client.begin_delete_pool(POOL, polling_interval=0.2).result()


@pytest.fixture(scope="module")
def node(client, pool):
    return list(client.list_nodes(pool))[0].id


def ssh_key(comment="test@openbatch"):
    """An OpenSSH ed25519 public key line (random key bytes; never used to log in)."""
    def s(b):
        return len(b).to_bytes(4, "big") + b
    blob = s(b"ssh-ed25519") + s(os.urandom(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def passwd(name):
    r = subprocess.run(["getent", "passwd", name], capture_output=True, text=True)
    return r.stdout.strip().split(":") if r.returncode == 0 else None


def shadow_hash(name):
    return subprocess.run(["getent", "shadow", name], capture_output=True, text=True, check=True).stdout.split(":")[1]


def groups(name):
    return subprocess.run(["id", "-nG", name], capture_output=True, text=True, check=True).stdout.split()


def error(e, status, code):
    """Checks a Batch error; its details (`values`) by key."""
    body = e.value.response.json()
    assert e.value.status_code == status and body["code"] == code, (e.value.status_code, body)
    return {v["key"]: v["value"] for v in body.get("values", [])}


def user_name(uid):
    return "u" + uid("x").replace("-", "")[-12:]


@pytest.fixture
def made(client, pool, node):
    """Names to delete after the test (if still there)."""
    names = []
    yield names
    for n in names:
        try:
            client.delete_node_user(pool, node, n)
        except HttpResponseError:
            pass


@needs_root
def test_add_update_delete_a_user(client, pool, node, uid, made):
    name = user_name(uid)
    key = ssh_key()
    made.append(name)
    client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=name, is_admin=True, password="S3cret pass:word", ssh_public_key=key))
    entry = passwd(name)
    assert entry is not None, "the account exists on the machine"
    uid_, gid, home, shell = int(entry[2]), int(entry[3]), entry[5], entry[6]
    assert (home, shell) == (f"/home/{name}", "/bin/bash")
    assert shadow_hash(name).startswith("$"), "the password is set, hashed"
    assert "sudo" in groups(name), "an admin account is in the sudo group"
    ssh = os.path.join(home, ".ssh")
    keys = os.path.join(ssh, "authorized_keys")
    with open(keys) as f:
        assert f.read() == key + "\n"
    st, sd = os.lstat(keys), os.lstat(ssh)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (uid_, gid, 0o600)
    assert (sd.st_uid, sd.st_mode & 0o777) == (uid_, 0o700)
    assert os.stat(home).st_uid == uid_

    # The same name again: 409 NodeUserExists, the account untouched.
    with pytest.raises(HttpResponseError) as e:
        client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=name, password="other"))
    error(e, 409, "NodeUserExists")

    # Replace: a new key, no password (removed), a new expiry.
    key2 = ssh_key("second")
    client.replace_node_user(pool, node, name, models.BatchNodeUserReplaceOptions(ssh_public_key=key2))
    with open(keys) as f:
        assert f.read() == key2 + "\n"
    assert shadow_hash(name).startswith("!"), "no password after a replace without one"
    # Without a key the key file goes; with a password it is set again.
    client.replace_node_user(pool, node, name, models.BatchNodeUserReplaceOptions(password="again"))
    assert not os.path.exists(keys)
    assert shadow_hash(name).startswith("$")

    client.delete_node_user(pool, node, name)
    assert passwd(name) is None and not os.path.exists(home)
    with pytest.raises(HttpResponseError) as e:
        client.delete_node_user(pool, node, name)
    error(e, 404, "NodeUserNotFound")
    with pytest.raises(HttpResponseError) as e:
        client.replace_node_user(pool, node, name, models.BatchNodeUserReplaceOptions(password="x"))
    error(e, 404, "NodeUserNotFound")


@needs_root
def test_a_plain_user_is_not_admin(client, pool, node, uid, made):
    name = user_name(uid)
    made.append(name)
    client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=name, ssh_public_key=ssh_key()))
    assert "sudo" not in groups(name)
    assert shadow_hash(name).startswith("!"), "no password given: none set"


@needs_root
def test_invalid_names_keys_and_accounts_it_did_not_make(client, pool, node, uid):
    for bad in ["-rf", "Alice", "a/b", "../etc", "root", "_azbatch", "a:b", "x" * 33]:
        with pytest.raises(HttpResponseError) as e:
            client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=bad, password="p"))
        values = error(e, 400, "InvalidPropertyValue")
        assert values.get("PropertyName") == "name", (bad, values)
    name = user_name(uid)
    for key in ["not a key", "ssh-ed25519 AAAA\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ", 'command="sh" ' + ssh_key()]:
        with pytest.raises(HttpResponseError) as e:
            client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=name, ssh_public_key=key))
        assert error(e, 400, "InvalidPropertyValue").get("PropertyName") == "sshPublicKey"
    with pytest.raises(HttpResponseError) as e:
        client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=name, password="a\nroot:x"))
    assert error(e, 400, "InvalidPropertyValue").get("PropertyName") == "password"
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    with pytest.raises(HttpResponseError) as e:
        client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=name, password="p", expiry_time=past))
    assert error(e, 400, "InvalidPropertyValue").get("PropertyName") == "expiryTime"
    assert passwd(name) is None, "nothing was made"
    # `nobody` is the machine's, not the agent's: not made again, not changed, not deleted.
    before = (passwd("nobody"), shadow_hash("nobody"))
    with pytest.raises(HttpResponseError) as e:
        client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name="nobody", password="p"))
    error(e, 409, "NodeUserExists")
    with pytest.raises(HttpResponseError) as e:
        client.replace_node_user(pool, node, "nobody", models.BatchNodeUserReplaceOptions(password="p"))
    error(e, 404, "NodeUserNotFound")
    with pytest.raises(HttpResponseError) as e:
        client.delete_node_user(pool, node, "nobody")
    error(e, 404, "NodeUserNotFound")
    assert (passwd("nobody"), shadow_hash("nobody")) == before
    with pytest.raises(HttpResponseError) as e:
        client.create_node_user(pool, "tvmps_nosuchnode", models.BatchNodeUserCreateOptions(name=name, password="p"))
    error(e, 404, "NodeNotFound")


@needs_root
def test_links_planted_in_a_home_are_not_followed(client, pool, node, uid, made):
    name = user_name(uid)
    made.append(name)
    client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=name, ssh_public_key=ssh_key()))
    home = passwd(name)[5]
    victim = tempfile.mkdtemp(prefix="openbatch-victim-")
    try:
        # The account's owner swaps ~/.ssh for a link to a directory of root's.
        shutil.rmtree(os.path.join(home, ".ssh"))
        os.symlink(victim, os.path.join(home, ".ssh"))
        key = ssh_key("after")
        client.replace_node_user(pool, node, name, models.BatchNodeUserReplaceOptions(ssh_public_key=key))
        assert os.listdir(victim) == [], "nothing was written through the link"
        ssh = os.path.join(home, ".ssh")
        assert not os.path.islink(ssh) and os.path.isdir(ssh)
        with open(os.path.join(ssh, "authorized_keys")) as f:
            assert f.read() == key + "\n"
        # authorized_keys itself a link to a file of root's: replaced, not written through.
        target = os.path.join(victim, "precious")
        with open(target, "w") as f:
            f.write("keep\n")
        os.unlink(os.path.join(ssh, "authorized_keys"))
        os.symlink(target, os.path.join(ssh, "authorized_keys"))
        client.replace_node_user(pool, node, name, models.BatchNodeUserReplaceOptions(ssh_public_key=key))
        with open(target) as f:
            assert f.read() == "keep\n"
        assert not os.path.islink(os.path.join(ssh, "authorized_keys"))
        # Deleting the account removes its home without following links in it.
        os.symlink(victim, os.path.join(home, "link"))
        client.delete_node_user(pool, node, name)
        assert not os.path.exists(home) and os.listdir(victim) == ["precious"]
    finally:
        shutil.rmtree(victim, ignore_errors=True)


@needs_root
def test_a_user_is_removed_at_its_expiry(client, pool, node, uid, made):
    name = user_name(uid)
    made.append(name)
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
    client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=name, password="p", expiry_time=soon))
    assert passwd(name) is not None
    wait_for(lambda: passwd(name) is None and not os.path.exists(f"/home/{name}"), timeout=20, interval=0.2,
             what="the expired account and its home gone")
    # An expiry moved later by a replace holds.
    name2 = user_name(uid)
    made.append(name2)
    client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=name2, password="p", expiry_time=soon + datetime.timedelta(seconds=2)))
    client.replace_node_user(pool, node, name2, models.BatchNodeUserReplaceOptions(
        password="p", expiry_time=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)))
    time.sleep(6)
    assert passwd(name2) is not None


@pytest.mark.skipif(ROOT, reason="checks the refusal of an agent that does not run as root")
def test_an_agent_that_is_not_root_refuses(client, pool, node, uid):
    with pytest.raises(HttpResponseError) as e:
        client.create_node_user(pool, node, models.BatchNodeUserCreateOptions(name=user_name(uid), password="p"))
    error(e, 409, "OperationNotValidOnNode")
    assert "root" in str(e.value)


# --- upload service logs ------------------------------------------------------

def test_upload_service_logs(client, pool, node, azurite, uid):
    name = uid("logs")
    c = azurite.container(name)
    sas = azurite.sas_url(name, "racwl")
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    r = client.upload_node_logs(pool, node, models.UploadBatchServiceLogsOptions(container_url=sas, start_time=start))
    assert r.virtual_directory_name.startswith(f"{pool}/{node}/"), r.virtual_directory_name
    assert r.number_of_files_uploaded >= 1
    blobs = {b.name: c.download_blob(b.name).readall() for b in c.list_blobs()}
    assert len(blobs) == r.number_of_files_uploaded
    for blob, data in blobs.items():
        prefix, _, file = blob.rpartition("/")
        assert prefix == r.virtual_directory_name, blob
        assert file.startswith("agent.") and file.endswith(".log"), blob
    assert any(b"joined the pool" in data for data in blobs.values()), list(blobs)
    # A second upload goes to a directory of its own.
    r2 = client.upload_node_logs(pool, node, models.UploadBatchServiceLogsOptions(container_url=sas, start_time=start))
    assert r2.virtual_directory_name != r.virtual_directory_name
    # A window the node has no logs for uploads nothing.
    old = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
    r3 = client.upload_node_logs(pool, node, models.UploadBatchServiceLogsOptions(
        container_url=sas, start_time=old, end_time=old + datetime.timedelta(hours=1)))
    assert r3.number_of_files_uploaded == 0
    assert not [b for b in c.list_blobs() if b.name.startswith(r3.virtual_directory_name)]


def test_upload_service_logs_errors(client, pool, node, azurite, uid):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    with pytest.raises(HttpResponseError) as e:
        client.upload_node_logs(pool, node, models.UploadBatchServiceLogsOptions(container_url="ftp://example/c", start_time=start))
    assert error(e, 400, "InvalidPropertyValue").get("PropertyName") == "containerUrl"
    # A container that does not exist: the node's upload fails, and says so.
    with pytest.raises(HttpResponseError) as e:
        client.upload_node_logs(pool, node, models.UploadBatchServiceLogsOptions(
            container_url=azurite.sas_url(uid("nosuch"), "racwl"), start_time=start))
    values = error(e, 400, "InvalidPropertyValue")
    assert values.get("PropertyName") == "containerUrl" and "ContainerNotFound" in str(e.value), str(e.value)
    with pytest.raises(HttpResponseError) as e:
        client.upload_node_logs(pool, node, models.UploadBatchServiceLogsOptions(
            container_url=azurite.sas_url(uid("c"), "racwl"), start_time=start,
            identity_reference=models.BatchNodeIdentityReference(resource_id="/subscriptions/x/identity")))
    assert error(e, 400, "UnsupportedProperty").get("PropertyName") == "identityReference"
    with pytest.raises(HttpResponseError) as e:
        client.upload_node_logs(pool, "tvmps_nosuchnode", models.UploadBatchServiceLogsOptions(container_url=azurite.sas_url("c"), start_time=start))
    error(e, 404, "NodeNotFound")

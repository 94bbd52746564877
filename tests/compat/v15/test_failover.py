"""Replicas on PostgreSQL (only on the PostgreSQL pass, OPENBATCH_TEST_DATABASE):
three `openbatch serve --replica` processes on one database, driven by
azure-batch 15.1.0 under load; the leader is SIGKILLed repeatedly and once
SIGSTOPped past its lease. Nothing acknowledged is lost, no task completes
twice, no two runs of a task overlap, and the paused leader exits once it
runs again."""
import os
import shutil
import sys

import pytest

from conftest import BIN, TEST_DATABASE, fresh_database

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "chaos"))
import failover  # noqa: E402

pytestmark = pytest.mark.skipif(not TEST_DATABASE, reason="replicas need PostgreSQL (OPENBATCH_TEST_DATABASE)")


def test_failover_loses_nothing_and_runs_nothing_twice():
    r = failover.run(os.path.abspath(BIN), fresh_database(), kills=3, pauses=1, ttl_ms=2000, tasks=300, seed=7)
    assert r["kills"] == 3 and r["tasks_acknowledged"] > 0, r
    assert r["lost"] == 0, r
    assert r["ran_twice"] == 0, r
    assert r["exits_after_pause"] == [failover.LOST_LEASE_EXIT], r
    # Generous bound for a busy CI machine; bench/failover.sh reports the figures.
    assert r["failover_max_s"] < 15, r
    shutil.rmtree(r["work_dir"], ignore_errors=True)

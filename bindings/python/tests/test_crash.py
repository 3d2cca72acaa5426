"""Atomicity under kill -9 (invariant 5 of docs/ARCHITECTURE.md): after SIGKILL at a random instant, the
record change, outbox entry and audit row of each action exist together or not at all."""

import random
import time
from pathlib import Path

import fieldsync
from support import SCHEMA, kill_child, verify_chain

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 60          # half with durability "normal", half with "full"
MAX_DELAY_S = 0.06  # after the child reports it is ready
SEED = 20240611


def run_child_and_kill(path, durability, delay, log):
    """Start a child, kill it `delay` seconds after it is ready; return
    (count at start, last count it reported)."""
    first, lines = kill_child([str(CHILD), path, durability], log, delay, ready="ready ")
    start = int(first.split()[1])
    # Only complete lines were committed and reported.
    return start, int(lines[-1]) if lines else start


def check_store(path, reported):
    with fieldsync.Store(path, SCHEMA) as store:
        audit = store.audit()
        outbox = store.outbox()
        rows = store.query("task")
        assert store.outbox_count() == len(outbox) == len(audit)
        total = len(audit)
        assert sum(r["picked"] or 0 for r in rows) == total
        assert {k for row in audit for k in row["outbox_keys"]} == {e["key"] for e in outbox}
        assert reported <= total <= reported + 1, (reported, total)
        # Each record shows the last action that touched it, and no later one.
        for row in rows:
            k = int(row["id"].split("-")[1])
            last = max(n for n in range(1, total + 1) if n % 3 == k)
            assert row["status"] == str(last), (row, total)
        assert [row["input"]["n"] for row in audit] == list(range(1, total + 1))
        verify_chain(audit)
        return total


def test_kill_9_keeps_record_outbox_and_audit_together(tmp_path):
    rng = random.Random(SEED)
    path = str(tmp_path / "crash.db")
    log = tmp_path / "child-stderr.log"
    total = 0
    started = time.monotonic()
    for kill in range(KILLS):
        durability = "normal" if kill % 2 == 0 else "full"
        # A few kills land at once, before or during the first apply.
        delay = 0.0 if kill % 10 == 0 else rng.uniform(0, MAX_DELAY_S)
        start, reported = run_child_and_kill(path, durability, delay, log)
        assert start == total, "the child saw a different count than the parent left"
        total = check_store(path, reported)
    elapsed = time.monotonic() - started
    assert total > KILLS, "too few actions committed to mean anything"
    print(f"{KILLS} kills, {total} actions, {elapsed:.1f}s")

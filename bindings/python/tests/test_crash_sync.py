"""kill -9 of a DEVICE process in the middle of syncing with a hub that runs in
ANOTHER process (python -m fieldsync serve): after every kill and a final clean
sync, each committed increment is counted exactly once at the hub, the outbox
is empty and the hub holds every audit row with its chain intact
(docs/PROTOCOL.md "Guarantees"; invariants 1, 2, 4 and 5 of
docs/ARCHITECTURE.md)."""

import random
import time
from pathlib import Path

import fieldsync
from support import SCHEMA, cli_env, enroll_at, kill_child, run_cli, serve_hub, verify_chain, write_schema

CHILD = Path(__file__).with_name("crash_sync_child.py")
KILLS = 60
MAX_DELAY_S = 0.25   # after the child reports it is ready
SEED = 20241125
BUDGET_S = 80        # the whole test, kills and final sync


def run_child_and_kill(path, durability, url, seed, delay, log):
    """Start a child, SIGKILL it `delay` s after it is ready. Returns (count at
    start, last count it reported, what it was doing: "apply"|"sync"|"between")."""
    first, lines = kill_child([str(CHILD), path, durability, url, str(seed)], log, delay, ready="ready ", env=cli_env())
    start = int(first.split()[1])
    counts = [int(line) for line in lines if line.isdigit()]
    phase = {"sync": "sync", "synced": "between"}.get(lines[-1] if lines else "", "apply")
    return start, counts[-1] if counts else start, phase


def test_kill_9_mid_sync_counts_every_increment_once(tmp_path):
    rng = random.Random(SEED)
    started = time.monotonic()
    device = str(tmp_path / "device.db")
    schema = write_schema(tmp_path / "schema.json")
    log = tmp_path / "child-stderr.log"
    phases = {"apply": 0, "sync": 0, "between": 0}
    total = 0
    with fieldsync.Store(device, SCHEMA, device_id="dev-crash") as store:
        enroll_at(tmp_path / "hub.db", store)
    with serve_hub(tmp_path / "hub.db", schema, tmp_path / "serve.log") as (url, server):
        for kill in range(KILLS):
            durability = "normal" if kill % 2 == 0 else "full"
            delay = 0.0 if kill % 10 == 0 else rng.uniform(0, MAX_DELAY_S)
            start, reported, phase = run_child_and_kill(device, durability, url, kill, delay, log)
            phases[phase] += 1
            assert start == total, "the child saw a different count than the parent left"
            with fieldsync.Store(device, SCHEMA) as store:
                total = store.stats()["audit_rows"]
                # Every reported apply committed; at most one more did, unreported.
                assert reported <= total <= reported + 1, (reported, total)
                assert store.outbox_count() <= total
            assert server.poll() is None, "the hub server died"
            assert time.monotonic() - started < BUDGET_S, f"too slow: {kill + 1} kills"

        # A final clean sync, by the CLI device loop.
        done = run_cli("sync", "--db", device, "--schema", schema, "--server", url,
                       "--timeout", "10", "--max-seconds", "30")
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert done.stdout.strip().splitlines()[-1].startswith("drained: outbox 0 left")
    elapsed = time.monotonic() - started

    with fieldsync.Store(device, SCHEMA) as store, \
            fieldsync.Hub(str(tmp_path / "hub.db"), SCHEMA) as hub:
        device_audit = store.audit()
        hub_audit = hub.audit(device_id="dev-crash")
        assert store.outbox_count() == 0, store.outbox(limit=5)
        # Each audit row is one committed increment of +1: exactly once at the hub.
        assert len(device_audit) == total
        assert [row["input"]["n"] for row in device_audit] == list(range(1, total + 1))
        assert sum(r["picked"] for r in hub.query("task")) == total
        assert store.query("task") == hub.query("task")
        stats = hub.stats()
        assert stats["entries_applied"] == total and stats["entries_rejected"] == 0
        # The audit trail arrived whole: same rows, chains verified at the hub.
        assert len(hub_audit) == len(device_audit) == stats["audit_rows"]
        assert [(r["audit_id"], r["hash"]) for r in hub_audit] == \
            [(r["audit_id"], r["hash"]) for r in device_audit]
        assert stats["audit_chain_breaks"] == stats["audit_hash_failures"] == 0
        assert stats["audit_gaps"] == 0
        assert all(r["chain_ok"] and r["server_received_at"] for r in hub_audit)
        assert all(r["outcome"] == "applied" and r["server_received_at"] for r in device_audit)
        verify_chain(device_audit)

    assert total > KILLS, "too few actions committed to mean anything"
    assert phases["sync"] >= KILLS // 5, f"too few kills landed mid-sync: {phases}"
    print(f"{KILLS} kills ({phases}), {total} increments, {elapsed:.1f}s")

"""kill -9 of a device process restored from an older image of its store, while
it recovers (issue 14, docs/SECURITY.md "Restored stores"): the image's new
actions reuse seqs the hub already decided for the lost device; the store
renumbers them above the hub's high-water mark in one transaction and sends
them again. Killed at random moments through that, then synced cleanly, every
action the device ever made is applied once at the hub — the lost device's
and the image's — and the hub's chain for the device stays unbroken."""

import random
import time
from pathlib import Path

import fieldsync
from support import SCHEMA, cli_env, enroll_at, kill_child, run_cli, serve_hub, write_schema

CHILD = Path(__file__).with_name("crash_sync_child.py")
KILLS = 20
MAX_DELAY_S = 0.25
SEED = 20261207
BUDGET_S = 60


def increments(store, n, first):
    for i in range(first, first + n):
        store.apply({"action": "pick", "actor": "op-crash", "type": "task", "id": f"T-{i % 3}",
                     "set": {"status": str(i)}, "inc": {"picked": 1}, "input": {"n": i}})


def test_kill_9_while_a_restored_image_recovers_applies_every_action_once(tmp_path):
    rng = random.Random(SEED)
    started = time.monotonic()
    device = str(tmp_path / "device.db")
    image = str(tmp_path / "device-image.db")
    schema = write_schema(tmp_path / "schema.json")
    log = tmp_path / "child-stderr.log"
    hub_db = tmp_path / "hub.db"
    with fieldsync.Store(device, SCHEMA, device_id="dev-crash", durability="normal") as store:
        enroll_at(hub_db, store)
    with serve_hub(hub_db, schema, tmp_path / "serve.log") as (url, server):
        # The device works, its image is taken, it works on and syncs, and is lost.
        with fieldsync.Store(device, SCHEMA) as store:
            increments(store, 5, 1)
            assert run_cli("sync", "--db", device, "--schema", schema, "--server", url,
                           "--max-seconds", "20").returncode == 0
            store.backup(image)
            increments(store, 7, 6)
        done = run_cli("sync", "--db", device, "--schema", schema, "--server", url, "--max-seconds", "20")
        assert done.returncode == 0, (done.stdout, done.stderr)
        lost_device_actions = 12
        with fieldsync.Store(image, SCHEMA) as restored:
            assert restored.stats()["audit_rows"] == 5
        # The image now works as the device: applies and syncs, killed over and over.
        for kill in range(KILLS):
            delay = 0.0 if kill % 5 == 0 else rng.uniform(0, MAX_DELAY_S)
            kill_child([str(CHILD), image, "normal" if kill % 2 else "full", url, str(kill)], log, delay,
                       ready="ready ", env=cli_env())
            assert server.poll() is None, "the hub server died"
            assert time.monotonic() - started < BUDGET_S, f"too slow: {kill + 1} kills"
        done = run_cli("sync", "--db", image, "--schema", schema, "--server", url, "--timeout", "10",
                       "--max-seconds", "30")
        assert done.returncode == 0, (done.stdout, done.stderr)

    with fieldsync.Store(image, SCHEMA) as restored, fieldsync.Hub(str(hub_db), SCHEMA) as hub:
        stats = restored.stats()
        # The image's own actions: its audit rows past the 5 it was taken with.
        image_actions = stats["audit_rows"] - 5
        assert image_actions > 0, "the children applied nothing"
        assert restored.outbox_count() == 0, restored.outbox(limit=5)
        assert stats["restored_recoveries"] >= 1
        hub_stats = hub.stats()
        total = lost_device_actions + image_actions
        assert sum(r["picked"] for r in hub.query("task")) == total
        assert hub_stats["entries_applied"] == total and hub_stats["entries_rejected"] == 0
        assert hub_stats["audit_rows"] == total
        assert hub_stats["audit_chain_breaks"] == hub_stats["audit_gaps"] == hub_stats["audit_hash_failures"] == 0
        assert hub_stats["devices_restored"] >= 1
        assert restored.query("task") == hub.query("task")

"""Two processes on one store file (docs/ABI.md, Threads): two children each
with their own Store handle, applying and syncing over HTTP at once; and the
CLI's `apply --db` on a file an app holds open. Every action reaches the hub
once, the outbox drains, the audit chain holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import support
from support import SCHEMA, run_cli, serve_hub, task, write_schema

import fieldsync

HERE = Path(__file__).resolve().parent
ROUNDS = 60


def _hub_task(hub: fieldsync.Hub, id: str) -> dict:
    rows = hub.query("task", where={"id": id})
    assert len(rows) == 1, f"hub has no task {id}"
    return rows[0]


def _check_hub_audit(hub: fieldsync.Hub, actions: int) -> None:
    stats = hub.stats()
    assert stats["audit_rows"] == actions
    assert stats["audit_chain_breaks"] == 0
    assert stats["audit_hash_failures"] == 0
    assert stats["audit_gaps"] == 0


def test_two_processes_applying_and_syncing_at_once_lose_nothing(tmp_path):
    db = str(tmp_path / "device.db")
    hub_db = tmp_path / "hub.db"
    schema_file = write_schema(tmp_path / "schema.json")
    with fieldsync.Store(db, SCHEMA, device_id="dev-A", durability="normal") as s:
        s.apply(task("T-1", set={"status": "open"}))
        support.enroll_at(hub_db, s)
    with serve_hub(hub_db, schema_file, tmp_path / "serve.log") as (url, _):
        children = [
            subprocess.Popen([sys.executable, str(HERE / "two_process_child.py"), db, url + "/sync",
                              str(i), str(ROUNDS)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=support.cli_env(), cwd=str(HERE))
            for i in range(2)
        ]
        try:
            for child in children:
                assert child.stdout.readline().strip() == "ready", child.stderr.read()
            for child in children:  # both hold a handle before either writes
                child.stdin.write("go\n")
                child.stdin.flush()
            reports = []
            for child in children:
                out, err = child.communicate(timeout=120)
                assert child.returncode == 0, err
                reports.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        for report in reports:
            assert report["error_count"] == 0, report["errors"]
            assert report["applied"] == ROUNDS
        # what is left goes out through the CLI, a third handle
        done = run_cli("sync", "--db", db, "--schema", schema_file, "--server", url,
                       "--max-seconds", "60")
        assert done.returncode == 0, done.stdout + done.stderr

    with fieldsync.Store(db, SCHEMA, device_id="dev-A") as s:
        assert s.outbox_count() == 0
        support.verify_chain(s.audit())
    with fieldsync.Hub(str(hub_db), SCHEMA) as hub:
        own = ROUNDS // 3
        for i in range(2):
            assert _hub_task(hub, f"P-{i}")["picked"] == own
        assert _hub_task(hub, "T-1")["picked"] == 2 * (ROUNDS - own)
        _check_hub_audit(hub, 1 + 2 * ROUNDS)


def test_cli_apply_on_a_store_an_app_holds_loses_nothing(tmp_path):
    db = str(tmp_path / "device.db")
    schema_file = write_schema(tmp_path / "schema.json")
    hub = fieldsync.Hub(str(tmp_path / "hub.db"), SCHEMA, durability="normal")
    with hub, fieldsync.Store(db, SCHEMA, device_id="dev-A", durability="normal") as app:
        hub.enroll_store(app)
        app.apply(task("T-1", set={"status": "open"}))
        for _ in range(2):
            done = run_cli("apply", "--db", db, "--schema", schema_file,
                           "--action", json.dumps(task("T-1", inc={"picked": 1})))
            assert done.returncode == 0, done.stderr
        # the app's handle was opened before the CLI wrote: it continues after
        applied = app.apply(task("T-1", inc={"picked": 10}))
        assert applied["seq"] == 4
        assert app.get("task", "T-1")["picked"] == 12
        assert app.stats()["last_seq"] == 4
        app.sync_with(hub)
        assert app.outbox_count() == 0
        assert _hub_task(hub, "T-1")["picked"] == 12
        support.verify_chain(app.audit())
        _check_hub_audit(hub, 4)

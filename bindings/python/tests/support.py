"""Shared by the tests: the schema, an audit-chain verifier, small helpers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

# Import the package from this checkout when it is not installed.
BINDING_DIR = Path(__file__).resolve().parents[1]
if str(BINDING_DIR) not in sys.path:
    sys.path.insert(0, str(BINDING_DIR))

REPO = BINDING_DIR.parents[1]
HEADER = REPO / "include" / "fieldsync.h"

SCHEMA: Dict[str, Any] = {
    "version": 1,
    "types": {
        "task": {
            "fields": {
                "status": {"type": "string"},
                "site": {"type": "string", "merge": "lww"},
                "picked": {"type": "int", "merge": "counter"},
                "weight": {"type": "float"},
                "urgent": {"type": "bool"},
                "tags": {"type": "set"},
                "on_hand": {"type": "int", "merge": "server"},
                "locked": {"type": "int", "merge": "server", "device_writes": False},
                "lines": {"type": "json", "merge": "custom", "resolver": "order_lines"},
            },
            "required": ["status"],
        }
    },
}

FIELDS = list(SCHEMA["types"]["task"]["fields"])

# SCHEMA with a retention policy for storage hygiene (docs/HYGIENE.md): done or
# cancelled tasks are evicted once acknowledged, others after 60 days unchanged.
HYGIENE_SCHEMA: Dict[str, Any] = {
    "version": 1,
    "types": {
        "task": {
            **SCHEMA["types"]["task"],
            "retention": {"keep_days": 60, "archive_when": {"status": ["done", "cancelled"]}},
        }
    },
}

# The fields of an audit row that the hash covers (docs/AUDIT.md).
HASHED = ("action", "actor", "audit_id", "device_id", "device_time", "hlc", "id",
          "input", "outbox_keys", "type")
GENESIS = "0" * 64


def canonical(row: Dict[str, Any]) -> str:
    subset = {k: row[k] for k in HASHED}
    return json.dumps(subset, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(prev_hash: str, row: Dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(row)).encode("utf-8")).hexdigest()


def verify_chain(rows: List[Dict[str, Any]], anchor: str = GENESIS, anchor_seq: int = 0) -> None:
    """Assert that audit rows (in audit_id order, one device) form a valid chain.

    After storage hygiene evicted a prefix of the trail, pass the store's
    anchor (stats()["audit_anchor_hash"], stats()["audit_anchor_seq"]): the
    first kept row must follow it."""
    prev = anchor
    for i, row in enumerate(rows):
        assert row["audit_id"] == anchor_seq + i + 1, f"audit_id gap at row {i}: {row['audit_id']}"
        assert row["prev_hash"] == prev, f"row {row['audit_id']}: prev_hash breaks the chain"
        want = row_hash(prev, row)
        assert row["hash"] == want, (
            f"row {row['audit_id']}: hash {row['hash']} != recomputed {want} "
            f"over {canonical(row)!r}")
        prev = row["hash"]


def in_byte_order(value: Any) -> Any:
    """The value with every object as (key, value) pairs sorted by UTF-8 bytes:
    how the library writes objects (keys are exact strings, in code point order)."""
    if isinstance(value, dict):
        return [(k, in_byte_order(value[k])) for k in sorted(value, key=lambda k: k.encode())]
    if isinstance(value, list):
        return [in_byte_order(v) for v in value]
    return value


def as_written(value: Any) -> Any:
    """The value with every object as (key, value) pairs in the order written
    (json.loads keeps it)."""
    if isinstance(value, dict):
        return [(k, as_written(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [as_written(v) for v in value]
    return value


def kill_child(argv: List[str], log, delay: float, ready: str, env=None) -> tuple:
    """Start `python argv...`, wait for its first stdout line (which must start
    with `ready`), SIGKILL it `delay` s later. Returns (first line, the complete
    lines it printed after it: a line cut by the kill has no newline)."""
    import signal
    import time
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=err, env=env)
    try:
        first = proc.stdout.readline().decode()
        assert first.startswith(ready), f"child did not start: {first!r}; see {log}"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        rest = proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, f"child ended by itself ({proc.returncode}); see {log}"
    return first, [line for line in rest.split("\n")[:-1] if line]


def enroll_at(hub_path, store, schema: Dict[str, Any] = SCHEMA, **options: Any) -> Dict[str, Any]:
    """Enroll an open `store` at the hub file `hub_path` (opened here and
    closed again) and pin the hub's key into the store: the provisioning a
    device needs before it syncs with `python -m fieldsync serve` on that
    file. `options` go to Hub.enroll_store (scope, write)."""
    import fieldsync
    with fieldsync.Hub(str(hub_path), schema) as hub:
        return hub.enroll_store(store, **options)


def task(id: str, actor: str = "op-1", action: str = "edit", **ops: Any) -> Dict[str, Any]:
    """Build an action on a task: task("T-1", set={"status": "open"})."""
    return {"action": action, "actor": actor, "type": "task", "id": id, **ops}


def snapshot(store) -> Dict[str, Any]:
    """Everything an error must leave unchanged."""
    return {
        "rows": store.query("task"),
        "outbox": store.outbox(),
        "audit": store.audit(),
        "count": store.outbox_count(),
    }


def strip_fs(record: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in record.items() if k != "_fs"}


# -- the HTTP hub in a child process (python -m fieldsync serve) ------------------------

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))/sync")


def cli_env() -> Dict[str, str]:
    """Environment for `python -m fieldsync` children: this checkout's package."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(BINDING_DIR) + (os.pathsep + path if path else ""))


def write_schema(path, schema: Dict[str, Any] = SCHEMA) -> str:
    Path(path).write_text(json.dumps(schema), encoding="utf-8")
    return str(path)


@contextlib.contextmanager
def serve_hub(db, schema_path, log_path, *extra: str, timeout: float = 20.0):
    """Run `python -m fieldsync serve --port 0` on 127.0.0.1; yield (base URL,
    process). The server is always stopped (SIGTERM, then SIGKILL). db=None:
    `extra` names the hub (--postgres DSN)."""
    hub = [] if db is None else ["--db", str(db)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fieldsync", "serve", *hub, "--schema",
             str(schema_path), "--port", "0", "--host", "127.0.0.1", *extra],
            stdout=subprocess.PIPE, stderr=log, env=cli_env(), cwd=str(BINDING_DIR))
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode() if ready else ""
        match = LISTENING.search(line)
        assert match, f"the server did not start: {line!r}; see {log_path}"
        yield match.group(1), proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run `python -m fieldsync ARGS`; text output captured."""
    return subprocess.run([sys.executable, "-m", "fieldsync", *args], capture_output=True,
                          text=True, env=cli_env(), cwd=str(BINDING_DIR), timeout=timeout)

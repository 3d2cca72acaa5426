"""Shared by the tests: the schema, an audit-chain verifier, small helpers."""

from __future__ import annotations

import hashlib
import json
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

# The fields of an audit row that the hash covers (docs/AUDIT.md).
HASHED = ("action", "actor", "audit_id", "device_id", "device_time", "hlc", "id",
          "input", "outbox_keys", "type")
GENESIS = "0" * 64


def canonical(row: Dict[str, Any]) -> str:
    subset = {k: row[k] for k in HASHED}
    return json.dumps(subset, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(prev_hash: str, row: Dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(row)).encode("utf-8")).hexdigest()


def verify_chain(rows: List[Dict[str, Any]]) -> None:
    """Assert that audit rows (in audit_id order, one device) form a valid chain."""
    prev = GENESIS
    for i, row in enumerate(rows):
        assert row["audit_id"] == i + 1, f"audit_id gap at row {i}: {row['audit_id']}"
        assert row["prev_hash"] == prev, f"row {row['audit_id']}: prev_hash breaks the chain"
        want = row_hash(prev, row)
        assert row["hash"] == want, (
            f"row {row['audit_id']}: hash {row['hash']} != recomputed {want} "
            f"over {canonical(row)!r}")
        prev = row["hash"]


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

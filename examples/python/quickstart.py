"""fieldsync quick start: a device store, a few operator actions, reads, the
outbox and the audit trail. Run from the repository root:

    python examples/python/quickstart.py
"""

import json
import os
import sys
import tempfile
from pathlib import Path

try:
    import fieldsync
except ImportError:  # not installed: use the binding from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bindings" / "python"))
    import fieldsync

# The app declares its record types and, per field, how concurrent edits merge.
SCHEMA = {
    "version": 1,
    "types": {
        "task": {
            "fields": {
                "status": {"type": "string"},                    # last writer wins
                "picked": {"type": "int", "merge": "counter"},   # increments add up
                "tags": {"type": "set"},                         # add/remove elements
            },
            "required": ["status"],
        }
    },
}


def main() -> None:
    workdir = tempfile.TemporaryDirectory()
    path = os.path.join(workdir.name, "device.db")
    print(f"libfieldsync {fieldsync.version()}, store at {path}")

    # One SQLite file per device. The context manager closes it.
    with workdir, fieldsync.Store(path, SCHEMA, durability="normal") as store:
        # Each apply writes the record, an outbox entry and an audit row in one
        # transaction, at once and offline.
        store.apply({"action": "open_task", "actor": "op-17", "type": "task", "id": "T-1",
                     "set": {"status": "open"}, "add": {"tags": ["cold"]}})
        store.apply({"action": "open_task", "actor": "op-17", "type": "task", "id": "T-2",
                     "set": {"status": "open"}})
        result = store.apply({"action": "pick_item", "actor": "op-17", "type": "task",
                              "id": "T-1", "inc": {"picked": 3},
                              "input": {"scanned": "4006381333931"}})
        print("applied as", result["outbox_key"])

        # Reads come from the local view.
        print("T-1:", store.get("task", "T-1"))
        for row in store.query("task", where={"status": "open"}, order_by="id"):
            print("open:", row["id"], "picked", row["picked"])

        # What waits for the hub, and who did what, when.
        for entry in store.outbox():
            print("outbox:", entry["key"], entry["state"], json.dumps(entry["ops"]))
        for row in store.audit():
            print("audit:", row["audit_id"], row["actor"], row["action"], row["id"],
                  row["device_time"], row["hash"][:12])

        # Errors are exceptions, one class per status; nothing is written.
        try:
            store.apply({"action": "typo", "actor": "op-17", "type": "task", "id": "T-1",
                         "set": {"statsu": "done"}})
        except fieldsync.SchemaError as e:
            print("refused:", e.status, e.message)
        try:
            store.get("task", "T-404")
        except fieldsync.NotFoundError as e:
            print("not found:", e)
        print("outbox entries:", store.outbox_count())


if __name__ == "__main__":
    main()

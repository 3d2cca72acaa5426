"""Child of test_two_processes.py: one process with its own Store handle on a
store file another process also writes. It opens the store, says "ready",
waits for "go" on stdin (so that both processes hold their handles before
either writes), then applies ROUNDS actions, syncing over HTTP every few, and
prints one JSON line: {"applied": n, "errors": [...]}.

    python two_process_child.py DB URL INDEX ROUNDS
"""

from __future__ import annotations

import json
import sys

import support  # noqa: F401  (the checkout's package)
import fieldsync
from fieldsync.__main__ import TransportError, post


def main() -> int:
    db, url, index, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    errors = []
    applied = 0
    with fieldsync.Store(db, support.SCHEMA, device_id="dev-A", durability="normal",
                         batch_size=5) as store:
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 2
        for i in range(rounds):
            try:
                if i % 3 == 2:
                    store.apply(support.task(f"P-{index}", set={"status": "open"}, inc={"picked": 1}))
                else:
                    store.apply(support.task("T-1", inc={"picked": 1}))
                applied += 1
            except fieldsync.FieldSyncError as e:
                errors.append(f"apply: {fieldsync.status_name(e.status)}: {e.message}")
            if i % 4 == 3:
                try:
                    request, _wait = store._prepare_raw()
                    if request is not None:
                        try:
                            response = post(url, request, 30.0)
                        except TransportError as e:
                            store.sync_fail(str(e))
                            continue
                        store.sync_receive(response)
                except fieldsync.FieldSyncError as e:
                    errors.append(f"sync: {fieldsync.status_name(e.status)}: {e.message}")
    print(json.dumps({"applied": applied, "errors": errors[:5], "error_count": len(errors)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""fieldsync sync example: two devices and an in-process hub, with the
sans-I/O loop written out. Run from the repository root:

    python examples/python/sync.py

The library never opens a socket: the store says what to send
(sync_prepare), the host moves it to the hub by any transport, and hands the
answer back (sync_receive), or reports that the transport failed (sync_fail).
Here the "transport" is a function call; `python -m fieldsync serve` / `sync`
do the same over HTTP.
"""

import os
import sys
import tempfile
from pathlib import Path

try:
    import fieldsync
except ImportError:  # not installed: use the binding from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bindings" / "python"))
    import fieldsync

SCHEMA = {
    "version": 1,
    "types": {
        "task": {
            "fields": {
                "status": {"type": "string"},                    # last writer wins
                "picked": {"type": "int", "merge": "counter"},   # increments add up
                "tags": {"type": "set"},                         # add wins over remove
            },
            "required": ["status"],
        }
    },
}


def sync(store, hub, transport_up=True):
    """One device's sync loop: prepare -> deliver -> receive until nothing is due.
    (fieldsync.sync_once(store, hub) is this loop, for an in-process hub.)"""
    store.set_connectivity(True)             # "network is back": reset backoff, pull now
    while True:
        request, wait_ms = store.sync_prepare()
        if request is None:                  # nothing due; wait_ms says when to ask again
            return
        if not transport_up:                 # e.g. an HTTP timeout or a 5xx
            store.sync_fail("no route to hub")   # entries go back to pending, nothing lost
            print(f"  {store.device_id}: transport failed, back off")
            return
        response = hub.handle(request)       # over HTTP: POST request, read response
        summary = store.sync_receive(response)
        print(f"  {store.device_id}: sent {len(request['entries'])}, "
              f"applied {summary['applied']}, pulled {summary['pulled']}, "
              f"outbox {summary['outbox']} left")


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        def path(name):
            return os.path.join(workdir, name)

        with fieldsync.Hub(path("hub.db"), SCHEMA) as hub, \
                fieldsync.Store(path("a.db"), SCHEMA, device_id="scanner-a") as a, \
                fieldsync.Store(path("b.db"), SCHEMA, device_id="scanner-b") as b:
            # Provisioning: the hub enrolls each device's key (and, for a
            # scanner, its scope), and each device pins the hub's key. From
            # then on requests and responses are signed: send them as they
            # are (request.raw over HTTP), not re-encoded.
            hub.enroll_store(a)
            hub.enroll_store(b)
            # Both devices work offline on the same task.
            a.apply({"action": "open", "actor": "op-1", "type": "task", "id": "T-1",
                     "set": {"status": "open"}, "add": {"tags": ["cold"]}})
            a.apply({"action": "pick", "actor": "op-1", "type": "task", "id": "T-1",
                     "inc": {"picked": 3}})
            b.apply({"action": "pick", "actor": "op-2", "type": "task", "id": "T-1",
                     "set": {"status": "picking"}, "inc": {"picked": 2},
                     "add": {"tags": ["fragile"]}})

            print("b's network is down:")
            sync(b, hub, transport_up=False)
            print("b's outbox still holds", b.outbox_count(), "entries")

            print("everyone syncs, twice (the second round pulls what others sent):")
            for _ in range(2):
                for store in (a, b):
                    sync(store, hub)

            # Counters summed, last writer won the status, tags merged: the same
            # everywhere.
            print("hub:", hub.query("task"))
            assert a.query("task") == b.query("task") == hub.query("task")

            # The hub keeps every device's audit rows, with its receive time and
            # a verified hash chain.
            for row in hub.audit():
                print("audit:", row["device_id"], row["audit_id"], row["action"],
                      "received", row["server_received_at"], "chain ok", row["chain_ok"])
            print("hub stats: conflicts", hub.stats()["conflicts"],
                  "chain breaks", hub.stats()["audit_chain_breaks"])


if __name__ == "__main__":
    main()

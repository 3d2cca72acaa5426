"""Child process of test_crash_sync.py: applies increments and syncs them over
HTTP, over and over, until it is killed.

Usage: python crash_sync_child.py PATH DURABILITY URL SEED
Prints "ready N" (N = actions already in the store), then the running total
after each committed apply, "sync" before a round of exchanges and "synced"
after it, each line flushed at once so that the parent knows what committed
and where the kill landed.
"""

import random
import sys

import support  # puts the checkout's package on sys.path
import fieldsync
from fieldsync.__main__ import TransportError, post


def main() -> None:
    path, durability, url, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = random.Random(seed)
    store = fieldsync.Store(path, support.SCHEMA, durability=durability, device_id="dev-crash",
                            batch_size=rng.choice([5, 20, 100]), pull_limit=50,
                            backoff_base_ms=5, backoff_cap_ms=20)
    store.set_connectivity(True)
    n = store.stats()["audit_rows"]
    print(f"ready {n}", flush=True)
    while True:
        for _ in range(rng.randint(1, 12)):
            n += 1
            store.apply({
                "action": "pick", "actor": "op-crash", "type": "task", "id": f"T-{n % 3}",
                "set": {"status": str(n)}, "inc": {"picked": 1}, "input": {"n": n},
            })
            print(n, flush=True)
        print("sync", flush=True)
        for _ in range(rng.randint(1, 4)):
            request, _wait = store.sync_prepare()
            if request is None:
                break
            try:
                # The bytes the store signed, not a re-encoding of them.
                response = post(url + "/sync", request.raw, timeout=5)
            except TransportError:
                store.sync_fail("transport")
                break
            store.sync_receive(response)
        print("synced", flush=True)


if __name__ == "__main__":
    main()

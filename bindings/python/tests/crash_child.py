"""Child process of test_crash.py: applies actions until it is killed.

Usage: python crash_child.py PATH DURABILITY
Prints "ready N" (N = actions already in the store), then the running total
after each successful apply, flushed at once so the parent knows what committed.
"""

import sys

import support  # puts the checkout's package on sys.path
import fieldsync


def main() -> None:
    path, durability = sys.argv[1], sys.argv[2]
    store = fieldsync.Store(path, support.SCHEMA, durability=durability, device_id="dev-crash")
    n = store.outbox_count()
    print(f"ready {n}", flush=True)
    while True:
        n += 1
        store.apply({
            "action": "pick", "actor": "op-crash", "type": "task", "id": f"T-{n % 3}",
            "set": {"status": str(n)}, "inc": {"picked": 1}, "input": {"n": n},
        })
        print(n, flush=True)


if __name__ == "__main__":
    main()

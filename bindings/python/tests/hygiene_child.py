"""Child process of test_hygiene.py: runs one storage-hygiene pass until killed.

Usage: python hygiene_child.py PATH DURABILITY MODE NOW_MS
MODE "call": open the store, print "ready", run Store.hygiene();
MODE "open": print "ready", open the store with hygiene_on_open=True (the pass
runs inside the open). Either way the store's clock reads NOW_MS, and "done"
plus the report is printed when the pass returned; then the child waits to be
killed.
"""

import json
import sys
import time

import support  # puts the checkout's package on sys.path
import fieldsync


def main() -> None:
    path, durability, mode, now_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    options = dict(durability=durability, device_id="dev-hyg", audit_keep_days=1)
    if mode == "open":
        # The clock can only be set once the store is open, so the pass that
        # runs inside the open sees the system clock: far past the records' time.
        print("ready", flush=True)
        store = fieldsync.Store(path, support.HYGIENE_SCHEMA, hygiene_on_open=True, **options)
        report = None
    else:
        store = fieldsync.Store(path, support.HYGIENE_SCHEMA, **options)
        store.set_clock(lambda: now_ms)
        print("ready", flush=True)
        report = store.hygiene()
    print("done " + json.dumps(report), flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()

"""Child process of test_migration.py: opens a store with a newer schema (which
migrates its tables in fs_store_open) and waits to be killed.

Usage: python migrate_child.py PATH SCHEMA_FILE
Prints "opening" just before fs_store_open, "migrated" once it returned and
"closed" after fs_store_close, each flushed at once; then sleeps until killed.
"""

import sys
import time

import support  # puts the checkout's package on sys.path
import fieldsync


def main() -> None:
    path, schema_file = sys.argv[1], sys.argv[2]
    with open(schema_file, encoding="utf-8") as f:
        schema = f.read()
    print("opening", flush=True)
    store = fieldsync.Store(path, schema)
    print("migrated", flush=True)
    store.close()
    print("closed", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()

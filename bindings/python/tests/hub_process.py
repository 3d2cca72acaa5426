"""A hub process for test_pg_cluster.py: one Hub handle (on PostgreSQL with
--postgres, else on a SQLite file with --db) serving POST /sync over HTTP on
127.0.0.1, several requests at once. It prints "listening PORT" when ready.

Its "order_lines" resolver merges by union, and can be made to stop in the
middle of a request, with the request's transaction open, by what a device
writes (the parent sees "blocked NAME" on stdout):
  "gate:NAME"  waits until the file GATE_DIR/NAME exists, then merges;
  "hang:NAME"  the first time (GATE_DIR/NAME.hung is created): never returns,
               for a SIGKILL; after that merges like any other write.
"""

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import support  # noqa: F401 - puts this checkout's package on sys.path
import fieldsync


def union(conflict):
    items = (conflict.get("server") or []) + (conflict.get("incoming") or [])
    return sorted({json.dumps(i, sort_keys=True): i for i in items}.values(), key=json.dumps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--schema", required=True)
    ap.add_argument("--postgres")
    ap.add_argument("--db")
    ap.add_argument("--gate-dir", default=".")
    args = ap.parse_args()
    schema = json.loads(open(args.schema, encoding="utf-8").read())
    # Requests wait for each other's locks (a test holds one open on purpose).
    if args.postgres:
        hub = fieldsync.Hub(None, schema, postgres=args.postgres, busy_timeout_ms=60_000)
    else:
        hub = fieldsync.Hub(args.db, schema, durability="normal", busy_timeout_ms=60_000)

    def order_lines(conflict):
        for item in conflict.get("incoming") or []:
            if not isinstance(item, str):
                continue
            kind, _, name = item.partition(":")
            path = os.path.join(args.gate_dir, name)
            if kind == "gate":
                print(f"blocked {name}", flush=True)
                while not os.path.exists(path):
                    time.sleep(0.01)
            elif kind == "hang" and not os.path.exists(path + ".hung"):
                open(path + ".hung", "w").close()
                print(f"blocked {name}", flush=True)
                while True:
                    time.sleep(60)
        return union(conflict)

    hub.set_resolver("order_lines", order_lines)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                status, answer = 200, hub.handle_bytes(body)
            except fieldsync.FieldSyncError as e:
                status, answer = 500, f"{type(e).__name__}: {e}".encode()
                print(answer.decode(), file=sys.stderr, flush=True)
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

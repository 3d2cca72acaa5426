"""Command line of the fieldsync binding (standard library only).

    python -m fieldsync serve --db hub.db --schema schema.json --port 8080
    python -m fieldsync sync  --db device.db --schema schema.json --server http://127.0.0.1:8080
    python -m fieldsync apply --db device.db --schema schema.json --action '{"action": ...}'
    python -m fieldsync store info device.db --schema schema.json
    python -m fieldsync hub enroll hub.db --schema schema.json tablet-7 <public key> [--scope JSON]
    python -m fieldsync store pin-hub device.db --schema schema.json <hub key>
    python -m fieldsync verify hub.db

Authentication (docs/SECURITY.md): a hub serves only enrolled devices.
`store info` shows a device's public key and instance; `hub enroll` enrolls
them and prints the hub's key, which `store pin-hub` pins on the device.
`hub revoke` and `hub devices` manage the registry. `verify` checks the
audit trail a hub stored against the devices' signatures without the
library (fieldsync/verify.py; it also runs alone: `python3 verify.py hub.db`).

`serve` puts a Hub behind one HTTP endpoint, ``POST /sync`` (request JSON in,
response JSON out), plus ``GET /stats``. It binds 127.0.0.1 unless --host says
otherwise, and prints one line once it listens (with the real port, so that
``--port 0`` is usable). Its memory is bounded whatever clients send: a body
over FS_MAX_MESSAGE_BYTES is answered 413 unread, at most --max-parallel
bodies (default 2) are read and handled at once (a parse costs a multiple of
the body's size), a body must arrive within --body-timeout seconds (default
60), and a request that waits longer than --queue-timeout for its turn gets
503 (the device backs off and resends).

`sync` runs the device loop: connectivity up, then prepare -> POST -> receive
until the outbox holds nothing more to send and no page of changes is left,
backing off (fs_sync_fail) on transport errors. Exit status: 0 drained,
1 --max-seconds exceeded, 2 usage, 3 the hub requires a newer schema,
4 any other error (the hub refused the request, a library error),
5 authentication failed (the hub refused this device, or its response did
not verify with the pinned hub key; the outbox is kept).

`serve` answers a request refused by authentication as the library does (200
with the signed refusal) and logs one line to stderr naming the device and
the refusal code.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import socketserver
import sys
import time
import urllib.error
import urllib.request
import wsgiref.simple_server
from typing import Any, Dict, Optional, Sequence

from . import AuthError, FieldSyncError, Hub, Store, UpgradeRequiredError
from .server import read_schema as _read_schema

EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, EXIT_UPGRADE, EXIT_ERROR, EXIT_AUTH = 0, 1, 2, 3, 4, 5

#: Longest sleep between two tries of the sync loop, in seconds.
MAX_SLEEP_S = 5.0


# --------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------


class _Handler(wsgiref.simple_server.WSGIRequestHandler):
    """One request per connection, answered by the WSGI app (fieldsync/server.py)."""

    timeout = 120  # seconds a silent connection may hold a thread
    verbose = False

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.verbose:  # the app logs every request as JSON; this is http.server's own line
            super().log_message(format, *args)

    def get_environ(self) -> Dict[str, Any]:
        environ = super().get_environ()
        # The app sets the socket's timeout while a body arrives (server._read_body).
        environ["fieldsync.socket"] = self.connection
        return environ

    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(),
                                 multithread=True)
        handler.request_handler = self
        try:
            handler.run(self.server.get_app())
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            # The device went away (killed, timed out): it will resend, and
            # the hub answers the resend "duplicate".
            pass


class _ServerHandler(wsgiref.simple_server.ServerHandler):
    http_version = "1.1"

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        self.headers["Connection"] = "close"  # one request per connection


class _Server(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(args: argparse.Namespace) -> int:
    from . import server
    app = server.create_app(server.Config(
        hub=args.db, schema=args.schema, auth=args.auth, durability=args.durability,
        stats_token=args.stats_token or os.environ.get("FIELDSYNC_STATS_TOKEN", ""),
        max_parallel=args.max_parallel, body_timeout=args.body_timeout, queue_timeout=args.queue_timeout,
        log=args.log))
    app.hub()  # opened now: a file that does not open is an error before listening
    handler = type("Handler", (_Handler,), {"verbose": args.verbose})
    httpd = _Server((args.host, args.port), handler)
    httpd.set_app(app)

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, port = httpd.server_address[:2]
    print(f"fieldsync hub {args.db} listening on http://{host}:{port}/sync", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        app.close()  # waits for the hub calls in flight: each is applied whole
    return EXIT_OK


# --------------------------------------------------------------------------
# sync
# --------------------------------------------------------------------------


class TransportError(Exception):
    """The request was not delivered or not answered: retry later."""


class RefusedError(Exception):
    """The server answered 4xx: retrying the same request will not help."""


def post(url: str, body: bytes, timeout: float) -> bytes:
    """POST `body` to `url`; the answer's body, or TransportError/RefusedError."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")[:500]
        if 400 <= e.code < 500 and e.code != 408:  # 408: the body was too slow, resend
            raise RefusedError(f"HTTP {e.code}: {detail}") from None
        raise TransportError(f"HTTP {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        # URLError (refused, DNS), socket.timeout, reset, a cut response.
        reason = getattr(e, "reason", None) or e
        raise TransportError(f"{type(e).__name__}: {reason}") from None


def sync_url(server: str) -> str:
    url = server.rstrip("/")
    return url if url.endswith("/sync") else url + "/sync"


def _open_work(store: Store) -> int:
    """Entries that can still be sent: pending or in flight, and not held back
    by a "stuck" entry of the same record (a record's entries go in order, so
    those wait for the host to discard the stuck one)."""
    stats = store.stats()
    work = int(stats.get("outbox_pending", 0)) + int(stats.get("outbox_inflight", 0))
    if work and stats.get("outbox_stuck"):
        first_stuck: Dict[tuple, int] = {}
        for e in store.outbox(state="stuck"):
            first_stuck.setdefault((e["type"], e["id"]), e["seq"])
        for state in ("pending", "inflight"):
            for e in store.outbox(state=state):
                if e["seq"] > first_stuck.get((e["type"], e["id"]), e["seq"]):
                    work -= 1
    return work


def sync(args: argparse.Namespace) -> int:
    options: Dict[str, Any] = {}
    if args.device_id:
        options["device_id"] = args.device_id
    if args.durability:
        options["durability"] = args.durability
    if args.batch_size:
        options["batch_size"] = args.batch_size
    url = sync_url(args.server)
    deadline = None if args.max_seconds is None else time.monotonic() + args.max_seconds
    with Store(args.db, _read_schema(args.schema), **options) as store:
        store.set_connectivity(True)
        # Drained means: nothing left to send AND the last exchange succeeded
        # with no further page; a pull that failed on the wire is tried again.
        pull_pending = True
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                print(f"gave up after {args.max_seconds} s: outbox {store.outbox_count()} left",
                      flush=True)
                return EXIT_TIMEOUT
            request, wait_ms = store._prepare_raw()
            if request is None:
                if _open_work(store) == 0 and not pull_pending:
                    stats = store.stats()
                    extra = ""
                    if stats.get("outbox_rejected") or stats.get("outbox_stuck"):
                        extra = (f" ({stats.get('outbox_rejected', 0)} rejected, "
                                 f"{stats.get('outbox_stuck', 0)} stuck: see the outbox)")
                    print(f"drained: outbox {store.outbox_count()} left{extra}, "
                          f"cursor {stats.get('cursor')}", flush=True)
                    return EXIT_OK
                if store.stats().get("sync_state") == "upgrade_required":
                    print("upgrade required: the hub refused this schema version earlier; "
                          f"outbox {store.outbox_count()} kept", file=sys.stderr, flush=True)
                    return EXIT_UPGRADE
                if wait_ms < 0:  # nothing will fall due by itself
                    print(f"nothing can be sent: outbox {store.outbox_count()} left", flush=True)
                    return EXIT_ERROR
                sleep = min(wait_ms / 1000.0, MAX_SLEEP_S)
                if deadline is not None:
                    sleep = max(0.0, min(sleep, deadline - time.monotonic()))
                time.sleep(sleep)
                continue
            entries = len(json.loads(request)["entries"])
            try:
                response = post(url, request, args.timeout)
            except TransportError as e:
                store.sync_fail(str(e)[:4000])
                pull_pending = True
                print(f"transport error: {e}; backing off", flush=True)
                continue
            except RefusedError as e:
                store.sync_fail(str(e)[:4000])
                print(f"the server refused the request: {e}", file=sys.stderr, flush=True)
                return EXIT_ERROR
            try:
                summary = store.sync_receive(response)
            except UpgradeRequiredError as e:
                print(f"upgrade required: {e.message}", file=sys.stderr, flush=True)
                return EXIT_UPGRADE
            except AuthError as e:
                print(f"authentication failed: {e.message}", file=sys.stderr, flush=True)
                return EXIT_AUTH
            pull_pending = bool(summary["more"])
            print(f"sent {entries} entries, applied {summary['applied']}, "
                  f"duplicate {summary['duplicate']}, rejected {summary['rejected']}, "
                  f"retry {summary['retry']}, pulled {summary['pulled']}, "
                  f"outbox {summary['outbox']} left, cursor {summary['cursor']}", flush=True)


# --------------------------------------------------------------------------
# apply
# --------------------------------------------------------------------------


def apply(args: argparse.Namespace) -> int:
    options = {"device_id": args.device_id} if args.device_id else {}
    with Store(args.db, _read_schema(args.schema), **options) as store:
        print(json.dumps(store.apply(args.action), ensure_ascii=False), flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------
# store info, store pin-hub (the device side of enrollment)
# --------------------------------------------------------------------------


def store_info(args: argparse.Namespace) -> int:
    with Store(args.store_db, _read_schema(args.schema)) as store:
        stats = store.stats()
    info = {k: stats.get(k) for k in ("device_id", "public_key", "instance_id", "hub_key", "auth", "signer")}
    if args.json:
        print(json.dumps(info), flush=True)
    else:
        for k, v in info.items():
            print(f"{k}: {v if v not in (None, '') else '(none)'}", flush=True)
    return EXIT_OK


def store_pin_hub(args: argparse.Namespace) -> int:
    with Store(args.store_db, _read_schema(args.schema)) as store:
        store.pin_hub(args.hub_key)
        print(f"pinned hub key {args.hub_key} in {args.store_db} (device {store.device_id})", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------
# hub enroll, hub revoke, hub devices (the registry)
# --------------------------------------------------------------------------


def hub_enroll(args: argparse.Namespace) -> int:
    scope = None
    if args.scope is not None:
        try:
            scope = json.loads(args.scope)
        except ValueError as e:
            raise ValueError(f"--scope is not JSON: {e}") from None
    with Hub(args.hub_db, _read_schema(args.schema)) as hub:
        result = hub.enroll(args.device_id, args.public_key, instance=args.instance, scope=scope,
                            write=not args.read_only)
    rotated = " (key rotated: requests signed with the old key are refused)" if result["rotated"] else ""
    print(f"enrolled {result['device_id']}{rotated}; pin this hub key on the device:", flush=True)
    print(result["hub_key"], flush=True)
    return EXIT_OK


def hub_revoke(args: argparse.Namespace) -> int:
    with Hub(args.hub_db, _read_schema(args.schema)) as hub:
        hub.revoke(args.device_id)
    print(f"revoked {args.device_id}", flush=True)
    return EXIT_OK


def hub_backup(args: argparse.Namespace) -> int:
    with Hub(args.hub_db, _read_schema(args.schema)) as hub:
        hub.backup(args.dest)
    print(f"backed up {args.hub_db} to {args.dest}", flush=True)
    return EXIT_OK


def hub_devices(args: argparse.Namespace) -> int:
    with Hub(args.hub_db, _read_schema(args.schema)) as hub:
        registry = hub.devices()
    if args.json:
        print(json.dumps(registry), flush=True)
        return EXIT_OK
    for d in registry["devices"]:
        scope = "every record" if d.get("scope") is None else json.dumps(d["scope"])
        print(f"{d['device_id']} {d['state']} key {d['public_key']} instance {d.get('instance') or '-'} "
              f"{'read-write' if d['write'] else 'read-only'} scope {scope}", flush=True)
    for r in registry["refusals"]:
        print(f"refused at {r['at']}: {r['device_id']}: {r['code']}: {r['message']}", flush=True)
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    from . import verify as verifier
    return verifier.run(args)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fieldsync", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve a hub over HTTP (POST /sync, GET /stats)")
    s.add_argument("--db", required=True, help="hub database file")
    s.add_argument("--schema", required=True, help="schema JSON file")
    s.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--durability", choices=["full", "normal"], help="hub durability")
    s.add_argument("--verbose", action="store_true",
                   help="also log http.server's plain line per request (the JSON request log is always on)")
    s.add_argument("--log", default="-",
                   help="the JSON request log: - for stderr (default), a file to append to, or off")
    s.add_argument("--max-parallel", type=int, default=2,
                   help="requests read and handled at once (default 2); each costs up to "
                        "its body's size times the parse multiple of docs/ABI.md")
    s.add_argument("--body-timeout", type=float, default=60.0,
                   help="seconds a request body may take to arrive (default 60)")
    s.add_argument("--queue-timeout", type=float, default=120.0,
                   help="seconds a request may wait for its turn before 503 (default 120)")
    s.add_argument("--stats-token", default="",
                   help="GET /stats answers only requests with 'Authorization: Bearer TOKEN' "
                        "(default: only this host; also FIELDSYNC_STATS_TOKEN)")
    s.add_argument("--auth", choices=["on", "off"], default="on",
                   help="off: serve any request, as any device (default on: enrolled devices only)")
    s.set_defaults(run=serve)

    y = sub.add_parser("sync", help="sync a device store with a hub until drained")
    y.add_argument("--db", required=True, help="device store file")
    y.add_argument("--schema", required=True, help="schema JSON file")
    y.add_argument("--server", required=True, help="hub URL, e.g. http://127.0.0.1:8080")
    y.add_argument("--device-id", help="device id (must match the store's)")
    y.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP exchange")
    y.add_argument("--max-seconds", type=float, help="give up (exit 1) after this long")
    y.add_argument("--durability", choices=["full", "normal"])
    y.add_argument("--batch-size", type=int, help="entries per request (default 500)")
    y.set_defaults(run=sync)

    a = sub.add_parser("apply", help="apply one action to a device store")
    a.add_argument("--db", required=True, help="device store file")
    a.add_argument("--schema", required=True, help="schema JSON file")
    a.add_argument("--action", required=True, help="the action, as JSON text")
    a.add_argument("--device-id", help="device id (must match the store's)")
    a.set_defaults(run=apply)

    st = sub.add_parser("store", help="a device store's identity: info, pin-hub")
    st_sub = st.add_subparsers(dest="store_command", required=True)
    i = st_sub.add_parser("info", help="print the store's device id, public key and instance id")
    i.add_argument("store_db", help="device store file")
    i.add_argument("--schema", required=True, help="schema JSON file")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(run=store_info)
    pin = st_sub.add_parser("pin-hub", help="pin the hub key `hub enroll` printed")
    pin.add_argument("store_db", help="device store file")
    pin.add_argument("hub_key", help="the hub's public key, 64 hex digits")
    pin.add_argument("--schema", required=True, help="schema JSON file")
    pin.set_defaults(run=store_pin_hub)

    h = sub.add_parser("hub", help="the hub's device registry (enroll, revoke, devices) and backups")
    h_sub = h.add_subparsers(dest="hub_command", required=True)
    e = h_sub.add_parser("enroll", help="enroll (or re-enroll, rotating its key) a device; prints the hub key")
    e.add_argument("hub_db", help="hub database file")
    e.add_argument("device_id", help="the device's id (store info)")
    e.add_argument("public_key", help="the device's public key, 64 hex digits (store info)")
    e.add_argument("--schema", required=True, help="schema JSON file")
    e.add_argument("--instance", help="bind to this store instance (store info instance_id)")
    e.add_argument("--scope", help='records the device may pull, fetch and write, e.g. \'{"task": {"site": "WH-3"}}\'')
    e.add_argument("--read-only", action="store_true", help="the device may pull and fetch, not write")
    e.set_defaults(run=hub_enroll)
    r = h_sub.add_parser("revoke", help="refuse a device's requests until it is enrolled again")
    r.add_argument("hub_db", help="hub database file")
    r.add_argument("device_id")
    r.add_argument("--schema", required=True, help="schema JSON file")
    r.set_defaults(run=hub_revoke)
    d = h_sub.add_parser("devices", help="list enrolled devices and the latest refusals")
    d.add_argument("hub_db", help="hub database file")
    d.add_argument("--schema", required=True, help="schema JSON file")
    d.add_argument("--json", action="store_true", help="print the registry as JSON")
    d.set_defaults(run=hub_devices)
    b = h_sub.add_parser("backup", help="a consistent copy of the hub file, taken while it serves")
    b.add_argument("hub_db", help="hub database file")
    b.add_argument("dest", help="the copy's path; must not exist")
    b.add_argument("--schema", required=True, help="schema JSON file")
    b.set_defaults(run=hub_backup)

    from . import verify as verifier
    v = sub.add_parser("verify", help="verify a hub's stored audit trail against the devices' signatures")
    verifier.add_arguments(v)
    v.set_defaults(run=verify)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except UpgradeRequiredError as e:
        print(f"upgrade required: {e.message}", file=sys.stderr)
        return EXIT_UPGRADE
    except AuthError as e:
        print(f"authentication failed: {e.message}", file=sys.stderr)
        return EXIT_AUTH
    except FieldSyncError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, ValueError) as e:  # schema file missing or not JSON, port in use
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

"""Command line of the fieldsync binding (also installed as the `fieldsync` command).

    python -m fieldsync serve --db hub.db --schema schema.json --port 8080
    python -m fieldsync serve --postgres 'host=db1 dbname=fieldsync' --schema schema.json --port 8080
    python -m fieldsync sync  --db device.db --schema schema.json --server http://127.0.0.1:8080
    python -m fieldsync apply --db device.db --schema schema.json --action '{"action": ...}'
    python -m fieldsync store info device.db --schema schema.json
    python -m fieldsync hub enroll hub.db --schema schema.json tablet-7 <public key> [--scope JSON]
    python -m fieldsync store pin-hub device.db --schema schema.json <hub key>
    python -m fieldsync hub stats|devices hub.db          hub backup hub.db copy.db
    python -m fieldsync inspect hub.db|device.db          outbox discard device.db tablet-7-42
    python -m fieldsync verify hub.db

Authentication (docs/SECURITY.md): a hub serves only enrolled devices.
`store info` shows a device's public key and instance; `hub enroll` enrolls
them and prints the hub's key, which `store pin-hub` pins on the device.
`hub revoke` and `hub devices` manage the registry. `verify` checks the
audit trail a hub stored against the devices' signatures without the
library (fieldsync/verify.py; it also runs alone: `python3 verify.py hub.db`).

The operator commands (`hub stats|devices|revoke|backup`, `inspect`, `outbox
discard`) open an existing file only (never create one) with the schema it
holds unless --schema says otherwise, and print JSON with --json. The hub
commands and `inspect` take `--postgres DSN` (a libpq connection string)
instead of a hub file: a hub kept in a PostgreSQL database, likewise never
created by them (except by `hub enroll`, as with a file); `hub backup` and
`verify` are for hub files (a database is backed up with pg_dump or base
backups, docs/OPERATIONS.md).

`serve` is the development server: Python's wsgiref, one thread per
connection, serving the WSGI application of fieldsync/server.py (POST /sync,
GET /healthz, and for the operator GET /stats and GET /metrics); production
runs that application under gunicorn (docs/OPERATIONS.md). It binds 127.0.0.1
unless --host says otherwise, and prints one line once it listens (with the
real port, so that ``--port 0`` is usable). Its memory is bounded whatever
clients send: a body over FS_MAX_MESSAGE_BYTES is answered 413 unread, at
most --max-parallel bodies (default 2) are read and handled at once (a parse
costs a multiple of the body's size), a body must arrive within
--body-timeout seconds (default 60), and a request that waits longer than
--queue-timeout for its turn gets 503 (the device backs off and resends).
Every request is logged as one JSON line (--log).

`sync` runs the device loop: connectivity up, then prepare -> POST -> receive
until the outbox holds nothing more to send and no page of changes is left,
backing off (fs_sync_fail) on transport errors, one progress line per exchange.

Exit status of every command: 0 done, 1 a check failed (`verify`) or `sync`
gave up after --max-seconds, 2 usage (arguments, a file that does not exist
or is not a fieldsync store or hub of the kind named), 3 the hub requires a
newer schema, 4 any other error (the library refused: a key not in the
outbox, an entry that cannot be discarded, a schema file missing or not
JSON; the hub refused the request), 5 authentication failed (the hub refused
this device, or its response did not verify with the pinned hub key; the
outbox is kept), 6 libfieldsync could not be loaded. Errors are one line on
stderr.

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
import sqlite3
import sys
import time
import urllib.error
import urllib.request
import wsgiref.simple_server
from typing import Any, Dict, Optional, Sequence, Tuple

from . import AuthError, FieldSyncError, Hub, Store, UpgradeRequiredError, _lib
from .server import read_schema as _read_schema
from .server import redact as _redact


class UsageError(Exception):
    """The command line names something that is not there: exit 2."""

EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, EXIT_UPGRADE, EXIT_ERROR, EXIT_AUTH, EXIT_LIBRARY = 0, 1, 2, 3, 4, 5, 6

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
        handler = _ServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(),  # type: ignore[arg-type]
                                 multithread=True)
        handler.request_handler = self  # type: ignore[attr-defined]
        app = self.server.get_app()  # type: ignore[attr-defined]
        try:
            handler.run(app)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            # The device went away (killed, timed out): it will resend, and
            # the hub answers the resend "duplicate".
            pass


class _ServerHandler(wsgiref.simple_server.ServerHandler):
    http_version = "1.1"

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        self.headers["Connection"] = "close"  # type: ignore[attr-defined]  # one request per connection


class _Server(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(args: argparse.Namespace) -> int:
    from . import server
    config = server.Config(
        hub=args.db, schema=args.schema, auth=args.auth, durability=args.durability, postgres=args.postgres,
        stats_token=args.stats_token or os.environ.get("FIELDSYNC_STATS_TOKEN", ""),
        max_parallel=args.max_parallel, body_timeout=args.body_timeout, queue_timeout=args.queue_timeout,
        log=args.log)
    try:
        config.check()
    except ValueError as e:
        raise UsageError(str(e)) from None
    app = server.create_app(config)
    app.hub()  # opened now: a file that does not open, a database that does not answer: an error before listening
    handler = type("Handler", (_Handler,), {"verbose": args.verbose})
    httpd = _Server((args.host, args.port), handler)
    httpd.set_app(app)

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, port = httpd.server_address[:2]
    if isinstance(host, bytes):  # AF_UNIX only; typeshed allows it
        host = host.decode()
    print(f"fieldsync hub {config.where} listening on http://{host}:{port}/sync", flush=True)
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
            answered: bytes = answer.read()
            return answered
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
        first_stuck: Dict[Tuple[str, str], int] = {}
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
                    if args.json:
                        print(json.dumps({"drained": True, "outbox": store.outbox_count(),
                                          "rejected": stats.get("outbox_rejected", 0),
                                          "stuck": stats.get("outbox_stuck", 0), "cursor": stats.get("cursor")}),
                              flush=True)
                    else:
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
            if args.json:
                print(json.dumps({"sent": entries, **{k: summary[k] for k in (
                    "applied", "duplicate", "rejected", "retry", "pulled", "outbox", "cursor")}}), flush=True)
                continue
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
    with _open_hub(args, create=True) as hub:
        result = hub.enroll(args.device_id, args.public_key, instance=args.instance, scope=scope,
                            write=not args.read_only)
    if args.json:
        print(json.dumps(result), flush=True)
        return EXIT_OK
    rotated = " (key rotated: requests signed with the old key are refused)" if result["rotated"] else ""
    print(f"enrolled {result['device_id']}{rotated}; pin this hub key on the device:", flush=True)
    print(result["hub_key"], flush=True)
    return EXIT_OK


def hub_revoke(args: argparse.Namespace) -> int:
    with _open_hub(args) as hub:
        hub.revoke(args.device_id)
    print(json.dumps({"revoked": args.device_id}) if args.json else f"revoked {args.device_id}", flush=True)
    return EXIT_OK


def hub_backup(args: argparse.Namespace) -> int:
    if args.postgres:
        raise UsageError("hub backup copies a hub file; back up a PostgreSQL hub with pg_dump or base backups "
                         "(docs/OPERATIONS.md \"PostgreSQL hub\")")
    with _open_hub(args) as hub:
        hub.backup(args.dest)
    if args.json:
        print(json.dumps({"hub": args.hub_db, "backup": args.dest, "bytes": os.path.getsize(args.dest)}), flush=True)
    else:
        print(f"backed up {args.hub_db} to {args.dest}", flush=True)
    return EXIT_OK


def hub_devices(args: argparse.Namespace) -> int:
    with _open_hub(args) as hub:
        registry = hub.devices()
    if args.json:
        print(json.dumps(registry), flush=True)
        return EXIT_OK
    for d in registry["devices"]:
        scope = "every record" if d.get("scope") is None else json.dumps(d["scope"])
        print(f"{d['device_id']} {d['state']} key {d['public_key']} instance {d.get('instance') or '-'} "
              f"{'read-write' if d['write'] else 'read-only'} scope {scope} "
              f"last seen {_when(d.get('last_seen_at'))}", flush=True)
    for r in registry["refusals"]:
        print(f"refused at {r['at']}: {r['device_id']}: {r['code']}: {r['message']}", flush=True)
    return EXIT_OK


def hub_stats(args: argparse.Namespace) -> int:
    with _open_hub(args) as hub:
        stats = hub.stats()
    if args.json:
        print(json.dumps(stats), flush=True)
    else:
        for k, v in stats.items():
            print(f"{k}: {v}", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------
# inspect, outbox discard (operator commands on a store or hub file)
# --------------------------------------------------------------------------


def _when(ms: Any) -> str:
    """An epoch-ms time as UTC ISO 8601, or "-"."""
    if not isinstance(ms, int) or ms <= 0:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _kind(path: str) -> Dict[str, Any]:
    """What the file at `path` is, read without the library and without
    changing it: {"kind": "hub"|"store", "schema": text}. A file that does not
    exist is never created (opening it with the library would)."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(db.execute("SELECT key, value FROM fs_meta WHERE key IN ('role', 'schema', 'device_id')"))
        finally:
            db.close()
    except sqlite3.Error as e:
        raise UsageError(f"{path} is not a fieldsync hub or store: {e}") from None
    kind = "hub" if meta.get("role") == "hub" else "store" if meta.get("device_id") else None
    if kind is None or not isinstance(meta.get("schema"), str):
        raise UsageError(f"{path} is not a fieldsync hub or store")
    return {"kind": kind, "schema": meta["schema"]}


def _schema_of(args: argparse.Namespace, path: str, kind: str) -> str:
    """The schema to open `path` with: --schema if given, else the one the
    file holds. The file must exist and be a `kind` file."""
    found = _kind(path)
    if found["kind"] != kind:
        raise UsageError(f"{path} is a fieldsync {found['kind']}, not a {kind}")
    return _read_schema(args.schema) if getattr(args, "schema", None) else found["schema"]


def _postgres_kind(dsn: str) -> Dict[str, Any]:
    """As _kind, for a PostgreSQL database: read through libpq (fieldsync/_pq.py)
    without the library, which would create a hub's tables where none are."""
    from . import _pq
    # Where the library looks: the connection's current schema. Values are
    # JSONB there; #>> '{}' gives a string's text unquoted.
    exists, = _pq.query(dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                             "AND tablename = 'fs_meta'")
    if exists != [("1",)]:
        raise UsageError(f"{_redact(dsn)}: no fieldsync hub in this database (no fs_meta table)")
    rows, = _pq.query(dsn, "SELECT key, value #>> '{}' FROM fs_meta WHERE key IN ('role', 'schema')")
    meta: Dict[str, Optional[str]] = {str(k): v for k, v in rows}
    if meta.get("role") != "hub" or not meta.get("schema"):
        raise UsageError(f"{_redact(dsn)}: this database's fs_meta is not a fieldsync hub's")
    return {"kind": "hub", "schema": meta["schema"]}


def _open_hub(args: argparse.Namespace, create: bool = False) -> Hub:
    """The hub a command names: the file `hub_db` or the database of
    --postgres, exactly one of them; opened with --schema, else the schema
    it holds. Never created, unless `create` (hub enroll, which needs
    --schema)."""
    path, dsn = args.hub_db, args.postgres
    if bool(path) == bool(dsn):
        raise UsageError(f"{path} and --postgres name two hubs: give one" if path
                         else "name the hub: a hub file, or --postgres DSN for a PostgreSQL hub")
    if dsn:
        held = "" if create else _postgres_kind(dsn)["schema"]
        return Hub(None, _read_schema(args.schema) if args.schema else held, postgres=dsn)
    return Hub(path, _read_schema(args.schema) if create else _schema_of(args, path, "hub"))


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def inspect(args: argparse.Namespace) -> int:
    if bool(args.db) == bool(args.postgres):
        raise UsageError(f"{args.db} and --postgres name two files: give one" if args.db
                         else "name a store or hub file, or --postgres DSN for a PostgreSQL hub")
    found = _postgres_kind(args.postgres) if args.postgres else _kind(args.db)
    schema = _read_schema(args.schema) if args.schema else found["schema"]
    where = f"postgres {_redact(args.postgres)}" if args.postgres else args.db
    if found["kind"] == "hub":
        with (Hub(None, schema, postgres=args.postgres) if args.postgres else Hub(args.db, schema)) as hub:
            stats = hub.stats()
            registry = hub.devices()
            # The newest rows by server time: each device's latest, merged
            # (the hub lists its audit by device, then audit id).
            recent = [r for d in registry["devices"] for r in hub.audit(device_id=d["device_id"], limit=args.recent,
                                                                         desc=True)] \
                if registry["devices"] else hub.audit(limit=args.recent, desc=True)
            recent = sorted(recent, key=lambda r: (r["server_received_at"] or 0, r["audit_id"]),
                            reverse=True)[:args.recent]
        fields: Dict[str, Any] = {}
        for key, value in stats.items():
            if key.startswith("conflicts."):
                path, _, what = key[len("conflicts."):].rpartition(".")
                fields.setdefault(path, {})[what] = value
        report = {
            "kind": "hub", "path": args.db, "schema_version": stats["schema_version"], "seq": stats["seq"],
            "storage": stats.get("storage", "sqlite"), "where": where,
            "records": stats["records"], "devices_seen": stats["devices"],
            "devices_enrolled": stats.get("devices_enrolled"), "devices_revoked": stats.get("devices_revoked"),
            "entries": {k: stats.get(f"entries_{k}", 0)
                        for k in ("applied", "rejected", "clock_skew", "key_reused", "out_of_scope")},
            "conflicts": {"field_writes": stats["field_writes"], "concurrent": stats["conflicts"],
                          "merged": stats["merged"], "rate": stats["conflict_rate"], "fields": fields},
            "audit": {k: stats.get(f"audit_{k}", 0)
                      for k in ("rows", "hash_failures", "chain_breaks", "gaps", "reused", "heads")},
            "auth_refused": stats.get("auth_refused", 0),
            "last_seen": {d["device_id"]: d.get("last_seen_at") for d in registry["devices"]},
            "recent_audit": [{k: r.get(k) for k in ("device_id", "audit_id", "actor", "action", "type", "id",
                                                     "device_time", "server_received_at", "chain_ok")}
                             for r in recent],
        }
        if args.json:
            print(json.dumps(report), flush=True)
            return EXIT_OK
        e, c, a = report["entries"], report["conflicts"], report["audit"]
        print(f"hub {where}: schema v{report['schema_version']}, seq {report['seq']}, "
              f"{report['records']} records, {report['devices_seen']} devices seen "
              f"({report['devices_enrolled']} enrolled, {report['devices_revoked']} revoked)")
        print(f"entries: {e['applied']} applied, {e['rejected']} rejected ({e['clock_skew']} clock skew, "
              f"{e['out_of_scope']} out of scope), {e['key_reused']} key reused")
        print(f"conflicts: {c['concurrent']} of {c['field_writes']} field writes concurrent "
              f"(rate {c['rate']:.4f}), {c['merged']} merged")
        for path, f in sorted(fields.items()):
            print(f"  {path}: {f.get('writes', 0)} writes, {f.get('concurrent', 0)} concurrent, "
                  f"{f.get('won', 0)} won, {f.get('lost', 0)} lost, {f.get('merged', 0)} merged, "
                  f"{f.get('rejected', 0)} rejected, {f.get('resolved', 0)} resolved (rate {f.get('rate', 0):.4f})")
        print(f"audit: {a['rows']} rows, {a['chain_breaks']} chain breaks, {a['gaps']} gaps, "
              f"{a['hash_failures']} hash failures; {report['auth_refused']} requests refused by authentication")
        print(f"recent audit ({len(recent)}, newest first; device time -> server time):")
        for r in report["recent_audit"]:
            print(f"  {r['device_id']} #{r['audit_id']} {_when(r['device_time'])} -> "
                  f"{_when(r['server_received_at'])} {r['actor']} {r['action']} {r['type']}/{r['id']}"
                  f"{'' if r['chain_ok'] else ' CHAIN BROKEN'}")
        return EXIT_OK

    with Store(args.db, schema) as store:
        stats = store.stats()
        held = [e for state in ("rejected", "stuck") for e in store.outbox(state=state, limit=args.recent)]
        recent = store.audit(limit=args.recent, desc=True)
    decided = sum(stats.get(f"writes_{k}", 0) for k in ("won", "lost", "merged", "resolved", "rejected"))
    report = {
        "kind": "store", "path": args.db, "device_id": stats["device_id"], "schema_version": stats["schema_version"],
        "sync_state": stats["sync_state"], "cursor": stats["cursor"], "last_sync_at": stats["last_sync_at"],
        "last_failure": stats["last_failure"], "records": stats["records"],
        "outbox": {k: stats.get(f"outbox_{k}", 0) for k in ("pending", "inflight", "rejected", "stuck", "total")},
        "held": [{k: e.get(k) for k in ("key", "state", "type", "id", "reason", "attempts")} for e in held],
        "writes": {k: stats.get(f"writes_{k}", 0) for k in ("won", "lost", "merged", "resolved", "rejected")},
        "conflict_rate": _rate(stats.get("writes_lost", 0) + stats.get("writes_rejected", 0), decided),
        "audit": {"rows": stats["audit_rows"], "unacked": stats["audit_unacked"]},
        "recent_audit": [{k: r.get(k) for k in ("audit_id", "actor", "action", "type", "id", "device_time",
                                                 "server_received_at", "outcome", "reason")} for r in recent],
    }
    if args.json:
        print(json.dumps(report), flush=True)
        return EXIT_OK
    o, w = report["outbox"], report["writes"]
    print(f"store {args.db}: device {report['device_id']}, schema v{report['schema_version']}, "
          f"sync {report['sync_state']}, cursor {report['cursor']}, last sync {_when(report['last_sync_at'])}"
          f"{', last failure: ' + report['last_failure'] if report['last_failure'] else ''}")
    print(f"outbox: {o['pending']} pending, {o['inflight']} in flight, {o['rejected']} rejected, "
          f"{o['stuck']} stuck ({o['total']} in all)")
    for e in report["held"]:
        print(f"  {e['state']} {e['key']} {e['type']}/{e['id']}: {e['reason'] or '-'} "
              f"({e['attempts']} attempts; python -m fieldsync outbox discard {args.db} {e['key']})")
    print(f"writes at the hub: {w['won']} won, {w['lost']} lost, {w['merged']} merged, {w['resolved']} resolved, "
          f"{w['rejected']} rejected (lost or rejected: {report['conflict_rate']:.4f})")
    print(f"audit: {report['audit']['rows']} rows, {report['audit']['unacked']} not yet acknowledged by the hub")
    print(f"recent audit ({len(recent)}, newest first; device time -> server time):")
    for r in report["recent_audit"]:
        print(f"  #{r['audit_id']} {_when(r['device_time'])} -> {_when(r['server_received_at'])} "
              f"{r['actor']} {r['action']} {r['type']}/{r['id']} {r['outcome']}"
              f"{': ' + r['reason'] if r['reason'] else ''}")
    return EXIT_OK


def outbox_discard(args: argparse.Namespace) -> int:
    with Store(args.store_db, _schema_of(args, args.store_db, "store")) as store:
        store.discard(args.key)
        left = store.outbox_count()
    if args.json:
        print(json.dumps({"discarded": args.key, "outbox": left}), flush=True)
    else:
        print(f"discarded {args.key} from {args.store_db}; outbox {left} left", flush=True)
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    from . import verify as verifier
    return verifier.run(args)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


SCHEMA_HELP = "schema JSON file (default: the schema the file holds)"
POSTGRES_HELP = "a hub kept in this PostgreSQL database (a libpq connection string) instead of a file"


def _hub_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hub_db", nargs="?", help="hub database file (or --postgres)")
    p.add_argument("--postgres", metavar="DSN", help=POSTGRES_HELP)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fieldsync", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve a hub over HTTP (POST /sync, GET /stats)")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="hub database file")
    where.add_argument("--postgres", metavar="DSN",
                       help="serve the hub kept in this PostgreSQL database (a libpq connection string), "
                            "which other servers may serve at once")
    s.add_argument("--schema", required=True, help="schema JSON file")
    s.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--durability", choices=["full", "normal"], help="hub durability (a hub file's)")
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
    y.add_argument("--json", action="store_true", help="progress and the end as JSON lines")
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
    _hub_arguments(e)
    e.add_argument("device_id", help="the device's id (store info)")
    e.add_argument("public_key", help="the device's public key, 64 hex digits (store info)")
    e.add_argument("--schema", required=True, help="schema JSON file")
    e.add_argument("--instance", help="bind to this store instance (store info instance_id)")
    e.add_argument("--scope", help='records the device may pull, fetch and write, e.g. \'{"task": {"site": "WH-3"}}\'')
    e.add_argument("--read-only", action="store_true", help="the device may pull and fetch, not write")
    e.add_argument("--json", action="store_true", help="print the result (device_id, hub_key, rotated) as JSON")
    e.set_defaults(run=hub_enroll)
    r = h_sub.add_parser("revoke", help="refuse a device's requests until it is enrolled again")
    _hub_arguments(r)
    r.add_argument("device_id")
    r.add_argument("--schema", help=SCHEMA_HELP)
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.set_defaults(run=hub_revoke)
    d = h_sub.add_parser("devices", help="list enrolled devices and the latest refusals")
    _hub_arguments(d)
    d.add_argument("--schema", help=SCHEMA_HELP)
    d.add_argument("--json", action="store_true", help="print the registry as JSON")
    d.set_defaults(run=hub_devices)
    b = h_sub.add_parser("backup", help="a consistent copy of the hub file, taken while it serves")
    _hub_arguments(b)
    b.add_argument("dest", help="the copy's path; must not exist")
    b.add_argument("--schema", help=SCHEMA_HELP)
    b.add_argument("--json", action="store_true", help="print the copy's path and size as JSON")
    b.set_defaults(run=hub_backup)
    hs = h_sub.add_parser("stats", help="the hub's counters (fs_hub_stats)")
    _hub_arguments(hs)
    hs.add_argument("--schema", help=SCHEMA_HELP)
    hs.add_argument("--json", action="store_true", help="print them as one JSON object")
    hs.set_defaults(run=hub_stats)

    n = sub.add_parser("inspect", help="a store's outbox and audit, or a hub's entries, conflicts and audit")
    n.add_argument("db", nargs="?", help="a store or hub database file")
    n.add_argument("--postgres", metavar="DSN", help=POSTGRES_HELP)
    n.add_argument("--schema", help=SCHEMA_HELP)
    n.add_argument("--recent", type=int, default=10, help="audit rows (and held entries) shown (default 10)")
    n.add_argument("--json", action="store_true", help="print the report as JSON")
    n.set_defaults(run=inspect)

    o = sub.add_parser("outbox", help="a device store's outbox: discard a rejected or stuck entry")
    o_sub = o.add_subparsers(dest="outbox_command", required=True)
    od = o_sub.add_parser("discard", help="discard a rejected or stuck entry (its audit row stays)")
    od.add_argument("store_db", help="device store file")
    od.add_argument("key", help="the entry's key, e.g. tablet-7-42 (inspect lists them)")
    od.add_argument("--schema", help=SCHEMA_HELP)
    od.add_argument("--json", action="store_true", help="print the result as JSON")
    od.set_defaults(run=outbox_discard)

    from . import verify as verifier
    v = sub.add_parser("verify", help="verify a hub's stored audit trail against the devices' signatures")
    verifier.add_arguments(v)
    v.set_defaults(run=verify)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if _lib.LOAD_ERROR is not None and args.run is not verify:  # verify needs only Python
        print(f"error: {_lib.LOAD_ERROR}", file=sys.stderr)
        return EXIT_LIBRARY
    if getattr(args, "recent", 1) < 0:
        print("error: --recent must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.run(args)
        return code
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
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

"""The hub as a WSGI application: the one place HTTP requests meet a Hub.

    gunicorn -c gunicorn.conf.py 'fieldsync.server:app'           (settings from FIELDSYNC_* variables)
    gunicorn 'fieldsync.server:create_app()'                      (the same, gunicorn's factory syntax)
    python -m fieldsync serve --db hub.db --schema schema.json    (the development server: this app too)
    python -m fieldsync serve --postgres 'host=db1 dbname=fieldsync' --schema schema.json

Routes: ``POST /sync`` (a device's request in, the hub's signed response out,
byte for byte), ``GET /healthz`` (200 when the hub file or database opens
and answers, 503 otherwise), and for the operator only ``GET /stats`` (fs_hub_stats as JSON)
and ``GET /metrics`` (Prometheus text format). docs/OPERATIONS.md tells how to
deploy it, what every setting and metric means, and what to alert on.

Every worker process opens its own Hub handle, on its first request: a
SQLite handle must never cross a fork, and gunicorn forks its workers after
loading the application. Each request is one fs_hub_handle call, one
transaction in the engine: a worker stopped at any point (SIGTERM, --timeout,
SIGKILL) leaves a request applied whole or not at all, and the device resends
what was not answered.

A hub in a PostgreSQL database (FIELDSYNC_POSTGRES) is served the same way
by any number of processes on any number of hosts: each worker holds one
connection, which the library makes again at the next call once it is lost;
meanwhile the database's FS_ERR_IO is answered 503, as an unavailable file.

Settings (create_app(Config(...)) or the environment, read by Config.from_env):

    FIELDSYNC_HUB            hub database file, or:
    FIELDSYNC_POSTGRES       a libpq connection string (the hub's PostgreSQL database); one of the two
    FIELDSYNC_SCHEMA         schema JSON file (required)
    FIELDSYNC_AUTH           on (default) | off
    FIELDSYNC_DURABILITY     full (default) | normal (a hub file's; not with FIELDSYNC_POSTGRES)
    FIELDSYNC_STATS_TOKEN    /stats and /metrics also answer 'Authorization: Bearer TOKEN'
    FIELDSYNC_MAX_BODY       request body limit in bytes (default and maximum FS_MAX_MESSAGE_BYTES)
    FIELDSYNC_MAX_PARALLEL   bodies read and handled at once per process (default 2)
    FIELDSYNC_BODY_TIMEOUT   seconds a body may take to arrive (default 60)
    FIELDSYNC_QUEUE_TIMEOUT  seconds a request may wait for its turn before 503 (default 120)
    FIELDSYNC_RETRY_AFTER    the Retry-After of a 503, in seconds (default 5)
    FIELDSYNC_LOG            request log: - (stderr, default), a file path (appended), or off
    PROMETHEUS_MULTIPROC_DIR prometheus_client's multiprocess mode: per-process metrics of
                             every worker summed (needed with more than one worker)
"""

from __future__ import annotations

import atexit
import concurrent.futures
import dataclasses
import hmac
import json
import os
import re
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from . import ArgError, FieldSyncError, FieldSyncIOError, Hub, JSONError, SchemaError, TooBigError, status_name
from ._lib import MAX_MESSAGE_BYTES

#: Library errors that are the client's fault: answered 400, the rest 500.
CLIENT_ERRORS = (ArgError, JSONError, TooBigError, SchemaError)

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
#: A request relayed by a proxy comes from the proxy's address, often this
#: host: these headers say it did not start here.
FORWARDED = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")

#: Request latency buckets, in seconds: a small batch takes milliseconds, a
#: 64 MiB one seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def read_schema(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    json.loads(text)  # a clear error here rather than FS_ERR_JSON later
    return text


def redact(dsn: str) -> str:
    """A libpq connection string fit for a log: any password masked, in the
    key=value form and in a URI."""
    dsn = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", r"\1***", dsn)
    return re.sub(r"^(postgres(?:ql)?://[^:/@?]*):[^@/]*@", r"\1:***@", dsn)


@dataclasses.dataclass
class Config:
    """Where the hub is: a file (`hub`) or a PostgreSQL database (`postgres`,
    a libpq connection string, with hub=None), never both."""

    hub: Optional[str]
    schema: str
    auth: str = "on"
    durability: Optional[str] = None
    stats_token: str = ""
    max_body: int = MAX_MESSAGE_BYTES
    max_parallel: int = 2
    body_timeout: float = 60.0
    queue_timeout: float = 120.0
    retry_after: int = 5
    log: str = "-"
    postgres: Optional[str] = None

    @property
    def where(self) -> str:
        """The hub as logs name it: the file, or the database without its password."""
        return f"postgres {redact(self.postgres)}" if self.postgres else str(self.hub)

    def check(self) -> None:
        if bool(self.hub) == bool(self.postgres):
            raise ValueError("a hub is a file (hub, FIELDSYNC_HUB, --db) or a PostgreSQL database "
                             "(postgres, FIELDSYNC_POSTGRES, --postgres): " +
                             ("not both" if self.hub else "name one"))
        if self.postgres and self.durability is not None:
            raise ValueError("durability is a hub file's setting; a PostgreSQL hub's commits are as durable "
                             "as its server makes them (synchronous_commit)")
        if self.auth not in ("on", "off"):
            raise ValueError(f"auth must be on or off, not {self.auth!r}")
        if self.durability not in (None, "full", "normal"):
            raise ValueError(f"durability must be full or normal, not {self.durability!r}")
        if not 0 < self.max_body <= MAX_MESSAGE_BYTES:
            raise ValueError(f"max_body must be in 1 ... {MAX_MESSAGE_BYTES}")
        for name in ("max_parallel", "body_timeout", "queue_timeout", "retry_after"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")

    @classmethod
    def from_env(cls, env: Optional[Dict[str, str]] = None) -> "Config":
        env = dict(os.environ if env is None else env)
        if env.get("FIELDSYNC_HUB") and env.get("FIELDSYNC_POSTGRES"):
            raise ValueError("set FIELDSYNC_HUB (a hub file) or FIELDSYNC_POSTGRES (a PostgreSQL database), not both")
        missing = []
        if not env.get("FIELDSYNC_HUB") and not env.get("FIELDSYNC_POSTGRES"):
            missing.append("FIELDSYNC_HUB (the hub file) or FIELDSYNC_POSTGRES (a PostgreSQL database)")
        if not env.get("FIELDSYNC_SCHEMA"):
            missing.append("FIELDSYNC_SCHEMA (the schema file)")
        if missing:
            raise ValueError(f"set {' and '.join(missing)} to serve a hub")

        def number(name: str, kind: Callable[[str], Any], default: Any) -> Any:
            text = env.get(name, "")
            try:
                return kind(text) if text else default
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a number") from None

        return cls(hub=env.get("FIELDSYNC_HUB") or None, schema=env["FIELDSYNC_SCHEMA"],
                   postgres=env.get("FIELDSYNC_POSTGRES") or None,
                   auth=env.get("FIELDSYNC_AUTH") or "on",
                   durability=env.get("FIELDSYNC_DURABILITY") or None,
                   stats_token=env.get("FIELDSYNC_STATS_TOKEN", ""),
                   max_body=number("FIELDSYNC_MAX_BODY", int, MAX_MESSAGE_BYTES),
                   max_parallel=number("FIELDSYNC_MAX_PARALLEL", int, 2),
                   body_timeout=number("FIELDSYNC_BODY_TIMEOUT", float, 60.0),
                   queue_timeout=number("FIELDSYNC_QUEUE_TIMEOUT", float, 120.0),
                   retry_after=number("FIELDSYNC_RETRY_AFTER", int, 5),
                   log=env.get("FIELDSYNC_LOG") or "-")


def operator_allowed(environ: Dict[str, Any], token: str) -> Tuple[int, str]:
    """Whether a request may read /stats and /metrics: (0, "") if so, else the
    HTTP status and why. Stats are the operator's, not the devices'
    (docs/SECURITY.md): with a token only a request bearing it; without one
    only a request from this host that no proxy relayed."""
    if token:
        given = environ.get("HTTP_AUTHORIZATION", "")
        if hmac.compare_digest(given.encode("utf-8", "replace"), f"Bearer {token}".encode("utf-8")):
            return 0, ""
        return 401, "needs the operator's token: Authorization: Bearer <stats token>"
    if environ.get("REMOTE_ADDR", "") in LOOPBACK and not any(environ.get(h) for h in FORWARDED):
        return 0, ""
    return 403, "is served to this host only; set a stats token (--stats-token, FIELDSYNC_STATS_TOKEN) to allow others"


# --------------------------------------------------------------------------
# What a response says, for the log and the metrics
# --------------------------------------------------------------------------

_BATCH = re.compile(rb'"batch":"((?:[^"\\]|\\.){0,1600})"')
_DEVICE = re.compile(rb'"device_id":"((?:[^"\\]|\\.){0,1600})"')
#: The tail of every response the hub writes (keys in byte order): the
#: results array ends right before it.
_TAIL = re.compile(rb'\],"server_time":-?\d+,"signature":"[0-9a-f]*"\}\s*$')
_DECODER = json.JSONDecoder()


def _string(raw: Optional[bytes]) -> Optional[str]:
    try:
        return json.loads(b'"' + raw + b'"') if raw is not None else None
    except ValueError:
        return None


def summarize(response: bytes) -> Dict[str, Any]:
    """device_id, batch, and either "results" (the entries' results) or
    "refusal" (the code of a request refused whole), read from a response
    without decoding all of it: a response may carry 16 MiB of record states
    in "changes", which the log needs nothing of."""
    out: Dict[str, Any] = {}
    if len(response) <= 8192 and b'"error":{' in response:
        try:
            answer = json.loads(response.decode("utf-8"))
            out.update(device_id=answer.get("device_id"), batch=answer.get("batch"),
                       refusal=str(answer["error"]["code"]), message=str(answer["error"].get("message", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        return out
    # "audit_acks" (numbers only) is the one member before "batch".
    m = _BATCH.search(response)
    out["batch"] = _string(m.group(1)) if m else None
    tail = _TAIL.search(response, max(0, len(response) - 300))
    if not tail:
        return out
    end = tail.start() + 1
    # The top-level "results" is the one whose array ends where the tail
    # begins; one found later is inside a rejection's record state (a json
    # field holding "results") and ends before it. An unescaped '"' is never
    # inside a string, so every match is a key.
    at = end
    for _ in range(20):
        at = response.rfind(b'"results":[', 0, at)
        if at < 0:
            return out
        try:
            text = response[at + len(b'"results":'):end].decode("utf-8")
            results, stop = _DECODER.raw_decode(text)
        except ValueError:
            continue
        if stop == len(text):
            break
    else:
        return out
    out["results"] = results
    # Between "changes" and "results" come only "cursor", "device_id",
    # "holds", "more", "own", "protocol", "request_hash", none holding a
    # "device_id" key: the last one before "results" is the top-level one.
    key = response.rfind(b'"device_id":"', 0, at)
    m = _DEVICE.match(response, key) if key >= 0 else None
    out["device_id"] = _string(m.group(1)) if m else None
    return out


def count_results(results: List[Any]) -> Dict[Tuple[str, str], int]:
    """(status, reason) -> entries: reason for "rejected" and "retry" is the
    reason's kind ("invalid: ..." counts as "invalid"), for "duplicate" the
    first decision's outcome."""
    counts: Dict[Tuple[str, str], int] = {}
    for r in results:
        if not isinstance(r, dict):
            continue
        status = str(r.get("status", "?"))
        if status == "duplicate":
            reason = str(r.get("outcome", ""))
        elif status in ("rejected", "retry"):
            reason = str(r.get("reason", "")).split(":", 1)[0][:40]
        else:
            reason = ""
        counts[(status, reason)] = counts.get((status, reason), 0) + 1
    return counts


# --------------------------------------------------------------------------
# Logs and metrics
# --------------------------------------------------------------------------


class RequestLog:
    """One JSON line per request: no bodies, no tokens, no library messages
    (they may quote what a client sent), only what the request was and how
    it ended. Each line is one write(2) on an O_APPEND descriptor, so the
    workers of a gunicorn share a file without mixing lines."""

    def __init__(self, where: str) -> None:
        self.fd: Optional[int] = None
        self.stream: Any = None
        if where == "-":
            try:
                self.fd = sys.stderr.fileno()
            except (AttributeError, ValueError, OSError):  # a stderr without a descriptor (captured)
                self.stream = sys.stderr
        elif where != "off":
            self.fd = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, record: Dict[str, Any]) -> None:
        if self.fd is None and self.stream is None:
            return
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"
        try:
            if self.fd is not None:
                os.write(self.fd, line.encode("ascii"))
            else:
                self.stream.write(line)
                self.stream.flush()
        except (OSError, ValueError):
            pass  # a full disk must not fail the request


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


class Metrics:
    """Per-process figures (HTTP outcomes, latency, entry results) in
    prometheus_client's metrics: under PROMETHEUS_MULTIPROC_DIR each worker
    writes them to its own files and a scrape of any worker sums them all.
    Hub-wide figures come from the hub file at scrape time (HubCollector)."""

    def __init__(self, app: "HubApp") -> None:
        import prometheus_client as prom
        from prometheus_client import multiprocess

        self.prom = prom
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.multiprocess = bool(directory)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # Multiprocess: the values live in the directory, the registry is
        # built at each scrape. Otherwise: this app's own registry, so that
        # two apps in one process (tests) never share a series.
        own = None if self.multiprocess else prom.CollectorRegistry(auto_describe=True)
        self._own = own
        self.requests = prom.Counter("fieldsync_http_requests", "HTTP requests by route, status and outcome",
                                     ["route", "code", "outcome"], registry=own)
        self.latency = prom.Histogram("fieldsync_http_request_duration_seconds",
                                      "Time from a request's arrival to its response's last byte",
                                      ["route"], buckets=LATENCY_BUCKETS, registry=own)
        self.results = prom.Counter("fieldsync_sync_entries", "Entries answered, by result status and reason",
                                    ["status", "reason"], registry=own)
        self.refusals = prom.Counter("fieldsync_sync_refusals", "Requests refused whole, by code "
                                     "(authentication codes, upgrade_required)", ["code"], registry=own)
        self._multiprocess_module = multiprocess
        self._hub = HubCollector(app)
        if own is not None:
            own.register(self._hub)

    def observe(self, route: str, code: int, outcome: str, seconds: float,
                summary: Optional[Dict[str, Any]]) -> None:
        self.requests.labels(route, str(code), outcome).inc()
        if route in ("sync", "stats", "metrics", "healthz"):
            self.latency.labels(route).observe(seconds)
        if summary:
            for (status, reason), n in count_results(summary.get("results") or []).items():
                self.results.labels(status, reason).inc(n)
            if summary.get("refusal"):
                self.refusals.labels(summary["refusal"]).inc()

    def exposition(self) -> Tuple[bytes, str]:
        if self._own is not None:
            registry = self._own
        else:
            registry = self.prom.CollectorRegistry()
            self._multiprocess_module.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(self._hub)
        return self.prom.generate_latest(registry), self.prom.CONTENT_TYPE_LATEST


class HubCollector:
    """The hub's counters, read at each scrape: every worker shares the file
    or the database, so every worker (on every host) answers the same figures."""

    #: fs_hub_stats key -> (metric, help, labels). Counters only grow.
    COUNTERS = {
        "entries_applied": ("fieldsync_hub_entries", "Entries the hub decided, by outcome", {"outcome": "applied"}),
        "entries_rejected": ("fieldsync_hub_entries", "", {"outcome": "rejected"}),
        "entries_duplicate": ("fieldsync_hub_entries", "", {"outcome": "duplicate"}),
        "entries_key_reused": ("fieldsync_hub_key_reused", "Resends of a decided key with other content", {}),
        "field_writes": ("fieldsync_hub_field_writes", "Field writes applied", {}),
        "conflicts": ("fieldsync_hub_conflicts", "Concurrent field writes", {}),
        "merged": ("fieldsync_hub_merged", "Concurrent writes merged", {}),
        "audit_reused": ("fieldsync_hub_audit_reused", "Audit rows refused: another row holds their id", {}),
        "devices_restored": ("fieldsync_hub_devices_restored", "Requests from a store restored from an older file", {}),
    }
    GAUGES = {
        "seq": ("fieldsync_hub_seq", "The hub's last change sequence"),
        "records": ("fieldsync_hub_records", "Records held"),
        "audit_rows": ("fieldsync_hub_audit_rows", "Audit rows held"),
        "audit_hash_failures": ("fieldsync_hub_audit_hash_failures", "Audit rows whose hash does not recompute"),
        "audit_chain_breaks": ("fieldsync_hub_audit_chain_breaks", "Audit rows whose prev_hash breaks the chain"),
        "audit_gaps": ("fieldsync_hub_audit_gaps", "Audit ids missing below a device's highest"),
        "devices": ("fieldsync_hub_devices_seen", "Devices that have synced"),
        "schema_version": ("fieldsync_hub_schema_version", "The hub's schema version"),
    }
    FIELD_KINDS = ("writes", "concurrent", "won", "lost", "merged", "rejected", "resolved")

    def __init__(self, app: "HubApp") -> None:
        self.app = app

    def describe(self) -> List[Any]:
        return []  # collected only at scrape time: the hub is opened lazily

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily("fieldsync_hub_up", "1 when the hub opened and answered this scrape")
        try:
            hub = self.app.hub()
            stats, registry = hub.stats(), hub.devices()
        except (FieldSyncError, OSError) as e:
            self.app.note_unavailable(e)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        families: Dict[str, Any] = {}
        for key, (name, text, labels) in self.COUNTERS.items():
            family = families.get(name)
            if family is None:
                family = families[name] = CounterMetricFamily(name, text, labels=list(labels))
            family.add_metric(list(labels.values()), float(stats.get(key, 0)))
        yield from families.values()
        for key, (name, text) in self.GAUGES.items():
            yield GaugeMetricFamily(name, text, value=float(stats.get(key, 0)))
        records = GaugeMetricFamily("fieldsync_hub_type_records", "Records held, by type", labels=["type"])
        refused = CounterMetricFamily("fieldsync_hub_auth_refusals", "Requests refused by authentication, by code",
                                      labels=["code"])
        fields = CounterMetricFamily("fieldsync_hub_field_conflicts",
                                     "Writes per field: writes, concurrent, won, lost, merged, rejected, resolved",
                                     labels=["type", "field", "kind"])
        rates = GaugeMetricFamily("fieldsync_hub_field_conflict_rate", "Concurrent writes / writes, per field",
                                  labels=["type", "field"])
        rejected = CounterMetricFamily("fieldsync_hub_entries_rejected", "Rejected entries, by reason",
                                       labels=["reason"])
        for key, value in stats.items():
            if key.startswith("entries_rejected."):
                rejected.add_metric([key[len("entries_rejected."):]], float(value))
            elif key.startswith("records_"):
                records.add_metric([key[len("records_"):]], float(value))
            elif key.startswith("auth_refused_"):
                refused.add_metric([key[len("auth_refused_"):]], float(value))
            elif key.startswith("conflicts."):
                path, _, kind = key[len("conflicts."):].rpartition(".")
                type_, _, field = path.partition(".")
                if kind in self.FIELD_KINDS:
                    fields.add_metric([type_, field, kind], float(value))
                elif kind == "rate":
                    rates.add_metric([type_, field], float(value))
        yield from (rejected, records, refused, fields, rates)
        states = GaugeMetricFamily("fieldsync_hub_devices", "Enrolled devices, by state", labels=["state"])
        states.add_metric(["active"], float(stats.get("devices_enrolled", 0)))
        states.add_metric(["revoked"], float(stats.get("devices_revoked", 0)))
        yield states
        seen = GaugeMetricFamily("fieldsync_hub_device_last_seen_timestamp_seconds",
                                 "When the hub last handled a request of the device", labels=["device_id"])
        for d in registry.get("devices", []):
            if d.get("last_seen_at") is not None:
                seen.add_metric([str(d["device_id"])], d["last_seen_at"] / 1000.0)
        yield seen


# --------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------


class _Process:
    """What one process owns: its hub handle, its turns, its hub threads."""

    def __init__(self, config: Config) -> None:
        self.pid = os.getpid()
        self.hub: Optional[Hub] = None
        self.identity: Optional[Tuple[int, int]] = None
        # At most max_parallel bodies are read and handled at once: a body's
        # parse costs several times its size, so without this N clients
        # sending 60 MiB each cost N times that.
        self.turns = threading.BoundedSemaphore(config.max_parallel)
        # The hub's calls run on max_parallel long-lived threads, not on each
        # connection's own: the C library allocates a parse in the calling
        # thread's malloc arena, and freed arenas stay resident, so parses
        # spread over ever new threads cost one body per thread at once.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=config.max_parallel,
                                                          thread_name_prefix="fieldsync-hub")
        self.lock = threading.Lock()


class _Body:
    """The response body; close() (called by every WSGI server once the body
    is sent) ends the request: the turn is held while a large response is
    written, and the log line and latency include the sending."""

    def __init__(self, body: bytes, done: Callable[[], None]) -> None:
        self._body: Optional[bytes] = body
        self._done: Optional[Callable[[], None]] = done

    def __iter__(self) -> Iterator[bytes]:
        body, self._body = self._body, None
        if body:
            yield body

    def close(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()


class HubApp:
    """The WSGI application (create_app() makes one)."""

    def __init__(self, config: Config) -> None:
        config.check()
        self.config = config
        self.schema_text = read_schema(config.schema)
        self.log = RequestLog(config.log)
        self._process: Optional[_Process] = None
        self._process_lock = threading.Lock()
        self._warned = False
        self._routes = {"/sync": ("POST", "sync", self._sync), "/stats": ("GET", "stats", self._stats),
                        "/metrics": ("GET", "metrics", self._metrics_route),
                        "/healthz": ("GET", "healthz", self._healthz)}
        self._metrics: Optional[Metrics] = None
        self._metrics_error = ""
        try:
            self._metrics = Metrics(self)
        except ImportError:
            self._metrics_error = "GET /metrics needs prometheus_client: pip install prometheus_client"

    # -- per process ----------------------------------------------------------

    def _state(self) -> _Process:
        process = self._process
        if process is None or process.pid != os.getpid():
            with self._process_lock:
                process = self._process
                if process is None or process.pid != os.getpid():
                    # Made before a fork (gunicorn --preload): its handle and
                    # threads belong to the parent; never touched here.
                    process = self._process = _Process(self.config)
        return process

    def hub(self) -> Hub:
        """This process's hub handle, opened on first use. Raises
        FieldSyncError (the file does not open, the database does not
        answer) or OSError (the file at the configured path is gone, or is
        another file than the one open: a restored copy put in place needs a
        restart)."""
        config = self.config
        process = self._state()
        with process.lock:
            if process.hub is None:
                if config.postgres:
                    hub = Hub(None, self.schema_text, auth=config.auth, postgres=config.postgres)
                else:
                    hub = Hub(config.hub, self.schema_text, durability=config.durability, auth=config.auth)
                    st = os.stat(str(config.hub))
                    process.identity = (st.st_dev, st.st_ino)
                process.hub = hub
                if config.auth == "off":
                    print(f"fieldsync hub {config.where}: authentication is OFF: any client is any device",
                          file=sys.stderr, flush=True)
                atexit.register(self._close, process)
            hub = process.hub
            identity = process.identity
        if config.hub:
            st = os.stat(config.hub)
            if (st.st_dev, st.st_ino) != identity:
                raise FileNotFoundError(f"{config.hub} is not the file this worker opened (moved or replaced): "
                                        "restart the server")
        return hub

    @staticmethod
    def _answers(hub: Hub) -> bool:
        try:
            hub.stats()
            return True
        except FieldSyncError:
            return False

    @staticmethod
    def _close(process: _Process) -> None:
        if process.pid != os.getpid():
            return
        process.pool.shutdown(wait=True)
        with process.lock:
            hub, process.hub = process.hub, None
        if hub is not None:
            try:
                hub.close()
            except FieldSyncError:
                pass

    def close(self) -> None:
        """Close this process's hub (the development server calls it on exit)."""
        process = self._process
        if process is not None:
            atexit.unregister(self._close)
            self._close(process)

    def note_unavailable(self, e: BaseException) -> None:
        print(f"fieldsync hub {self.config.where} unavailable: {e}", file=sys.stderr, flush=True)

    # -- WSGI -----------------------------------------------------------------

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        record: Dict[str, Any] = {"time": _timestamp(time.time()), "pid": os.getpid(),
                                  "remote": environ.get("REMOTE_ADDR", ""), "method": method, "path": path[:200]}
        route = self._routes.get(path.rstrip("/") or "/")
        release: Optional[Callable[[], None]] = None
        if route is None:
            name, code, body, headers, outcome = "other", 404, _error(f"no such resource: {method} {path[:200]}",
                                                                      "not_found"), [], "not_found"
        elif method != route[0] and not (method == "HEAD" and route[0] == "GET"):
            name, code, body, headers, outcome = route[1], 405, _error(f"{path} takes {route[0]}", "method"), \
                [("Allow", route[0])], "method"
        else:
            name = route[1]
            if name == "sync" and not self._warned and environ.get("wsgi.multiprocess") and self._metrics \
                    and not self._metrics.multiprocess:
                self._warned = True
                print("fieldsync hub: several worker processes without PROMETHEUS_MULTIPROC_DIR: "
                      "/metrics shows one worker's request figures (docs/OPERATIONS.md)", file=sys.stderr, flush=True)
            code, body, headers, outcome, release = route[2](environ, record)
        headers = [("Content-Type", "application/json; charset=utf-8")] + headers \
            if not any(k == "Content-Type" for k, _ in headers) else headers
        headers.append(("Content-Length", str(len(body))))
        record.update(status=code, outcome=outcome, bytes_out=len(body))
        summary = record.pop("_summary", None)

        def done() -> None:
            if release is not None:
                release()
            seconds = time.monotonic() - started
            record["duration_ms"] = round(seconds * 1000, 3)
            self.log.write(record)
            if self._metrics is not None:
                self._metrics.observe(name, code, outcome, seconds, summary)

        try:
            start_response(f"{code} {_REASONS.get(code, 'Unknown')}", headers)
        except BaseException:
            done()  # the server gives up on the request: the turn is released all the same
            raise
        return _Body(b"" if method == "HEAD" else body, done)

    # -- routes: each returns (code, body, headers, outcome, release) -----------

    def _sync(self, environ: Dict[str, Any], record: Dict[str, Any]) -> Tuple[int, bytes, List[Tuple[str, str]], str, Any]:
        config = self.config
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
            if length < 0:
                raise ValueError
        except ValueError:
            return 400, _error("POST /sync needs a Content-Length", "FS_ERR_ARG"), [], "bad_request", None
        record["bytes_in"] = length
        if length > config.max_body:
            return 413, _error(f"the request is {length} bytes; the limit is {config.max_body}",
                               "FS_ERR_TOO_BIG"), [], "too_big", None
        process = self._state()
        if not process.turns.acquire(timeout=config.queue_timeout):
            return 503, _error(f"the hub is busy: no turn within {config.queue_timeout:g} s; retry later",
                               "FS_ERR_BUSY"), [("Retry-After", str(config.retry_after))], "busy", None
        release = process.turns.release
        try:
            body = _read_body(environ, length, config.body_timeout)
            if body is None:  # too slow, or the device went away mid-request
                return 408, _error(f"the request body did not arrive within {config.body_timeout:g} s",
                                   "FS_ERR_ARG"), [], "timeout", release
            try:
                hub = self.hub()
            except (FieldSyncError, OSError) as e:
                self.note_unavailable(e)
                return 503, _error("the hub is unavailable; retry later", "unavailable"), \
                    [("Retry-After", str(config.retry_after))], "unavailable", release
            try:
                # Bytes in, bytes out: both texts are signed over their bytes.
                response = process.pool.submit(hub.handle_bytes, body).result()
            except FieldSyncError as e:
                record["error"] = status_name(e.status)
                if self.config.postgres and isinstance(e, FieldSyncIOError):
                    # The database did not answer: the request is applied whole or
                    # not at all, and the device resends it ("duplicate" if it was).
                    self.note_unavailable(e)
                    return 503, _error("the hub is unavailable; retry later", "unavailable"), \
                        [("Retry-After", str(config.retry_after))], "unavailable", release
                if isinstance(e, SchemaError) and not self._answers(hub):
                    # Not the request's fault: another handle migrated the
                    # file to a newer schema, and this one refuses every call
                    # until the server restarts with that schema (docs/ABI.md).
                    self.note_unavailable(e)
                    return 503, _error("the hub is unavailable; retry later", "unavailable"), \
                        [("Retry-After", str(config.retry_after))], "unavailable", release
                client = isinstance(e, CLIENT_ERRORS)
                return (400 if client else 500), _error(e.message, status_name(e.status)), [], \
                    ("bad_request" if client else "error"), release
            except Exception as e:  # noqa: BLE001 - a server answers, it does not die
                record["error"] = type(e).__name__
                return 500, _error(f"{type(e).__name__}: {e}", "internal"), [], "error", release
            del body
            summary = summarize(response)
            record["_summary"] = summary
            record["device_id"], record["batch"] = summary.get("device_id"), summary.get("batch")
            outcome = "ok"
            if summary.get("refusal"):
                outcome = "refused"
                record["refusal"] = summary["refusal"]
                # The line operators grep for (the library logs it too: fs_hub_devices "refusals").
                print(f"refused {environ.get('REMOTE_ADDR', '?')} device {summary.get('device_id') or '?'}: "
                      f"{summary['refusal']}: {summary.get('message', '')}", file=sys.stderr, flush=True)
            elif "results" in summary:
                results = summary["results"]
                record["entries"] = len(results)
                for (status, _reason), n in count_results(results).items():
                    record[status] = record.get(status, 0) + n
            # Sent inside the turn too (released by _Body.close): a response
            # can be as large as a request.
            return 200, response, [], outcome, release
        except BaseException:
            release()
            raise

    def _operator(self, environ: Dict[str, Any], what: str) -> Optional[Tuple[int, bytes, List[Tuple[str, str]], str, Any]]:
        code, why = operator_allowed(environ, self.config.stats_token)
        if code:
            return code, _error(f"GET {what} {why}", "unauthorized" if code == 401 else "forbidden"), [], \
                "unauthorized" if code == 401 else "forbidden", None
        return None

    def _stats(self, environ: Dict[str, Any], record: Dict[str, Any]) -> Tuple[int, bytes, List[Tuple[str, str]], str, Any]:
        refused = self._operator(environ, "/stats")
        if refused:
            return refused
        try:
            return 200, json.dumps(self.hub().stats()).encode("utf-8"), [], "ok", None
        except FieldSyncError as e:
            if self.config.postgres and isinstance(e, FieldSyncIOError):
                self.note_unavailable(e)
                return 503, _error("the hub is unavailable", "unavailable"), [], "unavailable", None
            return (400 if isinstance(e, CLIENT_ERRORS) else 500), _error(e.message, status_name(e.status)), [], \
                "error", None
        except OSError as e:
            self.note_unavailable(e)
            return 503, _error("the hub is unavailable", "unavailable"), [], "unavailable", None

    def _metrics_route(self, environ: Dict[str, Any], record: Dict[str, Any]) -> Tuple[int, bytes, List[Tuple[str, str]], str, Any]:
        refused = self._operator(environ, "/metrics")
        if refused:
            return refused
        if self._metrics is None:
            return 501, _error(self._metrics_error, "unavailable"), [], "error", None
        text, content_type = self._metrics.exposition()
        return 200, text, [("Content-Type", content_type)], "ok", None

    def _healthz(self, environ: Dict[str, Any], record: Dict[str, Any]) -> Tuple[int, bytes, List[Tuple[str, str]], str, Any]:
        try:
            stats = self.hub().stats()
        except (FieldSyncError, OSError) as e:
            self.note_unavailable(e)
            return 503, json.dumps({"status": "unavailable", "error": _brief(e)}).encode("utf-8"), [], \
                "unavailable", None
        return 200, json.dumps({"status": "ok", "schema_version": stats.get("schema_version"),
                                "seq": stats.get("seq")}).encode("utf-8"), [], "ok", None


def _brief(e: BaseException) -> str:
    """What a health check may say about a failure: the kind, not paths or file contents."""
    if isinstance(e, FieldSyncError):
        return status_name(e.status)
    return "the hub file is missing or was replaced" if isinstance(e, FileNotFoundError) else type(e).__name__


def _error(message: str, status: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode("utf-8")


def _read_body(environ: Dict[str, Any], length: int, timeout: float) -> Optional[bytes]:
    """The body, or None if it did not all arrive within `timeout` seconds.
    With the connection's socket at hand (gunicorn's "gunicorn.socket", the
    development server's "fieldsync.socket"), each receive waits only for
    what is left of the deadline, so a client trickling bytes cannot stretch
    it; gunicorn's --timeout bounds a request whatever happens."""
    stream = environ["wsgi.input"]
    sock = environ.get("gunicorn.socket") or environ.get("fieldsync.socket")
    read = getattr(stream, "read1", None) or stream.read
    before = sock.gettimeout() if sock is not None else None
    deadline = time.monotonic() + timeout
    chunks = []
    got = 0
    try:
        while got < length:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if sock is not None:
                sock.settimeout(left)
            chunk = read(min(length - got, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
    except (ConnectionError, socket.timeout, TimeoutError, OSError):
        return None
    finally:
        if sock is not None:
            try:
                sock.settimeout(before)
            except OSError:
                pass
    return b"".join(chunks)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


def create_app(config: Optional[Config] = None) -> HubApp:
    """The WSGI application for `config`, or for the FIELDSYNC_* environment
    variables (Config.from_env). Nothing is opened yet: each process opens
    the hub on its first request."""
    return HubApp(config if config is not None else Config.from_env())


class _LazyApp:
    """``fieldsync.server:app``: built from the environment on first use, in
    the process that serves (gunicorn imports the module in each worker)."""

    def __init__(self) -> None:
        self._app: Optional[HubApp] = None
        self._lock = threading.Lock()

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = create_app()
        return self._app(environ, start_response)


app = _LazyApp()

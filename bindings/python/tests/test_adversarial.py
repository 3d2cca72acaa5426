"""The adversarial suite (issue 12): every integer of every input, option and
wire message at 0, -1, INT64_MIN, INT64_MAX and just past its documented
limit; clocks at the extremes around each step; callbacks that re-enter their
own handle; nesting and sizes at the action limits. Each case drives the C
functions through ctypes in its own forked child, so a trap or a SIGSEGV fails
that case only. The contract each case checks is in adversarial.py.

The setup every case shares (a hub, device dev-A with three actions waiting,
device dev-B) is built once, closed, and copied into each case's directory.
The cases that reach the hub's storage (its options, request members, hub
clocks and callbacks, counters at the int64 edges, the deepest actions, reused keys) run
on both storages (`hub_template`): there the hub is a PostgreSQL database,
built once, dumped, and loaded into an empty database for each case.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from adversarial import (DEFAULT_MAX_SKEW_MS, EXTREMES, FS_ERR_MISUSE, FS_OK, INT64_MAX, INT64_MIN,
                         MAX_CLOCK_SKEW_LIMIT_MS, PAST_INT64, Dev, Hub, Outcome, accepted,
                         copy_files, device_options, documented_depth_limit, in_child, nest,
                         now_ms, ok, refused, settle)
import hubs
import pg
from fieldsync._lib import MAX_JSON_BYTES, MAX_MESSAGE_BYTES
from support import SCHEMA, task

#: How deep an action may nest, read from the header (FS_MAX_DEPTH; 512 in
#: docs/ABI.md before the header named it).
DEPTH_LIMIT = documented_depth_limit()

A_OPTIONS = device_options("dev-A")
B_OPTIONS = device_options("dev-B")


def ids(pairs):
    return [name for name, _ in pairs]


# -- the shared setup -----------------------------------------------------------------


#: In a PostgreSQL template's directory: its hub's database, as pg_dump wrote it.
PG_TEMPLATE = "hub.sql"
#: The database run() cloned for the case running in this child, if any.
CASE_DSN: Optional[str] = None


def case_hub(d: Path, options: Optional[Dict[str, Any]] = None) -> Tuple[Outcome, Optional[Hub]]:
    """The case's copy of the template's hub: its file, or the database run()
    cloned from the template's."""
    if CASE_DSN is None:
        return Hub.open(d / "hub.db", SCHEMA, options)
    options = {k: v for k, v in (options or {}).items() if k not in hubs.SQLITE_ONLY}
    return Hub.open(None, SCHEMA, {**options, "storage": "postgres", "dsn": CASE_DSN})


def must_case_hub(d: Path, options: Optional[Dict[str, Any]] = None) -> Hub:
    o, hub = case_hub(d, options)
    ok(o)
    assert hub is not None
    return hub


def build_template(d: Path, hub: Hub) -> Path:
    a = Dev.must_open(d / "dev-A.db", SCHEMA, A_OPTIONS)
    b = Dev.must_open(d / "dev-B.db", SCHEMA, B_OPTIONS)
    hub.enroll(a, b)
    ok(b.apply(task("T-2", set={"status": "open", "on_hand": 5})))
    ok(b.apply(task("T-3", set={"status": "new", "lines": [1]})))
    settle(b, hub)
    ok(a.apply(task("T-1", set={"status": "open"}, add={"tags": ["x"]})))
    settle(a, hub)
    ok(b.apply(task("T-2", set={"on_hand": 6})))
    ok(b.apply(task("T-3", set={"lines": [1, 2]})))
    ok(b.apply(task("T-4", set={"status": "new"})))
    settle(b, hub)
    ok(a.apply(task("T-1", set={"status": "picking"}, inc={"picked": 2})))
    ok(a.apply(task("T-2", set={"on_hand": 7})))
    ok(a.apply(task("T-3", set={"lines": [1, 3]})))
    for handle in (a, b, hub):
        handle.close()
    return d


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """hub.db, dev-A.db and dev-B.db such that dev-A's next request carries an
    entry the hub applies and answers as "own" (T-1: a counter and an lww
    write), one it rejects with the record's state (T-2: a stale `server`
    field write) and one that meets a concurrent custom write (T-3, resolver
    "order_lines"), and the answer pulls dev-B's changes to T-2, T-3, T-4."""
    d = tmp_path_factory.mktemp("adversarial-template")
    return build_template(d, Hub.must_open(d / "hub.db", SCHEMA, {"durability": "normal"}))


@pytest.fixture(scope="module")
def pg_template(tmp_path_factory) -> Path:
    """The same with the hub in a PostgreSQL database, named in PG_TEMPLATE."""
    pg.require()
    d = tmp_path_factory.mktemp("adversarial-pg-template")
    with pg.database() as dsn:
        build_template(d, Hub.must_open(None, SCHEMA, {"storage": "postgres", "dsn": dsn}))
        (d / PG_TEMPLATE).write_text(hubs.run("pg_dump", "--no-owner", "--no-privileges", dsn))
    return d


@pytest.fixture(params=hubs.STORAGES)
def hub_template(request) -> Path:
    return request.getfixturevalue("template" if request.param == "sqlite" else "pg_template")

def opened(template: Path, tmp: Path, auth_off: bool = False, **a_options: Any) -> Tuple[Path, Hub, Dev, Dev]:
    """`a_options`: more store options for dev-A (e.g. protocol=1).
    auth_off: the hub and dev-A neither sign nor check signatures, for the
    cases that alter a message member to attack its decoder (a signed
    message altered is refused before it is decoded: test_auth.py)."""
    d = copy_files(template, tmp / "case")
    off = {"auth": "off"} if auth_off else {}
    return d, must_case_hub(d, off or None), \
        Dev.must_open(d / "dev-A.db", SCHEMA, {**A_OPTIONS, **a_options, **off}), \
        Dev.must_open(d / "dev-B.db", SCHEMA, B_OPTIONS)


def run(fn: Callable[..., None], *args: Any) -> None:
    """fn(*args) in a forked child; with a PostgreSQL template (args[0]), on
    an empty database its dump is loaded into for the case. Without its
    identity: the case's hub is the template's, as a copied file is, not a
    restored one (that would start the next generation)."""
    global CASE_DSN
    dump = args[0] / PG_TEMPLATE if args and isinstance(args[0], Path) else None
    if dump is None or not dump.exists():
        in_child(fn, *args)
        return
    CASE_DSN = hubs.take_database()
    try:
        hubs.run("psql", CASE_DSN, "-XAtq", "-v", "ON_ERROR_STOP=1", "-f", str(dump),
                 "-c", "DELETE FROM public.fs_meta WHERE key = 'identity'")  # the dump empties search_path
        in_child(fn, *args)
    finally:
        hubs.give_back(CASE_DSN)
        CASE_DSN = None


# -- what a device does in a day --------------------------------------------------------


def workout(dev: Dev, hub: Hub, prefix: str = "W") -> None:
    """Actions, sync, a request lost on the way, a response lost after the hub
    applied it, hygiene, a fetch and later periodic prepares: each step must
    succeed or be refused cleanly, and the outbox must settle every time."""
    r1, r2 = f"{prefix}-1", f"{prefix}-2"
    # Each action sets the required status: if the hub rejected the record's
    # creation (a clock beyond the skew bound), the next one creates it again.
    ok(dev.apply(task(r1, set={"status": "open", "lines": {"n": 1}}, add={"tags": ["a", 7]})))
    ok(dev.apply(task(r1, set={"status": "open"}, inc={"picked": 3})))
    ok(dev.apply(task(r2, set={"status": "new"}, input={"scan": "4006381333931"})))
    settle(dev, hub)

    # A request lost on the way: the entries go back, the backoff runs.
    ok(dev.apply(task(r1, set={"status": "open"}, inc={"picked": 1})))
    p = ok(dev.prepare())
    if p.text is not None:
        ok(dev.fail("timeout"))
        p = ok(dev.prepare())  # during the backoff
        if p.text is not None:
            ok(dev.fail("timeout"))
    settle(dev, hub)

    # A response lost after the hub applied the request: the resend is a duplicate.
    ok(dev.apply(task(r1, inc={"picked": 1}, set={"status": "picked"})))
    ok(dev.up())
    p = ok(dev.prepare())
    if p.text is not None:
        ok(hub.handle(p.text))
        ok(dev.fail("response lost"))
    settle(dev, hub)

    accepted(dev.hygiene())
    f = dev.fetch_request([{"type": "task", "id": r1}, {"type": "task", "id": "T-4"}])
    if accepted(f):
        h = ok(hub.handle(f.text))
        accepted(dev.receive(h.text))
    accepted(dev.hygiene())
    # Later prepares: the periodic pull and the backoff computed from what
    # the last exchanges stored.
    for _ in range(2):
        p = ok(dev.prepare())
        if p.text is not None:
            ok(dev.receive(ok(hub.handle(p.text)).text))
    settle(dev, hub)
    accepted(dev.stats_call())
    ok(hub.stats_call())


# -- store and hub options ----------------------------------------------------------------

#: Each integer option of fs_store_open with the least value it documents.
STORE_OPTIONS = {
    "busy_timeout_ms": 0, "batch_size": 1, "pull_limit": 1, "backoff_base_ms": 1,
    "backoff_cap_ms": 1, "max_attempts": 1, "pull_interval_ms": 0, "fetch_ttl_ms": 1,
    "audit_keep_days": 1, "hygiene_every": 0, "max_clock_skew_ms": 0, "batch_bytes": 1,
}
#: Values that must be accepted: the new skew option exists and takes its range.
MUST_ACCEPT = {("max_clock_skew_ms", 3_600_000), ("max_clock_skew_ms", MAX_CLOCK_SKEW_LIMIT_MS),
               ("batch_bytes", 1)}
#: Values past a documented upper limit: refused.
MUST_REFUSE = {("max_clock_skew_ms", MAX_CLOCK_SKEW_LIMIT_MS + 1)}

STORE_OPTION_CASES = [(f"{k}={name}", k, v) for k in STORE_OPTIONS for name, v in EXTREMES] + [
    ("max_clock_skew_ms=1h", "max_clock_skew_ms", 3_600_000),
    ("max_clock_skew_ms=limit", "max_clock_skew_ms", MAX_CLOCK_SKEW_LIMIT_MS),
    ("max_clock_skew_ms=limit+1", "max_clock_skew_ms", MAX_CLOCK_SKEW_LIMIT_MS + 1),
    # Requests sized by bytes (issue 12): at the least budget each still carries an entry.
    ("batch_bytes=1", "batch_bytes", 1),
    ("backoff_base_ms+cap=int64_max", None, {"backoff_base_ms": INT64_MAX, "backoff_cap_ms": INT64_MAX}),
    ("batch_size=2^63", "batch_size", 2**63),
]


def case_store_option(template: Path, tmp: Path, key: Optional[str], value: Any) -> None:
    d, hub, a, b = opened(template, tmp)
    before = a.snapshot()
    a.close()
    options = dict(A_OPTIONS, **(value if key is None else {key: value}))
    o, dev = Dev.open(d / "dev-A.db", SCHEMA, options)
    if key is not None and (key, value) in MUST_ACCEPT:
        ok(o, "(a value inside the documented range)")
    if key is not None and ((key, value) in MUST_REFUSE or not STORE_OPTIONS[key] <= value < 2**63):
        refused(o, "(below the documented least value, or past a documented limit)")
    if not accepted(o):
        if key == "busy_timeout_ms" and value > 0:
            assert not re.search(r">= 0\W*$", o.message), f"a positive value refused as if negative: {o!r}"
        again = Dev.must_open(d / "dev-A.db", SCHEMA, A_OPTIONS)
        assert again.snapshot() == before, "a refused open changed the store"
        return
    workout(dev, hub)


@pytest.mark.parametrize("key,value", [c[1:] for c in STORE_OPTION_CASES], ids=[c[0] for c in STORE_OPTION_CASES])
def test_store_option(template, tmp_path, key, value):
    run(case_store_option, template, tmp_path, key, value)


HUB_OPTIONS = {"busy_timeout_ms": 0, "max_clock_skew_ms": 0}
HUB_OPTION_CASES = [(f"{k}={name}", k, v) for k in HUB_OPTIONS for name, v in EXTREMES] + [
    ("max_clock_skew_ms=1h", "max_clock_skew_ms", 3_600_000),
    ("max_clock_skew_ms=limit+1", "max_clock_skew_ms", MAX_CLOCK_SKEW_LIMIT_MS + 1),
]


def case_hub_option(template: Path, tmp: Path, key: str, value: int) -> None:
    d = copy_files(template, tmp / "case")
    o, hub = case_hub(d, {"durability": "normal", key: value})
    if (key, value) in MUST_ACCEPT:
        ok(o, "(a value inside the documented range)")
    if (key, value) in MUST_REFUSE or value < HUB_OPTIONS[key]:
        refused(o, "(below the documented least value, or past a documented limit)")
    if not accepted(o):
        if key == "busy_timeout_ms" and value > 0:
            assert not re.search(r">= 0\W*$", o.message), f"a positive value refused as if negative: {o!r}"
        return
    workout(Dev.must_open(d / "dev-A.db", SCHEMA, A_OPTIONS), hub)


@pytest.mark.parametrize("key,value", [c[1:] for c in HUB_OPTION_CASES], ids=[c[0] for c in HUB_OPTION_CASES])
def test_hub_option(hub_template, tmp_path, key, value):
    run(case_hub_option, hub_template, tmp_path, key, value)


SCOPES = [
    ("unknown-field", {"task": {"sitee": "WH-3"}}),
    ("unknown-type", {"tsak": {"site": "WH-3"}}),
    ("not-an-object", {"task": "WH-3"}),
]


def case_bad_scope(template: Path, tmp: Path, scope: Any) -> None:
    d, hub, a, b = opened(template, tmp)
    before = a.snapshot()
    a.close()
    o, dev = Dev.open(d / "dev-A.db", SCHEMA, dict(A_OPTIONS, scope=scope))
    # Accepted, the hub would refuse every request after (issue 12).
    refused(o, "(the hub refuses this scope in every request)")
    assert Dev.must_open(d / "dev-A.db", SCHEMA, A_OPTIONS).snapshot() == before


@pytest.mark.parametrize("scope", [s for _, s in SCOPES], ids=ids(SCOPES))
def test_a_scope_the_schema_does_not_allow_is_refused_at_open(template, tmp_path, scope):
    run(case_bad_scope, template, tmp_path, scope)


# -- schema integers ---------------------------------------------------------------------

SCHEMA2: Dict[str, Any] = {
    "version": 2,
    "types": {"task": {
        "fields": {
            "status": {"type": "string"},
            "picked": {"type": "int", "merge": "counter"},
            "tags": {"type": "set"},
            "lines": {"type": "json"},
            "note": {"type": "string"},
        },
        "retention": {"keep_days": 60, "archive_when": {"status": ["done"]}},
    }},
    "migrations": [{"from": 1, "to": 2, "add": {"task.note": "none"}}],
    "min_client_version": 1,
}


def schema_with(path: str, value: int) -> Dict[str, Any]:
    s = json.loads(json.dumps(SCHEMA2))
    if path == "version":
        s["version"] = value
    elif path == "min_client_version":
        s["min_client_version"] = value
    elif path == "keep_days":
        s["types"]["task"]["retention"]["keep_days"] = value
    elif path in ("from", "to"):
        s["migrations"][0][path] = value
    return s


#: (member, value) pairs the schema rules of docs/SCHEMA.md refuse.
def schema_must_refuse(path: str, v: int) -> bool:
    if v >= 2**63 or v < -(2**63):
        return True
    return {"version": v < 1, "min_client_version": v < 1 or v > SCHEMA2["version"],
            "keep_days": v <= 0, "to": v > SCHEMA2["version"], "from": False}[path]


SCHEMA_CASES = [(f"{p}={name}", p, v) for p in ("version", "min_client_version", "keep_days", "from", "to")
                for name, v in EXTREMES] + [
    ("version=2^63", "version", 2**63),
    ("min_client_version=version+1", "min_client_version", SCHEMA2["version"] + 1),
    ("keep_days=10^12", "keep_days", 10**12),
    ("keep_days=2^63/86400000", "keep_days", INT64_MAX // 86_400_000 + 1),
    ("to=version+1", "to", SCHEMA2["version"] + 1),
]


def case_schema_integer(tmp: Path, path: str, value: int) -> None:
    schema = schema_with(path, value)
    os_, dev = Dev.open(tmp / "dev.db", schema, device_options("dev-S"))
    oh, hub = Hub.open(tmp / "hub.db", schema, {"durability": "normal"})
    if os_.status == FS_OK and oh.status == FS_OK:
        hub.enroll(dev)
    if schema_must_refuse(path, value):
        refused(os_, f"(schema {path} = {value})")
        refused(oh, f"(schema {path} = {value})")
    store_ok, hub_ok = accepted(os_), accepted(oh)
    assert store_ok == hub_ok, f"store and hub judge the same schema differently: {os_!r} / {oh!r}"
    if store_ok:
        workout(dev, hub)


@pytest.mark.parametrize("path,value", [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_schema_integer(tmp_path, path, value):
    run(case_schema_integer, tmp_path, path, value)


# -- action integers ---------------------------------------------------------------------

ACTION_SHAPES = {
    "inc": lambda v: task("T-9", inc={"picked": v}),
    "set-int": lambda v: task("T-9", set={"status": "n", "on_hand": v}),
    "set-float": lambda v: task("T-9", set={"status": "n", "weight": v}),
    "set-json": lambda v: task("T-9", set={"status": "n", "lines": {"n": v, "a": [v]}}),
    "add-set": lambda v: task("T-9", set={"status": "n"}, add={"tags": [v]}),
    "input": lambda v: task("T-9", set={"status": "n"}, input={"n": v}),
}
ACTION_CASES = [(f"{shape}={name}", shape, v) for shape in ACTION_SHAPES for name, v in EXTREMES + PAST_INT64]


def case_action_integer(template: Path, tmp: Path, shape: str, value: int) -> None:
    d, hub, a, b = opened(template, tmp)
    ok(a.apply(task("T-9", set={"status": "n"})))
    before = a.snapshot()
    o = a.apply(ACTION_SHAPES[shape](value))
    if not -(2**63) <= value < 2**63:
        refused(o, "(an integer outside int64)")
    if not accepted(o):
        assert a.snapshot() == before, "a refused action changed the store"
    elif shape == "inc" and a.record("T-9")["picked"] in (INT64_MAX, INT64_MIN):
        # At the edge: one more step the same way is refused and changes nothing.
        beyond = 1 if a.record("T-9")["picked"] == INT64_MAX else -1
        at_edge = a.snapshot()
        refused(a.apply(task("T-9", inc={"picked": beyond})), "(the counter would leave int64)")
        assert a.snapshot() == at_edge
    settle(a, hub)
    settle(b, hub)
    if shape == "inc":
        # What the device shows is what the hub holds, and another device pulls the same.
        assert a.record("T-9")["picked"] == hub.record("T-9")["picked"] == b.record("T-9")["picked"]


@pytest.mark.parametrize("shape,value", [c[1:] for c in ACTION_CASES], ids=[c[0] for c in ACTION_CASES])
def test_action_integer(template, tmp_path, shape, value):
    run(case_action_integer, template, tmp_path, shape, value)


def case_counter_overflow_is_refused(template: Path, tmp: Path) -> None:
    d, hub, a, b = opened(template, tmp)
    ok(a.apply(task("T-9", set={"status": "n"}, inc={"picked": INT64_MAX})))
    before = a.snapshot()
    refused(a.apply(task("T-9", inc={"picked": 1})), "(the counter would pass INT64_MAX)")
    assert a.snapshot() == before
    ok(a.apply(task("T-9", inc={"picked": INT64_MIN})))
    settle(a, hub)
    assert a.record("T-9")["picked"] == hub.record("T-9")["picked"] == -1


def test_counter_past_int64_is_refused_and_changes_nothing(hub_template, tmp_path):
    run(case_counter_overflow_is_refused, hub_template, tmp_path)


def case_counter_pushed_near_the_edge(template: Path, tmp: Path, step: int) -> None:
    """Issue 12: another device pushes a counter near 2^62.6 while this one
    holds more than a batch of increments of it: receive must go on (one
    record's overflow never blocks anything else) and the outbox settle."""
    d = copy_files(template, tmp / "case")
    hub = must_case_hub(d)
    a = Dev.must_open(d / "dev-A.db", SCHEMA, dict(A_OPTIONS, batch_size=2))
    b = Dev.must_open(d / "dev-B.db", SCHEMA, B_OPTIONS)
    settle(a, hub)
    settle(b, hub)
    ok(b.apply(task("T-1", inc={"picked": int(2**62.6)})))
    settle(b, hub)
    for i in range(5):
        ok(a.apply(task("T-1", inc={"picked": step})))
        ok(a.apply(task("T-4", set={"status": f"s{i}"})))
    settle(a, hub)
    settle(b, hub)
    assert hub.record("T-4")["status"] == "s4", "an unrelated record's writes were held up"
    for e in a.outbox():
        ok(a.discard(e["key"]))
    assert a.count() == 0
    assert a.record("T-1")["picked"] == hub.record("T-1")["picked"] == b.record("T-1")["picked"]


@pytest.mark.parametrize("step", [4 * 10**17, 2**60], ids=["sum-fits", "sum-overflows"])
def test_a_counter_pushed_near_the_edge_by_another_device_does_not_block_receive(hub_template, tmp_path, step):
    run(case_counter_pushed_near_the_edge, hub_template, tmp_path, step)


# -- query and filter integers --------------------------------------------------------------

READS = {
    "store-query-limit": lambda a, h, v: a.query({"type": "task", "limit": v}),
    "hub-query-limit": lambda a, h, v: h.query({"type": "task", "limit": v}),
    "outbox-limit": lambda a, h, v: a.outbox_list({"limit": v}),
    "audit-limit": lambda a, h, v: a.audit_query({"limit": v}),
    "audit-since": lambda a, h, v: a.audit_query({"since": v}),
    "audit-until": lambda a, h, v: a.audit_query({"until": v}),
    "hub-audit-limit": lambda a, h, v: h.audit_query({"limit": v}),
    "hub-audit-since": lambda a, h, v: h.audit_query({"since": v}),
    "hub-audit-until": lambda a, h, v: h.audit_query({"until": v}),
    "store-query-where": lambda a, h, v: a.query({"type": "task", "where": {"picked": {">=": v}}}),
}
READ_CASES = [(f"{r}={name}", r, v) for r in READS for name, v in EXTREMES] + [
    (f"{r}=2^63", r, 2**63) for r in ("store-query-limit", "hub-audit-since")]


def case_read_integer(template: Path, tmp: Path, read: str, value: int) -> None:
    d, hub, a, b = opened(template, tmp)
    before, hub_before = a.snapshot(), hub.snapshot()
    o = READS[read](a, hub, value)
    if value >= 2**63:
        refused(o, "(an integer outside int64)")
    if accepted(o):
        assert isinstance(o.value, list)
    assert a.snapshot() == before and hub.snapshot() == hub_before, "a read changed something"


@pytest.mark.parametrize("read,value", [c[1:] for c in READ_CASES], ids=[c[0] for c in READ_CASES])
def test_read_integer(template, tmp_path, read, value):
    run(case_read_integer, template, tmp_path, read, value)


# -- the wire: a request at the hub, a response at the device -----------------------------------


def set_members(message: Dict[str, Any], path: Tuple[Any, ...], value: Any) -> int:
    """Sets every member at `path` ("*" walks every element of a list or every
    value of an object) that is present; returns how many were set."""
    *walk, last = path
    nodes = [message]
    for step in walk:
        nxt = []
        for node in nodes:
            if step == "*":
                nxt.extend(node.values() if isinstance(node, dict) else node)
            elif isinstance(node, dict) and step in node:
                nxt.append(node[step])
            elif isinstance(node, list) and isinstance(step, int) and step < len(node):
                nxt.append(node[step])
        nodes = nxt
    n = 0
    if last == "*":
        for node in nodes:
            for k in (list(node) if isinstance(node, dict) else range(len(node))):
                node[k] = value
                n += 1
        return n
    for node in nodes:
        if (isinstance(node, dict) and last in node) or (isinstance(node, list) and isinstance(last, int) and last < len(node)):
            node[last] = value
            n += 1
    return n


REQUEST_MEMBERS = {
    "protocol": ("protocol",), "cursor": ("cursor",), "limit": ("limit",),
    "schema_version": ("schema_version",),
    "entry.seq": ("entries", "*", "seq"), "entry.hlc": ("entries", "*", "hlc"),
    "entry.schema_version": ("entries", "*", "schema_version"),
    "entry.shadow_seq": ("entries", "*", "shadow_seq"), "entry.cursor": ("entries", "*", "cursor"),
    "entry.base": ("entries", "*", "base", "on_hand"),
    "audit.audit_id": ("audit", "*", "audit_id"), "audit.device_time": ("audit", "*", "device_time"),
    "audit.hlc": ("audit", "*", "hlc"),
}
#: An entry stamped just past the default skew bound ahead of the hub's clock.
PAST_SKEW = "now+skew+1min"
REQUEST_CASES = [(f"{m}={name}", m, name, v) for m in REQUEST_MEMBERS for name, v in EXTREMES] + [
    (f"{m}=2^63", m, "2^63", 2**63) for m in ("protocol", "entry.seq", "audit.audit_id")] + [
    (f"entry.hlc={PAST_SKEW}", "entry.hlc", PAST_SKEW, None),
    (f"audit.hlc={PAST_SKEW}", "audit.hlc", PAST_SKEW, None),
]


def later_writes_win(a: Dev, b: Dev, hub: Hub, ids_: List[str]) -> None:
    """No clock is poisoned: each device's next lww write is what the hub
    holds. (What a device pulls after it accepted an absurd sequence number
    from its own hub is not checked: it cannot tell.)"""
    for who, dev in (("A", a), ("B", b)):
        for i in ids_:
            ok(dev.apply(task(i, set={"status": f"later-{who}"})))
        settle(dev, hub)
        for i in ids_:
            assert hub.record(i)["status"] == f"later-{who}", (
                f"{i}: dev-{who}'s later write lost at the hub: {hub.record(i)}")


def case_request_member(template: Path, tmp: Path, member: str, name: str, value: Any) -> None:
    # Protocol 2 sends an audit row's hlc only in its entry ("entry.hlc");
    # protocol 1, which the hub still serves, sends it in the row.
    d, hub, a, b = opened(template, tmp, auth_off=True, **({"protocol": 1} if member == "audit.hlc" else {}))
    ok(a.up())
    p = ok(a.prepare())
    request = p.value
    if name == PAST_SKEW:
        value = (now_ms() + DEFAULT_MAX_SKEW_MS + 60_000) << 16
    assert set_members(request, REQUEST_MEMBERS[member], value) > 0, f"the request has no {member}"
    hub_before = hub.snapshot()
    h = hub.handle(request)
    stamp_refused = member == "entry.hlc" and (value < 0 or name in ("int64_max", PAST_SKEW))
    if accepted(h):
        ok(hub.stats_call())
        ok(hub.audit_query())
        response = h.value
        if stamp_refused and "error" not in response:
            # Issue 12: a stamp beyond the skew is refused visibly, per entry.
            for r in response["results"]:
                assert r["status"] == "rejected" and r.get("reason"), (
                    f"an entry stamped {value} was not refused: {r}")
    else:
        assert hub.snapshot() == hub_before, "a refused request changed the hub"
    # The answer to the altered request never reaches dev-A: it resends its own.
    ok(a.fail("lost"))
    settle(a, hub)
    settle(b, hub)
    later_writes_win(a, b, hub, ["T-1", "T-2", "T-3"])


@pytest.mark.parametrize("member,name,value", [c[1:] for c in REQUEST_CASES], ids=[c[0] for c in REQUEST_CASES])
def test_hub_request_member(hub_template, tmp_path, member, name, value):
    run(case_request_member, hub_template, tmp_path, member, name, value)


RESPONSE_MEMBERS = {
    "protocol": ("protocol",), "cursor": ("cursor",), "server_time": ("server_time",),
    "result.server_seq": ("results", "*", "server_seq"),
    "result.record_seq": ("results", "*", "record_seq"),
    "own.seq": ("own", "*", "seq"), "own.prior": ("own", "*", "prior"),
    "changes.seq": ("changes", "*", "seq"),
    "changes.stamp": ("changes", "*", "state", "stamps", "*", 0),
    "changes.version": ("changes", "*", "state", "versions", "*"),
    "fetched.seq": ("fetched", "*", "seq"),
    "audit_ack.audit_id": ("audit_acks", "*", "audit_id"),
    "audit_ack.server_received_at": ("audit_acks", "*", "server_received_at"),
}
RESPONSE_CASES = [(f"{m}={name}", m, v) for m in RESPONSE_MEMBERS for name, v in EXTREMES] + [
    (f"{m}=2^63", m, 2**63) for m in ("cursor", "result.server_seq")]


def case_response_member(template: Path, tmp: Path, member: str, value: int) -> None:
    d, hub, a, b = opened(template, tmp, auth_off=True)
    ok(a.up())
    if member.startswith("fetched"):
        p = ok(a.fetch_request([{"type": "task", "id": "T-4"}, {"type": "task", "id": "T-2"}]))
    else:
        p = ok(a.prepare())
    response = ok(hub.handle(p.text)).value
    assert set_members(response, RESPONSE_MEMBERS[member], value) > 0, f"the response has no {member}"
    before = a.snapshot()
    r = a.receive(response)
    if value >= 2**63:
        refused(r, "(an integer outside int64)")
    if not accepted(r):
        assert a.snapshot() == before, "a refused response changed the store"
        ok(a.fail("refused"))
    settle(a, hub)
    settle(b, hub)
    # The device's clock adopted no stamp beyond the skew bound.
    hlc = a.stats()["hlc"]
    assert 0 <= hlc and (hlc >> 16) <= now_ms() + DEFAULT_MAX_SKEW_MS, f"dev-A's clock is at {hlc}"
    later_writes_win(a, b, hub, ["T-1", "T-2", "T-3", "T-4"])


@pytest.mark.parametrize("member,value", [c[1:] for c in RESPONSE_CASES], ids=[c[0] for c in RESPONSE_CASES])
def test_sync_response_member(template, tmp_path, member, value):
    run(case_response_member, template, tmp_path, member, value)


def case_hub_audit_id_reuse(template: Path, tmp: Path, what: str) -> None:
    """A reused key or audit id with different content is never acknowledged
    as if it were the first (issue 12). "audit" forges a protocol-1 row sent
    alone; "audit-compact" a protocol-2 row, which travels with its entry."""
    d, hub, a, b = opened(template, tmp, auth_off=True, **({"protocol": 1} if what == "audit" else {}))
    ok(a.up())
    request = ok(a.prepare()).value
    response = ok(hub.handle(request)).value
    ok(a.receive(response))
    forged = json.loads(json.dumps(request))
    forged["batch"] = request["batch"] + "0"
    if what == "entry":
        forged["entries"][0]["ops"] = {"set": {"status": "forged"}}
        forged["audit"] = []
        answer = ok(hub.handle(forged)).value
        result = answer["results"][0]
        assert result["status"] == "rejected" and result.get("reason"), (
            f"a reused key with different content was answered {result}")
    else:
        if what == "audit":
            forged["entries"] = []
        forged["audit"][0]["actor"] = "someone-else"
        answer = ok(hub.handle(forged)).value
        # Not acknowledged, or acknowledged with a mark that it was refused
        # (protocol 2 acknowledges a run of rows in one object, "through").
        plain = [ack for ack in answer.get("audit_acks", [])
                 if set(ack) in ({"audit_id", "server_received_at"}, {"audit_id", "through", "server_received_at"})]
        acked = [i for ack in plain for i in range(ack["audit_id"], ack.get("through", ack["audit_id"]) + 1)]
        assert forged["audit"][0]["audit_id"] not in acked, (
            "an audit row conflicting with the stored one was acknowledged")
    assert hub.record("T-1")["status"] != "forged"


@pytest.mark.parametrize("what", ["entry", "audit", "audit-compact"])
def test_hub_refuses_a_reused_key_with_different_content(hub_template, tmp_path, what):
    run(case_hub_audit_id_reuse, hub_template, tmp_path, what)


# -- clocks at the extremes --------------------------------------------------------------------

CLOCK_VALUES = EXTREMES


def case_store_clock_always(template: Path, tmp: Path, value: int) -> None:
    d, hub, a, b = opened(template, tmp)
    ok(a.set_clock(lambda: value))
    workout(a, hub)


@pytest.mark.parametrize("value", [v for _, v in CLOCK_VALUES], ids=ids(CLOCK_VALUES))
def test_store_clock_always_at(template, tmp_path, value):
    run(case_store_clock_always, template, tmp_path, value)


def _door_apply(a: Dev, hub: Hub, clock: List[Optional[int]]) -> Outcome:
    return a.apply(task("T-1", inc={"picked": 1}))


def _door_prepare(a: Dev, hub: Hub, clock: List[Optional[int]]) -> Outcome:
    ok(a.up())
    return a.prepare()


def _door_receive(a: Dev, hub: Hub, clock: List[Optional[int]]) -> Outcome:
    saved, clock[0] = clock[0], None
    ok(a.up())
    p = ok(a.prepare())
    h = ok(hub.handle(p.text))
    clock[0] = saved
    return a.receive(h.text)


def _door_fail(a: Dev, hub: Hub, clock: List[Optional[int]]) -> Outcome:
    saved, clock[0] = clock[0], None
    ok(a.up())
    ok(a.prepare())
    clock[0] = saved
    o = a.fail("timeout")
    if accepted(o):
        accepted(a.prepare())  # the backoff computed from the extreme time
    return o


def _door_hygiene(a: Dev, hub: Hub, clock: List[Optional[int]]) -> Outcome:
    return a.hygiene()


def _door_fetch(a: Dev, hub: Hub, clock: List[Optional[int]]) -> Outcome:
    saved, clock[0] = clock[0], None
    f = ok(a.fetch_request([{"type": "task", "id": "T-4"}]))
    h = ok(hub.handle(f.text))
    clock[0] = saved
    o = a.receive(h.text)
    accepted(a.hygiene())
    return o


def _door_stats(a: Dev, hub: Hub, clock: List[Optional[int]]) -> Outcome:
    return a.stats_call()


STORE_DOORS = {"apply": _door_apply, "prepare": _door_prepare, "receive": _door_receive,
               "fail": _door_fail, "hygiene": _door_hygiene, "fetch": _door_fetch,
               "stats": _door_stats}
STORE_CLOCK_CASES = [(f"{door}@{name}", door, v) for door in STORE_DOORS for name, v in CLOCK_VALUES]


def case_store_clock_at_door(template: Path, tmp: Path, door: str, value: int) -> None:
    d, hub, a, b = opened(template, tmp)
    settle(a, hub)  # something acknowledged for hygiene and receive to work on
    ok(a.apply(task("T-1", set={"status": "at-door"})))
    ok(a.apply(task("T-5", set={"status": "new"})))
    clock: List[Optional[int]] = [value]
    ok(a.set_clock(lambda: now_ms() if clock[0] is None else clock[0]))
    o = STORE_DOORS[door](a, hub, clock)
    accepted(o)
    clock[0] = None
    settle(a, hub)
    workout(a, hub)


@pytest.mark.parametrize("door,value", [c[1:] for c in STORE_CLOCK_CASES], ids=[c[0] for c in STORE_CLOCK_CASES])
def test_store_clock_at_door(template, tmp_path, door, value):
    run(case_store_clock_at_door, template, tmp_path, door, value)


def case_hub_clock(template: Path, tmp: Path, value: int, always: bool) -> None:
    d, hub, a, b = opened(template, tmp)
    clock: List[Optional[int]] = [value]
    ok(hub.set_clock(lambda: now_ms() if clock[0] is None else clock[0]))
    ok(a.up())
    accepted(a.receive(ok(hub.handle(ok(a.prepare()).text)).text))
    if not always:
        clock[0] = None
    settle(a, hub)
    settle(b, hub)
    workout(a, hub)
    workout(b, hub, prefix="B")
    if not always:
        later_writes_win(a, b, hub, ["T-1", "T-2"])


HUB_CLOCK_CASES = [(f"{'always' if always else 'once'}@{name}", v, always)
                   for always in (True, False) for name, v in CLOCK_VALUES]


@pytest.mark.parametrize("value,always", [c[1:] for c in HUB_CLOCK_CASES], ids=[c[0] for c in HUB_CLOCK_CASES])
def test_hub_clock(hub_template, tmp_path, value, always):
    run(case_hub_clock, hub_template, tmp_path, value, always)


# -- callbacks that call back into their own handle ----------------------------------------------


def case_store_clock_reenters(template: Path, tmp: Path, door: str, inner: str) -> None:
    d, hub, a, b = opened(template, tmp)
    settle(a, hub)
    ok(a.apply(task("T-1", set={"status": "reenter"})))
    inner_calls: List[Outcome] = []
    target = {"same": a, "other": b}["other" if inner == "other-stats" else "same"]

    def clock() -> int:
        if not inner_calls:  # once is enough; the library may read the clock often
            if inner == "apply":
                inner_calls.append(target.apply(task("T-8", set={"status": "inner"})))
            else:
                inner_calls.append(target.stats_call())
        return now_ms()

    ok(a.set_clock(clock))
    count = a.count()
    o = STORE_DOORS[door](a, hub, [None])
    ok(a.set_clock(None))
    accepted(o)
    assert inner_calls, f"the clock was not read during {door}"
    if inner == "other-stats":
        ok(inner_calls[0], "(a callback may use another handle)")
    else:
        assert inner_calls[0].status == FS_ERR_MISUSE, f"the inner call: {inner_calls[0]!r}"
        assert inner_calls[0].message
    if inner == "apply":
        assert a.record("T-8") is None, "the refused inner apply wrote a record"
        assert a.count() == count + (1 if door == "apply" and o.status == FS_OK else 0)
    settle(a, hub)


REENTER_CASES = [(f"{door}/{inner}", door, inner) for door in ("apply", "prepare", "receive", "fail", "hygiene")
                 for inner in ("stats",)] + [("apply/apply", "apply", "apply"), ("prepare/apply", "prepare", "apply"),
                                             ("apply/other-stats", "apply", "other-stats")]


@pytest.mark.parametrize("door,inner", [c[1:] for c in REENTER_CASES], ids=[c[0] for c in REENTER_CASES])
def test_store_clock_reenters(template, tmp_path, door, inner):
    run(case_store_clock_reenters, template, tmp_path, door, inner)


def case_hub_callback_reenters(template: Path, tmp: Path, callback: str, inner: str) -> None:
    d, hub, a, b = opened(template, tmp)
    other = Hub.must_open(d / "other-hub.db")
    inner_calls: List[Outcome] = []
    target = other if inner == "other-query" else hub

    def reenter() -> None:
        if inner_calls:
            return
        if inner == "handle":
            inner_calls.append(target.handle({"protocol": 1, "device_id": "dev-Z", "batch": "dev-Z-b1",
                                              "schema_version": 1, "cursor": 0}))
        else:
            inner_calls.append(target.query({"type": "task"}))

    if callback == "clock":
        ok(hub.set_clock(lambda: (reenter(), now_ms())[1]))
    else:
        ok(hub.set_resolver("order_lines", lambda c: (reenter(), sorted(set(c["server"] or []) | set(c["incoming"] or [])))[1]))
    ok(a.up())
    h = hub.handle(ok(a.prepare()).text)
    accepted(h)
    assert inner_calls, f"the {callback} callback was not called"
    if inner == "other-query":
        ok(inner_calls[0], "(a callback may use another handle)")
    else:
        assert inner_calls[0].status == FS_ERR_MISUSE, f"the inner call: {inner_calls[0]!r}"
        assert inner_calls[0].message
    if h.status == FS_OK:
        accepted(a.receive(h.text))
    settle(a, hub)
    if callback == "resolver":
        assert hub.record("T-3")["lines"] == [1, 2, 3]


HUB_REENTER_CASES = [(f"{cb}/{inner}", cb, inner) for cb in ("clock", "resolver") for inner in ("query", "handle", "other-query")]


@pytest.mark.parametrize("callback,inner", [c[1:] for c in HUB_REENTER_CASES], ids=[c[0] for c in HUB_REENTER_CASES])
def test_hub_callback_reenters(hub_template, tmp_path, callback, inner):
    run(case_hub_callback_reenters, hub_template, tmp_path, callback, inner)


# -- nesting and size at the action limits: whatever apply accepts, sync carries ------------------


def deepest_accepted(dev: Dev, make: Callable[[int], Dict[str, Any]]) -> int:
    """The deepest nesting `make(depth)` that apply accepts, probing down from
    past the limit (refused probes write nothing). Applies it; returns the depth."""
    for depth in range(DEPTH_LIMIT + 2, DEPTH_LIMIT - 40, -1):
        o = dev.apply(make(depth))
        if accepted(o):
            return depth
    raise AssertionError(f"nothing nested {DEPTH_LIMIT - 40}..{DEPTH_LIMIT + 2} deep was accepted")


def case_deep(template: Path, tmp: Path, where: str) -> None:
    d, hub, a, b = opened(template, tmp)
    make = {
        "input": lambda n: task("T-9", set={"status": "deep"}, input=nest(n)),
        "json-field": lambda n: task("T-9", set={"status": "deep", "lines": nest(n)}),
    }[where]
    # The action document itself past the limit is refused.
    before = a.snapshot()
    refused(a.apply(task("T-9", set={"status": "x"}, input=nest(DEPTH_LIMIT))), "(nested past the limit)")
    assert a.snapshot() == before
    depth = deepest_accepted(a, make)
    key = a.outbox()[-1]["key"]
    ok(a.apply(task("T-1", set={"status": "unrelated"})))
    settle(a, hub)
    entry = next((e for e in a.outbox() if e["key"] == key), None)
    assert entry is None, f"the action nested {depth} deep was not applied at the hub: {entry}"
    assert hub.record("T-1")["status"] == "unrelated"
    if where == "json-field":
        assert hub.record("T-9")["lines"] == nest(depth)
    else:
        rows = [r for r in hub.audit(device_id="dev-A") if r["id"] == "T-9"]
        assert rows and rows[-1]["input"] == nest(depth)
    settle(b, hub)  # another device pulls it
    assert b.record("T-9")["status"] == "deep"


@pytest.mark.parametrize("where", ["input", "json-field"])
def test_the_deepest_action_apply_accepts_is_carried_to_the_hub(hub_template, tmp_path, where):
    run(case_deep, hub_template, tmp_path, where)


def case_many_large_actions(tmp: Path) -> None:
    """Issue 12: 70 actions of about 1 MiB made a request over the 64 MiB
    message limit, forever. Requests are built by bytes as well as count."""
    hub = Hub.must_open(tmp / "hub.db", SCHEMA, {"durability": "normal"})
    a = Dev.must_open(tmp / "dev-A.db", SCHEMA, A_OPTIONS)
    hub.enroll(a)
    filler = "x" * (MAX_JSON_BYTES - 400)
    count = MAX_MESSAGE_BYTES // MAX_JSON_BYTES + 3
    for i in range(count):
        ok(a.apply(task(f"L-{i % 3}", set={"status": "big"}, input={"scan": filler})))
    settle(a, hub, rounds=2 * count)
    assert a.count() == 0
    assert hub.stats()["audit_rows"] == count


def test_actions_at_the_size_limit_never_make_a_request_too_big(tmp_path):
    run(case_many_large_actions, tmp_path)

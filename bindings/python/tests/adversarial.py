"""Shared by the adversarial suite and the drain property: the C functions
driven directly through ctypes (no binding-side checks or clamping in the way),
the outcome contract every hostile call must meet, a forked child per case,
and the sync loop that proves an outbox still drains.

The contract (include/fieldsync.h, docs/ABI.md, issue 12):
- the process survives the call;
- it returns FS_OK, or an FS_ERR_* code other than FS_ERR_INTERNAL with a
  non-empty fs_last_error();
- a refused call changed nothing;
- after anything accepted, sync rounds with an in-process hub still make
  progress: every outbox entry settles (applied, or rejected with a reason).
"""

from __future__ import annotations

import faulthandler
import json
import os
import re
import shutil
import signal
import time
import traceback
from ctypes import byref, c_int64, c_void_p, memmove, string_at
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

import support  # puts the checkout's package on sys.path; the header's path
from fieldsync._lib import CLOCK_FN, RESOLVER_FN, lib, libc
from support import SCHEMA

FS_OK = 0
FS_ERR_INTERNAL = 12
FS_ERR_MISUSE = 14

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The four values every integer is tried at.
EXTREMES = [("zero", 0), ("minus1", -1), ("int64_min", INT64_MIN), ("int64_max", INT64_MAX)]
#: Integers JSON allows and no field can hold: refused (docs/ABI.md "Limits").
PAST_INT64 = [("2^63", 2**63), ("-2^63-1", -(2**63) - 1)]

#: The default bound on how far ahead of the local clock a stamp from
#: elsewhere may be (HybridClock.defaultMaxSkewMs: 24 h) and the largest
#: `max_clock_skew_ms` option (HybridClock.maxSkewLimitMs: 10 years).
DEFAULT_MAX_SKEW_MS = 24 * 3_600_000
MAX_CLOCK_SKEW_LIMIT_MS = 10 * 366 * 24 * 3_600_000

def documented_depth_limit() -> int:
    """FS_MAX_DEPTH of include/fieldsync.h: how deep JSON arguments may nest
    (arrays and objects, the outermost included); 512 before the header
    named it (docs/ABI.md "JSON nesting depth")."""
    match = re.search(r"#define\s+FS_MAX_DEPTH\s+\(?(\d+)", support.HEADER.read_text(encoding="utf-8"))
    return int(match.group(1)) if match else 512


#: Seconds one forked case may run before it counts as hung.
CASE_TIMEOUT = 60


# -- the C functions, raw ------------------------------------------------------------


def encode(value: Any) -> Optional[bytes]:
    """A JSON argument as the C side gets it: bytes and str as they are,
    anything else serialised (Python ints of any size stay exact)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Outcome:
    """What one C call gave: its status, fs_last_error() read at once, the
    text it returned (if any) and, for prepare, the wait."""

    def __init__(self, where: str, status: int, message: str, text: Optional[bytes] = None,
                 wait: Optional[int] = None) -> None:
        self.where, self.status, self.message, self.text, self.wait = where, status, message, text, wait

    @property
    def value(self) -> Any:
        return None if self.text is None else json.loads(self.text.decode("utf-8"))

    def __repr__(self) -> str:
        name = lib.fs_status_name(self.status).decode()
        return f"{self.where} -> {name} {self.message!r}"


def _last_error() -> str:
    return lib.fs_last_error().decode("utf-8", "replace")


def _take(ptr: c_void_p) -> Optional[bytes]:
    if not ptr.value:
        return None
    try:
        return string_at(ptr.value)
    finally:
        lib.fs_free(ptr)


def call_out(where: str, fn: Any, *args: Any) -> Outcome:
    """A call whose last parameter is a `char **` output."""
    out = c_void_p()
    status = fn(*args, byref(out))
    message = _last_error()
    return Outcome(where, status, message, _take(out))


def call(where: str, fn: Any, *args: Any) -> Outcome:
    status = fn(*args)
    return Outcome(where, status, _last_error())


# -- the contract -------------------------------------------------------------------


def accepted(o: Outcome) -> bool:
    """FS_OK, or a clean refusal: a known FS_ERR_* code that is not
    FS_ERR_INTERNAL, with a message. Returns whether it was accepted."""
    if o.status == FS_OK:
        return True
    assert o.status != FS_ERR_INTERNAL, f"FS_ERR_INTERNAL: {o!r}"
    assert lib.fs_status_name(o.status) != b"FS_ERR_UNKNOWN", f"an unknown status code {o.status}: {o!r}"
    assert o.message, f"a failure without a message: {o!r}"
    return False


def ok(o: Outcome, why: str = "") -> Outcome:
    assert o.status == FS_OK, f"{o!r} {why}".rstrip()
    return o


def refused(o: Outcome, why: str = "") -> Outcome:
    assert o.status != FS_OK, f"{o.where} was accepted; it must be refused {why}".rstrip()
    accepted(o)
    return o


# -- handles ------------------------------------------------------------------------


class Dev:
    """A device store driven through the C functions."""

    def __init__(self, handle: int, path: str) -> None:
        self.h, self.path = handle, path
        self._callbacks: List[Any] = []  # CFUNCTYPEs the library may still call

    @staticmethod
    def open(path: Any, schema: Any = SCHEMA, options: Any = None) -> "tuple[Outcome, Optional[Dev]]":
        handle = c_void_p()
        status = lib.fs_store_open(str(path).encode(), encode(schema), encode(options), byref(handle))
        o = Outcome(f"fs_store_open(options={options!r:.200})", status, _last_error())
        return o, (Dev(handle.value, str(path)) if status == FS_OK else None)

    @staticmethod
    def must_open(path: Any, schema: Any = SCHEMA, options: Any = None) -> "Dev":
        o, dev = Dev.open(path, schema, options)
        ok(o)
        assert dev is not None
        return dev

    def close(self) -> None:
        if self.h is not None:
            ok(call("fs_store_close", lib.fs_store_close, self.h))
            self.h = None

    def apply(self, action: Any) -> Outcome:
        return call_out(f"fs_store_apply({encode(action)[:160]!r})", lib.fs_store_apply, self.h, encode(action))

    def prepare(self) -> Outcome:
        out, wait = c_void_p(), c_int64(-2)
        status = lib.fs_sync_prepare(self.h, byref(out), byref(wait))
        message = _last_error()
        return Outcome("fs_sync_prepare", status, message, _take(out), wait.value)

    def receive(self, response: Any) -> Outcome:
        return call_out("fs_sync_receive", lib.fs_sync_receive, self.h, encode(response))

    def fail(self, reason: str = "lost") -> Outcome:
        return call("fs_sync_fail", lib.fs_sync_fail, self.h, reason.encode())

    def up(self) -> Outcome:
        return call("fs_sync_connectivity(1)", lib.fs_sync_connectivity, self.h, 1)

    def hygiene(self) -> Outcome:
        return call_out("fs_store_hygiene", lib.fs_store_hygiene, self.h)

    def fetch_request(self, refs: Any) -> Outcome:
        return call_out("fs_fetch_request", lib.fs_fetch_request, self.h, encode(refs))

    def query(self, q: Any) -> Outcome:
        return call_out(f"fs_store_query({q!r})", lib.fs_store_query, self.h, encode(q))

    def outbox_list(self, f: Any = None) -> Outcome:
        return call_out(f"fs_outbox_list({f!r})", lib.fs_outbox_list, self.h, encode(f))

    def audit_query(self, f: Any = None) -> Outcome:
        return call_out(f"fs_audit_query({f!r})", lib.fs_audit_query, self.h, encode(f))

    def stats_call(self) -> Outcome:
        return call_out("fs_store_stats", lib.fs_store_stats, self.h)

    def discard(self, key: str) -> Outcome:
        return call(f"fs_outbox_discard({key!r})", lib.fs_outbox_discard, self.h, key.encode())

    def outbox(self) -> List[Dict[str, Any]]:
        return ok(self.outbox_list()).value

    def audit(self) -> List[Dict[str, Any]]:
        return ok(self.audit_query()).value

    def records(self) -> List[Dict[str, Any]]:
        return ok(self.query({"type": "task"})).value

    def record(self, id: str) -> Optional[Dict[str, Any]]:
        return next((r for r in self.records() if r["id"] == id), None)

    def stats(self) -> Dict[str, Any]:
        return ok(self.stats_call()).value

    def count(self) -> int:
        n = c_int64(-1)
        ok(call("fs_outbox_count", lib.fs_outbox_count, self.h, byref(n)))
        return n.value

    def set_clock(self, fn: Optional[Callable[[], int]]) -> Outcome:
        c_fn = CLOCK_FN() if fn is None else CLOCK_FN(lambda _ctx: fn())
        self._callbacks.append(c_fn)
        return call("fs_store_set_clock", lib.fs_store_set_clock, self.h, c_fn, None)

    def snapshot(self) -> Dict[str, Any]:
        """Everything a refused call must leave as it was."""
        return {"records": self.records(), "outbox": self.outbox(), "audit": self.audit(),
                "count": self.count()}


class Hub:
    """A hub driven through the C functions."""

    def __init__(self, handle: int) -> None:
        self.h = handle
        self._callbacks: List[Any] = []

    @staticmethod
    def open(path: Any, schema: Any = SCHEMA, options: Any = None) -> "tuple[Outcome, Optional[Hub]]":
        handle = c_void_p()
        status = lib.fs_hub_open(None if path is None else str(path).encode(), encode(schema), encode(options),
                                 byref(handle))
        o = Outcome(f"fs_hub_open(options={options!r:.200})", status, _last_error())
        return o, (Hub(handle.value) if status == FS_OK else None)

    @staticmethod
    def must_open(path: Any, schema: Any = SCHEMA, options: Any = None) -> "Hub":
        o, hub = Hub.open(path, schema, options)
        ok(o)
        assert hub is not None
        return hub

    def close(self) -> None:
        if self.h is not None:
            ok(call("fs_hub_close", lib.fs_hub_close, self.h))
            self.h = None

    def handle(self, request: Any) -> Outcome:
        return call_out("fs_hub_handle", lib.fs_hub_handle, self.h, encode(request))

    def query(self, q: Any) -> Outcome:
        return call_out(f"fs_hub_query({q!r})", lib.fs_hub_query, self.h, encode(q))

    def enroll(self, *devs: "Dev", **more: Any) -> None:
        """Enroll each device (its key and store instance) and pin this hub's
        key into it, as provisioning does: with authentication on, a hub
        serves only enrolled devices (issue 14)."""
        for dev in devs:
            stats = dev.stats()
            enrollment = {"device_id": stats["device_id"], "public_key": stats["public_key"],
                          "instance": stats["instance_id"], **more}
            result = ok(call_out("fs_hub_enroll", lib.fs_hub_enroll, self.h, encode(enrollment))).value
            ok(call("fs_store_pin_hub", lib.fs_store_pin_hub, dev.h, result["hub_key"].encode()))

    def audit_query(self, f: Any = None) -> Outcome:
        return call_out(f"fs_hub_audit_query({f!r})", lib.fs_hub_audit_query, self.h, encode(f))

    def stats_call(self) -> Outcome:
        return call_out("fs_hub_stats", lib.fs_hub_stats, self.h)

    def records(self) -> List[Dict[str, Any]]:
        return ok(self.query({"type": "task"})).value

    def record(self, id: str) -> Optional[Dict[str, Any]]:
        return next((r for r in self.records() if r["id"] == id), None)

    def audit(self, **f: Any) -> List[Dict[str, Any]]:
        return ok(self.audit_query(f or None)).value

    def stats(self) -> Dict[str, Any]:
        return ok(self.stats_call()).value

    def set_clock(self, fn: Optional[Callable[[], int]]) -> Outcome:
        c_fn = CLOCK_FN() if fn is None else CLOCK_FN(lambda _ctx: fn())
        self._callbacks.append(c_fn)
        return call("fs_hub_set_clock", lib.fs_hub_set_clock, self.h, c_fn, None)

    def set_resolver(self, name: str, fn: Callable[[Dict[str, Any]], Any]) -> Outcome:
        def resolve(_ctx: Any, conflict: bytes, out: Any) -> int:
            data = encode(fn(json.loads(conflict.decode("utf-8"))))
            p = libc.malloc(len(data) + 1)
            memmove(p, data + b"\x00", len(data) + 1)
            out[0] = p
            return FS_OK

        c_fn = RESOLVER_FN(resolve)
        self._callbacks.append(c_fn)
        return call("fs_hub_set_resolver", lib.fs_hub_set_resolver, self.h, name.encode(), c_fn, None)

    def snapshot(self) -> Dict[str, Any]:
        return {"stats": self.stats(), "records": self.records(), "audit": self.audit()}


# -- sync ---------------------------------------------------------------------------


def unsettled(dev: Dev, stuck_ok: bool = False) -> List[Dict[str, Any]]:
    """Outbox entries the hub has not decided: pending, in flight (and stuck,
    which means the hub kept answering retry, unless the case allows it)."""
    waiting = ("pending", "inflight") if stuck_ok else ("pending", "inflight", "stuck")
    return [e for e in dev.outbox() if e["state"] in waiting]


def exchange(dev: Dev, hub: Hub) -> Optional[Dict[str, Any]]:
    """One prepare -> handle -> receive round; None when nothing was due.
    Every step must succeed: the hub refusing a request the device built, or
    the device refusing the hub's answer to it, is a stall."""
    p = ok(dev.prepare())
    if p.text is None:
        assert p.wait is not None and p.wait >= -1, f"prepare gave no request and a wait of {p.wait}"
        return None
    h = ok(hub.handle(p.text), "(a request the device built)")
    return ok(dev.receive(h.text), "(the hub's answer to the device's own request)").value


def settle(dev: Dev, hub: Hub, rounds: int = 40, stuck_ok: bool = False) -> int:
    """Sync until every outbox entry is decided by the hub; at most `rounds`
    exchanges. Returns the number of exchanges."""
    ok(dev.up())
    for n in range(rounds):
        if exchange(dev, hub) is None:
            if not unsettled(dev, stuck_ok):
                break
            ok(dev.up())  # entries waiting out a backoff: resume now
    else:
        left = [(e["key"], e["state"], e.get("reason")) for e in unsettled(dev, stuck_ok)]
        raise AssertionError(f"the outbox did not drain in {rounds} sync rounds: {left[:10]}")
    for e in dev.outbox():
        if e["state"] == "rejected":
            assert e.get("reason"), f"rejected entry {e['key']} has no reason"
    return n


# -- one process per case -----------------------------------------------------------


def in_child(fn: Callable[..., None], *args: Any) -> None:
    """Run fn(*args) in a forked child: a signal (a trap, SIGSEGV) or a hang
    fails this case only, with what the child managed to say."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(r)
        faulthandler.disable()  # the parent reports the signal; no interpreter dump
        code, report = 0, b""
        try:
            signal.alarm(CASE_TIMEOUT)
            fn(*args)
        except BaseException:  # noqa: BLE001 - everything goes back to the parent
            code, report = 1, traceback.format_exc().encode("utf-8", "replace")
        try:
            view = memoryview(report)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as pipe:
        for chunk in iter(lambda: pipe.read(65536), b""):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    report = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        what = "timed out" if sig == signal.SIGALRM else "crashed"
        pytest.fail(f"the process {what}: signal {signal.Signals(sig).name}\n{report}", pytrace=False)
    if os.WEXITSTATUS(status) != 0:
        pytest.fail(report, pytrace=False)


def copy_files(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


def device_options(device_id: str, **more: Any) -> Dict[str, Any]:
    return {"device_id": device_id, "durability": "normal", **more}


def now_ms() -> int:
    return int(time.time() * 1000)


def nest(depth: int, leaf: Any = 1) -> Any:
    """A JSON value `depth` arrays/objects deep, alternating."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 == 0 else {"k": value}
    return value

"""End to end, as a property (issue 12: whatever apply accepts, sync can
carry): any sequence of actions fs_store_apply accepts, at any nesting depth
up to the documented limit, any size up to the action limit, counters near
the int64 edges while another device pushes the same counters near 2^62, with
requests and responses lost on the way, is applied at the hub exactly once,
and the outbox drains in a bounded number of rounds.

Each example runs in a forked child (adversarial.in_child), so a crash fails
the example and hypothesis can still shrink it. The hub is a SQLite file, or a
PostgreSQL database with fewer examples (hubs.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hubs
import pg
from adversarial import (INT64_MAX, INT64_MIN, Dev, Hub, device_options, documented_depth_limit,
                         in_child, nest, ok, settle, unsettled)
from fieldsync._lib import MAX_JSON_BYTES

#: How deep an action may nest, read from the header (FS_MAX_DEPTH; 512 in
#: docs/ABI.md before the header named it).
DEPTH_LIMIT = documented_depth_limit()

SCHEMA: Dict[str, Any] = {
    "version": 1,
    "types": {"task": {"fields": {
        "status": {"type": "string"},
        "doc": {"type": "json"},
        "picked": {"type": "int", "merge": "counter"},
        "tags": {"type": "set"},
    }}},
}
IDS = ["T-0", "T-1", "T-2"]
#: An action whose text is just under FS_MAX_JSON_BYTES.
LARGE = MAX_JSON_BYTES - 400

ids = st.sampled_from(IDS)
depths = st.one_of(st.integers(0, 6), st.integers(DEPTH_LIMIT - 12, DEPTH_LIMIT))
# One draw in ten is an action at the size limit: enough to meet them, few
# enough to keep the run short.
sizes = st.integers(0, 9).flatmap(lambda k: st.just(LARGE) if k == 0 else st.integers(0, 64))
edges = [INT64_MAX, INT64_MIN, 2**62, -(2**62), 2**61 + 7, INT64_MAX - 1, 1, -1]
deltas = st.one_of(st.integers(-1000, 1000), st.sampled_from(edges), st.integers(INT64_MIN, INT64_MAX))
pushes = st.sampled_from([int(2**62.6), 2**62, -(2**62), 3 * 2**61, -int(2**62.6)])

steps = st.one_of(
    st.tuples(st.just("status"), ids, st.text(max_size=8)),
    st.tuples(st.just("doc"), ids, depths, sizes),
    st.tuples(st.just("input"), ids, depths, sizes),
    st.tuples(st.just("inc"), ids, deltas),
    st.tuples(st.just("tag"), ids, st.one_of(st.text(max_size=4), st.integers(-5, 5))),
    st.tuples(st.just("push"), ids, pushes),                    # dev-B, synced at once
    st.tuples(st.just("sync"), st.sampled_from(["ok", "lost-request", "lost-response"])),
)


def action(rid: str, **ops: Any) -> Dict[str, Any]:
    return {"action": "edit", "actor": "op-1", "type": "task", "id": rid, **ops}


def play(storage: str, program: List[Tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory(prefix="fs-drain-") as tmp, hubs.site(storage, Path(tmp)) as site:
        d = Path(tmp)
        path, options = site.c_open({"durability": "normal"})
        hub = Hub.must_open(path, SCHEMA, options)
        a = Dev.must_open(d / "a.db", SCHEMA, device_options("dev-A", batch_size=3))
        b = Dev.must_open(d / "b.db", SCHEMA, device_options("dev-B"))
        hub.enroll(a, b)
        # What each accepted action meant, by outbox key, in apply order.
        done: List[Tuple[str, str, str, Any]] = []  # (key, record, field, value)
        pushed: List[Tuple[str, str, str, Any]] = []  # dev-B's increments, the same way
        audit_ids: List[int] = []
        ok(a.up())
        for step in program:
            kind = step[0]
            if kind == "sync":
                p = ok(a.prepare())
                if p.text is None:
                    continue
                if step[1] == "ok":
                    ok(a.receive(ok(hub.handle(p.text)).text))
                    continue
                if step[1] == "lost-response":
                    ok(hub.handle(p.text))
                ok(a.fail(step[1]))
                ok(a.up())
                continue
            rid = step[1]
            if kind == "push":
                o = b.apply(action(rid, inc={"picked": step[2]}))
                if o.status == 0:  # refused when dev-B's own view would overflow
                    pushed.append((o.value["outbox_key"], rid, "picked", step[2]))
                settle(b, hub)
                continue
            if kind == "status":
                act, field, value = action(rid, set={"status": step[2]}), "status", step[2]
            elif kind == "doc":
                value = nest(step[2], "x" * step[3])
                act, field = action(rid, set={"doc": value}), "doc"
            elif kind == "input":
                value = f"input-{len(done)}"
                act, field = action(rid, set={"status": value}, input=nest(step[2], "y" * step[3])), "status"
            elif kind == "inc":
                act, field, value = action(rid, inc={"picked": step[2]}), "picked", step[2]
            else:
                act, field, value = action(rid, add={"tags": [step[2]]}), "tags", step[2]
            count, rows = a.count(), len(a.audit())
            o = a.apply(act)
            if o.status != 0:
                assert o.status != 12, f"FS_ERR_INTERNAL: {o!r}"
                assert o.message
                assert (a.count(), len(a.audit())) == (count, rows), f"a refused action wrote: {o!r}"
                continue
            result = o.value
            done.append((result["outbox_key"], rid, field, value))
            audit_ids.append(result["audit_id"])

        # Drain: a bound that grows with the work, never "until it happens".
        settle(a, hub, rounds=20 + len(done))
        settle(b, hub)
        assert not unsettled(a) and not unsettled(b)

        rejected = {e["key"]: e for dev in (a, b) for e in dev.outbox()}
        for key, e in rejected.items():
            assert e["state"] == "rejected" and e.get("reason"), f"{key} left {e['state']} without a reason"
        applied = [x for x in done + pushed if x[0] not in rejected]

        # Exactly once at the hub: each counter is the sum of what was applied;
        # each lww field is the last write; the set holds every element added.
        for rid in IDS:
            at_hub = hub.record(rid) or {}
            incs = [v for _, r, f, v in applied if r == rid and f == "picked"]
            want = sum(incs) if incs else None
            assert at_hub.get("picked") == want, (
                f"{rid}: hub counter {at_hub.get('picked')}, the applied increments sum to {want}")
            for field in ("status", "doc"):
                writes = [v for _, r, f, v in applied if r == rid and f == field]
                assert at_hub.get(field) == (writes[-1] if writes else None), (
                    f"{rid}.{field} at the hub is not the last write")
            tags = {v for _, r, f, v in applied if r == rid and f == "tags"}
            assert set(at_hub.get("tags") or []) == tags, f"{rid}.tags at the hub"

        # Every action's audit row reached the hub, once, with its chain intact.
        rows = hub.audit(device_id="dev-A")
        assert sorted(r["audit_id"] for r in rows) == sorted(audit_ids)
        assert all(r.get("chain_ok", True) for r in rows)

        # The outbox drains: what is left was refused visibly; discarded, the
        # device's view is the hub's.
        for key in rejected:
            dev = a if key.startswith("dev-A-") else b
            ok(dev.discard(key))
        settle(a, hub)
        assert a.count() == 0 and b.count() == 0
        for rid in IDS:
            mine, theirs = a.record(rid), hub.record(rid)
            assert mine == theirs, f"{rid}: device {str(mine)[:200]} != hub {str(theirs)[:200]}"


@pytest.mark.parametrize("storage", hubs.STORAGES)
def test_whatever_apply_accepts_reaches_the_hub_once_and_the_outbox_drains(storage):
    if storage == "postgres":
        pg.require()
    check = given(st.lists(steps, min_size=1, max_size=14))(lambda program: in_child(play, storage, program))
    for program in reversed([
        [("doc", "T-1", DEPTH_LIMIT - 2, 3), ("status", "T-2", "unrelated"), ("sync", "ok")],
        [("input", "T-1", DEPTH_LIMIT - 1, 3), ("status", "T-2", "unrelated")],
        [("push", "T-1", int(2**62.6))] + [("inc", "T-1", 2**60), ("status", "T-2", "s")] * 3
        + [("sync", "ok")] * 2,
    ]):
        check = example(program)(check)
    settings(max_examples=hubs.examples(storage, sqlite=40, postgres=10), deadline=None,
             suppress_health_check=[HealthCheck.too_slow])(check)()

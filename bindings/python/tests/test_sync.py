"""Sync through the binding, device <-> hub in-process (docs/PROTOCOL.md, docs/ARCHITECTURE.md):
the sans-I/O steps, the hub's answers, convergence, exactly-once counters and
the audit trail at the hub; a property test over random interleavings.
Every test runs on both hub storages, SQLite and PostgreSQL (hubs.py)."""

import copy
import json
import os
import shutil
import tempfile
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fieldsync
import hubs
import pg
from support import SCHEMA, as_written, in_byte_order, snapshot, task, verify_chain

T0 = 1_700_000_000_000


@pytest.fixture
def hub(hub_storage):
    with hub_storage.open(SCHEMA, durability="normal") as h:
        yield h


@pytest.fixture
def devices(tmp_path, hub):
    stores = [fieldsync.Store(str(tmp_path / f"dev-{n}.db"), SCHEMA, durability="normal",
                              device_id=f"dev-{n}") for n in "ABC"]
    for s in stores:
        hub.enroll_store(s)
    yield stores
    for s in stores:
        s.close()


def open_task(store, id, status="open", **extra):
    return store.apply(task(id, action="open", set={"status": status, **extra}))


def sync_all(stores, hub, rounds=2):
    for _ in range(rounds):
        for s in stores:
            fieldsync.sync_once(s, hub)


def assert_converged(stores, hub):
    at_hub = hub.query("task")
    for s in stores:
        assert s.query("task") == at_hub, s.device_id
        assert s.outbox_count() == 0, s.outbox()


# -- convergence, counters, audit --------------------------------------------------------


def test_devices_converge_and_counters_sum(devices, hub):
    a, b, c = devices
    for s in devices:
        open_task(s, "T-1", site=s.device_id)
    open_task(a, "T-2")
    increments = {"T-1": 0, "T-2": 0}
    for i, s in enumerate(devices):
        for delta in (1, 2, 3 + i):
            s.apply(task("T-1", action="pick", inc={"picked": delta}))
            increments["T-1"] += delta
    a.apply(task("T-2", inc={"picked": -4}))
    increments["T-2"] -= 4
    b.apply(task("T-1", add={"tags": ["cold", "b-only"]}))
    c.apply(task("T-1", add={"tags": ["cold", "c-only"]}))
    sync_all(devices, hub)

    assert_converged(devices, hub)
    rows = {r["id"]: r for r in hub.query("task")}
    assert {id: rows[id]["picked"] for id in rows} == increments
    assert rows["T-1"]["tags"] == ["b-only", "c-only", "cold"]
    # One lww winner, the same everywhere: one of the sites that were written.
    assert rows["T-1"]["site"] in {"dev-A", "dev-B", "dev-C"}
    stats = hub.stats()
    assert stats["devices"] == 3 and stats["entries_applied"] == 16 == stats["audit_rows"]
    assert stats["records"] == 2
    assert stats["audit_chain_breaks"] == stats["audit_hash_failures"] == stats["audit_gaps"] == 0


def test_hub_keeps_every_audit_row_with_server_time(devices, hub):
    a, b, _ = devices
    hub_now = [T0 + 5_000]
    hub.set_clock(lambda: hub_now[0])
    # Both devices' clocks agree with the hub's: a stamp more than
    # max_clock_skew_ms ahead of the hub's clock is refused ("clock_skew").
    a.set_clock(lambda: T0)
    b.set_clock(lambda: T0)
    open_task(a, "T-1")
    a.apply(task("T-1", inc={"picked": 2}, input={"scan": "4006381333931", "note": "Zürich ✓"}))
    open_task(b, "T-2")
    fieldsync.sync_once(a, hub)
    hub_now[0] = T0 + 9_000
    fieldsync.sync_once(b, hub)

    for store, received_at in ((a, T0 + 5_000), (b, T0 + 9_000)):
        device_rows = store.audit()
        verify_chain(device_rows)
        hub_rows = hub.audit(device_id=store.device_id)
        assert len(hub_rows) == len(device_rows)
        for mine, theirs in zip(device_rows, hub_rows):
            # Device fields travel unchanged; the hub adds its receive time.
            for key in ("audit_id", "device_id", "actor", "action", "type", "id", "input",
                        "device_time", "hlc", "outbox_keys", "prev_hash", "hash"):
                assert theirs[key] == mine[key], key
            assert theirs["server_received_at"] == received_at
            assert theirs["chain_ok"] is True
            assert theirs["outcome"] == "applied"
            # ... and the device learns that the hub has its rows.
            assert mine["server_received_at"] == received_at
            assert mine["outcome"] == "applied"
    assert a.audit()[0]["device_time"] == T0
    assert [r["device_id"] for r in hub.audit()] == ["dev-A", "dev-A", "dev-B"]
    assert len(hub.audit(id="T-1")) == 2 and hub.audit(limit=1, desc=True)[0]["device_id"] == "dev-B"
    assert a.stats()["audit_unacked"] == 0


def test_sync_with_is_sync_once(devices, hub):
    a = devices[0]
    open_task(a, "T-1")
    summaries = a.sync_with(hub)
    assert summaries[0]["applied"] == 1 and summaries[-1]["outbox"] == 0
    assert a.sync_with(hub, pull=False) == []  # nothing due without a pull


# -- the steps one by one ----------------------------------------------------------------


def test_prepare_marks_entries_inflight_and_receive_acks_them(devices, hub):
    a = devices[0]
    open_task(a, "T-1")
    a.apply(task("T-1", inc={"picked": 1}))
    request, wait = a.sync_prepare()
    assert wait == 0
    assert request["device_id"] == "dev-A" and request["protocol"] >= 1
    assert [e["key"] for e in request["entries"]] == ["dev-A-1", "dev-A-2"]
    assert [r["audit_id"] for r in request["audit"]] == [1, 2]
    assert {e["state"] for e in a.outbox()} == {"inflight"}
    response = hub.handle(request)
    assert [r["status"] for r in response["results"]] == ["applied", "applied"]
    summary = a.sync_receive(response)
    assert summary["applied"] == 2 and summary["outbox"] == 0 and summary["more"] is False
    assert set(summary) >= {"applied", "duplicate", "rejected", "retry", "stuck", "pulled",
                            "cursor", "more", "outbox"}
    assert a.outbox() == [] and a.get("task", "T-1")["_fs"]["pending"] == 0


def test_nothing_due_gives_a_wait(tmp_path, hub):
    with fieldsync.Store(str(tmp_path / "d.db"), SCHEMA, durability="normal",
                         pull_interval_ms=0) as s:
        hub.enroll_store(s)
        fieldsync.sync_once(s, hub)
        assert s.sync_prepare() == (None, -1)  # nothing pending, no pull will fall due
    with fieldsync.Store(str(tmp_path / "e.db"), SCHEMA, durability="normal",
                         pull_interval_ms=30_000) as s:
        hub.enroll_store(s)
        fieldsync.sync_once(s, hub)
        request, wait = s.sync_prepare()
        assert request is None and 0 < wait <= 30_000


def test_lost_response_is_resent_and_applied_once(devices, hub):
    a = devices[0]
    open_task(a, "T-1")
    for _ in range(5):
        a.apply(task("T-1", inc={"picked": 1}))
    first, _ = a.sync_prepare()
    hub.handle(first)                       # applied, but the answer is lost
    second, _ = a.sync_prepare()            # supersedes the unanswered batch
    assert second["batch"] != first["batch"]
    assert [e["key"] for e in second["entries"]] == [e["key"] for e in first["entries"]]
    response = hub.handle(second)
    assert {r["status"] for r in response["results"]} == {"duplicate"}
    assert {r["outcome"] for r in response["results"]} == {"applied"}
    summary = a.sync_receive(response)
    assert summary["duplicate"] == 6 and summary["outbox"] == 0
    # A late answer to the first batch changes nothing either.
    a.sync_receive(hub.handle(first))
    assert hub.query("task")[0]["picked"] == 5 == a.get("task", "T-1")["picked"]
    assert hub.stats()["entries_applied"] == 6


def test_fail_returns_entries_to_pending_and_backs_off(tmp_path, hub):
    with fieldsync.Store(str(tmp_path / "d.db"), SCHEMA, durability="normal",
                         backoff_base_ms=1000, backoff_cap_ms=4000) as s:
        hub.enroll_store(s)
        open_task(s, "T-1")
        request, _ = s.sync_prepare()
        assert request is not None
        s.sync_fail("connection reset")
        entry, = s.outbox()
        assert entry["state"] == "pending" and entry["attempts"] == 0
        stats = s.stats()
        assert stats["last_failure"] == "connection reset" and stats["transport_failures"] == 1
        request, wait = s.sync_prepare()
        if request is None:  # full jitter may draw 0
            assert 0 <= wait <= 4000
            assert s.stats()["sync_state"] == "backoff"
        s.sync_fail()  # reason is optional
        # Connectivity up resumes at once whatever the backoff.
        s.set_connectivity(True)
        request, wait = s.sync_prepare()
        assert request is not None and wait == 0
        s.sync_receive(hub.handle(request))
        assert s.outbox_count() == 0


def test_offline_sends_nothing(tmp_path, hub):
    with fieldsync.Store(str(tmp_path / "d.db"), SCHEMA, durability="normal",
                         backoff_cap_ms=7000) as s:
        open_task(s, "T-1")
        s.set_connectivity(False)
        assert s.sync_prepare() == (None, 7000)
        assert s.stats()["sync_state"] == "offline"
        s.set_connectivity(True)
        assert s.sync_prepare()[0] is not None


def test_batch_size_and_pull_limit_page_the_exchange(tmp_path, hub):
    with fieldsync.Store(str(tmp_path / "a.db"), SCHEMA, durability="normal",
                         batch_size=3) as a:
        hub.enroll_store(a)
        for i in range(10):
            open_task(a, f"T-{i}")
        summaries = fieldsync.sync_once(a, hub)
        assert [s["applied"] for s in summaries] == [3, 3, 3, 1]
        assert summaries[-1]["outbox"] == 0
    with fieldsync.Store(str(tmp_path / "b.db"), SCHEMA, durability="normal",
                         pull_limit=4) as b:
        hub.enroll_store(b)
        summaries = fieldsync.sync_once(b, hub)
        assert [s["pulled"] for s in summaries] == [4, 4, 2]
        assert [s["more"] for s in summaries] == [True, True, False]
        assert len(b.query("task")) == 10 and b.query("task") == hub.query("task")


def test_scope_limits_what_is_pulled(tmp_path, hub):
    with fieldsync.Store(str(tmp_path / "a.db"), SCHEMA, durability="normal") as a:
        hub.enroll_store(a)
        open_task(a, "T-1", site="WH-3")
        open_task(a, "T-2", site="WH-4")
        fieldsync.sync_once(a, hub)
    with fieldsync.Store(str(tmp_path / "b.db"), SCHEMA, durability="normal",
                         scope={"task": {"site": "WH-3"}}) as b:
        hub.enroll_store(b)
        fieldsync.sync_once(b, hub)
        assert [r["id"] for r in b.query("task")] == ["T-1"]
        assert b.query("task") == hub.query("task", where={"site": "WH-3"})


@pytest.mark.parametrize("options", [
    {"batch_size": 0}, {"pull_limit": -1}, {"max_attempts": "3"},
    {"backoff_base_ms": 1000, "backoff_cap_ms": 10}, {"pull_interval_ms": -5},
    {"scope": ["task"]},
])
def test_bad_sync_options_are_refused(tmp_path, options):
    with pytest.raises(fieldsync.ArgError):
        fieldsync.Store(str(tmp_path / "d.db"), SCHEMA, **options)


def test_server_field_conflict_is_rejected_visibly(devices, hub):
    a, b, _ = devices
    open_task(a, "T-1", on_hand=10)
    fieldsync.sync_once(a, hub)
    fieldsync.sync_once(b, hub)
    a.apply(task("T-1", set={"on_hand": 7}))
    b.apply(task("T-1", set={"on_hand": 3}))     # based on the same version: loses
    fieldsync.sync_once(a, hub)
    summary = fieldsync.sync_once(b, hub)[0]
    assert summary["rejected"] == 1
    entry, = b.outbox(state="rejected")
    assert entry["reason"]
    assert b.audit()[-1]["outcome"] == "rejected" and b.audit()[-1]["reason"]
    assert b.get("task", "T-1")["on_hand"] == 7   # back to the server's value
    assert hub.query("task")[0]["on_hand"] == 7
    assert hub.audit(device_id="dev-B")[-1]["outcome"] == "rejected"
    b.discard(entry["key"])
    assert b.outbox_count() == 0 and b.audit()[-1]["outcome"] == "discarded"


def test_concurrent_writes_are_counted_per_field_by_how_each_policy_resolved_them(devices, hub):
    """docs/MERGE.md "Conflict accounting": B writes every field after A
    did, from the same observed state; A's writes met nothing concurrent."""
    a, b, _ = devices
    a.set_clock(lambda: T0 + 1_000)
    b.set_clock(lambda: T0 + 1_000)
    open_task(a, "T-1", on_hand=1, lines=[1])
    sync_all([a, b], hub, rounds=1)
    hub.set_resolver("order_lines", lambda c: sorted(set(c["server"]) | set(c["incoming"])))
    a.set_clock(lambda: T0 + 20_000)
    a.apply(task("T-1", set={"status": "a", "site": "A"}, inc={"picked": 1}, add={"tags": ["x"]}))
    a.apply(task("T-1", set={"on_hand": 2}))
    a.apply(task("T-1", set={"lines": [1, 2]}))
    fieldsync.sync_once(a, hub)
    before = hub.stats()
    b.set_clock(lambda: T0 + 10_000)             # older than A's: B's site loses
    b.apply(task("T-1", set={"site": "B"}))
    b.set_clock(lambda: T0 + 30_000)             # newer than A's: B's status wins
    b.apply(task("T-1", set={"status": "b"}, inc={"picked": 2}, add={"tags": ["y"]}))
    b.apply(task("T-1", set={"on_hand": 3}))     # compare-and-set on a changed version
    b.apply(task("T-1", set={"lines": [1, 3]}))
    fieldsync.sync_once(b, hub)
    after = hub.stats()

    def counted(field, kind):
        key = f"conflicts.task.{field}.{kind}"
        return after.get(key, 0) - before.get(key, 0)

    expected = {"site": "lost", "status": "won", "picked": "merged", "tags": "merged",
                "on_hand": "rejected", "lines": "resolved"}
    kinds = ("concurrent", "won", "lost", "merged", "rejected", "resolved")
    assert {f: {k: counted(f, k) for k in kinds} for f in expected} == \
        {f: {k: int(k in ("concurrent", e)) for k in kinds} for f, e in expected.items()}
    assert after["conflicts"] - before["conflicts"] == 4        # won, lost, rejected, resolved
    assert after["merged"] - before["merged"] == 2
    row = hub.query("task")[0]
    assert (row["site"], row["status"], row["picked"], row["tags"], row["on_hand"], row["lines"]) == \
        ("A", "b", 3, ["x", "y"], 2, [1, 2, 3])
    assert [e["reason"].split(":")[0] for e in b.outbox(state="rejected")] == ["conflict"]


def test_set_elements_that_differ_only_in_normalization_stay_two_at_the_hub(devices, hub):
    # Like object keys, set ELEMENTS "é" and "e" + U+0301 stay distinct.
    a, b, _ = devices
    open_task(a, "T-1")
    a.apply(task("T-1", add={"tags": ["é"]}))
    b.apply(task("T-1", action="open", set={"status": "open"}, add={"tags": ["e\u0301"]}))
    sync_all([a, b], hub)
    assert hub.query("task")[0]["tags"] == sorted(["é", "e\u0301"])
    a.apply(task("T-1", remove={"tags": ["é"]}))
    sync_all([a, b], hub)
    assert hub.query("task")[0]["tags"] == ["e\u0301"]
    assert a.query("task") == b.query("task") == hub.query("task")


def test_keys_differing_only_in_normalization_stay_apart_through_the_hub(devices, hub):
    # Decided (formerly defect D1): object keys are kept exact by their UTF-8
    # bytes end to end (device, request, hub, resolver, pull) and written in byte
    # order; keys that differ only in normalization are two keys. Only an
    # exactly duplicated key makes a request invalid JSON.
    a, b, c = devices
    seen = []

    def order_lines(conflict):
        seen.append(conflict)
        return {**conflict["server"], **conflict["incoming"]}

    hub.set_resolver("order_lines", order_lines)
    lines = {"e\u0301": "decomposed", "é": "precomposed", "\u212b": 1, "\u00c5": 2}
    given = {"d\u0323\u0307": 1, "d\u0307\u0323": 2, "k": [{"é": True, "e\u0301": False}]}
    a.apply(task("T-1", action="open", set={"status": "open", "lines": lines}, input=given))

    # A request with a key written twice is refused as a whole, nothing applied.
    request, _ = a.sync_prepare()
    text = json.dumps(request, ensure_ascii=False, separators=(",", ":"))
    assert text.count('"é":"precomposed"') == 1
    for bad in (text.replace('"é":"precomposed"', '"é":"precomposed","é":"again"'),
                '{"cursor":0,' + text[1:]):
        with pytest.raises(fieldsync.JSONError, match="duplicate"):
            hub.handle(bad.encode("utf-8"))
    assert hub.stats()["entries_applied"] == 0 and hub.audit() == []
    a.sync_fail("refused")

    sync_all(devices, hub)
    assert_converged(devices, hub)
    (row,) = hub.query("task")
    assert row["lines"] == lines and as_written(row["lines"]) == in_byte_order(lines)
    for s in (b, c):
        assert as_written(s.get("task", "T-1")["lines"]) == in_byte_order(lines)
    (audit,) = hub.audit(device_id="dev-A")
    assert audit["chain_ok"] and audit["input"] == given
    assert as_written(audit["input"]) == in_byte_order(given)
    verify_chain([audit])
    assert audit["hash"] == a.audit()[0]["hash"]

    # Concurrent custom writes: the resolver sees both keys of each side apart.
    a.apply(task("T-1", set={"lines": {"é": "A", "e\u0301": "A"}}))
    b.apply(task("T-1", actor="op-B", set={"lines": {"e\u0301": "B", "\u00c5": "B"}}))
    fieldsync.sync_once(a, hub)
    fieldsync.sync_once(b, hub)
    (conflict,) = seen
    assert conflict["server"] == {"é": "A", "e\u0301": "A"}
    assert conflict["incoming"] == {"e\u0301": "B", "\u00c5": "B"}
    sync_all(devices, hub)
    assert_converged(devices, hub)
    merged = {"é": "A", "e\u0301": "B", "\u00c5": "B"}
    assert as_written(hub.query("task")[0]["lines"]) == in_byte_order(merged)
    assert hub.stats()["audit_chain_breaks"] == 0
    for s in (a, b):  # c only pulled: it wrote nothing
        rows = hub.audit(device_id=s.device_id)
        assert rows and all(r["chain_ok"] for r in rows)
        verify_chain(rows)
        assert [r["hash"] for r in rows] == [r["hash"] for r in s.audit()]


# -- refusals ------------------------------------------------------------------------------


def test_upgrade_required_keeps_the_outbox(tmp_path, hub_storage):
    newer = copy.deepcopy(SCHEMA)
    newer["version"] = 2
    newer["min_client_version"] = 2
    with hub_storage.open(newer) as hub, \
            fieldsync.Store(str(tmp_path / "d.db"), SCHEMA, durability="normal") as s:
        hub.enroll_store(s)
        open_task(s, "T-1")
        request, _ = s.sync_prepare()
        response = hub.handle(request)
        assert response["error"]["code"] == "upgrade_required"
        with pytest.raises(fieldsync.UpgradeRequiredError) as e:
            s.sync_receive(response)
        assert e.value.status == 10
        assert s.outbox_count() == 1 and s.outbox()[0]["state"] == "pending"
        assert s.stats()["sync_state"] == "upgrade_required"
        assert s.sync_prepare() == (None, -1)
        s.set_connectivity(True)
        assert s.sync_prepare() == (None, -1)
        e = fieldsync.Store(str(tmp_path / "e.db"), SCHEMA)
        hub.enroll_store(e)
        with pytest.raises(fieldsync.UpgradeRequiredError):
            fieldsync.sync_once(e, hub)


def test_receive_refuses_a_response_it_did_not_ask_for(devices, hub):
    a, b, _ = devices
    # dev-A checks no signature, so that the altered responses below reach
    # the decoder; signed, they are refused before it (test_auth.py).
    a.close()
    a = fieldsync.Store(a.path, SCHEMA, durability="normal", auth="off")
    open_task(a, "T-1")
    open_task(b, "T-1")
    request, _ = b.sync_prepare()
    response_for_b = hub.handle(request)
    a.sync_prepare()
    before = snapshot(a)
    with pytest.raises(fieldsync.ArgError):
        a.sync_receive(response_for_b)                   # another device's
    forged = dict(response_for_b, device_id="dev-A", batch="dev-A-b99")
    with pytest.raises(fieldsync.ArgError):
        a.sync_receive(forged)                           # a batch never sent
    forged = dict(response_for_b, device_id="dev-A", batch="dev-A-b1")
    with pytest.raises(fieldsync.ArgError):
        a.sync_receive(forged)                           # entries of another device
    for bad in ("[]", "{", b"\xff", {"protocol": 1}):
        with pytest.raises((fieldsync.ArgError, fieldsync.JSONError)):
            a.sync_receive(bad)
    assert snapshot(a) == before


def test_hub_refuses_what_is_not_a_request(devices, hub_storage):
    # A hub without authentication, so that the altered requests below reach
    # the decoder; signed, they are refused before it (test_auth.py).
    hub = hub_storage.open(SCHEMA, name="open-hub", durability="normal", auth="off")
    a = devices[0]
    open_task(a, "T-1")
    request, _ = a.sync_prepare()
    with pytest.raises(fieldsync.ArgError):
        hub.handle({"hello": "hub"})
    with pytest.raises(fieldsync.JSONError):
        hub.handle("{not json")
    with pytest.raises(fieldsync.JSONError):
        hub.handle(b'{"protocol": 1\x00}')
    with pytest.raises(fieldsync.ArgError):       # entries must be the sender's own
        hub.handle(dict(request, device_id="dev-Z"))
    with pytest.raises(fieldsync.SchemaError):
        hub.handle(dict(request, scope={"task": {"nope": 1}}))
    with pytest.raises(TypeError):
        hub.handle(42)
    assert hub.stats()["entries_applied"] == 0 and hub.audit() == []
    # The request itself is still good.
    assert json.loads(hub.handle_text(json.dumps(request)))["results"][0]["status"] == "applied"


def test_hub_handle_lifecycle_and_misuse(hub_storage):
    hub = hub_storage.open(SCHEMA, name="h")
    assert "open" in repr(hub)
    hub.close()
    hub.close()
    assert hub.closed
    with pytest.raises(fieldsync.ClosedError):
        hub.stats()
    other = copy.deepcopy(SCHEMA)
    other["types"]["task"]["fields"]["extra"] = {"type": "string"}
    with pytest.raises(fieldsync.SchemaError):
        hub_storage.open(other, name="h")            # same version, other content
    with hub_storage.open(SCHEMA, name="h") as again:
        assert again.stats()["records"] == 0
        with pytest.raises(fieldsync.SchemaError):
            again.query("nope")


def test_a_hub_file_must_be_a_hub_and_its_options_valid(tmp_path):
    # SQLite only: about the file the hub opens and SQLite's own options.
    fieldsync.Store(str(tmp_path / "dev-A.db"), SCHEMA, device_id="dev-A").close()
    with pytest.raises(fieldsync.CorruptError):
        fieldsync.Hub(str(tmp_path / "dev-A.db"), SCHEMA)     # a device store is not a hub
    with pytest.raises(fieldsync.ArgError):
        fieldsync.Hub(str(tmp_path / "x.db"), SCHEMA, durability="sometimes")


def test_the_storage_is_chosen_by_the_options_and_each_refuses_the_others_settings(tmp_path, hub_storage):
    with hub_storage.open(SCHEMA) as hub:
        assert hub.stats()["storage"] == hub_storage.storage
        if not hub_storage.postgres:
            return
        with pytest.raises(fieldsync.ArgError):
            hub.backup(tmp_path / "copy.db")       # pg_dump or base backups instead
    assert not (tmp_path / "copy.db").exists()
    dsn = hub_storage.dsn()
    for path, options in ((str(tmp_path / "hub.db"), {}), (None, {"durability": "normal"})):
        with pytest.raises(fieldsync.ArgError):
            fieldsync.Hub(path, SCHEMA, postgres=dsn, **options)
    with fieldsync.Hub(None, SCHEMA, postgres=dsn, busy_timeout_ms=100):   # PostgreSQL's lock_timeout
        pass
    assert not (tmp_path / "hub.db").exists()
    with pytest.raises(fieldsync.FieldSyncIOError, match="no_such_"):     # libpq's message
        fieldsync.Hub(None, SCHEMA, postgres=dsn.replace("dbname=", "dbname=no_such_"))


# -- property: random actions, random sync interleavings ---------------------------------

IDS = ["T-0", "T-1", "T-2"]
ELEMENTS = ["a", "b", "é", "e\u0301", "Z"]
DEVICES = 3

steps = st.lists(
    st.one_of(
        st.tuples(st.just("inc"), st.integers(0, DEVICES - 1), st.sampled_from(IDS),
                  st.integers(-5, 9)),
        st.tuples(st.just("set"), st.integers(0, DEVICES - 1), st.sampled_from(IDS),
                  st.sampled_from(["open", "picked", "done", "Zürich"])),
        st.tuples(st.just("add"), st.integers(0, DEVICES - 1), st.sampled_from(IDS),
                  st.lists(st.sampled_from(ELEMENTS), min_size=1, max_size=3)),
        st.tuples(st.just("remove"), st.integers(0, DEVICES - 1), st.sampled_from(IDS),
                  st.lists(st.sampled_from(ELEMENTS), min_size=1, max_size=3)),
        st.tuples(st.just("sync"), st.integers(0, DEVICES - 1)),
        # A response lost on the way back: the hub applied, the device resends.
        st.tuples(st.just("lost"), st.integers(0, DEVICES - 1)),
    ),
    max_size=30,
)


@pytest.mark.parametrize("storage", hubs.STORAGES)
def test_random_actions_and_syncs_converge(storage):
    if storage == "postgres":
        pg.require()
    settings(max_examples=hubs.examples(storage, sqlite=40, postgres=10), deadline=None,
             suppress_health_check=[HealthCheck.too_slow])(given(program=steps)(
                 lambda program: random_actions_and_syncs_converge(storage, program)))()


def random_actions_and_syncs_converge(storage, program):
    workdir = tempfile.mkdtemp(prefix="fieldsync-sync-prop-")
    site = hubs.HubSite(storage, workdir)
    hub = site.open(SCHEMA, durability="normal")
    stores = [fieldsync.Store(os.path.join(workdir, f"d{n}.db"), SCHEMA, durability="normal",
                              device_id=f"dev-{n}", batch_size=4, pull_limit=3)
              for n in range(DEVICES)]
    for store in stores:
        hub.enroll_store(store)
    try:
        increments = {id: 0 for id in IDS}
        status_writes = {id: [] for id in IDS}   # ((hlc, device), value)
        added = {id: set() for id in IDS}
        for step in program:
            kind, n = step[0], step[1]
            store = stores[n]
            if kind == "sync":
                fieldsync.sync_once(store, hub)
                continue
            if kind == "lost":
                request, _ = store.sync_prepare()
                if request is not None:
                    hub.handle(request)
                continue
            id, arg = step[2], step[3]
            ops = {}
            if kind == "inc" and arg != 0:
                ops["inc"] = {"picked": arg}
            elif kind == "set":
                ops["set"] = {"status": arg}
            elif kind == "add":
                ops["add"] = {"tags": arg}
            elif kind == "remove":
                ops["remove"] = {"tags": arg}
            else:
                continue
            try:
                store.get("task", id)
            except fieldsync.NotFoundError:
                ops.setdefault("set", {}).setdefault("status", "new")  # creating needs it
            result = store.apply(task(id, actor=f"op-{n}", **ops))
            increments[id] += ops.get("inc", {}).get("picked", 0)
            if "status" in ops.get("set", {}):
                status_writes[id].append(((result["hlc"], store.device_id), ops["set"]["status"]))
            added[id] |= set(ops.get("add", {}).get("tags", []))

        for _ in range(2):
            for store in stores:
                fieldsync.sync_once(store, hub)

        at_hub = hub.query("task")
        for store in stores:
            assert store.outbox_count() == 0, store.outbox()
            assert store.query("task") == at_hub, store.device_id
        rows = {r["id"]: r for r in at_hub}
        assert set(rows) == {id for id in IDS if status_writes[id]}
        for id, row in rows.items():
            assert (row["picked"] or 0) == increments[id], id
            # lww: the write with the greatest (hlc, device) stamp wins.
            assert row["status"] == max(status_writes[id])[1], (id, status_writes[id])
            assert set(row["tags"] or []) <= added[id]
            assert (row["tags"] or []) == sorted(set(row["tags"] or []))
        stats = hub.stats()
        assert stats["audit_chain_breaks"] == stats["audit_hash_failures"] == 0
        assert stats["audit_gaps"] == 0
        assert stats["audit_rows"] == sum(len(s.audit()) for s in stores)
        for store in stores:
            verify_chain(store.audit())
            assert all(r["chain_ok"] for r in hub.audit(device_id=store.device_id))
    finally:
        for store in stores:
            store.close()
        hub.close()
        site.close()
        shutil.rmtree(workdir, ignore_errors=True)


# -- custom merge: resolvers registered through the binding ------------------------------


def concurrent_lines(devices, hub):
    """A and B both edit T-1.lines from the same server version; A syncs first."""
    a, b, _ = devices
    open_task(a, "T-1", lines=[1])
    sync_all([a, b], hub, rounds=1)
    a.apply(task("T-1", set={"lines": [1, 2]}))
    b.apply(task("T-1", actor="op-B", set={"lines": [1, 3]}))
    fieldsync.sync_once(a, hub)
    return fieldsync.sync_once(b, hub)


def test_resolver_merges_concurrent_custom_writes(devices, hub):
    seen = []

    def order_lines(conflict):
        seen.append(conflict)
        return sorted(set(conflict["server"]) | set(conflict["incoming"]))

    hub.set_resolver("order_lines", order_lines)
    summaries = concurrent_lines(devices, hub)
    assert summaries[0]["applied"] == 1 and summaries[0]["rejected"] == 0
    (conflict,) = seen
    assert conflict["type"] == "task" and conflict["id"] == "T-1" and conflict["field"] == "lines"
    assert (conflict["base"], conflict["server"], conflict["incoming"]) == ([1], [1, 2], [1, 3])
    assert conflict["incoming_device"] == "dev-B" and conflict["incoming_actor"] == "op-B"
    sync_all(devices, hub)
    assert hub.query("task")[0]["lines"] == [1, 2, 3]
    assert_converged(devices, hub)


@pytest.mark.parametrize("register, reason", [
    (None, "resolver_missing"),
    (lambda c: 1 / 0, "resolver_failed"),
    (lambda c: float("nan"), "resolver_failed"),    # not JSON
])
def test_a_failing_or_missing_resolver_rejects_visibly(devices, hub, register, reason):
    if register is not None:
        hub.set_resolver("order_lines", register)
    summaries = concurrent_lines(devices, hub)
    assert summaries[0]["rejected"] == 1
    b = devices[1]
    (entry,) = b.outbox(state="rejected")
    assert entry["reason"] == reason
    assert b.audit()[-1]["outcome"] == "rejected" and b.audit()[-1]["reason"] == reason
    assert b.get("task", "T-1")["lines"] == [1, 2]          # back to the server's value
    if register is not None:
        assert hub.resolver_errors
    hub.set_resolver("order_lines", None)                     # removing is allowed
    with pytest.raises(fieldsync.ArgError):
        hub.set_resolver("", lambda c: c["server"])


def test_retries_end_stuck_and_hold_back_their_record(tmp_path, hub):
    # A device on a newer schema than the hub: its entries are answered "retry"
    # until max_attempts, then stay "stuck" (never deleted, never resent); a
    # later entry of the same record waits behind them.
    newer = copy.deepcopy(SCHEMA)
    newer["version"] = 2
    with fieldsync.Store(str(tmp_path / "d.db"), newer, durability="normal", max_attempts=2,
                         backoff_base_ms=1, backoff_cap_ms=1) as s:
        hub.enroll_store(s)
        open_task(s, "T-1")
        s.apply(task("T-1", inc={"picked": 1}))
        open_task(s, "T-2")
        summaries = []
        for _ in range(50):  # the 0..1 ms jittered backoff decides how many rounds
            summaries += fieldsync.sync_once(s, hub, pull=False)
            if s.stats()["outbox_stuck"] == 3:
                break
            time.sleep(0.002)
        # How many answers were "retry" depends on which backoffs had run out
        # at each round (an entry held behind its record's first is not sent);
        # what must hold is that all three end stuck after two attempts each.
        assert sum(x["retry"] for x in summaries) >= 3 and sum(x["stuck"] for x in summaries) == 3
        stuck = s.outbox(state="stuck")
        assert [e["attempts"] for e in stuck] == [2, 2, 2] and all(e["reason"] for e in stuck)
        assert "schema version" in stuck[0]["reason"]
        assert s.stats()["outbox_stuck"] == 3 and hub.stats()["entries_applied"] == 0
        assert fieldsync.sync_once(s, hub)[0]["retry"] == 0   # stuck ones are not resent
        later = s.apply(task("T-1", inc={"picked": 5}))["outbox_key"]
        s.set_connectivity(True)
        request, _ = s.sync_prepare()
        assert later not in [e["key"] for e in request["entries"]]
        s.sync_fail()
        for e in stuck:
            s.discard(e["key"])
        assert [r["outcome"] for r in s.audit()] == ["discarded"] * 3 + ["pending"]
        s.set_connectivity(True)
        request, _ = s.sync_prepare()
        assert [e["key"] for e in request["entries"]] == [later]


def test_sync_with_reports_progress_after_each_exchange(tmp_path, hub_storage):
    with fieldsync.Store(tmp_path / "d.db", SCHEMA, device_id="dev-p", batch_size=10, auth="off") as s, \
         hub_storage.open(SCHEMA, auth="off") as hub:
        for i in range(35):
            s.apply({"action": "a", "actor": "op", "type": "task", "id": f"T-{i}", "set": {"status": "open"}})
        seen = []
        summaries = s.sync_with(hub, progress=seen.append)
        assert seen == summaries and len(seen) >= 4
        assert [x["outbox"] for x in seen[:4]] == [25, 15, 5, 0]

        def stop(summary):
            raise KeyboardInterrupt

        s.apply({"action": "a", "actor": "op", "type": "task", "id": "late", "set": {"status": "open"}})
        with pytest.raises(KeyboardInterrupt):
            s.sync_with(hub, progress=stop)
        assert s.outbox_count() == 0  # the exchange before the stop is complete

"""The audit trail: the SHA-256 chain recomputed exactly as docs/AUDIT.md says,
device time from the store's clock, and the hybrid logical clock."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fieldsync
from support import GENESIS, SCHEMA, canonical, row_hash, snapshot, task, verify_chain

T0 = 1_700_000_000_000  # a fixed wall clock, ms


def strict(value):
    """JSON text that tells true from 1 and 1.0 from 1."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def open_task(store, id="T-1", **extra):
    return store.apply(task(id, action="open", set={"status": "open", **extra}))


def test_first_row_chains_from_zeros(store):
    open_task(store)
    (row,) = store.audit()
    assert row["prev_hash"] == GENESIS
    assert row["hash"] == row_hash(GENESIS, row)
    assert len(row["hash"]) == 64 and row["hash"] == row["hash"].lower()


def test_chain_verifies_with_non_ascii_text(store):
    open_task(store, "Ü-1", site="Zürich")
    store.apply({"action": "prüfen", "actor": "Jürgen 🚚", "type": "task", "id": "Ü-1",
                 "inc": {"picked": 1},
                 "input": {"note": "東京 → Zürich ✓", "emoji": "🚚📦", "ß": "straße"}})
    store.apply(task("Ü-1", actor="Ωmega", set={"site": "Αθήνα"},
                     input=["ünïcödé", {"ключ": "значение"}]))
    rows = store.audit()
    verify_chain(rows)
    # The canonical form keeps UTF-8, not \u escapes.
    assert "東京" in canonical(rows[1]) and "\\u" not in canonical(rows[1])


def test_chain_verifies_with_floats_in_input(store):
    floats = [0.1, 0.5, 1.0, -2.5, 3.14159, 1e-7, 1e-5, 0.0001, 123456.789,
              1e15, 1e16, 1e22, 1e300, 5e-324, 2.2250738585072014e-308,
              1.7976931348623157e308, 0.30000000000000004, 100.0, -0.0]
    open_task(store, weight=0.1)
    for i, f in enumerate(floats):
        store.apply(task("T-1", set={"weight": f}, input={"value": f, "i": i}))
    rows = store.audit()
    verify_chain(rows)
    for row, f in zip(rows[1:], floats):
        assert strict(row["input"]["value"]) == strict(f)


def test_chain_verifies_with_keys_needing_code_point_order(store):
    # Sorting by UTF-16 unit or by Unicode collation would order these differently.
    keys = ["a", "B", "_", "é", "e", "\u0301", "\uffff", "😀", "Z", "aa", "ab"]
    open_task(store)
    store.apply(task("T-1", set={"site": "x"}, input={k: i for i, k in enumerate(keys)}))
    rows = store.audit()
    verify_chain(rows)
    assert rows[1]["input"] == {k: i for i, k in enumerate(keys)}


def test_chain_verifies_with_characters_json_must_escape(store):
    text = 'quote " backslash \\ newline \n tab \t cr \r bell \x07 nul-ish \x01 del \x7f ls \u2028 /'
    open_task(store, site=text)
    store.apply(task("T-1", actor=text, set={"site": "y"}, input={"text": text, text: 1}))
    rows = store.audit()
    verify_chain(rows)
    assert rows[1]["input"] == {"text": text, text: 1}
    assert rows[1]["actor"] == text


def test_input_is_kept_verbatim(store):
    inputs = [
        None, True, False, 0, -1, 2**63 - 1, -(2**63), "", "text", [], {},
        [1, "a", None, True, 2.5, [[]], {"x": {}}],
        {"nested": {"deep": [{"k": [1, 2, {"z": None}]}]}, "bool": False, "int": 1, "float": 1.5},
    ]
    open_task(store)
    for value in inputs:
        action = task("T-1", inc={"picked": 1})
        if value is not None:
            action["input"] = value
        store.apply(action)
    rows = store.audit()[1:]
    assert [strict(r["input"]) for r in rows] == [strict(v) for v in inputs]
    verify_chain(store.audit())


EQUIVALENT_KEYS = [("é", "e\u0301"), ("\u212b", "\u00c5"), ("\u00c5", "A\u030a"),
                   ("d\u0307\u0323", "d\u0323\u0307")]


def in_byte_order(keys):
    """Canonical key order: by UTF-8 bytes (= code point order)."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


@pytest.mark.parametrize("keys", EQUIVALENT_KEYS)
def test_keys_differing_only_in_normalization_are_kept_apart_and_chain(store, keys):
    # Decided (formerly defect D1): object keys are kept exact, by their UTF-8
    # bytes, never normalised. Keys that differ only in Unicode normalization
    # ("é" U+00E9 vs "e" + U+0301) are two keys with their own values, written
    # in code point (UTF-8 byte) order; only an exactly duplicated key is refused.
    first, second = keys
    assert first != second and first.encode() != second.encode()
    ordered = in_byte_order(keys)
    open_task(store)
    # Written in reverse canonical order, so sorting is visible.
    flat = {ordered[1]: "second", ordered[0]: "first"}
    nested = [{"x": {ordered[1]: [2], ordered[0]: {ordered[1]: 1, ordered[0]: 0}}}]
    store.apply(task("T-1", inc={"picked": 1}, input=flat))
    store.apply(task("T-1", inc={"picked": 1}, input=nested))
    store.apply(task("T-1", inc={"picked": 1}, input={first: 1}))  # either key alone
    store.apply(task("T-1", inc={"picked": 1}, input={second: 2}))
    rows = store.audit()
    assert len(rows) == 5
    assert rows[1]["input"] == {ordered[0]: "first", ordered[1]: "second"}
    assert list(rows[1]["input"]) == ordered          # byte order, both kept
    assert rows[2]["input"] == [{"x": {ordered[0]: {ordered[0]: 0, ordered[1]: 1},
                                       ordered[1]: [2]}}]
    assert list(rows[2]["input"][0]["x"]) == ordered
    assert list(rows[2]["input"][0]["x"][ordered[0]]) == ordered
    assert list(rows[3]["input"]) == [first] and list(rows[4]["input"]) == [second]
    # The keys come back byte for byte as written, not normalised.
    assert [k.encode() for k in rows[1]["input"]] == [k.encode() for k in ordered]
    verify_chain(rows)
    # The hash covers both keys: Python's canonical text holds them apart.
    text = canonical(rows[1])
    assert f'"{ordered[0]}":"first","{ordered[1]}":"second"' in text
    # An exactly duplicated key (same bytes twice) is still refused, flat or
    # nested, and nothing is written. Raw text: a dict cannot hold a duplicate.
    before = snapshot(store)
    head = '{"action":"edit","actor":"op-1","type":"task","id":"T-1","inc":{"picked":1},"input":'
    k0, k1 = json.dumps(first, ensure_ascii=False), json.dumps(second, ensure_ascii=False)
    for body in (f"{{{k0}:1,{k0}:2}}", f"{{{k0}:1,{k1}:2,{k0}:3}}",
                 f'[{{"x":{{{k1}:1,{k1}:1}}}}]'):
        with pytest.raises(fieldsync.JSONError, match="duplicate"):
            store.apply(head + body + "}")
    assert snapshot(store) == before
    # The same text without the duplicate is accepted: the refusal is the duplicate.
    store.apply(head + f"{{{k0}:1,{k1}:2}}" + "}")
    assert store.audit()[-1]["input"] == {first: 1, second: 2}
    verify_chain(store.audit())


def test_verifier_detects_an_edit(store):
    open_task(store)
    store.apply(task("T-1", inc={"picked": 1}, input={"qty": 1}))
    rows = store.audit()
    verify_chain(rows)
    rows[1]["input"]["qty"] = 2
    with pytest.raises(AssertionError):
        verify_chain(rows)


def test_rows_link_to_outbox_entries(store):
    open_task(store)
    for _ in range(3):
        store.apply(task("T-1", inc={"picked": 1}))
    entries = {e["key"]: e for e in store.outbox()}
    for row in store.audit():
        (key,) = row["outbox_keys"]
        entry = entries[key]
        assert entry["seq"] == row["audit_id"]
        assert key == f"{row['device_id']}-{row['audit_id']}"
        assert entry["hlc"] == row["hlc"] and entry["device_time"] == row["device_time"]
        assert entry["actor"] == row["actor"] and entry["action"] == row["action"]


# -- clocks -----------------------------------------------------------------------------


def test_device_time_follows_set_clock(store):
    now = [T0]
    store.set_clock(lambda: now[0])
    open_task(store)
    now[0] = T0 + 1234
    result = store.apply(task("T-1", inc={"picked": 1}))
    rows = store.audit()
    assert [r["device_time"] for r in rows] == [T0, T0 + 1234]
    assert result["hlc"] >> 16 == T0 + 1234
    assert [e["device_time"] for e in store.outbox()] == [T0, T0 + 1234]
    verify_chain(rows)


def test_hlc_strictly_increases_when_the_clock_goes_backwards(store):
    times = [T0, T0, T0, T0 - 1, T0 - 60_000, T0 + 5, T0 + 5, T0 + 4, 1, T0 + 6]
    current = [T0]

    def clock():
        return current[0]

    store.set_clock(clock)
    hlcs = []
    for i, t in enumerate(times):
        current[0] = t
        result = open_task(store) if i == 0 else store.apply(task("T-1", inc={"picked": 1}))
        hlcs.append(result["hlc"])
    rows = store.audit()
    assert [r["device_time"] for r in rows] == times  # the wall clock, as it was
    assert [r["hlc"] for r in rows] == hlcs
    assert all(a < b for a, b in zip(hlcs, hlcs[1:])), hlcs
    running_max = [max(times[: i + 1]) for i in range(len(times))]
    assert [h >> 16 for h in hlcs] == running_max
    verify_chain(rows)


def test_hlc_survives_a_restart_with_an_earlier_clock(db):
    with fieldsync.Store(db, SCHEMA, durability="normal") as store:
        store.set_clock(lambda: T0)
        last = open_task(store)["hlc"]
    with fieldsync.Store(db, SCHEMA, durability="normal") as store:
        store.set_clock(lambda: T0 - 3_600_000)
        result = store.apply(task("T-1", inc={"picked": 1}))
        assert result["hlc"] > last
        assert store.audit()[-1]["device_time"] == T0 - 3_600_000
        verify_chain(store.audit())


def test_clock_exception_reuses_the_last_good_value(store):
    values = iter([T0 + 10])

    def clock():
        return next(values)  # StopIteration after the first call

    store.set_clock(clock)
    open_task(store)
    store.apply(task("T-1", inc={"picked": 1}))  # the clock raises: must not reach C
    times = [r["device_time"] for r in store.audit()]
    assert times[0] == T0 + 10
    assert times[1] == T0 + 10
    verify_chain(store.audit())


def test_set_clock_none_restores_the_system_clock(store):
    store.set_clock(lambda: T0)
    open_task(store)
    store.set_clock(None)
    before = int(time.time() * 1000)
    store.apply(task("T-1", inc={"picked": 1}))
    after = int(time.time() * 1000)
    rows = store.audit()
    assert rows[0]["device_time"] == T0
    assert before - 5 <= rows[1]["device_time"] <= after + 5


def test_audit_since_until_bound_device_time(store):
    now = [T0]
    store.set_clock(lambda: now[0])
    open_task(store)
    for dt in (10, 20, 30):
        now[0] = T0 + dt
        store.apply(task("T-1", inc={"picked": 1}))
    assert [r["device_time"] - T0 for r in store.audit(since=T0 + 10)] == [10, 20, 30]
    assert [r["device_time"] - T0 for r in store.audit(until=T0 + 20)] == [0, 10]
    assert [r["device_time"] - T0 for r in store.audit(since=T0 + 10, until=T0 + 30)] == [10, 20]


EXTREME_CLOCK = """
import sys
sys.path.insert(0, {tests!r})
import fieldsync, support
store = fieldsync.Store({path!r}, support.SCHEMA, durability="normal")
store.set_clock(lambda: {value})
hlcs = []
for i in range(3):
    try:
        hlcs.append(store.apply(support.task("T-1", set={{"status": str(i)}}))["hlc"])
    except fieldsync.FieldSyncError:
        pass  # refusing is allowed; aborting the process is not
store.set_clock(None)
hlcs.append(store.apply(support.task("T-1", set={{"status": "after"}}))["hlc"])
assert all(a < b for a, b in zip(hlcs, hlcs[1:])), hlcs
support.verify_chain(store.audit())
print("ok")
"""


@pytest.mark.parametrize("value", ["0", "-1", "-(2**63)", "2**47", "2**62", "2**63 - 1"])
def test_an_extreme_clock_never_aborts_the_process(tmp_path, value):
    # In a child process: a Swift overflow trap would kill the host (docs/ABI.md).
    code = EXTREME_CLOCK.format(tests=str(Path(__file__).parent),
                                path=str(tmp_path / "clock.db"), value=value)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]

"""The Store API: dicts in and out, errors, persistence, queries, field policies."""

import ctypes
import json
import sqlite3
import threading
import time

import pytest

import fieldsync
from fieldsync import lib
from support import FIELDS, SCHEMA, as_written, in_byte_order, snapshot, strip_fs, task


def open_task(store, id="T-1", **extra):
    return store.apply(task(id, action="open", set={"status": "open", **extra}))


# -- versions and the exception hierarchy ----------------------------------------


def test_version_and_abi():
    assert fieldsync.version().count(".") == 2
    assert fieldsync.abi_version() == 1


@pytest.mark.parametrize("cls,status,name", [
    (fieldsync.ArgError, 1, "FS_ERR_ARG"),
    (fieldsync.JSONError, 2, "FS_ERR_JSON"),
    (fieldsync.SchemaError, 3, "FS_ERR_SCHEMA"),
    (fieldsync.NotFoundError, 4, "FS_ERR_NOT_FOUND"),
    (fieldsync.ConflictError, 5, "FS_ERR_CONFLICT"),
    (fieldsync.FieldSyncIOError, 6, "FS_ERR_IO"),
    (fieldsync.FullError, 7, "FS_ERR_FULL"),
    (fieldsync.CorruptError, 8, "FS_ERR_CORRUPT"),
    (fieldsync.BusyError, 9, "FS_ERR_BUSY"),
    (fieldsync.UpgradeRequiredError, 10, "FS_ERR_UPGRADE_REQUIRED"),
    (fieldsync.ClosedError, 11, "FS_ERR_CLOSED"),
    (fieldsync.InternalError, 12, "FS_ERR_INTERNAL"),
    (fieldsync.TooBigError, 13, "FS_ERR_TOO_BIG"),
])
def test_each_status_has_its_exception_class(cls, status, name):
    assert issubclass(cls, fieldsync.FieldSyncError)
    assert cls.status == status
    assert fieldsync.status_name(status) == name
    with pytest.raises(cls) as info:
        fieldsync._check(status)
    assert info.value.status == status


def test_status_name_of_unknown_code():
    assert fieldsync.status_name(999) == "FS_ERR_UNKNOWN"
    assert fieldsync.status_name(0) == "FS_OK"


# -- dicts in and out --------------------------------------------------------------


def test_apply_returns_result_dict(store):
    result = open_task(store, site="north")
    assert set(result) >= {"record", "outbox_key", "audit_id", "seq", "hlc"}
    assert result["outbox_key"] == "dev-A-1"
    assert result["audit_id"] == result["seq"] == 1
    assert isinstance(result["hlc"], int) and result["hlc"] > 0
    record = result["record"]
    assert record["type"] == "task" and record["id"] == "T-1"
    assert record["status"] == "open" and record["site"] == "north"


def test_get_returns_every_declared_field_null_when_unset(store):
    open_task(store, weight=2.5, urgent=True, lines=[{"sku": "A", "qty": 2}])
    record = store.get("task", "T-1")
    assert set(strip_fs(record)) == {"type", "id", *FIELDS}
    assert record["weight"] == 2.5 and record["urgent"] is True
    assert record["lines"] == [{"sku": "A", "qty": 2}]
    for field in ("site", "on_hand", "locked"):
        assert record[field] is None
    assert record["_fs"]["server_version"] is None
    assert record["_fs"]["pending"] == 1


def test_non_ascii_round_trips(store):
    text = "Zürich – 東京 – 🚚"
    open_task(store, "Ünï-1", site=text)
    assert store.get("task", "Ünï-1")["site"] == text
    assert store.query("task", where={"site": text})[0]["id"] == "Ünï-1"


def test_apply_accepts_json_text(store):
    store.apply('{"action":"open","actor":"op-1","type":"task","id":"T-9","set":{"status":"x"}}')
    assert store.get("task", "T-9")["status"] == "x"


# -- lifetime -----------------------------------------------------------------------


def test_context_manager_closes_the_store(db):
    with fieldsync.Store(db, SCHEMA) as store:
        open_task(store)
        assert not store.closed
    assert store.closed
    for call in (lambda: store.get("task", "T-1"), lambda: open_task(store),
                 store.stats, store.outbox_count, store.audit, store.outbox,
                 lambda: store.query("task"), lambda: store.set_clock(None)):
        with pytest.raises(fieldsync.ClosedError):
            call()
    store.close()  # closing twice is allowed, like sqlite3


def test_library_detects_a_closed_handle(db):
    store = fieldsync.Store(db, SCHEMA)
    handle = store._handle
    store.close()
    out = ctypes.c_void_p()
    action = b'{"action":"a","actor":"b","type":"task","id":"T","set":{"status":"s"}}'
    assert lib.fs_store_apply(handle, action, ctypes.byref(out)) == fieldsync.ClosedError.status
    assert out.value is None
    assert lib.fs_last_error() != b""
    assert lib.fs_store_close(handle) == fieldsync.ClosedError.status


def test_close_of_null_is_ok():
    assert lib.fs_store_close(None) == 0


def test_reopen_keeps_data_and_device_id(db):
    with fieldsync.Store(db, SCHEMA) as store:
        device = store.device_id
        open_task(store, site="north")
        store.apply(task("T-1", inc={"picked": 4}))
        before = snapshot(store)
    with fieldsync.Store(db, SCHEMA) as store:
        assert store.device_id == device
        assert snapshot(store) == before
        result = store.apply(task("T-1", inc={"picked": 1}))
        assert result["seq"] == 3 and result["outbox_key"] == f"{device}-3"
        assert store.get("task", "T-1")["picked"] == 5


def test_reopen_with_another_device_id_is_refused(db):
    with fieldsync.Store(db, SCHEMA, device_id="dev-A") as store:
        open_task(store)
    with pytest.raises(fieldsync.FieldSyncError):
        fieldsync.Store(db, SCHEMA, device_id="dev-B")
    with fieldsync.Store(db, SCHEMA, device_id="dev-A") as store:
        assert store.device_id == "dev-A"


def test_reopen_with_a_different_schema_is_refused(db):
    with fieldsync.Store(db, SCHEMA):
        pass
    changed = {"version": 1, "types": {"task": {"fields": {"status": {"type": "int"}}}}}
    with pytest.raises(fieldsync.SchemaError):
        fieldsync.Store(db, changed)


def test_invalid_schema_is_refused(tmp_path):
    bad = {"version": 1, "types": {"task": {"fields": {"status": {"type": "nope"}}}}}
    with pytest.raises(fieldsync.SchemaError):
        fieldsync.Store(str(tmp_path / "a.db"), bad)
    bad_name = {"version": 1, "types": {"drop table": {"fields": {}}}}
    with pytest.raises(fieldsync.SchemaError):
        fieldsync.Store(str(tmp_path / "b.db"), bad_name)


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(fieldsync.ArgError):
        fieldsync.Store(str(tmp_path / "a.db"), SCHEMA, durability="sometimes")
    with pytest.raises(fieldsync.ArgError):
        fieldsync.Store(str(tmp_path / "b.db"), SCHEMA, device_id="has space")
    with pytest.raises(fieldsync.ArgError):
        fieldsync.Store(str(tmp_path / "c.db"), SCHEMA, busy_timeout_ms=-1)
    # An unknown option key (a typo) is refused, not ignored.
    out = ctypes.c_void_p()
    status = lib.fs_store_open(str(tmp_path / "d.db").encode(), fieldsync._json(SCHEMA),
                               b'{"durabilty":"full"}', ctypes.byref(out))
    assert status == fieldsync.ArgError.status and out.value is None


def test_open_of_a_non_database_file_is_corrupt(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(fieldsync.CorruptError):
        fieldsync.Store(str(path), SCHEMA)


def test_open_in_a_missing_directory_is_io_error(tmp_path):
    with pytest.raises(fieldsync.FieldSyncIOError):
        fieldsync.Store(str(tmp_path / "no" / "such" / "dir.db"), SCHEMA)


# -- errors, and nothing written after them ------------------------------------------


@pytest.mark.parametrize("action,cls", [
    (task("T-1", set={"nope": 1}), fieldsync.SchemaError),                     # unknown field
    ({**task("T-1", set={"status": "x"}), "type": "ghost"}, fieldsync.SchemaError),  # unknown type
    (task("T-1", set={"status": 5}), fieldsync.SchemaError),                   # wrong value type
    (task("T-1", set={"urgent": "yes"}), fieldsync.SchemaError),
    (task("T-1", set={"weight": "heavy"}), fieldsync.SchemaError),
    (task("T-1", set={"on_hand": 1.5}), fieldsync.SchemaError),
    (task("T-1", set={"picked": 3}), fieldsync.SchemaError),                   # set on a counter
    (task("T-1", set={"tags": ["a"]}), fieldsync.SchemaError),                 # set on a set field
    (task("T-1", inc={"site": 1}), fieldsync.SchemaError),                     # inc on a non-counter
    (task("T-1", add={"status": ["a"]}), fieldsync.SchemaError),               # add on a non-set
    (task("T-1", set={"locked": 1}), fieldsync.SchemaError),                   # device_writes: false
    (task("T-2", set={"site": "x"}), fieldsync.SchemaError),                   # create without required
    (task("T-1"), fieldsync.ArgError),                                         # no change
    (task("T-1", delete=True, set={"site": "x"}), fieldsync.ArgError),         # delete + change
    ({"actor": "op", "type": "task", "id": "T-1", "set": {"site": "x"}}, fieldsync.ArgError),
    ({"action": "a", "type": "task", "id": "T-1", "set": {"site": "x"}}, fieldsync.ArgError),
    (task("T-1", set=["site", "x"]), fieldsync.ArgError),                      # wrong JSON shape
    (task("T-1", inc={"picked": 2**63 - 1}), fieldsync.ArgError),              # counter overflow
    (task("T-9", delete=True), fieldsync.NotFoundError),                       # delete of missing
])
def test_bad_action_raises_and_writes_nothing(store, action, cls):
    open_task(store)
    store.apply(task("T-1", inc={"picked": 1}))
    before = snapshot(store)
    with pytest.raises(cls) as info:
        store.apply(action)
    assert info.value.message  # fs_last_error() explained it
    assert snapshot(store) == before


def test_malformed_json_is_json_error(store):
    open_task(store)
    before = snapshot(store)
    out = ctypes.c_void_p(12345)
    for bad in (b'{"action": "a", "actor":', b"\xff\xfe{}", b'{"action":"\xc3\x28"}', b""):
        out.value = 12345
        assert lib.fs_store_apply(store._handle, bad, ctypes.byref(out)) == 2, bad
        assert out.value is None  # outputs are NULLed on failure
        assert lib.fs_last_error() != b""
    with pytest.raises(fieldsync.JSONError):
        store.apply('{"action": ')
    assert snapshot(store) == before


def test_null_arguments_are_arg_errors(store):
    out = ctypes.c_void_p()
    assert lib.fs_store_apply(store._handle, None, ctypes.byref(out)) == 1
    assert lib.fs_store_apply(store._handle, b"{}", None) == 1
    assert lib.fs_store_get(store._handle, None, b"T-1", ctypes.byref(out)) == 1
    assert lib.fs_store_apply(None, b"{}", ctypes.byref(out)) == 1


def test_missing_record_is_not_found(store):
    with pytest.raises(fieldsync.NotFoundError):
        store.get("task", "T-404")
    with pytest.raises(fieldsync.SchemaError):
        store.get("ghost", "T-1")


def test_discard_of_pending_entry_is_conflict(store):
    key = open_task(store)["outbox_key"]
    before = snapshot(store)
    with pytest.raises(fieldsync.ConflictError):
        store.discard(key)
    with pytest.raises(fieldsync.NotFoundError):
        store.discard("dev-A-999")
    assert snapshot(store) == before


def test_oversized_action_is_too_big(store):
    open_task(store)
    before = snapshot(store)
    with pytest.raises(fieldsync.TooBigError):
        store.apply(task("T-1", set={"site": "x"}, input={"blob": "x" * (1024 * 1024)}))
    with pytest.raises(fieldsync.TooBigError):
        store.get("task", "x" * 257)
    with pytest.raises(fieldsync.NotFoundError):
        store.get("task", "x" * 256)  # the longest id is still an id
    with pytest.raises(fieldsync.TooBigError):
        store.apply(task("x" * 257, set={"status": "open"}))
    assert snapshot(store) == before


def test_nul_in_a_name_is_refused_before_the_call(store):
    with pytest.raises(fieldsync.ArgError):
        store.get("task", "T\x00-1")


# -- field policies -----------------------------------------------------------------


def test_set_null_clears_a_field(store):
    open_task(store, site="north", weight=1.5)
    record = store.apply(task("T-1", set={"site": None, "weight": None}))["record"]
    assert record["site"] is None and record["weight"] is None
    assert store.get("task", "T-1")["site"] is None


def test_counter_increments_sum(store):
    open_task(store)
    for delta in (1, 5, -2, 10):
        store.apply(task("T-1", inc={"picked": delta}))
    assert store.get("task", "T-1")["picked"] == 14


def test_set_add_and_remove(store):
    open_task(store)
    store.apply(task("T-1", add={"tags": ["urgent", "cold", "b"]}))
    assert store.get("task", "T-1")["tags"] == ["b", "cold", "urgent"]
    store.apply(task("T-1", add={"tags": ["cold", "a"]}, remove={"tags": ["b"]}))
    assert store.get("task", "T-1")["tags"] == ["a", "cold", "urgent"]
    store.apply(task("T-1", remove={"tags": ["a", "cold", "urgent", "never-there"]}))
    assert store.get("task", "T-1")["tags"] in ([], None)


def test_set_elements_are_distinct_strings_not_canonical_equivalents(store):
    # "é" (U+00E9) and "e" + U+0301 are different strings (and different JSON);
    # code point order puts "Å" U+212B last although it normalises to U+00C5.
    open_task(store)
    store.apply(task("T-1", add={"tags": ["é", "e\u0301", "\u212b", "\u00c6", "Z"]}))
    assert store.get("task", "T-1")["tags"] == sorted(["é", "e\u0301", "\u212b", "\u00c6", "Z"])


def test_json_field_keeps_keys_that_are_canonical_equivalents_apart(db):
    # Decided (formerly defect D1): object keys are kept exact by their UTF-8
    # bytes and written in code point (byte) order. Keys differing only in
    # Unicode normalization are distinct keys with their own values; only an
    # exactly duplicated key is refused (FS_ERR_JSON, nothing written).
    values = [
        {"e\u0301": 2, "é": 1},
        {"\u00c5": 4, "\u212b": 3, "A\u030a": 5},
        {"d\u0323\u0307": "below-above", "d\u0307\u0323": "above-below"},
        {"k": [{"é": 1, "e\u0301": {"é": None, "e\u0301": [True]}}]},
    ]

    with fieldsync.Store(db, SCHEMA, durability="normal", device_id="dev-A") as store:
        for i, value in enumerate(values):
            id = f"T-{i}"
            store.apply(task(id, action="open", set={"status": "open", "lines": value}))
            for got in (store.get("task", id)["lines"],
                        store.query("task", where={"id": id})[0]["lines"],
                        store.outbox(id=id)[0]["ops"]["set"]["lines"]):
                assert got == value
                assert as_written(got) == in_byte_order(value)
        # Changing one key's value leaves its canonical equivalent alone.
        store.apply(task("T-0", set={"lines": {"e\u0301": 2, "é": 10}}))
        assert as_written(store.get("task", "T-0")["lines"]) == [("e\u0301", 2), ("é", 10)]
        # An exact duplicate key is still refused, and nothing is written.
        before = snapshot(store)
        for lines in ('{"é":1,"é":2}', '{"é":1,"e\u0301":2,"é":1}',
                      '{"k":[{"e\u0301":1,"e\u0301":2}]}'):
            text = ('{"action":"edit","actor":"op-1","type":"task","id":"T-0",'
                    '"set":{"lines":' + lines + "}}")
            with pytest.raises(fieldsync.JSONError, match="duplicate"):
                store.apply(text)
            assert snapshot(store) == before
        # A duplicate key at the top of the action is refused as well.
        with pytest.raises(fieldsync.JSONError, match="duplicate"):
            store.apply('{"action":"edit","actor":"op-1","type":"task","id":"T-0","id":"T-0",'
                        '"set":{"status":"x"}}')
        assert snapshot(store) == before
    # Kept in the file: reopened, every value reads back the same.
    with fieldsync.Store(db, SCHEMA, durability="normal") as store:
        assert as_written(store.get("task", "T-0")["lines"]) == [("e\u0301", 2), ("é", 10)]
        for i, value in enumerate(values[1:], 1):
            assert as_written(store.get("task", f"T-{i}")["lines"]) == in_byte_order(value)


def test_set_elements_that_are_canonical_equivalents_add_and_remove_apart(store):
    # Like object keys, set elements are exact strings: elements that differ only
    # in normalization stay two elements, and removing one leaves the other.
    open_task(store)
    store.apply(task("T-1", add={"tags": ["é", "e\u0301"]}))
    assert store.get("task", "T-1")["tags"] == sorted(["é", "e\u0301"])
    store.apply(task("T-1", remove={"tags": ["e\u0301"]}))
    assert store.get("task", "T-1")["tags"] == ["é"]


@pytest.mark.parametrize("literal", ["9223372036854775808", "-9223372036854775809",
                                     "100000000000000000000000000000", "1e400", "-1e400"])
@pytest.mark.parametrize("where", ["status", "on_hand", "input"])
def test_numbers_beyond_int64_and_double_are_refused(store, literal, where):
    # Valid JSON by RFC 8259's grammar, but outside what the engine represents
    # (int64, finite double): refused, nothing written. The library answers
    # FS_ERR_JSON ("too big integer", "real number overflow"); the header does
    # not document this range limit yet (reported to the lead).
    open_task(store)
    before = snapshot(store)
    if where == "input":
        text = ('{"action": "a", "actor": "b", "type": "task", "id": "T-1", '
                f'"inc": {{"picked": 1}}, "input": {{"n": {literal}}}}}')
    else:
        text = f'{{"action": "a", "actor": "b", "type": "task", "id": "T-1", "set": {{"{where}": {literal}}}}}'
    with pytest.raises((fieldsync.JSONError, fieldsync.SchemaError)):
        store.apply(text)
    assert snapshot(store) == before


def test_nul_in_a_value_is_refused_or_kept(store):
    # JSON allows "\u0000"; a library may refuse it, but then nothing is written.
    try:
        open_task(store, site="a\x00b")
    except fieldsync.FieldSyncError:
        assert store.outbox_count() == 0 and store.audit() == []
    else:
        assert store.get("task", "T-1")["site"] == "a\x00b"


def test_delete_tombstones_the_record(store):
    open_task(store)
    open_task(store, "T-2")
    result = store.apply(task("T-1", delete=True))
    assert result["record"]["_fs"]["deleted"] is True
    with pytest.raises(fieldsync.NotFoundError):
        store.get("task", "T-1")
    assert [r["id"] for r in store.query("task")] == ["T-2"]
    entry = store.outbox(id="T-1")[-1]
    assert entry["ops"] == {"delete": True}
    with pytest.raises(fieldsync.NotFoundError):
        store.apply(task("T-1", delete=True))


# -- query ----------------------------------------------------------------------------


@pytest.fixture
def filled(store):
    rows = [("T-1", "open", "north", 3, 1.5, True), ("T-2", "done", "south", 7, 0.5, False),
            ("T-3", "open", "south", 5, 2.0, False), ("T-4", "open", None, 0, None, None)]
    for id, status, site, picked, weight, urgent in rows:
        store.apply(task(id, set={"status": status, "site": site, "weight": weight,
                                  "urgent": urgent}))
        if picked:
            store.apply(task(id, inc={"picked": picked}))
    return store


def ids(rows):
    return [r["id"] for r in rows]


def test_query_defaults_to_id_order_without_fs(filled):
    rows = filled.query("task")
    assert ids(rows) == ["T-1", "T-2", "T-3", "T-4"]
    assert all("_fs" not in r for r in rows)
    assert rows[0] == strip_fs(filled.get("task", "T-1"))


def test_query_filters(filled):
    assert ids(filled.query("task", where={"status": "open"})) == ["T-1", "T-3", "T-4"]
    assert ids(filled.query("task", where={"site": None})) == ["T-4"]
    assert ids(filled.query("task", where={"picked": {">=": 3, "<": 7}})) == ["T-1", "T-3"]
    assert ids(filled.query("task", where={"status": {"!=": "open"}})) == ["T-2"]
    assert ids(filled.query("task", where={"urgent": True})) == ["T-1"]
    assert ids(filled.query("task", where={"weight": {">": 1.0}})) == ["T-1", "T-3"]
    assert ids(filled.query("task", where={"id": {"<=": "T-2"}})) == ["T-1", "T-2"]
    assert ids(filled.query("task", where={"status": "open", "site": "south"})) == ["T-3"]


def test_query_with_several_conditions_is_right_every_time(filled):
    # Several operators on one field, and several fields: run many times so that
    # an order-dependent pairing of conditions and values cannot pass by luck.
    for _ in range(25):
        assert ids(filled.query("task", where={"picked": {">=": 3, "<": 7}})) == ["T-1", "T-3"]
        assert ids(filled.query("task", where={"picked": {">": 2, "<=": 5, "!=": 4}})) == [
            "T-1", "T-3"]
        assert ids(filled.query("task", where={"status": "open", "site": "south"})) == ["T-3"]
        assert ids(filled.query("task", where={"site": "south", "picked": {">": 5}})) == ["T-2"]


def test_query_order_and_limit(filled):
    assert ids(filled.query("task", where={"picked": {">": 0}}, order_by="picked")) == [
        "T-1", "T-3", "T-2"]
    assert ids(filled.query("task", where={"picked": {">": 0}}, order_by="picked",
                            desc=True)) == ["T-2", "T-3", "T-1"]
    assert ids(filled.query("task", order_by="id", desc=True, limit=2)) == ["T-4", "T-3"]
    assert filled.query("task", limit=0) == []


def test_query_errors(filled):
    with pytest.raises(fieldsync.SchemaError):
        filled.query("ghost")
    with pytest.raises(fieldsync.SchemaError):
        filled.query("task", where={"nope": 1})
    with pytest.raises(fieldsync.SchemaError):
        filled.query("task", where={"tags": "a"})
    with pytest.raises(fieldsync.SchemaError):
        filled.query("task", order_by="lines")
    with pytest.raises(fieldsync.SchemaError):
        filled.query("task", where={"picked": "many"})
    with pytest.raises((fieldsync.ArgError, fieldsync.SchemaError)):
        filled.query("task", where={"picked": {"~": 1}})


# -- outbox, audit, stats -----------------------------------------------------------------


def test_outbox_entries(store):
    open_task(store, on_hand=7)
    store.apply(task("T-1", actor="op-2", action="pick", inc={"picked": 2},
                     add={"tags": ["x"]}))
    entries = store.outbox()
    assert [e["key"] for e in entries] == ["dev-A-1", "dev-A-2"]
    first, second = entries
    assert first["seq"] == 1 and first["type"] == "task" and first["id"] == "T-1"
    assert first["ops"] == {"set": {"status": "open", "on_hand": 7}}
    assert second["ops"] == {"inc": {"picked": 2}, "add": {"tags": ["x"]}}
    assert second["actor"] == "op-2" and second["action"] == "pick"
    assert second["state"] == "pending" and second["attempts"] == 0
    assert second["reason"] is None and second["schema_version"] == 1
    assert second["hlc"] > first["hlc"]
    assert store.outbox_count() == 2
    assert store.outbox(state="pending", limit=1) == [first]
    assert store.outbox(state="rejected") == []
    assert store.outbox(type="task", id="T-2") == []
    with pytest.raises(fieldsync.ArgError):
        store.outbox(state="lost")


def test_audit_rows_and_filters(store):
    open_task(store)
    store.apply(task("T-1", actor="op-2", action="pick", inc={"picked": 1},
                     input={"scan": "0123"}))
    store.apply(task("T-1", actor="op-2", action="pick", inc={"picked": 1}))
    rows = store.audit()
    assert [r["audit_id"] for r in rows] == [1, 2, 3]
    assert rows[0]["input"] is None and rows[1]["input"] == {"scan": "0123"}
    assert rows[1]["outbox_keys"] == ["dev-A-2"] and rows[1]["device_id"] == "dev-A"
    assert all(r["outcome"] == "pending" and r["server_received_at"] is None for r in rows)
    assert [r["audit_id"] for r in store.audit(actor="op-2")] == [2, 3]
    assert [r["audit_id"] for r in store.audit(action="open")] == [1]
    assert [r["audit_id"] for r in store.audit(desc=True, limit=2)] == [3, 2]
    assert store.audit(id="T-2") == []


def test_stats(store):
    open_task(store)
    store.apply(task("T-1", inc={"picked": 1}))
    stats = store.stats()
    assert stats["device_id"] == "dev-A"
    assert stats["schema_version"] == 1
    assert stats["records"] == 1 and stats["outbox_pending"] == 2 and stats["audit_rows"] == 2
    assert all(isinstance(v, (int, float, str)) for v in stats.values())


def test_threads_share_one_store(store):
    open_task(store)
    errors = []

    def work():
        try:
            for _ in range(50):
                store.apply(task("T-1", inc={"picked": 1}))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.get("task", "T-1")["picked"] == 200
    assert store.outbox_count() == 201 == len(store.audit())


def test_a_foreign_write_lock_gives_busy_after_the_timeout(tmp_path):
    path = str(tmp_path / "busy.db")
    with fieldsync.Store(path, SCHEMA, durability="normal", busy_timeout_ms=200) as store:
        open_task(store)
        before = snapshot(store)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer, as far as SQLite knows
        try:
            started = time.monotonic()
            with pytest.raises(fieldsync.BusyError):
                store.apply(task("T-1", inc={"picked": 1}))
            assert 0.15 <= time.monotonic() - started < 3
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert snapshot(store) == before
        store.apply(task("T-1", inc={"picked": 1}))  # and works once the lock is gone


def test_the_host_can_read_the_local_view_with_plain_sql(store, db):
    open_task(store, site="north", urgent=True, lines={"a": 1})
    store.apply(task("T-1", add={"tags": ["b", "a"]}, inc={"picked": 2}))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        con.row_factory = sqlite3.Row
        columns = {r["name"] for r in con.execute("PRAGMA table_info(task)")}
        assert columns == {"id", *FIELDS}
        row = dict(con.execute("SELECT * FROM task WHERE id = 'T-1'").fetchone())
    assert row["status"] == "open" and row["site"] == "north" and row["picked"] == 2
    assert row["urgent"] == 1
    assert json.loads(row["tags"]) == ["a", "b"] and json.loads(row["lines"]) == {"a": 1}


def test_last_error_is_empty_after_a_success(store):
    with pytest.raises(fieldsync.NotFoundError):
        store.get("task", "missing")
    open_task(store)
    assert lib.fs_last_error() == b""


def test_error_message_is_per_thread(store):
    with pytest.raises(fieldsync.NotFoundError):
        store.get("task", "missing")
    message = lib.fs_last_error()
    seen = []
    t = threading.Thread(target=lambda: seen.append(lib.fs_last_error()))
    t.start()
    t.join()
    assert message != b"" and seen == [b""]

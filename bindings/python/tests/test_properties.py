"""Property tests: random action sequences against a pure-Python model of the
local view, with the outbox/audit invariants (docs/ARCHITECTURE.md#invariants) checked after each step."""

import json
import os
import shutil
import tempfile
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import fieldsync
from support import FIELDS, SCHEMA, snapshot, strip_fs, task, verify_chain

IDS = ["T-0", "T-1", "T-2", "Ü-3"]

# No NUL: whether "\u0000" survives in a string is tested on its own. Besides any
# Unicode, draw often from characters where code point order, UTF-16 order and
# canonical equivalence disagree ("é" vs "e" + U+0301, "Å" U+212B vs U+00C5).
TRICKY = ["e", "é", "e\u0301", "Å", "\u212b", "A\u030a", "Z", "\uffff", "😀", "",
          'q"uote', "back\\slash", "new\nline"]
text = (st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=12)
        | st.sampled_from(TRICKY))
int64 = st.integers(-(2**63), 2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)


def nfc(key):
    return unicodedata.normalize("NFC", key)


def objects(keys, values, max_size=3):
    """Dicts with any distinct keys, canonical equivalents included ("é" and
    "e" + U+0301 both drawn from TRICKY): decided (formerly defect D1), the
    library keeps object keys exact by their UTF-8 bytes, never normalised, and
    refuses only an exactly duplicated key (which a dict cannot hold; see
    test_exact_duplicate_keys_are_refused_and_nothing_is_written)."""
    return st.dictionaries(keys, values, max_size=max_size)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | text,
    lambda inner: st.lists(inner, max_size=3) | objects(text, inner),
    max_leaves=8,
)
SETTABLE = {
    "site": st.none() | text,
    "weight": st.none() | finite,
    "urgent": st.none() | st.booleans(),
    "on_hand": st.none() | int64,
    "lines": json_values,  # a JSON null clears it too
}
fractional = st.floats(-1e6, 1e6).filter(lambda f: f != int(f))
set_ops = st.fixed_dictionaries({}, optional={**SETTABLE, "status": text})
deltas = st.integers(-1000, 1000).filter(bool)
tags = st.lists(text, min_size=1, max_size=4)
ids = st.sampled_from(IDS)

SETTINGS = settings(max_examples=120, stateful_step_count=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def norm(value):
    """Compare JSON values by content: 1 == 1.0, but true != 1."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v) for v in value]
    return value


class Model:
    """What the local view must be, from the actions alone."""

    def __init__(self):
        self.records = {}
        self.deleted = set()

    def apply(self, id, ops):
        if id not in self.records:
            self.records[id] = {"type": "task", "id": id, **{f: None for f in FIELDS}}
        rec = self.records[id]
        for field, value in ops.get("set", {}).items():
            rec[field] = value
        for field, delta in ops.get("inc", {}).items():
            rec[field] = (rec[field] or 0) + delta
        for field, items in ops.get("add", {}).items():
            rec[field] = sorted(set(rec[field] or []) | set(items))
        for field, items in ops.get("remove", {}).items():
            rec[field] = sorted(set(rec[field] or []) - set(items))
        if ops.get("delete"):
            del self.records[id]
            self.deleted.add(id)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="fieldsync-prop-")
        self.path = os.path.join(self.dir, "device.db")
        self.store = fieldsync.Store(self.path, SCHEMA, durability="normal", device_id="dev-P")
        self.model = Model()
        self.applied = 0

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- valid actions --------------------------------------------------------

    def do(self, id, **ops):
        if id in self.model.deleted:
            return  # a tombstoned id is not reused here
        if id not in self.model.records:
            ops.setdefault("set", {})
            if not isinstance(ops["set"].get("status"), str):
                ops["set"]["status"] = "open"  # creating requires the required field
        result = self.store.apply(task(id, **ops))
        self.applied += 1
        self.model.apply(id, ops)
        assert result["seq"] == result["audit_id"] == self.applied
        if ops.get("delete"):
            assert result["record"]["_fs"]["deleted"] is True
        else:
            assert norm(strip_fs(result["record"])) == norm(self.model.records[id])

    @rule(id=ids, values=set_ops)
    def set_fields(self, id, values):
        if values or id not in self.model.records:
            self.do(id, set=values)

    @rule(id=ids, delta=deltas)
    def increment(self, id, delta):
        self.do(id, inc={"picked": delta})

    @rule(id=ids, items=tags)
    def add_tags(self, id, items):
        self.do(id, add={"tags": items})

    @rule(id=ids, items=tags)
    def remove_tags(self, id, items):
        self.do(id, remove={"tags": items})

    @rule(id=ids, values=set_ops, delta=deltas, added=tags, removed=tags)
    def mixed(self, id, values, delta, added, removed):
        # add and remove of one element in one action is left out: its meaning is not specified
        removed = [r for r in removed if r not in added] or None
        ops = {"set": values, "inc": {"picked": delta}, "add": {"tags": added}}
        if removed:
            ops["remove"] = {"tags": removed}
        self.do(id, **ops)

    @precondition(lambda self: self.model.records)
    @rule(data=st.data())
    def delete(self, data):
        id = data.draw(st.sampled_from(sorted(self.model.records)))
        self.do(id, delete=True)

    @rule()
    def reopen(self):
        self.store.close()
        self.store = fieldsync.Store(self.path, SCHEMA, durability="normal")

    # -- invalid actions --------------------------------------------------------

    @rule(id=ids, data=st.data())
    def invalid(self, id, data):
        kind = data.draw(st.sampled_from([
            "unknown_field", "unknown_type", "wrong_type", "inc_wrong", "set_counter",
            "set_locked", "inc_non_counter", "add_wrong",
        ]))
        valid_part = data.draw(set_ops)
        action = task(id, set=dict(valid_part, status="open"))
        if kind == "unknown_field":
            name = data.draw(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
                             .filter(lambda n: n not in FIELDS))
            action["set"][name] = data.draw(json_values)
        elif kind == "unknown_type":
            action["type"] = data.draw(st.sampled_from(["job", "Task", "tasks", "task "]))
        elif kind == "wrong_type":
            field, bad = data.draw(st.sampled_from([
                # Integers stay in int64: beyond it the library refuses the JSON
                # itself (FS_ERR_JSON), see test_numbers_beyond_int64_and_double_are_refused.
                ("status", int64 | st.booleans() | st.lists(text, max_size=2)),
                ("site", int64 | finite | objects(text, text, max_size=2)),
                ("weight", text | st.booleans() | st.lists(finite, max_size=2)),
                ("urgent", text | int64 | finite),
                ("on_hand", text | st.booleans() | fractional),
            ]))
            action["set"][field] = data.draw(bad)
        elif kind == "inc_wrong":
            action["inc"] = {"picked": data.draw(
                text | st.booleans() | st.none() | fractional)}
        elif kind == "set_counter":
            action["set"]["picked"] = data.draw(st.integers(-10, 10))
        elif kind == "set_locked":
            action["set"]["locked"] = data.draw(st.integers(-10, 10))
        elif kind == "inc_non_counter":
            field = data.draw(st.sampled_from(["on_hand", "site", "weight", "tags"]))
            action["inc"] = {field: 1}
        elif kind == "add_wrong":
            field = data.draw(st.sampled_from(["status", "site", "picked", "lines"]))
            action["add"] = {field: ["x"]}
        before = snapshot(self.store)
        with pytest.raises(fieldsync.SchemaError):
            self.store.apply(action)
        assert snapshot(self.store) == before

    # -- invariants --------------------------------------------------------------

    @invariant()
    def local_view_matches_the_model(self):
        for id in IDS:
            if id in self.model.records:
                record = self.store.get("task", id)
                assert norm(strip_fs(record)) == norm(self.model.records[id]), id
            else:
                with pytest.raises(fieldsync.NotFoundError):
                    self.store.get("task", id)
        rows = self.store.query("task")
        assert [r["id"] for r in rows] == sorted(self.model.records)
        assert [norm(r) for r in rows] == [norm(self.model.records[i]) for i in sorted(self.model.records)]

    @invariant()
    def one_outbox_entry_and_one_audit_row_per_apply(self):
        outbox = self.store.outbox()
        audit = self.store.audit()
        assert self.store.outbox_count() == len(outbox) == len(audit) == self.applied
        keys = {e["key"] for e in outbox}
        assert {k for row in audit for k in row["outbox_keys"]} == keys
        assert all(len(row["outbox_keys"]) == 1 for row in audit)
        hlcs = [row["hlc"] for row in audit]
        assert hlcs == sorted(set(hlcs))
        verify_chain(audit)


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = SETTINGS


# -- one-shot properties ----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(value=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_string_round_trips_or_is_refused_cleanly(tmp_path_factory, value):
    path = str(tmp_path_factory.mktemp("s") / "d.db")
    with fieldsync.Store(path, SCHEMA, durability="normal") as store:
        try:
            store.apply(task("T-1", set={"status": value}, input={"v": value}))
        except fieldsync.FieldSyncError:
            # Only a NUL may be refused (C strings), and then nothing is written.
            assert "\x00" in value
            assert store.outbox_count() == 0 and store.audit() == []
            return
        assert store.get("task", "T-1")["status"] == value
        assert store.audit()[0]["input"] == {"v": value}
        assert store.query("task", where={"status": value})[0]["id"] == "T-1"
        verify_chain(store.audit())


@settings(max_examples=100, deadline=None)
@given(value=json_values)
def test_json_field_round_trips(tmp_path_factory, value):
    path = str(tmp_path_factory.mktemp("j") / "d.db")
    with fieldsync.Store(path, SCHEMA, durability="normal") as store:
        store.apply(task("T-1", set={"status": "s", "lines": value}))
        assert norm(store.get("task", "T-1")["lines"]) == norm(value)
        assert norm(store.outbox()[0]["ops"]["set"]["lines"]) == norm(value)


@settings(max_examples=100, deadline=None)
@given(value=int64, weight=finite)
def test_numbers_round_trip_exactly(tmp_path_factory, value, weight):
    path = str(tmp_path_factory.mktemp("n") / "d.db")
    with fieldsync.Store(path, SCHEMA, durability="normal") as store:
        store.apply(task("T-1", set={"status": "s", "on_hand": value, "weight": weight}))
        record = store.get("task", "T-1")
        assert record["on_hand"] == value and type(record["on_hand"]) is int
        assert record["weight"] == weight


EQUIVALENT_KEYS = [("é", "e\u0301"), ("\u212b", "\u00c5"), ("A\u030a", "\u00c5"),
                   ("d\u0307\u0323", "d\u0323\u0307")]


def key_order(value):
    """The value with every object as a list of (key, value) in the order the
    keys were written: json.loads keeps it."""
    if isinstance(value, dict):
        return [(k, key_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [key_order(v) for v in value]
    return norm(value)


def byte_order(value):
    """What canonical output must be: keys in UTF-8 byte (code point) order."""
    if isinstance(value, dict):
        return [(k, byte_order(value[k])) for k in sorted(value, key=lambda k: k.encode())]
    if isinstance(value, list):
        return [byte_order(v) for v in value]
    return norm(value)


@settings(max_examples=40, deadline=None)
@given(value=json_values, key=st.sampled_from(EQUIVALENT_KEYS),
       where=st.sampled_from(["input", "lines", "nested"]))
def test_keys_differing_only_in_normalization_are_kept_apart(tmp_path_factory, value, key, where):
    # Decided (formerly defect D1): two keys equal after normalization but not
    # byte for byte are two keys, each with its own value, in byte order.
    assert key[0] != key[1] and nfc(key[0]) == nfc(key[1])
    obj = {key[1]: 1, key[0]: value}
    good = [value, {"x": obj}] if where == "nested" else obj
    path = str(tmp_path_factory.mktemp("k") / "d.db")
    with fieldsync.Store(path, SCHEMA, durability="normal") as store:
        store.apply(task("T-1", set={"status": "s"}))
        action = task("T-1", inc={"picked": 1}, input=good) if where != "lines" else \
            task("T-1", set={"lines": good})
        store.apply(action)
        rows = store.audit()
        verify_chain(rows)
        if where == "lines":
            got = [store.get("task", "T-1")["lines"], store.outbox()[-1]["ops"]["set"]["lines"]]
        else:
            got = [rows[-1]["input"]]
        for out in got:
            assert norm(out) == norm(good)
            assert key_order(out) == byte_order(good)
            inner = out[1]["x"] if where == "nested" else out
            assert list(inner) == sorted(key, key=lambda k: k.encode())
            assert norm(inner[key[0]]) == norm(value) and inner[key[1]] == 1


def dumps(value):
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def raw_action(where, members):
    """An action's JSON text whose object (in input, lines or nested) has the
    given raw members ("key":value text), so a key can be written twice."""
    obj = "{" + ",".join(members) + "}"
    if where == "nested":
        obj = '[{"x":' + obj + "}]"
    head = '{"action":"edit","actor":"op-1","type":"task","id":"T-1",'
    if where == "lines":
        return head + '"set":{"lines":' + obj + "}}"
    return head + '"inc":{"picked":1},"input":' + obj + "}"


@settings(max_examples=40, deadline=None)
@given(value=json_values, other=json_values,
       key=st.sampled_from(EQUIVALENT_KEYS) | text.map(lambda t: (t,)),
       where=st.sampled_from(["input", "lines", "nested"]))
def test_exact_duplicate_keys_are_refused_and_nothing_is_written(tmp_path_factory, value, other,
                                                                  key, where):
    # The same key bytes twice are refused with FS_ERR_JSON, even with a
    # canonical equivalent between them, and nothing is written.
    k = dumps(key[0])
    between = [f"{dumps(key[1])}:1"] if len(key) > 1 else []
    bad = raw_action(where, [f"{k}:{dumps(value)}", *between, f"{k}:{dumps(other)}"])
    path = str(tmp_path_factory.mktemp("d") / "d.db")
    with fieldsync.Store(path, SCHEMA, durability="normal") as store:
        store.apply(task("T-1", set={"status": "s"}))
        before = snapshot(store)
        with pytest.raises(fieldsync.JSONError, match="duplicate"):
            store.apply(bad)
        assert snapshot(store) == before
        # Without the second copy the same text is accepted.
        store.apply(raw_action(where, [f"{k}:{dumps(value)}", *between]))
        assert store.outbox_count() == 2
        verify_chain(store.audit())


@settings(max_examples=40, deadline=None)
@given(items=st.lists(st.sampled_from(TRICKY) | text, min_size=1, max_size=6))
def test_set_elements_stay_distinct_code_point_strings(tmp_path_factory, items):
    # As object keys are, set elements are compared as exact strings.
    path = str(tmp_path_factory.mktemp("e") / "d.db")
    with fieldsync.Store(path, SCHEMA, durability="normal") as store:
        store.apply(task("T-1", set={"status": "s"}, add={"tags": items}))
        assert store.get("task", "T-1")["tags"] == sorted(set(items))
        store.apply(task("T-1", remove={"tags": items[:1]}))
        assert store.get("task", "T-1")["tags"] == sorted(set(items) - {items[0]})

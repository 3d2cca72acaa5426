"""What the C door accepts as JSON is what docs/ABI.md says, checked against an
oracle that shares no code with the library: Python's own json module with
the documented rules applied on top (a key repeated in one object, "\\u0000",
a lone surrogate, an integer outside 64 bits, a number beyond a double,
nesting past FS_MAX_DEPTH). Each text goes in as an action's `input` through
fs_store_apply; an accepted one must come back from fs_audit_query as the
value Python read."""

from __future__ import annotations

import json
import math
from typing import Any, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adversarial import Dev, documented_depth_limit, ok

FS_ERR_JSON = 2
INT64 = (-(2**63), 2**63 - 1)

#: Pieces that reach every rule: escapes, surrogates, UTF-8 of each length,
#: numbers at the 64-bit and double edges, duplicates, nesting.
PIECES = [
    "{", "}", "[", "]", ",", ":", " ", "\n", "\t", '"', "\\", '"a"', '"key"', '"é"', '"e\u0301"', '"\\u00e9"',
    '"\\ud83d\\ude00"', '"\\ud83d"', '"\\ude00"', '"\\u0000"', '"\\/\\b\\f\\n\\r\\t"', '"\\x"', '"日本"', '"😀"',
    "0", "-0", "1", "-1", "10", "01", "1.5", "-1.5e3", "1e400", "1e-400", "2.", ".5", "9223372036854775807",
    "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "1E+2", "true", "false", "null",
    "tru", "NaN", "Infinity", '{"a":1}', '{"a":1,"a":2}', '{"a":{"b":1,"b":1}}', "[1,2,3]", "[1,]", '{"a":}',
    "\x7f", "\x01",
]


class Refused(Exception):
    pass


def _pairs(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Refused("a key repeated in one object")
    return dict(pairs)


def _int(text: str) -> int:
    value = int(text)
    if not INT64[0] <= value <= INT64[1]:
        raise Refused("an integer outside 64 bits")
    return value


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise Refused("a number beyond a double")
    return value


def _constant(text: str) -> Any:
    raise Refused(f"{text} is not JSON")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _strings_ok(value: Any) -> bool:
    """No NUL and no lone surrogate in any string or key."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_strings_ok(k) and _strings_ok(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_strings_ok(v) for v in value)
    return True


def documented(text: bytes, depth: int) -> Tuple[bool, Any]:
    """(accepted, value) as docs/ABI.md says, read by Python's json."""
    try:
        value = json.loads(text.decode("utf-8"), object_pairs_hook=_pairs, parse_int=_int,
                           parse_float=_float, parse_constant=_constant)
    except (Refused, ValueError, RecursionError):
        return False, None
    if _depth(value) > depth or not _strings_ok(value):
        return False, None
    return True, value


def same(a: Any, b: Any) -> bool:
    """Equal with JSON's kinds kept apart (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


_dev: Optional[Dev] = None


def device(tmp_path_factory) -> Dev:
    global _dev
    if _dev is None:
        _dev = Dev.must_open(tmp_path_factory.mktemp("json-rules") / "device.db", options={"device_id": "rules"})
    return _dev


def through_the_door(dev: Dev, text: bytes) -> Tuple[bool, Any]:
    """(accepted, value read back) for `text` as an action's input."""
    action = (b'{"action":"probe","actor":"op","type":"task","id":"T-1","set":{"status":"s"},"input":'
              + text + b"}")
    outcome = dev.apply(action)
    if outcome.status != 0:
        assert outcome.status == FS_ERR_JSON, f"{text!r}: {outcome!r}"
        return False, None
    rows = ok(dev.audit_query({"limit": 1, "desc": True})).value
    return True, rows[0]["input"]


texts = st.lists(st.sampled_from(PIECES), min_size=1, max_size=12).map(lambda ps: "".join(ps).encode("utf-8"))
values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=INT64[0], max_value=INT64[1])
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
).map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8"))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts | values)
def test_the_door_accepts_what_the_documented_rules_accept(text, tmp_path_factory):
    dev = device(tmp_path_factory)
    expected, value = documented(text, documented_depth_limit() - 1)  # the action is one level
    got, back = through_the_door(dev, text)
    assert got == expected, f"{text!r}: the door {'accepted' if got else 'refused'} it, the rules say otherwise"
    if got:
        assert same(back, value), f"{text!r}: read back as {back!r}, Python reads {value!r}"


def test_nesting_at_and_past_the_limit(tmp_path_factory):
    dev = device(tmp_path_factory)
    limit = documented_depth_limit() - 1
    for depth, accepted in ((limit, True), (limit + 1, False)):
        text = ("[" * depth + "]" * depth).encode()
        assert documented(text, limit)[0] is accepted
        assert through_the_door(dev, text)[0] is accepted, depth

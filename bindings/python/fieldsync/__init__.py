"""fieldsync: Python binding of libfieldsync, an offline-first sync engine.

A thin ctypes layer over include/fieldsync.h: dicts in and out (the C library
speaks JSON), one exception class per status code, and a context manager, in
the manner of the standard ``sqlite3`` module::

    >>> import fieldsync
    >>> with fieldsync.Store("device.db", schema) as store:
    ...     store.apply({"action": "open_task", "actor": "op-17", "type": "task",
    ...                  "id": "T-1", "set": {"status": "open"}})
    ...     store.get("task", "T-1")["status"]
    'open'

The library is found through the environment variable FIELDSYNC_LIB, else the
repository's build/ folder, else the system's library path.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from ctypes import byref, c_int64, c_void_p
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from ._lib import CLOCK_FN, lib

__all__ = [
    "Store",
    "version",
    "abi_version",
    "status_name",
    "FieldSyncError",
    "ArgError",
    "JSONError",
    "SchemaError",
    "NotFoundError",
    "ConflictError",
    "FieldSyncIOError",
    "FullError",
    "CorruptError",
    "BusyError",
    "UpgradeRequiredError",
    "ClosedError",
    "InternalError",
    "TooBigError",
    "lib",
]

JSONValue = Any
Record = Dict[str, JSONValue]

# --------------------------------------------------------------------------
# Versions and errors
# --------------------------------------------------------------------------


def version() -> str:
    """Return the loaded library's version, e.g. ``fieldsync.version() -> '0.1.0'``."""
    return lib.fs_version().decode("ascii")


def abi_version() -> int:
    """Return the loaded library's ABI version, e.g. ``fieldsync.abi_version() -> 1``."""
    return int(lib.fs_abi_version())


def status_name(status: int) -> str:
    """Return the C name of a status code: ``fieldsync.status_name(3) -> 'FS_ERR_SCHEMA'``."""
    return lib.fs_status_name(status).decode("ascii")


class FieldSyncError(Exception):
    """Base class of every error the library reports.

    ``.status`` is the fs_status code (an int), ``.message`` the text of
    fs_last_error() for the failing call::

        try:
            store.get("task", "nope")
        except fieldsync.NotFoundError as e:
            print(e.status, e.message)
    """

    status: int = -1

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        if status is not None:
            self.status = status
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return f"{status_name(self.status)}: {self.message}" if self.status >= 0 else self.message


class ArgError(FieldSyncError):
    """FS_ERR_ARG: bad argument, wrong JSON shape, bad option, no change."""
    status = 1


class JSONError(FieldSyncError):
    """FS_ERR_JSON: text is not valid JSON or not valid UTF-8."""
    status = 2


class SchemaError(FieldSyncError):
    """FS_ERR_SCHEMA: unknown type or field, wrong value type, forbidden write."""
    status = 3


class NotFoundError(FieldSyncError):
    """FS_ERR_NOT_FOUND: no such record, outbox entry or resolver."""
    status = 4


class ConflictError(FieldSyncError):
    """FS_ERR_CONFLICT: the operation conflicts with the current state."""
    status = 5


class FieldSyncIOError(FieldSyncError):
    """FS_ERR_IO: the file could not be opened, read or written."""
    status = 6


class FullError(FieldSyncError):
    """FS_ERR_FULL: the disk or database size limit is full; nothing written."""
    status = 7


class CorruptError(FieldSyncError):
    """FS_ERR_CORRUPT: the file is not a fieldsync database or is damaged."""
    status = 8


class BusyError(FieldSyncError):
    """FS_ERR_BUSY: another process held the database lock past busy_timeout_ms."""
    status = 9


class UpgradeRequiredError(FieldSyncError):
    """FS_ERR_UPGRADE_REQUIRED: the hub requires a newer schema version."""
    status = 10


class ClosedError(FieldSyncError):
    """FS_ERR_CLOSED: the handle was closed."""
    status = 11


class InternalError(FieldSyncError):
    """FS_ERR_INTERNAL: a defect in libfieldsync; please report the message."""
    status = 12


class TooBigError(FieldSyncError):
    """FS_ERR_TOO_BIG: an argument exceeds FS_MAX_JSON_BYTES or FS_MAX_ID_BYTES."""
    status = 13


_ERRORS = {
    cls.status: cls
    for cls in (
        ArgError, JSONError, SchemaError, NotFoundError, ConflictError,
        FieldSyncIOError, FullError, CorruptError, BusyError,
        UpgradeRequiredError, ClosedError, InternalError, TooBigError,
    )
}


def _check(status: int) -> None:
    """Raise the exception for `status`, reading fs_last_error() at once
    (it is thread-local and only valid until the next fs_* call)."""
    if status != 0:
        message = lib.fs_last_error().decode("utf-8", "replace")
        raise _ERRORS.get(status, FieldSyncError)(message, status)


def _take(ptr: c_void_p) -> Optional[JSONValue]:
    """Decode and release a ``char *`` the library returned."""
    if not ptr.value:
        return None
    try:
        data = ctypes.string_at(ptr.value)
    finally:
        lib.fs_free(ptr)
    return json.loads(data.decode("utf-8"))


def _text(value: str, what: str) -> bytes:
    """Encode a borrowed C string; an embedded NUL would silently truncate it."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if "\x00" in value:
        raise ArgError(f"{what} contains a NUL character", 1)
    return value.encode("utf-8")


def _json(value: Union[Mapping[str, Any], str, None]) -> Optional[bytes]:
    """Encode a JSON argument: a dict is serialised, a str is passed as is."""
    if value is None:
        return None
    if isinstance(value, str):
        return _text(value, "JSON text")
    # ensure_ascii=False keeps non-ASCII as UTF-8; allow_nan=False because
    # NaN/Infinity are not JSON and the library would refuse them anyway.
    return json.dumps(value, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def _compact(**items: Any) -> Dict[str, Any]:
    return {k: v for k, v in items.items() if v is not None}


# --------------------------------------------------------------------------
# The device store
# --------------------------------------------------------------------------


class Store:
    """An open device store: one SQLite file holding the local view, the
    outbox and the audit trail.

    ::

        schema = {"version": 1, "types": {"task": {
            "fields": {"status": {"type": "string"}}, "required": ["status"]}}}
        with fieldsync.Store("device.db", schema, durability="normal") as store:
            store.apply({"action": "open", "actor": "op-17", "type": "task",
                         "id": "T-1", "set": {"status": "open"}})

    Methods raise a FieldSyncError subclass on failure, in which case nothing
    was written. A Store may be shared between threads (the library
    serialises calls on one handle).
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        schema: Union[Mapping[str, Any], str],
        *,
        durability: Optional[str] = None,
        device_id: Optional[str] = None,
        busy_timeout_ms: Optional[int] = None,
    ) -> None:
        self._handle: Optional[int] = None
        self._clock_fn: Optional[Any] = None  # keeps the CFUNCTYPE alive
        self.path = os.fspath(path)
        options = _compact(durability=durability, device_id=device_id,
                           busy_timeout_ms=busy_timeout_ms)
        handle = c_void_p()
        _check(lib.fs_store_open(_text(self.path, "path"), _json(schema),
                                 _json(options) if options else None, byref(handle)))
        self._handle = handle.value

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Close the store. Closing twice is allowed (like sqlite3): ``store.close()``."""
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                _check(lib.fs_store_close(handle))
            finally:
                # Only now can no call be using the clock: let it go.
                self._clock_fn = None

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._handle is None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_handle", None) is not None:
                lib.fs_store_close(self._handle)
                self._handle = None
        except Exception:  # interpreter shutdown: never raise from __del__
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<fieldsync.Store {self.path!r} {state}>"

    def _h(self) -> int:
        # A closed handle is refused here rather than handed to the library:
        # the Python object knows for certain, the library only "where detectable".
        if self._handle is None:
            raise ClosedError("the store is closed", 11)
        return self._handle

    # -- actions and reads -------------------------------------------------

    def apply(self, action: Union[Mapping[str, Any], str]) -> Dict[str, Any]:
        """Apply one operator action; return ``{"record", "outbox_key",
        "audit_id", "seq", "hlc"}``::

            store.apply({"action": "pick", "actor": "op-17", "type": "task",
                         "id": "T-1", "inc": {"picked": 1}})
        """
        out = c_void_p()
        _check(lib.fs_store_apply(self._h(), _json(action), byref(out)))
        return _take(out)

    def get(self, type: str, id: str) -> Record:
        """Return one record of the local view: ``store.get("task", "T-1")``.
        Raises NotFoundError if it does not exist or was deleted."""
        out = c_void_p()
        _check(lib.fs_store_get(self._h(), _text(type, "type"), _text(id, "id"), byref(out)))
        return _take(out)

    def query(
        self,
        type: str,
        where: Optional[Mapping[str, Any]] = None,
        order_by: Optional[str] = None,
        desc: bool = False,
        limit: Optional[int] = None,
    ) -> List[Record]:
        """Query one type's local view::

            store.query("task", where={"status": "open", "picked": {">=": 3}},
                        order_by="picked", desc=True, limit=10)
        """
        q = _compact(type=type, where=where, order_by=order_by, limit=limit)
        if desc:
            q["desc"] = True
        out = c_void_p()
        _check(lib.fs_store_query(self._h(), _json(q), byref(out)))
        return _take(out)

    def stats(self) -> Dict[str, Any]:
        """Return the store's counters: ``store.stats()["outbox_pending"]``."""
        out = c_void_p()
        _check(lib.fs_store_stats(self._h(), byref(out)))
        return _take(out)

    @property
    def device_id(self) -> str:
        """This store's device id (kept in the file): ``store.device_id``."""
        return self.stats()["device_id"]

    # -- outbox ------------------------------------------------------------

    def outbox_count(self) -> int:
        """Count outbox entries not yet acknowledged: ``store.outbox_count() -> 3``."""
        count = c_int64()
        _check(lib.fs_outbox_count(self._h(), byref(count)))
        return count.value

    def outbox(
        self,
        state: Optional[str] = None,
        type: Optional[str] = None,
        id: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        """List outbox entries in sequence order: ``store.outbox(state="rejected")``."""
        f = _compact(state=state, type=type, id=id, limit=limit)
        out = c_void_p()
        _check(lib.fs_outbox_list(self._h(), _json(f) if f else None, byref(out)))
        return _take(out)

    def discard(self, key: str) -> None:
        """Discard a rejected or stuck outbox entry: ``store.discard("dev-42")``.
        A pending or in-flight entry raises ConflictError."""
        _check(lib.fs_outbox_discard(self._h(), _text(key, "key")))

    # -- audit -------------------------------------------------------------

    def audit(
        self,
        type: Optional[str] = None,
        id: Optional[str] = None,
        actor: Optional[str] = None,
        action: Optional[str] = None,
        since: Optional[int] = None,
        until: Optional[int] = None,
        limit: Optional[int] = None,
        desc: bool = False,
    ) -> List[Dict[str, Any]]:
        """List audit rows in audit_id order (since inclusive, until exclusive,
        both device time in ms): ``store.audit(actor="op-17", limit=20, desc=True)``."""
        f = _compact(type=type, id=id, actor=actor, action=action, since=since,
                     until=until, limit=limit)
        if desc:
            f["desc"] = True
        out = c_void_p()
        _check(lib.fs_audit_query(self._h(), _json(f) if f else None, byref(out)))
        return _take(out)

    # -- clock -------------------------------------------------------------

    def set_clock(self, fn: Optional[Callable[[], int]]) -> None:
        """Replace the store's wall clock with ``fn() -> ms since the epoch``,
        or restore the system clock with None::

            store.set_clock(lambda: 1_700_000_000_000)

        `fn` runs inside library calls with the store locked: it must not use
        the store. If it raises, the last value it returned is used instead
        (an exception cannot cross into C).
        """
        handle = self._h()
        if fn is None:
            _check(lib.fs_store_set_clock(handle, CLOCK_FN(), None))  # NULL function pointer
            self._clock_fn = None
            return
        if not callable(fn):
            raise TypeError("fn must be callable or None")
        last = [int(time.time() * 1000)]

        def now_ms(_ctx: Optional[int]) -> int:
            try:
                value = int(fn())
                if -(2**63) <= value < 2**63:
                    last[0] = value
            except BaseException:  # noqa: BLE001 - must not unwind into C
                pass
            return last[0]

        c_fn = CLOCK_FN(now_ms)
        _check(lib.fs_store_set_clock(handle, c_fn, None))
        self._clock_fn = c_fn  # referenced for as long as the library may call it

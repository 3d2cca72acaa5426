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

Sync is sans-I/O: ``Store.sync_prepare()`` says what to send, the host moves it
to a ``Hub`` (in-process with ``Hub.handle``, or over HTTP with
``python -m fieldsync serve`` / ``sync``), and ``Store.sync_receive()`` applies
the answer::

    >>> with fieldsync.Hub("hub.db", schema) as hub:
    ...     hub.enroll_store(store)           # once: enroll its key, pin the hub's
    ...     fieldsync.sync_once(store, hub)   # prepare/handle/receive until done

Authentication is on by default: a hub serves only enrolled devices
(``Hub.enroll``/``enroll_store``), a store believes only responses signed
with its pinned hub key (``Store.pin_hub``), and requests and responses are
signed over their exact bytes: pass them on as the library produced them
(``Message.raw``), never re-encoded. ``python -m fieldsync verify`` checks a
hub's stored audit against the devices' signatures.

Storage hygiene keeps a long-lived device database small: ``Store.hygiene()``
evicts what the hub has acknowledged and the schema's ``retention`` lets go,
and ``Store.fetch_from(hub, refs)`` brings an evicted record back for a while::

    >>> store.hygiene()["records_evicted"]
    12
    >>> store.fetch_from(hub, [{"type": "task", "id": "T-1"}])["fetched"]
    1

The library is found through the environment variable FIELDSYNC_LIB, else the
repository's build/ folder, else the system's library path.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from ctypes import byref, c_int64, c_void_p
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar, Union

from ._lib import CLOCK_FN, MAX_DEPTH, MAX_MESSAGE_BYTES, MAX_MESSAGE_DEPTH, RESOLVER_FN, SIGN_FN, lib, libc

__all__ = [
    "Store",
    "Hub",
    "Message",
    "sync_once",
    "MAX_MESSAGE_BYTES",
    "MAX_DEPTH",
    "MAX_MESSAGE_DEPTH",
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
    "MisuseError",
    "AuthError",
    "lib",
]

JSONValue = Any
Record = Dict[str, JSONValue]

# --------------------------------------------------------------------------
# Versions and errors
# --------------------------------------------------------------------------


def version() -> str:
    """Return the loaded library's version, e.g. ``fieldsync.version() -> '0.1.0'``."""
    return str(lib.fs_version().decode("ascii"))


def abi_version() -> int:
    """Return the loaded library's ABI version, e.g. ``fieldsync.abi_version() -> 1``."""
    return int(lib.fs_abi_version())


def status_name(status: int) -> str:
    """Return the C name of a status code: ``fieldsync.status_name(3) -> 'FS_ERR_SCHEMA'``."""
    return str(lib.fs_status_name(status).decode("ascii"))


class FieldSyncError(Exception):
    """Base class of every error the library reports.

    ``.status`` is the fs_status code (an int), ``.message`` the text of
    fs_last_error() for the failing call::

        try:
            store.get("task", "nope")
        except fieldsync.NotFoundError as e:
            print(e.status, e.message)

    Each subclass also derives from the built-in exception a Python author
    would catch for it: ``NotFoundError`` is a ``LookupError``, ``FullError``
    and ``FieldSyncIOError`` are ``OSError``, ``BusyError`` a ``TimeoutError``,
    ``AuthError`` a ``PermissionError``, ``ArgError``, ``JSONError``,
    ``SchemaError``, ``TooBigError`` and ``ClosedError`` (as an operation on a
    closed file) are ``ValueError``, ``InternalError`` and ``MisuseError``
    ``RuntimeError``. (``OSError``'s ``errno`` is None: these are not errno
    codes; ``.status`` is.)
    """

    status: int = -1

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        if status is not None:
            self.status = status
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return f"{status_name(self.status)}: {self.message}" if self.status >= 0 else self.message


class ArgError(FieldSyncError, ValueError):
    """FS_ERR_ARG: bad argument: NULL pointer, wrong JSON shape, bad option."""
    status = 1


class JSONError(FieldSyncError, ValueError):
    """FS_ERR_JSON: text is not valid JSON, not valid UTF-8, or nested past FS_MAX_DEPTH."""
    status = 2


class SchemaError(FieldSyncError, ValueError):
    """FS_ERR_SCHEMA: violates the schema: unknown type or field, wrong value
    type, missing required field, operation the field's policy forbids."""
    status = 3


class NotFoundError(FieldSyncError, LookupError):
    """FS_ERR_NOT_FOUND: no such record, outbox entry or resolver."""
    status = 4


class ConflictError(FieldSyncError):
    """FS_ERR_CONFLICT: the operation conflicts with the current state."""
    status = 5


class FieldSyncIOError(FieldSyncError, OSError):
    """FS_ERR_IO: the file could not be opened, read or written."""
    status = 6


class FullError(FieldSyncError, OSError):
    """FS_ERR_FULL: the disk (or database size limit) is full; nothing written."""
    status = 7


class CorruptError(FieldSyncError):
    """FS_ERR_CORRUPT: the file is not a fieldsync database or is damaged."""
    status = 8


class BusyError(FieldSyncError, TimeoutError):
    """FS_ERR_BUSY: another process held the database lock past busy_timeout_ms."""
    status = 9


class UpgradeRequiredError(FieldSyncError):
    """FS_ERR_UPGRADE_REQUIRED: the hub requires a newer schema version."""
    status = 10


class ClosedError(FieldSyncError, ValueError):
    """FS_ERR_CLOSED: the handle was closed."""
    status = 11


class InternalError(FieldSyncError, RuntimeError):
    """FS_ERR_INTERNAL: a defect in libfieldsync; please report the message."""
    status = 12


class TooBigError(FieldSyncError, ValueError):
    """FS_ERR_TOO_BIG: an argument exceeds FS_MAX_JSON_BYTES or FS_MAX_ID_BYTES."""
    status = 13


class MisuseError(FieldSyncError, RuntimeError):
    """FS_ERR_MISUSE: the library was called in a way it cannot serve: a clock or
    resolver callback called back into the handle that is calling it (as
    SQLITE_MISUSE); nothing was done."""
    status = 14


class AuthError(FieldSyncError, PermissionError):
    """FS_ERR_AUTH: authentication failed: the hub refused the device (unknown,
    revoked, bad signature, another store instance), or a response does not
    verify with the pinned hub key; nothing was changed (docs/SECURITY.md)."""
    status = 15


_ERRORS = {
    cls.status: cls
    for cls in (
        ArgError, JSONError, SchemaError, NotFoundError, ConflictError,
        FieldSyncIOError, FullError, CorruptError, BusyError,
        UpgradeRequiredError, ClosedError, InternalError, TooBigError,
        MisuseError, AuthError,
    )
}


def _check(status: int) -> None:
    """Raise the exception for `status`, reading fs_last_error() at once
    (it is thread-local and only valid until the next fs_* call)."""
    if status != 0:
        message = lib.fs_last_error().decode("utf-8", "replace")
        raise _ERRORS.get(status, FieldSyncError)(message, status)


def _take_bytes(ptr: c_void_p) -> Optional[bytes]:
    """Copy and release a ``char *`` the library returned (UTF-8 JSON text)."""
    if not ptr.value:
        return None
    try:
        return ctypes.string_at(ptr.value)
    finally:
        lib.fs_free(ptr)


def _take(ptr: c_void_p) -> Optional[JSONValue]:
    """Decode and release a ``char *`` the library returned."""
    data = _take_bytes(ptr)
    return None if data is None else json.loads(data.decode("utf-8"))


def _take_dict(ptr: c_void_p) -> Dict[str, Any]:
    """_take() of a call documented to return a JSON object."""
    value = _take(ptr)
    if not isinstance(value, dict):
        raise InternalError(f"the library returned {type(value).__name__} where an object was documented", 12)
    return value


def _take_list(ptr: c_void_p) -> List[Dict[str, Any]]:
    """_take() of a call documented to return a JSON array (of objects)."""
    value = _take(ptr)
    if not isinstance(value, list):
        raise InternalError(f"the library returned {type(value).__name__} where an array was documented", 12)
    return value


def _text(value: str, what: str) -> bytes:
    """Encode a borrowed C string; an embedded NUL would silently truncate it."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if "\x00" in value:
        raise ArgError(f"{what} contains a NUL character")
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


class Message(Dict[str, Any]):
    """A request or response as the library wrote it, decoded: a dict that
    remembers its exact bytes (``.raw``). Signatures cover those bytes, so a
    Message handed back to the library unchanged travels as them; once edited
    (any member, at any depth) it is serialised again, and its signature no
    longer verifies: the hub refuses such a request, a store such a response.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        super().__init__(json.loads(raw.decode("utf-8")))
        self.raw = raw

    def unchanged(self) -> bool:
        """True while the dict still holds exactly what ``raw`` says."""
        return bool(json.loads(self.raw.decode("utf-8")) == self)


def _message(value: Union[Mapping[str, Any], str, bytes, bytearray], what: str) -> bytes:
    """Encode a sync message (request or response): an unchanged Message is
    its bytes, another dict is serialised, str is encoded, bytes are passed as
    they are (the library checks the UTF-8). Never re-encode what the library
    wrote: signatures cover its bytes. The limit is FS_MAX_MESSAGE_BYTES
    rather than FS_MAX_JSON_BYTES."""
    if isinstance(value, Message) and value.unchanged():
        return value.raw
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        if b"\x00" in data:
            # A raw NUL would silently cut the C string; JSON text never holds one.
            raise JSONError(f"{what} contains a NUL byte, which JSON text cannot")
        return data
    if isinstance(value, str):
        return _text(value, what)
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    raise TypeError(f"{what} must be a dict, str or bytes, not {type(value).__name__}")


def _clock(fn: Callable[[], int]) -> Any:
    """Wrap ``fn() -> ms`` as a C clock callback that never raises into C:
    if `fn` raises or returns something out of range, the last good value
    (initially the system time) is used."""
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

    return CLOCK_FN(now_ms)


def _require(name: str) -> None:
    """Refuse a call the loaded library is too old to have."""
    if not hasattr(lib, name):
        raise NotImplementedError(f"this libfieldsync has no {name}; rebuild it")


def _compact(**items: Any) -> Dict[str, Any]:
    return {k: v for k, v in items.items() if v is not None}


# --------------------------------------------------------------------------
# The device store
# --------------------------------------------------------------------------


#: The handle type a ``with`` statement gives back (Store or Hub).
_H = TypeVar("_H", bound="_Handle")


class _Handle:
    """What Store and Hub share: the context manager, closing on collection,
    and refusing a closed handle before it reaches the library (the Python
    object knows for certain; the library only "where detectable")."""

    _kind = "handle"
    _handle: Optional[int] = None
    #: The file; a hub in a PostgreSQL database has none.
    path: Optional[str] = None

    @staticmethod
    def _close_handle(handle: int) -> int:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._handle is None

    def __enter__(self: "_H") -> "_H":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()  # type: ignore[attr-defined]

    def __del__(self) -> None:
        try:
            if getattr(self, "_handle", None) is not None:
                type(self)._close_handle(self._handle)  # type: ignore[arg-type]
                self._handle = None
        except Exception:  # interpreter shutdown: never raise from __del__
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<fieldsync.{type(self).__name__} {self.path!r} {state}>"

    def _h(self) -> int:
        if self._handle is None:
            raise ClosedError(f"the {self._kind} is closed")
        return self._handle


class Store(_Handle):
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

    _kind = "store"
    path: str
    _close_handle = staticmethod(lambda handle: lib.fs_store_close(handle))

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        schema: Union[Mapping[str, Any], str],
        *,
        durability: Optional[str] = None,
        device_id: Optional[str] = None,
        busy_timeout_ms: Optional[int] = None,
        batch_size: Optional[int] = None,
        batch_bytes: Optional[int] = None,
        pull_limit: Optional[int] = None,
        backoff_base_ms: Optional[int] = None,
        backoff_cap_ms: Optional[int] = None,
        max_attempts: Optional[int] = None,
        pull_interval_ms: Optional[int] = None,
        scope: Optional[Mapping[str, Mapping[str, Any]]] = None,
        audit_keep_days: Optional[int] = None,
        hygiene_on_open: Optional[bool] = None,
        hygiene_every: Optional[int] = None,
        fetch_ttl_ms: Optional[int] = None,
        max_clock_skew_ms: Optional[int] = None,
        protocol: Optional[int] = None,
        auth: Optional[str] = None,
        acked_retention_s: Optional[int] = None,
    ) -> None:
        """Open (creating if needed) the store at `path`. Options left at None
        take the library's defaults: durability "full", a generated device id,
        busy_timeout_ms 5000; sync: batch_size 500, batch_bytes 4 MiB (a
        request stops adding entries past it, always one), pull_limit 1000,
        backoff_base_ms 500, backoff_cap_ms 60000, max_attempts 8,
        pull_interval_ms 60000 (0 = pull only after set_connectivity(True)),
        scope {} (e.g. ``{"task": {"site": "WH-3"}}``). Every integer option
        has a range (docs/ABI.md "Store options"; durations up to 10 years);
        a value outside it raises ArgError naming the range.

        Storage hygiene (docs/HYGIENE.md; see hygiene()): audit_keep_days
        (1 to 36600; default: audit rows are never evicted), hygiene_on_open
        (run a pass when the store opens; default False), hygiene_every (run a
        pass after sync_receive() once N actions were applied since the last
        one; 0, the default, never), fetch_ttl_ms (how long records fetched
        with fetch_request() stay cached; default 600000), acked_retention_s
        (how long acknowledged entries are kept, to be sent again to a hub
        restored from an earlier copy; default 604800 = 7 days, 0 keeps none;
        docs/OPERATIONS.md "Restoring a hub"). max_clock_skew_ms
        (default 24 h): stamps pulled from the hub further ahead of this
        device's clock are never adopted by it. protocol (1 or 2, default 2):
        the sync protocol requests are written in; 1 while the hub runs a
        release older than this library (docs/PROTOCOL.md "Versions").
        auth ("on", the default, or "off"): "off" neither signs requests nor
        verifies responses (for a hub opened with auth "off", and for tests
        that hand-craft messages); with it on, pin the hub's key first
        (pin_hub(), or Hub.enroll_store()) or every response is refused::

            store = fieldsync.Store("device.db", schema, audit_keep_days=90,
                                    hygiene_every=500, fetch_ttl_ms=10 * 60_000)
        """
        self._handle: Optional[int] = None
        self._clock_fn: Optional[Any] = None  # keeps the CFUNCTYPE alive
        self._signer_fn: Optional[Any] = None  # likewise
        self._signer_errors: List[BaseException] = []
        self.path = os.fspath(path)
        options = _compact(durability=durability, device_id=device_id,
                           busy_timeout_ms=busy_timeout_ms, batch_size=batch_size, batch_bytes=batch_bytes,
                           pull_limit=pull_limit, backoff_base_ms=backoff_base_ms,
                           backoff_cap_ms=backoff_cap_ms, max_attempts=max_attempts,
                           pull_interval_ms=pull_interval_ms, scope=scope,
                           audit_keep_days=audit_keep_days, hygiene_on_open=hygiene_on_open,
                           hygiene_every=hygiene_every, fetch_ttl_ms=fetch_ttl_ms,
                           max_clock_skew_ms=max_clock_skew_ms, protocol=protocol, auth=auth,
                           acked_retention_s=acked_retention_s)
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
                # Only now can no call be using the clock or signer: let them go.
                self._clock_fn = None
                self._signer_fn = None


    # -- actions and reads -------------------------------------------------

    def apply(self, action: Union[Mapping[str, Any], str]) -> Dict[str, Any]:
        """Apply one operator action; return ``{"record", "outbox_key",
        "audit_id", "seq", "hlc"}``::

            store.apply({"action": "pick", "actor": "op-17", "type": "task",
                         "id": "T-1", "inc": {"picked": 1}})
        """
        out = c_void_p()
        _check(lib.fs_store_apply(self._h(), _json(action), byref(out)))
        return _take_dict(out)

    def get(self, type: str, id: str) -> Record:
        """Return one record of the local view: ``store.get("task", "T-1")``.
        Raises NotFoundError if it does not exist or was deleted."""
        out = c_void_p()
        _check(lib.fs_store_get(self._h(), _text(type, "type"), _text(id, "id"), byref(out)))
        return _take_dict(out)

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
        return _take_list(out)

    def stats(self) -> Dict[str, Any]:
        """Return the store's counters: ``store.stats()["outbox_pending"]``."""
        out = c_void_p()
        _check(lib.fs_store_stats(self._h(), byref(out)))
        return _take_dict(out)

    @property
    def device_id(self) -> str:
        """This store's device id (kept in the file): ``store.device_id``."""
        return str(self.stats()["device_id"])

    # -- authentication (docs/SECURITY.md) ----------------------------------

    @property
    def public_key(self) -> str:
        """The public key this store signs its requests with (64 hex digits),
        the one to enroll at the hub: the file's key, or the signer's
        (set_signer()). ``hub.enroll(store.device_id, store.public_key)``."""
        return str(self.stats()["public_key"])

    @property
    def instance_id(self) -> str:
        """This store file's instance id (32 hex digits, made with the file):
        enrolled with the key, it makes the hub refuse a copy of the device id
        in another store ("instance_mismatch")."""
        return str(self.stats()["instance_id"])

    def backup(self, path: "os.PathLike[str] | str") -> None:
        """Write a consistent copy of the store file to `path` (a device
        image; other handles keep writing meanwhile). Opened later, the copy
        is the same device and recovers by itself if its hub has moved on.
        `path` must not exist. Raises ArgError, FieldSyncIOError, FullError,
        BusyError, ClosedError."""
        _check(lib.fs_store_backup(self._h(), _text(os.fspath(path), "path")))

    def pin_hub(self, hub_key: str) -> None:
        """Pin the hub's public key (64 hex digits: what Hub.enroll() returned
        as "hub_key", or Hub.public_key); kept in the file. Until a key is
        pinned, sync_receive() refuses every response with AuthError (unless
        the store was opened with auth="off")::

            store.pin_hub(hub.enroll(store.device_id, store.public_key)["hub_key"])

        Raises ArgError (not 64 hex digits, or a key of small order),
        ClosedError, FieldSyncIOError, FullError, BusyError."""
        _check(lib.fs_store_pin_hub(self._h(), _text(hub_key, "hub_key")))

    def rotate_key(self) -> str:
        """Replace the store's key pair with a new one and return the new
        public key (64 hex digits); a signer set with set_signer() is dropped.
        Enroll the new key at the hub: until then the hub refuses this
        device's requests ("bad_signature"), and sync_receive() raises
        AuthError. Raises ClosedError, FieldSyncIOError, FullError, BusyError."""
        out = c_void_p()
        _check(lib.fs_store_rotate_key(self._h(), byref(out)))
        data = _take_bytes(out)
        return "" if data is None else data.decode("ascii")

    def set_signer(self, public_key: Optional[str], fn: Optional[Callable[[bytes], bytes]] = None) -> None:
        """Sign this handle's requests with ``fn(message: bytes) -> signature``
        (64 bytes, Ed25519 of the message by the key `public_key`, 64 hex
        digits) instead of the key in the file: for keys kept in a secure
        element or a TPM. ``set_signer(None, None)`` goes back to the file's
        key (so does ``set_signer(None)``). Not kept in the file: set it after
        every open::

            store.set_signer(pub_hex, lambda m: private_key.sign(m))

        `fn` runs inside sync_prepare() / fetch_request() with the store
        locked: it must not use the store. If it raises or returns something
        else than 64 bytes, or a signature that does not verify, that call
        raises ArgError and nothing changes; ``store.signer_errors`` keeps the
        last few exceptions it raised. Raises ArgError (public_key not 64 hex
        digits), ClosedError."""
        handle = self._h()
        if fn is None:
            _check(lib.fs_store_set_signer(handle, None, SIGN_FN(), None))
            self._signer_fn = None
            return
        if not callable(fn):
            raise TypeError("fn must be callable or None")
        if public_key is None:
            raise TypeError("public_key is required with a signer")
        errors = self._signer_errors

        def sign(_ctx: Optional[int], message: Any, length: int, signature: Any) -> int:
            try:
                sig = bytes(fn(ctypes.string_at(message, length)))
                if len(sig) != 64:
                    raise ValueError(f"a signature is 64 bytes, the signer returned {len(sig)}")
                ctypes.memmove(signature, sig, 64)
                return 0
            except BaseException as e:  # noqa: BLE001 - must not unwind into C
                errors.append(e)
                del errors[:-10]
                return ArgError.status

        c_fn = SIGN_FN(sign)
        _check(lib.fs_store_set_signer(handle, _text(public_key, "public_key"), c_fn, None))
        self._signer_fn = c_fn  # referenced for as long as the library may call it

    @property
    def signer_errors(self) -> List[BaseException]:
        """The last (up to 10) exceptions the signer raised, oldest first."""
        return self._signer_errors

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
        return _take_list(out)

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
        return _take_list(out)

    # -- storage hygiene and fetch on demand ------------------------------------

    def hygiene(self) -> Dict[str, Any]:
        """Run one storage-hygiene pass (docs/HYGIENE.md) and return its report
        ``{"records_evicted", "records_evicted_<type>", "fetched_expired",
        "audit_rows_evicted", "bytes_before", "bytes_after", "bytes_reclaimed"}``.

        Evicts records the hub has acknowledged that have no outbox entry in any
        state and are archived (a field holds one of its type's
        ``retention.archive_when`` values) or unchanged for longer than
        ``retention.keep_days``; fetched records whose fetch_ttl_ms is up; and,
        with audit_keep_days, acknowledged audit rows older than that, as a
        prefix whose last hash becomes ``stats()["audit_anchor_hash"]``.
        Nothing the hub has not acknowledged is evicted. Then space is handed
        back to the file system::

            report = store.hygiene()
            print(report["records_evicted"], report["bytes_reclaimed"])

        An evicted record is gone from get()/query(): get() raises
        NotFoundError saying it can be fetched (see fetch_from()).
        """
        _require("fs_store_hygiene")
        out = c_void_p()
        _check(lib.fs_store_hygiene(self._h(), byref(out)))
        return _take_dict(out)

    def fetch_request(self, refs: Union[List[Mapping[str, Any]], str]) -> "Message":
        """Build a request asking the hub for records this device does not hold
        (evicted by hygiene, or outside its scope); `refs` is a list of
        ``{"type": ..., "id": ...}`` (at most 1000). Send it like a sync
        request and hand the answer to sync_receive(): the records are stored
        and cached for fetch_ttl_ms, then evicted by hygiene() unless the
        operator changes them::

            request = store.fetch_request([{"type": "task", "id": "T-9"}])
            summary = store.sync_receive(post("/sync", request))
            summary["fetched"]  # -> 1

        Raises ArgError (not a non-empty list of refs), SchemaError (unknown
        type), TooBigError (more than 1000 refs), UpgradeRequiredError.
        """
        data = self._fetch_request_raw(refs)
        if data is None:
            raise InternalError("fs_fetch_request succeeded without a request", 12)
        return Message(data)

    def _fetch_request_raw(self, refs: Union[List[Mapping[str, Any]], str]) -> Optional[bytes]:
        _require("fs_fetch_request")
        if isinstance(refs, str):
            data = _text(refs, "refs")
        else:
            data = json.dumps(list(refs) if isinstance(refs, tuple) else refs,
                              ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8")
        out = c_void_p()
        _check(lib.fs_fetch_request(self._h(), data, byref(out)))
        return _take_bytes(out)

    def fetch_from(self, hub: "Hub", refs: Union[List[Mapping[str, Any]], str]) -> Dict[str, Any]:
        """Fetch records from an in-process hub: fetch_request(refs) ->
        hub.handle() -> sync_receive(). Returns the receive summary (its
        "fetched" counts the records stored) with "missing" added: the refs
        the hub does not have::

            summary = store.fetch_from(hub, [{"type": "task", "id": "T-9"},
                                             {"type": "task", "id": "T-404"}])
            summary["fetched"], summary["missing"]
            # -> (1, [{"type": "task", "id": "T-404"}])
            store.get("task", "T-9")  # cached for fetch_ttl_ms
        """
        request = self._fetch_request_raw(refs) or b""
        raw = hub._handle_raw(request)  # bytes to bytes: both are signed
        summary = self.sync_receive(raw)
        summary["missing"] = list(json.loads(raw.decode("utf-8")).get("missing") or [])
        return summary

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
        c_fn = _clock(fn)
        _check(lib.fs_store_set_clock(handle, c_fn, None))
        self._clock_fn = c_fn  # referenced for as long as the library may call it

    # -- sync steps (sans-I/O) ----------------------------------------------

    def _prepare_raw(self) -> Tuple[Optional[bytes], int]:
        out = c_void_p()
        wait = c_int64()
        _check(lib.fs_sync_prepare(self._h(), byref(out), byref(wait)))
        return _take_bytes(out), wait.value

    def sync_prepare(self) -> Tuple[Optional[Dict[str, Any]], int]:
        """Decide what to send now: ``(request, 0)``, or ``(None, wait_ms)``
        when nothing is due (wait_ms -1: nothing will fall due by itself, or
        the hub requires an upgrade). The request's entries are marked in
        flight until sync_receive() or sync_fail()::

            request, wait_ms = store.sync_prepare()
            if request is not None:
                summary = store.sync_receive(post("/sync", request))
        """
        data, wait = self._prepare_raw()
        return (None if data is None else Message(data)), wait

    def sync_receive(self, response: Union[Mapping[str, Any], str, bytes]) -> Dict[str, Any]:
        """Apply the hub's response to the last request; return the summary
        ``{"applied", "duplicate", "rejected", "retry", "stuck", "pulled",
        "fetched", "cursor", "more", "outbox"}`` (plus "hygiene", the report of
        the pass hygiene_every ran, when one ran). Raises UpgradeRequiredError when the hub
        requires a newer schema (the outbox is kept), ConflictError when the
        hub refused the request as a whole, ArgError for a response this store
        cannot have asked for, AuthError when the response does not verify
        with the pinned hub key (or none is pinned) or is the hub's refusal of
        this device (unknown, revoked, bad signature, another instance); in
        every case nothing is changed. Pass the response as the bytes (or the
        Message) the hub produced: re-encoding it breaks its signature."""
        out = c_void_p()
        _check(lib.fs_sync_receive(self._h(), _message(response, "response"), byref(out)))
        return _take_dict(out)

    def sync_fail(self, reason: Optional[str] = None) -> None:
        """Report that the last request was not delivered or not answered
        (network down, timeout, HTTP 5xx): its entries return to pending and
        the next sync_prepare() waits a backoff. ``store.sync_fail("timeout")``."""
        _check(lib.fs_sync_fail(self._h(), None if reason is None else _text(reason, "reason")))

    def set_connectivity(self, up: bool) -> None:
        """Tell the store whether the network is up. Up resets the backoff and
        makes a pull due (the next sync_prepare() returns a request); down makes
        sync_prepare() return no request. ``store.set_connectivity(True)``."""
        _check(lib.fs_sync_connectivity(self._h(), 1 if up else 0))

    def sync_with(self, hub: "Hub", *, pull: bool = True, max_rounds: int = 100_000,
                  progress: Optional[Callable[[Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]:
        """Sync with an in-process hub until nothing is due; see sync_once().
        ``store.sync_with(hub, progress=lambda s: print(s["outbox"], "left"))``."""
        return sync_once(self, hub, pull=pull, max_rounds=max_rounds, progress=progress)


# --------------------------------------------------------------------------
# The hub
# --------------------------------------------------------------------------


class Hub(_Handle):
    """The server side, in-process: a request -> response function over its
    own SQLite file. Serve it over any transport (``python -m fieldsync serve``
    serves it over HTTP), or hand requests to it directly::

        with fieldsync.Hub("hub.db", schema) as hub:
            hub.enroll_store(store)  # with authentication on, once per device
            request, _ = store.sync_prepare()
            store.sync_receive(hub.handle(request))
            hub.query("task", where={"status": "open"})

    A Hub may be shared between threads (the library serialises its calls).
    """

    _kind = "hub"
    _close_handle = staticmethod(lambda handle: lib.fs_hub_close(handle))

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]", None],
        schema: Union[Mapping[str, Any], str],
        *,
        durability: Optional[str] = None,
        busy_timeout_ms: Optional[int] = None,
        max_clock_skew_ms: Optional[int] = None,
        auth: Optional[str] = None,
        postgres: Optional[str] = None,
    ) -> None:
        """Open (creating if needed) the hub at `path`. max_clock_skew_ms
        (default 24 h): an entry stamped further ahead of the hub's clock is
        rejected with reason "clock_skew". auth ("on", the default, or "off"):
        with it on, only requests signed by an enrolled device are handled
        (enroll(), enroll_store()); "off" handles any request, shown in
        stats() and logged in devices()["refusals"] at every open.
        postgres: a libpq connection string; the hub then keeps its state in
        that PostgreSQL database instead of a file (path must be None), and
        any number of processes may serve it at once (docs/OPERATIONS.md)."""
        self._handle: Optional[int] = None
        self._clock_fn: Optional[Any] = None  # keeps the CFUNCTYPE alive
        self._resolvers: Dict[str, Any] = {}  # likewise, by resolver name
        self._resolver_errors: List[BaseException] = []
        self.path = None if path is None else os.fspath(path)
        options = _compact(durability=durability, busy_timeout_ms=busy_timeout_ms,
                           max_clock_skew_ms=max_clock_skew_ms, auth=auth)
        if postgres is not None:
            options.update(storage="postgres", dsn=postgres)
        handle = c_void_p()
        _check(lib.fs_hub_open(None if self.path is None else _text(self.path, "path"), _json(schema),
                               _json(options) if options else None, byref(handle)))
        self._handle = handle.value

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Close the hub. Closing twice is allowed: ``hub.close()``."""
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                _check(lib.fs_hub_close(handle))
            finally:
                self._clock_fn = None
                self._resolvers = {}


    # -- requests ----------------------------------------------------------

    def _handle_raw(self, request: bytes) -> bytes:
        out = c_void_p()
        _check(lib.fs_hub_handle(self._h(), request, byref(out)))
        return _take_bytes(out) or b""

    def handle(self, request: Union[Mapping[str, Any], str, bytes]) -> Dict[str, Any]:
        """Handle one device request (what Store.sync_prepare() produced) in one
        transaction; return the response for Store.sync_receive(). A request the
        hub refuses as a whole still gets a response, with "error": upgrade
        required, and with auth on "unsigned", "unknown_device", "revoked",
        "bad_signature", "instance_mismatch" (counted in stats(), logged in
        devices()). Malformed requests raise ArgError/JSONError/TooBigError/
        SchemaError and apply nothing. The response is a Message: hand it to
        Store.sync_receive() unchanged (it is signed)."""
        return Message(self._handle_raw(_message(request, "request")))

    def handle_text(self, request: Union[str, bytes]) -> str:
        """As handle(), JSON text in and out (no decoding): for servers."""
        return self._handle_raw(_message(request, "request")).decode("utf-8")

    def handle_bytes(self, request: bytes) -> bytes:
        """As handle(), the request's bytes in and the response's bytes out,
        untouched (both are signed): for transports."""
        return self._handle_raw(_message(request, "request"))

    # -- authentication (docs/SECURITY.md) ----------------------------------

    @property
    def public_key(self) -> str:
        """The hub's public key (64 hex digits), which devices pin
        (Store.pin_hub()): every response is signed with it."""
        return str(self.stats()["public_key"])

    def enroll(
        self,
        device_id: str,
        public_key: str,
        *,
        instance: Optional[str] = None,
        scope: Optional[Mapping[str, Mapping[str, Any]]] = None,
        write: bool = True,
    ) -> Dict[str, Any]:
        """Enroll a device (or re-enroll it: a new key is a rotation, a
        revoked device becomes active again); return ``{"device_id",
        "hub_key", "rotated"}``: pin "hub_key" on the device.

        `instance` (32 hex digits, Store.instance_id) binds the device id to
        that store file (otherwise to the first one that syncs); `scope`
        (e.g. ``{"task": {"site": "WH-3"}}``: only the types named, each with
        an equality filter; None: every record) is what the device may pull,
        fetch and write, whatever it asks; write=False enrolls it read-only::

            hub.enroll("tablet-7", pub_hex, scope={"task": {"site": "WH-3"}})

        Raises ArgError (a member missing or malformed, or a public key of
        small order, which anyone can sign for), SchemaError (a scope naming
        unknown types or fields), ClosedError, FieldSyncIOError, FullError,
        BusyError."""
        enrollment: Dict[str, Any] = {"device_id": device_id, "public_key": public_key,
                                      "write": bool(write)}
        if instance is not None:
            enrollment["instance"] = instance
        if scope is not None:
            enrollment["scope"] = scope
        out = c_void_p()
        _check(lib.fs_hub_enroll(self._h(), _json(enrollment), byref(out)))
        return _take_dict(out)

    def enroll_store(self, store: "Store", *, scope: Optional[Mapping[str, Mapping[str, Any]]] = None,
                     write: bool = True) -> Dict[str, Any]:
        """Enroll an in-process store (its device id, public key and instance)
        and pin this hub's key into it: what a provisioning step does for a
        device, in one call. Returns what enroll() returns::

            hub.enroll_store(store, scope={"task": {"site": "WH-3"}})
            fieldsync.sync_once(store, hub)

        Raises what enroll() and Store.pin_hub() raise."""
        stats = store.stats()
        result = self.enroll(stats["device_id"], stats["public_key"],
                             instance=stats["instance_id"], scope=scope, write=write)
        store.pin_hub(result["hub_key"])
        return result

    def backup(self, path: "os.PathLike[str] | str") -> None:
        """Write a consistent copy of the hub file to `path` while it serves
        (SQLite's online backup; written as ``<path>.partial`` and renamed
        when complete). `path` must not exist. Raises ArgError (it exists),
        FieldSyncIOError, FullError, BusyError, ClosedError."""
        _check(lib.fs_hub_backup(self._h(), _text(os.fspath(path), "path")))

    def revoke(self, device_id: str) -> None:
        """Revoke a device: its requests are refused ("revoked") until it is
        enrolled again; what it synced stays, with its audit. Raises
        NotFoundError (not enrolled), ArgError, ClosedError, FieldSyncIOError,
        FullError, BusyError."""
        _check(lib.fs_hub_revoke(self._h(), _text(device_id, "device_id")))

    def devices(self) -> Dict[str, Any]:
        """The registry: ``{"devices": [{"device_id", "public_key",
        "instance", "scope", "write", "state", "enrolled_at", "revoked_at",
        "last_seen_at", "keys"}], "refusals": [{"at", "device_id", "code",
        "message"}]}`` (the latest 100 refusals, newest first)."""
        out = c_void_p()
        _check(lib.fs_hub_devices(self._h(), byref(out)))
        return _take_dict(out)

    # -- reads -------------------------------------------------------------

    def query(
        self,
        type: str,
        where: Optional[Mapping[str, Any]] = None,
        order_by: Optional[str] = None,
        desc: bool = False,
        limit: Optional[int] = None,
    ) -> List[Record]:
        """Query the hub's records, as Store.query() does a device's view::

            hub.query("task", where={"site": "WH-3"}, order_by="picked", desc=True)
        """
        q = _compact(type=type, where=where, order_by=order_by, limit=limit)
        if desc:
            q["desc"] = True
        out = c_void_p()
        _check(lib.fs_hub_query(self._h(), _json(q), byref(out)))
        return _take_list(out)

    def audit(
        self,
        device_id: Optional[str] = None,
        type: Optional[str] = None,
        id: Optional[str] = None,
        actor: Optional[str] = None,
        action: Optional[str] = None,
        since: Optional[int] = None,
        until: Optional[int] = None,
        limit: Optional[int] = None,
        desc: bool = False,
    ) -> List[Dict[str, Any]]:
        """List the audit rows the hub received, by device then audit_id, each
        with "server_received_at" and "chain_ok": ``hub.audit(device_id="dev-A")``."""
        f = _compact(device_id=device_id, type=type, id=id, actor=actor, action=action,
                     since=since, until=until, limit=limit)
        if desc:
            f["desc"] = True
        out = c_void_p()
        _check(lib.fs_hub_audit_query(self._h(), _json(f) if f else None, byref(out)))
        return _take_list(out)

    def stats(self) -> Dict[str, Any]:
        """Return the hub's counters: ``hub.stats()["audit_chain_breaks"]``."""
        out = c_void_p()
        _check(lib.fs_hub_stats(self._h(), byref(out)))
        return _take_dict(out)

    # -- clock -------------------------------------------------------------

    def set_clock(self, fn: Optional[Callable[[], int]]) -> None:
        """Replace the hub's wall clock (server_received_at, server_time) with
        ``fn() -> ms since the epoch``, or restore the system clock with None.
        Same rules as Store.set_clock()."""
        handle = self._h()
        if fn is None:
            _check(lib.fs_hub_set_clock(handle, CLOCK_FN(), None))
            self._clock_fn = None
            return
        c_fn = _clock(fn)
        _check(lib.fs_hub_set_clock(handle, c_fn, None))
        self._clock_fn = c_fn

    # -- custom merge ------------------------------------------------------

    def set_resolver(self, name: str, fn: Optional[Callable[[Dict[str, Any]], Any]]) -> None:
        """Register ``fn(conflict) -> merged value`` as the resolver `name` of
        the schema's ``"merge": "custom"`` fields, or remove it with None.

        The hub calls it when a device's write to such a field meets a change
        the device had not seen, with ``{"type", "id", "field", "base",
        "server", "incoming", "incoming_actor", "incoming_device"}``::

            hub.set_resolver("order_lines",
                             lambda c: sorted(set(c["server"]) | set(c["incoming"])))

        If `fn` raises (or returns something that is not JSON), the device's
        whole action is rejected with reason "resolver_failed", visibly in its
        outbox and audit trail. `fn` runs inside handle() with the hub locked:
        it must not use the hub. ``hub.resolver_errors`` keeps the last few
        exceptions it raised, for the host's logs.
        """
        handle = self._h()
        name_c = _text(name, "name")
        if not hasattr(lib, "fs_hub_set_resolver"):
            raise NotImplementedError("this libfieldsync has no fs_hub_set_resolver")
        if fn is None:
            _check(lib.fs_hub_set_resolver(handle, name_c, RESOLVER_FN(), None))
            self._resolvers.pop(name, None)
            return
        if not callable(fn):
            raise TypeError("fn must be callable or None")
        errors = self.resolver_errors

        def resolve(_ctx: Optional[int], conflict: bytes, out: Any) -> int:
            try:
                value = fn(json.loads(conflict.decode("utf-8")))
                data = json.dumps(value, ensure_ascii=False, allow_nan=False,
                                  separators=(",", ":")).encode("utf-8")
                p = libc.malloc(len(data) + 1)
                if not p:
                    return InternalError.status
                ctypes.memmove(p, data + b"\x00", len(data) + 1)
                out[0] = p
                return 0
            except BaseException as e:  # noqa: BLE001 - must not unwind into C
                errors.append(e)
                del errors[:-10]
                return ConflictError.status

        c_fn = RESOLVER_FN(resolve)
        _check(lib.fs_hub_set_resolver(handle, name_c, c_fn, None))
        self._resolvers[name] = c_fn  # referenced for as long as the library may call it

    @property
    def resolver_errors(self) -> List[BaseException]:
        """The last (up to 10) exceptions resolvers raised, oldest first."""
        return self._resolver_errors


def sync_once(store: Store, hub: Hub, *, pull: bool = True, max_rounds: int = 100_000,
              progress: Optional[Callable[[Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]:
    """Sync `store` with an in-process `hub`: prepare -> handle -> receive
    until prepare has nothing more to send; return the receive summaries.

    With pull=True (the default) the store is first told the network is up
    (set_connectivity(True)), which resets any backoff and makes a pull due,
    so the call both pushes the outbox and pulls every page of changes.
    Entries the hub asked to retry later stay in the outbox (their backoff
    has not elapsed); call again later. Raises what sync_receive raises
    (e.g. UpgradeRequiredError)::

        for summary in fieldsync.sync_once(store, hub):
            print(summary["applied"], summary["pulled"], summary["outbox"])

    `progress`, when given, is called with each summary as soon as its
    exchange is done (a long drain can show how far it got: ``outbox`` is
    what is left); an exception it raises stops the sync there, with every
    exchange before it complete.
    """
    if pull:
        store.set_connectivity(True)
    summaries: List[Dict[str, Any]] = []
    for _ in range(max_rounds):
        request, _wait = store._prepare_raw()
        if request is None:
            return summaries
        summaries.append(store.sync_receive(hub._handle_raw(request)))
        if progress is not None:
            progress(summaries[-1])
    raise RuntimeError(f"sync_once: still sending after {max_rounds} rounds")

"""Loads libfieldsync and declares the C prototypes of include/fieldsync.h once.

Strings the library returns through ``char **`` are declared ``c_void_p`` so the
pointer survives to be read with ``ctypes.string_at`` and released with
``fs_free`` (``c_char_p`` would copy the bytes and lose the pointer: a leak).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int32, c_int64, c_size_t, c_uint8, c_void_p
from pathlib import Path
from typing import Any, List, Optional

#: ABI version this binding was written against (FS_ABI_VERSION).
ABI_VERSION = 1

#: FS_MAX_JSON_BYTES and FS_MAX_MESSAGE_BYTES of include/fieldsync.h.
MAX_JSON_BYTES = 1024 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: FS_MAX_DEPTH and FS_MAX_MESSAGE_DEPTH: nesting of arguments and of sync messages.
MAX_DEPTH = 128
MAX_MESSAGE_DEPTH = MAX_DEPTH + 5

#: ``int64_t (*now_ms)(void *ctx)`` as used by fs_store_set_clock and fs_hub_set_clock.
CLOCK_FN = CFUNCTYPE(c_int64, c_void_p)

#: ``fs_status (*fs_resolver_fn)(void *ctx, const char *conflict_json,
#: char **out_value_json)`` as used by fs_hub_set_resolver.
RESOLVER_FN = CFUNCTYPE(c_int32, c_void_p, c_char_p, POINTER(c_void_p))

#: ``fs_status (*fs_sign_fn)(void *ctx, const uint8_t *message, size_t length,
#: uint8_t signature[64])`` as used by fs_store_set_signer.
SIGN_FN = CFUNCTYPE(c_int32, c_void_p, POINTER(c_uint8), c_size_t, POINTER(c_uint8))

#: Functions a library built before they were added may lack; the binding
#: then raises when they are used, not when it is imported.
OPTIONAL = {"fs_hub_set_resolver", "fs_store_hygiene", "fs_fetch_request"}


def _candidates() -> List[str]:
    """Where to look for the library, in order: the copy a wheel bundles
    beside this file (`make wheel`), $FIELDSYNC_LIB, the build/ folder of the
    checkout this file is in, then the system (an installed prefix, by
    ldconfig's cache: `make install`)."""
    here = Path(__file__).resolve().parent
    found = [str(here / name) for name in (f"libfieldsync.so.{ABI_VERSION}", "libfieldsync.so")
             if (here / name).exists()][:1]
    env = os.environ.get("FIELDSYNC_LIB")
    if env:
        # An explicit choice ends the search: never silently fall back to
        # another build (only a wheel's own copy comes before it).
        return found + [env]
    # bindings/python/fieldsync/_lib.py -> the repository root is parents[3].
    if len(here.parents) > 2:
        build = here.parents[2] / "build"
        for name in ("libfieldsync.so", f"libfieldsync.so.{ABI_VERSION}"):
            if (build / name).exists():
                found.append(str(build / name))
    system = ctypes.util.find_library("fieldsync")
    if system:
        found.append(system)
    return found


def _load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as exc:  # keep trying, report every attempt below
            errors.append(f"{path}: {exc}")
    detail = "; ".join(errors) or "no candidate found"
    raise ImportError(
        "cannot load libfieldsync (install the fieldsync wheel, which carries it; or set "
        "FIELDSYNC_LIB to the .so path; or build it into the repository's build/ folder; "
        f"or install it with make install): {detail}"
    )


def _declare(lib: ctypes.CDLL) -> None:
    status = c_int32
    out_str = POINTER(c_void_p)  # char ** owned by the caller, freed by fs_free
    protos = {
        "fs_version": (c_char_p, []),  # static storage: copying is right here
        "fs_abi_version": (c_int32, []),
        "fs_last_error": (c_char_p, []),  # owned by the library: copy at once
        "fs_free": (None, [c_void_p]),
        "fs_status_name": (c_char_p, [status]),
        "fs_store_open": (status, [c_char_p, c_char_p, c_char_p, POINTER(c_void_p)]),
        "fs_store_close": (status, [c_void_p]),
        "fs_store_set_clock": (status, [c_void_p, CLOCK_FN, c_void_p]),
        "fs_store_apply": (status, [c_void_p, c_char_p, out_str]),
        "fs_store_get": (status, [c_void_p, c_char_p, c_char_p, out_str]),
        "fs_store_query": (status, [c_void_p, c_char_p, out_str]),
        "fs_store_stats": (status, [c_void_p, out_str]),
        "fs_outbox_count": (status, [c_void_p, POINTER(c_int64)]),
        "fs_outbox_list": (status, [c_void_p, c_char_p, out_str]),
        "fs_outbox_discard": (status, [c_void_p, c_char_p]),
        "fs_audit_query": (status, [c_void_p, c_char_p, out_str]),
        # Storage hygiene and fetch on demand (docs/HYGIENE.md).
        "fs_store_hygiene": (status, [c_void_p, out_str]),
        "fs_fetch_request": (status, [c_void_p, c_char_p, out_str]),
        # Sync steps (sans-I/O: the host moves the bytes).
        "fs_sync_prepare": (status, [c_void_p, out_str, POINTER(c_int64)]),
        "fs_sync_receive": (status, [c_void_p, c_char_p, out_str]),
        "fs_sync_fail": (status, [c_void_p, c_char_p]),
        "fs_sync_connectivity": (status, [c_void_p, c_int32]),
        # The hub.
        "fs_hub_open": (status, [c_char_p, c_char_p, c_char_p, POINTER(c_void_p)]),
        "fs_hub_close": (status, [c_void_p]),
        "fs_hub_set_clock": (status, [c_void_p, CLOCK_FN, c_void_p]),
        "fs_hub_handle": (status, [c_void_p, c_char_p, out_str]),
        "fs_hub_query": (status, [c_void_p, c_char_p, out_str]),
        "fs_hub_audit_query": (status, [c_void_p, c_char_p, out_str]),
        "fs_hub_stats": (status, [c_void_p, out_str]),
        "fs_hub_set_resolver": (status, [c_void_p, c_char_p, RESOLVER_FN, c_void_p]),
        # Authentication (docs/SECURITY.md).
        "fs_store_pin_hub": (status, [c_void_p, c_char_p]),
        "fs_store_set_signer": (status, [c_void_p, c_char_p, SIGN_FN, c_void_p]),
        "fs_store_rotate_key": (status, [c_void_p, out_str]),
        "fs_hub_enroll": (status, [c_void_p, c_char_p, out_str]),
        "fs_hub_revoke": (status, [c_void_p, c_char_p]),
        "fs_hub_backup": (status, [c_void_p, c_char_p]),
        "fs_store_backup": (status, [c_void_p, c_char_p]),
        "fs_hub_devices": (status, [c_void_p, out_str]),
    }
    for name, (restype, argtypes) in protos.items():
        if name in OPTIONAL and not hasattr(lib, name):
            continue
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


class _Missing:
    """Stands for the library when it could not be loaded: the package still
    imports (so `python -m fieldsync` can say why in one line, and `verify`
    runs without it), and the first call into the library raises the
    ImportError that says what was tried."""

    def __init__(self, error: ImportError) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Any:
        raise ImportError(str(self._error))


def _open() -> "tuple[Any, Optional[ImportError]]":
    try:
        loaded = _load()
    except ImportError as e:
        return _Missing(e), e
    _declare(loaded)
    if loaded.fs_abi_version() != ABI_VERSION:
        mismatch = ImportError(f"libfieldsync ABI {loaded.fs_abi_version()} loaded from {loaded._name}, "
                               f"this binding needs ABI {ABI_VERSION}")
        return _Missing(mismatch), mismatch
    return loaded, None


#: The library, or a stand-in raising LOAD_ERROR at the first call.
lib: Any
#: Why the library could not be used (None once it is loaded).
LOAD_ERROR: Optional[ImportError]
lib, LOAD_ERROR = _open()

#: The C library's malloc: a resolver's answer is released by libfieldsync
#: with free().
libc = ctypes.CDLL(None)
libc.malloc.restype = c_void_p
libc.malloc.argtypes = [c_size_t]

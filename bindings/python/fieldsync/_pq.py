"""What a PostgreSQL database holds of a hub, read through libpq without the
library: the operator commands must never create a hub where none is (the
library's open creates the hub's tables), and they open a hub with the
schema it holds, as they do a hub file's (fieldsync/__main__.py).

libpq is loaded here only when a command names a database, as the library
loads it only for a PostgreSQL hub.
"""

from __future__ import annotations

import ctypes
from typing import Any, List, Optional, Tuple

CONNECTION_OK = 0
PGRES_TUPLES_OK = 2

_pq: Optional[Any] = None


def _libpq() -> Any:
    global _pq
    if _pq is None:
        try:
            pq = ctypes.CDLL("libpq.so.5")
        except OSError as e:
            raise OSError(f"libpq.so.5 could not be loaded (Debian: apt-get install libpq5): {e}") from None
        vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for name, restype, argtypes in (
                ("PQconnectdb", vp, [cp]), ("PQstatus", i, [vp]), ("PQerrorMessage", cp, [vp]),
                ("PQexec", vp, [vp, cp]), ("PQresultStatus", i, [vp]), ("PQresultErrorMessage", cp, [vp]),
                ("PQntuples", i, [vp]), ("PQnfields", i, [vp]), ("PQgetvalue", cp, [vp, i, i]),
                ("PQgetisnull", i, [vp, i, i]), ("PQclear", None, [vp]), ("PQfinish", None, [vp])):
            fn = getattr(pq, name)
            fn.restype, fn.argtypes = restype, argtypes
        _pq = pq
    return _pq


def _text(raw: Optional[bytes]) -> str:
    """libpq's message on one line (the commands' errors are one line)."""
    return " ".join((raw or b"").decode("utf-8", "replace").split())


def query(dsn: str, *statements: str) -> List[List[Tuple[Optional[str], ...]]]:
    """Each statement's rows (text values, None for NULL), on one connection.
    Raises OSError with libpq's message when the database does not answer
    or refuses a statement."""
    pq = _libpq()
    conn = pq.PQconnectdb(dsn.encode("utf-8"))
    if not conn:
        raise MemoryError("PQconnectdb")
    try:
        if pq.PQstatus(conn) != CONNECTION_OK:
            raise OSError(f"PostgreSQL: {_text(pq.PQerrorMessage(conn))}")
        out = []
        for sql in statements:
            res = pq.PQexec(conn, sql.encode("utf-8"))
            try:
                if pq.PQresultStatus(res) != PGRES_TUPLES_OK:
                    raise OSError(f"PostgreSQL: {_text(pq.PQresultErrorMessage(res) if res else pq.PQerrorMessage(conn))}")
                out.append([tuple(None if pq.PQgetisnull(res, r, c) else
                                  (pq.PQgetvalue(res, r, c) or b"").decode("utf-8", "replace")
                                  for c in range(pq.PQnfields(res)))
                            for r in range(pq.PQntuples(res))])
            finally:
                if res:
                    pq.PQclear(res)
        return out
    finally:
        pq.PQfinish(conn)

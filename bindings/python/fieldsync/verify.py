"""Verifies a hub's stored audit trail without libfieldsync (docs/AUDIT.md).

    python -m fieldsync verify hub.db [--json]
    python3 verify.py hub.db [--json]        (this file alone, no library)

Reads the hub's SQLite file with the standard ``sqlite3`` module, recomputes
every audit row's hash from its canonical bytes, checks each device's
``prev_hash`` links, and checks the device-signed chain heads the hub kept
(``fs_audit_heads``) with the device's public keys (``fs_device_keys``). A
row is vouched for by its device when a verified head at or after it is
reached from it by an unbroken chain of rows whose hashes recompute: then
the hub's operator cannot have written or changed it. Exit status 0 when
every row is vouched for, 1 when a row or head fails or a row is not covered
by any head yet, 2 usage or unreadable file.

Imports nothing of the binding, so it runs where the shared library is
absent. Ed25519 comes from the ``cryptography`` package when installed, else
from OpenSSL's libcrypto through ctypes; nothing here is hand-written crypto.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import sqlite3
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

GENESIS = "0" * 64

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def head_message(device: str, audit_id: int, hash_hex: str) -> bytes:
    """The bytes a device signs to vouch for its audit chain up to a row."""
    return f"fieldsync audit head\n{device}\n{audit_id}\n{hash_hex}".encode("utf-8")


def _json_string(value: str) -> str:
    # The library writes strings as json.dumps(ensure_ascii=False) does
    # (docs/AUDIT.md): only '"', '\\' and control characters escaped.
    return json.dumps(value, ensure_ascii=False)


def _text(value: Any) -> str:
    """input and outbox_keys are kept as the JSON text that was hashed (a BLOB).
    Bytes that are not UTF-8 (a damaged file) are kept as they are, through
    surrogateescape, so that the hash is of the stored bytes."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, (bytes, bytearray)) else str(value)


def canonical(row: Dict[str, Any]) -> str:
    """The canonical text of a stored row: the hashed members in key order,
    input and outbox_keys verbatim as stored."""
    return ("{\"action\":" + _json_string(row["action"])
            + ",\"actor\":" + _json_string(row["actor"])
            + ",\"audit_id\":" + str(int(row["audit_id"]))
            + ",\"device_id\":" + _json_string(row["device"])
            + ",\"device_time\":" + str(int(row["device_time"]))
            + ",\"hlc\":" + str(int(row["hlc"]))
            + ",\"id\":" + _json_string(row["id"])
            + ",\"input\":" + _text(row["input"])
            + ",\"outbox_keys\":" + _text(row["outbox_keys"])
            + ",\"type\":" + _json_string(row["type"]) + "}")


def row_hash(row: Dict[str, Any]) -> str:
    """sha256_hex(prev_hash + canonical), of the UTF-8 bytes."""
    return hashlib.sha256((row["prev_hash"] + canonical(row)).encode("utf-8", "surrogateescape")).hexdigest()


# -- Ed25519 verification: the cryptography package, else libcrypto -----------------


def _verifier() -> Callable[[bytes, bytes, bytes], bool]:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return _libcrypto_verifier()

    def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
            return True
        except (InvalidSignature, ValueError):
            return False

    return verify


def _libcrypto_verifier() -> Callable[[bytes, bytes, bytes], bool]:
    name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
    crypto = ctypes.CDLL(name)
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    crypto.EVP_PKEY_new_raw_public_key.restype = vp
    crypto.EVP_PKEY_new_raw_public_key.argtypes = [ctypes.c_int, vp, ctypes.c_char_p, sz]
    crypto.EVP_PKEY_free.argtypes = [vp]
    crypto.EVP_MD_CTX_new.restype = vp
    crypto.EVP_MD_CTX_free.argtypes = [vp]
    crypto.EVP_DigestVerifyInit.argtypes = [vp, vp, vp, vp, vp]
    crypto.EVP_DigestVerify.argtypes = [vp, ctypes.c_char_p, sz, ctypes.c_char_p, sz]
    evp_pkey_ed25519 = 1087  # NID_ED25519

    def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        pkey = crypto.EVP_PKEY_new_raw_public_key(evp_pkey_ed25519, None, public_key, 32)
        if not pkey:
            return False
        ctx = crypto.EVP_MD_CTX_new()
        try:
            if not ctx or crypto.EVP_DigestVerifyInit(ctx, None, None, None, pkey) != 1:
                return False
            return bool(crypto.EVP_DigestVerify(ctx, signature, 64, message, len(message)) == 1)
        finally:
            crypto.EVP_MD_CTX_free(ctx)
            crypto.EVP_PKEY_free(pkey)

    return verify


#: Public keys of small order (libsodium's list; the sign bit, the top bit of
#: the last byte, either way): OpenSSL verifies signatures by them that anyone
#: can make, so a head "signed" by one vouches for nothing.
SMALL_ORDER = [bytes.fromhex(h) for h in (
    "00" * 32,
    "01" + "00" * 31,
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "7f",
    "ee" + "ff" * 30 + "7f",
)]


def small_order(public_key: bytes) -> bool:
    return any(public_key[:31] == bad[:31] and public_key[31] & 0x7F == bad[31] for bad in SMALL_ORDER)


def _hex(text: Any, size: int) -> Optional[bytes]:
    try:
        data = bytes.fromhex(str(text))
    except ValueError:
        return None
    return data if len(data) == size else None


# -- the verification ------------------------------------------------------------


def verify_hub(path: str, verify: Optional[Callable[[bytes, bytes, bytes], bool]] = None,
               trusted: Optional[Dict[str, List[str]]] = None) -> Dict[str, Any]:
    """Verify the hub file at `path`; return ``{"ok", "rows", "devices",
    "heads", "heads_verified", "rows_covered", "failures": [{"device",
    "audit_id", "what": "row"|"head", "why"}], "uncovered": [{"device",
    "audit_id", "why"}]}``. Raises sqlite3.Error for a file that is not a hub.

    `trusted` maps device ids to the public keys (hex) the verifier knows
    from elsewhere (provisioning records): heads are then checked against
    those only, not against the keys the hub file lists, which its operator
    could have enrolled himself."""
    verify = verify or _verifier()
    # Read-only: a verifier never changes the evidence it checks.
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    # Text as stored, byte for byte, even when a byte was changed into one
    # that is not UTF-8: the row then fails its hash instead of the verifier.
    db.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    try:
        rows = [dict(r) for r in db.execute(
            "SELECT device, audit_id, actor, action, type, id, input, device_time, hlc, outbox_keys, "
            "prev_hash, hash FROM fs_hub_audit ORDER BY device, audit_id")]
        heads = [dict(r) for r in db.execute(
            "SELECT device, audit_id, hash, public_key, signature, received_at FROM fs_audit_heads "
            "ORDER BY device, audit_id")]
        keys: Dict[str, List[Tuple[str, int, Optional[int]]]] = {}
        for r in db.execute("SELECT device_id, public_key, since, until FROM fs_device_keys"):
            keys.setdefault(r[0], []).append((r[1], r[2], r[3]))
    finally:
        db.close()

    failures: List[Dict[str, Any]] = []
    uncovered: List[Dict[str, Any]] = []
    by_device: Dict[str, Dict[int, Dict[str, Any]]] = {}
    for row in rows:
        by_device.setdefault(row["device"], {})[int(row["audit_id"])] = row

    # Rows: each hash recomputes, each links to the row before it.
    sound: Dict[Tuple[str, int], bool] = {}
    for device, chain in by_device.items():
        for audit_id, row in chain.items():
            why = None
            if row_hash(row) != row["hash"]:
                why = "its hash does not recompute from its canonical bytes"
            elif audit_id == 1 and row["prev_hash"] != GENESIS:
                why = "the first row's prev_hash is not the genesis hash"
            elif audit_id - 1 in chain and row["prev_hash"] != chain[audit_id - 1]["hash"]:
                why = f"its prev_hash is not the hash of row {audit_id - 1}"
            sound[(device, audit_id)] = why is None
            if why:
                failures.append({"device": device, "audit_id": audit_id, "what": "row", "why": why})

    # Heads: signed by one of the device's keys, over a row the hub holds
    # with that hash.
    verified: Dict[Tuple[str, int], str] = {}
    for head in heads:
        device, audit_id = head["device"], int(head["audit_id"])
        why = None
        if trusted is not None:
            held = [k for k in trusted.get(device, []) if k.lower() == str(head["public_key"]).lower()]
        else:
            held = [k[0] for k in keys.get(device, []) if k[0] == head["public_key"]]
        public_key = _hex(head["public_key"], 32)
        signature = _hex(head["signature"], 64)
        # Any key the device was enrolled with: since/until are the hub's
        # clock, which the party this checks controls.
        if not held and trusted is not None:
            why = "signed with a key that is not among this device's trusted keys (--keys)"
        elif not held:
            why = "signed with a key never enrolled for this device"
        elif public_key is None or signature is None:
            why = "its public key or signature is not hex of the right length"
        elif small_order(public_key):
            why = "its key is a point of small order, for which anyone can make signatures"
        elif not verify(public_key, signature, head_message(device, audit_id, head["hash"])):
            why = "its signature does not verify with the device's key"
        elif audit_id not in by_device.get(device, {}):
            why = "the row it signs is missing"
        elif by_device[device][audit_id]["hash"] != head["hash"]:
            why = "the row it signs has another hash"
        if why:
            failures.append({"device": device, "audit_id": audit_id, "what": "head", "why": why})
        else:
            verified[(device, audit_id)] = head["hash"]

    # Coverage: walking down from a verified head along sound links.
    covered = 0
    for device, chain in by_device.items():
        reached = False
        for audit_id in sorted(chain, reverse=True):
            ok = sound[(device, audit_id)]
            if (device, audit_id) in verified and ok:
                reached = True
            elif reached:
                above = chain.get(audit_id + 1)
                reached = ok and above is not None and above["prev_hash"] == chain[audit_id]["hash"]
            if reached:
                covered += 1
            elif ok:
                uncovered.append({"device": device, "audit_id": audit_id,
                                  "why": "no verified signed head at or after it on an unbroken chain"})

    failures.sort(key=lambda f: (f["device"], f["audit_id"], f["what"]))
    uncovered.sort(key=lambda f: (f["device"], f["audit_id"]))
    return {"ok": not failures and not uncovered, "rows": len(rows), "devices": len(by_device),
            "heads": len(heads), "heads_verified": len(verified), "rows_covered": covered,
            "failures": failures, "uncovered": uncovered}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hub_db", help="hub database file (read only)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--keys", metavar="FILE",
                   help="JSON {device_id: public key hex or [keys]} known from provisioning: heads must be "
                        "signed by these, not merely by a key the hub file lists")


def _shown(text: str) -> str:
    """A device id as printable text, even one damaged into bytes that are not UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def run(args: argparse.Namespace) -> int:
    trusted: Optional[Dict[str, List[str]]] = None
    if args.keys:
        try:
            with open(args.keys, encoding="utf-8") as f:
                given = json.load(f)
            if not isinstance(given, dict):
                raise ValueError("not an object of device_id: key")
            trusted = {str(d): [k] if isinstance(k, str) else [str(x) for x in k] for d, k in given.items()}
        except (OSError, ValueError) as e:
            print(f"error: cannot read trusted keys from {args.keys}: {e}", file=sys.stderr)
            return EXIT_USAGE
    try:
        report = verify_hub(args.hub_db, trusted=trusted)
    except (sqlite3.Error, OSError) as e:
        print(f"error: cannot read the hub's audit in {args.hub_db}: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=True))
    else:
        for f in report["failures"]:
            print(f"FAIL {f['what']} {_shown(f['device'])}/{f['audit_id']}: {f['why']}")
        for u in report["uncovered"]:
            print(f"UNCOVERED row {_shown(u['device'])}/{u['audit_id']}: {u['why']}")
        verdict = "ok" if report["ok"] else "FAILED"
        print(f"{verdict}: {report['rows']} rows of {report['devices']} devices, "
              f"{report['rows_covered']} covered by {report['heads_verified']} of {report['heads']} "
              f"signed heads; {len(report['failures'])} failures, {len(report['uncovered'])} uncovered")
    return EXIT_OK if report["ok"] else EXIT_FAILED


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

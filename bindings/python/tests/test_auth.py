"""Authentication end to end (issue 14), in-process and over HTTP against
`python -m fieldsync serve`: every attack of the issue is refused, and the
real device's work still lands exactly once.

- impersonation: another client posts as tablet-7 (its own key, or the real
  request edited, or unsigned) before the real tablet syncs;
- forged and replayed responses; replayed requests;
- pull and fetch outside the enrolled scope, writes of a read-only device;
- revoked and rotated keys, a host signer (a key outside the store file);
- a second store holding the device's key, a copied store file;
- the verifier of the hub's audit (`python -m fieldsync verify`), untouched
  and with one byte of a row or of a head signature changed.

The in-process tests run on both hub storages, SQLite and PostgreSQL
(hubs.py); those over HTTP and the verifier's read the hub's file.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fieldsync
import hubs
import pg
from support import (BINDING_DIR, SCHEMA, enroll_at, run_cli, serve_hub, snapshot, task,
                     write_schema)

VERIFY = BINDING_DIR / "fieldsync" / "verify.py"


def device(path, device_id="tablet-7", **options):
    return fieldsync.Store(str(path), SCHEMA, durability="normal", device_id=device_id, **options)


def pick(store, n, id="T-1"):
    return store.apply(task(id, action="pick", set={"status": "open"}, inc={"picked": n}))


@pytest.fixture
def hub(hub_storage):
    with hub_storage.open(SCHEMA, durability="normal") as h:
        yield h


def picked(hub, id="T-1"):
    return hub.query("task", where={"id": id})[0]["picked"]


def hub_state(hub):
    """What a refused request must leave as it was (the refusal counters and
    log excepted)."""
    stats = hub.stats()
    return {"records": hub.query("task"), "audit": hub.audit(),
            "applied": stats["entries_applied"], "rejected": stats["entries_rejected"],
            "heads": stats["audit_heads"]}


def refusal(response):
    assert "error" in response, response
    return response["error"]["code"]


def the_real_tablet_with_three_synced_and_two_offline(tmp_path, hub):
    """The issue's tablet-7: seq 1-3 synced (picked 3 at the hub), seq 4 and 5
    (+1 each) waiting offline."""
    real = device(tmp_path / "tablet.db")
    hub.enroll_store(real)
    for _ in range(3):
        pick(real, 1)
    fieldsync.sync_once(real, hub)
    assert picked(hub) == 3
    pick(real, 1)
    pick(real, 1)
    return real


# -- impersonation -----------------------------------------------------------------------


def test_an_impostor_posting_as_tablet_7_is_refused_and_the_real_seq_4_and_5_apply(tmp_path, hub):
    real = the_real_tablet_with_three_synced_and_two_offline(tmp_path, hub)
    before = hub_state(hub)

    # Another client's store claiming tablet-7, its fourth action tablet-7-4.
    impostor = device(tmp_path / "impostor.db")
    impostor.pin_hub(hub.public_key)  # the hub's key is public
    for _ in range(3):
        impostor.apply(task("T-1", set={"status": "mine"}))
    assert pick(impostor, -100)["outbox_key"] == "tablet-7-4"
    request, _ = impostor.sync_prepare()
    response = hub.handle(request)
    assert refusal(response) == "bad_signature"
    impostor_before = impostor.outbox_count()
    with pytest.raises(fieldsync.AuthError, match="bad_signature"):
        impostor.sync_receive(response)
    assert impostor.outbox_count() == impostor_before == 4

    # The real request edited (its +1 made -100), and the same text unsigned.
    signed, _ = real.sync_prepare()
    assert b'"inc":{"picked":1}' in signed.raw
    edited = signed.raw.replace(b'"inc":{"picked":1}', b'"inc":{"picked":-100}', 1)
    assert refusal(hub.handle(edited)) == "bad_signature"
    unsigned = signed.raw[:signed.raw.rindex(b',"signature"')] + b"}"
    assert refusal(hub.handle(unsigned)) == "unsigned"
    assert hub_state(hub) == before

    stats = hub.stats()
    assert stats["auth_refused_bad_signature"] == 2 and stats["auth_refused_unsigned"] == 1
    assert stats["auth_refused"] == 3
    log = hub.devices()["refusals"]
    assert [(r["device_id"], r["code"]) for r in log] == [
        ("tablet-7", "unsigned"), ("tablet-7", "bad_signature"), ("tablet-7", "bad_signature")]

    # The real tablet syncs after all that: seq 4 and 5 apply, once.
    real.sync_fail("never sent")
    summaries = fieldsync.sync_once(real, hub)
    assert sum(s["applied"] for s in summaries) == 2 and sum(s["duplicate"] for s in summaries) == 0
    assert real.outbox_count() == 0
    assert picked(hub) == 5 == real.get("task", "T-1")["picked"]
    assert hub.query("task")[0]["status"] == "open"
    assert [r["outcome"] for r in real.audit()] == ["applied"] * 5
    assert [r["audit_id"] for r in hub.audit(device_id="tablet-7")] == [1, 2, 3, 4, 5]
    assert all(r["chain_ok"] for r in hub.audit())
    real.close()
    impostor.close()


def test_messages_travel_as_the_bytes_signed_and_an_edited_one_is_refused(tmp_path, hub):
    with device(tmp_path / "d.db") as s:
        hub.enroll_store(s)
        pick(s, 1)
        request, _ = s.sync_prepare()
        assert isinstance(request, fieldsync.Message) and request.raw.endswith(b'"}')
        # Re-encoded with other spacing: the same JSON, other bytes: refused
        # (the signature member is no longer where the signed text ends).
        assert refusal(hub.handle(json.dumps(request))) in ("unsigned", "bad_signature")
        # A Message edited in Python is sent as edited, never as its old bytes.
        edited = fieldsync.Message(request.raw)
        edited["entries"][0]["ops"]["inc"]["picked"] = 100
        assert not edited.unchanged()
        assert refusal(hub.handle(edited)) == "bad_signature"
        response = hub.handle(request)  # unchanged: its own bytes
        assert [r["status"] for r in response["results"]] == ["applied"]
        with pytest.raises(fieldsync.AuthError):
            s.sync_receive(json.dumps(response))  # the response re-encoded the same way
        assert s.sync_receive(response)["applied"] == 1
        assert picked(hub) == 1


def test_an_unknown_device_is_refused_and_told_so(tmp_path, hub):
    with device(tmp_path / "d.db", "tablet-9") as stranger:
        stranger.pin_hub(hub.public_key)
        pick(stranger, 1)
        request, _ = stranger.sync_prepare()
        response = hub.handle(request)
        assert refusal(response) == "unknown_device"
        with pytest.raises(fieldsync.AuthError, match="unknown_device"):
            stranger.sync_receive(response)
        assert stranger.outbox_count() == 1
    assert hub.query("task") == [] and hub.stats()["auth_refused_unknown_device"] == 1


def test_a_store_without_a_pinned_hub_key_believes_no_response(tmp_path, hub):
    with device(tmp_path / "d.db") as s:
        hub.enroll(s.device_id, s.public_key)  # enrolled, but the hub key not pinned
        pick(s, 1)
        request, _ = s.sync_prepare()
        response = hub.handle(request)
        before = snapshot(s)
        with pytest.raises(fieldsync.AuthError, match="no hub key is pinned"):
            s.sync_receive(response)
        assert snapshot(s) == before


# -- forged and replayed responses, replayed requests ---------------------------------------


def test_a_forged_applied_for_every_key_is_refused_and_the_outbox_kept(tmp_path, hub):
    with device(tmp_path / "d.db") as s:
        hub.enroll_store(s)
        for n in range(3):
            pick(s, n + 1)
        request, _ = s.sync_prepare()
        keys = [e["key"] for e in request["entries"]]
        before = snapshot(s)
        # What a broker or a USB stick could write: unsigned ...
        forged = {"protocol": 2, "device_id": s.device_id, "batch": request["batch"], "cursor": 0,
                  "more": False, "changes": [], "own": [], "audit_acks": [],
                  "results": [{"key": k, "status": "applied", "server_seq": 1} for k in keys],
                  "server_time": 1}
        with pytest.raises(fieldsync.AuthError):
            s.sync_receive(forged)
        # ... signed by another hub (one that enrolled the device too) ...
        with fieldsync.Hub(str(tmp_path / "other-hub.db"), SCHEMA) as other:
            other.enroll(s.device_id, s.public_key)
            rogue = other.handle(request)
        assert [r["status"] for r in rogue["results"]] == ["applied"] * 3
        with pytest.raises(fieldsync.AuthError, match="pinned"):
            s.sync_receive(rogue)
        # ... or this hub's real answer edited.
        real = hub.handle(request)
        edited = real.raw.replace(b'"cursor":3', b'"cursor":99', 1)
        assert edited != real.raw
        with pytest.raises(fieldsync.AuthError):
            s.sync_receive(edited)
        assert snapshot(s) == before
        assert s.sync_receive(real)["applied"] == 3


def test_a_replayed_response_changes_nothing(tmp_path, hub):
    with device(tmp_path / "d.db") as s:
        hub.enroll_store(s)
        pick(s, 1)
        request, _ = s.sync_prepare()
        first = hub.handle(request)
        s.sync_receive(first)
        pick(s, 1)
        s.sync_prepare()  # tablet-7-2 in flight
        before = snapshot(s)
        try:
            summary = s.sync_receive(first)  # the old answer, replayed
        except (fieldsync.ArgError, fieldsync.AuthError):
            summary = None
        assert summary is None or summary["applied"] == 0
        assert snapshot(s) == before
        assert [e["state"] for e in s.outbox()] == ["inflight"]
        s.sync_fail("replayed")
        fieldsync.sync_once(s, hub)
        assert picked(hub) == 2 and s.outbox_count() == 0


def test_a_replayed_request_is_answered_duplicate_and_applies_nothing_twice(tmp_path, hub):
    with device(tmp_path / "d.db") as s:
        hub.enroll_store(s)
        pick(s, 5)
        request, _ = s.sync_prepare()
        s.sync_receive(hub.handle(request))
        pick(s, 1)
        fieldsync.sync_once(s, hub)
        again = hub.handle(request)  # an attacker replays the first request later
        assert [r["status"] for r in again["results"]] == ["duplicate"]
        assert picked(hub) == 6 and hub.stats()["entries_applied"] == 2


# -- scope -----------------------------------------------------------------------------------


def test_pull_and_fetch_outside_the_enrolled_scope_return_nothing_of_it(tmp_path, hub):
    with device(tmp_path / "admin.db", "admin") as admin:
        hub.enroll_store(admin)
        admin.apply(task("T-3", set={"status": "open", "site": "WH-3"}))
        admin.apply(task("T-4", set={"status": "secret", "site": "WH-4"}))
        fieldsync.sync_once(admin, hub)
    # The device asks for everything (no scope of its own): the hub's scope wins.
    with device(tmp_path / "d.db", "picker") as s:
        hub.enroll_store(s, scope={"task": {"site": "WH-3"}})
        fieldsync.sync_once(s, hub)
        assert [r["id"] for r in s.query("task")] == ["T-3"]
        summary = s.fetch_from(hub, [{"type": "task", "id": "T-4"}, {"type": "task", "id": "T-3"}])
        assert summary["missing"] == [{"type": "task", "id": "T-4"}]
        with pytest.raises(fieldsync.NotFoundError):
            s.get("task", "T-4")
        # Writing outside it: visibly rejected, nothing changed at the hub.
        s.apply(task("T-4", set={"status": "mine"}))
        s.apply(task("T-5", set={"status": "new", "site": "WH-4"}))
        s.apply(task("T-3", set={"site": "WH-4"}))  # moving a record out of scope
        fieldsync.sync_once(s, hub)
        assert {e["id"]: e["reason"] for e in s.outbox(state="rejected")} == {
            "T-4": "out_of_scope", "T-5": "out_of_scope", "T-3": "out_of_scope"}
    rows = {r["id"]: r for r in hub.query("task")}
    assert set(rows) == {"T-3", "T-4"} and rows["T-4"]["status"] == "secret"
    assert rows["T-3"]["site"] == "WH-3"
    assert hub.stats()["entries_out_of_scope"] == 3


def test_a_read_only_device_pulls_but_cannot_write(tmp_path, hub):
    with device(tmp_path / "admin.db", "admin") as admin:
        hub.enroll_store(admin)
        admin.apply(task("T-1", set={"status": "open"}))
        fieldsync.sync_once(admin, hub)
    with device(tmp_path / "d.db", "viewer") as s:
        hub.enroll_store(s, write=False)
        fieldsync.sync_once(s, hub)
        assert [r["id"] for r in s.query("task")] == ["T-1"]
        pick(s, 7)
        fieldsync.sync_once(s, hub)
        (entry,) = s.outbox(state="rejected")
        assert entry["reason"] == "out_of_scope"
    assert hub.query("task")[0]["status"] == "open" and hub.query("task")[0].get("picked") in (None, 0)


# -- revoked, rotated, host signer --------------------------------------------------------------


def test_a_revoked_device_is_refused_until_enrolled_again(tmp_path, hub):
    with device(tmp_path / "d.db") as s:
        hub.enroll_store(s)
        pick(s, 1)
        fieldsync.sync_once(s, hub)
        hub.revoke("tablet-7")
        assert hub.devices()["devices"][0]["state"] == "revoked"
        pick(s, 1)
        with pytest.raises(fieldsync.AuthError, match="revoked"):
            fieldsync.sync_once(s, hub)
        assert s.outbox_count() == 1 and picked(hub) == 1
        assert hub.stats()["auth_refused_revoked"] == 1
        with pytest.raises(fieldsync.NotFoundError):
            hub.revoke("tablet-8")
        hub.enroll_store(s)
        s.sync_fail("refused")
        fieldsync.sync_once(s, hub)
        assert s.outbox_count() == 0 and picked(hub) == 2


def test_a_rotated_key_must_be_enrolled_and_the_old_one_is_refused(tmp_path, hub):
    with device(tmp_path / "d.db") as s:
        hub.enroll_store(s)
        old_key = s.public_key
        pick(s, 1)
        old_request, _ = s.sync_prepare()  # signed with the old key, never delivered
        s.sync_fail("lost")
        new_key = s.rotate_key()
        assert new_key != old_key and s.public_key == new_key and len(new_key) == 64
        with pytest.raises(fieldsync.AuthError, match="bad_signature"):
            fieldsync.sync_once(s, hub)
        assert s.outbox_count() == 1 and hub.query("task") == []
        result = hub.enroll(s.device_id, new_key, instance=s.instance_id)
        assert result["rotated"] is True
        # The old key's request, delivered late (or replayed): refused.
        assert refusal(hub.handle(old_request)) == "bad_signature"
        s.sync_fail("refused")
        fieldsync.sync_once(s, hub)
        assert s.outbox_count() == 0 and picked(hub) == 1
        (entry,) = hub.devices()["devices"]
        assert [(k["public_key"], k["until"] is None) for k in entry["keys"]] == [
            (old_key, False), (new_key, True)]


def test_a_host_signer_signs_with_a_key_the_store_never_holds(tmp_path, hub):
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from cryptography.hazmat.primitives import serialization
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw).hex()
    with device(tmp_path / "d.db") as s:
        signed = []
        s.set_signer(public, lambda m: (signed.append(m), key.sign(m))[1])
        assert s.public_key == public and s.stats()["signer"] == "host"
        hub.enroll_store(s)
        pick(s, 1)
        fieldsync.sync_once(s, hub)
        assert picked(hub) == 1 and signed
        # A signer that fails, or signs with another key: the call fails, nothing changes.
        pick(s, 1)
        before = snapshot(s)
        for bad in (lambda m: b"\x00" * 64, lambda m: b"short", lambda m: 1 / 0):
            s.set_signer(public, bad)
            with pytest.raises(fieldsync.ArgError):
                s.sync_prepare()
            assert snapshot(s) == before
        assert any(isinstance(e, ZeroDivisionError) for e in s.signer_errors)
        s.set_signer(None, None)  # back to the file's key, which the hub does not know
        assert s.stats()["signer"] == "store" and s.public_key != public
        with pytest.raises(fieldsync.AuthError, match="bad_signature"):
            fieldsync.sync_once(s, hub)


#: Ed25519 public keys of small order, with and without the sign bit:
#: OpenSSL accepts signatures by them that need no private key.
SMALL_ORDER = ["00" * 32, "01" + "00" * 31,
               "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
               "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
               "ec" + "ff" * 30 + "7f", "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f"]
SMALL_ORDER += [k[:62] + format(int(k[62:], 16) | 0x80, "02x") for k in SMALL_ORDER]


def test_a_key_of_small_order_is_never_trusted(tmp_path, hub):
    # With the identity point enrolled, a request signed R = identity, S = 0
    # (no private key) verified: anyone could act as the device.
    with device(tmp_path / "d.db") as s:
        for weak in SMALL_ORDER:
            with pytest.raises(fieldsync.ArgError, match="small order"):
                hub.enroll("weak", weak)
            with pytest.raises(fieldsync.ArgError, match="small order"):
                s.pin_hub(weak)
        assert hub.devices()["devices"] == [] and s.stats()["hub_key"] == ""


# -- a second store with the device's key; a copied store file ------------------------------------


def test_a_second_store_signing_with_the_enrolled_key_is_refused_instance_mismatch(tmp_path, hub):
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from cryptography.hazmat.primitives import serialization
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw).hex()
    # Two devices provisioned with one id and one key (a key in a secure
    # element cloned, a provisioning mistake): only the enrolled store is served.
    with device(tmp_path / "a.db") as a, device(tmp_path / "b.db") as b:
        for s in (a, b):
            s.set_signer(public, key.sign)
        hub.enroll_store(a)
        b.pin_hub(hub.public_key)
        pick(a, 1)
        fieldsync.sync_once(a, hub)
        pick(b, 100)
        request, _ = b.sync_prepare()
        response = hub.handle(request)
        assert refusal(response) == "instance_mismatch"
        assert a.instance_id in response["error"]["message"] and b.instance_id in response["error"]["message"]
        with pytest.raises(fieldsync.AuthError, match="instance_mismatch"):
            b.sync_receive(response)
        assert b.outbox_count() == 1
        assert picked(hub) == 1 and hub.stats()["auth_refused_instance_mismatch"] == 1
        pick(a, 1)
        fieldsync.sync_once(a, hub)
        assert picked(hub) == 2


def test_a_copied_store_file_loses_nothing_silently(tmp_path, hub):
    # A copy of the file is the same key and the same instance: no signature
    # can tell them apart. What must hold is that neither copy's actions
    # vanish: each is applied once, or visibly not (rejected with a reason).
    path = tmp_path / "d.db"
    with device(path) as s:
        hub.enroll_store(s)
        pick(s, 1)
        fieldsync.sync_once(s, hub)
        instance, key = s.instance_id, s.public_key
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    with device(path) as original:
        pick(original, 10)
        fieldsync.sync_once(original, hub)
        assert original.outbox_count() == 0
    # The copy, handed to another process: its action reuses tablet-7-2.
    schema = write_schema(tmp_path / "schema.json")
    run = run_cli("apply", "--db", str(copy), "--schema", schema,
                  "--action", json.dumps(task("T-1", action="pick", inc={"picked": 100})))
    assert run.returncode == 0, run.stderr
    with device(copy) as clone:
        assert clone.instance_id == instance and clone.public_key == key
        try:
            fieldsync.sync_once(clone, hub)
        except fieldsync.AuthError:
            pass  # refused as a whole: its action stays in its outbox
        left = {e["key"]: (e["state"], e.get("reason")) for e in clone.outbox()}
        clone_audit = clone.audit()
    total = picked(hub)
    assert total in (11, 111)
    if total == 11:  # the clone's +100 did not apply: it must still be visible
        assert left, "the copy's action vanished: not applied, not in its outbox"
        assert all(state in ("pending", "inflight", "rejected", "stuck") for state, _ in left.values())
        assert all(reason for state, reason in left.values() if state == "rejected")
        assert clone_audit[-1]["outcome"] != "applied"


# -- over HTTP, against python -m fieldsync serve ---------------------------------------------------


def post(url, body):
    request = urllib.request.Request(url + "/sync", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, answer.read()


def test_over_http_an_impostor_is_refused_logged_and_the_real_tablet_lands(tmp_path):
    schema = write_schema(tmp_path / "schema.json")
    hub_db = tmp_path / "hub.db"
    real_db, impostor_db = tmp_path / "tablet.db", tmp_path / "impostor.db"
    with device(real_db) as real:
        enroll_at(hub_db, real)
        for _ in range(3):
            pick(real, 1)
    log = tmp_path / "serve.log"
    with serve_hub(hub_db, schema, log) as (url, _):
        done = run_cli("sync", "--db", str(real_db), "--schema", schema, "--server", url,
                       "--max-seconds", "30")
        assert done.returncode == 0, (done.stdout, done.stderr)
        with device(real_db) as real:
            pick(real, 1)
            pick(real, 1)
            signed, _ = real.sync_prepare()
            real.sync_fail("held back")
        # The impostor's own store, through the CLI: exit 5, nothing applied.
        with device(impostor_db) as impostor:
            hub_key = run_cli("store", "info", str(real_db), "--schema", schema, "--json")
            impostor.pin_hub(json.loads(hub_key.stdout)["hub_key"])
            for _ in range(3):
                impostor.apply(task("T-1", set={"status": "mine"}))
            pick(impostor, -100)
        done = run_cli("sync", "--db", str(impostor_db), "--schema", schema, "--server", url,
                       "--max-seconds", "20")
        assert done.returncode == 5, (done.stdout, done.stderr)
        assert "bad_signature" in done.stderr
        # The real request edited on the wire: 200 with the signed refusal.
        edited = signed.raw.replace(b'"inc":{"picked":1}', b'"inc":{"picked":-100}', 1)
        status, body = post(url, edited)
        assert status == 200 and json.loads(body)["error"]["code"] == "bad_signature"
        status, body = post(url, signed.raw)  # the real bytes, byte for byte
        assert status == 200 and [r["status"] for r in json.loads(body)["results"]] == ["applied"] * 2
        done = run_cli("sync", "--db", str(real_db), "--schema", schema, "--server", url,
                       "--max-seconds", "30")
        assert done.returncode == 0, (done.stdout, done.stderr)
        with urllib.request.urlopen(url + "/stats", timeout=10) as answer:
            stats = json.loads(answer.read())
        assert stats["auth_refused_bad_signature"] == 2 and stats["entries_applied"] == 5
    lines = [line for line in log.read_text().splitlines() if line.startswith("refused")]
    assert len(lines) == 2 and all("device tablet-7: bad_signature" in line for line in lines), lines
    with fieldsync.Hub(str(hub_db), SCHEMA) as hub, device(real_db) as real:
        assert picked(hub) == 5 == real.get("task", "T-1")["picked"]
        assert real.outbox_count() == 0
        assert [r["outcome"] for r in real.audit()] == ["applied"] * 5


def test_over_http_the_cli_enrolls_pins_and_scopes(tmp_path):
    schema = write_schema(tmp_path / "schema.json")
    hub_db, admin_db, dev_db = tmp_path / "hub.db", tmp_path / "admin.db", tmp_path / "d.db"
    for path, device_id in ((admin_db, "admin"), (dev_db, "picker")):
        with device(path, device_id):
            pass
    def enroll(db, *extra):
        info = run_cli("store", "info", str(db), "--schema", schema, "--json")
        assert info.returncode == 0, info.stderr
        me = json.loads(info.stdout)
        assert me["hub_key"] == "" and len(me["public_key"]) == 64 and len(me["instance_id"]) == 32
        done = run_cli("hub", "enroll", str(hub_db), me["device_id"], me["public_key"], "--schema", schema,
                       "--instance", me["instance_id"], *extra)
        assert done.returncode == 0, done.stderr
        hub_key = done.stdout.strip().splitlines()[-1]
        pinned = run_cli("store", "pin-hub", str(db), hub_key, "--schema", schema)
        assert pinned.returncode == 0, pinned.stderr

    enroll(admin_db)
    enroll(dev_db, "--scope", '{"task": {"site": "WH-3"}}')
    listed = run_cli("hub", "devices", str(hub_db), "--schema", schema, "--json")
    devices = {d["device_id"]: d for d in json.loads(listed.stdout)["devices"]}
    assert devices["picker"]["scope"] == {"task": {"site": "WH-3"}} and devices["admin"]["scope"] is None
    bad = run_cli("hub", "enroll", str(hub_db), "x", "not-a-key", "--schema", schema)
    assert bad.returncode == 4 and "public_key" in bad.stderr and len(bad.stderr.splitlines()) == 1
    bad = run_cli("hub", "revoke", str(hub_db), "nobody", "--schema", schema)
    assert bad.returncode == 4 and "FS_ERR_NOT_FOUND" in bad.stderr
    with device(admin_db, "admin") as admin:
        admin.apply(task("T-3", set={"status": "open", "site": "WH-3"}))
        admin.apply(task("T-4", set={"status": "secret", "site": "WH-4"}))
    with serve_hub(hub_db, schema, tmp_path / "serve.log") as (url, _):
        for db in (admin_db, dev_db):
            done = run_cli("sync", "--db", str(db), "--schema", schema, "--server", url, "--max-seconds", "30")
            assert done.returncode == 0, (done.stdout, done.stderr)
        with device(dev_db, "picker") as s:
            assert [r["id"] for r in s.query("task")] == ["T-3"]
            fetch = s.fetch_request([{"type": "task", "id": "T-4"}])
            status, body = post(url, fetch.raw)
            assert status == 200
            s.sync_receive(body)
            assert json.loads(body)["missing"] == [{"type": "task", "id": "T-4"}]
            with pytest.raises(fieldsync.NotFoundError):
                s.get("task", "T-4")
        done = run_cli("hub", "revoke", str(hub_db), "picker", "--schema", schema)
        assert done.returncode == 0, done.stderr
        with device(dev_db, "picker") as s:
            s.apply(task("T-3", set={"status": "done"}))
        done = run_cli("sync", "--db", str(dev_db), "--schema", schema, "--server", url, "--max-seconds", "20")
        assert done.returncode == 5 and "revoked" in done.stderr, (done.stdout, done.stderr)


# -- the verifier of the hub's audit --------------------------------------------------------------------


def synced_hub(tmp_path):
    """A hub file holding the audit of two devices, each row covered by a signed head."""
    hub_db = tmp_path / "hub.db"
    with fieldsync.Hub(str(hub_db), SCHEMA, durability="normal") as hub:
        for name in ("tablet-7", "tablet-8"):
            with device(tmp_path / f"{name}.db", name) as s:
                hub.enroll_store(s)
                for n in range(4):
                    s.apply(task(f"T-{n % 2}", set={"status": "open"}, add={"tags": ["é"]}, inc={"picked": n},
                                 input={"scan": f"{name}/{n}", "note": "ünïcode \"quoted\"\n"}))
                    if n % 2:
                        fieldsync.sync_once(s, hub)
        assert hub.stats()["audit_rows"] == 8
    return hub_db


def verify(hub_db, *extra, standalone=True):
    """Run the verifier as a file of its own, where the library cannot load
    (FIELDSYNC_LIB names nothing): it must not need it."""
    env = dict(os.environ, FIELDSYNC_LIB=os.devnull + "/no-such-library.so")
    argv = [sys.executable, str(VERIFY)] if standalone else [sys.executable, "-m", "fieldsync", "verify"]
    if not standalone:
        env.pop("FIELDSYNC_LIB")
        env["PYTHONPATH"] = str(BINDING_DIR)
    return subprocess.run([*argv, str(hub_db), *extra], capture_output=True, text=True, env=env,
                          timeout=60, cwd=str(BINDING_DIR))


def test_an_untouched_hub_verifies(tmp_path):
    hub_db = synced_hub(tmp_path)
    done = verify(hub_db, "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    report = json.loads(done.stdout)
    assert report["ok"] and report["rows"] == report["rows_covered"] == 8
    assert report["heads"] == report["heads_verified"] == 4
    assert report["failures"] == [] and report["uncovered"] == []
    cli = verify(hub_db, standalone=False)
    assert cli.returncode == 0 and cli.stdout.startswith("ok: 8 rows of 2 devices"), (cli.stdout, cli.stderr)


@pytest.mark.parametrize("column", ["actor", "input", "hash", "device_time"])
def test_one_byte_changed_in_a_stored_audit_row_is_named(tmp_path, column):
    hub_db = synced_hub(tmp_path)
    con = sqlite3.connect(str(hub_db))
    with con:
        (value,) = con.execute(f"SELECT {column} FROM fs_hub_audit WHERE device = 'tablet-8' AND audit_id = 2").fetchone()
        if isinstance(value, int):
            changed = value ^ 1
        else:
            data = bytearray(value.encode() if isinstance(value, str) else value)
            i = len(data) // 2
            data[i] = data[i] ^ 0x01 if chr(data[i] ^ 0x01).isalnum() else ord("x")
            changed = data.decode() if isinstance(value, str) else bytes(data)
        assert changed != value
        con.execute(f"UPDATE fs_hub_audit SET {column} = ? WHERE device = 'tablet-8' AND audit_id = 2", (changed,))
    con.close()
    done = verify(hub_db, "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    report = json.loads(done.stdout)
    assert not report["ok"]
    named = {(f["device"], f["audit_id"], f["what"]) for f in report["failures"]}
    assert ("tablet-8", 2, "row") in named, report
    assert all(f["device"] == "tablet-8" for f in report["failures"])
    text = verify(hub_db)
    assert text.returncode == 1 and "FAIL row tablet-8/2" in text.stdout, text.stdout


def test_one_byte_changed_in_a_head_signature_is_named(tmp_path):
    hub_db = synced_hub(tmp_path)
    con = sqlite3.connect(str(hub_db))
    with con:
        (audit_id, signature) = con.execute(
            "SELECT audit_id, signature FROM fs_audit_heads WHERE device = 'tablet-7' ORDER BY audit_id DESC").fetchone()
        flipped = signature[:10] + ("0" if signature[10] != "0" else "1") + signature[11:]
        con.execute("UPDATE fs_audit_heads SET signature = ? WHERE device = 'tablet-7' AND audit_id = ?",
                    (flipped, audit_id))
    con.close()
    done = verify(hub_db, "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    report = json.loads(done.stdout)
    assert [(f["device"], f["audit_id"], f["what"]) for f in report["failures"]] == [("tablet-7", audit_id, "head")]
    # The rows only that head vouched for are named as not covered.
    assert [(u["device"], u["audit_id"]) for u in report["uncovered"]] == [
        ("tablet-7", n) for n in range(audit_id - 1, audit_id + 1)]


def test_a_row_the_operator_adds_is_not_covered(tmp_path):
    hub_db = synced_hub(tmp_path)
    add_a_fifth_row(hub_db)
    report = json.loads(verify(hub_db, "--json").stdout)
    assert report["failures"] == []
    assert [(u["device"], u["audit_id"]) for u in report["uncovered"]] == [("tablet-7", 5)]
    assert not report["ok"]


def test_a_head_the_operator_signs_with_a_key_of_small_order_is_refused(tmp_path):
    # The identity point as a "key" of tablet-7, and R = identity, S = 0 as
    # the head's signature: OpenSSL verifies it, the verifier must not.
    hub_db = synced_hub(tmp_path)
    row_hash = add_a_fifth_row(hub_db)
    weak = "01" + "00" * 31
    con = sqlite3.connect(str(hub_db))
    with con:
        con.execute("INSERT INTO fs_device_keys(device_id, public_key, since, until) VALUES('tablet-7', ?, 0, NULL)",
                    (weak,))
        con.execute("INSERT INTO fs_audit_heads(device, audit_id, hash, public_key, signature, received_at) "
                    "VALUES('tablet-7', 5, ?, ?, ?, 1)", (row_hash, weak, "01" + "00" * 63))
    con.close()
    report = json.loads(verify(hub_db, "--json").stdout)
    assert [(f["device"], f["audit_id"], f["what"]) for f in report["failures"]] == [("tablet-7", 5, "head")]
    assert "small order" in report["failures"][0]["why"]
    assert [(u["device"], u["audit_id"]) for u in report["uncovered"]] == [("tablet-7", 5)]


def add_a_fifth_row(hub_db):
    """A well-formed fifth row of tablet-7, hash and link right: what an
    operator can write without the device's key. Returns its hash."""
    con = sqlite3.connect(str(hub_db))
    with con:
        row = con.execute("SELECT * FROM fs_hub_audit WHERE device = 'tablet-7' ORDER BY audit_id DESC").fetchone()
        sys.path.insert(0, str(BINDING_DIR / "fieldsync"))
        try:
            import verify as verifier  # the file alone, as the verify() runs
        finally:
            sys.path.pop(0)
        cols = [d[1] for d in con.execute("PRAGMA table_info(fs_hub_audit)")]
        new = dict(zip(cols, row))
        new.update(audit_id=5, prev_hash=new["hash"], actor="operator",
                   outbox_keys=b'["tablet-7-5"]')
        new["hash"] = verifier.row_hash(new)
        con.execute(f"INSERT INTO fs_hub_audit({','.join(cols)}) VALUES({','.join('?' * len(cols))})",
                    [new[c] for c in cols])
    con.close()
    return new["hash"]


# -- property: a signed request changed in any one byte is refused and changes nothing ---------------


@pytest.mark.parametrize("storage", hubs.STORAGES)
def test_any_single_byte_change_of_a_signed_request_is_refused_and_changes_nothing(storage):
    if storage == "postgres":
        pg.require()
    settings(max_examples=hubs.examples(storage, sqlite=60, postgres=15), deadline=None,
             suppress_health_check=[HealthCheck.too_slow])(given(data=st.data())(
                 lambda data: single_byte_change_is_refused(storage, data)))()


def single_byte_change_is_refused(storage, data):
    with tempfile.TemporaryDirectory(prefix="fs-auth-prop-") as tmp, hubs.site(storage, tmp) as site:
        with site.open(SCHEMA, durability="normal") as hub, \
                device(os.path.join(tmp, "d.db")) as s:
            hub.enroll_store(s)
            s.apply(task("T-1", set={"status": "open", "site": "WH-3"}, inc={"picked": 2},
                         input={"scan": "4006381333931"}))
            request, _ = s.sync_prepare()
            raw = request.raw
            i = data.draw(st.integers(0, len(raw) - 1), label="position")
            b = data.draw(st.integers(1, 255).filter(lambda v: v != raw[i]), label="byte")
            changed = raw[:i] + bytes([b]) + raw[i + 1:]
            cut = raw.rindex(b',"signature":"')
            if i >= cut + len(b',"signature":"') and i < len(raw) - 2:
                # A hex digit of the signature in the other case is the same signature.
                same = chr(b).lower() == chr(raw[i]).lower() and chr(b).isalpha()
                if same:
                    return
            before = hub_state(hub)
            try:
                response = hub.handle(changed)
            except fieldsync.FieldSyncError:
                response = None  # not JSON any more, or not a request: refused too
            if response is not None:
                assert "error" in response, f"byte {i} -> {b!r} accepted: {response}"
            assert hub_state(hub) == before
            assert hub.handle(raw)["results"][0]["status"] == "applied"


def test_an_operator_who_enrolls_a_key_of_his_own_cannot_pass_trusted_keys(tmp_path):
    """The hub file lists the devices' keys, so an operator could enroll a key
    he holds, rewrite a device's rows and sign a new head with it: the file
    then verifies against itself. Against the keys known from provisioning
    (--keys) the forged head and every row it claims to cover are named."""
    import importlib.util

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    spec = importlib.util.spec_from_file_location("standalone_verify", VERIFY)
    verifier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verifier)
    hub_db = synced_hub(tmp_path)
    con = sqlite3.connect(str(hub_db))
    trusted = {d: k for d, k in con.execute("SELECT device_id, public_key FROM fs_devices")}
    rogue = Ed25519PrivateKey.generate()
    rogue_hex = rogue.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    with con:
        con.execute("INSERT INTO fs_device_keys(device_id, public_key, since) VALUES('tablet-8', ?, 0)", (rogue_hex,))
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute(
            "SELECT device, audit_id, actor, action, type, id, input, device_time, hlc, outbox_keys, prev_hash, hash "
            "FROM fs_hub_audit WHERE device = 'tablet-8' ORDER BY audit_id")]
        previous = verifier.GENESIS
        for row in rows:  # the operator's story: another actor did the work
            row["actor"], row["prev_hash"] = "op-forged", previous
            row["hash"] = previous = verifier.row_hash(row)
            con.execute("UPDATE fs_hub_audit SET actor = ?, prev_hash = ?, hash = ? WHERE device = ? AND audit_id = ?",
                        (row["actor"], row["prev_hash"], row["hash"], row["device"], row["audit_id"]))
        con.execute("DELETE FROM fs_audit_heads WHERE device = 'tablet-8'")
        last = rows[-1]
        signature = rogue.sign(verifier.head_message("tablet-8", last["audit_id"], last["hash"])).hex()
        con.execute("INSERT INTO fs_audit_heads(device, audit_id, hash, public_key, signature, received_at) "
                    "VALUES('tablet-8', ?, ?, ?, ?, 0)", (last["audit_id"], last["hash"], rogue_hex, signature))
    con.close()
    assert verify(hub_db).returncode == 0   # the file agrees with itself
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(trusted))
    done = verify(hub_db, "--json", "--keys", str(keys))
    assert done.returncode == 1, (done.stdout, done.stderr)
    report = json.loads(done.stdout)
    assert ("tablet-8", rows[-1]["audit_id"], "head") in {(f["device"], f["audit_id"], f["what"]) for f in report["failures"]}
    assert {u["audit_id"] for u in report["uncovered"] if u["device"] == "tablet-8"} == {r["audit_id"] for r in rows}
    assert not any(f["device"] == "tablet-7" for f in report["failures"] + report["uncovered"])


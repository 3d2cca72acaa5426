"""The operator commands of `python -m fieldsync` (docs/OPERATIONS.md):
hub stats, hub devices, hub backup, hub revoke, inspect (a store or a hub),
outbox discard, each with --json, and their exit codes: 2 for what the
command line names wrongly (no such file, not a fieldsync file, the wrong
kind), 4 for what the library refuses, one line on stderr either way."""

import json

import pytest

import fieldsync
from support import SCHEMA, run_cli, task, write_schema


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A hub, a store with one entry rejected (a server field's stale base)
    and one pending, and a file that is no database."""
    d = tmp_path_factory.mktemp("ops")
    hub_db, a_db, b_db = d / "hub.db", d / "a.db", d / "b.db"
    with fieldsync.Hub(str(hub_db), SCHEMA, durability="normal") as hub, \
            fieldsync.Store(str(a_db), SCHEMA, durability="normal", device_id="dev-A") as a, \
            fieldsync.Store(str(b_db), SCHEMA, durability="normal", device_id="dev-B") as b:
        for s in (a, b):
            hub.enroll_store(s)
        a.apply(task("T-1", set={"status": "open", "on_hand": 1}))
        fieldsync.sync_once(a, hub)
        fieldsync.sync_once(b, hub)
        b.apply(task("T-1", set={"on_hand": 7}))
        fieldsync.sync_once(b, hub)
        a.apply(task("T-1", set={"on_hand": 3}))   # based on 1, the hub holds 7: rejected
        fieldsync.sync_once(a, hub)
        a.apply(task("T-2", set={"status": "open"}))  # pending
    (d / "junk.db").write_bytes(b"not a database at all" * 100)
    return {"dir": d, "hub": str(hub_db), "a": str(a_db), "b": str(b_db), "junk": str(d / "junk.db"),
            "schema": write_schema(d / "schema.json")}


def ok(*args):
    done = run_cli(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def fails(code, *args):
    done = run_cli(*args)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    return done.stderr


def test_hub_stats_and_devices_read_the_hub_with_the_schema_it_holds(files):
    stats = json.loads(ok("hub", "stats", files["hub"], "--json"))
    assert stats["entries_applied"] == 2 and stats["entries_rejected"] == 1 and stats["devices"] == 2
    assert json.loads(ok("hub", "stats", files["hub"], "--schema", files["schema"], "--json")) == stats
    text = ok("hub", "stats", files["hub"])
    assert "entries_rejected: 1" in text.splitlines()
    registry = json.loads(ok("hub", "devices", files["hub"], "--json"))
    assert sorted(d["device_id"] for d in registry["devices"]) == ["dev-A", "dev-B"]
    assert "last seen 20" in ok("hub", "devices", files["hub"])


def test_inspect_a_hub_shows_entries_conflicts_per_field_and_recent_audit(files):
    report = json.loads(ok("inspect", files["hub"], "--json", "--recent", "2"))
    assert report["kind"] == "hub" and report["entries"]["applied"] == 2 and report["entries"]["rejected"] == 1
    on_hand = report["conflicts"]["fields"]["task.on_hand"]
    assert on_hand["writes"] == 3 and on_hand["rejected"] == 1
    assert len(report["recent_audit"]) == 2
    newest = report["recent_audit"][0]
    assert (newest["device_id"], newest["audit_id"]) == ("dev-A", 2)  # the latest the hub received
    assert newest["device_time"] > 0 and newest["server_received_at"] >= newest["device_time"]
    text = ok("inspect", files["hub"])
    assert "task.on_hand: 3 writes" in text and "1 rejected" in text and "device time -> server time" in text


def test_inspect_a_store_shows_its_outbox_by_state_and_what_to_discard(files):
    report = json.loads(ok("inspect", files["a"], "--json"))
    assert report["kind"] == "store" and report["device_id"] == "dev-A"
    assert report["outbox"] == {"pending": 1, "inflight": 0, "rejected": 1, "stuck": 0, "total": 2}
    assert report["held"] == [{"key": "dev-A-2", "state": "rejected", "type": "task", "id": "T-1",
                               "reason": "conflict", "attempts": 0}]
    assert report["writes"]["rejected"] == 1 and report["conflict_rate"] > 0
    assert [r["outcome"] for r in report["recent_audit"]] == ["pending", "rejected", "applied"]
    assert report["recent_audit"][1]["server_received_at"] > 0
    text = ok("inspect", files["a"])
    assert "outbox: 1 pending, 0 in flight, 1 rejected, 0 stuck" in text
    assert f"outbox discard {files['a']} dev-A-2" in text


def test_outbox_discard_takes_a_rejected_entry_and_refuses_the_rest(files, tmp_path):
    fails(4, "outbox", "discard", files["a"], "dev-A-3")     # pending: the library refuses (ConflictError)
    err = fails(4, "outbox", "discard", files["a"], "dev-A-99")
    assert "FS_ERR_NOT_FOUND" in err
    copy = tmp_path / "a-copy.db"
    with fieldsync.Store(files["a"], SCHEMA) as a:
        a.backup(copy)
    result = json.loads(ok("outbox", "discard", str(copy), "dev-A-2", "--json"))
    assert result == {"discarded": "dev-A-2", "outbox": 1}
    with fieldsync.Store(str(copy), SCHEMA) as a:
        assert [e["key"] for e in a.outbox()] == ["dev-A-3"]
        assert [r["outcome"] for r in a.audit()] == ["applied", "discarded", "pending"]  # the row stays


def test_what_is_not_there_or_not_a_fieldsync_file_is_a_usage_error_and_nothing_is_created(files, tmp_path):
    missing = str(tmp_path / "nope.db")
    for args in (("hub", "stats", missing), ("hub", "devices", missing), ("hub", "revoke", missing, "dev-A"),
                 ("hub", "backup", missing, str(tmp_path / "copy.db")), ("inspect", missing),
                 ("outbox", "discard", missing, "dev-A-1")):
        assert "no such file" in fails(2, *args)
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "copy.db").exists()
    assert "not a fieldsync" in fails(2, "inspect", files["junk"])
    assert "is a fieldsync hub, not a store" in fails(2, "outbox", "discard", files["hub"], "dev-A-2")
    assert "is a fieldsync store, not a hub" in fails(2, "hub", "stats", files["a"])
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{\"version\": 1,")
    fails(4, "hub", "stats", files["hub"], "--schema", str(bad_json))
    fails(4, "hub", "stats", files["hub"], "--schema", str(tmp_path / "missing.json"))
    assert run_cli("inspect", files["a"], "--recent", "-1").returncode == 2
    assert run_cli("outbox", "discard", files["a"]).returncode == 2  # argparse: the key is missing


def test_hub_enroll_and_revoke_answer_json(files, tmp_path):
    hub_db = str(tmp_path / "hub.db")
    with fieldsync.Store(str(tmp_path / "c.db"), SCHEMA, device_id="dev-C") as c:
        key = c.public_key
    enrolled = json.loads(ok("hub", "enroll", hub_db, "dev-C", key, "--schema", files["schema"], "--json"))
    assert enrolled["device_id"] == "dev-C" and len(enrolled["hub_key"]) == 64 and enrolled["rotated"] is False
    assert json.loads(ok("hub", "revoke", hub_db, "dev-C", "--json")) == {"revoked": "dev-C"}
    backup = json.loads(ok("hub", "backup", hub_db, str(tmp_path / "copy.db"), "--json"))
    assert backup["backup"] == str(tmp_path / "copy.db") and backup["bytes"] > 0


def test_a_hub_is_named_by_a_file_or_by_postgres_never_both_nor_neither(files, tmp_path):
    """Usage errors (exit 2) before anything is opened; a database that does
    not answer is exit 4 with libpq's message on one line."""
    import socket
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=nowhere connect_timeout=5"
    schema = files["schema"]
    for args in (("serve", "--schema", schema, "--port", "0"),
                 ("serve", "--db", files["hub"], "--postgres", dsn, "--schema", schema, "--port", "0")):
        done = run_cli(*args)
        assert done.returncode == 2 and "--postgres" in done.stderr, (args, done.stderr)  # argparse's usage
    assert "durability" in fails(2, "serve", "--postgres", dsn, "--durability", "normal", "--schema", schema,
                                 "--port", "0")
    assert "name the hub" in fails(2, "hub", "stats")
    assert "give one" in fails(2, "hub", "stats", files["hub"], "--postgres", dsn)
    assert "give one" in fails(2, "hub", "revoke", files["hub"], "dev-A", "--postgres", dsn)
    assert "pg_dump" in fails(2, "hub", "backup", "--postgres", dsn, str(tmp_path / "copy.db"))
    assert "name a store or hub" in fails(2, "inspect")
    assert "give one" in fails(2, "inspect", files["a"], "--postgres", dsn)
    assert not (tmp_path / "copy.db").exists()
    for args in (("hub", "stats", "--postgres", dsn), ("inspect", "--postgres", dsn),
                 ("hub", "devices", "--postgres", dsn, "--schema", schema)):
        assert "Connection refused" in fails(4, *args)

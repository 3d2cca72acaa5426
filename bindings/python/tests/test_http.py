"""`python -m fieldsync serve` and `python -m fieldsync sync` as processes, over
HTTP on 127.0.0.1 only: the device loop drains the outbox, the hub holds the
records, bad requests get 400, and the exit codes."""

import copy
import http.client
import http.server
import json
import re
import socket
import threading
import urllib.error
import urllib.request

import pytest

import fieldsync
from support import SCHEMA, enroll_at, run_cli, serve_hub, task, write_schema

PROGRESS = re.compile(r"^sent (\d+) entries, applied (\d+), duplicate (\d+), rejected (\d+), "
                      r"retry (\d+), pulled (\d+), outbox (\d+) left, cursor (\d+)$")


def progress(stdout):
    """The progress lines as tuples of ints, and the other lines."""
    lines = stdout.strip().splitlines()
    matched = [PROGRESS.match(line) for line in lines]
    return ([tuple(int(g) for g in m.groups()) for m in matched if m],
            [line for line, m in zip(lines, matched) if not m])


def queue(path, device_id, actions, enroll=None, hub_schema=SCHEMA):
    """Apply `actions` on a new store; with `enroll` (a hub file), enroll
    the device there and pin the hub's key, as provisioning does."""
    with fieldsync.Store(str(path), SCHEMA, durability="normal", device_id=device_id) as s:
        for action in actions:
            s.apply(action)
        if enroll is not None:
            enroll_at(enroll, s, hub_schema)
        return s.outbox_count()


def post(url, body, timeout=10):
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.status, json.loads(answer.read())


def sync_cli(db, schema, url, *extra, timeout=60):
    return run_cli("sync", "--db", str(db), "--schema", str(schema), "--server", url,
                   "--timeout", "10", *extra, timeout=timeout)


@pytest.fixture
def schema_file(tmp_path):
    return write_schema(tmp_path / "schema.json")


def test_cli_sync_drains_the_outbox_and_the_hub_holds_the_records(tmp_path, schema_file):
    dev_a, dev_b = tmp_path / "a.db", tmp_path / "b.db"
    actions_a = [task(f"T-{i}", action="open", set={"status": "open"}, inc={"picked": i})
                 for i in range(23)]
    actions_b = [task("T-1", action="pick", set={"status": "open"}, inc={"picked": 100}),
                 task("T-1", add={"tags": ["cold", "é", "e\u0301"]})]
    hub_db = tmp_path / "hub.db"
    assert queue(dev_a, "dev-A", actions_a, enroll=hub_db) == 23
    assert queue(dev_b, "dev-B", actions_b, enroll=hub_db) == 2
    with serve_hub(hub_db, schema_file, tmp_path / "serve.log") as (url, _):
        done = sync_cli(dev_a, schema_file, url, "--batch-size", "10", "--max-seconds", "30")
        assert done.returncode == 0, (done.stdout, done.stderr)
        lines, others = progress(done.stdout)
        assert [line[0] for line in lines] == [10, 10, 3], done.stdout
        assert sum(line[1] for line in lines) == 23          # applied
        assert [line[6] for line in lines] == [13, 3, 0]     # outbox left
        assert lines[-1][7] == 23                            # cursor
        assert others == ["drained: outbox 0 left, cursor 23"], done.stdout

        for db in (dev_b, dev_a):  # B pushes, then A pulls B's changes
            done = sync_cli(db, schema_file, url + "/", "--max-seconds", "30")
            assert done.returncode == 0, (done.stdout, done.stderr)
        lines, _ = progress(done.stdout)
        assert lines[0][:2] == (0, 0) and lines[0][5] == 1   # A: nothing sent, T-1 pulled

        status, stats = get(url + "/stats")
        assert status == 200
        assert stats["entries_applied"] == 25 and stats["devices"] == 2
        assert stats["audit_rows"] == 25 and stats["audit_chain_breaks"] == 0

    # The server is stopped: the hub file holds everything, as the devices see it.
    with fieldsync.Hub(str(hub_db), SCHEMA) as hub, \
            fieldsync.Store(str(dev_a), SCHEMA) as a, fieldsync.Store(str(dev_b), SCHEMA) as b:
        rows = hub.query("task")
        assert len(rows) == 23 and sum(r["picked"] for r in rows) == sum(range(23)) + 100
        assert hub.query("task", where={"id": "T-1"})[0]["tags"] == sorted(["cold", "é", "e\u0301"])
        assert a.query("task") == rows
        assert b.outbox_count() == a.outbox_count() == 0
        assert len(hub.audit(device_id="dev-A")) == 23
        assert all(r["chain_ok"] and r["server_received_at"] for r in hub.audit())
        assert all(r["server_received_at"] for r in a.audit())


def duplicate_key(request, nested=False):
    """The request's JSON text with one key written twice: at the top ("cursor"),
    or inside the audit row's input next to its canonical equivalent."""
    if not nested:
        text = json.dumps(request, ensure_ascii=False)
        assert text.startswith("{")
        return ('{"cursor":0,' + text[1:]).encode("utf-8")
    row = dict(request["audit"][0], input={"é": 1, "e\u0301": 2, "PLACEHOLDER": 3})
    text = json.dumps(dict(request, audit=[row]), ensure_ascii=False)
    assert text.count('"PLACEHOLDER"') == 1
    return text.replace('"PLACEHOLDER"', '"é"').encode("utf-8")


def test_bad_requests_get_400_and_change_nothing(tmp_path, schema_file):
    with fieldsync.Store(str(tmp_path / "d.db"), SCHEMA, durability="normal",
                         device_id="dev-A") as s:
        s.apply(task("T-1", set={"status": "open"}))
        request, _ = s.sync_prepare()
    # A hub without authentication, so that the altered requests below reach
    # the decoder; signed, they are refused before it (test_auth.py).
    with serve_hub(tmp_path / "hub.db", schema_file, tmp_path / "serve.log", "--auth", "off") as (url, _):
        sync = url + "/sync"
        cases = [
            (b"{not json", "FS_ERR_JSON"),
            (b"", "FS_ERR_JSON"),
            (b"\xff\xfe", "FS_ERR_JSON"),
            (b"[1, 2]", "FS_ERR_ARG"),
            (b'{"hello": "hub"}', "FS_ERR_ARG"),
            (json.dumps(dict(request, device_id="dev-Z")).encode(), "FS_ERR_ARG"),
            (json.dumps(dict(request, scope={"task": {"nope": 1}})).encode(), "FS_ERR_SCHEMA"),
            # An exactly duplicated key (same bytes twice) is refused as JSON;
            # keys differing only in normalization ("é", "e" + U+0301) are not
            # (they are kept apart, see test_audit_chain.py).
            (duplicate_key(request), "FS_ERR_JSON"),
            (duplicate_key(request, nested=True), "FS_ERR_JSON"),
        ]
        for body, name in cases:
            status, answer = post(sync, body)
            assert (status, answer["status"]) == (400, name), (body[:60], answer)
            assert answer["error"]
        for body in cases[-2:]:
            _, answer = post(sync, body[0])
            assert "duplicate" in answer["error"], answer
        status, answer = post(url + "/elsewhere", b"{}")
        assert status == 404
        # Refused before the body is read: too big, or no length at all.
        port = int(url.rsplit(":", 1)[1])
        for headers, code, name in (({"Content-Length": str(65 * 2**20)}, 413, "FS_ERR_TOO_BIG"),
                                    ({}, 400, "FS_ERR_ARG")):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.putrequest("POST", "/sync")
                for k, v in headers.items():
                    conn.putheader(k, v)
                conn.endheaders()
                answer = conn.getresponse()
                assert (answer.status, json.loads(answer.read())["status"]) == (code, name)
            finally:
                conn.close()
        status, stats = get(url + "/stats")
        assert stats["entries_applied"] == 0 and stats["audit_rows"] == 0
        # The server still works, and the real request is answered 200.
        status, answer = post(sync, json.dumps(request).encode())
        assert status == 200 and answer["results"][0]["status"] == "applied"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sync_gives_up_with_exit_1_when_the_server_is_down(tmp_path, schema_file):
    db = tmp_path / "d.db"
    queue(db, "dev-A", [task("T-1", set={"status": "open"})])
    done = sync_cli(db, schema_file, f"http://127.0.0.1:{free_port()}", "--max-seconds", "1.5",
                    "--timeout", "1")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "transport error" in done.stdout and "gave up" in done.stdout
    with fieldsync.Store(str(db), SCHEMA) as s:
        entry, = s.outbox()
        # Nothing lost, no attempt counted (transport backoff is not kept in the file).
        assert entry["state"] == "pending" and entry["attempts"] == 0


def test_sync_exits_3_when_the_hub_requires_an_upgrade(tmp_path):
    newer = copy.deepcopy(SCHEMA)
    newer.update(version=2, min_client_version=2)
    db = tmp_path / "d.db"
    queue(db, "dev-A", [task("T-1", set={"status": "open"})], enroll=tmp_path / "hub.db", hub_schema=newer)
    old_schema = write_schema(tmp_path / "v1.json")
    with serve_hub(tmp_path / "hub.db", write_schema(tmp_path / "v2.json", newer),
                   tmp_path / "serve.log") as (url, _):
        done = sync_cli(db, old_schema, url, "--max-seconds", "20")
        assert done.returncode == 3, (done.stdout, done.stderr)
        assert "upgrade required" in done.stderr
        again = sync_cli(db, old_schema, url, "--max-seconds", "20")
        assert again.returncode == 3, (again.stdout, again.stderr)
    with fieldsync.Store(str(db), SCHEMA) as s:
        assert s.outbox_count() == 1 and s.stats()["sync_state"] == "upgrade_required"


def test_apply_command(tmp_path, schema_file):
    db = tmp_path / "d.db"
    done = run_cli("apply", "--db", str(db), "--schema", schema_file, "--device-id", "dev-A",
                   "--action", json.dumps(task("T-1", set={"status": "open"}, inc={"picked": 2})))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outbox_key"] == "dev-A-1"
    done = run_cli("apply", "--db", str(db), "--schema", schema_file,
                   "--action", json.dumps(task("T-1", set={"nope": 1})))
    assert done.returncode == 4 and "FS_ERR_SCHEMA" in done.stderr
    done = run_cli("serve", "--db", str(tmp_path / "h.db"), "--schema", str(tmp_path / "missing.json"),
                   "--port", "0")
    assert done.returncode == 4 and "missing.json" in done.stderr


def test_sync_ends_when_only_stuck_entries_and_their_followers_are_left(tmp_path, schema_file):
    # Entries stuck after max_attempts are never resent, and later entries of
    # their record wait behind them: the loop reports them and exits 0.
    newer = copy.deepcopy(SCHEMA)
    newer["version"] = 2
    v2 = write_schema(tmp_path / "v2.json", newer)
    db = str(tmp_path / "d.db")
    with fieldsync.Hub(str(tmp_path / "hub.db"), SCHEMA) as hub, \
            fieldsync.Store(db, newer, durability="normal", max_attempts=1) as s:
        hub.enroll_store(s)
        s.apply(task("T-1", set={"status": "open"}))
        fieldsync.sync_once(s, hub)
        assert s.stats()["outbox_stuck"] == 1
        s.apply(task("T-1", inc={"picked": 1}))   # held back behind the stuck one
    with serve_hub(tmp_path / "hub.db", schema_file, tmp_path / "serve.log") as (url, _):
        done = sync_cli(db, v2, url, "--max-seconds", "20")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "1 stuck" in done.stdout.splitlines()[-1], done.stdout


def test_sync_backs_off_on_5xx_and_lost_answers_and_applies_once(tmp_path):
    # A flaky transport in front of an in-process hub, on 127.0.0.1: every
    # third request is answered 503 without reaching the hub, every third is
    # applied by the hub but its answer replaced by a 502 (lost on the way
    # back) or the connection dropped; the device loop backs off and resends,
    # and the hub counts every increment once.
    schema_file = write_schema(tmp_path / "schema.json")
    db = tmp_path / "d.db"
    queue(db, "dev-A", [task(f"T-{i % 4}", set={"status": "open"}, inc={"picked": 1})
                        for i in range(40)], enroll=tmp_path / "hub.db")
    hub = fieldsync.Hub(str(tmp_path / "hub.db"), SCHEMA, durability="normal")
    calls = {"n": 0}

    class Flaky(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            calls["n"] += 1
            n = calls["n"]
            if n % 3 == 1:
                code, answer = 503, b'{"error": "busy"}'
            else:
                answer = hub.handle_bytes(body)  # signed: carried byte for byte
                code = 200
                if n % 3 == 2 and n < 20:
                    if n % 2:
                        self.close_connection = True   # dropped: no answer at all
                        self.connection.shutdown(2)
                        return
                    code, answer = 502, b'{"error": "bad gateway"}'
            self.send_response(code)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        done = sync_cli(db, schema_file, url, "--batch-size", "7", "--max-seconds", "60")
        assert done.returncode == 0, (done.stdout, done.stderr)
        lines, others = progress(done.stdout)
        assert sum("transport error" in line for line in others) >= 5, done.stdout
        assert sum(line[1] for line in lines) + sum(line[2] for line in lines) >= 40
        assert sum(line[2] for line in lines) > 0        # resends answered "duplicate"
        assert sum(r["picked"] for r in hub.query("task")) == 40
        assert hub.stats()["entries_applied"] == 40 and hub.stats()["audit_rows"] == 40
        with fieldsync.Store(str(db), SCHEMA) as s:
            assert s.outbox_count() == 0 and s.query("task") == hub.query("task")
    finally:
        server.shutdown()
        server.server_close()
        hub.close()


def test_stats_are_the_operators_with_a_token_nobody_else_reads_them(tmp_path):
    """GET /stats was open to anyone who reached the hub (issue 14): with
    --stats-token only a request bearing it is answered."""
    schema_path = write_schema(tmp_path / "schema.json")
    with serve_hub(tmp_path / "hub.db", schema_path, tmp_path / "serve.log", "--stats-token", "s3cret") as (url, _):
        base = url
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(base + "/stats", headers=headers), timeout=10)
            assert refused.value.code == 401
        with urllib.request.urlopen(urllib.request.Request(base + "/stats", headers={"Authorization": "Bearer s3cret"}),
                                    timeout=10) as answer:
            assert answer.status == 200 and json.loads(answer.read())["auth"] == "on"

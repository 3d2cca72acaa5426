"""The PostgreSQL hub served over HTTP (issue 17; docs/OPERATIONS.md
"PostgreSQL hub"). Two `python -m fieldsync serve --postgres` processes, and
two gunicorns of two workers each, on two ports over one database: a device
syncing through one and then the other has its work applied once and seen
through both, a request applied through one and resent through the other is
answered duplicate, and /stats and /metrics answer the same hub-wide figures
on every server. /healthz answers 503 while the database does not answer (a
wrong port; a server stopped) and 200 again once it does, without a restart. The operator
commands take --postgres and never create a hub in a database without one.

Skipped without a PostgreSQL server (FIELDSYNC_PG_DSN), except under CI."""

import glob
import json
import os
import random
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

import fieldsync
import pg
from fieldsync import server
from pg import pg_dsn  # noqa: F401
from support import REPO, SCHEMA, run_cli, serve_hub, task, write_schema
from test_server_app import call

FAST = {"durability": "normal", "backoff_base_ms": 1, "backoff_cap_ms": 5}
SERVER_SH = str(REPO / "Tests" / "pg" / "server.sh")


def device(path, device_id, **options):
    return fieldsync.Store(str(path), SCHEMA, device_id=device_id, **{**FAST, **options})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url, body):
    request = urllib.request.Request(url + "/sync", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def prepare(store):
    """The store's next request (waiting out its backoff), or None when it has nothing to send."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        request, wait_ms = store._prepare_raw()
        if request is not None or wait_ms < 0:
            return request
        stats = store.stats()
        if stats["outbox_pending"] + stats["outbox_inflight"] == 0 and wait_ms > 1000:
            return None
        time.sleep(max(wait_ms, 1) / 1000)
    raise AssertionError(f"{store.device_id}: no request within 10 s: {store.stats()}")


def drain(store, urls, rng=None):
    """Sync until nothing is left to send and no page of changes waits, each
    exchange through one of `urls` (in turn, or at random with `rng`)."""
    store.set_connectivity(True)
    for i in range(200):
        request, wait_ms = store._prepare_raw()
        if request is None:
            stats = store.stats()
            if stats["outbox_pending"] + stats["outbox_inflight"] == 0:
                return
            time.sleep(max(wait_ms, 1) / 1000)
            continue
        url = rng.choice(urls) if rng else urls[i % len(urls)]
        status, body = post(url, request)
        assert status == 200, (url, status, body[:300])
        store.sync_receive(body)
    raise AssertionError(f"{store.device_id} did not drain: {store.stats()}")


HUB_WIDE = ("storage", "seq", "records", "entries_applied", "entries_rejected", "audit_rows", "devices",
            "devices_enrolled", "generation", "public_key")


def hub_wide(url):
    status, body = get(url + "/stats")
    assert status == 200, body
    stats = json.loads(body)
    return {k: stats.get(k) for k in HUB_WIDE}


def synced_lines(log_path):
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return [r for r in lines if r["path"] == "/sync" and r["status"] == 200]


def test_two_serve_processes_on_one_database_apply_a_devices_work_once_and_both_show_it(tmp_path, pg_dsn):
    schema_path = write_schema(tmp_path / "schema.json")
    with fieldsync.Hub(None, SCHEMA, postgres=pg_dsn) as hub, \
            device(tmp_path / "a.db", "dev-A", batch_size=2) as a, device(tmp_path / "b.db", "dev-B") as b:
        for s in (a, b):
            hub.enroll_store(s)
        with serve_hub(None, schema_path, tmp_path / "one.log", "--postgres", pg_dsn) as (one, _), \
                serve_hub(None, schema_path, tmp_path / "two.log", "--postgres", pg_dsn) as (two, _):
            for i in range(6):
                a.apply(task(f"T-{i}", set={"status": "open"}, inc={"picked": i + 1}))
            status, body = post(one, prepare(a))
            assert status == 200
            assert a.sync_receive(body)["applied"] == 2
            # Applied through one, its answer lost; resent through two: the
            # ledger is the database's, so two answers duplicate.
            status, _ = post(one, prepare(a))
            assert status == 200
            a.sync_fail("answer lost")
            status, body = post(two, prepare(a))
            assert status == 200
            summary = a.sync_receive(body)
            assert (summary["applied"], summary["duplicate"]) == (0, 2), summary
            drain(a, [two])
            drain(b, [one])  # B pulls through the other server what A pushed through both
            rows = hub.query("task")
            assert sum(r["picked"] for r in rows) == 21 and len(rows) == 6
            assert a.query("task") == b.query("task") == rows
            assert hub_wide(one) == hub_wide(two)
            stats = hub_wide(one)
            assert stats["storage"] == "postgres" and stats["entries_applied"] == stats["audit_rows"] == 6, stats
            assert all(r["chain_ok"] for r in hub.audit())
    assert {r["device_id"] for r in synced_lines(tmp_path / "one.log")} == {"dev-A", "dev-B"}
    assert {r["device_id"] for r in synced_lines(tmp_path / "two.log")} == {"dev-A"}


def test_two_gunicorns_on_one_database_through_lost_and_duplicated_requests_apply_every_action_once(
        tmp_path, pg_dsn):
    pytest.importorskip("gunicorn")
    pytest.importorskip("prometheus_client")
    import test_server as ts
    schema_path = write_schema(tmp_path / "schema.json")
    # Each server its own directory: its own request log and metrics directory.
    dirs = [tmp_path / "host-1", tmp_path / "host-2"]
    for d in dirs:
        d.mkdir()
    env = {"FIELDSYNC_HUB": "", "FIELDSYNC_POSTGRES": pg_dsn, "FIELDSYNC_DURABILITY": ""}
    work = ts.Workload(seed=17)
    stores = [device(tmp_path / f"{n}.db", f"dev-{n}", batch_size=4) for n in "ABC"]
    errors = []
    try:
        with fieldsync.Hub(None, SCHEMA, postgres=pg_dsn) as hub:
            for s in stores:
                hub.enroll_store(s)
            with ts.gunicorn(None, schema_path, dirs[0], workers=2, **env) as (url_1, _, log_1), \
                    ts.gunicorn(None, schema_path, dirs[1], workers=2, **env) as (url_2, _, log_2):
                urls = [url_1, url_2]

                def run(store, seed):
                    rng = random.Random(seed)
                    try:
                        for _ in range(10):
                            work.act(store, rng.randint(1, 4))
                            request = prepare(store)
                            if request is None:
                                continue
                            first, other = rng.sample(urls, 2)
                            fault = rng.choice(["ok", "lost", "duplicated"])
                            if fault != "ok":     # reaches the hub through one server
                                assert post(first, request)[0] == 200
                            if fault == "lost":   # its answer lost: resent later, through either
                                store.sync_fail("answer lost")
                                continue
                            status, body = post(other, request)
                            assert status == 200, body[:300]
                            store.sync_receive(body)
                    except BaseException as e:  # noqa: BLE001 - reported by the main thread
                        errors.append(e)

                threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(stores)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(180)
                assert not errors, errors
                rng = random.Random(3)
                for _ in range(2):  # the second round pulls what the others pushed last
                    for s in stores:
                        drain(s, urls, rng)
                work.check(hub, stores)
                stats = hub.stats()
                # Hub-wide figures from the database: every server answers the same.
                assert hub_wide(url_1) == hub_wide(url_2)
                samples = [ts.metrics(url) for url in urls]
                for name, key in (("fieldsync_hub_entries_total", "entries_applied"), ("fieldsync_hub_seq", "seq"),
                                  ("fieldsync_hub_audit_rows", "audit_rows")):
                    labels = {"outcome": "applied"} if key == "entries_applied" else {}
                    assert [ts.total(s, name, **labels) for s in samples] == [stats[key]] * 2, name
                assert [ts.total(s, "fieldsync_hub_up") for s in samples] == [1, 1]
        for log in (log_1, log_2):
            lines = synced_lines(log)
            assert len({r["pid"] for r in lines}) >= 1 and {r["device_id"] for r in lines} <= {"dev-A", "dev-B", "dev-C"}
            assert lines, f"{log}: this server answered no sync"
        assert sum(r.get("duplicate", 0) for log in (log_1, log_2) for r in synced_lines(log)) > 0
    finally:
        for s in stores:
            s.close()


def test_healthz_is_503_while_the_dsn_names_no_server_and_the_password_is_never_logged(tmp_path, capsys):
    """A wrong port (nothing listens there): no server is needed, nor stopped."""
    dsn = f"host=127.0.0.1 port={free_port()} user=postgres password=s3cret dbname=fieldsync connect_timeout=5"
    app = server.create_app(server.Config(hub=None, schema=write_schema(tmp_path / "schema.json"), postgres=dsn,
                                          log=str(tmp_path / "requests.log")))
    code, _, body = call(app)
    assert code == 503 and json.loads(body) == {"status": "unavailable", "error": "FS_ERR_IO"}, body
    code, headers, _ = call(app, "POST", "/sync", b"{}")
    assert code == 503 and headers["Retry-After"] == "5"
    assert call(app, path="/stats")[0] == 503
    code, _, text = call(app, path="/metrics")
    if code != 501:  # prometheus_client installed
        assert code == 200 and b"fieldsync_hub_up 0.0" in text
    err = capsys.readouterr().err
    assert "unavailable" in err and "password=***" in err and "s3cret" not in err
    assert "s3cret" not in (tmp_path / "requests.log").read_text()
    app.close()


def server_sh(*args):
    return subprocess.run([SERVER_SH, *args], check=True, capture_output=True, text=True).stdout.strip()


def pg_ctl(directory, *args):
    """pg_ctl on the cluster Tests/pg/server.sh made in `directory` (as the
    postgres user when root, as server.sh does)."""
    bins = glob.glob("/usr/lib/postgresql/*/bin")
    newest = max(bins, key=lambda b: int(b.split("/")[-2].split(".")[0]))
    argv = [f"{newest}/pg_ctl", "-D", f"{directory}/data", "-w", "-t", "60", *args]
    if os.getuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True)


def test_healthz_is_503_while_the_database_server_is_down_and_200_once_it_is_back(tmp_path):
    """A server of this test's own, stopped under the running app and
    started again: 503 meanwhile, then 200 without restarting the app (the
    library makes the lost connection again at the next call), and the
    hub's data and generation are unchanged."""
    pg.require()
    directory = tempfile.mkdtemp(prefix="fieldsync-pg-")  # /tmp: the postgres user must reach it
    port = free_port()
    try:
        dsn = server_sh("start", directory, str(port))
        app = server.create_app(server.Config(hub=None, schema=write_schema(tmp_path / "schema.json"),
                                              postgres=dsn, log="off"))
        code, _, body = call(app)
        assert code == 200 and json.loads(body)["status"] == "ok", body
        before = json.loads(call(app, path="/stats")[2])
        store = device(tmp_path / "a.db", "dev-A")
        with fieldsync.Hub(None, SCHEMA, postgres=dsn) as hub:
            hub.enroll_store(store)
        store.apply(task("T-1", set={"status": "open"}, inc={"picked": 2}))
        request = prepare(store)
        pg_ctl(directory, "-m", "fast", "stop")
        # The first call finds the connection lost (reported as the library
        # reads it: FS_ERR_INTERNAL "server closed the connection" today), the
        # next ones that it cannot be made again.
        code, _, body = call(app)
        assert code == 503 and json.loads(body)["status"] == "unavailable", body
        code, _, body = call(app)
        assert code == 503 and json.loads(body) == {"status": "unavailable", "error": "FS_ERR_IO"}, body
        code, headers, _ = call(app, "POST", "/sync", request)
        assert code == 503 and headers["Retry-After"] == "5"
        store.sync_fail("HTTP 503")
        assert call(app, path="/stats")[0] == 503
        pg_ctl(directory, "-l", f"{directory}/server.log", "-o",
               f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off", "start")
        code, _, body = call(app)
        assert code == 200, body
        code, _, body = call(app, "POST", "/sync", prepare(store))
        assert code == 200 and store.sync_receive(body)["applied"] == 1
        after = json.loads(call(app, path="/stats")[2])
        assert (after["public_key"], after["generation"]) == (before["public_key"], before["generation"])
        assert after["entries_applied"] == 1
        store.close()
        app.close()
    finally:
        server_sh("stop", directory)


def ok(*args):
    done = run_cli(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def fails(code, *args):
    done = run_cli(*args)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    return done.stderr


def test_operator_commands_take_postgres_and_never_create_a_hub(tmp_path, pg_dsn):
    schema_path = write_schema(tmp_path / "schema.json")
    with fieldsync.Store(str(tmp_path / "c.db"), SCHEMA, device_id="dev-C") as c:
        key = c.public_key
    enrolled = json.loads(ok("hub", "enroll", "--postgres", pg_dsn, "dev-C", key, "--schema", schema_path, "--json"))
    assert enrolled["device_id"] == "dev-C" and len(enrolled["hub_key"]) == 64
    stats = json.loads(ok("hub", "stats", "--postgres", pg_dsn, "--json"))  # with the schema it holds
    assert stats["storage"] == "postgres" and stats["devices_enrolled"] == 1 and stats["public_key"] == enrolled["hub_key"]
    assert [d["device_id"] for d in json.loads(ok("hub", "devices", "--postgres", pg_dsn, "--json"))["devices"]] == \
        ["dev-C"]
    report = json.loads(ok("inspect", "--postgres", pg_dsn, "--json"))
    assert report["kind"] == "hub" and report["storage"] == "postgres" and report["devices_enrolled"] == 1
    assert ok("inspect", "--postgres", pg_dsn).startswith("hub postgres host=")
    assert json.loads(ok("hub", "revoke", "--postgres", pg_dsn, "dev-C", "--json")) == {"revoked": "dev-C"}
    assert json.loads(ok("hub", "stats", "--postgres", pg_dsn, "--schema", schema_path, "--json"))[
        "devices_revoked"] == 1
    with pg.database() as empty:
        for args in (("hub", "stats"), ("hub", "devices"), ("inspect",), ("hub", "revoke", "dev-C")):
            assert "no fieldsync hub" in fails(2, *args, "--postgres", empty)
        assert "no fieldsync hub" in fails(2, "hub", "stats", "--postgres", empty, "--schema", schema_path)
        tables = "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        assert pg.psql(tables, empty) == "0"

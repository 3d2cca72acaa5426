"""The hub's WSGI application (fieldsync/server.py) called in-process, no
server between: /healthz when the hub file is missing, unreadable or
replaced; who may read /stats and /metrics; the request log holds no body;
503 with Retry-After when every turn is taken; what is read from a response
for the log; the settings from the environment."""

import io
import json
import os
import wsgiref.util

import pytest

import fieldsync
from fieldsync import server
from support import SCHEMA, task, write_schema


def call(app, method="GET", path="/healthz", body=b"", remote="127.0.0.1", headers=None, length=None):
    """(status code, headers, body) of one request to the WSGI app."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "REMOTE_ADDR": remote,
               "wsgi.input": io.BytesIO(body)}
    wsgiref.util.setup_testing_defaults(environ)
    if method == "POST":
        environ["CONTENT_LENGTH"] = str(len(body) if length is None else length)
    for k, v in (headers or {}).items():
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    started = {}

    def start_response(status, response_headers):
        started.update(code=int(status.split()[0]), headers=dict(response_headers))

    result = app(environ, start_response)
    try:
        data = b"".join(result)
    finally:
        result.close()
    return started["code"], started["headers"], data


@pytest.fixture
def schema_file(tmp_path):
    return write_schema(tmp_path / "schema.json")


def make(tmp_path, schema_file, **options):
    options.setdefault("log", str(tmp_path / "requests.log"))
    app = server.create_app(server.Config(hub=str(options.pop("hub", tmp_path / "hub.db")), schema=schema_file,
                                          **options))
    return app


def test_healthz_is_200_while_the_hub_answers_and_503_when_its_file_is_missing_unreadable_or_replaced(
        tmp_path, schema_file):
    app = make(tmp_path, schema_file)
    code, _, body = call(app)
    assert code == 200 and json.loads(body)["status"] == "ok"
    # Moved away under the running server: the worker's handle writes to a
    # file nobody will back up or restart on.
    os.rename(tmp_path / "hub.db", tmp_path / "moved.db")
    code, _, body = call(app)
    assert code == 503 and json.loads(body)["status"] == "unavailable", body
    os.rename(tmp_path / "moved.db", tmp_path / "hub.db")
    assert call(app)[0] == 200
    app.close()

    missing = make(tmp_path, schema_file, hub=tmp_path / "no" / "such" / "dir" / "hub.db")
    code, _, body = call(missing)
    assert code == 503 and "error" in json.loads(body)
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 1000)
    garbage = make(tmp_path, schema_file, hub=tmp_path / "garbage.db")
    code, _, body = call(garbage)
    assert code == 503, body
    # A sync request to an unavailable hub: 503 with Retry-After, the device resends.
    code, headers, _ = call(garbage, "POST", "/sync", b"{}")
    assert code == 503 and headers["Retry-After"] == "5"


def test_stats_and_metrics_are_the_operators(tmp_path, schema_file):
    open_app = make(tmp_path, schema_file)
    for path in ("/stats", "/metrics"):
        assert call(open_app, path=path)[0] == 200
        assert call(open_app, path=path, remote="::1")[0] == 200
        assert call(open_app, path=path, remote="10.1.2.3")[0] == 403
        assert call(open_app, path=path, remote="127.0.0.1", headers={"X-Forwarded-For": "10.1.2.3"})[0] == 403
        assert call(open_app, path=path, remote="127.0.0.1", headers={"Forwarded": "for=10.1.2.3"})[0] == 403
    open_app.close()
    tokened = make(tmp_path, schema_file, stats_token="s3cret")
    for path in ("/stats", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            assert call(tokened, path=path, remote="127.0.0.1", headers=headers)[0] == 401
        code, _, body = call(tokened, path=path, remote="10.1.2.3", headers={"Authorization": "Bearer s3cret"})
        assert code == 200 and body
    assert call(tokened, path="/healthz", remote="10.1.2.3")[0] == 200
    tokened.close()
    assert server.operator_allowed({"REMOTE_ADDR": "127.0.0.1"}, "")[0] == 0
    assert server.operator_allowed({"REMOTE_ADDR": "192.168.1.9"}, "")[0] == 403
    assert server.operator_allowed({"REMOTE_ADDR": ""}, "")[0] == 403  # a unix socket: a proxy's, say
    assert server.operator_allowed({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_REAL_IP": "1.2.3.4"}, "")[0] == 403


def test_one_json_log_line_per_request_without_bodies(tmp_path, schema_file):
    app = make(tmp_path, schema_file)
    with fieldsync.Store(str(tmp_path / "d.db"), SCHEMA, durability="normal", device_id="dev-L") as s:
        with fieldsync.Hub(str(tmp_path / "hub.db"), SCHEMA) as hub:
            hub.enroll_store(s)
        s.apply(task("T-1", actor="op-secret-name", set={"status": "confidential-value"}))
        s.apply(task("T-2", set={"status": "open"}))
        request, _ = s._prepare_raw()
        code, _, response = call(app, "POST", "/sync", request)
        assert code == 200
        s.sync_receive(response)
    assert call(app, "POST", "/sync", b"{not json")[0] == 400
    assert call(app, "POST", "/sync", b"", length=2**40)[0] == 413
    assert call(app, "GET", "/sync")[0] == 405
    assert call(app, "GET", "/nowhere")[0] == 404
    app.close()
    text = (tmp_path / "requests.log").read_text()
    assert "confidential" not in text and "op-secret" not in text and "not json" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(r["path"], r["status"], r["outcome"]) for r in lines] == [
        ("/sync", 200, "ok"), ("/sync", 400, "bad_request"), ("/sync", 413, "too_big"),
        ("/sync", 405, "method"), ("/nowhere", 404, "not_found")]
    first = lines[0]
    assert (first["device_id"], first["batch"], first["entries"], first["applied"]) == ("dev-L", "dev-L-b1", 2, 2)
    assert first["bytes_in"] == len(request) and first["duration_ms"] >= 0 and first["time"].endswith("Z")
    assert lines[1]["error"] == "FS_ERR_JSON"


def test_a_request_waiting_past_the_queue_timeout_gets_503_with_retry_after(tmp_path, schema_file):
    app = make(tmp_path, schema_file, max_parallel=1, queue_timeout=0.2, retry_after=7)
    turns = app._state().turns
    assert turns.acquire(timeout=1)  # the only turn, held as by a slow body
    try:
        code, headers, body = call(app, "POST", "/sync", b"{}")
        assert code == 503 and headers["Retry-After"] == "7" and json.loads(body)["status"] == "FS_ERR_BUSY"
    finally:
        turns.release()
    assert call(app, "POST", "/sync", b"{}")[0] == 400  # the turn free again: handled (and refused)
    app.close()


def test_the_summary_of_a_response_reads_its_results_not_a_record_states_lookalike(tmp_path):
    """summarize() finds the top-level "results" by where it ends; a json
    field holding {"results": [...]} in a rejection's record state (or in
    the changes before it) must not be taken for it."""
    fake = [{"key": "dev-X-1", "status": "applied"}] * 3
    with fieldsync.Hub(str(tmp_path / "hub.db"), SCHEMA) as hub, \
            fieldsync.Store(str(tmp_path / "a.db"), SCHEMA, device_id="dev-A") as a, \
            fieldsync.Store(str(tmp_path / "b.db"), SCHEMA, device_id="dev-B") as b:
        for s in (a, b):
            hub.enroll_store(s)
        a.apply(task("T-1", set={"status": "open", "on_hand": 1, "lines": {"results": fake}}))
        fieldsync.sync_once(a, hub)
        fieldsync.sync_once(b, hub)
        b.apply(task("T-1", set={"on_hand": 5}))  # based on on_hand 1
        a.apply(task("T-1", set={"on_hand": 2}))
        fieldsync.sync_once(a, hub)
        b.apply(task("T-2", set={"status": "open", "lines": {"results": fake}}))
        request, _ = b._prepare_raw()
        response = hub.handle_bytes(request)
    whole = json.loads(response)
    assert [r["status"] for r in whole["results"]] == ["rejected", "applied"]
    assert b'"results":[{"key":"dev-X-1"' in response  # the lookalikes are there
    summary = server.summarize(response)
    assert summary["results"] == whole["results"]
    assert (summary["device_id"], summary["batch"]) == ("dev-B", whole["batch"])
    assert server.count_results(summary["results"]) == {("rejected", "conflict"): 1, ("applied", ""): 1}
    refusal = server.summarize(b'{"batch":"x-b1","device_id":"x","error":{"code":"revoked","message":"m"}}')
    assert (refusal["refusal"], refusal["device_id"]) == ("revoked", "x")
    assert "results" not in server.summarize(b'{"not": "a response"}')


def test_settings_from_the_environment(tmp_path, schema_file):
    config = server.Config.from_env({"FIELDSYNC_HUB": "h.db", "FIELDSYNC_SCHEMA": schema_file,
                                     "FIELDSYNC_MAX_PARALLEL": "4", "FIELDSYNC_BODY_TIMEOUT": "2.5",
                                     "FIELDSYNC_AUTH": "off", "FIELDSYNC_LOG": "off"})
    assert (config.max_parallel, config.body_timeout, config.auth, config.log) == (4, 2.5, "off", "off")
    with pytest.raises(ValueError, match="FIELDSYNC_HUB"):
        server.Config.from_env({"FIELDSYNC_SCHEMA": schema_file})
    with pytest.raises(ValueError, match="FIELDSYNC_MAX_PARALLEL"):
        server.Config.from_env({"FIELDSYNC_HUB": "h", "FIELDSYNC_SCHEMA": schema_file,
                                "FIELDSYNC_MAX_PARALLEL": "many"})
    with pytest.raises(ValueError, match="max_body"):
        server.create_app(server.Config(hub="h", schema=schema_file, max_body=2**40))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError):  # a schema file that is not JSON fails at start, not at the first request
        server.create_app(server.Config(hub="h", schema=str(tmp_path / "bad.json")))


def test_a_hub_is_a_file_or_a_postgres_database_never_both_nor_neither(tmp_path, schema_file):
    dsn = "host=db1 dbname=fieldsync user=hub password=s3cret"
    config = server.Config.from_env({"FIELDSYNC_POSTGRES": dsn, "FIELDSYNC_SCHEMA": schema_file})
    assert (config.hub, config.postgres) == (None, dsn)
    assert "s3cret" not in config.where and "password=***" in config.where
    with pytest.raises(ValueError, match="not both"):
        server.Config.from_env({"FIELDSYNC_HUB": "h.db", "FIELDSYNC_POSTGRES": dsn, "FIELDSYNC_SCHEMA": schema_file})
    with pytest.raises(ValueError, match="FIELDSYNC_HUB .* or FIELDSYNC_POSTGRES"):
        server.Config.from_env({"FIELDSYNC_SCHEMA": schema_file})
    with pytest.raises(ValueError, match="FIELDSYNC_SCHEMA"):
        server.Config.from_env({"FIELDSYNC_POSTGRES": dsn})
    # durability is SQLite's: refused at start, not at the first request.
    with pytest.raises(ValueError, match="durability"):
        server.Config.from_env({"FIELDSYNC_POSTGRES": dsn, "FIELDSYNC_SCHEMA": schema_file,
                                "FIELDSYNC_DURABILITY": "normal"}).check()
    for hub, postgres in (("h.db", dsn), (None, None), ("", "")):
        with pytest.raises(ValueError, match="a hub is a file"):
            server.create_app(server.Config(hub=hub, schema=schema_file, postgres=postgres))
    assert server.redact("postgresql://hub:s3cret@db1:5432/fieldsync?sslmode=require") == \
        "postgresql://hub:***@db1:5432/fieldsync?sslmode=require"
    assert server.redact("host=db1 password = 'it\\'s s3cret' dbname=x") == "host=db1 password = *** dbname=x"
    assert server.redact("postgresql:///fieldsync?password=s3cret&host=db1") == \
        "postgresql:///fieldsync?password=***&host=db1"


def test_each_process_opens_its_own_hub_handle(tmp_path, schema_file):
    """A handle opened before a fork is never used after it (gunicorn
    --preload loads the app in the master): the child opens its own."""
    app = make(tmp_path, schema_file)
    assert call(app)[0] == 200
    parent = app._state().hub
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, and say whether the handle is new
        try:
            ok = call(app)[0] == 200 and app._state().hub is not parent
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert app._state().hub is parent
    app.close()


def test_a_hub_handle_refusing_its_schema_is_unavailable_not_the_devices_fault(tmp_path, schema_file):
    """A handle whose file another handle migrated to a newer schema refuses
    every call with FS_ERR_SCHEMA (docs/ABI.md): that is no reason to refuse
    the device's request (a 400 ends `sync`), so 503, and /healthz says so
    until a restart. (The hub handle does not refuse yet: a fake one here.)"""
    app = make(tmp_path, schema_file)

    class Stale:
        def __getattr__(self, name):
            def refuse(*args):
                raise fieldsync.SchemaError("the file was migrated to schema version 2", 3)
            return refuse

    app.hub = Stale
    code, headers, body = call(app, "POST", "/sync", b'{"device_id": "x"}')
    assert (code, json.loads(body)["status"]) == (503, "unavailable"), body
    assert headers["Retry-After"] == "5"
    assert call(app)[0] == 503
    # A request's own schema error stays 400: test_http.py's bad requests.

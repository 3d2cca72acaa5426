"""The hub's WSGI application (fieldsync/server.py) under gunicorn, as
docs/OPERATIONS.md deploys it: three worker processes on one hub file,
started with examples/python/gunicorn.conf.py on a free 127.0.0.1 port.
Devices sync over HTTP through dropped, duplicated and reordered requests
and lost responses; SIGTERM stops the server in the middle of a stream of
requests; /metrics sums the workers and matches fs_hub_stats."""

import contextlib
import http.client
import json
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

import fieldsync
from support import BINDING_DIR, REPO, SCHEMA, cli_env, enroll_at, run_cli, task, write_schema

pytest.importorskip("gunicorn")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

CONF = REPO / "examples" / "python" / "gunicorn.conf.py"
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
FAST = {"durability": "normal", "backoff_base_ms": 1, "backoff_cap_ms": 5}


def gunicorn_argv(workers):
    from gunicorn.config import KNOWN_SETTINGS
    argv = [sys.executable, "-m", "gunicorn", "-c", str(CONF), "-b", "127.0.0.1:0", "-w", str(workers),
            "--graceful-timeout", "20"]
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        argv.append("--no-control-socket")  # several servers at once: no shared ~/.gunicorn socket
    return argv + ["fieldsync.server:app"]


@contextlib.contextmanager
def gunicorn(hub_db, schema_path, workdir, workers=3, **env):
    """gunicorn serving fieldsync.server:app on a free port; yields (base URL,
    the master process, the request log's path). Always stopped."""
    log = workdir / f"gunicorn-{time.monotonic_ns()}.log"
    requests_log = workdir / "requests.log"
    metrics = workdir / "metrics"
    environ = dict(cli_env(), FIELDSYNC_HUB=str(hub_db), FIELDSYNC_SCHEMA=str(schema_path),
                   FIELDSYNC_LOG=str(requests_log), PROMETHEUS_MULTIPROC_DIR=str(metrics),
                   FIELDSYNC_DURABILITY="normal")
    environ.update(env)
    with open(log, "wb") as err:
        proc = subprocess.Popen(gunicorn_argv(workers), stdout=err, stderr=err, env=environ, cwd=str(BINDING_DIR))
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            match = LISTENING.search(log.read_text(errors="replace"))
            port = match and int(match.group(1))
            time.sleep(0.05)
        assert port, f"gunicorn did not start: {log.read_text(errors='replace')[-2000:]}"
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if get(url + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        yield url, proc, requests_log
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def get(url, headers=None, timeout=10):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url, body, timeout=30):
    """POST /sync: (status, body); OSError when the exchange failed."""
    request = urllib.request.Request(url + "/sync", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, http.client.HTTPException) as e:
        raise OSError(str(e)) from None


def exchange(store, url, request):
    """Send `request` and hand the answer to the store; None if it did not
    arrive (then the store is told, as a device's transport does)."""
    try:
        status, body = post(url, request)
    except OSError as e:
        store.sync_fail(str(e)[:200])
        return None
    if status != 200:
        store.sync_fail(f"HTTP {status}")
        return None
    return store.sync_receive(body)


def drain(store, url, deadline_s=60):
    """Sync until nothing is left to send and no page of changes waits."""
    store.set_connectivity(True)  # a pull is due
    deadline = time.monotonic() + deadline_s
    while True:
        assert time.monotonic() < deadline, f"{store.device_id} did not drain: {store.stats()}"
        request, wait_ms = store._prepare_raw()
        if request is not None:
            exchange(store, url, request)
            continue
        stats = store.stats()
        if stats["outbox_pending"] + stats["outbox_inflight"] == 0:
            return
        time.sleep(max(wait_ms, 1) / 1000)


def device(path, device_id, **options):
    return fieldsync.Store(str(path), SCHEMA, device_id=device_id, **{**FAST, **options})


class Workload:
    """Random actions whose effect at the hub is known: counter increments,
    last-writer-wins status writes, set additions."""

    IDS = [f"T-{i}" for i in range(5)]

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.increments = {id: 0 for id in self.IDS}
        self.actions = 0
        self.lock = threading.Lock()

    def act(self, store, n):
        for _ in range(n):
            id = self.rng.choice(self.IDS)
            amount = self.rng.randint(1, 9)
            store.apply(task(id, actor=store.device_id, set={"status": self.rng.choice(["open", "picked", "done"])},
                             inc={"picked": amount}, add={"tags": [self.rng.choice("abc")]}))
            with self.lock:
                self.increments[id] += amount
                self.actions += 1

    def check(self, hub, stores):
        at_hub = hub.query("task")
        assert {r["id"]: r["picked"] for r in at_hub} == {id: n for id, n in self.increments.items() if n}
        stats = hub.stats()
        assert stats["entries_applied"] == self.actions == stats["audit_rows"], stats
        assert stats["entries_rejected"] == 0
        assert stats["audit_chain_breaks"] == stats["audit_gaps"] == stats["audit_hash_failures"] == 0
        for s in stores:
            assert s.outbox_count() == 0, s.outbox()
            assert s.query("task") == at_hub, s.device_id
            assert {r["outcome"] for r in s.audit()} == {"applied"}, s.device_id
        assert all(r["chain_ok"] for r in hub.audit())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One gunicorn with three workers for the module, on one hub file, and
    four enrolled devices: A, B, C for the workload, M for the metrics."""
    workdir = tmp_path_factory.mktemp("gunicorn")
    schema_path = write_schema(workdir / "schema.json")
    hub_db = workdir / "hub.db"
    paths = {}
    for name in "ABCM":
        paths[name] = workdir / f"dev-{name}.db"
        with device(paths[name], f"dev-{name}") as s:
            enroll_at(hub_db, s)
    with gunicorn(hub_db, schema_path, workdir) as (url, proc, requests_log):
        yield {"url": url, "proc": proc, "hub": hub_db, "schema": schema_path, "paths": paths,
               "log": requests_log, "dir": workdir}


def test_three_workers_through_dropped_duplicated_and_reordered_requests_apply_every_action_once(served):
    url = served["url"]
    work = Workload(seed=15)
    stores = [device(served["paths"][n], f"dev-{n}", batch_size=6) for n in "ABC"]
    faults = {"ok": 0, "dropped": 0, "lost": 0, "duplicated": 0, "reordered": 0}
    errors = []

    def run(store, seed):
        rng = random.Random(seed)
        try:
            for _ in range(14):
                work.act(store, rng.randint(1, 4))
                request, _ = store._prepare_raw()
                if request is None:
                    continue
                fault = rng.choice(list(faults))
                with work.lock:
                    faults[fault] += 1
                if fault == "ok":
                    exchange(store, url, request)
                elif fault == "dropped":          # never reached the hub
                    store.sync_fail("dropped")
                elif fault == "lost":             # applied, the answer lost
                    post(url, request)
                    store.sync_fail("answer lost")
                elif fault == "duplicated":       # the hub gets it twice, the device one answer
                    post(url, request)
                    exchange(store, url, request)
                else:                             # a later request overtakes it
                    store.sync_fail("delayed")
                    time.sleep(0.01)
                    later, _ = store._prepare_raw()
                    if later is not None:
                        exchange(store, url, later)
                    status, stale = post(url, request)
                    assert status == 200
                    try:
                        store.sync_receive(stale)  # an answer to an old batch: refused or harmless
                    except fieldsync.FieldSyncError:
                        pass
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(stores)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        for _ in range(2):  # the second round pulls what the others pushed last
            for s in stores:
                drain(s, url)
        with fieldsync.Hub(str(served["hub"]), SCHEMA) as hub:
            work.check(hub, stores)
        assert all(faults.values()), faults
    finally:
        for s in stores:
            s.close()
    lines = [json.loads(line) for line in served["log"].read_text().splitlines()]
    synced = [r for r in lines if r["path"] == "/sync"]
    assert len({r["pid"] for r in lines}) >= 2, "one worker served everything"
    assert all(r["device_id"] in ("dev-A", "dev-B", "dev-C", "dev-M") for r in synced if r["status"] == 200)
    assert sum(r.get("duplicate", 0) for r in synced) > 0


def metrics(url, headers=None):
    status, body = get(url + "/metrics", headers)
    assert status == 200, body
    samples = {}
    for family in prometheus_parser.text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples, name, **labels):
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_metrics_sum_the_workers_and_match_the_hub_stats(served):
    url = served["url"]
    before = metrics(url)
    with device(served["paths"]["M"], "dev-M", batch_size=2) as store:
        store.apply(task("M-1", set={"status": "open"}, inc={"picked": 1}))
        store.apply(task("M-2", set={"status": "open"}, inc={"picked": 1}))
        request, _ = store._prepare_raw()
        # The same request six times at once: several workers answer, the
        # hub applies it once.
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(post(url, request))) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [a[0] for a in answers] == [200] * 6
        statuses = sorted(r["status"] for a in answers for r in json.loads(a[1])["results"])
        assert statuses == ["applied"] * 2 + ["duplicate"] * 10
        store.sync_receive(answers[-1][1])
        assert store.outbox_count() == 0
    # One refused whole (unsigned: its signature removed), one too big.
    unsigned = re.sub(rb',"signature":"[0-9a-f]+"', b"", request)
    assert post(url, unsigned)[0] == 200
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
    conn.putrequest("POST", "/sync")
    conn.putheader("Content-Length", str(65 * 2**20))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()

    # A worker counts a request when it has sent the answer (the body's
    # close): the client can read the last answer before it is counted.
    deadline = time.monotonic() + 10
    while True:
        after = metrics(url)
        if total(after, "fieldsync_http_requests_total", route="sync") - \
                total(before, "fieldsync_http_requests_total", route="sync") >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)
    assert delta("fieldsync_http_requests_total", route="sync") == 8
    assert delta("fieldsync_http_requests_total", route="sync", code="413", outcome="too_big") == 1
    assert delta("fieldsync_http_requests_total", route="sync", outcome="refused") == 1
    assert delta("fieldsync_http_request_duration_seconds_count", route="sync") == 8
    assert delta("fieldsync_sync_entries_total", status="applied") == 2
    assert delta("fieldsync_sync_entries_total", status="duplicate", reason="applied") == 10
    assert delta("fieldsync_sync_refusals_total") == 1
    with fieldsync.Hub(str(served["hub"]), SCHEMA) as hub:
        stats, registry = hub.stats(), hub.devices()
    assert total(after, "fieldsync_hub_up") == 1
    assert total(after, "fieldsync_hub_entries_total", outcome="applied") == stats["entries_applied"]
    assert total(after, "fieldsync_hub_entries_total", outcome="rejected") == stats["entries_rejected"]
    # Duplicates and rejections by reason are the hub file's, summed by no worker.
    assert total(after, "fieldsync_hub_entries_total", outcome="duplicate") == stats["entries_duplicate"] >= 10
    by_reason = {k[len("entries_rejected."):]: v for k, v in stats.items() if k.startswith("entries_rejected.")}
    assert sum(by_reason.values()) == stats["entries_rejected"]
    for reason, n in by_reason.items():
        assert total(after, "fieldsync_hub_entries_rejected_total", reason=reason) == n
    assert total(after, "fieldsync_hub_seq") == stats["seq"]
    assert total(after, "fieldsync_hub_audit_rows") == stats["audit_rows"]
    assert total(after, "fieldsync_hub_conflicts_total") == stats["conflicts"]
    assert total(after, "fieldsync_hub_devices_seen") == stats["devices"]
    for code in ("unsigned", "unknown_device", "revoked", "bad_signature", "instance_mismatch"):
        assert total(after, "fieldsync_hub_auth_refusals_total", code=code) == stats[f"auth_refused_{code}"]
    assert stats["auth_refused_unsigned"] >= 1
    fields = {k: v for k, v in stats.items() if k.startswith("conflicts.") and not k.endswith(".rate")}
    assert fields and all(
        total(after, "fieldsync_hub_field_conflicts_total", type=k.split(".")[1], field=k.split(".")[2],
              kind=k.split(".")[3]) == v for k, v in fields.items())
    assert total(after, "fieldsync_hub_field_conflicts_total", type="task", field="picked", kind="writes") >= 2
    seen = {d["device_id"]: d["last_seen_at"] for d in registry["devices"]}
    assert total(after, "fieldsync_hub_device_last_seen_timestamp_seconds", device_id="dev-M") \
        == pytest.approx(seen["dev-M"] / 1000)


def test_stats_and_metrics_refuse_a_relayed_request_healthz_answers_it(served):
    url = served["url"]
    for path in ("/stats", "/metrics"):
        status, body = get(url + path, {"X-Forwarded-For": "203.0.113.9"})
        assert status == 403 and json.loads(body)["status"] == "forbidden", body
    status, body = get(url + "/healthz", {"X-Forwarded-For": "203.0.113.9"})
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_the_sync_command_against_gunicorn_prints_json_progress(served, tmp_path):
    db = tmp_path / "d.db"
    with device(db, "dev-J", batch_size=3) as s:
        enroll_at(served["hub"], s)
        for i in range(7):
            s.apply(task("J-1", set={"status": "open"}, inc={"picked": 1}))
    done = run_cli("sync", "--db", str(db), "--schema", served["schema"], "--server", served["url"], "--json",
                   "--batch-size", "3", "--max-seconds", "30")
    assert done.returncode == 0, (done.stdout, done.stderr)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["sent"] for line in lines[:-1]] == [3, 3, 1]
    assert lines[-1] == {"drained": True, "outbox": 0, "rejected": 0, "stuck": 0, "cursor": lines[-2]["cursor"]}


def test_sigterm_during_a_stream_of_requests_loses_nothing_and_finishes_requests_in_flight(tmp_path):
    schema_path = write_schema(tmp_path / "schema.json")
    hub_db = tmp_path / "hub.db"
    work = Workload(seed=7)
    stores = [device(tmp_path / f"s-{n}.db", f"dev-{n}", batch_size=4) for n in "ABCD"]
    for s in stores:
        enroll_at(hub_db, s)
    slow, streams = stores[0], stores[1:]
    work.act(slow, 8)
    try:
        with gunicorn(hub_db, schema_path, tmp_path, workers=2) as (url, proc, requests_log):
            # A request in flight: its body is half sent when SIGTERM comes.
            request, _ = slow._prepare_raw()
            port = int(url.rsplit(":", 1)[1])
            conn = socket.create_connection(("127.0.0.1", port), timeout=30)
            conn.sendall(b"POST /sync HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(request)).encode() + b"\r\n\r\n" + request[:len(request) // 2])
            stop = threading.Event()
            answered = {s.device_id: 0 for s in streams}

            def stream(store):
                # New actions while the server answers: there is always
                # something in flight when SIGTERM comes, and something
                # left over once it has stopped.
                served = True
                while not stop.is_set():
                    if served:
                        work.act(store, 3)
                    request, wait_ms = store._prepare_raw()
                    if request is None:
                        time.sleep(max(wait_ms, 1) / 1000)
                        continue
                    served = exchange(store, url, request) is not None
                    answered[store.device_id] += served

            threads = [threading.Thread(target=stream, args=(s,)) for s in streams]
            for t in threads:
                t.start()
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            conn.sendall(request[len(request) // 2:])
            reply = b""
            while True:  # a sync worker closes the connection after its answer
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                reply += chunk
            conn.close()
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
            body = reply.split(b"\r\n\r\n", 1)[1]
            summary = slow.sync_receive(body)
            assert summary["applied"] == 4, summary  # the request in flight finished, whole
            assert proc.wait(timeout=30) == 0        # and the server stopped cleanly
            stop.set()
            for t in threads:
                t.join(30)
            assert sum(answered.values()) > 0, "no request was served before the stop"
            assert any(s.outbox_count() for s in streams), "everything synced before the stop: nothing tested"
        with gunicorn(hub_db, schema_path, tmp_path, workers=2) as (url, proc, _):
            for _ in range(2):
                for s in stores:
                    drain(s, url)
        with fieldsync.Hub(str(hub_db), SCHEMA) as hub:
            work.check(hub, stores)
    finally:
        for s in stores:
            s.close()

"""Three hub processes on one database (issue 17): each request goes to a
random process (hub_process.py: one Hub handle each, serving HTTP), devices
sync through a transport that drops, duplicates, reorders and loses answers,
hub processes are SIGKILLed in the middle of requests, and a pull runs while
a slower transaction holds a lower change number. Every DESIGN §11 invariant
is checked at the end: no action lost, each applied once (counters sum
exactly, lww picks the greatest stamp, server compare-and-set never lets two
writes on one version through), audit rows all at the hub with their chains,
and every device converged to the hub's state.

The workload tests run on PostgreSQL (skipped without FIELDSYNC_PG_DSN, see
pg.py) and, as the reference the PostgreSQL hub must match, on one SQLite file.
"""

import contextlib
import http.client
import json
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import fieldsync
import pg
from pg import pg_dsn  # noqa: F401 - fixture
from support import SCHEMA, cli_env, task, verify_chain, write_schema

CHILD = Path(__file__).with_name("hub_process.py")
FAST = {"durability": "normal", "backoff_base_ms": 1, "backoff_cap_ms": 20}
IDS = [f"T-{i}" for i in range(4)]


class HubProcess:
    """One hub_process.py child; its stdout lines after "listening" are kept."""

    def __init__(self, argv, log):
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, str(CHILD), *argv], stdout=subprocess.PIPE,
                                         stderr=err, env=cli_env(), cwd=str(CHILD.parent))
        first = self.proc.stdout.readline().decode()
        assert first.startswith("listening "), f"hub process did not start: {first!r}; see {log}"
        self.port = int(first.split()[1])
        self.lines = queue.Queue()
        self.inflight = 0
        self.served = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode().strip())

    def wait_line(self, want, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"hub process never said {want!r}; see {self.log}"
            try:
                if self.lines.get(timeout=left) == want:
                    return
            except queue.Empty:
                pass

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()


class Cluster:
    """N hub processes on one database (or one SQLite file)."""

    def __init__(self, tmp, storage, n=3):
        self.tmp = tmp
        self.schema_path = write_schema(tmp / "schema.json")
        self.target = ["--postgres", storage[1]] if storage[0] == "postgres" else ["--db", str(storage[1])]
        self.procs = [self._start(i) for i in range(n)]
        self.lock = threading.Lock()
        self.statuses = {}          # HTTP status (or "transport") -> count

    def _start(self, i):
        return HubProcess(["--schema", self.schema_path, "--gate-dir", str(self.tmp), *self.target],
                          self.tmp / f"hub-{i}.log")

    def restart(self, i):
        self.procs[i].stop()
        self.procs[i] = self._start(i)

    def post(self, body, to=None, timeout=60):
        """POST /sync to process `to` (random if None): (status, body);
        OSError when the exchange failed (the process died, say)."""
        with self.lock:
            proc = self.procs[random.randrange(len(self.procs)) if to is None else to]
            proc.inflight += 1
        try:
            conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=timeout)
            try:
                conn.request("POST", "/sync", body=body, headers={"Content-Type": "application/json"})
                answer = conn.getresponse()
                status, data = answer.status, answer.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            with self.lock:
                self.statuses["transport"] = self.statuses.get("transport", 0) + 1
            raise OSError(f"{type(e).__name__}: {e}") from None
        finally:
            with self.lock:
                proc.inflight -= 1
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            proc.served += 1
        return status, data

    def exchange(self, store, request, to=None):
        """Send `request`, hand the answer to the store; None if none arrived."""
        try:
            status, body = self.post(request, to)
        except OSError as e:
            store.sync_fail(str(e)[:200])
            return None
        if status != 200:
            store.sync_fail(f"HTTP {status}")
            return None
        return store.sync_receive(body)

    def drain(self, store, deadline_s=120):
        """Sync until nothing is left to send and no page of changes waits."""
        store.set_connectivity(True)
        deadline = time.monotonic() + deadline_s
        while True:
            assert time.monotonic() < deadline, f"{store.device_id} did not drain: {store.stats()}"
            request, wait_ms = store._prepare_raw()
            if request is not None:
                self.exchange(store, request)
                continue
            stats = store.stats()
            if stats["outbox_pending"] + stats["outbox_inflight"] == 0:
                return
            time.sleep(max(wait_ms, 1) / 1000)

    def hub(self):
        """A hub handle of this process on the same storage, for the checks."""
        if self.target[0] == "--postgres":
            return fieldsync.Hub(None, SCHEMA, postgres=self.target[1])
        return fieldsync.Hub(self.target[1], SCHEMA, durability="normal")

    def close(self):
        for p in self.procs:
            p.stop()


@pytest.fixture(params=["postgres", "sqlite"])
def storage(request, tmp_path):
    if request.param == "postgres":
        pg.require()
        with pg.database() as dsn:
            yield ("postgres", dsn)
    else:
        yield ("sqlite", tmp_path / "hub.db")


@contextlib.contextmanager
def cluster_of(tmp_path, storage, n=3):
    c = Cluster(tmp_path, storage, n)
    try:
        yield c
    finally:
        c.close()


def device(tmp_path, cluster, name, **options):
    store = fieldsync.Store(str(tmp_path / f"{name}.db"), SCHEMA, device_id=name, **{**FAST, **options})
    with cluster.hub() as hub:
        hub.enroll_store(store)
    return store


# -- the fault workload ------------------------------------------------------------------


class Workload:
    """Random actions on shared records over all five merge policies, each
    action on one field kind so that what the hub must hold follows from which
    actions were applied: counter increments (picked), lww writes (status),
    set additions (tags a/b/c, never removed; "z" added and removed), server
    compare-and-set writes (on_hand, refused on conflict) and custom writes
    (lines, merged by the hub's union resolver)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.actions = []   # dicts: device, audit_id, kind, id, hlc, value, base

    def act(self, store, n):
        for _ in range(n):
            with self.lock:
                kind = self.rng.choice(["count", "count", "status", "stock", "lines", "tag"])
                id = self.rng.choice(IDS)
                value = {"count": self.rng.randint(1, 9), "status": self.rng.choice(["open", "picked", "done"]),
                         "stock": self.rng.randint(0, 10_000), "lines": [self.rng.randint(1, 99)],
                         "tag": self.rng.choice(["a", "b", "c", "+z", "-z"])}[kind]
            if kind == "count":
                ops = {"inc": {"picked": value}}
            elif kind == "status":
                ops = {"set": {"status": value}}
            elif kind == "stock":
                ops = {"set": {"on_hand": value}}
            elif kind == "lines":
                ops = {"set": {"lines": value}}
            else:
                ops = {"remove": {"tags": ["z"]}} if value == "-z" else {"add": {"tags": [value.strip("+")]}}
            result = store.apply(task(id, actor=store.device_id, action=kind, **ops))
            base = None
            if kind == "stock":
                (entry,) = [e for e in store.outbox(id=id) if e["key"] == result["outbox_key"]]
                base = entry["base"]["on_hand"]
            with self.lock:
                self.actions.append({"device": store.device_id, "audit_id": result["audit_id"], "kind": kind,
                                     "id": id, "hlc": result["hlc"], "value": value, "base": base})

    def check(self, hub, stores, setup_actions):
        """Every invariant, from the devices' audit trails and the hub's state."""
        outcomes = {}
        for s in stores:
            verify_chain(s.audit())
            for row in s.audit():
                outcomes[(s.device_id, row["audit_id"])] = (row["outcome"], row["reason"])
        applied = [a for a in self.actions if outcomes[(a["device"], a["audit_id"])][0] == "applied"]
        rejected = [a for a in self.actions if outcomes[(a["device"], a["audit_id"])][0] == "rejected"]
        # No lost action: each is applied, or refused visibly as a conflict of a server field.
        assert len(applied) + len(rejected) == len(self.actions), \
            {k: v for k, v in outcomes.items() if v[0] not in ("applied", "rejected")}
        assert all(a["kind"] == "stock" and outcomes[(a["device"], a["audit_id"])][1] == "conflict"
                   for a in rejected), rejected
        rows = {r["id"]: r for r in hub.query("task")}
        assert set(rows) == set(IDS)
        for id in IDS:
            mine = [a for a in applied if a["id"] == id]
            row = rows[id]
            # counter: each increment exactly once
            assert row["picked"] == sum(a["value"] for a in mine if a["kind"] == "count"), id
            # lww: the greatest (hlc, device) stamp wins
            writes = [((a["hlc"], a["device"]), a["value"]) for a in mine if a["kind"] == "status"]
            assert row["status"] == max(writes + [setup_actions[id]["status"]])[1], id
            # set: elements nobody removes are all there, and nothing else but "z"
            added = {a["value"] for a in mine if a["kind"] == "tag" and a["value"] in "abc"}
            assert set(row["tags"] or []) - {"z"} == added, id
            # server: compare-and-set lets one write through per server version it
            # was based on ({"after": seq}: on the device's own write before it)
            stock = [a for a in mine if a["kind"] == "stock"]
            versions = [a["base"] for a in stock if isinstance(a["base"], int)]
            assert len(versions) == len(set(versions)), (id, sorted(versions))
            assert row["on_hand"] in {a["value"] for a in stock} | {0}, id
            # custom: the union resolver only ever merges what devices wrote
            written = {v for a in mine if a["kind"] == "lines" for v in a["value"]} | {0}
            assert set(row["lines"]) <= written, id
        stats = hub.stats()
        total = len(self.actions) + len(setup_actions)
        assert stats["entries_applied"] == len(applied) + len(setup_actions), stats
        assert stats["entries_rejected"] == len(rejected) == stats.get("entries_rejected.conflict", 0), stats
        assert stats["conflicts.task.on_hand.rejected"] == len(rejected), stats
        # the workload met every kind of conflict it is about
        assert rejected and stats["conflicts.task.lines.resolved"], stats
        assert stats["audit_rows"] == total, stats
        assert stats["audit_chain_breaks"] == stats["audit_gaps"] == stats["audit_hash_failures"] == 0, stats
        for s in stores:
            local = s.audit()
            at_hub = hub.audit(device_id=s.device_id)
            assert [r["audit_id"] for r in at_hub] == [r["audit_id"] for r in local], s.device_id
            assert [(r["hash"], r["hlc"], r["device_time"]) for r in at_hub] == \
                [(r["hash"], r["hlc"], r["device_time"]) for r in local], s.device_id
            assert all(r["chain_ok"] and r["server_received_at"] for r in at_hub), s.device_id
            # only the refused entries stay, visibly, in the outbox
            assert sorted(e["key"] for e in s.outbox()) == sorted(
                f"{s.device_id}-{a['audit_id']}" for a in rejected if a["device"] == s.device_id)
        # convergence
        at_hub = hub.query("task")
        for s in stores:
            assert s.query("task") == at_hub, s.device_id


FAULTS = ["ok", "dropped", "lost", "duplicated", "raced", "reordered"]


def faulty_exchange(cluster, store, request, fault):
    if fault == "ok":
        cluster.exchange(store, request)
    elif fault == "dropped":          # never reached a hub
        store.sync_fail("dropped")
    elif fault == "lost":             # applied, the answer lost
        with contextlib.suppress(OSError):
            cluster.post(request)
        store.sync_fail("answer lost")
    elif fault == "duplicated":       # one process gets it, then another; the device one answer
        with contextlib.suppress(OSError):
            cluster.post(request)
        cluster.exchange(store, request)
    elif fault == "raced":            # two processes get it at the same time
        other = threading.Thread(target=_quiet_post, args=(cluster, request))
        other.start()
        cluster.exchange(store, request)
        other.join(120)
    else:                             # a later request overtakes it
        store.sync_fail("delayed")
        time.sleep(0.005)
        later, _ = store._prepare_raw()
        if later is not None:
            cluster.exchange(store, later)
        try:
            status, stale = cluster.post(request)
        except OSError:
            return
        if status == 200:
            with contextlib.suppress(fieldsync.FieldSyncError):
                store.sync_receive(stale)  # an answer to an old batch: refused or harmless


def _quiet_post(cluster, request):
    with contextlib.suppress(OSError):
        cluster.post(request)


def run_workload(tmp_path, cluster, seed, rounds, kills=0):
    """Five devices sync the workload at once through the faults, `rounds`
    each; with `kills`, a killer SIGKILLs a hub process that many times, 0.1
    to 0.5 s apart (one with a request in flight when there is one), starting
    it again each time, and the devices keep going until it is done.
    Returns (the fault counts, [kills, kills of a process with a request in
    flight])."""
    work = Workload(seed)
    stores = [device(tmp_path, cluster, f"dev-{n}", batch_size=5, pull_limit=3) for n in "ABCDE"]
    try:
        # The records exist everywhere first, so that server writes carry a base.
        setup = {}
        first = stores[0]
        for id in IDS:
            r = first.apply(task(id, actor="setup", action="create",
                                 set={"status": "new", "on_hand": 0, "lines": [0]}))
            setup[id] = {"status": ((r["hlc"], first.device_id), "new")}
        for s in stores:
            cluster.drain(s)
        faults = {f: 0 for f in FAULTS}
        errors = []
        stop = threading.Event()
        killed = [0, 0]

        def run(store, seed):
            rng = random.Random(seed)
            try:
                done = 0
                while done < rounds or (kills and not stop.is_set()):
                    done += 1
                    work.act(store, rng.randint(1, 3))
                    request, _ = store._prepare_raw()
                    if request is None:
                        continue
                    fault = rng.choice(FAULTS)
                    with work.lock:
                        faults[fault] += 1
                    faulty_exchange(cluster, store, request, fault)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        def killer():
            rng = random.Random(seed + 1)
            for _ in range(kills):
                time.sleep(rng.uniform(0.1, 0.5))
                # A process with a request in flight if one comes within 0.2 s.
                for _ in range(200):
                    with cluster.lock:
                        busy = [i for i, p in enumerate(cluster.procs) if p.inflight]
                    if busy:
                        break
                    time.sleep(0.001)
                i = rng.choice(busy or range(len(cluster.procs)))
                mid_request = bool(busy)
                cluster.procs[i].kill()
                killed[0] += 1
                killed[1] += mid_request
                cluster.restart(i)
            stop.set()

        threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(stores)]
        if kills:
            threads.append(threading.Thread(target=killer))
        for t in threads:
            t.start()
        for t in threads[:len(stores)]:
            t.join(300)
        stop.set()
        for t in threads:
            t.join(60)
        assert not errors, errors
        for _ in range(2):  # the second round pulls what the others pushed last
            for s in stores:
                cluster.drain(s)
        with cluster.hub() as hub:
            work.check(hub, stores, setup)
        return faults, killed
    finally:
        for s in stores:
            s.close()


def test_three_processes_through_a_lossy_transport_apply_every_action_once(tmp_path, storage):
    with cluster_of(tmp_path, storage) as cluster:
        faults, _ = run_workload(tmp_path, cluster, seed=17, rounds=14)
        assert all(faults.values()), faults
        # A refused request would be a 500 here: none, and each process served some.
        assert set(cluster.statuses) == {200}, cluster.statuses
        assert all(p.served for p in cluster.procs), [p.served for p in cluster.procs]


def test_hub_processes_killed_at_random_times_lose_nothing(tmp_path, storage):
    with cluster_of(tmp_path, storage) as cluster:
        _, (kills, mid_request) = run_workload(tmp_path, cluster, seed=71, rounds=10, kills=8)
        assert kills == 8 and mid_request >= 3, (kills, mid_request)
        assert set(cluster.statuses) <= {200, "transport"}, cluster.statuses


def test_a_process_killed_with_its_transaction_open_loses_nothing(tmp_path, storage):
    """Device Y's request (a new record, then a custom write whose resolver
    never returns) is in process 1's open transaction when process 1 is
    SIGKILLed; process 2 is meanwhile writing for device W, waiting for Y's
    transaction. W's request completes once the killed one is rolled back,
    Y's resend applies both of its actions once, and the killed transaction
    left nothing (no entry is a duplicate)."""
    with cluster_of(tmp_path, storage) as cluster:
        x, y, w = (device(tmp_path, cluster, n) for n in ("dev-X", "dev-Y", "dev-W"))
        try:
            x.apply(task("T-1", set={"status": "open", "lines": [1]}))
            cluster.drain(x)
            cluster.drain(y)
            x.apply(task("T-1", set={"lines": [1, 2]}))
            cluster.drain(x)
            y.apply(task("R-2", set={"status": "new"}, inc={"picked": 5}))
            y.apply(task("T-1", set={"lines": ["hang:k1"]}))   # conflicts with X's [1, 2]
            w.apply(task("W-1", set={"status": "new"}, inc={"picked": 3}))
            stuck, _ = y._prepare_raw()
            answers = {}
            ty = threading.Thread(target=lambda: answers.update(y=_post_or_error(cluster, stuck, 1)))
            ty.start()
            cluster.procs[1].wait_line("blocked k1")
            request_w, _ = w._prepare_raw()
            tw = threading.Thread(target=lambda: answers.update(w=_post_or_error(cluster, request_w, 2)))
            tw.start()
            time.sleep(0.5)
            assert "w" not in answers       # W waits for Y's transaction
            cluster.procs[1].kill()
            ty.join(30)
            tw.join(60)
            assert isinstance(answers["y"], OSError), answers["y"]
            y.sync_fail("the hub process died")
            status, body = answers["w"]
            assert status == 200, body
            assert w.sync_receive(body)["applied"] == 1
            cluster.restart(1)
            for s in (x, y, w, x, y, w):
                cluster.drain(s)
            with cluster.hub() as hub:
                rows = {r["id"]: r for r in hub.query("task")}
                assert rows["R-2"]["picked"] == 5 and rows["W-1"]["picked"] == 3
                assert rows["T-1"]["lines"] == ["hang:k1", 1, 2]
                stats = hub.stats()
                assert stats["entries_applied"] == 5 and stats["entries_duplicate"] == 0, stats
                assert stats["audit_rows"] == 5 and stats["audit_chain_breaks"] == 0, stats
                for s in (x, y, w):
                    assert s.outbox_count() == 0
                    assert {r["outcome"] for r in s.audit()} == {"applied"}
                    assert s.query("task") == hub.query("task")
        finally:
            for s in (x, y, w):
                s.close()


def _post_or_error(cluster, body, to):
    try:
        return cluster.post(body, to)
    except OSError as e:
        return e


# -- the slow concurrent commit ------------------------------------------------------------


def test_a_pull_never_passes_a_change_a_slower_transaction_still_holds(tmp_path, pg_dsn):
    """Request A (device Y: a new record R-1, then a custom write on T-1 whose
    resolver waits for a gate) takes change number h+1 in process 0 and stays
    uncommitted. Meanwhile request B (device W writes R-2) goes to process 1,
    and pulls C for device Z, whose cursor is h, to process 2 (not to
    process 1: a hub handle serves one request at a time, and B holds it). While A is open, C
    must return nothing and keep cursor h: the classic trap (sequence numbers
    handed out in one order, committed in another) would let B take h+3 and
    commit, C return R-2 with cursor h+3, and Z never see R-1 nor T-1 again,
    although the hub holds them. The hub's lock on the change sequence,
    held by every writing request until it commits, is what prevents it
    (B waits for A). Once A commits, the pull from h brings A's two changes
    then B's, in that order.

    Seen failing with that lock removed (HubStorage.beginRequest reading the
    sequence without FOR UPDATE): B took h+1, the number A's R-1 had, and
    committed; the second C returned R-2 with cursor h+1. The workload tests
    above failed too (a counter at 49 for 70 increments)."""
    storage = ("postgres", pg_dsn)
    with cluster_of(tmp_path, storage, n=3) as cluster:
        x, y, w, z = (device(tmp_path, cluster, n) for n in ("dev-X", "dev-Y", "dev-W", "dev-Z"))
        try:
            x.apply(task("T-1", set={"status": "open", "lines": [1]}))
            cluster.drain(x)
            cluster.drain(y)
            x.apply(task("T-1", set={"lines": [1, 2]}))
            cluster.drain(x)
            cluster.drain(z)
            h = z.stats()["cursor"]
            assert h == 2

            y.apply(task("R-1", set={"status": "a"}))
            y.apply(task("T-1", set={"lines": ["gate:g1"]}))   # conflicts: the resolver runs, and waits
            w.apply(task("R-2", set={"status": "b"}))
            request_a, _ = y._prepare_raw()
            request_b, _ = w._prepare_raw()
            answers = {}
            ta = threading.Thread(target=lambda: answers.update(a=cluster.post(request_a, 0)))
            ta.start()
            cluster.procs[0].wait_line("blocked g1")
            tb = threading.Thread(target=lambda: answers.update(b=cluster.post(request_b, 1)))
            tb.start()

            def pull():
                z.set_connectivity(True)
                request, _ = z._prepare_raw()
                assert json.loads(request)["cursor"] == h
                status, body = cluster.post(request, 2, timeout=30)
                assert status == 200, body
                z.sync_receive(body)
                answer = json.loads(body)
                return [(c["id"], c["seq"]) for c in answer["changes"]], answer["cursor"], answer["more"]

            assert pull() == ([], h, False)             # C, at once
            time.sleep(0.5)                              # B has had time to commit if it could
            assert pull() == ([], h, False)             # C again
            assert z.stats()["cursor"] == h

            (tmp_path / "g1").touch()                    # A commits
            ta.join(30)
            tb.join(30)
            status, body = answers["a"]
            assert status == 200, body
            assert [(r["status"], r["server_seq"]) for r in json.loads(body)["results"]] == \
                [("applied", h + 1), ("applied", h + 2)]
            y.sync_receive(body)
            status, body = answers["b"]
            assert status == 200, body
            assert [(r["status"], r["server_seq"]) for r in json.loads(body)["results"]] == [("applied", h + 3)]
            w.sync_receive(body)

            assert pull() == ([("R-1", h + 1), ("T-1", h + 2), ("R-2", h + 3)], h + 3, False)
            for s in (x, y, w, z):
                cluster.drain(s)
            with cluster.hub() as hub:
                assert {r["id"]: r["lines"] for r in hub.query("task")}["T-1"] == ["gate:g1", 1, 2]
                for s in (x, y, w, z):
                    assert s.query("task") == hub.query("task"), s.device_id
        finally:
            for s in (x, y, w, z):
                s.close()

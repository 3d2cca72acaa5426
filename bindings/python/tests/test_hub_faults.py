"""Exactly once through a faulty network, on both hub storages (hubs.py):
three devices in threads sync with two hub handles on one hub (two workers
of one file, or two processes' connections to one database), each request
sent to either at random, and dropped, answered but lost, duplicated (once
to each handle) or overtaken by a later one. Every action is applied once,
counters are exact, replicas converge, every audit row is at the hub in
unbroken chains."""

import random
import threading
import time

import fieldsync
from support import SCHEMA, task

IDS = [f"T-{i}" for i in range(5)]
FAULTS = ("ok", "dropped", "lost", "duplicated", "reordered")
FAST = {"durability": "normal", "backoff_base_ms": 1, "backoff_cap_ms": 5}


def exchange(store, hub, request):
    store.sync_receive(hub.handle_bytes(request))


def drain(store, hubs_, deadline_s=60):
    store.set_connectivity(True)  # a pull is due
    deadline = time.monotonic() + deadline_s
    turn = 0
    while True:
        assert time.monotonic() < deadline, f"{store.device_id} did not drain: {store.stats()}"
        request, wait_ms = store._prepare_raw()
        if request is not None:
            exchange(store, hubs_[turn % 2], request)
            turn += 1
            continue
        stats = store.stats()
        if stats["outbox_pending"] + stats["outbox_inflight"] == 0:
            return
        time.sleep(max(wait_ms, 1) / 1000)


def test_two_hub_handles_through_dropped_duplicated_and_reordered_requests_apply_every_action_once(
        tmp_path, hub_storage):
    hubs_ = [hub_storage.open(SCHEMA, durability="normal") for _ in range(2)]
    stores = [fieldsync.Store(str(tmp_path / f"dev-{n}.db"), SCHEMA, device_id=f"dev-{n}", batch_size=6, **FAST)
              for n in "ABC"]
    for s in stores:
        hubs_[0].enroll_store(s)  # the registry is the hub's: both handles know them
    increments = {id: 0 for id in IDS}
    actions = [0]
    faults = {fault: 0 for fault in FAULTS}
    lock = threading.Lock()
    errors = []

    def act(store, rng):
        for _ in range(rng.randint(1, 4)):
            id, amount = rng.choice(IDS), rng.randint(1, 9)
            store.apply(task(id, actor=store.device_id, set={"status": rng.choice(["open", "picked", "done"])},
                             inc={"picked": amount}, add={"tags": [rng.choice("abc")]}))
            with lock:
                increments[id] += amount
                actions[0] += 1

    def run(store, seed):
        rng = random.Random(seed)
        try:
            for _ in range(14):
                act(store, rng)
                request, _ = store._prepare_raw()
                if request is None:
                    continue
                fault, hub = rng.choice(FAULTS), rng.choice(hubs_)
                with lock:
                    faults[fault] += 1
                if fault == "ok":
                    exchange(store, hub, request)
                elif fault == "dropped":             # never reached the hub
                    store.sync_fail("dropped")
                elif fault == "lost":                # applied, the answer lost
                    hub.handle_bytes(request)
                    store.sync_fail("answer lost")
                elif fault == "duplicated":          # both handles get it, the device one answer
                    hubs_[0].handle_bytes(request)
                    exchange(store, hubs_[1], request)
                else:                                # a later request overtakes it
                    store.sync_fail("delayed")
                    time.sleep(0.002)
                    later, _ = store._prepare_raw()
                    if later is not None:
                        exchange(store, rng.choice(hubs_), later)
                    stale = hub.handle_bytes(request)
                    try:
                        store.sync_receive(stale)     # an answer to an old batch: refused or harmless
                    except fieldsync.FieldSyncError:
                        pass
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s, 17 + i)) for i, s in enumerate(stores)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        for _ in range(2):  # the second round pulls what the others pushed last
            for s in stores:
                drain(s, hubs_)
        assert all(faults.values()), faults
        for hub in hubs_:  # each handle sees everything the other committed
            at_hub = hub.query("task")
            assert {r["id"]: r["picked"] for r in at_hub} == {id: n for id, n in increments.items() if n}
            stats = hub.stats()
            assert stats["entries_applied"] == actions[0] == stats["audit_rows"], stats
            assert stats["entries_rejected"] == 0 and stats["entries_duplicate"] > 0
            assert stats["audit_chain_breaks"] == stats["audit_gaps"] == stats["audit_hash_failures"] == 0
            assert all(r["chain_ok"] for r in hub.audit())
            for s in stores:
                assert s.outbox_count() == 0, s.outbox()
                assert s.query("task") == at_hub, s.device_id
                assert {r["outcome"] for r in s.audit()} == {"applied"}, s.device_id
    finally:
        for s in stores:
            s.close()
        for hub in hubs_:
            hub.close()


def test_each_hub_handle_decides_on_what_the_other_committed(tmp_path, hub_storage):
    """Record states, versions and counters a handle keeps between requests
    are the other handle's too: a compare-and-set judged on a state another
    handle has since changed must be rejected, whichever handle judges."""
    h1, h2 = hub_storage.open(SCHEMA, durability="normal"), hub_storage.open(SCHEMA, durability="normal")
    a = fieldsync.Store(str(tmp_path / "a.db"), SCHEMA, device_id="dev-A", **FAST)
    b = fieldsync.Store(str(tmp_path / "b.db"), SCHEMA, device_id="dev-B", **FAST)
    try:
        h1.enroll_store(a)
        h2.enroll_store(b)
        a.apply(task("T-1", action="open", set={"status": "open", "on_hand": 1}, add={"tags": ["x"]}))
        fieldsync.sync_once(a, h1)
        fieldsync.sync_once(b, h2)
        assert b.get("task", "T-1")["on_hand"] == 1
        # Each handle read T-1 once; now each writes on the state the other changed.
        a.apply(task("T-1", set={"on_hand": 2}))
        fieldsync.sync_once(a, h1)
        b.apply(task("T-1", set={"on_hand": 3}))       # based on 1: rejected by h2
        assert fieldsync.sync_once(b, h2)[0]["rejected"] == 1
        assert b.get("task", "T-1")["on_hand"] == 2
        b.apply(task("T-1", set={"on_hand": 4}))       # based on 2: applied by h2
        fieldsync.sync_once(b, h2)
        a.apply(task("T-1", set={"on_hand": 5}))       # based on 2: rejected by h1
        assert fieldsync.sync_once(a, h1)[0]["rejected"] == 1
        # Counters summed and a remove of what A saw, through either handle in turn.
        for n in range(10):
            s, hub = (a, h1) if n % 2 else (b, h2)
            s.apply(task("T-1", inc={"picked": n + 1}))
            fieldsync.sync_once(s, hub)
        a.apply(task("T-1", remove={"tags": ["x"]}))
        b.apply(task("T-1", add={"tags": ["x", "y"]}))  # concurrent: add wins
        fieldsync.sync_once(b, h2)
        fieldsync.sync_once(a, h1)
        for _ in range(2):
            fieldsync.sync_once(a, h2)
            fieldsync.sync_once(b, h1)
        for hub in (h1, h2):
            row = hub.query("task")[0]
            assert (row["on_hand"], row["picked"], row["tags"]) == (4, 55, ["x", "y"]), row
            assert a.query("task") == b.query("task") == hub.query("task")
            stats = hub.stats()
            assert stats["entries_applied"] == 1 + 1 + 1 + 10 + 2 and stats["entries_rejected"] == 2
            assert stats["conflicts.task.on_hand.rejected"] == 2
    finally:
        for handle in (a, b, h1, h2):
            handle.close()

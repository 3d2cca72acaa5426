"""fieldsync demo: three pickers work offline for six hours against the embedded hub.

Run with `make demo`. Shows offline writes, the outbox and audit trail, backoff
while the network is down, resume when it returns, conflict resolution per
field (lww, counter, add-wins set, server compare-and-set) and the hub's audit
trail with device time and server time.
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python"))
import fieldsync  # noqa: E402

SCHEMA = {
    "version": 1,
    "types": {
        "task": {
            "fields": {
                "status": {"type": "string", "merge": "lww"},
                "site": {"type": "string"},
                "picked": {"type": "int", "merge": "counter"},
                "tags": {"type": "set"},
                "on_hand": {"type": "int", "merge": "server"},
            },
            "required": ["status"],
        }
    },
}

HOUR = 3_600_000


class Clock:
    """A shared simulated wall clock (ms), so the demo can jump six hours."""

    def __init__(self) -> None:
        self.now = 1_764_057_600_000  # 2025-11-25 08:00 UTC

    def __call__(self) -> int:
        return self.now


def title(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 66 - len(text)))


def sync_all(devices, hub) -> None:
    for name, store in devices.items():
        summaries = store.sync_with(hub)
        total = {k: sum(s.get(k, 0) for s in summaries) for k in ("applied", "duplicate", "rejected", "pulled")}
        print(f"  {name:5} synced in {len(summaries)} exchange(s): applied {total['applied']}, "
              f"rejected {total['rejected']}, pulled {total['pulled']}, outbox left {store.outbox_count()}")


def show(store, task_id: str) -> str:
    r = store.get("task", task_id)
    return f"status={r['status']!r} picked={r['picked']} tags={r['tags']} on_hand={r['on_hand']}"


def main() -> None:
    work = tempfile.mkdtemp(prefix="fieldsync-demo-")
    clock = Clock()
    hub = fieldsync.Hub(os.path.join(work, "hub.db"), SCHEMA, durability="normal")
    hub.set_clock(clock)
    devices = {}
    for name in ("ana", "ben", "caro"):
        store = fieldsync.Store(os.path.join(work, f"{name}.db"), SCHEMA, device_id=f"tablet-{name}",
                                durability="normal", backoff_base_ms=1000, backoff_cap_ms=30_000)
        store.set_clock(clock)
        # Provisioning: the hub enrolls the tablet's key, the tablet pins the
        # hub's (authentication is on: an unenrolled device is refused).
        hub.enroll_store(store)
        devices[name] = store
    ana, ben, caro = devices["ana"], devices["ben"], devices["caro"]
    print(f"fieldsync {fieldsync.version()} — files in {work}")

    title("08:00 shift starts online: Ana creates the day's tasks, everyone syncs")
    for i in range(1, 4):
        ana.apply({"action": "create_task", "actor": "ana", "type": "task", "id": f"T-{i}",
                   "set": {"status": "open", "site": "WH-3", "on_hand": 40}, "add": {"tags": ["wave-1"]}})
    sync_all(devices, hub)
    print("  ben sees T-1:", show(ben, "T-1"))

    title("08:05 the warehouse network drops; the pickers keep working offline")
    for store in devices.values():
        store.set_connectivity(False)
    clock.now += 5 * 60_000
    ben.apply({"action": "pick_item", "actor": "ben", "type": "task", "id": "T-1", "inc": {"picked": 3},
               "set": {"status": "picking"}, "input": {"scan": "4006381333931", "qty": 3}})
    clock.now += 60_000
    caro.apply({"action": "pick_item", "actor": "caro", "type": "task", "id": "T-1", "inc": {"picked": 2},
                "set": {"status": "short"}, "add": {"tags": ["short-pick"]}, "input": {"scan": "4006381333931", "qty": 2}})
    ana.apply({"action": "untag", "actor": "ana", "type": "task", "id": "T-1", "remove": {"tags": ["wave-1"]}})
    ben.apply({"action": "retag", "actor": "ben", "type": "task", "id": "T-1", "add": {"tags": ["wave-1"]}})
    # Both count stock from the same server value: compare-and-set lets one win.
    ben.apply({"action": "count_stock", "actor": "ben", "type": "task", "id": "T-2", "set": {"on_hand": 37}})
    caro.apply({"action": "count_stock", "actor": "caro", "type": "task", "id": "T-2", "set": {"on_hand": 35}})
    for i in range(200):  # a busy morning of scans on T-3
        clock.now += 100_000
        devices[("ana", "ben", "caro")[i % 3]].apply(
            {"action": "scan", "actor": ("ana", "ben", "caro")[i % 3], "type": "task", "id": "T-3", "inc": {"picked": 1}})
    for name, store in devices.items():
        print(f"  {name:5} outbox {store.outbox_count():3} entries, local T-1: {show(store, 'T-1')}")

    title("Ben's tablet tries to sync through the outage: transport fails, it backs off")
    ben.set_connectivity(True)  # the OS thinks Wi-Fi is back, but the uplink is dead
    for attempt in range(1, 5):
        request, wait = ben.sync_prepare()
        if request is None:
            print(f"  attempt {attempt}: nothing to send yet, wait {wait} ms")
            clock.now += wait
            request, wait = ben.sync_prepare()
        print(f"  attempt {attempt}: sending {len(request['entries'])} entries ... timeout")
        ben.sync_fail("uplink timeout")
        _, wait = ben.sync_prepare()
        print(f"             next try in {wait} ms (exponential backoff, full jitter)")
        clock.now += wait
    print(f"  ben's outbox still holds {ben.outbox_count()} entries; nothing is lost")

    title("14:05 the network is back after six hours: resume at once")
    clock.now = 1_764_057_600_000 + 6 * HOUR + 5 * 60_000
    started = time.perf_counter()
    for store in devices.values():
        store.set_connectivity(True)
    request, wait = caro.sync_prepare()
    caro.sync_receive(hub.handle(request))
    print(f"  caro's first request went out with wait {wait} ms")
    sync_all(devices, hub)
    sync_all(devices, hub)  # a second round brings everyone the others' changes
    print(f"  all outboxes drained in {(time.perf_counter() - started) * 1000:.0f} ms")

    title("Conflicts, resolved per field")
    hub_t1 = hub.query("task", where={"id": "T-1"})[0]
    print(f"  T-1 at the hub: status={hub_t1['status']!r} (lww: Caro's later stamp wins over Ben's 'picking')")
    print(f"                  picked={hub_t1['picked']} (counter: Ben's 3 + Caro's 2, each once)")
    print(f"                  tags={hub_t1['tags']} (set: Ben's concurrent re-add of wave-1 wins over Ana's remove)")
    hub_t2 = hub.query("task", where={"id": "T-2"})[0]
    print(f"  T-2 at the hub: on_hand={hub_t2['on_hand']} (server field: the first count applied)")
    for name, store in devices.items():
        for entry in store.outbox(state="rejected"):
            print(f"  {name}'s {entry['action']} on {entry['id']} was rejected: {entry['reason']}; "
                  f"its view shows on_hand={store.get('task', entry['id'])['on_hand']} again")
            store.discard(entry["key"])
    hub_t3 = hub.query("task", where={"id": "T-3"})[0]
    print(f"  T-3 at the hub: picked={hub_t3['picked']} after 200 offline scans on three tablets")
    stats = hub.stats()
    print(f"  hub: {stats['entries_applied']} entries applied, {stats['entries_rejected']} rejected, "
          f"conflict rate {stats['conflict_rate'] * 100:.1f}% of {stats['field_writes']} field writes")
    same = all(store.query("task") == hub.query("task") for store in devices.values())
    print(f"  every tablet's view equals the hub's: {same}")

    title("Audit trail of T-1 at the hub: device time kept, server time added")
    for row in hub.audit(type="task", id="T-1"):
        device_time = time.strftime("%H:%M:%S", time.gmtime(row["device_time"] / 1000))
        server_time = time.strftime("%H:%M:%S", time.gmtime(row["server_received_at"] / 1000))
        print(f"  {row['device_id']:12} {row['actor']:5} {row['action']:12} acted {device_time}  "
              f"received {server_time}  {row['outcome']:8} chain_ok={row['chain_ok']}")
    print(f"  audit rows at hub: {stats['audit_rows']}, hash failures {stats['audit_hash_failures']}, "
          f"chain breaks {stats['audit_chain_breaks']}")

    title("A stranger's laptop claims to be Ben's tablet")
    laptop = fieldsync.Store(os.path.join(work, "laptop.db"), SCHEMA, device_id="tablet-ben", durability="normal")
    laptop.set_clock(clock)
    laptop.pin_hub(hub.public_key)  # it knows the hub's public key: that is no secret
    laptop.apply({"action": "create_task", "actor": "mallory", "type": "task", "id": "T-1",
                  "set": {"status": "open"}})
    laptop.apply({"action": "pick_item", "actor": "mallory", "type": "task", "id": "T-1", "inc": {"picked": -100}})
    try:
        laptop.sync_with(hub)
    except fieldsync.AuthError as e:
        print(f"  refused: {e.message}")
    refusal = hub.devices()["refusals"][0]
    print(f"  the hub logged it: {refusal['device_id']} {refusal['code']}; "
          f"T-1 picked is still {hub.query('task', where={'id': 'T-1'})[0]['picked']}")
    laptop.close()

    for store in devices.values():
        store.close()
    hub.close()
    # The hub's audit, checked against the tablets' signatures by a verifier
    # that does not load the library (fieldsync/verify.py).
    from fieldsync import verify
    report = verify.verify_hub(os.path.join(work, "hub.db"))
    print(f"  verify: {report['rows_covered']} of {report['rows']} audit rows covered by "
          f"{report['heads_verified']} signed chain heads; ok={report['ok']}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""http_hub.py — the hub over HTTP: requests per second and p50/p99 request
latency with 1 and 3 gunicorn workers on one hub file (docs/OPERATIONS.md's
deployment), against the same workload handed to an in-process hub
(fs_hub_handle, no HTTP, one device after the other) in the same run.

Workload: DEVICES stores with ACTIONS actions each (pick_item: a set and an
inc on one of 50 task records per device), applied offline, enrolled, then
all devices sync at once, one thread each: prepare -> POST /sync -> receive,
in batches of BATCH, until every outbox is empty. Every run checks that the
hub applied every action once.

    python3 Benchmarks/http_hub.py [--devices 6] [--actions 600] [--batch 50]
                                   [--workers 1,3] [--durability full]
Needs gunicorn and prometheus_client (pip), the library (FIELDSYNC_LIB or
build/).
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
BINDING = REPO / "bindings" / "python"
sys.path.insert(0, str(BINDING))
os.environ.setdefault("FIELDSYNC_LIB", str(REPO / "build" / "libfieldsync.so"))

import fieldsync  # noqa: E402

SCHEMA: Dict[str, Any] = {"version": 1, "types": {"task": {"fields": {
    "status": {"type": "string"}, "picked": {"type": "int", "merge": "counter"}}, "required": ["status"]}}}
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def percentile(xs: List[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else 0.0


def make_devices(d: Path, args: argparse.Namespace) -> List[fieldsync.Store]:
    """Fresh hub file and devices with their backlog, enrolled."""
    stores = []
    with fieldsync.Hub(d / "hub.db", SCHEMA, durability=args.durability) as hub:
        for n in range(args.devices):
            s = fieldsync.Store(d / f"dev-{n}.db", SCHEMA, device_id=f"dev-{n}", durability=args.durability,
                                batch_size=args.batch)
            for i in range(args.actions):
                s.apply({"action": "pick_item", "actor": f"op-{n}", "type": "task", "id": f"T-{n}-{i % 50}",
                         "set": {"status": "picking"}, "inc": {"picked": 1}})
            hub.enroll_store(s)
            stores.append(s)
    return stores


def check(d: Path, args: argparse.Namespace) -> None:
    with fieldsync.Hub(d / "hub.db", SCHEMA, durability=args.durability) as hub:
        applied = hub.stats()["entries_applied"]
        picked = sum(r["picked"] or 0 for r in hub.query("task"))
    want = args.devices * args.actions
    if applied != want or picked != want:
        raise SystemExit(f"hub applied {applied} entries, picked sums to {picked}; expected {want}")


def exchange_in_process(stores: List[fieldsync.Store], hub: fieldsync.Hub) -> Tuple[float, List[float]]:
    """Every store's exchanges handed to one Hub handle in this process, one
    device after the other: the total time, and the handle call's alone."""
    latencies: List[float] = []
    start = time.perf_counter()
    for s in stores:
        s.set_connectivity(True)
        while True:
            request, _ = s._prepare_raw()
            if request is None:
                break
            t = time.perf_counter()
            response = hub._handle_raw(request)
            latencies.append(time.perf_counter() - t)
            s.sync_receive(response)
    return time.perf_counter() - start, latencies


def in_process(d: Path, args: argparse.Namespace) -> Tuple[float, List[float]]:
    stores = make_devices(d, args)
    with fieldsync.Hub(d / "hub.db", SCHEMA, durability=args.durability) as hub:
        total, latencies = exchange_in_process(stores, hub)
    for s in stores:
        s.close()
    check(d, args)
    return total, latencies


def over_http(d: Path, args: argparse.Namespace, workers: int) -> Tuple[float, List[float]]:
    stores = make_devices(d, args)
    env = dict(os.environ, FIELDSYNC_HUB=str(d / "hub.db"), FIELDSYNC_SCHEMA=str(d / "schema.json"),
               FIELDSYNC_DURABILITY=args.durability, FIELDSYNC_LOG=str(d / "requests.log"),
               PROMETHEUS_MULTIPROC_DIR=str(d / f"metrics-{workers}"),
               PYTHONPATH=str(BINDING) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    (d / "schema.json").write_text(__import__("json").dumps(SCHEMA))
    argv = [sys.executable, "-m", "gunicorn", "-c", str(REPO / "examples" / "python" / "gunicorn.conf.py"),
            "-b", "127.0.0.1:0", "-w", str(workers), "fieldsync.server:app"]
    log = open(d / f"gunicorn-{workers}.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=str(BINDING))
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            m = LISTENING.search((d / f"gunicorn-{workers}.log").read_text(errors="replace"))
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        if port is None:
            raise SystemExit(f"gunicorn did not start: {(d / f'gunicorn-{workers}.log').read_text()[-2000:]}")
        time.sleep(0.5)  # every worker up
        latencies: List[float] = []
        lock = threading.Lock()
        errors: List[str] = []

        def device(s: fieldsync.Store) -> None:
            mine: List[float] = []
            try:
                s.set_connectivity(True)
                while True:
                    request, _ = s._prepare_raw()
                    if request is None:
                        break
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    t = time.perf_counter()
                    conn.request("POST", "/sync", body=request, headers={"Content-Type": "application/json"})
                    answer = conn.getresponse()
                    body = answer.read()
                    mine.append(time.perf_counter() - t)
                    conn.close()
                    if answer.status != 200:
                        s.sync_fail(f"HTTP {answer.status}")
                        time.sleep(0.05)
                        continue
                    s.sync_receive(body)
            except Exception as e:  # reported below: a benchmark that lost work says so
                errors.append(f"{s.device_id}: {e}")
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=device, args=(s,)) for s in stores]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = time.perf_counter() - start
        if errors:
            raise SystemExit("; ".join(errors))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
        for s in stores:
            s.close()
    check(d, args)
    return total, latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=6)
    ap.add_argument("--actions", type=int, default=600)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--workers", default="1,3")
    ap.add_argument("--durability", default="full", choices=("full", "normal"))
    args = ap.parse_args()
    print("== fieldsync hub over HTTP (Benchmarks/http_hub.py) ==")
    print(f"machine: nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, "
          f"Linux {platform.release()}, Python {platform.python_version()}")
    print(f"date:    {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"library: {fieldsync.version()} at {os.environ['FIELDSYNC_LIB']}")
    print(f"workload: {args.devices} devices x {args.actions} actions, batch {args.batch}, "
          f"durability {args.durability}; devices sync at once, one thread each")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fieldsync-http-") as tmp:
        runs: List[Tuple[str, int]] = [("in-process hub (no HTTP)", 0)]
        runs += [(f"gunicorn, {w} worker{'s' if w > 1 else ''}", w) for w in map(int, args.workers.split(","))]
        for name, workers in runs:
            d = Path(tmp) / f"run-{workers}"
            d.mkdir()
            load0 = os.getloadavg()[0]
            total, lat = in_process(d, args) if workers == 0 else over_http(d, args, workers)
            rows.append((name, len(lat), total, lat, load0))
            shutil.rmtree(d, ignore_errors=True)
    base_rps = rows[0][1] / rows[0][2]
    print(f"\n{'':28}| requests |  req/s | actions/s | latency ms: p50    p99 | req/s vs in-process | load avg before")
    for name, n, total, lat, load0 in rows:
        rps = n / total
        print(f"{name:28}| {n:8} | {rps:6.1f} | {args.devices * args.actions / total:9.0f} |"
              f" {percentile(lat, 50) * 1e3:14.1f} {percentile(lat, 99) * 1e3:6.1f} | {rps / base_rps:19.2f} | {load0:.2f}")
    print("every run: the hub applied each action once (entries_applied and the counters' sum checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

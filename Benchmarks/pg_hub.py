#!/usr/bin/env python3
"""pg_hub.py — the PostgreSQL hub against the SQLite hub: sync throughput
(requests/s, entries/s) and p50/p99 request latency with 1, 2 and 3 hub
processes on one PostgreSQL database, and 1 and 3 on one SQLite file
(durability full), same workload, same run, each configuration `--repeat`
times in turn; and, for what the storage alone costs, the same exchanges
handed to an in-process hub on each (one device after the other, the
handle call alone timed).

Each hub process holds one Hub handle and serves POST /sync over HTTP
(http.server, a thread per connection: the same small server for both
storages, so the difference is the storage); every request goes to a random
process. Workload as Benchmarks/http_hub.py: DEVICES stores with ACTIONS
actions each (pick_item: a set and an inc on one of 50 records per device),
applied offline and enrolled, then all devices sync at once, one thread each,
in batches of BATCH, until every outbox is empty. Every run checks that the
hub applied each action once and counts requests not answered 200.

PostgreSQL: a server of its own (Tests/pg/server.sh in a temporary directory,
a free port) with fsync=on and synchronous_commit=on, so that a commit is as
durable as the SQLite hub's "full"; or --dsn for one you started (then say
how it is configured). A fresh database per run.

    python3 Benchmarks/pg_hub.py [--devices 6] [--actions 600] [--batch 50]
                                 [--pg 0,1,2,3] [--sqlite 0,1,3] [--repeat 2] [--dsn DSN]
Needs the library (FIELDSYNC_LIB or build/), PostgreSQL's server binaries
(apt-get install postgresql) unless --dsn, and psql.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
BINDING = REPO / "bindings" / "python"
sys.path.insert(0, str(BINDING))
os.environ.setdefault("FIELDSYNC_LIB", str(REPO / "build" / "libfieldsync.so"))

import fieldsync  # noqa: E402
from http_hub import exchange_in_process, percentile  # noqa: E402  (this folder)

SCHEMA: Dict[str, Any] = {"version": 1, "types": {"task": {"fields": {
    "status": {"type": "string"}, "picked": {"type": "int", "merge": "counter"}}, "required": ["status"]}}}


# -- a hub process ------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    if args.postgres:
        hub = fieldsync.Hub(None, SCHEMA, postgres=args.postgres, busy_timeout_ms=120_000)
    else:
        hub = fieldsync.Hub(args.db, SCHEMA, durability="full", busy_timeout_ms=120_000)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                status, answer = 200, hub.handle_bytes(body)
            except fieldsync.FieldSyncError as e:
                status, answer = 500, f"{type(e).__name__}: {e}".encode()
                print(answer.decode(), file=sys.stderr, flush=True)
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


# -- PostgreSQL ---------------------------------------------------------------------------


def psql(dsn: str, sql: str) -> str:
    return subprocess.run(["psql", dsn, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def with_dbname(dsn: str, name: str) -> str:
    return " ".join([p for p in dsn.split() if not p.startswith("dbname=")] + [f"dbname={name}"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_postgres(d: Path) -> str:
    env = dict(os.environ, PGOPTS="-c fsync=on -c synchronous_commit=on")
    out = subprocess.run([str(REPO / "Tests" / "pg" / "server.sh"), "start", str(d), str(free_port())],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip() or "server.sh failed")
    return out.stdout.strip().splitlines()[-1]


# -- one run ------------------------------------------------------------------------------


def open_hub(target: Tuple[str, str]) -> fieldsync.Hub:
    kind, where = target
    if kind == "postgres":
        return fieldsync.Hub(None, SCHEMA, postgres=where)
    return fieldsync.Hub(where, SCHEMA, durability="full")


def make_devices(d: Path, target: Tuple[str, str], args: argparse.Namespace) -> List[fieldsync.Store]:
    stores = []
    with open_hub(target) as hub:
        for n in range(args.devices):
            s = fieldsync.Store(d / f"dev-{n}.db", SCHEMA, device_id=f"dev-{n}", durability="full",
                                batch_size=args.batch)
            for i in range(args.actions):
                s.apply({"action": "pick_item", "actor": f"op-{n}", "type": "task", "id": f"T-{n}-{i % 50}",
                         "set": {"status": "picking"}, "inc": {"picked": 1}})
            hub.enroll_store(s)
            stores.append(s)
    return stores


def start_processes(d: Path, target: Tuple[str, str], n: int) -> List[Tuple[subprocess.Popen, int]]:
    where = ["--postgres", target[1]] if target[0] == "postgres" else ["--db", target[1]]
    procs = []
    for i in range(n):
        log = open(d / f"hub-{i}.log", "wb")
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", *where],
                             stdout=subprocess.PIPE, stderr=log, env=os.environ)
        log.close()
        line = p.stdout.readline().decode()
        if not line.startswith("listening "):
            raise SystemExit(f"hub process did not start: {(d / f'hub-{i}.log').read_text()[-2000:]}")
        procs.append((p, int(line.split()[1])))
    return procs


def in_process(stores: List[fieldsync.Store], target: Tuple[str, str]) -> Tuple[float, List[float]]:
    """The same exchanges handed to one Hub handle in this process, one
    device after the other: the storage's cost alone (no HTTP, no waiting)."""
    with open_hub(target) as hub:
        return exchange_in_process(stores, hub)


def check(target: Tuple[str, str], args: argparse.Namespace) -> None:
    with open_hub(target) as hub:
        applied = hub.stats()["entries_applied"]
        picked = sum(r["picked"] or 0 for r in hub.query("task"))
    want = args.devices * args.actions
    if applied != want or picked != want:
        raise SystemExit(f"hub applied {applied} entries, picked sums to {picked}; expected {want}")


def run(d: Path, target: Tuple[str, str], processes: int, args: argparse.Namespace) -> Dict[str, Any]:
    stores = make_devices(d, target, args)
    load = os.getloadavg()[0]
    if processes == 0:
        try:
            total, latencies = in_process(stores, target)
        finally:
            for s in stores:
                s.close()
        check(target, args)
        return {"requests": len(latencies), "seconds": total, "latencies": latencies, "refused": 0, "load": load}
    procs = start_processes(d, target, processes)
    ports = [port for _, port in procs]
    latencies: List[float] = []
    refused = [0]
    lock = threading.Lock()
    errors: List[str] = []

    def device(s: fieldsync.Store, seed: int) -> None:
        rng = random.Random(seed)
        mine: List[float] = []
        try:
            s.set_connectivity(True)
            while True:
                request, _ = s._prepare_raw()
                if request is None:
                    break
                conn = http.client.HTTPConnection("127.0.0.1", rng.choice(ports), timeout=300)
                t = time.perf_counter()
                conn.request("POST", "/sync", body=request, headers={"Content-Type": "application/json"})
                answer = conn.getresponse()
                body = answer.read()
                mine.append(time.perf_counter() - t)
                conn.close()
                if answer.status != 200:
                    with lock:
                        refused[0] += 1
                    s.sync_fail(f"HTTP {answer.status}")
                    time.sleep(0.05)
                    continue
                s.sync_receive(body)
        except Exception as e:  # reported below: a benchmark that lost work says so
            errors.append(f"{s.device_id}: {e}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=device, args=(s, i)) for i, s in enumerate(stores)]
    try:
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = time.perf_counter() - start
    finally:
        for p, _ in procs:
            p.terminate()
            p.wait(timeout=60)
            p.stdout.close()
        for s in stores:
            s.close()
    if errors:
        raise SystemExit("; ".join(errors))
    check(target, args)
    return {"requests": len(latencies), "seconds": total, "latencies": latencies, "refused": refused[0],
            "load": load}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=6)
    ap.add_argument("--actions", type=int, default=600)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--pg", default="0,1,2,3", help="hub processes on PostgreSQL, one run each (0: in-process)")
    ap.add_argument("--sqlite", default="0,1,3", help="hub processes on one SQLite file, one run each (0: in-process)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dsn", help="an existing server (default: start one with fsync on)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--postgres", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args)

    print("== fieldsync hub on PostgreSQL and on SQLite (Benchmarks/pg_hub.py) ==")
    print(f"machine: nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, "
          f"Linux {platform.release()}, Python {platform.python_version()}")
    print(f"date:    {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"library: {fieldsync.version()} at {os.environ['FIELDSYNC_LIB']}")
    print(f"workload: {args.devices} devices x {args.actions} actions, batch {args.batch}; devices sync at once,"
          f" one thread each, each request to a random hub process")
    tmp = Path(tempfile.mkdtemp(prefix="fieldsync-pg-"))
    tmp.chmod(0o755)  # as root, server.sh runs the server as "postgres", which must reach pg/
    pg_dir = tmp / "pg"
    dsn: Optional[str] = args.dsn
    started = False
    configs: List[Tuple[str, int]] = [("sqlite", int(n)) for n in args.sqlite.split(",") if n]
    try:
        if args.pg:
            if dsn is None:
                try:
                    dsn = start_postgres(pg_dir)
                    started = True
                except (RuntimeError, OSError) as e:
                    print(f"PostgreSQL: not measured ({e})")
            if dsn:
                version = psql(dsn, "SHOW server_version")
                fsync, sync = psql(dsn, "SHOW fsync"), psql(dsn, "SHOW synchronous_commit")
                print(f"PostgreSQL {version}, fsync={fsync}, synchronous_commit={sync}"
                      f"{' (started here)' if started else ''}")
                configs += [("postgres", int(n)) for n in args.pg.split(",") if n]
        print("SQLite hub: durability full (synchronous=FULL, WAL)")
        results: Dict[Tuple[str, int], List[Dict[str, Any]]] = {c: [] for c in configs}
        for r in range(args.repeat):
            for kind, n in configs:
                d = tmp / f"run-{r}-{kind}-{n}"
                d.mkdir()
                if kind == "postgres":
                    assert dsn is not None
                    name = "fs_bench_" + uuid.uuid4().hex[:12]
                    psql(dsn, f"CREATE DATABASE {name}")
                    target = ("postgres", with_dbname(dsn, name))
                else:
                    target = ("sqlite", str(d / "hub.db"))
                try:
                    results[(kind, n)].append(run(d, target, n, args))
                finally:
                    if kind == "postgres":
                        psql(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    shutil.rmtree(d, ignore_errors=True)
                res = results[(kind, n)][-1]
                print(f"  run {r + 1}: {kind} x{n}: {res['requests'] / res['seconds']:.1f} req/s,"
                      f" p99 {percentile(res['latencies'], 99) * 1e3:.1f} ms", flush=True)
    finally:
        if started:
            subprocess.run([str(REPO / "Tests" / "pg" / "server.sh"), "stop", str(pg_dir)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    entries = args.devices * args.actions
    print(f"\n{'':24}| requests | req/s (each run) | entries/s (each run) | latency p50 / p99 ms (each run)"
          f" | not 200 | load avg before")
    for (kind, n), runs in results.items():
        name = f"{'PostgreSQL' if kind == 'postgres' else 'SQLite'}, " + (
            "in-process" if n == 0 else f"{n} process{'es' if n > 1 else ''}")
        rps = ", ".join(f"{x['requests'] / x['seconds']:.1f}" for x in runs)
        eps = ", ".join(f"{entries / x['seconds']:,.0f}" for x in runs)
        lat = ", ".join(f"{percentile(x['latencies'], 50) * 1e3:.1f} / {percentile(x['latencies'], 99) * 1e3:.1f}"
                        for x in runs)
        print(f"{name:24}| {runs[0]['requests']:8} | {rps:16} | {eps:20} | {lat:31} |"
              f" {sum(x['refused'] for x in runs):7} | {', '.join('%.2f' % x['load'] for x in runs)}")
    print("every run: the hub applied each action once (entries_applied and the counters' sum checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""gunicorn settings for a fieldsync hub (docs/OPERATIONS.md "Deploying").

    export FIELDSYNC_HUB=/var/lib/fieldsync/hub.db FIELDSYNC_SCHEMA=/etc/fieldsync/schema.json
    gunicorn -c gunicorn.conf.py 'fieldsync.server:app'

or, on each of several hosts sharing one PostgreSQL database, FIELDSYNC_POSTGRES
(a libpq connection string) in place of FIELDSYNC_HUB.

Every FIELDSYNC_* variable of fieldsync/server.py applies; FIELDSYNC_BIND and
FIELDSYNC_WORKERS are read here. Options on gunicorn's command line override
this file.
"""

import os
import shutil
import tempfile

# Behind a TLS proxy on this host (the nginx snippet in docs/OPERATIONS.md);
# or serve TLS here: certfile = "/etc/fieldsync/hub.crt", keyfile = "/etc/fieldsync/hub.key".
bind = os.environ.get("FIELDSYNC_BIND", "127.0.0.1:8080")

# One hub file takes one writer at a time (SQLite): workers beyond the cores
# only queue on its lock. Two to four per host is the range; see "Sizing".
# With PostgreSQL each worker holds one connection: hosts x workers of them.
workers = int(os.environ.get("FIELDSYNC_WORKERS", "3"))
worker_class = "sync"  # a request is CPU work in the engine; the proxy absorbs slow clients

# A worker silent this long (a body that does not arrive, a request stuck)
# is killed and replaced; the request it held is applied whole or not at all
# (one transaction), and the device resends. Above FIELDSYNC_BODY_TIMEOUT.
timeout = 120
# On SIGTERM (systemctl stop, a deploy) requests in flight get this long to finish.
graceful_timeout = 30
# Headers only: bodies are bounded by FIELDSYNC_MAX_BODY (413).
limit_request_field_size = 8190

# The per-process metrics (HTTP outcomes, latency) of every worker, summed
# at each scrape: prometheus_client's multiprocess mode, a directory of this
# hub's own, emptied when the server starts.
metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                                    os.path.join(tempfile.gettempdir(), "fieldsync-metrics"))


def on_starting(server):
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)

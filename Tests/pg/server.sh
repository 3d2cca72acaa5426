#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the PostgreSQL hub's tests
# and benchmarks (issue 17): initdb into a fresh directory, a port of its own,
# trust authentication on 127.0.0.1 only.
#
#   Tests/pg/server.sh start DIR [PORT]   prints the DSN to put in FIELDSYNC_PG_DSN
#   Tests/pg/server.sh stop DIR
#
# initdb refuses to run as root: as root the cluster belongs to the
# "postgres" user the Debian package creates. PGOPTS adds server options
# (the benchmarks turn fsync back on).
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "server.sh: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }
as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
  port=${3:-55432}
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  # Enough connections for 3 hub processes per test on every xdist worker.
  as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off ${PGOPTS:-}" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "host=127.0.0.1 port=$port user=postgres dbname=postgres"
  ;;
stop)
  [ -d "$dir/data" ] && as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  rm -rf "$dir"
  ;;
*) echo "server.sh: start DIR [PORT] | stop DIR" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Runs a command with a PostgreSQL server for the PostgreSQL hub's tests
# (issue 17; docs/TESTING.md "PostgreSQL tests"):
#
#   Tests/pg/with-server.sh COMMAND...
#
# With FIELDSYNC_PG_DSN set, that server is used as it is. Otherwise, when the
# server binaries are installed (Debian's postgresql), a throwaway server is
# started on a free loopback port (Tests/pg/server.sh), FIELDSYNC_PG_DSN names
# it for COMMAND, and it is stopped and its directory removed when COMMAND
# ends, however it ends. Without the binaries COMMAND runs as it is (those
# tests skip) -- except under CI, which must run them: there it fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${FIELDSYNC_PG_DSN:-}" ]; then
  exec "$@"
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ -n "${CI:-}" ]; then
    echo "with-server.sh: CI runs the PostgreSQL tests but no server is installed (apt-get install postgresql)" >&2
    exit 1
  fi
  echo "with-server.sh: no PostgreSQL server installed: the PostgreSQL tests skip" >&2
  exec "$@"
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/fieldsync-pg.XXXXXX")
trap '"$here/server.sh" stop "$dir"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# A free port: bound and released here, taken by the server a moment later.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dsn=$("$here/server.sh" start "$dir" "$port")
export FIELDSYNC_PG_DSN="$dsn"
echo "with-server.sh: a PostgreSQL server for this run: $FIELDSYNC_PG_DSN" >&2
"$@"

#!/bin/sh
# http_sync against a real `python -m fieldsync serve` on a free loopback port:
# the operator's provisioning with the CLI (README, "Over HTTP"), then the
# firmware loop started BEFORE the hub listens (its first tries fail and back
# off), the hub started a second later; the loop must drain, and the hub must
# hold the device's records. The server is stopped after.
# Usage: run_http_sync.sh HTTP_SYNC_BINARY   (FIELDSYNC_LIB and PYTHON from the Makefile)
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
schema=$here/../schema.json
py=${PYTHON:-python3}
export PYTHONPATH="$here/../../bindings/python${PYTHONPATH:+:$PYTHONPATH}"
tmp=$(mktemp -d)
server=
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "http_sync: FAIL: $*" >&2; [ ! -f "$tmp/server.log" ] || cat "$tmp/server.log" >&2; exit 1; }
cd "$tmp"

# Provisioning: the device's store, enrolled at the hub, the hub's key pinned.
$py -m fieldsync apply --db device.db --schema "$schema" --device-id sensor-1 \
    --action '{"action": "pick_item", "actor": "op-17", "type": "task", "id": "H-9", "set": {"status": "open"}}' >/dev/null
info=$($py -m fieldsync store info device.db --schema "$schema" --json)
key=$(echo "$info" | $py -c 'import json, sys; print(json.load(sys.stdin)["public_key"])')
instance=$(echo "$info" | $py -c 'import json, sys; print(json.load(sys.stdin)["instance_id"])')
hub_key=$($py -m fieldsync hub enroll hub.db sensor-1 "$key" --instance "$instance" --schema "$schema" | tail -n 1)
$py -m fieldsync store pin-hub device.db "$hub_key" --schema "$schema" >/dev/null

port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" "$schema" device.db "http://127.0.0.1:$port/sync" 5 60 > device.log 2>&1 &
device=$!
sleep 1
$py -m fieldsync serve --db hub.db --schema "$schema" --port "$port" > server.log 2>&1 &
server=$!
rc=0; wait "$device" || rc=$?
cat device.log
[ $rc -eq 0 ] || fail "http_sync exited $rc"
grep -q "backing off" device.log || fail "the loop never met the hub down (no backoff seen)"
grep -q '^drained' device.log || fail "not drained"
kill "$server"; wait "$server" 2>/dev/null || true; server=
# The hub holds what the device did: H-0 picked 3 times, H-1 twice, H-9 open.
$py -c '
import sys, fieldsync
schema = open(sys.argv[1]).read()
with fieldsync.Hub("hub.db", schema) as hub:
    got = {r["id"]: (r["status"], r.get("picked")) for r in hub.query("task")}
want = {"H-0": ("picked", 3), "H-1": ("picked", 2), "H-9": ("open", None)}
assert got == want, got
print("http_sync: passed: the hub holds", sorted(got))
' "$schema" || fail "the hub's records"

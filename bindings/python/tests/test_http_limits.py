"""`python -m fieldsync serve` under hostile bodies: its memory is bounded by
--max-parallel bodies however many arrive at once, a body over
FS_MAX_MESSAGE_BYTES is refused 413 before it is read, a body that trickles
in is cut off after --body-timeout, and the server answers afterwards."""

import http.client
import json
import socket
import threading
import time

import pytest

from support import serve_hub, write_schema

MIB = 2**20
#: One hostile body: a valid JSON array of 60 MiB (parsing it costs many times that).
BODY = b"[" + b"1," * (30 * MIB - 1) + b"1]"


def vm_kib(pid, field):
    """VmHWM (peak) or VmRSS of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def post_raw(port, body, headers=None, timeout=120):
    """POST /sync; (status, decoded answer). `headers` replace Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("POST", "/sync")
        for k, v in (headers or {"Content-Length": str(len(body))}).items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def stats_ok(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/stats")
        answer = conn.getresponse()
        return answer.status == 200 and "records" in json.loads(answer.read())
    finally:
        conn.close()


@pytest.fixture
def schema_file(tmp_path):
    return write_schema(tmp_path / "schema.json")


def test_four_large_bodies_at_once_cost_no_more_than_max_parallel_bodies(tmp_path, schema_file):
    with serve_hub(tmp_path / "hub.db", schema_file, tmp_path / "serve.log", "--max-parallel", "2") as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        assert stats_ok(port)
        base = vm_kib(proc.pid, "VmHWM")
        status, answer = post_raw(port, BODY)
        assert status == 400, answer  # not a request object: refused, after parsing it
        one = vm_kib(proc.pid, "VmHWM") - base
        assert one > 60 * 1024, f"one 60 MiB body cost only {one} KiB: nothing measured"

        results = []
        def send():
            results.append(post_raw(port, BODY))
        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert [r[0] for r in results] == [400] * 4, results
        four = vm_kib(proc.pid, "VmHWM") - base
        print(f"base {base // 1024} MiB, one body +{one // 1024} MiB, four at once +{four // 1024} MiB")
        # Two at a time: at most twice one body's cost (plus a margin for the
        # allocator); all four at once cost four times it.
        assert four < 2 * one + one // 2 + 64 * 1024, \
            f"four bodies at once took the peak {four // 1024} MiB above base; one took {one // 1024} MiB"
        assert stats_ok(port)


def test_a_body_over_the_message_limit_is_413_before_it_is_read(tmp_path, schema_file):
    with serve_hub(tmp_path / "hub.db", schema_file, tmp_path / "serve.log") as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        base = vm_kib(proc.pid, "VmHWM")
        status, answer = post_raw(port, b"", {"Content-Length": str(64 * MIB + 1)})
        assert (status, answer["status"]) == (413, "FS_ERR_TOO_BIG"), answer
        status, answer = post_raw(port, b"", {"Content-Length": str(2**63)})
        assert status == 413, answer
        assert vm_kib(proc.pid, "VmHWM") - base < 16 * 1024
        assert stats_ok(port)


def test_a_body_that_trickles_in_is_cut_off_and_others_are_served(tmp_path, schema_file):
    with serve_hub(tmp_path / "hub.db", schema_file, tmp_path / "serve.log",
                   "--max-parallel", "1", "--body-timeout", "1", "--queue-timeout", "30") as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            slow.sendall(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            started = time.monotonic()
            # A byte now and then does not stretch the deadline.
            for _ in range(3):
                time.sleep(0.4)
                try:
                    slow.sendall(b" ")
                except OSError:
                    break
            # It held the only turn; the next request is served once it is cut off.
            status, answer = post_raw(port, b"{}", timeout=30)
            assert status == 400 and answer["status"] == "FS_ERR_ARG", answer
            assert time.monotonic() - started < 10
            slow.settimeout(10)
            reply = slow.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
        finally:
            slow.close()
        assert stats_ok(port)

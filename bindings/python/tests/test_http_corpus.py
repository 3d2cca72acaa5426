"""The fuzz corpus (Tests/fuzz/corpus, and what a `make fuzz` run left in
build/fuzz-corpus) fed to `python -m fieldsync serve`: every body is answered
200 or 4xx, never 5xx or a dropped connection, and the server stays up."""

import http.client
import json

from support import REPO, serve_hub, write_schema

CORPUS_DIRS = [REPO / "Tests" / "fuzz" / "corpus", REPO / "build" / "fuzz-corpus"]
#: Enough of a long fuzz run's corpus to matter, few enough to stay quick.
MAX_FILES = 3000


def corpus_bodies():
    """Each corpus file as posted: whole, and without the byte that picks the
    fuzz target (what the hub door itself saw)."""
    files = sorted({p.name: p for d in CORPUS_DIRS if d.is_dir() for p in d.iterdir() if p.is_file()}.values())
    for path in files[:MAX_FILES]:
        data = path.read_bytes()
        yield path.name, data
        if data:
            yield path.name + "[1:]", data[1:]


def post(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/sync", body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_every_corpus_body_is_answered_and_the_server_stays_up(tmp_path):
    schema = write_schema(tmp_path / "schema.json")
    with serve_hub(tmp_path / "hub.db", schema, tmp_path / "serve.log") as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        bad = []
        count = 0
        for name, body in corpus_bodies():
            count += 1
            status, answer = post(port, body)
            if not (status == 200 or 400 <= status < 500):
                bad.append((name, status, answer[:200]))
            elif status != 200:
                assert "status" in json.loads(answer), (name, answer[:200])
            assert proc.poll() is None, f"the server died on {name}"
        assert count >= 10, "the corpus is missing"
        assert not bad, bad[:10]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/stats")
            assert conn.getresponse().status == 200
        finally:
            conn.close()

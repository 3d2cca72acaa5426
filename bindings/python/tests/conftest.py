import pytest

import support  # noqa: F401  (puts the checkout's package on sys.path)
import fieldsync
import hubs


@pytest.fixture
def schema():
    return support.SCHEMA


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "device.db")


@pytest.fixture
def store(db):
    with fieldsync.Store(db, support.SCHEMA, durability="normal", device_id="dev-A") as s:
        yield s


@pytest.fixture(params=hubs.STORAGES)
def hub_storage(request, tmp_path):
    """The conformance suite's hubs: each test runs on a SQLite file and on
    a PostgreSQL database (hubs.py; skipped without a server, see pg.py)."""
    with hubs.site(request.param, tmp_path) as site:
        yield site

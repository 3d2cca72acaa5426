import pytest

import support  # noqa: F401  (puts the checkout's package on sys.path)
import fieldsync


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

"""Online backups of a hub and of a store (fs_hub_backup, fs_store_backup;
issue 15): through Python and the CLI."""
import json

import pytest

import fieldsync
from support import SCHEMA, run_cli, task


def device(path, device_id="tablet-7", **options):
    return fieldsync.Store(str(path), SCHEMA, durability="normal", device_id=device_id, **options)


def test_backups_of_a_hub_and_a_store_open_as_the_same_hub_and_device(tmp_path):
    """fs_hub_backup / fs_store_backup through Python and the CLI (issue 15's
    online backup): the copies are standalone files, never overwrite, and
    a store image is the same device."""
    hub_db = tmp_path / "hub.db"
    with fieldsync.Hub(str(hub_db), SCHEMA, durability="normal") as hub, device(tmp_path / "d.db", "tablet-1") as s:
        hub.enroll_store(s)
        s.apply(task("T-1", set={"status": "open"}, inc={"picked": 2}))
        fieldsync.sync_once(s, hub)
        s.backup(tmp_path / "d-image.db")
        with pytest.raises(fieldsync.ArgError):
            s.backup(tmp_path / "d-image.db")
        with fieldsync.Store(str(tmp_path / "d-image.db"), SCHEMA) as image:
            assert (image.device_id, image.public_key, image.instance_id) == (s.device_id, s.public_key, s.instance_id)
    schema = str(tmp_path / "schema.json")
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    done = run_cli("hub", "backup", str(hub_db), str(tmp_path / "hub-copy.db"), "--schema", schema)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "hub-copy.db-wal").exists() and not (tmp_path / "hub-copy.db.partial").exists()
    with fieldsync.Hub(str(tmp_path / "hub-copy.db"), SCHEMA) as copy:
        assert copy.query("task")[0]["picked"] == 2 and copy.stats()["devices_enrolled"] == 1
    again = run_cli("hub", "backup", str(hub_db), str(tmp_path / "hub-copy.db"), "--schema", schema)
    assert again.returncode != 0 and "exists" in again.stderr

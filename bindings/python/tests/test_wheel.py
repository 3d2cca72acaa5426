"""The wheel carries the library: installed with pip into a fresh venv it
imports and works with no environment variable, from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from support import BINDING_DIR

try:  # setuptools >= 70.1 builds wheels itself; older ones need the wheel package
    import setuptools.command.bdist_wheel  # noqa: F401
except ImportError:
    pytest.importorskip("wheel", reason="building the wheel needs the wheel package (.ci/run installs it)")

CHECK = r"""
import json, sys, fieldsync, fieldsync._lib as l
store = fieldsync.Store(sys.argv[1], {"version": 1, "types": {"task": {"fields": {"status": {"type": "string"}}}}})
store.apply({"action": "a", "actor": "op", "type": "task", "id": "T", "set": {"status": "open"}})
print(json.dumps({"lib": l.lib._name, "version": fieldsync.version(), "status": store.get("task", "T")["status"]}))
"""


def test_a_wheel_installed_in_a_fresh_venv_needs_no_environment(tmp_path: Path) -> None:
    library = Path(os.environ["FIELDSYNC_LIB"]).resolve()
    built = subprocess.run([sys.executable, str(BINDING_DIR / "make_wheel.py"), str(library), str(tmp_path / "dist")],
                           capture_output=True, text=True, check=True)
    wheel = Path(built.stdout.strip().splitlines()[-1])
    assert wheel.name.startswith("fieldsync-") and wheel.name.endswith("-py3-none-linux_x86_64.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("FIELDSYNC_LIB", "PYTHONPATH")}
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)],
                   check=True, env=clean, cwd=tmp_path)
    out = subprocess.run([str(python), "-c", CHECK, str(tmp_path / "s.db")], capture_output=True, text=True,
                         env=clean, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    import json
    seen = json.loads(out.stdout)
    assert seen["lib"].startswith(str(env_dir)), seen  # the bundled copy, not the checkout's build
    assert seen["status"] == "open" and seen["version"]
    cli = subprocess.run([str(python), "-m", "fieldsync", "--help"], capture_output=True, text=True, env=clean,
                         cwd=tmp_path)
    assert cli.returncode == 0 and "usage" in cli.stdout.lower(), cli.stderr

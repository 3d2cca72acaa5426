"""mypy --strict is clean on the package and on the README's Python
examples, and sees the handle types a `with` statement gives."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import BINDING_DIR, REPO

mypy = pytest.importorskip("mypy", reason="mypy is installed by .ci/run")



def run_mypy(*targets: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *targets],
                          capture_output=True, text=True, cwd=cwd, env={"MYPYPATH": str(BINDING_DIR), "PATH": "/usr/bin:/bin"})


def test_the_package_is_clean_under_mypy_strict() -> None:
    out = run_mypy("fieldsync", cwd=BINDING_DIR)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_readme_examples_type_check_and_with_gives_the_handle_type(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert blocks
    body = "\n\n".join(f"def example_{i}() -> None:\n" + "\n".join("    " + line for line in b.splitlines())
                       for i, b in enumerate(blocks))
    checks = (
        "from typing import Any, Dict\n"
        "import fieldsync\n\n"
        "def handle_types(schema: Dict[str, Any]) -> None:\n"
        "    with fieldsync.Store('d.db', schema) as store, fieldsync.Hub('h.db', schema) as hub:\n"
        "        reveal_type(store)\n"
        "        reveal_type(hub)\n\n"
    )
    (tmp_path / "examples.py").write_text(checks + body + "\n")
    out = run_mypy("examples.py", cwd=tmp_path)
    revealed = re.findall(r'Revealed type is "([^"]+)"', out.stdout)
    assert revealed == ["fieldsync.Store", "fieldsync.Hub"], out.stdout
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert not errors, out.stdout

"""Builds the fieldsync wheel with the library inside it.

    python3 make_wheel.py LIBRARY OUTDIR      (what `make wheel` runs)

LIBRARY is the libfieldsync.so to bundle (build/libfieldsync.so.1); it goes
in as fieldsync/libfieldsync.so.1 without its debug sections, where the
binding looks first (fieldsync/_lib.py). Prints the wheel's path. The
machine that installs the wheel needs the library's own dependencies:
libsqlite3, libjansson and libcrypto (Debian: libsqlite3-0, libjansson4,
libssl3).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(library: Path, outdir: Path) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fieldsync-wheel-") as tmp:
        src = Path(tmp)
        shutil.copytree(HERE / "fieldsync", src / "fieldsync",
                        ignore=shutil.ignore_patterns("__pycache__", "libfieldsync.so*"))
        for name in ("pyproject.toml", "setup.py"):
            shutil.copy(HERE / name, src / name)
        bundled = src / "fieldsync" / "libfieldsync.so.1"
        # Debug info and the static symbol table are most of the file; the
        # library needs neither to load and run.
        subprocess.run(["objcopy", "--strip-unneeded", str(library), str(bundled)], check=True)
        before = set(outdir.glob("fieldsync-*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(outdir), str(src)], check=True)
        made = sorted(set(outdir.glob("fieldsync-*.whl")) - before) or sorted(outdir.glob("fieldsync-*.whl"))
        return made[-1]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    print(build(Path(argv[1]).resolve(), Path(argv[2]).resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The shared library as a file: exported symbols, run-time dependencies,
SONAME and version, against include/fieldsync.h."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fieldsync
from fieldsync import lib
from support import BINDING_DIR, HEADER

LIBRARY = Path(lib._name).resolve()

# Symbols the linker itself may define in any shared object.
LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}
ALLOWED_DEPS = ("libc.so", "libm.so", "libstdc++.so", "libgcc_s.so", "libsqlite3.so",
                "libjansson.so", "libcrypto.so", "ld-linux", "linux-vdso.so", "libpthread.so", "libdl.so",
                "librt.so", "libutil.so")


def header_text():
    source = HEADER.read_text()
    return re.sub(r"/\*.*?\*/", " ", source, flags=re.S)  # drop comments


def header_functions():
    # Only FS_EXTERN declarations: a function-pointer typedef such as
    # `typedef fs_status (*fs_resolver_fn)(...)` declares no symbol.
    return set(re.findall(r"^FS_EXTERN\b[^;]*?\b(fs_[A-Za-z0-9_]+)\s*\(", header_text(), re.M))


def header_macro(name):
    match = re.search(rf"#define\s+{name}\s+(\S+)", header_text())
    assert match, f"{name} not in the header"
    return match.group(1).strip('"')


def run(*argv):
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def test_header_declares_the_core_functions():
    assert {"fs_version", "fs_store_open", "fs_store_apply", "fs_audit_query"} <= header_functions()


def dynamic_symbols():
    """(kind letter, name) of each defined symbol `nm -D --defined-only` shows."""
    symbols = []
    for line in run("nm", "-D", "--defined-only", str(LIBRARY)).splitlines():
        parts = line.split()
        if len(parts) >= 2:
            symbols.append((parts[-2], parts[-1].split("@")[0]))
    return symbols


def test_exports_exactly_the_header_functions():
    # Upper-case kinds are global (or weak: V, W, u, i): visible to the dynamic linker.
    exported = {name for kind, name in dynamic_symbols() if kind.isupper() or kind in "uiVvWw"}
    ours = exported - LINKER_SYMBOLS
    missing = header_functions() - ours
    extra = ours - header_functions()
    assert not missing, f"declared in the header but not exported: {sorted(missing)}"
    assert not extra, f"{len(extra)} exported symbols not in the header, e.g. {sorted(extra)[:15]}"


def test_nm_shows_nothing_else_of_ours():
    # docs/ABI.md "Linking": `nm -D --defined-only` shows the header's fs_* symbols and nothing
    # else of ours, so local-binding leftovers in .dynsym count too.
    others = sorted(name for _, name in dynamic_symbols()
                    if name not in header_functions() and name not in LINKER_SYMBOLS)
    assert not others, f"{len(others)} other symbols in .dynsym, e.g. {others[:10]}"


def test_runtime_dependencies_are_only_the_allowed_ones():
    lines = [line.strip() for line in run("ldd", str(LIBRARY)).splitlines() if line.strip()]
    assert not [line for line in lines if "not found" in line], lines
    deps = [line.split()[0] for line in lines]
    swift = [d for d in deps if "swift" in d.lower() or "Foundation" in d]
    assert not swift, f"links Swift runtime libraries: {swift}"
    unexpected = [d for d in deps if not any(Path(d).name.startswith(a) for a in ALLOWED_DEPS)]
    assert not unexpected, f"unexpected dependencies: {unexpected}"
    # JSON is read by jansson and hashing comes from OpenSSL, not from code of
    # ours (docs/ARCHITECTURE.md).
    assert any(Path(d).name.startswith("libcrypto.so") for d in deps), deps
    assert any(Path(d).name.startswith("libjansson.so") for d in deps), deps


def test_soname_carries_the_abi_version():
    dynamic = run("readelf", "-d", str(LIBRARY))
    sonames = re.findall(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", dynamic)
    assert sonames == [f"libfieldsync.so.{header_macro('FS_ABI_VERSION')}"]


def test_version_matches_the_header():
    assert fieldsync.version() == header_macro("FS_VERSION")
    parts = [header_macro(f"FS_VERSION_{p}") for p in ("MAJOR", "MINOR", "PATCH")]
    assert fieldsync.version() == ".".join(parts)
    assert fieldsync.abi_version() == int(header_macro("FS_ABI_VERSION"))


def test_the_binding_limits_are_the_headers():
    from fieldsync import _lib
    defines = dict(re.findall(r"^#define\s+(FS_MAX_[A-Z_]+)\s+([^/\n]+)", HEADER.read_text(), re.M))
    values = {}
    for name, expression in defines.items():  # each refers only to earlier ones
        expression = re.sub(r"FS_MAX_[A-Z_]+", lambda m: str(values[m.group(0)]), expression)
        assert re.fullmatch(r"[\d\s()*+]+", expression), (name, expression)
        values[name] = eval(expression)  # digits, spaces, parentheses, + and * only
    for name in ("MAX_JSON_BYTES", "MAX_MESSAGE_BYTES", "MAX_DEPTH", "MAX_MESSAGE_DEPTH"):
        assert getattr(_lib, name) == values["FS_" + name], name


def test_without_the_library_the_cli_says_so_in_one_line_and_the_api_at_first_use(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FIELDSYNC_LIB"}
    env["FIELDSYNC_LIB"] = str(tmp_path / "missing" / "libfieldsync.so")
    env["PYTHONPATH"] = str(BINDING_DIR)
    cli = subprocess.run([sys.executable, "-m", "fieldsync", "hub", "stats", str(tmp_path / "hub.db")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert cli.returncode == 6, cli
    assert "Traceback" not in cli.stderr and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert cli.stderr.startswith("error: cannot load libfieldsync") and "FIELDSYNC_LIB" in cli.stderr
    helped = subprocess.run([sys.executable, "-m", "fieldsync", "--help"], capture_output=True, text=True, env=env)
    assert helped.returncode == 0 and "usage" in helped.stdout
    api = subprocess.run([sys.executable, "-c", "import fieldsync\n"
                          "try:\n    fieldsync.Store('s.db', {})\n"
                          "except ImportError as e:\n    print('ImportError', e)\n"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert api.returncode == 0 and api.stdout.startswith("ImportError cannot load libfieldsync"), api


def test_the_version_is_written_once_in_the_header_and_checked_everywhere_else():
    header = HEADER.read_text()
    parts = [int(re.search(rf"#define FS_VERSION_{p} (\d+)", header).group(1)) for p in ("MAJOR", "MINOR", "PATCH")]
    version = ".".join(map(str, parts))
    assert f'#define FS_VERSION "{version}"' in header
    assert fieldsync.version() == version  # the library reports the header it was built from
    pyproject = (BINDING_DIR / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == version, "pyproject.toml's version"
    changelog = (HEADER.parents[1] / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(version)}\b", changelog, re.M), "CHANGELOG.md has no section for " + version

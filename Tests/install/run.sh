#!/bin/sh
# make test-install: `make install` into a staged prefix (DESTDIR), then
# examples/c/quickstart.c and examples/cpp/sync.cpp built against it with
# pkg-config and with CMake's find_package(fieldsync), and run; the installed
# library has no RUNPATH and its debuglink names a debug file that matches it.
# Usage: Tests/install/run.sh (from the project root; make test-install)
set -eu
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=/opt/fieldsync
stage=$tmp/stage
make -s install-only DESTDIR="$stage" PREFIX="$prefix" >/dev/null
lib=$stage$prefix/lib
fail() { echo "test-install: FAIL: $*" >&2; exit 1; }

version=$(sed -n 's/^#define FS_VERSION "\(.*\)"$/\1/p' include/fieldsync.h)
abi=$(sed -n 's/^#define FS_ABI_VERSION \([0-9]*\)$/\1/p' include/fieldsync.h)
real=libfieldsync.so.$version
for f in lib/$real lib/$real.debug include/fieldsync.h include/fieldsync.hpp lib/pkgconfig/fieldsync.pc \
         lib/cmake/fieldsync/fieldsyncConfig.cmake lib/cmake/fieldsync/fieldsyncConfigVersion.cmake; do
    [ -f "$stage$prefix/$f" ] || fail "$prefix/$f not installed"
done
[ "$(readlink "$lib/libfieldsync.so.$abi")" = "$real" ] || fail "libfieldsync.so.$abi does not point to $real"
[ "$(readlink "$lib/libfieldsync.so")" = "libfieldsync.so.$abi" ] || fail "libfieldsync.so does not point to the SONAME"
readelf -d "$lib/$real" | grep -q "Library soname: \[libfieldsync.so.$abi\]" || fail "SONAME is not libfieldsync.so.$abi"
if readelf -d "$lib/$real" | grep -Eq '\((RUNPATH|RPATH)\)'; then fail "installed library has a RUNPATH"; fi
readelf -S "$lib/$real" | grep -q '\.debug_info' && fail "installed library still carries debug info"
readelf -S "$lib/$real.debug" | grep -q '\.debug_info' || fail "$real.debug has no debug info"
objcopy --dump-section .gnu_debuglink="$tmp/debuglink" "$lib/$real" "$tmp/discard" || fail "no .gnu_debuglink"
python3 - "$tmp/debuglink" "$lib/$real.debug" <<'PY' || fail "gnu-debuglink"
import sys, zlib
raw, debug = open(sys.argv[1], "rb").read(), sys.argv[2]
name, crc = raw[:raw.index(b"\0")].decode(), int.from_bytes(raw[-4:], "little")
want = debug.rsplit("/", 1)[1]
with open(debug, "rb") as f:
    actual = zlib.crc32(f.read())
if name != want or crc != actual:
    sys.exit(f"debuglink names {name!r} crc {crc:#x}; want {want!r} crc {actual:#x}")
PY

run() {  # run BINARY FILE-IN-A-FRESH-DIR: the library found as a system's loader would, not by a RUNPATH
    dir=$(mktemp -d "$tmp/run.XXXXXX")
    (cd "$dir" && LD_LIBRARY_PATH="$lib" "$1" "$dir/$2" >/dev/null) || fail "$1 failed"
}
export PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$stage"
[ "$(pkg-config --modversion fieldsync)" = "$version" ] || fail "pkg-config --modversion"
cc -std=c99 -Wall -Werror examples/c/quickstart.c $(pkg-config --cflags --libs fieldsync) -o "$tmp/quickstart-pc"
c++ -std=c++17 -Wall -Werror examples/cpp/sync.cpp $(pkg-config --cflags --libs fieldsync) -o "$tmp/sync-pc"
run "$tmp/quickstart-pc" quickstart.db
run "$tmp/sync-pc" .
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

cmake -S Tests/install -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$stage$prefix" -DEXAMPLES="$root/examples" \
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_SKIP_RPATH=ON >/dev/null || fail "cmake configure (find_package)"
cmake --build "$tmp/cmake" >/dev/null || fail "cmake build"
run "$tmp/cmake/quickstart" quickstart.db
run "$tmp/cmake/sync_cpp" .
echo "test-install: passed (pkg-config and CMake consumers of $prefix via DESTDIR, no RUNPATH, debuglink)"

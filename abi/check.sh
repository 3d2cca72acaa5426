#!/bin/sh
# The ABI check (make test-abi) and its baseline (make abi-baseline).
#
# abidw finds no function types in the Swift-built library, so the types come
# from the header: a probe library, compiled with -g, exports one table whose
# members are `__typeof__(&fs_…)` for every FS_EXTERN function of
# include/fieldsync.h. abidiff compares its DWARF with the committed baseline
# abi/libfieldsync.so.<FS_ABI_VERSION>.abi: any difference fails. A compatible
# addition is taken in with `make abi-baseline`; an incompatible change
# (abidiff's ABI_INCOMPATIBLE_CHANGE) is refused there unless FS_ABI_VERSION
# (and so the SONAME) changed with it, which starts a new baseline file.
# Also: the library's dynamic symbols are exactly the header's functions, each
# defined as fs_…@@FIELDSYNC_1.
#
# Usage: abi/check.sh LIBRARY            check
#        abi/check.sh --baseline         write the baseline
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
abi=$(sed -n 's/^#define FS_ABI_VERSION \([0-9]*\)$/\1/p' include/fieldsync.h)
baseline=abi/libfieldsync.so.$abi.abi
fail() { echo "test-abi: FAIL: $*" >&2; exit 1; }

# The header's functions: FS_EXTERN <type> [*]fs_name(
sed -n 's/^FS_EXTERN .*[ *]\(fs_[a-z0-9_]*\)(.*/\1/p' include/fieldsync.h | sort > "$tmp/header"
[ -s "$tmp/header" ] || fail "no FS_EXTERN function found in include/fieldsync.h"
{
    echo '#include "fieldsync.h"'
    sed 's/.*/__typeof__(\&&) const fieldsync_abi_& = \&&;/' "$tmp/header"
} > "$tmp/probe.c"
# The functions are taken from a stub, so the probe links without the library.
sed 's/.*/void &(void) {}/' "$tmp/header" > "$tmp/stubs.c"
gcc -shared -fPIC -o "$tmp/libstubs.so" "$tmp/stubs.c"
# (Paths mapped, so that the baseline's text does not change from run to run.)
gcc -std=c99 -g -O0 -shared -fPIC -fdebug-prefix-map="$tmp"=abi -fdebug-prefix-map="$(pwd)"=. -Iinclude \
    -o "$tmp/probe.so" "$tmp/probe.c" -L"$tmp" -lstubs
abidw --no-corpus-path --no-show-locs --out-file "$tmp/probe.abi" "$tmp/probe.so"

if [ "${1:-}" = --baseline ]; then
    # Only additions are compatible: anything abidiff reports once added
    # symbols are left out (a changed or removed function) needs a new ABI.
    if [ -f "$baseline" ] && ! abidiff --no-added-syms "$baseline" "$tmp/probe.abi" > "$tmp/diff"; then
        cat "$tmp/diff"
        fail "an incompatible change with FS_ABI_VERSION still $abi: raise FS_ABI_VERSION (the SONAME follows) and the version node in Sources/CFieldSync/exports.map, then make abi-baseline"
    fi
    for old in abi/libfieldsync.so.*.abi; do [ "$old" = "$baseline" ] || rm -f "$old"; done
    cp "$tmp/probe.abi" "$baseline"
    echo "wrote $baseline ($(wc -l < "$tmp/header") functions)"
    exit 0
fi

lib=$1
[ -f "$baseline" ] || fail "no $baseline for FS_ABI_VERSION $abi: make abi-baseline (and commit it)"
rc=0; abidiff "$baseline" "$tmp/probe.abi" > "$tmp/diff" || rc=$?
if [ $rc -ne 0 ]; then
    cat "$tmp/diff"
    fail "include/fieldsync.h's ABI differs from $baseline: if intended, make abi-baseline (an incompatible change needs FS_ABI_VERSION raised first)"
fi
# Every dynamic symbol the library defines, with its version (objdump -T:
# address, flags, section, size, version, [visibility], name); the version
# node's own symbol, which GNU ld adds, left out.
objdump -T "$lib" | awk '$2 ~ /g/ && $4 != "*UND*" && !($4 == "*ABS*" && $NF == $6) { print $NF, $6 }' | sort > "$tmp/exported"
awk '{ print $1 }' "$tmp/exported" > "$tmp/names"
awk -v v="FIELDSYNC_$abi" '$2 != v' "$tmp/exported" > "$tmp/unversioned"
if ! cmp -s "$tmp/header" "$tmp/names" || [ -s "$tmp/unversioned" ]; then
    diff "$tmp/header" "$tmp/names" || true
    cat "$tmp/unversioned"
    fail "$lib's exports are not exactly the header's functions, each @@FIELDSYNC_$abi"
fi
echo "test-abi: passed ($(wc -l < "$tmp/header") functions: header ABI equals $baseline; exports equal the header, @@FIELDSYNC_$abi)"

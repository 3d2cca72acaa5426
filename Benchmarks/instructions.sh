#!/bin/sh
# Instructions per local action (BENCHMARKS.md, issue 13), split into
#   parse   inclusive cost of JSON.parse(bytes:count:...), the engine's one entry to parsing (whatever parser is behind it)
#   hash    libcrypto (SHA-256 of the audit row)
#   SQLite  libsqlite3
#   engine  the rest: libfieldsync with the Swift runtime, and libc (malloc, free, memcpy) outside parse
# callgrind counts inside fs_store_apply only, over apply_latency's 4,000 applies (2,000 preloaded records + 2,000
# timed actions, as in the figures since 2026-11-25).
# Usage: Benchmarks/instructions.sh [LIB_DIR [BENCH_DIR]]    (defaults: build and build/bench: make -C Benchmarks build-bench)
set -e
here=$(cd "$(dirname "$0")" && pwd)
lib=$(cd "${1:-$here/../build}" && pwd)
bench=${2:-$here/../build/bench}
out=$(mktemp /tmp/fs-instructions.XXXXXX)
LD_LIBRARY_PATH=$lib valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect=fs_store_apply \
    "$bench/apply_latency" --records 2000 --actions 2000 --chunk 0 --durability normal >/dev/null 2>&1
{ callgrind_annotate --auto=no --threshold=100 "$out"; echo INCLUSIVE; callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$out"; } 2>/dev/null |
awk -v lib="$lib" '
    /^INCLUSIVE/ { incl = 1 }
    / PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    !/^ *[0-9,]+ +\(/ || / PROGRAM TOTALS/ { next }
    { n = $1; gsub(",", "", n); n += 0 }
    incl && /JSONO5parse5bytes5count/ && n > parse { parse = n }
    !incl && /libcrypto/ { hash += n }
    !incl && /libsqlite3/ { sqlite += n }
    !incl && /\/libc\.so/ { libc += n }
    END {
        k = 4000 * 1000
        printf "%s: %.1fk instructions per fs_store_apply (4,000 applies)\n", lib, total / k
        printf "  parse %.1fk, hash %.1fk, SQLite %.1fk, engine %.1fk (libc %.1fk in all, some of it inside parse)\n",
               parse / k, hash / k, sqlite / k, (total - parse - hash - sqlite) / k, libc / k
    }'
echo "  callgrind output: $out (callgrind_annotate --inclusive=yes $out | less)"

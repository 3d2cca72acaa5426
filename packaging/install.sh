#!/bin/sh
# make install: the built library, stripped, with its debug info beside it
# (found through the gnu-debuglink), the SONAME and dev links, both headers,
# fieldsync.pc and the CMake package, under $DESTDIR$PREFIX.
# Usage (from the Makefile): PREFIX=… DESTDIR=… VERSION=x.y.z SONAME=libfieldsync.so.N packaging/install.sh LIBRARY
set -eu
here=$(cd "$(dirname "$0")" && pwd)
lib=$1
: "${PREFIX:?}" "${VERSION:?}" "${SONAME:?}"
root=${DESTDIR:-}$PREFIX
real=libfieldsync.so.$VERSION
major=${VERSION%%.*}
minor=${VERSION#*.}; minor=${minor%%.*}

install -d "$root/lib/pkgconfig" "$root/lib/cmake/fieldsync" "$root/include"
# The build has no RUNPATH (its dependencies are system libraries); refuse a
# library that has one rather than install it.
if readelf -d "$lib" | grep -Eq '\((RUNPATH|RPATH)\)'; then
    echo "install: $lib has a RUNPATH; rebuild it with make build" >&2; exit 1
fi
objcopy --only-keep-debug "$lib" "$root/lib/$real.debug"
chmod 644 "$root/lib/$real.debug"
objcopy --strip-unneeded --remove-section=.gnu_debuglink "$lib" "$root/lib/$real.tmp"
(cd "$root/lib" && objcopy --add-gnu-debuglink="$real.debug" "$real.tmp" "$real" && rm -f "$real.tmp")
chmod 755 "$root/lib/$real"
ln -sf "$real" "$root/lib/$SONAME"
ln -sf "$SONAME" "$root/lib/libfieldsync.so"

install -m 644 "$here/../include/fieldsync.h" "$here/../include/fieldsync.hpp" "$root/include/"
fill() { sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@VERSION@|$VERSION|g" -e "s|@SONAME@|$SONAME|g" \
             -e "s|@MAJOR@|$major|g" -e "s|@MINOR@|$minor|g" "$1" > "$2"; chmod 644 "$2"; }
fill "$here/fieldsync.pc.in" "$root/lib/pkgconfig/fieldsync.pc"
fill "$here/fieldsyncConfig.cmake.in" "$root/lib/cmake/fieldsync/fieldsyncConfig.cmake"
fill "$here/fieldsyncConfigVersion.cmake.in" "$root/lib/cmake/fieldsync/fieldsyncConfigVersion.cmake"
echo "installed $root/lib/$real ($SONAME), headers, fieldsync.pc, cmake/fieldsync"

# fieldsync — `make demo` and `make test` do everything on a new machine.
SHELL      := /bin/bash
SWIFT      ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
SWIFTC     ?= $(dir $(SWIFT))swiftc
PYTHON     ?= python3
BUILD      := $(CURDIR)/build
APT_NEEDS  := libsqlite3-dev libjansson-dev libssl-dev pkg-config
# Packaging checks and the HTTP example.
APT_NEEDS  += cmake abigail-tools libcurl4-openssl-dev

.PHONY: all build deps test test-suites test-swift test-c test-cpp test-python wheel examples demo bench soak fuzz fuzz-engine fuzz-doors sanitize clean
.PHONY: install install-only test-packaging test-install test-abi test-swift-consumer abi-baseline

all: build

# Install the Debian packages the build needs, if missing (root on CI).
deps:
	@missing=""; for p in $(APT_NEEDS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# Versions come from the header alone.
fs_version_macro = $(shell sed -n 's/^\#define FS_$(1) \([0-9]*\)$$/\1/p' include/fieldsync.h)
FS_ABI     := $(call fs_version_macro,ABI_VERSION)
FS_RELEASE := $(call fs_version_macro,VERSION_MAJOR).$(call fs_version_macro,VERSION_MINOR).$(call fs_version_macro,VERSION_PATCH)
SONAME     := libfieldsync.so.$(FS_ABI)
# The shipped library's link, kept off Package.swift (unsafeFlags would stop
# SwiftPM accepting the package as a dependency). lld, because GNU ld leaves
# the engine's cross-module symbols in .dynsym (as LOCAL entries); with lld
# only the fs_* functions appear, versioned FIELDSYNC_1 by exports.map.
SWIFT_LINK := -Xswiftc -use-ld=lld -Xlinker --version-script=$(CURDIR)/Sources/CFieldSync/exports.map \
              -Xlinker -soname=$(SONAME)
# Link-time optimisation (SwiftPM's, which keeps the static stdlib's modules
# linked): smaller and faster than without. -Osize would save 2.3 % more
# bytes for 3-4 % more instructions: not kept, since no option reaches 5 MB
# and the sync figures are short already (BENCHMARKS.md "A smaller library").
SWIFT_SIZE := --experimental-lto-mode=full

# The shipped library: Swift runtime linked in, so it needs only libc,
# libstdc++, libsqlite3, libjansson and libcrypto (so no RUNPATH either).
# build/ holds it under its SONAME.
build: deps
	$(SWIFT) build -c release -Xswiftc -static-stdlib $(SWIFT_SIZE) $(SWIFT_LINK) --disable-local-rpath --product fieldsync
	@mkdir -p $(BUILD)
	@cp .build/release/libfieldsync.so $(BUILD)/$(SONAME)
	@ln -sf $(SONAME) $(BUILD)/libfieldsync.so
	@echo "built $(BUILD)/libfieldsync.so"

# The PostgreSQL hub's tests need a server (docs/TESTING.md "PostgreSQL
# tests"): with FIELDSYNC_PG_DSN unset, Tests/pg/with-server.sh starts a
# throwaway one for the run when the server binaries are installed, and
# stops it after; without them those tests skip.
test: build
	Tests/pg/with-server.sh $(MAKE) test-suites

# The packaging checks, the Swift consumer package and the Swift suite run
# beside the others, into their own log shown when they end: the others
# wait on child processes, sockets and a database much of the time, so the
# two cores have room (make test stays within 10 minutes).
test-suites:
	@mkdir -p $(BUILD)
	@( { $(MAKE) --no-print-directory test-install && $(MAKE) --no-print-directory test-abi && \
	     $(MAKE) --no-print-directory test-swift-consumer && $(MAKE) --no-print-directory test-swift; } > $(BUILD)/test-swift.log 2>&1; \
	   echo $$? > $(BUILD)/test-swift.rc ) & \
	rc=0; \
	{ $(MAKE) test-c && $(MAKE) test-cpp && $(MAKE) test-python && $(MAKE) examples; } || rc=$$?; \
	wait; echo "== Packaging checks, Swift consumer and Swift suite (ran beside the others)"; cat $(BUILD)/test-swift.log; \
	test $$rc -eq 0 && test "$$(cat $(BUILD)/test-swift.rc)" = 0

test-swift: deps
	$(SWIFT) test

test-c: build
	$(MAKE) -C Tests/c test BUILD=$(BUILD) INCLUDE=$(CURDIR)/include

# The C++ wrapper (include/fieldsync.hpp) as C++17.
test-cpp: build
	$(MAKE) -C Tests/cpp test BUILD=$(BUILD) INCLUDE=$(CURDIR)/include

# On every core when pytest-xdist is there (.ci/run installs it): each test
# has its own directory and port, so they run in any order, at once.
PYTEST_JOBS = $(shell $(PYTHON) -c "import xdist" 2>/dev/null && echo "-n auto")
test-python: build
	cd bindings/python && FIELDSYNC_LIB=$(BUILD)/libfieldsync.so ../../Tests/pg/with-server.sh $(PYTHON) -m pytest -q $(PYTEST_JOBS) tests

examples: build
	$(MAKE) -C examples/c run BUILD=$(BUILD) INCLUDE=$(CURDIR)/include
	$(MAKE) -C examples/c run-http BUILD=$(BUILD) INCLUDE=$(CURDIR)/include PYTHON=$(PYTHON)
	$(MAKE) -C examples/cpp run BUILD=$(BUILD) INCLUDE=$(CURDIR)/include
	FIELDSYNC_LIB=$(BUILD)/libfieldsync.so $(PYTHON) examples/python/quickstart.py

demo: build
	FIELDSYNC_LIB=$(BUILD)/libfieldsync.so $(PYTHON) examples/python/demo.py

# A wheel that carries the library (build/dist/): pip install it on any
# x86_64 Linux with libsqlite3, libjansson and libcrypto, no FIELDSYNC_LIB.
wheel: build
	@$(PYTHON) -c "import wheel" 2>/dev/null || $(PYTHON) -m pip install -q wheel
	$(PYTHON) bindings/python/make_wheel.py $(BUILD)/libfieldsync.so.1 $(BUILD)/dist

# Packaging (issue 16; docs/TESTING.md "Packaging"). `make install
# PREFIX=/usr/local DESTDIR=…`: the library stripped, its debug info in
# lib/libfieldsync.so.X.Y.Z.debug (gnu-debuglink), the SONAME and dev links,
# both headers, lib/pkgconfig/fieldsync.pc and lib/cmake/fieldsync/.
PREFIX ?= /usr/local
install: build
	$(MAKE) install-only
install-only:
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) VERSION=$(FS_RELEASE) SONAME=$(SONAME) packaging/install.sh $(BUILD)/$(SONAME)

test-packaging: test-install test-abi test-swift-consumer
test-install: build
	Tests/install/run.sh
test-abi: build
	abi/check.sh $(BUILD)/$(SONAME)
# A Swift package depending on this one by path (about 30 s: the engine in
# debug). SwiftPM refuses unsafeFlags in a dependency pinned by version
# ("contains unsafe build flags"), which a path does not show: hence the grep.
test-swift-consumer: deps
	@! grep -n '\.unsafeFlags' Package.swift || { echo "Package.swift: no unsafeFlags (make build's command line)"; exit 1; }
	@dir=$$(mktemp -d) && cd examples/swift && $(SWIFT) run FieldApp $$dir > $$dir/out; rc=$$?; cat $$dir/out; \
	  grep -q '"picked":2' $$dir/out || rc=1; rm -rf $$dir; exit $$rc
# Takes in a deliberate change of the header's ABI (abi/check.sh says when).
abi-baseline:
	abi/check.sh --baseline

bench: build
	$(MAKE) -C Benchmarks bench BUILD=$(BUILD) INCLUDE=$(CURDIR)/include

# libFuzzer, two targets sharing one corpus and the wire's dictionary, each
# for FUZZ_SECONDS, with AddressSanitizer:
# - fuzz-fieldsync: the engine's Swift entry points (action, hub request, sync
#   response), every input also checked against docs/ABI.md's JSON rules;
# - fuzz-doors: the C doors themselves (Tests/fuzz/doors.c calls the exported
#   fs_* functions with the input as a C string: action, query, filters, refs,
#   hub request, sync response, options, schema), the engine and the boundary
#   compiled as one module (their self-imports warn, hence -suppress-warnings).
FUZZ_SECONDS ?= 300
FUZZ_RUN = -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -dict=Tests/fuzz/wire.dict -print_final_stats=1 \
           -artifact_prefix=$(BUILD)/fuzz/
FUZZ_SHOW = grep -E "^(Done|stat::number_of_executed_units|==.*ERROR)|SUMMARY|^doors:|Fatal error"
fuzz: deps
	@mkdir -p $(BUILD)/fuzz-corpus $(BUILD)/fuzz
	@cp Tests/fuzz/corpus/* $(BUILD)/fuzz-corpus/
	$(MAKE) -j2 fuzz-engine fuzz-doors
	$(BUILD)/fuzz-fieldsync $(FUZZ_RUN) $(BUILD)/fuzz-corpus 2>&1 | $(FUZZ_SHOW) ; test $${PIPESTATUS[0]} -eq 0
	$(BUILD)/fuzz-doors $(FUZZ_RUN) $(BUILD)/fuzz-corpus 2>&1 | $(FUZZ_SHOW) ; test $${PIPESTATUS[0]} -eq 0

# The two targets compile at once (each is one whole-module compile of the
# engine, ~1.5 min on one core).
FUZZ_SWIFTC = $(SWIFTC) -O -sanitize=fuzzer,address -parse-as-library -module-name FieldSync -package-name fieldsync \
              -Xcc -fmodule-map-file=Sources/CSQLite/module.modulemap -Xcc -fmodule-map-file=Sources/CCrypto/module.modulemap \
              -Xcc -fmodule-map-file=Sources/CJansson/module.modulemap \
              -Xcc -fmodule-map-file=Sources/CFieldSyncABI/module.modulemap
fuzz-engine:
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_SWIFTC) \
	  Sources/FieldSync/*.swift Sources/FieldSync/Wire/*.swift Tests/fuzz/FuzzTargets.swift Tests/FieldSyncTests/DocumentedJSONRules.swift \
	  -lsqlite3 -ljansson -lcrypto -o $(BUILD)/fuzz-fieldsync
fuzz-doors:
	@mkdir -p $(BUILD)/fuzz
	$(dir $(SWIFT))clang -O1 -g -fsanitize=fuzzer-no-link,address -Wall -Wextra -Werror -Iinclude \
	  -c Tests/fuzz/doors.c -o $(BUILD)/fuzz/doors.o
	$(FUZZ_SWIFTC) -suppress-warnings Sources/FieldSync/*.swift Sources/FieldSync/Wire/*.swift Sources/CFieldSync/*.swift $(BUILD)/fuzz/doors.o \
	  -lsqlite3 -ljansson -lcrypto -o $(BUILD)/fuzz-doors

# The engine's Swift tests under AddressSanitizer. Leak detection is off:
# XCTest's own runner leaks a few objects at exit, which would fail the run.
sanitize: deps
	ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --sanitize=address --scratch-path .build-asan

# Many more fault-injection seeds than CI runs (SEEDS=N, default 200).
soak: deps
	FIELDSYNC_SOAK_SEEDS=$${SEEDS:-200} $(SWIFT) test --filter soak 2>&1 | grep -E "soak:|passed|failed"

clean:
	rm -rf .build build examples/swift/.build

# lipc - build, test and install.  `make demo` and `make test` do all the
# set-up on a fresh Debian 12 machine (through `make deps`).

BUILD   ?= build
PREFIX  ?= /usr/local
CC      ?= cc
LUA     ?= lua5.4
PKGS     = lua5.4 libuv

# Debian packages: `make deps` installs the missing ones. A plain build
# needs only BUILD_PKGS (`make deps-build`); the rest are for the specs,
# sanitizers, fuzzing and benchmarks.
BUILD_PKGS = gcc make pkg-config liblua5.4-dev libuv1-dev lua5.4
TEST_PKGS  = lua-busted lua-cjson lua-check nodejs clang valgrind socat netcat-openbsd \
             libclang-rt-14-dev iproute2 luarocks clang-format-14 \
             openssh-server openssh-client gnuplot-nox bc strace
DEB_PKGS   = $(BUILD_PKGS) $(TEST_PKGS)

# Read when make reads this file, so only on a machine that has the
# packages: every target that installs them first (test, demo, ...) runs
# `deps` and then a new make, which reads this file again.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
OPT     ?= -O2 -g
WARN     = -Wall -Wextra -Werror
# -fvisibility=hidden: liblipc.so and lipc.so export what lipc.h declares
# (LIPC_API) and nothing else; calls inside lipc need no PLT.
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) -fPIC -fvisibility=hidden -MMD -MP $(PKG_CFLAGS) \
             $(INCS) $(SAN) $(CFLAGS)
LUA_A   ?= $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/liblua5.4.a \
                         /usr/lib/*/liblua5.4.a))
UV_A    ?= $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libuv_a.a \
                         /usr/lib/*/libuv_a.a))
SYSLIBS  = -lpthread -ldl -lrt -lm

# The executable carries Lua and libuv statically: no relocations to do
# at start-up, and -Wl,-E exports the Lua API to C modules (cjson, lfs,
# busted's system/term) loaded at run time.
ifeq ($(SAN),)
EXE_LIBS = $(LUA_A) $(UV_A) $(SYSLIBS)
else
EXE_LIBS = $(shell pkg-config --libs $(PKGS)) $(SYSLIBS)
endif

# The layers, bottom up (docs/architecture.md): runtime/ (the host, tasks,
# events, handles, streams), channel/ (the message channel and its codec),
# modules/ (the Lua modules). main.c is the executable's own.
SRC_DIRS  = runtime channel modules
INCS      = $(addprefix -I,$(SRC_DIRS))
LIB_SRCS  = $(sort $(filter-out runtime/main.c,$(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.c))))
LUA_SRCS  = $(sort $(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.lua)))
OBJS      = $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) $(BUILD)/obj/embedded.o

.PHONY: all deps deps-build test check demo clean install uninstall lint bench bench-scale bench-plot \
        bench-bundle rock install-rock valgrind \
        docs docs-check format-check \
        fuzz fuzz-build fuzz-bin soak

# Modules of their own for stock lua5.4, next to lipc.so (below).
STOCK_MODS = spawn fork pipe net
STOCK_SOS  = $(addprefix $(BUILD)/,$(addsuffix .so,$(STOCK_MODS)))

all: $(BUILD)/lipc $(BUILD)/liblipc.a $(BUILD)/liblipc.so $(BUILD)/lipc.so $(STOCK_SOS)

# -MMD: each object also depends on the headers it includes (.d files).
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

-include $(OBJS:.o=.d) $(BUILD)/obj/runtime/main.d

$(BUILD)/gen/embedded.c: tools/embed.lua $(LUA_SRCS)
	@mkdir -p $(dir $@)
	$(LUA) tools/embed.lua $@ $(foreach f,$(LUA_SRCS),$(basename $(notdir $(f)))=$(f))

$(BUILD)/obj/embedded.o: $(BUILD)/gen/embedded.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/liblipc.a: $(OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/liblipc.so: $(OBJS)
	$(CC) -shared $(SAN) -o $@ $^ $(shell pkg-config --libs $(PKGS)) $(SYSLIBS)

# For stock lua5.4: the interpreter provides the Lua API.
$(BUILD)/lipc.so: $(OBJS)
	$(CC) -shared $(SAN) -o $@ $^ -luv $(SYSLIBS)

# spawn.so, fork.so, pipe.so, net.so next to lipc.so: in stock lua5.4,
# `require "spawn"` before `require "lipc"` (modules/stock/require.c).
$(STOCK_SOS): $(BUILD)/%.so: modules/stock/require.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(WARN) $(OPT) -fPIC -fvisibility=hidden $(PKG_CFLAGS) $(SAN) $(CFLAGS) \
	  -shared -DLIPC_MODULE=$* -o $@ $<

$(BUILD)/lipc: $(BUILD)/obj/runtime/main.o $(BUILD)/liblipc.a
	$(CC) $(SAN) -Wl,-E -o $@ $< $(BUILD)/liblipc.a $(EXE_LIBS)

# Installs only what is missing, so it costs nothing on a ready machine.
deps: PKGS_WANTED = $(DEB_PKGS)
deps-build: PKGS_WANTED = $(BUILD_PKGS)
deps deps-build:
	@missing=""; for p in $(PKGS_WANTED); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

BUSTED_ARGS ?=
test: deps
	$(MAKE) all
	$(BUILD)/lipc test $(BUSTED_ARGS)

lint: deps
	luacheck -q $(wildcard scripts spec $(SRC_DIRS) bench/lipc tools docs/api examples)

# docs/api.md and the LuaLS types (types/*.lua) from one description of
# the API, docs/api/*.lua.
docs:
	$(LUA) tools/gendocs.lua .

# Fails when docs/api.md or types/ differ from what docs/api/*.lua makes,
# or when a function registered in C (module tables, methods of the
# "lipc.*" classes) has no entry in docs/api/*.lua.
docs-check: $(BUILD)/lipc
	@tmp=$$(mktemp -d); $(LUA) tools/gendocs.lua $$tmp && \
	  diff -u docs/api.md $$tmp/docs/api.md && diff -ru types $$tmp/types; \
	  st=$$?; rm -rf $$tmp; \
	  if [ $$st != 0 ]; then echo "docs/api.md or types/ are stale: run make docs"; exit 1; fi
	$(BUILD)/lipc tools/gendocs.lua --undocumented

# C style (.clang-format): reports what clang-format would change.
CLANG_FORMAT ?= clang-format-14
format-check:
	$(CLANG_FORMAT) --dry-run -Werror $(foreach d,$(SRC_DIRS) modules/stock fuzz bench/c,$(wildcard $(d)/*.[ch])) \
	  $(wildcard examples/*.c)

# The spec suite under AddressSanitizer and UndefinedBehaviorSanitizer.
check: deps
	$(MAKE) BUILD=build/asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" OPT="-O1 -g" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp \
	  LIPC=build/asan/lipc build/asan/lipc test $(BUSTED_ARGS)

# A representative subset under valgrind: no invalid access, nothing
# definitely lost (the process fails with status 99 otherwise).
# (the round-trip property with fewer values: valgrind is ~30x slower)
VALGRIND_SPECS ?= spec/core_spec.lua spec/cli_spec.lua spec/channel_spec.lua \
                  spec/hostile_spec.lua spec/codec_property_spec.lua spec/peers_spec.lua
valgrind: deps
	$(MAKE) all
	LIPC_ALLOC=malloc LIPC_PROPERTY_N=300 LIPC_TEST_TIMEOUT=120000 valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
	  --error-exitcode=99 --track-fds=no $(BUILD)/lipc test $(BUSTED_ARGS) $(VALGRIND_SPECS)

# libFuzzer targets (fuzz/*.c) under ASan+UBSan, each run FUZZ_SECONDS
# with its seed corpus (fuzz/corpus/<name>); new inputs go to
# build/fuzz/corpus/<name>, so the seeds stay clean. The library is built
# with coverage instrumentation into build/fuzz.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = fuzz_codec fuzz_frame fuzz_json fuzz_spawn_opts
FUZZ_SAN     = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_LIBS    = build/fuzz/liblipc.a $(shell pkg-config --libs $(PKGS)) $(SYSLIBS)
FUZZ_CFLAGS  = -std=c11 -D_GNU_SOURCE -g -O1 $(WARN) $(PKG_CFLAGS) $(INCS)
fuzz-build: deps
	$(MAKE) fuzz-bin
fuzz-bin:
	$(MAKE) BUILD=build/fuzz CC=clang OPT="-O1 -g" \
	  SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" build/fuzz/liblipc.a
	clang $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer fuzz/fuzz_codec.c $(FUZZ_LIBS) -o build/fuzz/fuzz_codec
	clang $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer fuzz/fuzz_frame.c $(FUZZ_LIBS) -o build/fuzz/fuzz_frame
	clang $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -DFUZZ_JSON fuzz/fuzz_frame.c $(FUZZ_LIBS) -o build/fuzz/fuzz_json
	clang $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer fuzz/fuzz_spawn_opts.c $(FUZZ_LIBS) -o build/fuzz/fuzz_spawn_opts

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  n=$${t#fuzz_}; mkdir -p build/fuzz/corpus/$$n; \
	  echo "=== $$t ($(FUZZ_SECONDS) s)"; \
	  if ASAN_OPTIONS=detect_leaks=1 build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) \
	      -print_final_stats=1 -artifact_prefix=build/fuzz/ -max_len=65536 -timeout=20 -rss_limit_mb=2048 \
	      build/fuzz/corpus/$$n fuzz/corpus/$$n >build/fuzz/$$t.log 2>&1; then \
	    grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units' build/fuzz/$$t.log; \
	    echo "corpus: $$(ls build/fuzz/corpus/$$n | wc -l) new + $$(ls fuzz/corpus/$$n | wc -l) seeds"; \
	  else tail -60 build/fuzz/$$t.log; exit 1; fi; \
	done

# Soak: a million messages, 1 GiB over TCP and over a Unix socket, 10 000
# spawns; RSS, fd and child counts before and after, as a table.
soak: deps
	$(MAKE) all
	$(BUILD)/lipc tools/soak.lua

# Side-by-side benchmarks: lipc, Node and plain C in one run: one table of
# cases (bench/run.sh), then the scaling curves (bench/scale.sh; alone:
# `make bench-scale`, some of them: `make bench-scale CURVES="pool_cpu spawn"`).
bench: deps
	$(MAKE) all
	LIPC=$${LIPC:-$(BUILD)/lipc} bash bench/run.sh
	LIPC=$${LIPC:-$(BUILD)/lipc} bash bench/remote.sh
	LIPC=$${LIPC:-$(BUILD)/lipc} bash bench/scale.sh

CURVES ?=
bench-scale: deps
	$(MAKE) all
	LIPC=$${LIPC:-$(BUILD)/lipc} bash bench/scale.sh $(CURVES)

# The curves of the last scaling run (build/bench/scale.tsv; without one,
# a run first) as SVG files in docs/bench/, with the table they come from.
bench-plot: deps
	@test -r build/bench/scale.tsv || $(MAKE) bench-scale
	bash bench/plot.sh build/bench/scale.tsv docs/bench

# Everything the scaling curves need on another machine, no compiler, Lua
# or Node there: a statically linked lipc, the C programs (static too),
# the scripts. `tar xzf lipc-bench.tar.gz && lipc-bench/bench/scale.sh`.
# (glibc warns that dlopen and getaddrinfo in a static program want its
# own version at run time; the benchmarks use neither.)
BUNDLE     = $(BUILD)/lipc-bench
BUNDLE_C   = pool_limit spawn_rate msg_size fanout conn_load echo_server
bench-bundle: deps
	$(MAKE) all
	rm -rf $(BUNDLE) && mkdir -p $(BUNDLE)/build/bench $(BUNDLE)/bench/lipc $(BUNDLE)/bench/node
	$(CC) -static -Wl,-E -o $(BUNDLE)/build/lipc $(BUILD)/obj/runtime/main.o $(BUILD)/liblipc.a \
	  $(LUA_A) $(UV_A) $(SYSLIBS)
	for p in $(BUNDLE_C); do \
	  $(CC) -static -O2 -std=c11 -D_GNU_SOURCE $(WARN) -o $(BUNDLE)/build/bench/$$p bench/c/$$p.c || exit 1; \
	done
	cp bench/lib.sh bench/scale.sh bench/plot.sh $(BUNDLE)/bench/
	cp bench/lipc/*.lua $(BUNDLE)/bench/lipc/
	cp bench/node/*.js $(BUNDLE)/bench/node/
	tar -C $(BUILD) -czf $(BUILD)/lipc-bench.tar.gz lipc-bench
	@echo "$(BUILD)/lipc-bench.tar.gz: on the other machine, tar xzf it, then lipc-bench/bench/scale.sh"

demo: deps
	$(MAKE) all
	$(BUILD)/lipc scripts/demo.lua

clean:
	rm -rf build

VERSION := $(shell sed -n 's/^\#define LIPC_VERSION_STRING "\(.*\)"/\1/p' runtime/lipc.h)
# Where stock lua5.4 looks for C modules under PREFIX (package.cpath).
LUA_CMOD = lib/lua/5.4
INSTALLED = bin/lipc lib/liblipc.a lib/liblipc.so include/lipc.h \
            lib/pkgconfig/lipc.pc share/man/man1/lipc.1 $(LUA_CMOD)/lipc.so \
            $(addprefix $(LUA_CMOD)/,$(addsuffix .so,$(STOCK_MODS)))

# Programs built with `pkg-config --libs lipc` find liblipc.so through an
# rpath, unless it lands in /usr/lib where the dynamic linker looks anyway.
PC_RPATH = $(if $(filter /usr /usr/,$(PREFIX)),,-Wl,-rpath,$${libdir})

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
	  $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/$(LUA_CMOD) \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BUILD)/lipc $(DESTDIR)$(PREFIX)/bin/lipc
	install -m 644 $(BUILD)/liblipc.a $(DESTDIR)$(PREFIX)/lib/liblipc.a
	install -m 755 $(BUILD)/liblipc.so $(DESTDIR)$(PREFIX)/lib/liblipc.so
	install -m 644 runtime/lipc.h $(DESTDIR)$(PREFIX)/include/lipc.h
	install -m 755 $(BUILD)/lipc.so $(STOCK_SOS) $(DESTDIR)$(PREFIX)/$(LUA_CMOD)/
	install -m 644 docs/lipc.1 $(DESTDIR)$(PREFIX)/share/man/man1/lipc.1
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@RPATH@|$(PC_RPATH)|' tools/lipc.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/lipc.pc

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/,$(INSTALLED))

# For luarocks (lipc-*.rockspec): the module for stock Lua, and the lipc
# executable (scripts, `lipc test`) into the rocks tree's bin.
rock: $(BUILD)/lipc.so $(STOCK_SOS) $(BUILD)/lipc
install-rock: rock
	install -d $(LUA_LIBDIR) $(BINDIR)
	install -m 755 $(BUILD)/lipc.so $(STOCK_SOS) $(LUA_LIBDIR)/
	install -m 755 $(BUILD)/lipc $(BINDIR)/lipc

# shiftadd: one make process reads every directory's module.mk (see docs/STYLE notes in README).
#
#   make            build everything (release)          make test    deps + build + every test
#   make check      tests under ASan+UBSan + fuzz runs  make tsan    threaded tests under TSan
#   make bench      benchmarks -> bench/results/        make run     model + demo generation
#   make model      fetch the default model             make deps    install Debian packages
#   make fuzz       libFuzzer binaries (clang)          make lint    layering + format checks
#   make format     clang-format in place               make clean
#   make install    tools, libshiftadd, man pages, systemd units (PREFIX, DESTDIR); make uninstall
#
# MODE selects the flavour and the build directory: build/$(MODE).  V=1 shows full commands.

MODE ?= release
B := build/$(MODE)

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS_BASE := -std=c17 -D_GNU_SOURCE -g -fPIC -pthread $(WARN) -I. -I$(B)/gen
LDFLAGS_BASE := -pthread

ifeq ($(MODE),release)
OPT := -O2
else ifeq ($(MODE),asan)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS_BASE += -fsanitize=address,undefined
else ifeq ($(MODE),tsan)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=thread
LDFLAGS_BASE += -fsanitize=thread
else ifeq ($(MODE),fuzz)
CC := clang
OPT := -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
LDFLAGS_BASE += -fsanitize=fuzzer,address,undefined
else
$(error unknown MODE '$(MODE)': use release, asan, tsan or fuzz)
endif

ALL_CFLAGS = $(CFLAGS_BASE) $(OPT) $(ISA_FLAGS) $(CFLAGS)
ALL_LDFLAGS = $(LDFLAGS_BASE) $(LDFLAGS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Install locations; DESTDIR is prepended to each of them (staged installs, packaging).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/shiftadd
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

# Modules in dependency order: a module may use only those before it.
MODULES := common kernels engine reparam proto daemon client_lib tools
UNIT_TESTS :=
INTEG_TESTS :=
REPLAYS :=
CHECK_TARGETS :=
TSAN_TESTS :=
FUZZERS :=
PROGRAMS :=

include mk/rules.mk
include $(wildcard $(MODULES:%=%/module.mk))
include $(wildcard tests/*/module.mk)

.DEFAULT_GOAL := all
.PHONY: all deps test check tsan bench run model model-gemma3 fuzz lint format format-check clean \
	install uninstall install-check

all: $(PROGRAMS) $(UNIT_TESTS)

deps:
	@mk/deps.sh

# Every CMocka program, then the fuzz corpus replay; tests/run.sh prints the closing tally.
# CHECK_TARGETS: extra phony checks that modules append (e.g. the kernels' no-multiply proof).
test: deps model
	@$(MAKE) --no-print-directory all
	@tests/run.sh $(UNIT_TESTS) $(REPLAYS) $(INTEG_TESTS)
	@$(if $(strip $(CHECK_TARGETS)),$(MAKE) --no-print-directory $(CHECK_TARGETS))

check: deps
	@$(MAKE) --no-print-directory MODE=asan all
	@ASAN_OPTIONS=detect_leaks=1 tests/run.sh $(subst build/$(MODE)/,build/asan/,$(UNIT_TESTS) $(REPLAYS))
	@$(MAKE) --no-print-directory MODE=fuzz fuzz
	@tests/fuzz/run_bounded.sh build/fuzz $(FUZZ_SECONDS)

FUZZ_SECONDS ?= 30

tsan: deps
	@$(MAKE) --no-print-directory MODE=tsan all
	@tests/run.sh $(subst build/$(MODE)/,build/tsan/,$(TSAN_TESTS))

fuzz: $(FUZZERS)

model:
	@tools/fetch_model.sh

# the second real model (Gemma 3 270M, 253 MB): not needed by the tests or the demo
model-gemma3:
	@tools/fetch_model.sh gemma3

run: deps model
	@$(MAKE) --no-print-directory all
	@tools/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh

lint:
	@mk/lint.sh

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

format-check:
	@git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror

clean:
	rm -rf build

# Installed programs; libshiftadd is installed as built (shared, soname libshiftadd.so.1).
INSTALL_BINS := shiftadd shiftaddd shiftaddctl shiftadd-bench shiftadd-generate
MAN_PAGES := $(wildcard man/*.[1-8])

# The daemon's config is installed only when none is there (an admin's edits survive), and
# uninstall leaves it. The unit files get the install's paths.
install: $(INSTALL_BINS:%=$(B)/bin/%) $(LIBSHIFTADD)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/shiftadd $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR)
	install -m 755 $(INSTALL_BINS:%=$(B)/bin/%) $(DESTDIR)$(BINDIR)/
	install -m 755 $(LIBSHIFTADD) $(DESTDIR)$(LIBDIR)/
	ln -sf libshiftadd.so.1 $(DESTDIR)$(LIBDIR)/libshiftadd.so
	$(SHIFTADD_PC_SED) client_lib/shiftadd.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/shiftadd.pc
	install -m 644 include/shiftadd.h $(DESTDIR)$(INCLUDEDIR)/
	for f in $(MAN_PAGES); do \
		install -d $(DESTDIR)$(MANDIR)/man$${f##*.} && \
		install -m 644 $$f $(DESTDIR)$(MANDIR)/man$${f##*.}/ || exit 1; \
	done
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/shiftadd/|$(SYSCONFDIR)/shiftadd/|g' \
		daemon/shiftaddd.service > $(DESTDIR)$(SYSTEMDUNITDIR)/shiftaddd.service
	install -m 644 daemon/shiftaddd.socket $(DESTDIR)$(SYSTEMDUNITDIR)/
	install -m 644 daemon/shiftaddd.sysusers $(DESTDIR)$(SYSUSERSDIR)/shiftadd.conf
	install -m 644 daemon/shiftaddd.conf.example $(DESTDIR)$(DOCDIR)/
	[ -e $(DESTDIR)$(SYSCONFDIR)/shiftadd/shiftaddd.conf ] || \
		install -m 644 daemon/shiftaddd.conf.example \
			$(DESTDIR)$(SYSCONFDIR)/shiftadd/shiftaddd.conf

uninstall:
	rm -f $(INSTALL_BINS:%=$(DESTDIR)$(BINDIR)/%) $(DESTDIR)$(LIBDIR)/libshiftadd.so.1 \
		$(DESTDIR)$(LIBDIR)/libshiftadd.so $(DESTDIR)$(LIBDIR)/pkgconfig/shiftadd.pc \
		$(DESTDIR)$(INCLUDEDIR)/shiftadd.h $(DESTDIR)$(SYSTEMDUNITDIR)/shiftaddd.service \
		$(DESTDIR)$(SYSTEMDUNITDIR)/shiftaddd.socket $(DESTDIR)$(SYSUSERSDIR)/shiftadd.conf \
		$(DESTDIR)$(DOCDIR)/shiftaddd.conf.example
	for f in $(MAN_PAGES); do rm -f $(DESTDIR)$(MANDIR)/man$${f##*.}/$${f##*/}; done
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true

# `make test` stages an install and checks the tree (tests/install_check.sh).
install-check: $(INSTALL_BINS:%=$(B)/bin/%) $(LIBSHIFTADD)
	@tests/install_check.sh $(MODE)
CHECK_TARGETS += install-check

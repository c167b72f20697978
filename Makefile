# shiftadd: one make process reads every directory's module.mk (see docs/STYLE notes in README).
#
#   make            build everything (release)          make test    deps + build + every test
#   make check      tests under ASan+UBSan + fuzz runs  make tsan    threaded tests under TSan
#   make bench      benchmarks -> bench/results/        make run     model + demo generation
#   make model      fetch the default model             make deps    install Debian packages
#   make fuzz       libFuzzer binaries (clang)          make lint    layering + format checks
#   make format     clang-format in place               make clean
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
.PHONY: all deps test check tsan bench run model fuzz lint format format-check clean

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

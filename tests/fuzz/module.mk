# Fuzz harnesses: every tests/fuzz/fuzz_<input>.c is a LLVMFuzzerTestOneInput shim with a seed
# corpus in tests/fuzz/corpus/<input>/. Adding a shim needs no change here.
#   MODE=fuzz:   $(B)/tests/fuzz/fuzz_<input> (libFuzzer) -> FUZZERS (`make MODE=fuzz fuzz`)
#   other modes: $(B)/tests/fuzz/replay_<input> (replay.c) -> REPLAYS (run by `make test`)
# A shim linking more than the engine sets FUZZ_LIBS_<input> / FUZZ_LDLIBS_<input>.

FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

# Daemon-side inputs: the shared-memory ring (proto/), a client's protobuf request through
# the scheduler over the fake backend, and the daemon's INI config (daemon/).
FUZZ_LIBS_ring_slot := $(B)/libproto.a $(B)/libcommon.a
FUZZ_LDLIBS_ring_slot := $(PROTO_LDLIBS)
FUZZ_LIBS_request := $(DAEMON_ARCHIVES)
FUZZ_LDLIBS_request := $(DAEMON_LDLIBS)
FUZZ_LIBS_daemon_config := $(DAEMON_ARCHIVES)
FUZZ_LDLIBS_daemon_config := $(DAEMON_LDLIBS)
$(B)/tests/fuzz/fuzz_ring_slot.o $(B)/tests/fuzz/fuzz_request.o: | $(PROTO_GEN_H)
FUZZ_LIBS_DEFAULT := $(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a
FUZZ_LDLIBS_DEFAULT := $(ENGINE_LDLIBS)

fuzz_libs = $(or $(FUZZ_LIBS_$(1)),$(FUZZ_LIBS_DEFAULT))
fuzz_ldlibs = $(or $(FUZZ_LDLIBS_$(1)),$(FUZZ_LDLIBS_DEFAULT))

ifeq ($(MODE),fuzz)
define add_fuzzer
FUZZERS += $(B)/tests/fuzz/fuzz_$(1)
$(B)/tests/fuzz/fuzz_$(1): $(B)/tests/fuzz/fuzz_$(1).o $(call fuzz_libs,$(1))
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  LD      $$@")
	$$(Q)$$(CC) $$(ALL_LDFLAGS) -o $$@ $$< $(call fuzz_libs,$(1)) $(call fuzz_ldlibs,$(1))
endef
else
define add_fuzzer
REPLAYS += $(B)/tests/fuzz/replay_$(1)
$(B)/tests/fuzz/replay_$(1): $(B)/tests/fuzz/fuzz_$(1).o $(B)/tests/fuzz/replay.o $(call fuzz_libs,$(1))
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  LD      $$@")
	$$(Q)$$(CC) $$(ALL_LDFLAGS) -o $$@ $$(filter %.o,$$^) $(call fuzz_libs,$(1)) $(call fuzz_ldlibs,$(1))
endef
endif

$(foreach n,$(FUZZ_NAMES),$(eval $(call add_fuzzer,$(n))))
-include $(patsubst %.c,$(B)/%.d,$(wildcard tests/fuzz/*.c))

# `make all` (and so `make test`, `make check`) builds the replays too.
all: $(REPLAYS)

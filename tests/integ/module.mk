# Integration tests: standalone programs that start shiftaddd themselves (exit 0 or 1).
# They link libshiftadd.so (as applications do) plus proto/ for the hand-made hostile client, and
# share the daemon harness (tests/integ/harness.c) and the fake model's reference (tests/lib/).
INTEG_HELPERS := $(B)/tests/integ/harness.o $(B)/tests/lib/fake_greedy.o
-include $(INTEG_HELPERS:.o=.d)
$(B)/tests/integ/%.o: ISA_FLAGS += -DMODE_DIR='"$(MODE)"'
$(B)/tests/integ/test_daemon.o: | $(PROTO_GEN_H)
$(B)/tests/integ-daemon: $(B)/tests/integ/test_daemon.o $(INTEG_HELPERS) $(LIBSHIFTADD) $(B)/libproto.a \
			 $(B)/bin/shiftaddd
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(INTEG_HELPERS) $(LIBSHIFTADD) $(B)/libproto.a \
		-Wl,-rpath,'$$ORIGIN/../lib' -lcmocka -luring $(PROTO_LDLIBS) -lpthread
-include $(B)/tests/integ/test_daemon.d
INTEG_TESTS += $(B)/tests/integ-daemon
TSAN_TESTS += $(B)/tests/integ-daemon
all: $(B)/tests/integ-daemon

# shiftaddctl + shiftadd-bench against a daemon the test starts (threads: TSan too).
$(B)/tests/integ/test_ctl.o: | $(PROTO_GEN_H)
$(B)/tests/integ-ctl: $(B)/tests/integ/test_ctl.o $(INTEG_HELPERS) $(LIBSHIFTADD) $(B)/bin/shiftaddd \
		      $(B)/bin/shiftaddctl $(B)/bin/shiftadd-bench
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(INTEG_HELPERS) $(LIBSHIFTADD) -Wl,-rpath,'$$ORIGIN/../lib' \
		-lcmocka -luring -lcjson -lpthread
-include $(B)/tests/integ/test_ctl.d
INTEG_TESTS += $(B)/tests/integ-ctl
TSAN_TESTS += $(B)/tests/integ-ctl
all: $(B)/tests/integ-ctl

# The real model (engine backend) against in-process greedy generation through engine/.
INTEG_ENGINE_OBJS := $(B)/tests/integ/test_engine.o $(B)/tests/lib/engine_greedy.o
-include $(INTEG_ENGINE_OBJS:.o=.d)
$(B)/tests/integ-engine: $(INTEG_ENGINE_OBJS) $(INTEG_HELPERS) $(LIBSHIFTADD) $(B)/libengine.a \
			 $(B)/libkernels.a $(B)/libcommon.a $(B)/bin/shiftaddd $(B)/bin/shiftaddctl
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(INTEG_ENGINE_OBJS) $(INTEG_HELPERS) $(LIBSHIFTADD) \
		$(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a -Wl,-rpath,'$$ORIGIN/../lib' \
		-lcmocka -luring -lcjson $(ENGINE_LDLIBS) -lpthread
INTEG_TESTS += $(B)/tests/integ-engine
all: $(B)/tests/integ-engine

# Converted models (in-process conversion of the real model): kernels vs dense PPL, and the
# rht file served by shiftaddd against in-process greedy.
INTEG_CONV_OBJS := $(B)/tests/integ/test_converted.o $(B)/tests/lib/engine_greedy.o
-include $(B)/tests/integ/test_converted.d
$(B)/tests/integ-converted: $(INTEG_CONV_OBJS) $(INTEG_HELPERS) $(LIBSHIFTADD) $(B)/libreparam.a \
			    $(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a $(B)/bin/shiftaddd
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(INTEG_CONV_OBJS) $(INTEG_HELPERS) $(LIBSHIFTADD) \
		$(B)/libreparam.a $(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a \
		-Wl,-rpath,'$$ORIGIN/../lib' -lcmocka -luring -llapacke $(ENGINE_LDLIBS) -lpthread
INTEG_TESTS += $(B)/tests/integ-converted
all: $(B)/tests/integ-converted

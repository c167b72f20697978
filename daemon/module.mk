# daemon: shiftaddd. Its library (everything but main.c) is what the unit tests link.
daemon_SRCS := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
$(eval $(call add_lib,daemon))

DAEMON_LDLIBS := -luring -lnuma -lhwloc $(PROTO_LDLIBS) $(ENGINE_LDLIBS) -lm -lpthread
DAEMON_ARCHIVES := $(B)/libdaemon.a $(B)/libengine.a $(B)/libkernels.a $(B)/libproto.a \
		   $(B)/libcommon.a
$(eval $(call add_program,shiftaddd,$(B)/daemon/main.o,$(DAEMON_ARCHIVES),$(DAEMON_LDLIBS)))

# These include the generated protobuf header (see proto/module.mk).
$(daemon_OBJS) $(B)/daemon/main.o: | $(PROTO_GEN_H)

daemon_TEST_LIBS := $(DAEMON_ARCHIVES)
daemon_LDLIBS := $(DAEMON_LDLIBS)
ifneq ($(wildcard tests/unit/daemon/*.c),)
$(eval $(call add_unit_test,daemon))
$(daemon_TEST_OBJS): | $(PROTO_GEN_H)
TSAN_TESTS += $(B)/tests/unit-daemon
endif

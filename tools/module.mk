# tools: the shiftadd command-line tool (and, later, shiftaddctl and shiftadd-bench).
tools_common_SRCS := tools/opt.c
shiftadd_SRCS := $(wildcard tools/shiftadd/*.c) $(tools_common_SRCS)
shiftadd_OBJS := $(patsubst %.c,$(B)/%.o,$(shiftadd_SRCS))
SHIFTADD_ARCHIVES := $(B)/libreparam.a $(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a
$(eval $(call add_program,shiftadd,$(shiftadd_OBJS),$(SHIFTADD_ARCHIVES),$(ENGINE_LDLIBS) -llapacke))

# shiftaddctl: the admin CLI (control socket, admin messages). Never links the engine.
shiftaddctl_SRCS := $(wildcard tools/shiftaddctl/*.c) tools/admin_client.c $(tools_common_SRCS)
shiftaddctl_OBJS := $(patsubst %.c,$(B)/%.o,$(shiftaddctl_SRCS))
$(shiftaddctl_OBJS): | $(PROTO_GEN_H)
$(eval $(call add_program,shiftaddctl,$(shiftaddctl_OBJS),$(B)/libproto.a $(B)/libcommon.a,$(PROTO_LDLIBS) -lcjson))

# shiftadd-bench: the throughput profiler. Client processes use libshiftadd (as applications
# do); the admin side uses proto/; --topology reuses the daemon's pure placement function.
shiftadd_bench_SRCS := $(wildcard tools/shiftadd-bench/*.c) tools/admin_client.c $(tools_common_SRCS)
shiftadd_bench_OBJS := $(patsubst %.c,$(B)/%.o,$(shiftadd_bench_SRCS))
$(shiftadd_bench_OBJS): | $(PROTO_GEN_H)
$(eval $(call add_program,shiftadd-bench,$(shiftadd_bench_OBJS),$(LIBSHIFTADD) $(B)/libdaemon.a $(B)/libproto.a $(B)/libcommon.a,$$(CLIENT_RPATH) -lhwloc -lnuma $(PROTO_LDLIBS) -lcjson -lm))

# Unit tests of the profiler's statistics (tests/unit/bench/).
bench_TEST_LIBS := $(B)/tools/shiftadd-bench/stats.o
bench_LDLIBS := -lm
$(eval $(call add_unit_test,bench))

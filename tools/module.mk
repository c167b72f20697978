# tools: the shiftadd command-line tool (and, later, shiftaddctl and shiftadd-bench).
tools_common_SRCS := tools/opt.c
shiftadd_SRCS := $(wildcard tools/shiftadd/*.c) $(tools_common_SRCS)
shiftadd_OBJS := $(patsubst %.c,$(B)/%.o,$(shiftadd_SRCS))
SHIFTADD_ARCHIVES := $(B)/libreparam.a $(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a
$(eval $(call add_program,shiftadd,$(shiftadd_OBJS),$(SHIFTADD_ARCHIVES),$(ENGINE_LDLIBS) -llapacke))

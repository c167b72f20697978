# kernels: shift-add LUT kernels; depend on nothing of ours.
kernels_SRCS := $(wildcard kernels/*.c)
$(eval $(call add_lib,kernels))

kernels_TEST_LIBS := $(B)/libkernels.a $(B)/libcommon.a
kernels_LDLIBS := -lm
ifneq ($(wildcard tests/unit/kernels/*.c),)
$(eval $(call add_unit_test,kernels))
endif

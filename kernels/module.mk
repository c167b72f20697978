# kernels: shift-add LUT kernels; depend on nothing of ours.
kernels_SRCS := $(wildcard kernels/*.c) kernels/x86/lut_avx2.c kernels/x86/lut_avx512.c
$(eval $(call add_lib,kernels))

# Each ISA file alone gets its -m flags (no -march=native: generic code must stay generic).
$(B)/kernels/x86/lut_avx2.o: ISA_FLAGS := -mavx2
$(B)/kernels/x86/lut_avx512.o: ISA_FLAGS := -mavx2 -mavx512f -mavx512bw

kernels_TEST_LIBS := $(B)/libkernels.a $(B)/libcommon.a
kernels_LDLIBS := -lm
ifneq ($(wildcard tests/unit/kernels/*.c),)
$(eval $(call add_unit_test,kernels))
endif

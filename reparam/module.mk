# reparam: the offline optimizer (BCQ + APoT + GPTQ, baselines, bit allocation), its
# calibration driver and the converted-file export.
reparam_SRCS := $(wildcard reparam/*.c) reparam/x86/half_f16c.c
$(eval $(call add_lib,reparam))
# the F16C file alone gets its -m flags; reparam/half.c checks the CPU before calling it
$(B)/reparam/x86/half_f16c.o: ISA_FLAGS := -mf16c -mavx

reparam_TEST_LIBS := $(B)/libreparam.a $(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a
reparam_TEST_EXTRA := tests/unit/engine/ref_logits.c
reparam_LDLIBS := -llapacke $(ENGINE_LDLIBS)
ifneq ($(wildcard tests/unit/reparam/*.c),)
$(eval $(call add_unit_test,reparam))
endif

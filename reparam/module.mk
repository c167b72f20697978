# reparam: the offline optimizer's numerical core (BCQ + APoT + GPTQ, baselines, bit allocation).
reparam_SRCS := $(wildcard reparam/*.c)
$(eval $(call add_lib,reparam))

reparam_TEST_LIBS := $(B)/libreparam.a $(B)/libkernels.a $(B)/libcommon.a
reparam_LDLIBS := -llapacke -lopenblas -lm
ifneq ($(wildcard tests/unit/reparam/*.c),)
$(eval $(call add_unit_test,reparam))
endif

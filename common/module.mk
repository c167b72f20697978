common_SRCS := $(wildcard common/*.c)
$(eval $(call add_lib,common))

common_TEST_LIBS := $(B)/libcommon.a
common_LDLIBS := -lm
$(eval $(call add_unit_test,common))

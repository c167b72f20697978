# kernels: shift-add LUT kernels; depend on nothing of ours.
kernels_SRCS := $(wildcard kernels/*.c) kernels/x86/lut_avx2.c kernels/x86/lut_batch_avx2.c \
		kernels/x86/lut_avx512.c \
		kernels/x86/rht_avx2.c kernels/x86/rht_avx512.c kernels/x86/gemm_bf16_avx512.c
$(eval $(call add_lib,kernels))

# Each ISA file alone gets its -m flags (no -march=native: generic code must stay generic).
$(B)/kernels/x86/lut_avx2.o: ISA_FLAGS := -mavx2
$(B)/kernels/x86/lut_batch_avx2.o: ISA_FLAGS := -mavx2 -mbmi
$(B)/kernels/x86/lut_avx512.o: ISA_FLAGS := -mavx2 -mavx512f -mavx512bw
$(B)/kernels/x86/rht_avx2.o: ISA_FLAGS := -mavx2
$(B)/kernels/x86/rht_avx512.o: ISA_FLAGS := -mavx2 -mavx512f
$(B)/kernels/x86/gemm_bf16_avx512.o: ISA_FLAGS := -mavx2 -mavx512f -mavx512bw -mavx512bf16

kernels_TEST_EXTRA := tests/lib/rand_data.c
kernels_TEST_LIBS := $(B)/libkernels.a $(B)/libcommon.a
kernels_LDLIBS := -lm
ifneq ($(wildcard tests/unit/kernels/*.c),)
$(eval $(call add_unit_test,kernels))
endif

# The multiplication-free proof (kernels/nomul.sh): `make test` runs it through CHECK_TARGETS.
KERNELS_ISA_OBJS := $(B)/kernels/lut_ref.o $(B)/kernels/x86/lut_avx2.o $(B)/kernels/x86/lut_batch_avx2.o \
		    $(B)/kernels/x86/lut_avx512.o $(B)/kernels/rht_ref.o $(B)/kernels/x86/rht_avx2.o $(B)/kernels/x86/rht_avx512.o
.PHONY: kernels-nomul
kernels-nomul: $(KERNELS_ISA_OBJS)
	@kernels/nomul.sh $(KERNELS_ISA_OBJS)
CHECK_TARGETS += kernels-nomul

# Kernel benchmark (bench/run.sh runs it for `make bench`).
$(eval $(call add_program,bench-kernels,$(B)/bench/kernels/bench_kernels.o,$(B)/libkernels.a $(B)/libcommon.a,-lopenblas -lm))

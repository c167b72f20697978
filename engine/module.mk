# engine: model I/O (GGUF, safetensors, config), tokenizers, the forward pass, evaluation.
engine_SRCS := $(wildcard engine/*.c) engine/x86/fwd_avx2.c engine/x86/fwd_avx512.c \
	engine/x86/linear_q8_avx2.c engine/x86/linear_q8_vnni.c
$(eval $(call add_lib,engine))

ENGINE_LDLIBS := -lopenblas -lpcre2-8 -lcjson -lm
engine_TEST_EXTRA := tests/lib/rand_data.c
engine_TEST_LIBS := $(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a
engine_LDLIBS := $(ENGINE_LDLIBS)
ifneq ($(wildcard tests/unit/engine/*.c),)
$(eval $(call add_unit_test,engine))
endif

# Only the ISA file gets its -m flags (no -march=native: generic code must stay generic).
$(B)/engine/x86/fwd_avx2.o: ISA_FLAGS := -mavx2 -mfma -mf16c
$(B)/engine/x86/fwd_avx512.o: ISA_FLAGS := -mavx2 -mfma -mf16c -mavx512f
$(B)/engine/x86/linear_q8_avx2.o: ISA_FLAGS := -mavx2 -mfma
$(B)/engine/x86/linear_q8_vnni.o: ISA_FLAGS := -mavx2 -mfma -mavx512f -mavx512vl -mavx512vnni

# Fused attention timing (bench/attn): attend_rows of a prefill, one head, one thread.
$(eval $(call add_program,bench-attn,$(B)/bench/attn/bench_attn.o,$(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a,$(ENGINE_LDLIBS)))

# Batched decode steps in process (bench/step): the engine's side of the daemon's batching.
$(eval $(call add_program,bench-step,$(B)/bench/step/bench_step.o $(B)/tools/shiftadd/load.o $(B)/tools/opt.o,$(B)/libengine.a $(B)/libkernels.a $(B)/libcommon.a,$(ENGINE_LDLIBS)))

// SPDX-License-Identifier: MIT
/*
 * A model file as the daemon and `shiftadd generate` load it: the input goes to a memfd, which
 * model_load_ex() opens by its /proc path (the GGUF reader, the config, the tokenizer, every
 * tensor checked against the config, shift-add layers packed for the kernels or dequantized
 * for the dense path, one bit of the input choosing). A small enough model then runs two
 * tokens through the forward pass and the LM head, so that every shape the loader accepted
 * is one the forward pass can use.
 *
 * Seeds (corpus/model/): `shiftadd convert --nsamples 4 --seqlen 64` of a 2-layer llama with
 * random f32 weights (dim 64, ffn 128, 4 heads, 2 KV heads, tied embeddings) and the 9-token
 * tokenizer of corpus/tokenizer_json/bytelevel_digits.json, as shiftadd-rht both 3-bit,
 * shiftadd-lat 2-bit and shiftadd-acc 4-bit.
 */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/model.h"
#include "tests/fuzz/fuzz.h"

static volatile float sink;

/* Bounds the forward pass's time and memory, not what the loader is given. */
static bool small_enough(const struct model_config *c)
{
	return c->dim <= 512 && c->n_layers <= 4 && c->n_vocab <= 4096 && c->ffn_dim <= 2048 &&
	       (uint64_t)c->n_heads * c->head_dim <= 1024;
}

static void run_two_tokens(const struct model *m)
{
	const struct model_config *c = &m->cfg;
	int32_t tok[2] = { 0, (int32_t)c->n_vocab - 1 };
	uint32_t seq[2] = { 0, 0 }, pos[2] = { 0, 1 };
	float *hidden = malloc(2 * (size_t)c->dim * sizeof(float));
	float *logits = malloc(2 * (size_t)c->n_vocab * sizeof(float));
	struct kv_cache kv;

	if (hidden && logits && !kv_cache_init(&kv, m, 1, 4)) {
		if (!model_forward(m, &kv, tok, seq, pos, 2, hidden)) {
			model_logits(m, hidden, 2, logits);
			sink = logits[2 * (size_t)c->n_vocab - 1];
		}
		kv_cache_done(&kv);
	}
	free(hidden);
	free(logits);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_load_opts o = { .backend = LINEAR_BACKEND_SHIFTADD };
	struct model *m = NULL;
	char path[64];
	int fd;

	if (size && data[size / 2] & 1)
		o.backend = LINEAR_BACKEND_DENSE;
	fd = memfd_create("fuzz-model", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (!model_load_ex(path, &o, &m, NULL)) {
		if (small_enough(&m->cfg))
			run_two_tokens(m);
		model_free(m);
	}
	close(fd);
	return 0;
}

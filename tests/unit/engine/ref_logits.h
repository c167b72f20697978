/* SPDX-License-Identifier: MIT */
#ifndef TESTS_UNIT_ENGINE_REF_LOGITS_H
#define TESTS_UNIT_ENGINE_REF_LOGITS_H

#include <stdint.h>

/* A reference-logits fixture written by tools/ref_model.py (format in that script). */

#define REF_MAX_TENSORS 64
#define REF_MAX_SEQS	8
#define REF_MAX_POS	128
#define REF_MAX_PROBES	64

struct ref_tensor {
	char name[128];
	double scale, offset;
	uint32_t n_dims;
	uint64_t shape[2];
};

struct ref_pos {
	double lse;
	int32_t argmax;
	double logit[REF_MAX_PROBES];
};

struct ref_seq {
	uint32_t n;
	int32_t ids[REF_MAX_POS];
	struct ref_pos pos[REF_MAX_POS];
};

struct ref_logits {
	uint32_t n_tensors;
	struct ref_tensor tensors[REF_MAX_TENSORS];
	uint32_t n_probes;
	int32_t probe[REF_MAX_PROBES];
	uint32_t n_seqs;
	struct ref_seq seqs[REF_MAX_SEQS];
	uint32_t cur_pos; /* parser state */
};

/* Parse @path into a heap-allocated fixture (caller frees); NULL on any error. */
struct ref_logits *ref_logits_load(const char *path);

/* The generator tools/ref_model.py uses for tiny-model weights. */
void ref_fill_weights(const char *name, uint64_t n, double scale, double offset, float *out);

/*
 * Write the fixture's tensors (generated with ref_fill_weights) as @dir/model.safetensors.
 * Returns 0 or -errno.
 */
int ref_write_safetensors(const struct ref_logits *r, const char *dir);

/*
 * A model folder for @r: @dir is a mkdtemp() template, made into a new folder holding a copy
 * of @fixture_dir/config.json and the fixture's tensors (ref_write_safetensors()). The caller
 * removes it. Returns 0 or -errno.
 */
int ref_model_dir(const struct ref_logits *r, const char *fixture_dir, char *dir);

#endif /* TESTS_UNIT_ENGINE_REF_LOGITS_H */

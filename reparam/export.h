/* SPDX-License-Identifier: MIT */
#ifndef REPARAM_EXPORT_H
#define REPARAM_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "reparam/calib.h"

struct model;

/* What the converted file records about how it was made (shiftadd.* metadata). */
struct export_meta {
	const struct calib_run *run;
	const char *calib_file; /* as given by the user */
	uint64_t calib_tokens;
	/* mixed-bit conversions (reparam/mixbits.h): allocator name and budget; NULL = uniform */
	const char *alloc;
	double avg_bits_budget;
	/*
	 * Write the LM head as its own Q5_0 "output.weight" (requantized from the f32 weights
	 * the engine loaded), keeping the embedding as it was for the lookups.
	 */
	bool head_q5_0;
};

/*
 * Write the converted model: each quantized linear as shift-add planes (engine/sa_format.h)
 * or, for methods without a BCQ form, as dense F32 "<base>.weight", plus shiftadd.* metadata;
 * everything else from the source @src_path, which @m was loaded from:
 *  - a GGUF file: every metadata key and non-linear tensor as it was;
 *  - an HF folder: llama.* / qwen2.* hyper-parameters, the tokenizer as tokenizer.ggml.* keys
 *    (proven to give the same ids, see export_tokenizer_hf()), and the embeddings, norms,
 *    biases and an untied lm_head under GGUF names in their source type (F32, F16, BF16).
 * With meta->head_q5_0, "output.weight" is written as Q5_0 (a source one is replaced); a
 * head converted by the calibration (calib_run.head_bits, @out's "output") is written as
 * shift-add planes under "output" in place of a source "output.weight", or beside the tied
 * embedding.
 * The write is atomic (temp file, fsync, rename): on any error @dst is untouched.
 * Returns 0, -EOPNOTSUPP (source neither, or an HF model/tokenizer the GGUF form cannot
 * reproduce), -ERANGE (alpha not APoT-exact) or -errno, with a message in @e.
 */
int export_gguf(const char *src_path, const struct model *m, const struct calib_out *out,
		const struct export_meta *meta, const char *dst, struct errbuf *e);

#endif /* REPARAM_EXPORT_H */

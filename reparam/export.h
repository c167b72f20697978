/* SPDX-License-Identifier: MIT */
#ifndef REPARAM_EXPORT_H
#define REPARAM_EXPORT_H

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
};

/*
 * Write the converted model: every metadata key and non-linear tensor of the source GGUF
 * @src_path as it was, each quantized linear as shift-add planes (engine/sa_format.h) or, for
 * methods without a BCQ form, as dense F32 "<base>.weight", plus shiftadd.* metadata.
 * The write is atomic (temp file, fsync, rename): on any error @dst is untouched.
 * Returns 0, -EOPNOTSUPP (source is not GGUF), -ERANGE (alpha not APoT-exact) or -errno,
 * with a message in @e.
 */
int export_gguf(const char *src_path, const struct model *m, const struct calib_out *out,
		const struct export_meta *meta, const char *dst, struct errbuf *e);

#endif /* REPARAM_EXPORT_H */

/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_SA_FORMAT_H
#define ENGINE_SA_FORMAT_H

#include <stdint.h>

#include "common/err.h"
#include "kernels/qweight.h"

struct gguf_file;
struct gguf_writer;

/*
 * How a shift-add (BCQ) linear layer is stored in a GGUF file, under its base name B
 * ("blk.3.attn_q"), instead of B.weight:
 *
 *   B.sa_meta   I32 ne = [9]                   {SA_FORMAT_VERSION, K, layout, apot, rht,
 *                                                seed_in lo, hi, seed_out lo, hi}
 *   B.sa_signs  I8  ne = [ceil(K/8), N, q]      bit k%8 of byte k/8: 1 = +1, 0 = -1
 *   B.sa_aexp   I8  ne = [apot, ncb, nrb, q]    APoT alphas: exponent of each term
 *   B.sa_asgn   I8  ne = [apot, ncb, nrb, q]    sign of each term (+1, -1; 0 = unused)
 *   B.sa_alpha  F32 ne = [ncb, nrb, q]          real-valued alphas (apot = 0 baselines only)
 *
 * with ncb/nrb the numbers of column/row blocks of the layout (enum qw_layout), and rht the
 * run-time randomized Hadamard transforms the planes expect (enum sa_rht_mode; seeds as
 * kernels/rht.h defines them: input over K, output over N). Integer
 * tensors keep the file readable by any GGUF reader; the planes map 1:1 to struct qweight.
 */

#define SA_FORMAT_VERSION 2
#define SA_META_LEN	  9

/*
 * Base name of a converted LM head ([n_vocab][dim]): a tensor of its own, also for a model
 * whose head is tied to the embedding (which stays for the lookups).
 */
#define SA_HEAD_BASE "output"

enum sa_rht_mode {
	SA_RHT_NONE,
	SA_RHT_INPUT, /* y = Q (T_in x) */
	SA_RHT_BOTH,  /* y = T_out^T (Q (T_in x)) */
	SA_RHT_COUNT,
};

struct sa_rht {
	enum sa_rht_mode mode;
	uint64_t seed_in;
	uint64_t seed_out;
};

/*
 * Append @p to the buffer list of sa_format_add() (*@bufs, *@n entries), which the caller
 * frees after the write. On -ENOMEM @p is freed and the list is unchanged.
 */
int sa_keep_buf(void ***bufs, uint32_t *n, void *p);

/*
 * Add @w's tensors to @wr, with its transforms @rht (NULL = none). The data is converted into buffers that @ret_bufs collects (a
 * malloc'ed array of *ret_n pointers; free each and the array after the write).
 * Returns 0, -ERANGE (an alpha is not a sum of at most apot powers of two), -ENOMEM, or the
 * writer's error.
 */
int sa_format_add(struct gguf_writer *wr, const char *base, const struct qweight *w,
		  const struct sa_rht *rht, void ***bufs, uint32_t *n_bufs);

/* Does @g hold a shift-add layer under @base? */
int sa_format_present(const struct gguf_file *g, const char *base);

/*
 * Read the layer stored under @base into @ret (qweight_init'ed; caller qweight_done()s) and
 * its transforms into @ret_rht.
 * Every shape is checked against the others: -EBADMSG with a message for inconsistent or
 * out-of-range data (bits > 4, exponent out of range, signs not in {-1,0,1}).
 */
int sa_format_load(const struct gguf_file *g, const char *base, struct qweight *ret,
		   struct sa_rht *ret_rht, struct errbuf *e);

/*
 * Decompose @a into at most @max_terms signed powers of two (fewest terms, largest first):
 * returns the count (0 for a == 0) or -ERANGE.
 */
int sa_format_pow2_terms(float a, uint32_t max_terms, int8_t *ret_exp, int8_t *ret_sign);

#endif /* ENGINE_SA_FORMAT_H */

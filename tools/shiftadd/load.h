/* SPDX-License-Identifier: MIT */
#ifndef TOOLS_SHIFTADD_LOAD_H
#define TOOLS_SHIFTADD_LOAD_H

/* Model loading shared by the subcommands that run a model (eval, generate). */

struct errbuf;
struct model;
struct pool;

/* "dense" or "shiftadd" to enum linear_backend (engine/model.h); -EINVAL otherwise. */
int tool_backend_parse(const char *name);

/*
 * --bos yes|no|auto into *ret as 1, 0, -1 (auto: the tokenizer's add_bos_token); anything
 * else is -EINVAL with a line on stderr.
 */
int tool_bos_parse(const char *value, int *ret);

/*
 * --kv-type f16|f32 into *ret (enum kv_type, engine/model.h); anything else is -EINVAL with a
 * line on stderr naming @cmd.
 */
int tool_kv_type_parse(const char *cmd, const char *value, int *ret);

/* The option name of @backend ("dense", "shiftadd"). */
const char *tool_backend_name(int backend);

/*
 * model_load_ex() of @path with @backend (enum linear_backend) on a pool of @threads workers
 * (0 = all online CPUs) that runs every product (kernels, BLAS slices, attention), returned
 * in *ret_pool; OpenBLAS is set to one thread. When there are enough allowed CPUs, the
 * workers and the calling thread are pinned one per CPU (the caller stays pinned). The caller frees the model first, then
 * pool_free(*ret_pool).
 * Returns 0 or the loader's -errno (message in @e).
 */
int tool_model_load(const char *path, int backend, unsigned threads, struct model **ret,
		    struct pool **ret_pool, struct errbuf *e);

#endif /* TOOLS_SHIFTADD_LOAD_H */

/* SPDX-License-Identifier: MIT */
#ifndef TOOLS_SHIFTADD_CMDS_H
#define TOOLS_SHIFTADD_CMDS_H

/* Subcommands of the `shiftadd` tool: each gets argv starting at its own name and returns the
 * process exit status (0 ok, 1 failure, 2 usage error). */
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* Shared by subcommands: set BLAS/kernel threads (0 = all online CPUs). */
void tool_set_threads(unsigned n);
struct errbuf;
struct model;
struct pool;

/* "dense" or "shiftadd" to enum linear_backend (engine/model.h); -EINVAL otherwise. */
int tool_backend_parse(const char *name);

/*
 * model_load_ex() of @path with @backend (enum linear_backend); for the shift-add backend a
 * pool of @threads workers (0 = all online CPUs) runs the kernels, returned in *ret_pool
 * (NULL for dense). The caller frees the model first, then pool_free(*ret_pool).
 * Returns 0 or the loader's -errno (message in @e).
 */
int tool_model_load(const char *path, int backend, unsigned threads, struct model **ret,
		    struct pool **ret_pool, struct errbuf *e);

/* Default path of a file under ../shared/data (honours $SHIFTADD_SHARED). Static buffer. */
const char *tool_shared_path(const char *rel);

#endif /* TOOLS_SHIFTADD_CMDS_H */

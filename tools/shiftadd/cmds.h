/* SPDX-License-Identifier: MIT */
#ifndef TOOLS_SHIFTADD_CMDS_H
#define TOOLS_SHIFTADD_CMDS_H

/* Subcommands of the `shiftadd` tool: each gets argv starting at its own name and returns the
 * process exit status (0 ok, 1 failure, 2 usage error). */
int cmd_convert(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
/* `eval tasks` (cmd_eval_tasks.c); argv starts at "tasks". */
int cmd_eval_tasks(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* Shared by subcommands: set BLAS/kernel threads (0 = all online CPUs). */
void tool_set_threads(unsigned n);
/* Default path of a file under ../shared/data (honours $SHIFTADD_SHARED). Static buffer. */
const char *tool_shared_path(const char *rel);

#endif /* TOOLS_SHIFTADD_CMDS_H */

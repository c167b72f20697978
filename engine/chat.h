/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_CHAT_H
#define ENGINE_CHAT_H

/*
 * Chat prompts for the supported instruct models. We do not run Jinja: the template stored in
 * the model is recognised by its markers (ChatML "<|im_start|>", Llama-3 "<|start_header_id|>",
 * Gemma "<start_of_turn>") and rendered by code; a ChatML template's built-in default system message is taken from the
 * template text itself.
 */

/*
 * Render one user turn (with optional @system, else the template's default) followed by the
 * assistant generation prompt. On success *ret is malloc'ed (caller frees).
 * Returns -EOPNOTSUPP for a template we do not recognise (or none), -ENOMEM.
 */
int chat_render(const char *tmpl, const char *system, const char *user, char **ret);

#endif /* ENGINE_CHAT_H */

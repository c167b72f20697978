// SPDX-License-Identifier: MIT
/*
 * AVX512_VNNI build of the Q8_0 row kernel (engine/x86/linear_q8_tiles.h): one vpdpbusd (on
 * ymm/xmm, so AVX512VL) per step of 32 weight bytes and 32 activation bytes. Only this file
 * is built with those -m flags; engine/linear_q8.c calls it on hosts that have them.
 */
#include <immintrin.h>

/* vpdpbusd takes w + 128 and x as they are: no signed form, nothing to prepare */
#define Q8_SIGNED_OK		     0
#define Q8_TOK_TILE		     4
#define q8_wprep256(sg, u)	     (u)
#define q8_xprep256(sg, x)	     (x)
#define q8_dot256(sg, acc, w, x, xp) ((void)(xp), _mm256_dpbusd_epi32((acc), (w), (x)))

#define Q8_ROWS_FN q8_rows_vnni
#include "engine/x86/linear_q8_tiles.h"

// SPDX-License-Identifier: MIT
/*
 * Tokenizers against Hugging Face `tokenizers`: the fixtures under tests/fixtures/tokenizer/
 * come from tools/ref_tokenize.py (PyPI tokenizers), never from this code.
 *   *_wikitext.txt  whole WikiText-2 test text: count, sha256 of the ids as little-endian
 *                   uint32, first/last 256 ids
 *   *_cases.tsv     tricky strings: hex(text) TAB ids TAB hex(HF decode)
 */
#include "common/sha256.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/tok_internal.h"
#include "engine/tokenizer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define FIX "tests/fixtures/tokenizer/"

static const char *shared_dir(void)
{
	const char *s = getenv("SHIFTADD_SHARED");

	return s && *s ? s : "../shared";
}

static char *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf) {
		buf[n] = 0;
		if (ret_len)
			*ret_len = (size_t)n;
	}
	return buf;
}

/* The README's protocol: rows (one per line) joined with "\n\n", no trailing separator. */
static char *wikitext(size_t *ret_len)
{
	char path[512], *rows, *out;
	size_t n, i, o = 0;

	snprintf(path, sizeof(path), "%s/data/wikitext-2/wiki.test.rows.txt", shared_dir());
	rows = slurp(path, &n);
	if (!rows)
		return NULL;
	if (n && rows[n - 1] == '\n')
		n--;
	out = malloc(2 * n + 1);
	assert_non_null(out);
	for (i = 0; i < n; i++) {
		out[o++] = rows[i];
		if (rows[i] == '\n')
			out[o++] = '\n';
	}
	out[o] = 0;
	free(rows);
	*ret_len = o;
	return out;
}

struct wt_fixture {
	size_t count;
	char sha[65];
	int32_t first[256], last[256];
	size_t n_first, n_last;
};

static size_t parse_ids(const char *s, int32_t *out, size_t cap)
{
	size_t n = 0;
	char *end;

	while (*s && *s != '\n' && *s != '\t') {
		long v = strtol(s, &end, 10);

		if (end == s)
			break;
		if (n < cap)
			out[n] = (int32_t)v;
		n++;
		s = end;
		while (*s == ' ')
			s++;
	}
	return n;
}

static void load_wt_fixture(const char *name, struct wt_fixture *f)
{
	char path[256], *buf, *l;

	snprintf(path, sizeof(path), FIX "%s_wikitext.txt", name);
	buf = slurp(path, NULL);
	assert_non_null(buf);
	assert_int_equal(sscanf(buf, "count %zu\nsha256 %64s", &f->count, f->sha), 2);
	l = strstr(buf, "\nfirst ");
	assert_non_null(l);
	f->n_first = parse_ids(l + 7, f->first, 256);
	l = strstr(buf, "\nlast ");
	assert_non_null(l);
	f->n_last = parse_ids(l + 6, f->last, 256);
	free(buf);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Encode the whole WikiText-2 test text and compare with the fixture, exactly. */
static void check_wikitext_opt(const struct tokenizer *t, const char *name, bool parse_special)
{
	struct wt_fixture f;
	size_t len = 0, n, i;
	char *text = wikitext(&len);
	int32_t *ids;
	uint8_t d[SHA256_DIGEST_LEN];
	char hex[65];
	struct sha256 s;
	double t0;

	if (!text)
		fail_msg("cannot read the WikiText-2 rows under ../shared/data");
	load_wt_fixture(name, &f);
	t0 = now_s();
	assert_int_equal(tokenizer_encode(t, text, len, parse_special, &ids, &n), 0);
	print_message("%s: %zu bytes -> %zu tokens in %.3f s\n", name, len, n, now_s() - t0);
	assert_int_equal(f.n_first, n < 256 ? n : 256);
	for (i = 0; i < f.n_first; i++)
		assert_int_equal(ids[i], f.first[i]);
	for (i = 0; i < f.n_last; i++)
		assert_int_equal(ids[n - f.n_last + i], f.last[i]);
	assert_int_equal(n, f.count);
	sha256_init(&s);
	for (i = 0; i < n; i++) {
		uint8_t le[4] = { (uint8_t)ids[i], (uint8_t)(ids[i] >> 8), (uint8_t)(ids[i] >> 16),
				  (uint8_t)(ids[i] >> 24) };

		sha256_update(&s, le, 4);
	}
	sha256_final(&s, d);
	sha256_hex(d, hex);
	assert_string_equal(hex, f.sha);
	free(ids);
	free(text);
}

/* HF matches special tokens in text by default: parse_special = true gives its ids. */
static void check_wikitext(const struct tokenizer *t, const char *name)
{
	check_wikitext_opt(t, name, true);
}

static size_t unhex(const char *s, char *out)
{
	size_t n = 0;
	unsigned int v;

	while (s[0] && s[0] != '\t' && s[0] != '\n' && sscanf(s, "%2x", &v) == 1) {
		out[n++] = (char)v;
		s += 2;
	}
	out[n] = 0;
	return n;
}

enum case_checks {
	CASE_IDS = 1,
	CASE_HF_DECODE = 2,  /* our decode equals HF's decode */
	CASE_ROUND_TRIP = 4, /* decode(encode(x)) == x */
	CASE_PLAIN = 8,	     /* encode with parse_special = false (SentencePiece reference) */
};

static void check_cases(const struct tokenizer *t, const char *name, int checks)
{
	char path[256], *buf, *line, *save = NULL;
	int n_cases = 0;

	snprintf(path, sizeof(path), FIX "%s_cases.tsv", name);
	buf = slurp(path, NULL);
	assert_non_null(buf);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char text[4096], dec[4096], *tab1 = strchr(line, '\t'), *tab2, *ours;
		int32_t want[2048], *ids;
		size_t tlen, dlen, n_want, n, i;

		assert_non_null(tab1);
		tab2 = strchr(tab1 + 1, '\t');
		assert_non_null(tab2);
		tlen = unhex(line, text);
		dlen = unhex(tab2 + 1, dec);
		n_want = parse_ids(tab1 + 1, want, 2048);
		assert_int_equal(tokenizer_encode(t, text, tlen, !(checks & CASE_PLAIN), &ids, &n),
				 0);
		if (checks & CASE_IDS) {
			if (n != n_want)
				fail_msg("%s case %d '%s': %zu ids, HF has %zu", name, n_cases,
					 text, n, n_want);
			for (i = 0; i < n; i++)
				if (ids[i] != want[i])
					fail_msg("%s case %d '%s': id[%zu] = %d, HF %d", name,
						 n_cases, text, i, ids[i], want[i]);
		}
		assert_int_equal(tokenizer_decode(t, ids, n, &ours), 0);
		if (checks & CASE_HF_DECODE) {
			assert_int_equal(strlen(ours), dlen);
			assert_memory_equal(ours, dec, dlen);
		}
		if (checks & CASE_ROUND_TRIP) {
			assert_int_equal(strlen(ours), tlen);
			assert_memory_equal(ours, text, tlen);
		}
		free(ours);
		free(ids);
		n_cases++;
	}
	assert_true(n_cases >= 30);
	free(buf);
}

/* ---- GPT-2 from encoder.json + vocab.bpe ---- */

static struct tokenizer *gpt2(void)
{
	char enc[512], bpe[512];
	struct tokenizer *t = NULL;
	struct errbuf e = { { 0 } };
	int ret;

	snprintf(enc, sizeof(enc), "%s/data/tokenizers/gpt2/encoder.json", shared_dir());
	snprintf(bpe, sizeof(bpe), "%s/data/tokenizers/gpt2/vocab.bpe", shared_dir());
	ret = tokenizer_from_gpt2_files(enc, bpe, &t, &e);
	if (ret)
		fail_msg("gpt2: %s", errbuf_str(&e, ret));
	return t;
}

static void test_gpt2_wikitext_matches_hf(void **state)
{
	struct tokenizer *t = gpt2();

	assert_int_equal(tokenizer_kind(t), TOK_BYTE_BPE);
	assert_int_equal(tokenizer_n_vocab(t), 50257);
	assert_int_equal(tokenizer_eos(t), 50256);
	assert_false(tokenizer_add_bos(t));
	check_wikitext(t, "gpt2");
	{
		/* no add_bos_token: a whole text is encode()'s ids alone */
		int32_t *a, *b;
		size_t na, nb;

		assert_int_equal(tokenizer_encode(t, "Hello world", 11, false, &a, &na), 0);
		assert_int_equal(tokenizer_encode_text(t, "Hello world", 11, false, &b, &nb), 0);
		assert_int_equal(na, nb);
		assert_memory_equal(a, b, na * sizeof(*a));
		free(a);
		free(b);
	}
	tokenizer_free(t);
}

static void test_gpt2_tricky_strings_match_hf(void **state)
{
	struct tokenizer *t = gpt2();

	check_cases(t, "gpt2", CASE_IDS | CASE_HF_DECODE | CASE_ROUND_TRIP);
	tokenizer_free(t);
}

static void test_gpt2_special_tokens_only_when_asked(void **state)
{
	struct tokenizer *t = gpt2();
	const char *s = "a<|endoftext|>";
	int32_t *ids;
	size_t n;
	char piece[8];

	assert_int_equal(tokenizer_encode(t, s, strlen(s), true, &ids, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[1], 50256);
	assert_true(tokenizer_is_special(t, 50256));
	assert_false(tokenizer_is_special(t, ids[0]));
	free(ids);
	assert_int_equal(tokenizer_encode(t, s, strlen(s), false, &ids, &n), 0);
	assert_true(n > 2); /* spelled out as text */
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(ids[i], 50256);
	free(ids);
	assert_int_equal(tokenizer_find(t, "<|endoftext|>"), 50256);
	assert_int_equal(tokenizer_find(t, "\xc4\xa0the"), 262); /* "Ġthe" */
	assert_int_equal(tokenizer_find(t, "no such token"), -ENOENT);
	assert_int_equal(tokenizer_piece(t, 262, piece, sizeof(piece)), 4);
	assert_memory_equal(piece, " the", 4);
	tokenizer_free(t);
}

static void test_encode_rejects_invalid_utf8_and_bad_ids(void **state)
{
	struct tokenizer *t = gpt2();
	static const char *const bad[] = { "\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80",
					   "\xf4\x90\x80\x80" };
	int32_t *ids = NULL, oob[2] = { 0, 50257 }, neg[1] = { -1 };
	size_t n;
	char *s, piece[4];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tokenizer_encode(t, bad[i], strlen(bad[i]), true, &ids, &n),
				 -EBADMSG);
	assert_int_equal(tokenizer_encode(t, "", 0, true, &ids, &n), 0);
	assert_int_equal(n, 0);
	free(ids);
	assert_int_equal(tokenizer_decode(t, oob, 2, &s), -EINVAL);
	assert_int_equal(tokenizer_decode(t, neg, 1, &s), -EINVAL);
	assert_int_equal(tokenizer_piece(t, 50257, piece, sizeof(piece)), -EINVAL);
	assert_int_equal(tokenizer_piece(t, -3, piece, sizeof(piece)), -EINVAL);
	/* a piece longer than the buffer: full length returned, buffer truncated */
	assert_int_equal(tokenizer_piece(t, tokenizer_find(t, "\xc4\xa0the"), piece, 2), 4);
	assert_memory_equal(piece, " t", 2);
	tokenizer_free(t);
}

static void test_gpt2_missing_files_fail_cleanly(void **state)
{
	struct tokenizer *t = NULL;
	struct errbuf e = { { 0 } };

	assert_int_equal(
		tokenizer_from_gpt2_files("/nonexistent/encoder.json", "/nonexistent/v", &t, &e),
		-ENOENT);
	assert_null(t);
	assert_int_equal(
		tokenizer_from_gpt2_files(FIX "spm_cases.tsv", FIX "spm_cases.tsv", &t, &e),
		-EBADMSG);
	assert_null(t);
}

/*
 * The LLaMA-3 and Qwen2 pre-tokenizer presets (GGUF pre "llama-bpe" / "qwen2") over the GPT-2
 * vocabulary, against HF Split(regex) + ByteLevel(use_regex=false) on the same vocabulary.
 * The preset is swapped in through the internal header, as tok_gguf.c would set it.
 */
static void check_regex_preset(const char *name, const char *re, bool ignore_merges)
{
	struct tokenizer *t = gpt2();

	pcre2_code_free(t->pretok[0].re);
	t->n_pretok = 0;
	assert_int_equal(tok_add_pretok(t, re, strlen(re), false, TOK_SPLIT_ISOLATED, false, NULL),
			 0);
	t->ignore_merges = ignore_merges;
	check_wikitext(t, name);
	check_cases(t, name, CASE_IDS | CASE_HF_DECODE | CASE_ROUND_TRIP);
	tokenizer_free(t);
}

static void test_llama3_regex_preset_matches_hf(void **state)
{
	check_regex_preset("gpt2_llama3", tok_re_llama3, true);
}

static void test_qwen2_regex_preset_matches_hf(void **state)
{
	check_regex_preset("gpt2_qwen2", tok_re_qwen2, false);
}

/* ---- SentencePiece-style BPE with byte fallback (tokenizer.json) ---- */

static struct tokenizer *from_json(const char *path)
{
	struct tokenizer *t = NULL;
	struct errbuf e = { { 0 } };
	int ret = tokenizer_from_hf_json(path, &t, &e);

	if (ret)
		fail_msg("%s: %s", path, errbuf_str(&e, ret));
	return t;
}

static void test_spm_wikitext_matches_hf(void **state)
{
	struct tokenizer *t = from_json(FIX "spm_bpe.json");

	assert_int_equal(tokenizer_kind(t), TOK_SPM_BPE);
	assert_int_equal(tokenizer_bos(t), 1);
	assert_int_equal(tokenizer_eos(t), 2);
	assert_true(tokenizer_add_bos(t));
	check_wikitext(t, "spm");
	tokenizer_free(t);
}

static void test_spm_tricky_strings_and_byte_fallback_match_hf(void **state)
{
	struct tokenizer *t = from_json(FIX "spm_bpe.json");
	const char *s = "\xc3\xb8"; /* ø: not in the 1000-piece vocab -> <0xC3> <0xB8> */
	int32_t *ids;
	size_t n;

	check_cases(t, "spm", CASE_IDS | CASE_HF_DECODE);
	assert_int_equal(tokenizer_encode(t, s, strlen(s), true, &ids, &n), 0);
	assert_int_equal(n, 3); /* "▁" + two byte tokens */
	assert_int_equal(ids[1], tokenizer_find(t, "<0xC3>"));
	assert_int_equal(ids[2], tokenizer_find(t, "<0xB8>"));
	free(ids);
	tokenizer_free(t);
}

/* The newer layout (Metaspace pre-tokenizer, prepend_scheme "first"). HF's Metaspace decoder
 * leaves <0xNN> pieces as text, ours decodes them, so only ids are compared. */
static void test_spm_metaspace_layout_matches_hf(void **state)
{
	struct tokenizer *t = from_json(FIX "spm_bpe_meta.json");

	check_wikitext(t, "spm_meta");
	check_cases(t, "spm_meta", CASE_IDS);
	tokenizer_free(t);
}

/* ---- malformed tokenizer.json ---- */

static int load_str(const char *json)
{
	struct tokenizer *t = NULL;
	struct errbuf e = { { 0 } };
	int ret = tokenizer_from_hf_json_mem(json, strlen(json), &t, &e);

	if (ret) {
		assert_null(t);
		assert_true(e.msg[0] != 0);
	}
	tokenizer_free(t);
	return ret;
}

#define MODEL(v, m) "{\"model\":{\"type\":\"BPE\",\"vocab\":" v ",\"merges\":" m "}}"

static void test_bad_tokenizer_json_is_rejected(void **state)
{
	/* sanity: the minimal valid file loads */
	assert_int_equal(load_str(MODEL("{\"a\":0,\"b\":1,\"ab\":2}", "[\"a b\"]")), 0);
	assert_int_equal(load_str(MODEL("{\"a\":0,\"b\":1,\"ab\":2}", "[[\"a\",\"b\"]]")), 0);

	assert_int_equal(load_str(""), -EBADMSG);
	assert_int_equal(load_str("{\"model\":"), -EBADMSG);
	assert_int_equal(load_str("[1,2,3]"), -EBADMSG);
	assert_int_equal(load_str("{}"), -EBADMSG);
	assert_int_equal(load_str("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}"), -EOPNOTSUPP);
	assert_int_equal(load_str(MODEL("[]", "[]")), -EBADMSG);
	assert_int_equal(load_str(MODEL("{}", "[]")), -EBADMSG);	       /* empty vocab */
	assert_int_equal(load_str(MODEL("{\"a\":-1}", "[]")), -EBADMSG);       /* negative id */
	assert_int_equal(load_str(MODEL("{\"a\":1.5}", "[]")), -EBADMSG);      /* fractional */
	assert_int_equal(load_str(MODEL("{\"a\":99999999}", "[]")), -EBADMSG); /* huge */
	assert_int_equal(load_str(MODEL("{\"a\":\"0\"}", "[]")), -EBADMSG);
	assert_int_equal(load_str(MODEL("{\"a\":0,\"b\":0}", "[]")), -EBADMSG); /* dup id */
	assert_int_equal(load_str(MODEL("{\"a\":0,\"a\":1}", "[]")), -EBADMSG); /* dup text */
	assert_int_equal(load_str(MODEL("{\"a\":0,\"b\":1}", "[\"a b\"]")), -EBADMSG);
	assert_int_equal(load_str(MODEL("{\"a\":0,\"b\":1,\"ab\":2}", "[\"a c\"]")), -EBADMSG);
	assert_int_equal(load_str(MODEL("{\"a\":0,\"b\":1,\"ab\":2}", "[\"ab\"]")), -EBADMSG);
	assert_int_equal(load_str(MODEL("{\"a\":0,\"b\":1,\"ab\":2}", "[7]")), -EBADMSG);
	assert_int_equal(load_str(MODEL("{\"a\":0,\"b\":1,\"ab\":2}", "[[\"a\"]]")), -EBADMSG);
	assert_int_equal(load_str(MODEL("{\"a\":0}", "{}")), -EBADMSG);
	assert_int_equal(load_str("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
				  "\"unk_token\":\"<unk>\"}}"),
			 -EBADMSG);
	assert_int_equal(load_str("{\"added_tokens\":[{\"id\":-4,\"content\":\"x\"}],"
				  "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}"),
			 -EBADMSG);
	assert_int_equal(load_str("{\"added_tokens\":[{\"id\":0,\"content\":\"x\"}],"
				  "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}"),
			 -EBADMSG);
	assert_int_equal(load_str("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":"
				  "\"(\"},\"behavior\":\"Isolated\"},"
				  "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}"),
			 -EBADMSG);
	assert_int_equal(load_str("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":"
				  "\"a\"},\"behavior\":\"Sideways\"},"
				  "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}"),
			 -EBADMSG);
	assert_int_equal(load_str("{\"normalizer\":{\"type\":\"NFKD\"},"
				  "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}"),
			 -EOPNOTSUPP);
	assert_int_equal(load_str("{\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
				  "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}"),
			 -EOPNOTSUPP);
	assert_int_equal(load_str("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
				  "\"byte_fallback\":\"yes\"}}"),
			 -EBADMSG);
	/* cJSON passes raw bytes through: a normalizer string that is not UTF-8 is refused */
	assert_int_equal(load_str("{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":"
				  "\" \"},\"content\":\"\xff\"},"
				  "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}"),
			 -EBADMSG);
}

/* An added token spelled as a lone UTF-8 continuation byte never splits a character. */
static void test_added_token_never_splits_a_character(void **state)
{
	const char *json = "{\"added_tokens\":[{\"id\":1,\"content\":\"\xa9\",\"special\":true}],"
			   "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
			   "\"model\":{\"type\":\"BPE\",\"vocab\":{\"\xc3\x83\":0},\"merges\":[]}}";
	struct tokenizer *t = NULL;
	int32_t *ids;
	size_t n;

	assert_int_equal(tokenizer_from_hf_json_mem(json, strlen(json), &t, NULL), 0);
	/* "é" = c3 a9: the byte-level symbol for 0xc3 is "Ã" (id 0); 0xa9 is not in the vocab */
	assert_int_equal(tokenizer_encode(t, "\xc3\xa9", 2, true, &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 0);
	free(ids);
	tokenizer_free(t);
}

/* HF Split behaviours on a toy vocab, spelled out by hand. */
static void test_split_behaviors(void **state)
{
	static const struct {
		const char *behavior;
		int invert;
		const char *want; /* pieces joined with '|' */
	} cases[] = {
		{ "Isolated", 0, "a|-|b|-|-|c" },	  { "Removed", 0, "a|b|c" },
		{ "MergedWithPrevious", 0, "a-|b-|-|c" }, { "MergedWithNext", 0, "a|-b|-|-c" },
		{ "Contiguous", 0, "a|-|b|--|c" },	  { "Removed", 1, "-|-|-" },
	};
	/* every piece of the input is a single vocab token, so ids spell the pieces */
	const char *vocab = "{\"a\":0,\"b\":1,\"c\":2,\"-\":3,\"a-\":4,\"b-\":5,\"-b\":6,\"-c\":7,"
			    "\"--\":8}";

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char json[1024], got[64] = "", piece[8];
		struct tokenizer *t = NULL;
		int32_t *ids;
		size_t n;

		snprintf(json, sizeof(json),
			 "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},"
			 "\"behavior\":\"%s\",\"invert\":%s},\"model\":{\"type\":\"BPE\","
			 "\"ignore_merges\":true,\"vocab\":%s,\"merges\":[]}}",
			 cases[i].behavior, cases[i].invert ? "true" : "false", vocab);
		assert_int_equal(tokenizer_from_hf_json_mem(json, strlen(json), &t, NULL), 0);
		assert_int_equal(tokenizer_encode(t, "a-b--c", 6, true, &ids, &n), 0);
		for (size_t k = 0; k < n; k++) {
			int len = tokenizer_piece(t, ids[k], piece, sizeof(piece));

			assert_true(len > 0 && len < 8);
			piece[len] = 0;
			if (k)
				strcat(got, "|");
			strcat(got, piece);
		}
		if (strcmp(got, cases[i].want))
			fail_msg("%s invert=%d: got '%s', want '%s'", cases[i].behavior,
				 cases[i].invert, got, cases[i].want);
		free(ids);
		tokenizer_free(t);
	}
}

/* ---- GGUF metadata ---- */

#define SMOLLM2_GGUF "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static struct tokenizer *from_gguf(const char *path, struct gguf_file **ret_g)
{
	struct gguf_file *g = NULL;
	struct tokenizer *t = NULL;
	struct errbuf e = { { 0 } };
	int ret;

	ret = gguf_open(path, &g, &e);
	if (ret)
		fail_msg("%s: %s", path, errbuf_str(&e, ret));
	ret = tokenizer_from_gguf(g, &t, &e);
	if (ret)
		fail_msg("%s: %s", path, errbuf_str(&e, ret));
	*ret_g = g;
	return t;
}

static void test_smollm2_gguf_wikitext_matches_hf(void **state)
{
	struct gguf_file *g;
	struct tokenizer *t;

	if (access(SMOLLM2_GGUF, R_OK))
		fail_msg("%s is missing: run 'make model'", SMOLLM2_GGUF);
	t = from_gguf(SMOLLM2_GGUF, &g);
	assert_int_equal(tokenizer_kind(t), TOK_BYTE_BPE);
	assert_int_equal(tokenizer_n_vocab(t), 49152);
	assert_int_equal(tokenizer_bos(t), 1);
	assert_int_equal(tokenizer_eos(t), 2);
	assert_false(tokenizer_add_bos(t));
	assert_true(tokenizer_is_special(t, tokenizer_find(t, "<|im_start|>")));
	check_wikitext(t, "smollm2");
	check_cases(t, "smollm2", CASE_IDS | CASE_HF_DECODE | CASE_ROUND_TRIP);
	tokenizer_free(t);
	gguf_close(g);
}

/* A SentencePiece BPE model in GGUF (score merges, byte fallback) against sentencepiece. */
static void test_spm_gguf_matches_sentencepiece(void **state)
{
	struct gguf_file *g;
	struct tokenizer *t = from_gguf("build/fixtures/tokenizer/spm_gguf.gguf", &g);
	const char *s = "a<|user|>b";
	int32_t *ids;
	size_t n;

	assert_int_equal(tokenizer_kind(t), TOK_SPM_BPE);
	assert_int_equal(tokenizer_bos(t), 1);
	assert_int_equal(tokenizer_eos(t), 2);
	assert_true(tokenizer_add_bos(t));
	check_wikitext_opt(t, "spm_gguf", false);
	check_cases(t, "spm_gguf", CASE_IDS | CASE_HF_DECODE | CASE_PLAIN);
	/* control tokens are text unless asked for; <s> is one token when asked */
	assert_int_equal(tokenizer_encode(t, "<s>", 3, true, &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 1);
	free(ids);
	/* a whole text gets BOS first, as add_bos_token asks; the rest is encode()'s */
	assert_int_equal(tokenizer_encode(t, s, strlen(s), false, &ids, &n), 0);
	{
		int32_t *full;
		size_t n_full;

		assert_int_equal(tokenizer_encode_text(t, s, strlen(s), false, &full, &n_full), 0);
		assert_int_equal(n_full, n + 1);
		assert_int_equal(full[0], 1);
		assert_memory_equal(full + 1, ids, n * sizeof(*ids));
		free(full);
	}
	free(ids);
	/* user-defined (type 4) pieces are matched even without parse_special */
	assert_int_equal(tokenizer_encode(t, s, strlen(s), false, &ids, &n), 0);
	assert_true(n >= 3);
	assert_int_equal(ids[n - 2], tokenizer_find(t, "<|user|>"));
	free(ids);
	tokenizer_free(t);
	gguf_close(g);
}

/* Hostile tokenizer metadata, built with the GGUF writer: errors, never crashes. */
enum bad_gguf {
	BG_VALID,
	BG_NO_MODEL,
	BG_MODEL_BERT,
	BG_TOKENS_NOT_ARRAY,
	BG_TYPES_SHORT,
	BG_TYPE_9,
	BG_BOS_OOR,
	BG_NO_MERGES,
	BG_MERGE_UNKNOWN,
	BG_MERGE_NO_SPACE,
	BG_PRE_UNKNOWN,
	BG_LLAMA_NO_SCORES,
	BG_DUP_TOKEN,
	BG_COUNT,
};

static int load_bad_gguf(enum bad_gguf which)
{
	static const char *const toks[] = { "a", "b", "ab", "<|x|>", "a" };
	static const char *const merges[] = { "a b" }, *const bad_merge[] = { "a c" },
				 *const nospace[] = { "ab" };
	int32_t types[] = { 1, 1, 1, 3, 9 };
	struct gguf_writer *w = gguf_writer_new();
	struct gguf_file *g = NULL;
	struct tokenizer *t = NULL;
	struct errbuf e = { { 0 } };
	void *img;
	size_t size;
	int ret;

	assert_non_null(w);
	if (which != BG_NO_MODEL)
		assert_int_equal(gguf_writer_add_str(w, "tokenizer.ggml.model",
						     which == BG_MODEL_BERT	   ? "bert"
						     : which == BG_LLAMA_NO_SCORES ? "llama"
										   : "gpt2",
						     which == BG_MODEL_BERT
							     ? 4
							     : 5 - (which != BG_LLAMA_NO_SCORES)),
				 0);
	if (which == BG_TOKENS_NOT_ARRAY)
		assert_int_equal(gguf_writer_add_str(w, "tokenizer.ggml.tokens", "a", 1), 0);
	else
		assert_int_equal(gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, NULL,
							 which == BG_DUP_TOKEN ? 5 : 4),
				 0);
	if (which == BG_TYPE_9)
		types[1] = 9;
	assert_int_equal(gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types,
					     which == BG_TYPES_SHORT ? 3
					     : which == BG_DUP_TOKEN ? 5
								     : 4),
			 0);
	if (which != BG_NO_MERGES)
		assert_int_equal(gguf_writer_add_str_arr(w, "tokenizer.ggml.merges",
							 which == BG_MERGE_UNKNOWN    ? bad_merge
							 : which == BG_MERGE_NO_SPACE ? nospace
										      : merges,
							 NULL, 1),
				 0);
	assert_int_equal(
		gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", which == BG_BOS_OOR ? 4 : 3),
		0);
	if (which == BG_PRE_UNKNOWN)
		assert_int_equal(gguf_writer_add_str(w, "tokenizer.ggml.pre", "klingon", 7), 0);
	assert_int_equal(gguf_writer_write_mem(w, &img, &size), 0);
	gguf_writer_free(w);
	assert_int_equal(gguf_open_mem(img, size, &g, NULL), 0);
	ret = tokenizer_from_gguf(g, &t, &e);
	if (ret) {
		assert_null(t);
		assert_true(e.msg[0] != 0);
	} else {
		int32_t *ids;
		size_t n;

		assert_int_equal(tokenizer_encode(t, "ab<|x|>", 7, true, &ids, &n), 0);
		assert_int_equal(n, 2);
		assert_int_equal(ids[0], 2);
		assert_int_equal(ids[1], 3);
		free(ids);
	}
	tokenizer_free(t);
	gguf_close(g);
	free(img);
	return ret;
}

static void test_bad_gguf_tokenizer_is_rejected(void **state)
{
	static const int want[BG_COUNT] = {
		[BG_VALID] = 0,
		[BG_NO_MODEL] = -EBADMSG,
		[BG_MODEL_BERT] = -EOPNOTSUPP,
		[BG_TOKENS_NOT_ARRAY] = -EBADMSG,
		[BG_TYPES_SHORT] = -EBADMSG,
		[BG_TYPE_9] = -EBADMSG,
		[BG_BOS_OOR] = -EBADMSG,
		[BG_NO_MERGES] = -EBADMSG,
		[BG_MERGE_UNKNOWN] = -EBADMSG,
		[BG_MERGE_NO_SPACE] = -EBADMSG,
		[BG_PRE_UNKNOWN] = -EOPNOTSUPP,
		[BG_LLAMA_NO_SCORES] = -EBADMSG,
		[BG_DUP_TOKEN] = -EBADMSG,
	};

	for (int i = 0; i < BG_COUNT; i++) {
		int ret = load_bad_gguf((enum bad_gguf)i);

		if (ret != want[i])
			fail_msg("case %d: got %d, want %d", i, ret, want[i]);
	}
}

/* BOS/EOS/add_bos from a tokenizer_config.json beside tokenizer.json. */
static void test_hf_json_reads_tokenizer_config(void **state)
{
	char dir[] = "/tmp/tok-cfg-XXXXXX", path[128];
	const char *cfg = "{\"bos_token\":{\"content\":\"</s>\",\"lstrip\":false},"
			  "\"eos_token\":\"<unk>\",\"add_bos_token\":false}";
	size_t len;
	char *json = slurp(FIX "spm_bpe.json", &len);
	struct tokenizer *t;
	FILE *f;

	assert_non_null(json);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(json, 1, len, f), len);
	fclose(f);
	t = from_json(path);
	assert_int_equal(tokenizer_bos(t), 1); /* from the post-processor */
	assert_true(tokenizer_add_bos(t));
	tokenizer_free(t);
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	fputs(cfg, f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	t = from_json(path);
	assert_int_equal(tokenizer_bos(t), 2);
	assert_int_equal(tokenizer_eos(t), 0);
	assert_false(tokenizer_add_bos(t));
	tokenizer_free(t);
	unlink(path);
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	unlink(path);
	rmdir(dir);
	free(json);
}

int test_tokenizer_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gpt2_wikitext_matches_hf),
		cmocka_unit_test(test_gpt2_tricky_strings_match_hf),
		cmocka_unit_test(test_gpt2_special_tokens_only_when_asked),
		cmocka_unit_test(test_encode_rejects_invalid_utf8_and_bad_ids),
		cmocka_unit_test(test_gpt2_missing_files_fail_cleanly),
		cmocka_unit_test(test_llama3_regex_preset_matches_hf),
		cmocka_unit_test(test_qwen2_regex_preset_matches_hf),
		cmocka_unit_test(test_spm_wikitext_matches_hf),
		cmocka_unit_test(test_spm_tricky_strings_and_byte_fallback_match_hf),
		cmocka_unit_test(test_spm_metaspace_layout_matches_hf),
		cmocka_unit_test(test_bad_tokenizer_json_is_rejected),
		cmocka_unit_test(test_split_behaviors),
		cmocka_unit_test(test_added_token_never_splits_a_character),
		cmocka_unit_test(test_smollm2_gguf_wikitext_matches_hf),
		cmocka_unit_test(test_spm_gguf_matches_sentencepiece),
		cmocka_unit_test(test_bad_gguf_tokenizer_is_rejected),
		cmocka_unit_test(test_hf_json_reads_tokenizer_config),
	};
	return cmocka_run_group_tests_name("engine/tokenizer", tests, NULL, NULL);
}

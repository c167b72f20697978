#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate the tokenizer reference fixtures under tests/fixtures/tokenizer/ with PyPI `tokenizers`.

Dev script only: the C tests read the committed fixtures and never run Python.

    python3 tools/ref_tokenize.py [--shared ../shared] [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

Tokenizers covered:
  gpt2     ../shared/data/tokenizers/gpt2/{encoder.json,vocab.bpe}, ByteLevel(add_prefix_space=False),
           <|endoftext|> as a special added token (as GPT2TokenizerFast does).
  smollm2  vocab/merges/token types read from the GGUF with PyPI `gguf`; pre-tokenizer
           Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)] as in the
           HuggingFaceTB/SmolLM2 tokenizer.json (llama.cpp calls it pre = "smollm"); control tokens
           (GGUF token_type 3) are special added tokens.
  spm      a small SentencePiece-style BPE with byte fallback trained here on
           ../shared/data/calib/wiki-passages.txt and saved as spm_bpe.json (LLaMA-2 layout:
           normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, <0xNN> byte tokens).
  spm_meta the same model with the newer layout: no normalizer, Metaspace pre-tokenizer
           (prepend_scheme "first", split false), saved as spm_bpe_meta.json.

Files written per tokenizer NAME:
  NAME_wikitext.txt  ids of the WikiText-2 test text (rows of wiki.test.rows.txt joined with "\n\n",
                     no trailing separator), encoded without adding special tokens:
                       count <n>
                       sha256 <hex digest of the ids as consecutive little-endian uint32>
                       first <up to 256 ids>
                       last <up to 256 ids>
  NAME_cases.tsv     one tricky string per line: hex(utf-8 text) TAB ids (space separated, may be
                     empty) TAB hex(utf-8 of HF decode(ids, skip_special_tokens=False)).
                     Added/special tokens in the text are matched (HF's default).
"""

import argparse
import hashlib
import json
import os
import struct
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

CASES = [
    "Hello world",
    " leading space",
    "trailing space ",
    "multiple   spaces   between",
    "tabs\tand\nnewlines\n\n\nend",
    "  \n  \n",
    "\n",
    " ",
    "    ",
    "a  b   c    d",
    "12345 and 3.14159 and 1,000,000 and 2024-01-01",
    "I'm can't won't they're we've I'll he'd",
    "CAPS'S DON'T 'quoted' ''",
    "naïve café résumé Ünïcödé Ωmega",
    "日本語のテキストです。",
    "中文测试，标点符号！",
    "한국어 텍스트",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧 flags 🇫🇷",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "a<|endoftext|>b <|endoftext|> c",
    "x \u0085y nel",
    "nbsp\u00a0here and\u2028line sep\u3000ideographic",
    "٣٤ arabic digits ½ fraction Ⅻ roman ²³",
    "\r\n windows\r\nline",
    "...!!!???;;;",
    "$%^&*()_+-=[]{}|\\:\";'<>?,./~`",
    "http://example.com/path?q=1&r=2#frag",
    " = Robert Boulter = \n\n Robert Boulter is an English film , television and theatre actor .",
    "@-@ @,@ @.@ unk <unk> <s> </s>",
    "tab\t\tx \t y",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ",
    "Ġ Ċ ▁ special-looking chars",
    "<0x41> <0xFF> byte-token-looking",
    "zero\u200bwidth\u200cjoiner",
    "e\u0301 combining acute",
    "\U0001F600\U0001F600\U0001F600",
    "longwordwithoutanyspacesatallsupercalifragilisticexpialidocious",
    "0123456789",
    "x" * 300,
]



def to_hex(path):
    """Fixtures are text in git: replace a binary file by its `xxd -p` dump (path + ".hex");
    tests/fixtures/module.mk decodes it into build/fixtures/."""
    data = open(path, "rb").read()
    with open(path + ".hex", "w") as f:
        for i in range(0, len(data), 30):
            f.write(data[i:i + 30].hex() + "\n")
    os.remove(path)

def wikitext(shared):
    with open(os.path.join(shared, "data/wikitext-2/wiki.test.rows.txt"), encoding="utf-8") as f:
        data = f.read()
    if data.endswith("\n"):
        data = data[:-1]
    return "\n\n".join(data.split("\n"))


def ids_digest(ids):
    return hashlib.sha256(b"".join(struct.pack("<I", i) for i in ids)).hexdigest()


def write_wikitext(out, name, tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    path = os.path.join(out, name + "_wikitext.txt")
    with open(path, "w") as f:
        f.write("count %d\n" % len(ids))
        f.write("sha256 %s\n" % ids_digest(ids))
        f.write("first %s\n" % " ".join(map(str, ids[:256])))
        f.write("last %s\n" % " ".join(map(str, ids[-256:])))
    print("%s: %d tokens, sha256 %s" % (name, len(ids), ids_digest(ids)))


def write_cases(out, name, tok, cases):
    path = os.path.join(out, name + "_cases.tsv")
    with open(path, "w") as f:
        for c in cases:
            ids = tok.encode(c, add_special_tokens=False).ids
            dec = tok.decode(ids, skip_special_tokens=False)
            f.write("%s\t%s\t%s\n" % (c.encode().hex(), " ".join(map(str, ids)), dec.encode().hex()))


def gpt2_tokenizer(shared):
    d = os.path.join(shared, "data/tokenizers/gpt2")
    tok = Tokenizer(models.BPE.from_file(os.path.join(d, "encoder.json"), os.path.join(d, "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    return tok


def smollm2_tokenizer(model):
    from gguf import GGUFReader

    r = GGUFReader(model)

    def strs(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def scalar_str(key):
        f = r.fields[key]
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    assert scalar_str("tokenizer.ggml.model") == "gpt2"
    assert scalar_str("tokenizer.ggml.pre") == "smollm"
    tokens = strs("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strs("tokenizer.ggml.merges")]
    tt = r.fields["tokenizer.ggml.token_type"]
    types = [int(tt.parts[i][0]) for i in tt.data]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    )
    return tok


def train_spm(shared):
    """Train a ~1000-token BPE with byte fallback; return the LLaMA-2-layout tokenizer.json dict."""
    with open(os.path.join(shared, "data/calib/wiki-passages.txt"), encoding="utf-8") as f:
        passages = [l.rstrip("\n") for l in f]
    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tr = trainers.BpeTrainer(vocab_size=740, limit_alphabet=90, special_tokens=[], show_progress=False)
    t.train_from_iterator(passages, trainer=tr)
    trained = json.loads(t.to_str())
    tvocab = sorted(trained["model"]["vocab"].items(), key=lambda kv: kv[1])
    merges = trained["model"]["merges"]
    # LLaMA layout: <unk> <s> </s>, then the 256 byte tokens, then the learned pieces.
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece, _ in tvocab:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    added = [
        {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, s in enumerate(["<unk>", "<s>", "</s>"])
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "\u2581"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
            ],
        },
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def spm_meta_variant(j):
    j = json.loads(json.dumps(j))
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    return j


SPM_EXTRA_CASES = [
    "byte fallback: ø ß ğ Ł ж 𝔘 🙂 ♞",
    "<s>start with bos</s> and <unk>",
    "the the the   the",
    " two  leading",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("SHIFTADD_SHARED", "../shared"))
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", default="tests/fixtures/tokenizer")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    text = wikitext(a.shared)
    print("wikitext: %d chars, %d bytes" % (len(text), len(text.encode())))

    tok = gpt2_tokenizer(a.shared)
    write_wikitext(a.out, "gpt2", tok, text)
    write_cases(a.out, "gpt2", tok, CASES)

    tok = smollm2_tokenizer(a.model)
    write_wikitext(a.out, "smollm2", tok, text)
    write_cases(a.out, "smollm2", tok, CASES)

    spm = train_spm(a.shared)
    for name, j in (("spm", spm), ("spm_meta", spm_meta_variant(spm))):
        s = json.dumps(j, ensure_ascii=False, separators=(",", ":"))
        with open(os.path.join(a.out, name.replace("spm", "spm_bpe") + ".json"), "w", encoding="utf-8") as f:
            f.write(s + "\n")
        tok = Tokenizer.from_str(s)
        write_wikitext(a.out, name, tok, text)
        write_cases(a.out, name, tok, CASES + SPM_EXTRA_CASES)
    # The GPT-2 vocabulary behind the LLaMA-3 and Qwen2 pre-tokenizers (GGUF pre "llama-bpe" /
    # "qwen2"): checks those regexes and ignore_merges without shipping another vocabulary.
    for name, regex, ignore in (("gpt2_llama3", RE_LLAMA3, True), ("gpt2_qwen2", RE_QWEN2, False)):
        tok = gpt2_variant(a.shared, regex, ignore)
        write_wikitext(a.out, name, tok, text)
        write_cases(a.out, name, tok, CASES + REGEX_EXTRA_CASES)

    write_spm_gguf(a.shared, a.out, text)
    return 0


RE_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
RE_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
REGEX_EXTRA_CASES = ["I'M HE'S SHE'LL", "1234567 99 7", "x\r\n\r\ny", "foo!!\n\nbar", " \n \n"]


def gpt2_variant(shared, regex, ignore_merges):
    from tokenizers import Regex

    d = os.path.join(shared, "data/tokenizers/gpt2")
    vocab, merges = models.BPE.read_file(os.path.join(d, "encoder.json"), os.path.join(d, "vocab.bpe"))
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    return tok


def write_spm_gguf(shared, out, text):
    """A real SentencePiece BPE model (LLaMA-style trainer options) as GGUF tokenizer metadata.

    The reference here is the sentencepiece library itself (the C side merges by piece score,
    as SentencePiece does), not HF: ids from sp.encode(text), no BOS, "<s>"-like text is
    plain text (encode with parse_special = false).
    """
    import io

    import numpy as np
    import sentencepiece as spm
    from gguf import GGUFWriter

    m = io.BytesIO()
    spm.SentencePieceTrainer.train(
        input=os.path.join(shared, "data/calib/wiki-passages.txt"), model_writer=m, vocab_size=1000,
        model_type="bpe", byte_fallback=True, character_coverage=0.995,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, split_digits=True, input_sentence_size=3000,
        num_threads=1, minloglevel=2, user_defined_symbols=["<|user|>"],
    )
    sp = spm.SentencePieceProcessor(model_proto=m.getvalue())
    n = sp.get_piece_size()
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_unused(i):
            types.append(5)
        elif sp.is_byte(i):
            types.append(6)
        elif tokens[-1] == "<|user|>":
            types.append(4)
        else:
            types.append(1)
    path = os.path.join(out, "spm_gguf.gguf")
    w = GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([float(np.float32(x)) for x in scores])
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    sp_gguf_path = path

    class SpTok:
        def encode(self, s, add_special_tokens=False):
            class R:
                pass

            r = R()
            r.ids = sp.encode(s)
            return r

        def decode(self, ids, skip_special_tokens=False):
            return sp.decode(ids)

    write_wikitext(out, "spm_gguf", SpTok(), text)
    write_cases(out, "spm_gguf", SpTok(), CASES + SPM_EXTRA_CASES + ["a<|user|>b <|user|>"])
    to_hex(sp_gguf_path)


if __name__ == "__main__":
    sys.exit(main())

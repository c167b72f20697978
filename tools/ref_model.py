#!/usr/bin/env python3
"""Reference logits from PyPI `transformers` (CPU) for the engine's tests.

The references are computed in float64 from the float32 weights: transformers' own float32
logits for SmolLM2 are up to 1.3e-4 away from the float64 ones (30 layers of f32 rounding),
which would hide whether our f32 engine is within 1e-4 of the exact model. `--dtype float32`
writes the float32 reference instead (for the side-by-side record in bench/results/).

Dev tool only: the C test suite reads the fixtures this writes and never runs Python.

  tools/ref_model.py tiny   -> tests/fixtures/engine/tiny-{llama,qwen2,gemma3,opt}/{config.json,ref.txt}
  tools/ref_model.py smollm -> tests/fixtures/engine/smollm2-logits.txt
  tools/ref_model.py tiny-NAME  -> that tiny model only

Tiny models get seeded pseudo-random weights from a generator that the C test reimplements
(splitmix64 per tensor, seeded with FNV-1a of the tensor name), so no weight file is
committed: the fixture lists each tensor's name, shape, scale and offset, the C test rebuilds
the same weights, writes them as safetensors and loads them through the real loader.

ref.txt format (whitespace separated, '#' comments):
  tensor NAME SCALE OFFSET D0 [D1]       one line per weight tensor, in file order
  seq ID ID ...                          a token sequence
  pos P LSE ARGMAX                       position P of the previous seq: logsumexp, argmax
  logit IDX VALUE ...                    logits at probe vocab indices for that position
"""
import json
import math
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "engine")
MASK = (1 << 64) - 1


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & MASK
    return h


def splitmix_values(name, n, scale, offset):
    """n float32 values: ((u24 / 2^24) - 0.5) * 2 * scale + offset, u24 the top 24 bits."""
    s = fnv1a64(name)
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        s = (s + 0x9E3779B97F4A7C15) & MASK
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        u = (z >> 40) / 16777216.0
        out[i] = np.float32((u - 0.5) * 2.0 * scale + offset)
    return out


def scale_for(name, shape):
    if len(shape) == 1:
        if "norm" in name:
            return 0.2, 1.0
        return 0.1, 0.0
    if "embed" in name:
        return 1.0, 0.0
    return 1.0 / math.sqrt(shape[1]), 0.0


def probe_ids(vocab, n, seed):
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(vocab, size=min(n, vocab), replace=False).tolist())


DTYPE = torch.float64


def write_logits(f, model, seqs, vocab, n_probe):
    probes = probe_ids(vocab, n_probe, 1234)
    model = model.to(DTYPE)
    for seq in seqs:
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0].double()
        f.write("seq " + " ".join(map(str, seq)) + "\n")
        for p in range(len(seq)):
            row = logits[p]
            lse = torch.logsumexp(row, 0).item()
            f.write(f"pos {p} {lse:.9g} {int(row.argmax())}\n")
            f.write("logit " + " ".join(f"{i} {row[i].item():.9g}" for i in probes) + "\n")


TINY = {
    "tiny-llama": dict(
        model_type="llama", vocab_size=256, hidden_size=64, intermediate_size=160,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=32)),
    "tiny-qwen2": dict(
        model_type="qwen2", vocab_size=256, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True),
    # sliding layers around a full one (window 6, so the 17- and 40-token sequences reach past
    # it), head_dim != hidden / heads, query_pre_attn_scalar != head_dim, GQA
    "tiny-gemma3": dict(
        model_type="gemma3_text", vocab_size=256, hidden_size=64, intermediate_size=128,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=128, rms_norm_eps=1e-6, sliding_window=6,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        query_pre_attn_scalar=24, hidden_activation="gelu_pytorch_tanh",
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
        tie_word_embeddings=True),
    "tiny-opt": dict(
        model_type="opt", vocab_size=256, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=128, word_embed_proj_dim=64,
        do_layer_norm_before=True, activation_function="relu", enable_bias=True,
        tie_word_embeddings=True),
}


def build_tiny(name, cfg):
    from transformers import AutoConfig, AutoModelForCausalLM

    conf = AutoConfig.for_model(**cfg)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(conf, dtype=torch.float32).eval()
    sd = model.state_dict()
    tensors = []
    tied = set()
    if conf.tie_word_embeddings:
        tied.add("lm_head.weight")
    for key in sorted(sd.keys()):
        if key in tied:
            continue
        shape = list(sd[key].shape)
        scale, offset = scale_for(key, shape)
        vals = splitmix_values(key, int(np.prod(shape)), scale, offset).reshape(shape)
        sd[key] = torch.from_numpy(vals)
        tensors.append((key, scale, offset, shape))
    model.load_state_dict(sd, strict=False)
    if conf.tie_word_embeddings:
        model.tie_weights()
    d = os.path.join(FIX, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg | {"architectures": [type(model).__name__]}, f, indent=1, sort_keys=True)
    rng = np.random.default_rng(7)
    seqs = [rng.integers(0, cfg["vocab_size"], size=n).tolist() for n in (5, 17, 40)]
    with open(os.path.join(d, "ref.txt"), "w") as f:
        f.write(f"# {name}: transformers {__import__('transformers').__version__}, "
                f"torch {torch.__version__}, {DTYPE} CPU; written by tools/ref_model.py\n")
        for key, scale, offset, shape in tensors:
            f.write(f"tensor {key} {scale:.9g} {offset:.9g} " + " ".join(map(str, shape)) + "\n")
        write_logits(f, model, seqs, cfg["vocab_size"], 48)
    print(f"wrote {d}")


SMOL_PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
    " = Robert Boulter = \n\n Robert Boulter is an English film , television and theatre "
    "actor . He had a guest @-@ starring role on the television series The Bill in 2000 .",
]


def build_smollm():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, f = os.path.join(ROOT, "models"), "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    seqs = [tok(p)["input_ids"] for p in SMOL_PROMPTS]
    out = os.path.join(FIX, "smollm2-logits.txt" if DTYPE == torch.float64 else
                       "smollm2-logits-f32.txt")
    with open(out, "w") as fh:
        fh.write(f"# SmolLM2-135M-Instruct.Q4_1.gguf dequantized, transformers "
                 f"{__import__('transformers').__version__}, torch {torch.__version__}, "
                 f"{DTYPE} CPU; written by tools/ref_model.py smollm\n")
        write_logits(fh, model, seqs, model.config.vocab_size, 64)
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    args = [a for a in sys.argv[1:] if not a.startswith("--dtype")]
    if "--dtype=float32" in sys.argv:
        DTYPE = torch.float32
    what = args[0] if args else "all"
    if what in ("tiny", "all"):
        for n, c in TINY.items():
            build_tiny(n, c)
    elif what in TINY:
        build_tiny(what, TINY[what])
    if what in ("smollm", "all"):
        build_smollm()

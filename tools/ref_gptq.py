#!/usr/bin/env python3
"""Independent GPTQ (uniform asymmetric, per-row or grouped) of a GGUF model with PyPI torch.

Dev tool: a reference point for `shiftadd convert --method gptq|rtn`, written from the GPTQ
paper's algorithm (Frantar et al. 2022) without sharing any code with reparam/. It loads the
model with `transformers`, calibrates block by block true-sequentially (q/k/v, o, gate/up,
down), quantizes every linear layer, and prints the WikiText-2 perplexity of the result on the
first WINDOWS windows of the token ids written by `shiftadd eval ppl --dump-ids`.

  tools/ref_gptq.py --ids ids.txt [--bits 3] [--group 0] [--nsamples 16] [--seqlen 2048]
                    [--windows 4] [--rtn] [--no-act-order]

Calibration windows are drawn from ../shared/data/calib/wiki-passages.txt (rows joined with
"\\n\\n", tokenized by transformers' GGUF tokenizer) at offsets from numpy's seeded generator,
so they are not the same windows as shiftadd's: compare perplexities, not bits.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quant_rows(w, scale, zero, maxq):
    q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
    return scale * (q - zero)


def fit_rows(w, maxq):
    lo = torch.clamp(w.min(1).values, max=0)
    hi = torch.clamp(w.max(1).values, min=0)
    same = lo == hi
    lo[same], hi[same] = -1, 1
    scale = (hi - lo) / maxq
    zero = torch.round(-lo / scale)
    return scale[:, None], zero[:, None]


def gptq(W, H, bits, group, act_order, damp=0.01, block=128):
    """Quantize W [n][k] given H [k][k] (both float64); returns the dequantized W."""
    W = W.clone()
    n, k = W.shape
    maxq = 2 ** bits - 1
    dead = torch.diag(H) == 0
    H = H.clone()
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(k)
    W, H = W[:, perm], H[perm][:, perm]
    H += damp * torch.mean(torch.diag(H)) * torch.eye(k, dtype=H.dtype)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    scale, zero = fit_rows(W, maxq) if not group else (None, None)
    for b0 in range(0, k, block):
        b1 = min(b0 + block, k)
        W1, E1 = W[:, b0:b1].clone(), torch.zeros(n, b1 - b0, dtype=W.dtype)
        for j in range(b1 - b0):
            c = b0 + j
            if group and c % group == 0:
                # as the GPTQ reference: fit on W as it stood at the start of the block
                scale, zero = fit_rows(W[:, c:c + group], maxq)
            w = W1[:, j]
            q = quant_rows(w[:, None], scale, zero, maxq)[:, 0]
            Q[:, c] = q
            e = (w - q) / U[c, c]
            W1[:, j:] -= e[:, None] * U[c, c:b1][None, :]
            E1[:, j] = e
        W[:, b0:b1] = W1
        W[:, b1:] -= E1 @ U[b0:b1, b1:]
    inv = torch.argsort(perm)
    return Q[:, inv]


def rtn(W, bits):
    maxq = 2 ** bits - 1
    scale, zero = fit_rows(W, maxq)
    return quant_rows(W, scale, zero, maxq)


def run(layer, x, rope, pos):
    out = layer(x, position_embeddings=rope, attention_mask=None, position_ids=pos)
    return out[0] if isinstance(out, tuple) else out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models"))
    ap.add_argument("--gguf", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--calib", default=os.path.join(ROOT, "..", "shared", "data", "calib",
                                                    "wiki-passages.txt"))
    ap.add_argument("--ids", required=True)
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--group", type=int, default=0)
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rtn", action="store_true")
    ap.add_argument("--no-act-order", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()

    model = AutoModelForCausalLM.from_pretrained(a.model_dir, gguf_file=a.gguf,
                                                 dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    layers = model.model.layers
    if a.rtn:
        for layer in layers:
            for mod in layer.modules():
                if isinstance(mod, torch.nn.Linear):
                    mod.weight.data = rtn(mod.weight.data.double(), a.bits).float()
    else:
        tok = AutoTokenizer.from_pretrained(a.model_dir, gguf_file=a.gguf)
        rows = open(a.calib, encoding="utf-8").read().split("\n")
        ids = tok("\n\n".join(r for r in rows if r))["input_ids"]
        rng = np.random.default_rng(a.seed)
        offs = rng.integers(0, len(ids) - a.seqlen, a.nsamples)
        calib = torch.tensor([ids[o:o + a.seqlen] for o in offs])
        groups = [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
                  ["self_attn.o_proj"], ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]
        with torch.no_grad():
            x = model.model.embed_tokens(calib)
            pos = torch.arange(a.seqlen)[None]
            rope = model.model.rotary_emb(x, pos)
            for li, layer in enumerate(layers):
                mods = dict(layer.named_modules())
                for g in groups:
                    Hs = {}

                    def hook(name):
                        def f(mod, inp, out):
                            X = inp[0].reshape(-1, inp[0].shape[-1]).double()
                            Hs[name] = Hs.get(name, 0) + X.T @ X
                        return f
                    hs = [mods[n].register_forward_hook(hook(n)) for n in g]
                    for s in range(a.nsamples):
                        run(layer, x[s:s + 1], rope, pos)
                    for h in hs:
                        h.remove()
                    for n in g:
                        H = 2 * Hs[n] / (a.nsamples * a.seqlen)
                        W = mods[n].weight.data.double()
                        mods[n].weight.data = gptq(W, H, a.bits, a.group,
                                                   not a.no_act_order).float()
                x = torch.cat([run(layer, x[s:s + 1], rope, pos) for s in range(a.nsamples)])
                print(f"\rlayer {li + 1}/{len(layers)} {time.time() - t0:.0f} s", end="",
                      file=sys.stderr, flush=True)
        print(file=sys.stderr)
    ids = [int(v) for v in open(a.ids)]
    nll, n_pred = 0.0, 0
    for w in range(a.windows):
        x = torch.tensor([ids[w * a.seqlen:(w + 1) * a.seqlen]])
        with torch.no_grad():
            lp = torch.log_softmax(model(x).logits[0, :-1].double(), dim=-1)
        nll -= lp.gather(1, x[0, 1:, None]).sum().item()
        n_pred += a.seqlen - 1
    print(json.dumps(dict(method="rtn" if a.rtn else "gptq", bits=a.bits, group=a.group,
                          nsamples=a.nsamples, windows=a.windows, ppl=math.exp(nll / n_pred),
                          seconds=time.time() - t0)))


if __name__ == "__main__":
    main()

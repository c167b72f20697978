#!/usr/bin/env python3
"""WikiText-2 perplexity of a GGUF model with PyPI `transformers` (CPU, float32).

Dev tool: the reference for `shiftadd eval ppl`. Same protocol as ../shared/data/README.md:
rows joined with "\\n\\n", tokenized once, non-overlapping windows of SEQLEN tokens, last partial
window dropped, no BOS, PPL = exp(mean NLL over the SEQLEN-1 predicted positions per window).
--bos puts the model's BOS before each window, unscored, as `shiftadd eval ppl --bos` does
(Gemma needs it).

  tools/ref_ppl.py [--gguf FILE] [--ids FILE] [--seqlen 2048] [--limit-windows N] [--bos]
                   [--json OUT]

--ids reads the token ids (one per line, e.g. from `shiftadd eval ppl --dump-ids`) so both
sides score identical windows; without it the text is tokenized with the tokenizer that
transformers builds from the GGUF file.
"""
import argparse
import hashlib
import json
import math
import os
import struct
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models"))
    ap.add_argument("--gguf", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "wikitext-2",
                                                   "wiki.test.rows.txt"))
    ap.add_argument("--ids")
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--limit-windows", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bos", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    if a.ids:
        ids = [int(x) for x in open(a.ids)]
        source = f"ids from {a.ids}"
    else:
        rows = open(a.data, encoding="utf-8").read().split("\n")
        if rows and rows[-1] == "":
            rows.pop()
        text = "\n\n".join(rows)
        tok = AutoTokenizer.from_pretrained(a.model_dir, gguf_file=a.gguf)
        ids = tok(text)["input_ids"]
        source = "transformers GGUF tokenizer"
    sha = hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).hexdigest()
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, gguf_file=a.gguf,
                                                 dtype=torch.float32).eval()
    n_win = len(ids) // a.seqlen
    if a.limit_windows:
        n_win = min(n_win, a.limit_windows)
    nll, n_pred, t0 = 0.0, 0, time.time()
    bos = [model.config.bos_token_id] if a.bos else []
    for w in range(n_win):
        x = torch.tensor([bos + ids[w * a.seqlen:(w + 1) * a.seqlen]])
        with torch.no_grad():
            logits = model(x).logits[0].double()
        lp = torch.log_softmax(logits[len(bos):-1], dim=-1)
        nll -= lp.gather(1, x[0, len(bos) + 1:, None]).sum().item()
        n_pred += a.seqlen - 1
        print(f"\rwindow {w + 1}/{n_win} ppl so far {math.exp(nll / n_pred):.4f}",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    res = dict(ppl=math.exp(nll / n_pred), nll_mean=nll / n_pred, windows=n_win,
               seqlen=a.seqlen, bos=a.bos, predicted_tokens=n_pred, text_tokens=len(ids),
               ids_sha256=sha, ids_source=source, seconds=time.time() - t0,
               transformers=__import__("transformers").__version__, torch=torch.__version__)
    print(json.dumps(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()

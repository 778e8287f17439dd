"""A decode step of vdeploy and of vLLM at the same batch and context, timed and profiled the same way (issue 15:
where the throughput gap is, kernel by kernel).

Each engine runs B random prompts of P tokens twice, to K1 and to K2 output tokens (ignore_eos, temperature 1.0 as
vLLM's `bench throughput` samples; fresh prompts every run, so no prefix-cache hit makes one run cheaper). Both runs
prefill the same way, so the difference is K2 - K1 decode steps at B rows and context P + K1 .. P + K2:
  - wall time: (t(K2) - t(K1)) / (K2 - K1) per step, the engine's host work and launches included;
  - device time per kernel under the torch profiler (CUDA activity only; kernels inside CUDA graphs are reported
    one by one), the K2 run's totals minus the K1 run's, per step, in deepseek_kernel_profile's kernel families.

    # vdeploy (the repository on PYTHONPATH)
    python3 benchmarks/engine/decode_step_compare.py --engine vdeploy --model /tmp/peer/models/dsv2-lite-dummy \
      --out a.json
    # vLLM 0.26 from the peer bundle, its engine core in this process (the profiler sees its kernels)
    PYTHONPATH=/tmp/peer/site:$PYTHONPATH VLLM_ENABLE_V1_MULTIPROCESSING=0 \
      python3 benchmarks/engine/decode_step_compare.py --engine vllm --model /tmp/peer/models/dsv2-lite-dummy \
      --out b.json

Both engines use their defaults otherwise (vLLM: torch.compile, piecewise CUDA graphs, async scheduling; vdeploy:
its CUDA graphs and asynchronous loop) and vLLM's dummy weight draw (vdeploy: --dummy-weights uniform). vLLM's wall
time here is pessimistic: in-process, its engine core and its output processing share one interpreter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from deepseek_kernel_profile import kernel_table  # noqa: E402  (the same kernel families for both engines)


class Engine:
    """generate(prompts, max_tokens) -> output tokens, for either engine."""

    def __init__(self, name: str, model: str, max_model_len: int):
        self.name = name
        if name == "vllm":
            from vllm import LLM, SamplingParams

            self._llm = LLM(model=model, load_format="dummy", dtype="bfloat16", max_model_len=max_model_len, seed=0)
            self._params = lambda n: SamplingParams(temperature=1.0, max_tokens=n, ignore_eos=True)
            self._prompt = lambda ids: {"prompt_token_ids": ids}
        else:
            from vdeploy.engine.llm import LLM
            from vdeploy.engine.sampling_params import SamplingParams

            self._llm = LLM(model, load_format="dummy", dummy_weights="uniform", max_model_len=max_model_len, seed=0)
            self._params = lambda n: SamplingParams(temperature=1.0, max_tokens=n, ignore_eos=True)
            self._prompt = lambda ids: ids

    def generate(self, prompts: list[list[int]], max_tokens: int) -> int:
        kw = {"use_tqdm": False} if self.name == "vllm" else {}
        outs = self._llm.generate([self._prompt(p) for p in prompts], self._params(max_tokens), **kw)
        return sum(len(o.outputs[0].token_ids) for o in outs)


def prompts_for(run: int, batch: int, length: int, vocab: int) -> list[list[int]]:
    rng = random.Random(1000 + run)
    return [[rng.randrange(10, vocab) for _ in range(length)] for _ in range(batch)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=["vdeploy", "vllm"], required=True)
    ap.add_argument("--model", required=True, help="a model directory (config.json + tokenizer; dummy weights)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--prompt-len", type=int, default=1000)
    ap.add_argument("--k1", type=int, default=16)
    ap.add_argument("--k2", type=int, default=80)
    ap.add_argument("--vocab", type=int, default=100000, help="prompt token ids are drawn below this")
    ap.add_argument("--git-rev", default="unknown")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    t0 = time.perf_counter()
    engine = Engine(args.engine, args.model, max_model_len=2048)
    start_s = time.perf_counter() - t0
    steps = args.k2 - args.k1
    engine.generate(prompts_for(0, args.batch, args.prompt_len, args.vocab), 8)  # warm-up: every graph and compile

    wall = {}
    for run, k in ((1, args.k1), (2, args.k2)):
        sync()
        t = time.perf_counter()
        tokens = engine.generate(prompts_for(run, args.batch, args.prompt_len, args.vocab), k)
        sync()
        wall[k] = time.perf_counter() - t
        assert tokens == args.batch * k, (tokens, args.batch * k)

    tables = {args.k1: [], args.k2: []}
    for run, k in ((3, args.k1), (4, args.k2)) if torch.cuda.is_available() else ():  # CPU: a smoke run, no kernels
        prompts = prompts_for(run, args.batch, args.prompt_len, args.vocab)
        tables[k] = kernel_table(lambda: engine.generate(prompts, k))[0]
    per_step = {}
    for k, sign in ((args.k2, 1.0), (args.k1, -1.0)):
        for row in tables[k]:
            entry = per_step.setdefault(row["kernel"], {"kernel": row["kernel"], "family": row["family"], "us": 0.0,
                                                         "n": 0})
            entry["us"] += sign * row["us"] / steps
            entry["n"] += int(sign) * row["n"]
    kernels = sorted((dict(r, us=round(r["us"], 2), n=r["n"] / steps) for r in per_step.values()
                      if abs(r["us"]) >= 0.5), key=lambda r: -r["us"])
    families: dict[str, float] = {}
    for r in kernels:
        families[r["family"]] = round(families.get(r["family"], 0.0) + r["us"], 2)

    report = {
        "benchmark": "decode_step_compare", "engine": args.engine, "model": Path(args.model).name,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "git_revision": args.git_rev if args.engine == "vdeploy" else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "batch": args.batch, "prompt_len": args.prompt_len, "k1": args.k1, "k2": args.k2,
        "engine_start_s": round(start_s, 1), "wall_s": {str(k): round(v, 3) for k, v in wall.items()},
        "wall_ms_per_decode_step": round(1e3 * (wall[args.k2] - wall[args.k1]) / steps, 3),
        "device_ms_per_decode_step": round(sum(r["us"] for r in kernels) / 1e3, 3),
        "families_us_per_step": dict(sorted(families.items(), key=lambda kv: -kv[1])),
        "top_kernels_per_step": kernels[:40],
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("engine", "gpu", "engine_start_s", "wall_ms_per_decode_step",
                                              "device_ms_per_decode_step", "families_us_per_step")}))


if __name__ == "__main__":
    main()

"""Where `prefill_8x4096`'s time goes (issue 14): the benchmark's workload through LLM.generate (N fresh prompts of L
random tokens, one output token each), timed, then once more under the torch profiler. Reports the wall time, the
device time of every kernel grouped into families (the DeepSeek profile's patterns), and wall minus kernel time
(host work and launch gaps the GPU idles through).

    python benchmarks/engine/prefill_profile.py --out $OUT/prefill_profile.json [--prompts 8 --len 4096]
        [--max-num-batched-tokens 16384] [--model-dir DIR]   (default: the bundled Llama-3.1-8B shape, dummy weights)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks.* and vdeploy from this checkout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--len", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--model-dir", type=Path, default=None)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    import torch

    from benchmarks.deepseek_kernel_profile import kernel_table
    from benchmarks.engine.engine_runs import random_prompts
    from benchmarks.engine.models import prepare_model_dir
    from benchmarks.engine.prefill import timed_prefill
    from vdeploy.engine.llm import LLM, build_engine_config

    model_dir = args.model_dir or prepare_model_dir("llama8b", Path("/tmp/prefill-profile"), tiny=False,
                                                    tokenizer=False).path
    config = build_engine_config(str(model_dir), load_format="dummy", max_model_len=args.len + 64,
                                 max_num_batched_tokens=args.max_num_batched_tokens)
    llm = LLM.from_engine_config(config)
    vocab = llm.core.model_config.vocab_size
    lengths = [args.len] * args.prompts
    timed_prefill(llm, random_prompts(lengths, vocab, 0))  # warm-up: kernels compiled for these shapes
    runs = [timed_prefill(llm, random_prompts(lengths, vocab, 1 + i)) for i in range(args.repeats)]

    profiled: list[float] = []
    rows, families = kernel_table(lambda: profiled.append(timed_prefill(llm, random_prompts(lengths, vocab, 100))))
    profiled_s = profiled[0]
    kernel_ms = sum(families.values()) / 1e3
    report = {
        "gpu": torch.cuda.get_device_name(), "prompts": args.prompts, "len": args.len,
        "max_num_batched_tokens": llm.engine_config.scheduler.max_num_batched_tokens,
        "wall_s_median": statistics.median(runs), "wall_s_runs": runs, "profiled_wall_s": profiled_s,
        "kernel_ms": kernel_ms, "wall_minus_kernels_ms": profiled_s * 1e3 - kernel_ms,
        "families_ms": {k: round(v / 1e3, 3) for k, v in families.items()},
        "top_kernels": rows[: args.top],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    fams = ", ".join(f"{k} {v:.1f}" for k, v in list(report["families_ms"].items())[:9])
    print(f"prefill {args.prompts}x{args.len} (chunk {report['max_num_batched_tokens']}): wall {report['wall_s_median']:.4f} s "
          f"(profiled {profiled_s:.4f}), kernels {kernel_ms:.1f} ms, rest {report['wall_minus_kernels_ms']:.1f} ms | {fams}",
          flush=True)
    for r in rows[:12]:
        print(f"  {r['us'] / 1e3:8.2f} ms  n={r['n']:5d}  {r['family']:18s} {r['kernel'][:90]}", flush=True)
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

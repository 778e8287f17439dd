"""A full-size random checkpoint beside a model directory's config and tokenizer, so that vdeploy and vLLM load the
same weights (issue 15). Their `--load-format dummy` runs are not the same workload: each engine's dummy draw and
routing numerics decide which experts the tokens take (vLLM's bf16 softmax ties a V2 router; benchmarks/results/
2026-12-06g-h100/). Here the weights are real tensors at a trained model's scale (vdeploy.checkpoint.synthetic.
random_value: norms near 1, matrices N(0, 0.02), block FP8 where the config says so), so the routers spread the tokens
as trained ones do, identically in both engines.

    python3 benchmarks/random_checkpoint.py /tmp/peer/models/dsv2-lite-dummy /tmp/random/dsv2-lite-dummy --device cuda

V2-Lite is 31 GB (bf16) and R1 at 8 layers ~33 GB (FP8): generated on the GPU, written shard by shard (~1 min).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="a model directory: its config.json and tokenizer files are copied")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where the tensors are drawn (cuda: fast at full size)")
    ap.add_argument("--shard-gb", type=float, default=5.0)
    args = ap.parse_args()

    from vdeploy.checkpoint.synthetic import write_random_checkpoint

    src, out = Path(args.source), Path(args.out)
    config = json.loads((src / "config.json").read_text())
    t0 = time.perf_counter()
    write_random_checkpoint(out, config, seed=args.seed, device=args.device, shard_bytes=int(args.shard_gb * 1e9))
    for f in src.iterdir():  # tokenizer and the like; the weights and config are ours
        if f.is_file() and f.name != "config.json" and not f.name.startswith("model"):
            shutil.copy2(f, out / f.name)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"wrote {out}: {size / 1e9:.1f} GB in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

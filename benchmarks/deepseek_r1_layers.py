"""DeepSeek-R1 at full width with a reduced layer count, FP8 weights (random, --load-format dummy), one GPU.

Measures the decode step time per MoE layer at several batch sizes (CUDA-graph replays), sets it against the
bytes a step must read (attention weights + the experts actually hit + the latent KV) over the copy bandwidth
measured in the same run, and projects the 61-layer step at TP 8.

    python benchmarks/deepseek_r1_layers.py --moe-layers 4 --out results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import time
from pathlib import Path

import torch

R1_CONFIG = Path(__file__).resolve().parent.parent / "vdeploy" / "model_configs" / "deepseek-r1.config.json"


def copy_bandwidth() -> float:
    x = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    return 2 * x.numel() * 10 / (time.perf_counter() - start)  # bytes read + written per second


def build(moe_layers: int, config_path: Path, max_tokens: int):
    from vdeploy.config import EngineConfig, ModelConfig
    from vdeploy.distributed import ParallelState
    from vdeploy.models.loader import load_model

    raw = json.loads(config_path.read_text())
    raw.update(num_hidden_layers=1 + moe_layers, first_k_dense_replace=1)
    cfg = ModelConfig.from_dict(raw)
    model = load_model(EngineConfig(model=str(config_path.parent), load_format="dummy"), cfg, ParallelState(),
                       "cuda", torch.bfloat16, quiet=True)
    return model, cfg


def decode_step_bytes(cfg, model, batch: int, ctx: int) -> dict:
    """Bytes one decode step must read: per layer kind, the weights touched and the latent cache."""
    from vdeploy.bench.roofline import expected_experts_hit

    layer_attn = sum(p.numel() * p.element_size() for p in model.model.layers[1].self_attn.parameters())
    expert_bytes = 3 * cfg.hidden_size * cfg.moe_intermediate_size  # FP8: one byte per weight
    # expected distinct experts when batch·k choices fall uniformly on E experts (random routing of dummy weights)
    e, picks = cfg.n_routed_experts, batch * cfg.num_experts_per_tok
    experts_hit = expected_experts_hit(e, picks)
    moe = (experts_hit + cfg.n_shared_experts) * expert_bytes + cfg.n_routed_experts * cfg.hidden_size * 2
    kv = batch * ctx * cfg.kv_cache_dim * 2
    return {"attention_weights": layer_attn, "moe_weights": moe, "kv_cache": kv, "per_moe_layer": layer_attn + moe + kv}


def run(args) -> dict:
    from vdeploy.layers.forward_context import AttentionMetadata, ForwardContext

    model, cfg = build(args.moe_layers, Path(args.config), max(args.batches) * args.ctx)
    bandwidth = copy_bandwidth()
    block = 64
    results = []
    for batch in args.batches:
        blocks_per_seq = -(-(args.ctx + 1) // block)
        num_blocks = batch * blocks_per_seq
        caches = [torch.randn(1, num_blocks, block, 1, cfg.kv_cache_dim, device="cuda", dtype=torch.bfloat16)
                  for _ in range(cfg.num_layers)]
        tables = torch.arange(num_blocks, device="cuda", dtype=torch.int32).view(batch, blocks_per_seq)
        seq_lens = torch.full((batch,), args.ctx + 1, device="cuda", dtype=torch.int32)
        slots = tables[:, args.ctx // block].long() * block + args.ctx % block
        meta = AttentionMetadata(slots, torch.arange(batch + 1, device="cuda", dtype=torch.int32), seq_lens, tables,
                                 1, args.ctx + 1, batch, block)
        ctx = ForwardContext(meta, caches)
        ids = torch.randint(0, cfg.vocab_size, (batch,), device="cuda")
        pos = torch.full((batch,), args.ctx, device="cuda", dtype=torch.long)

        def step():
            return model(ids, pos, ctx)

        with torch.no_grad():
            for _ in range(3):
                step()
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            for _ in range(3):
                graph.replay()
            torch.cuda.synchronize()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.iters):
                graph.replay()
            end.record()
            torch.cuda.synchronize()
        step_s = start.elapsed_time(end) / 1e3 / args.iters
        # the dense first layer is timed too; subtract nothing, attribute evenly (it is < 1/moe_layers of the time)
        per_layer_s = step_s / cfg.num_layers
        nbytes = decode_step_bytes(cfg, model, batch, args.ctx)
        limit_s = nbytes["per_moe_layer"] / bandwidth  # the copy bandwidth (read + write) bounds a read stream
        projected_tp8 = 61 * per_layer_s / 8
        results.append({"batch": batch, "context": args.ctx, "step_ms": step_s * 1e3,
                        "per_layer_ms": per_layer_s * 1e3, "bytes_per_moe_layer": nbytes,
                        "bandwidth_limit_per_layer_ms": limit_s * 1e3, "fraction_of_limit": limit_s / per_layer_s,
                        "projected_61_layers_tp8_ms": projected_tp8 * 1e3,
                        "projected_tokens_per_s_tp8": batch / projected_tp8})
        del caches, graph
        torch.cuda.empty_cache()
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "gpu": torch.cuda.get_device_name(),
            "git_revision": args.git_rev or _git_rev(), "command": "python benchmarks/deepseek_r1_layers.py " + " ".join(args.argv),
            "moe_layers": args.moe_layers, "copy_bandwidth_gbs": bandwidth / 1e9,
            "weights_gb": sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9, "results": results}


def _git_rev() -> str:
    from vdeploy.bench.offline import git_revision

    return git_revision() or "unknown"


def main() -> None:
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--moe-layers", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--config", default=str(R1_CONFIG))
    parser.add_argument("--out", default=None)
    parser.add_argument("--git-rev", default=None, help="revision to record when the tree has no .git")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    report = run(args)
    text = json.dumps(report, indent=2, default=lambda o: dataclasses.asdict(o))
    if args.out:
        Path(args.out).write_text(text)
    for r in report["results"]:
        print(f"batch {r['batch']:4d}: step {r['step_ms']:.2f} ms, per layer {r['per_layer_ms']:.3f} ms "
              f"({r['fraction_of_limit']:.2f} of the bandwidth limit), projected TP8 61 layers "
              f"{r['projected_61_layers_tp8_ms']:.1f} ms -> {r['projected_tokens_per_s_tp8']:.0f} tok/s")


if __name__ == "__main__":
    main()

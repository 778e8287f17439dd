"""Where a DeepSeek step spends its GPU time, per kernel (issue 15, step 1: measure first).

Builds DeepSeek-V2-Lite (27 layers, bf16) or DeepSeek-R1 at full width with 8 layers (3 dense + 5 MoE, FP8 block
weights) from the shipped configs with random weights, then for decode steps (batch B, context C) and one prefill
chunk (R requests × L new tokens) records:
  - the step time as a CUDA-graph replay (what the engine runs for decode) and eagerly,
  - the device time of every kernel under the torch profiler (eager), grouped into kernel families,
  - the bytes a decode step must read over the copy bandwidth measured in the same run (its floor).

    python benchmarks/deepseek_kernel_profile.py --model v2-lite --out v2lite.json

--dummy-weights uniform: vLLM's dummy draw (as `same_lease.sh` runs both engines), with which an R1 or V2 router sends
every token to the same experts; the floor then counts one token's experts (as `vdeploy bench` does).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parent.parent / "vdeploy" / "model_configs"
MODELS = {"v2-lite": ("deepseek-v2-lite.config.json", {}),
          "r1-8l": ("deepseek-r1.config.json", {"num_hidden_layers": 8})}
FAMILIES = [  # (family, kernel-name pattern), first match wins; vLLM's names too (decode_step_compare.py)
    ("inductor_fused", r"^triton_(poi|red|per)_"),  # torch.compile's fused elementwise kernels (vLLM)
    ("moe_grouped_gemm", r"_grouped_gemm|fused_moe"), ("moe_topk_sum", r"_moe_sum"), ("mla_attention", r"_mla_"),
    ("fp8_block_gemm", r"w8a8|_block_matmul|qqtst|Ablk128"),  # Triton, and cuBLAS's block-scaled FP8 (scaled_mm)
    ("fp8_act_quant", r"quant"), ("store_kv", r"store_kv|and_cache"), ("rotary", r"rotary"), ("norm", r"rms|norm"),
    ("silu_and_mul", r"silu|act_and_mul"), ("routing_topk", r"topk|sort|radix|bitonic"),
    ("moe_align", r"moe_align|scan|scatter|searchsorted|cumsum|index_put|indexing|gather"),
    ("bf16_gemm", r"gemm|cutlass|xmma|nvjet|sm90|cublas|bmm|ampere"), ("prefill_attention", r"prefill|_attn"),
]


def family(name: str) -> str:
    for fam, pattern in FAMILIES:
        if re.search(pattern, name, re.IGNORECASE):
            return fam
    return "other_elementwise"


def build(name: str, dummy_weights: str):
    from vdeploy.config import EngineConfig, ModelConfig
    from vdeploy.distributed import ParallelState
    from vdeploy.models.loader import load_model

    file, overrides = MODELS[name]
    raw = json.loads((CONFIGS / file).read_text())
    raw.update(overrides)
    cfg = ModelConfig.from_dict(raw)
    engine = EngineConfig(model=str(CONFIGS), load_format="dummy", dummy_weights=dummy_weights)
    model = load_model(engine, cfg, ParallelState(), "cuda", torch.bfloat16, quiet=True)
    return model, cfg


def make_step(model, cfg, query_lens: list[int], context_lens: list[int], block: int = 64):
    """One step's inputs: request i brings query_lens[i] new tokens after context_lens[i] cached ones."""
    from vdeploy.layers.forward_context import AttentionMetadata, ForwardContext

    seq_lens = [q + c for q, c in zip(query_lens, context_lens)]
    per_seq = [-(-s // block) for s in seq_lens]
    width = max(per_seq)
    num_blocks = sum(per_seq)
    caches = [torch.randn(1, num_blocks, block, 1, cfg.kv_cache_dim, device="cuda", dtype=torch.bfloat16)
              for _ in range(cfg.num_layers)]
    tables = torch.zeros(len(seq_lens), width, dtype=torch.int32)
    first = 0
    for i, n in enumerate(per_seq):
        tables[i, :n] = torch.arange(first, first + n)
        first += n
    slots, positions = [], []
    for i, (q, c) in enumerate(zip(query_lens, context_lens)):
        pos = torch.arange(c, c + q)
        positions.append(pos)
        slots.append(tables[i, pos // block].long() * block + pos % block)
    qsl = torch.tensor([0] + list(torch.tensor(query_lens).cumsum(0)), dtype=torch.int32)
    num_decodes = sum(1 for q in query_lens if q == 1) if all(q == 1 for q in query_lens) else 0
    meta = AttentionMetadata(torch.cat(slots).cuda(), qsl.cuda(), torch.tensor(seq_lens, dtype=torch.int32).cuda(),
                             tables.cuda(), max(query_lens), max(seq_lens), num_decodes, block,
                             query_lens_host=list(query_lens), seq_lens_host=list(seq_lens))
    ctx = ForwardContext(meta, caches)
    ids = torch.randint(0, cfg.vocab_size, (sum(query_lens),), device="cuda")
    pos = torch.cat(positions).cuda()
    last = (qsl[1:] - 1).long().cuda()  # the engine computes logits only for each request's last token
    return (lambda: model.compute_logits(model(ids, pos, ctx)[last])), caches


def kernel_table(step) -> tuple[list[dict], dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kernels = {}
    for evt in prof.events():
        if evt.device_type.name != "CUDA":
            continue
        us = evt.time_range.elapsed_us()
        row = kernels.setdefault(evt.name, {"kernel": evt.name[:120], "family": family(evt.name), "us": 0.0, "n": 0})
        row["us"] += us
        row["n"] += 1
    rows = sorted(kernels.values(), key=lambda r: -r["us"])
    families = {}
    for r in rows:
        families[r["family"]] = families.get(r["family"], 0.0) + r["us"]
    return rows, dict(sorted(families.items(), key=lambda kv: -kv[1]))


def decode_floor_bytes(model, cfg, batch: int, ctx: int, collapsed: bool) -> float:
    """Weights a decode step must stream (dense layers fully, MoE layers the experts hit; collapsed routing: one
    token's) + the latent cache."""
    from vdeploy.bench.roofline import expected_experts_hit

    total = 0.0
    for layer in model.model.layers:
        mlp = layer.mlp
        experts = getattr(mlp, "experts", None)
        attn_and_rest = sum(p.numel() * p.element_size() for n, p in layer.named_parameters()
                            if not n.startswith("mlp.experts."))
        total += attn_and_rest
        if experts is not None:
            k = cfg.num_experts_per_tok
            hit = k if collapsed else expected_experts_hit(cfg.n_routed_experts, batch * k)
            per_expert = sum(p[0].numel() * p.element_size() for p in experts.parameters())
            total += hit * per_expert
    total += cfg.vocab_size * cfg.hidden_size * 2  # lm head
    total += batch * ctx * cfg.kv_cache_dim * 2 * cfg.num_layers
    return total


def graph_step_ms(step, iters: int) -> float:
    from vdeploy.bench.hardware import device_ms

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    return device_ms(graph.replay, torch.device("cuda"), iters)


def run(args) -> dict:
    model, cfg = build(args.model, args.dummy_weights)
    collapsed = args.dummy_weights == "uniform"  # every token takes the same experts (loader.fill_dummy)
    from vdeploy.bench.hardware import copy_bandwidth, device_ms

    cuda = torch.device("cuda")
    bandwidth = copy_bandwidth(cuda, 2 << 30)
    report = {"model": args.model, "gpu": torch.cuda.get_device_name(), "copy_bandwidth_gbs": bandwidth / 1e9,
              "git_revision": args.git_rev, "dummy_weights": args.dummy_weights, "cases": []}
    side = getattr(model.model, "side_stream", None)  # shared experts beside the routed ones at small batches
    cases = [("decode", b, [1] * b, [args.ctx] * b) for b in args.batches]
    cases.append(("prefill", args.prefill_reqs, [args.prefill_len] * args.prefill_reqs, [0] * args.prefill_reqs))
    with torch.no_grad():
        for kind, batch, query_lens, context_lens in cases:
            step, caches = make_step(model, cfg, query_lens, context_lens)
            for _ in range(2):
                step()
            torch.cuda.synchronize()
            eager_ms = device_ms(step, cuda, 3)
            graph_ms = inline_ms = None
            if kind == "decode":
                graph_ms = graph_step_ms(step, args.iters)
                if side is not None and batch <= side.max_tokens:  # the same step with the shared experts inline
                    side.max_tokens, saved = 0, side.max_tokens
                    inline_ms = graph_step_ms(step, args.iters)
                    side.max_tokens = saved
            rows, families = kernel_table(step)
            case = {"kind": kind, "batch": batch, "context": args.ctx if kind == "decode" else 0,
                    "tokens": sum(query_lens), "graph_ms": graph_ms, "eager_ms": eager_ms,
                    "graph_ms_shared_experts_inline": inline_ms,
                    "families_us": families, "top_kernels": rows[: args.top]}
            if kind == "decode":
                floor_s = decode_floor_bytes(model, cfg, batch, args.ctx, collapsed) / bandwidth
                case.update(floor_ms=floor_s * 1e3, fraction_of_floor=floor_s * 1e3 / graph_ms)
            report["cases"].append(case)
            fams = ", ".join(f"{k} {v / 1e3:.2f}" for k, v in list(families.items())[:7])
            print(f"{args.model} {kind} B={batch} T={sum(query_lens)}: graph {graph_ms or 0:.2f} ms "
                  f"(shared experts inline: {inline_ms or 0:.2f}), eager "
                  f"{eager_ms:.2f} ms, floor {case.get('floor_ms', 0):.2f} ms | {fams}", flush=True)
            del caches, step
            torch.cuda.empty_cache()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256, 1024])
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--prefill-reqs", type=int, default=4)
    parser.add_argument("--prefill-len", type=int, default=2048)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--git-rev", default="unknown")
    parser.add_argument("--out", default=None)
    parser.add_argument("--dummy-weights", choices=["normal", "uniform"], default="normal")
    args = parser.parse_args()
    report = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""FP8 (e4m3) KV cache on the GPU: every changed kernel against its torch twin, decode timing bf16 vs fp8 cache, and
an end-to-end check that tiny models' logits with the fp8 cache stay within tolerance of the bf16 cache.

    PYTHONPATH=/tmp/shim:$PWD python benchmarks/kernels/fp8_kv_check.py --out $OUT/fp8_kv_check.json

1. Kernels vs twins (shapes: Llama-8B 32 q / 8 KV heads, D 128; R1 MLA 128 heads and V2-Lite 16 heads over the
   576-wide latent): store_kv quantizing into an fp8 cache (byte-exact against reference.quantize_kv expected: both
   compute x * (1/scale) in fp32, saturate to 448 and round to nearest even), paged attention (split-KV decode +
   prefill/extend in one batch) and absorbed MLA attention reading an fp8 cache with non-trivial scales.
2. Decode attention, bf16 vs fp8 cache, batch 256 / 1024 at context 1024 / 2048: time, the bytes of cache the step
   must read, and that over the copy bandwidth measured in the same run.
3. End to end (tiny random Llama and DeepSeek-V3 from vdeploy.checkpoint.synthetic, bf16 weights): logits of a prefill
   and decode steps with an fp8 cache against a bf16 cache (max abs diff, bound LOGIT_ATOL); the engine (CUDA graphs
   on) with --kv-cache-dtype fp8 vs bfloat16: greedy agreement and the KV block counts.
Exit code 1 when a check fails; the JSON says which.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

FP8 = torch.float8_e4m3fn
LOGIT_ATOL = 0.15  # the CPU tests' bound for fp8 vs fp32 caches (tests/models/test_fp8_kv_cache.py)
ATTN_TOL = 2e-2  # relative error of bf16 kernels vs the fp32 twin over the same fp8 cache


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm().clamp(min=1e-30)).item()


def check_store_kv(results: list) -> None:
    from vdeploy_kernels import reference
    from vdeploy_kernels.store_kv import store_kv

    for name, hk, d, has_v in (("llama8b", 8, 128, True), ("mla_latent", 1, 576, False)):
        for k_scale, v_scale in ((1.0, 1.0), (0.05, 0.02)):
            t, nb, bs = 4096, 512, 16
            k = (torch.randn(t, hk, d, device="cuda") * 4).to(torch.bfloat16)  # some values saturate at scale 1e-2
            v = (torch.randn(t, hk, d, device="cuda") * 4).to(torch.bfloat16) if has_v else None
            slots = torch.randperm(nb * bs, device="cuda")[:t]
            slots[::97] = -1
            cache = torch.zeros(2 if has_v else 1, nb, bs, hk, d, dtype=FP8, device="cuda")
            twin = cache.clone()
            store_kv(k, v, cache, slots, k_scale, v_scale)
            reference.store_kv(k, v, twin, slots, k_scale, v_scale)
            mismatched = int((cache.view(torch.uint8) != twin.view(torch.uint8)).sum())
            results.append({"kernel": "store_kv", "shape": name, "k_scale": k_scale, "v_scale": v_scale,
                            "mismatched_bytes": mismatched, "ok": mismatched == 0})


def _fp8_batch(q_lens, seq_lens, heads, kv_heads, d, scales, components=2, block_size=16):
    from vdeploy_kernels import reference
    from vdeploy_kernels.paged_batch import make_paged_batch

    batch = make_paged_batch(q_lens, seq_lens, num_heads=heads, num_kv_heads=kv_heads, head_dim=d,
                             block_size=block_size, dtype=torch.bfloat16, num_components=components,
                             device="cuda")
    cache = batch.kv_cache.float()
    batch.kv_cache = torch.stack([reference.quantize_kv(c * s, s, FP8) for c, s in zip(cache, scales)])
    return batch


def check_attention(results: list) -> None:
    from vdeploy_kernels import reference, reference_deepseek
    from vdeploy_kernels.mla_attention import mla_attention
    from vdeploy_kernels.paged_attention import paged_attention

    q_lens, seq_lens = [1] * 6 + [37, 300], [1, 17, 129, 700, 1500, 2048, 600, 300]  # decodes, an extend, a prefill
    for scales in ((1.0, 1.0), (0.03, 0.01)):
        batch = _fp8_batch(q_lens, seq_lens, 32, 8, 128, scales)
        out = paged_attention(batch.q, batch.kv_cache, batch.meta, 128**-0.5, k_scale=scales[0], v_scale=scales[1])
        ref = reference.paged_attention(batch.q.float(), batch.kv_cache, batch.meta, 128**-0.5,
                                        k_scale=scales[0], v_scale=scales[1])
        err = rel_err(out, ref)
        results.append({"kernel": "paged_attention", "shape": "llama8b 32q/8kv D128", "scales": scales,
                        "rel_err": err, "ok": err < ATTN_TOL})
    for heads, label in ((128, "R1"), (16, "V2-Lite")):
        for kv_scale in (1.0, 0.02):
            batch = _fp8_batch(q_lens, seq_lens, heads, 1, 576, (kv_scale,), components=1, block_size=64)
            out = mla_attention(batch.q, batch.kv_cache, batch.meta, 0.1, 512, kv_scale=kv_scale)
            ref = reference_deepseek.mla_attention(batch.q.float(), batch.kv_cache, batch.meta, 0.1, 512,
                                                   kv_scale=kv_scale)
            err = rel_err(out, ref)
            results.append({"kernel": "mla_attention", "shape": f"{label} {heads} heads, 576 latent",
                            "kv_scale": kv_scale, "rel_err": err, "ok": err < ATTN_TOL})


def _decode_case(batch: int, ctx: int, heads: int, kv_heads: int, d: int, components: int, dtype, block_size=16):
    from vdeploy_kernels.paged_batch import make_metadata

    per_seq = -(-ctx // block_size)
    meta = make_metadata([1] * batch, [ctx] * batch, block_size, batch * per_seq, "cuda")
    cache = torch.randn(components, batch * per_seq, block_size, kv_heads, d, device="cuda").to(dtype)
    q = torch.randn(batch, heads, d, device="cuda", dtype=torch.bfloat16)
    return q, cache, meta, batch * ctx * components * kv_heads * d * cache.element_size()


def time_decode(results: list, bandwidth: float) -> None:
    from vdeploy.bench.hardware import device_ms
    from vdeploy_kernels.mla_attention import mla_attention
    from vdeploy_kernels.paged_attention import paged_attention

    shapes = (("llama8b", 32, 8, 128, 2, 16), ("R1 MLA", 128, 1, 576, 1, 64), ("V2-Lite MLA", 16, 1, 576, 1, 64))
    for label, heads, kv_heads, d, comps, bs in shapes:
        for batch in (256, 1024):
            for ctx in (1024, 2048):
                row = {"timing": "decode attention", "shape": label, "batch": batch, "ctx": ctx}
                for name, dtype in (("bf16", torch.bfloat16), ("fp8", FP8)):
                    q, cache, meta, nbytes = _decode_case(batch, ctx, heads, kv_heads, d, comps, dtype, bs)
                    if comps == 2:
                        fn = lambda: paged_attention(q, cache, meta, d**-0.5, k_scale=0.5, v_scale=0.5)  # noqa: E731
                    else:
                        fn = lambda: mla_attention(q, cache, meta, 0.1, 512, kv_scale=0.5)  # noqa: E731
                    ms = device_ms(fn, torch.device("cuda"), 20)
                    row[name] = {"ms": ms, "cache_bytes": nbytes, "fraction_of_copy_bw": nbytes / (ms * 1e-3) / bandwidth}
                    del q, cache, meta
                    torch.cuda.empty_cache()
                row["speedup_fp8"] = row["bf16"]["ms"] / row["fp8"]["ms"]
                results.append(row)
                print(json.dumps(row), flush=True)


def _runner_logits(path: Path, family: str, kv_dtype: torch.dtype) -> list[torch.Tensor]:
    from vdeploy.config import EngineConfig, ModelConfig
    from vdeploy.distributed.parallel_state import ParallelState
    from vdeploy.models.loader import load_model
    from vdeploy.testing.reference_runner import ReferenceRunner

    cfg = ModelConfig.from_path(path)
    model = load_model(EngineConfig(model=str(path)), cfg, ParallelState(), "cuda", "bfloat16", quiet=True)
    mla = cfg.is_mla
    runner = ReferenceRunner(model, num_kv_heads=1 if mla else cfg.num_kv_heads,
                             head_dim=cfg.kv_cache_dim if mla else cfg.head_dim, num_layers=cfg.num_layers,
                             num_blocks=64, block_size=16, kv_components=1 if mla else 2)
    runner.kv_caches = [torch.zeros_like(c, dtype=kv_dtype) for c in runner.kv_caches]
    prompts = {"a": list(range(3, 40)), "b": [7, 7, 8, 100, 101], "c": [200, 1]}
    out = [torch.cat([v for _, v in sorted(runner.step(prompts).items())])]
    for step in range(3):
        out.append(torch.cat([v for _, v in sorted(runner.step({s: [10 + step] for s in prompts}).items())]))
    out.append(torch.cat([v for _, v in sorted(runner.step({"a": list(range(50, 70)), "d": [5] * 9}).items())]))
    return out


def _engine(path: Path, kv_cache_dtype: str):
    from vdeploy import LLM, SamplingParams

    llm = LLM(str(path), dtype="bfloat16", block_size=16, kv_cache_dtype=kv_cache_dtype, gpu_memory_utilization=0.3,
              max_model_len=512)
    try:
        params = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, logprobs=5)
        outs = [o.outputs[0] for o in llm.generate([list(range(3, 40)), [7, 8, 9], [200, 1, 2, 3]], params)]
        graphs = getattr(getattr(llm.core.executor, "runner", None), "graphs", None) is not None
        return outs, llm.core.kv_manager.num_total_blocks, graphs
    finally:
        llm.close()


def check_end_to_end(results: list) -> None:
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
    from vdeploy.testing.greedy_agreement import greedy_agreement

    for family in ("llama", "deepseek_v3"):
        path = write_tiny_checkpoint(Path(tempfile.mkdtemp()) / family, family, dtype="bfloat16", num_shards=1)
        print(f"  {family}: runner logits", flush=True)
        ref = _runner_logits(path, family, torch.bfloat16)
        fp8 = _runner_logits(path, family, FP8)
        diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(ref, fp8))
        finite = all(bool(torch.isfinite(b).all()) for b in fp8)
        results.append({"check": "logits fp8 vs bf16 cache", "model": family, "max_abs_diff": diff,
                        "bound": LOGIT_ATOL, "ok": finite and diff < LOGIT_ATOL})
        print(f"  {family}: engine bf16 cache", flush=True)
        bf16_outs, bf16_blocks, _ = _engine(path, "bfloat16")
        print(f"  {family}: engine fp8 cache", flush=True)
        fp8_outs, fp8_blocks, graphs = _engine(path, "fp8")
        agreement = greedy_agreement(bf16_outs, fp8_outs, near_tie=2 * LOGIT_ATOL)
        ok = agreement.ok
        results.append({"check": "engine greedy fp8 vs bf16 cache", "model": family, "cuda_graphs": graphs,
                        "equal_steps": agreement.equal_steps, "divergences": agreement.divergences,
                        "blocks_bf16": bf16_blocks, "blocks_fp8": fp8_blocks, "block_ratio": fp8_blocks / max(bf16_blocks, 1),
                        "ok": ok and fp8_blocks >= 1.9 * bf16_blocks})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="JSON results file (default: print only)")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    from vdeploy.bench.check_report import finish_report, run_sections
    from vdeploy.bench.hardware import copy_bandwidth

    torch.manual_seed(0)
    results: list = []
    sections = [("store_kv", check_store_kv), ("attention", check_attention), ("end_to_end", check_end_to_end)]
    run_sections(sections, results)
    bandwidth = None
    if not args.skip_timing:
        bandwidth = copy_bandwidth(torch.device("cuda"), 2 << 30)
        run_sections([("timing", lambda rows: time_decode(rows, bandwidth))], results)
    finish_report(results, args.out, copy_bandwidth_bytes_per_s=bandwidth)


if __name__ == "__main__":
    main()

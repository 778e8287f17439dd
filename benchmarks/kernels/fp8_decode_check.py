"""Block-FP8 linears at decode sizes (M ≤ 16), R1's shapes: the fused one-launch path (x quantized inside the GEMM,
split-K summed in the same launch) against the two-step path (quantize, GEMM, sum of splits), same tiles.

For each (N, K) of R1 at TP 1 and M: both paths checked against the torch twin (x quantized per token group, the
dequantized matmul; rel < 1e-2), the fused path run twice for identical bits, and with one K split it must equal the
two-step path to < 1e-3 (the same quantization: fp8 rounding differences would show as ~1e-2; bit equality is
reported). Timing: each path as a CUDA graph of back-to-back calls (the launch gaps of a decode step's graph
included), every call reading its own copy of the weights, cycled past the L2 (≥ 200 MB a graph). The weight bytes
per µs beside each time, the copy bandwidth of the same run as the roofline, and the sum over an R1-8L decode step's
linears (3 dense + 5 MoE layers; kv_b is not run at decode; q_a and kv_a are one GEMM).

    mkdir -p /tmp/shim && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels
    PYTHONPATH=/tmp/shim:$PWD TRITON_INTERPRET=0 python benchmarks/kernels/fp8_decode_check.py --out $OUT [--sweep]
    python benchmarks/kernels/fp8_decode_check.py --tables-from REPORT.json --out DIR   # CPU: tables of a report

--sweep: for each shape and M in --sweep-m the fused path is also timed over tiles × stages × K splits × operand
order (each checked against the twin); the row of a table is the fastest of those, the fused path in the table's
tiles and the two-step path (marked "fused": False). Tables go under $OUT/fp8_block_gemm/, named for this GPU: its
rows above 16 are the GPU's committed table's, else its sibling's (tuned_tables.SIBLINGS), else the heuristic's;
rows 2 and 8 are dropped (M 2 takes M 1's choice, M 8 takes M 4's). --tables-from rebuilds them from a saved report.

Prediction (written before the first GPU run, 2026-12-06): the two-step path spends ~2-3 µs on the quantize launch
and, where split, ~2 µs on the sum launch; fused removes both: −0.1 to −0.2 ms of the R1-8L batch-1 step.
Outcome (H100, benchmarks/results/2026-12-06f-h100/): in the two-step path's tiles the fused path was slower on
every shape (the per-K-tile quantization lengthens each iteration of the long-K loops); with its own tiles it wins
on the small and wide shapes (q_a ‖ kv_a 13.2 against 25.0 µs, shared gate_up 19.5 against 20.9, dense gate_up 96.6
against 98.7, q_b 17.1 against 17.9) and loses on the long-K ones (o_proj, dense and shared down): per-shape tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# (layer name, count per R1-8L decode step): 8 MLA layers, 3 dense MLPs, 5 MoE layers' shared experts
STEP_COUNTS = {"fused_qkv_a_proj": 8, "q_b_proj": 8, "o_proj": 8, "dense_gate_up": 3, "dense_down": 3,
               "shared_gate_up": 5, "shared_down": 5}


def sweep_configs(k: int) -> list[dict]:
    """Fused decode tiles: N tile × pipeline stages × K split (4 warps; splits that leave ≥ 2 K tiles a program),
    with the activations or (swap_ab, N tile ≥ 64: a wgmma's rows) the weights as the dot's first operand, x
    quantized inside the K loop or (pre_quant) into a scratch before it."""
    k_blocks = -(-k // 128)
    return [{"block_m": 16, "block_n": bn, "num_warps": 4, "num_stages": stages, "split_k": split, "swap_ab": swap,
             "pre_quant": pre, "fused": True}
            for bn in (32, 64, 128) for stages in (3, 4) for split in (1, 2, 4, 8, 16) for swap in (False, True)
            for pre in (False, True) if k_blocks >= 2 * split and (bn >= 64 or not swap)]


def best_choice(row: dict) -> dict:
    """The fastest measured config of one (shape, M): the sweep's best fused one, the fused path in the table's
    tiles, or the two-step path."""
    table = {k: v for k, v in row["config"].items() if k != "fused"}
    timed = [(row["two_step_us"], {**table, "fused": False}), (row["fused_us"], {**table, "fused": True})]
    if "sweep_best" in row:
        timed.append((row["sweep_best_us"], {**row["sweep_best"], "fused": True}))
    return min(timed, key=lambda pair: pair[0])[1]


def write_tables(rows: list[dict], out_dir: Path, device_name: str) -> list[Path]:
    """Per shape: the decode rows measured (best_choice at each swept M), the larger ones from the GPU's committed
    table, else its sibling's, else the heuristic's (M 32, 64, 128)."""
    from vdeploy_kernels import fp8_gemm_configs, tuned_tables

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for n, k in sorted({(r["n"], r["k"]) for r in rows if "sweep_best" in r}):
        base = tuned_tables.find_table(fp8_gemm_configs.KIND,
                                       lambda gpu: fp8_gemm_configs.config_name(n, k, (128, 128), gpu), device_name)
        large = {m: cfg for m, cfg in zip(*base) if m > 16} if base else {
            m: fp8_gemm_configs.default_config(m) for m in (32, 64, 128)}
        table = {**large, **{r["m"]: best_choice(r) for r in rows if (r["n"], r["k"]) == (n, k) and "sweep_best" in r}}
        path = out_dir / fp8_gemm_configs.config_name(n, k, (128, 128), device_name)
        path.write_text(json.dumps({str(m): table[m] for m in sorted(table)}, indent=1) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tables-from", default=None, help="a saved fp8_decode_check.json: write its tables, no GPU")
    parser.add_argument("--m", type=int, nargs="+", default=[1, 2, 4, 16])
    parser.add_argument("--git-rev", default="unknown")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--sweep-m", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args(argv)
    if args.tables_from:
        report = json.loads(Path(args.tables_from).read_text())
        for path in write_tables(report["rows"], Path(args.out), report["device"]):
            print(path)
        return 0

    import torch

    from tune_fp8_gemm import r1_shapes
    from vdeploy.bench.hardware import copy_bandwidth
    from vdeploy_kernels import reference_deepseek as ref
    from vdeploy_kernels.fp8_gemm import w8a8_block_linear
    from vdeploy_kernels.fp8_gemm_configs import block_gemm_config
    from w4a16_decode_timing import MIN_CALLS, weight_copies, graph_us

    device = torch.device("cuda")
    bandwidth = copy_bandwidth(device, 1 << 30)
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for layer, (n, k) in r1_shapes(1).items():
        if layer not in STEP_COUNTS:
            continue
        w = [ref.quantize_weight_block(torch.randn(n, k, generator=gen, device=device))]
        w += [tuple(t.clone() for t in w[0]) for _ in range(weight_copies(n * k, True) - 1)]
        for m in args.m:
            x = torch.randn(m, k, generator=gen, device=device).to(torch.bfloat16)
            table = block_gemm_config(m, n, k, (128, 128), 0)
            if table.get("backend") == "scaled_mm":
                continue
            two_step, fused = {**table, "fused": False}, {**table, "fused": True}  # the table's tiles, both paths
            xq, xs = ref.quantize_act_per_token_group(x)
            twin = ref.w8a8_block_matmul(xq, xs, *w[0], out_dtype=torch.float32)
            fused_out = w8a8_block_linear(x, *w[0], config=fused)
            err_fused = (fused_out.float() - twin).norm().item() / twin.norm().item()
            err_two = (w8a8_block_linear(x, *w[0], config=two_step).float() - twin).norm().item() / twin.norm().item()
            same = torch.equal(fused_out, w8a8_block_linear(x, *w[0], config=fused))
            one = {**fused, "split_k": 1}
            unsplit = (w8a8_block_linear(x, *w[0], config=one),
                       w8a8_block_linear(x, *w[0], config={**one, "fused": False}))
            equal_unsplit = torch.equal(*unsplit)
            unsplit_diff = (unsplit[0].float() - unsplit[1].float()).norm().item() / unsplit[1].float().norm().item()

            def calls(cfg):
                return [lambda ws=w[i % len(w)]: w8a8_block_linear(x, *ws, config=cfg)
                        for i in range(max(MIN_CALLS, len(w)))]

            two_us, fused_us = graph_us(calls(two_step)), graph_us(calls(fused))
            ok = err_fused < 1e-2 and err_two < 1e-2 and same and unsplit_diff < 1e-3
            floor_us = n * k / bandwidth * 1e6
            rows.append({"layer": layer, "n": n, "k": k, "m": m, "config": table, "two_step_us": two_us,
                         "fused_us": fused_us, "speedup": two_us / fused_us, "floor_us": floor_us,
                         "fused_of_roofline": floor_us / fused_us, "rel_err_fused": err_fused,
                         "rel_err_two_step": err_two, "deterministic": same, "unsplit_bit_equal": equal_unsplit,
                         "unsplit_rel_diff": unsplit_diff,
                         "ok": ok})
            print(f"{layer:15s} N{n:6d} K{k:6d} M={m:2d}  two-step {two_us:7.1f} us  fused {fused_us:7.1f} us  "
                  f"x{two_us / fused_us:.2f}  {floor_us / fused_us:.2f} of roofline  err {err_fused:.1e}  "
                  f"{'ok' if ok else 'FAIL'}", flush=True)
            if args.sweep and m in args.sweep_m:
                best, best_us, failed = fused, fused_us, 0
                for cfg in sweep_configs(k):
                    out = w8a8_block_linear(x, *w[0], config=cfg)
                    if (out.float() - twin).norm().item() / twin.norm().item() >= 1e-2:
                        failed += 1
                        continue
                    us = graph_us(calls(cfg))
                    if us < best_us:
                        best, best_us = cfg, us
                rows[-1].update(sweep_best=best, sweep_best_us=best_us, sweep_failed=failed)
                print(f"{'':15s} sweep: best {best_us:7.1f} us ({floor_us / best_us:.2f} of roofline) {best}"
                      f"{f'  {failed} configs FAILED the twin' if failed else ''}", flush=True)
        del w
    if args.sweep:
        write_tables(rows, Path(args.out) / "fp8_block_gemm", torch.cuda.get_device_name())
    step = {}
    for m in args.m:
        at_m = {r["layer"]: r for r in rows if r["m"] == m}
        if set(at_m) == set(STEP_COUNTS):
            step[m] = {key.replace("_us", "_ms"): sum(at_m[name][key] * count for name, count in STEP_COUNTS.items())
                       / 1e3 for key in ("two_step_us", "fused_us", "floor_us")}
            print(f"R1-8L step's FP8 linears at M={m}: two-step {step[m]['two_step_ms']:.3f} ms, fused "
                  f"{step[m]['fused_ms']:.3f} ms, floor {step[m]['floor_ms']:.3f} ms")
    report = {"benchmark": "fp8_decode_linear", "git_revision": args.git_rev, "device": torch.cuda.get_device_name(),
              "copy_bandwidth_TBps": bandwidth / 1e12, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "timing": "cuda graph of back-to-back calls, weights cycled past the L2", "r1_8l_step_ms": step,
              "ok": bool(rows) and all(r["ok"] for r in rows), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fp8_decode_check.json").write_text(json.dumps(report, indent=1))
    print("all ok" if report["ok"] else "check(s) FAILED")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

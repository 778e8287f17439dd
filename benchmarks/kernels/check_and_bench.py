"""GPU correctness grid + micro-benchmarks of vdeploy's Triton kernels, in one run.

  python3 benchmarks/kernels/check_and_bench.py --out DIR [--git-rev REV] [--quick]

1. every kernel against its torch twin (kernel_checks.py): head dims 64/128, GQA 1/4/8, page sizes 16/32/64,
   contexts up to 32k, mixed decode/prefill batches, a CUDA-graph replay of decode, the elementwise kernels;
2. the two ceilings of this device, measured now: copy bandwidth and bf16 matmul rate;
3. decode attention bandwidth at batch 1/32/256 x context 1k/8k/32k vs the copy bandwidth, a launch-config
   sweep, page sizes 16/32/64; prefill attention TFLOP/s (fresh and extend), its config sweep and page sizes;
   the elementwise kernels against their torch twins.
Writes kernels-<gpu>-<date>.json and .md into --out. --quick shrinks every shape (runs on CPU under
TRITON_INTERPRET=1, to check the script itself).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch
import triton

from kernel_bench import copy_bandwidth, decode_benchmarks, elementwise_benchmarks, matmul_flops, prefill_benchmarks
from kernel_checks import run_all_checks


def git_revision(given: str | None) -> str:
    from vdeploy.bench.offline import git_revision as checkout_revision

    return given or checkout_revision() or "unknown"


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# Kernel check and micro-benchmark — {env['gpu']}", "",
             f"- date: {report['date']}", f"- command: `{report['command']}`", f"- git revision: {report['git_rev']}",
             f"- torch {env['torch']}, triton {env['triton']}",
             f"- copy bandwidth (read+write): {report['copy_bandwidth'] / 1e12:.2f} TB/s; "
             f"bf16 matmul: {report['matmul_flops'] / 1e12:.0f} TFLOP/s", ""]
    checks = report["checks"]
    lines += [f"## Correctness: {sum(c['ok'] for c in checks)}/{len(checks)} passed", "",
              "| kernel | case | rel err | tol | ok |", "|---|---|---|---|---|"]
    lines += [f"| {c['kernel']} | {c['case']} | {c['rel_err']:.2e} | {c['tol']:.0e} | {'yes' if c['ok'] else 'NO'} |"
              for c in checks]
    dec = report["decode"]
    lines += ["", "## Decode attention (Llama-3.1-8B shape: H=32, Hk=8, D=128, bf16, page 16, CUDA graph)", "",
              "| batch | context | µs | GB/s | fraction of copy BW | splits |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['context']} | {r['us']:.1f} | {r['bandwidth'] / 1e9:.0f} | "
              f"{r['fraction_of_copy']:.2f} | {r['config']['num_splits']} |" for r in dec["grid"]]
    lines += ["", "### Decode launch-config sweep and page sizes", "",
              "| batch | context | page | block_n | warps | stages | splits | µs | fraction of copy BW |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in dec["config_sweep"] + dec["page_sizes"]:
        if "error" in r:
            lines.append(f"| error: {r['error']} |||||||||")
            continue
        c = r["config"]
        lines.append(f"| {r['batch']} | {r['context']} | {r['page']} | {c['block_n']} | {c['num_warps']} | "
                     f"{c['num_stages']} | {c['num_splits']} | {r['us']:.1f} | {r['fraction_of_copy']:.2f} |")
    pre = report["prefill"]
    lines += ["", "## Prefill attention (H=32, Hk=8, bf16)", "",
              "| queries | context | D | page | block_m | block_n | warps | stages | ms | TFLOP/s | of matmul peak |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in pre["main"] + pre["config_sweep"] + pre["page_sizes"]:
        if "error" in r:
            lines.append(f"| error: {r['error']} ||||||||||")
            continue
        c = r["config"]
        lines.append(f"| {r['q_lens']} | {r['context']} | {r['head_dim']} | {r['page']} | {c['block_m']} | "
                     f"{c['block_n']} | {c['num_warps']} | {c['num_stages']} | {r['ms']:.3f} | {r['tflops']:.0f} | "
                     f"{r['fraction_of_matmul_peak']:.2f} |")
    lines += ["", "## Elementwise kernels (8192 tokens, Llama-3.1-8B sizes, bf16)", "",
              "| kernel | Triton µs | torch twin µs | GB/s | fraction of copy BW |", "|---|---|---|---|---|"]
    lines += [f"| {r['kernel']} | {r['triton_us']:.1f} | {r['torch_twin_us']:.1f} | {r['bandwidth'] / 1e9:.0f} | "
              f"{r['fraction_of_copy']:.2f} |" for r in report["elementwise"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument("--git-rev", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny shapes (CPU interpreter run of the script)")
    parser.add_argument("--no-sweeps", action="store_true", help="skip the launch-config sweeps")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.processor() or 'interpreter'})"
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_rev": git_revision(args.git_rev),
        "environment": {"gpu": gpu, "torch": torch.__version__, "triton": triton.__version__,
                        "sm_count": torch.cuda.get_device_properties(0).multi_processor_count if device == "cuda"
                        else None},
    }
    tag = "quick" if args.quick else gpu.replace("NVIDIA ", "").split()[0].lower()
    stem = f"kernels-{tag}-{report['date'][:10]}"
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every section, so a run cut off by a time limit still leaves its numbers
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))

    print("checks ...", flush=True)
    report["checks"] = run_all_checks(device, args.quick)
    for c in report["checks"]:
        if not c["ok"]:
            print("FAILED", c, flush=True)
    save()
    print("ceilings ...", flush=True)
    report["copy_bandwidth"] = copy_bandwidth(device, args.quick)
    report["matmul_flops"] = matmul_flops(device, args.quick)
    print("decode ...", flush=True)
    report["decode"] = decode_benchmarks(device, args.quick, report["copy_bandwidth"], not args.no_sweeps)
    save()
    print("prefill ...", flush=True)
    report["prefill"] = prefill_benchmarks(device, args.quick, report["matmul_flops"], not args.no_sweeps)
    save()
    print("elementwise ...", flush=True)
    report["elementwise"] = elementwise_benchmarks(device, args.quick, report["copy_bandwidth"])
    save()
    text = markdown(report)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    return 0 if all(c["ok"] for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())

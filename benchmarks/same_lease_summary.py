"""Build `summary.json` (the issues' format) from one lease's raw files: vLLM's `vllm_*.json` written by
../shared/peer-vllm/bench.sh and vdeploy's `vdeploy_*.json` written by benchmarks/same_lease.sh, side by side in one
folder. Only pairs whose two files are both there become rows: a ratio needs both engines in the same lease.

    python benchmarks/same_lease_summary.py benchmarks/results/<date>-h200-vs-vllm --git-rev REV
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PEER = "bash ../shared/peer-vllm/bench.sh"
OURS = "bash benchmarks/same_lease.sh"
# benchmark: (unit, vLLM file, vdeploy file, vLLM command, vdeploy command, output tokens per request or None = time)
PAIRS = {
    "throughput_qwen2_7b": ("output tok/s", "vllm_throughput_qwen2_7b.json", "vdeploy_throughput_qwen2_7b.json",
                            f"{PEER} tp", f"{OURS} tp", 1000),
    "decode_8b": ("output tok/s (batch 1, 128 in / 1024 out)", "vllm_latency_llama31_8b.json",
                  "vdeploy_latency_llama31_8b.json", f"{PEER} lat", f"{OURS} lat", 1024),
    # ours: gpu_suite's prefill record, as `same_lease.sh suite` leaves it or as the call scripts copy it
    "prefill_8x4096": ("s (8 x 4096 prompt tokens, 1 output)", "vllm_prefill_8x4096.json",
                       ("vdeploy_prefill_8x4096.json", "suite/prefill.json"), f"ITERS=3 {PEER} prefill",
                       "python benchmarks/engine/gpu_suite.py --only hardware,prefill --quick", None),
    "throughput_dsv2_lite": ("output tok/s", "vllm_throughput_dsv2lite.json", "vdeploy_throughput_dsv2lite.json",
                             f"{PEER} dsv2tp", f"{OURS} dsv2tp", 1000),
    "throughput_dsv2_lite_500": ("output tok/s", "vllm_throughput_dsv2lite_500.json",
                                 "vdeploy_throughput_dsv2lite_500.json", f"N=500 TAG=_500 {PEER} dsv2tp",
                                 f"N=500 TAG=_500 {OURS} dsv2tp", 1000),
    "throughput_r1_8l": ("output tok/s", "vllm_throughput_r1_8l.json", "vdeploy_throughput_r1_8l.json",
                         f"VLLM_USE_DEEP_GEMM=0 {PEER} r1tp", f"{OURS} r1tp", 1000),
    "decode_r1_8l": ("output tok/s (batch 1, 128 in / 1024 out)", "vllm_latency_r1_8l.json",
                     "vdeploy_latency_r1_8l.json", f"VLLM_USE_DEEP_GEMM=0 {PEER} r1lat", f"{OURS} r1lat", 1024),
}
# R1 cut to 6 layers (3 dense + 3 MoE) on an 80 GB card, where vLLM 0.26 starts only below its default memory
# utilization (benchmarks/lease_common.sh, r1_fit: the bundle's r1-8l-dummy config cut, the peer's bench.sh with
# VLLM_EXTRA after --dtype)
CUT = "r1_fit (num_hidden_layers 6);"
PAIRS.update({
    "throughput_r1_6l": ("output tok/s", "vllm_throughput_r1_8l_6l.json", "vdeploy_throughput_r1_8l_6l.json",
                         f"{CUT} VLLM_USE_DEEP_GEMM=0 VLLM_EXTRA='--gpu-memory-utilization 0.80' TAG=_6l "
                         "bash /tmp/peer/bench_extra.sh r1tp", f"{CUT} TAG=_6l {OURS} r1tp", 1000),
    "decode_r1_6l": ("output tok/s (batch 1, 128 in / 1024 out)", "vllm_latency_r1_8l_6l.json",
                     "vdeploy_latency_r1_8l_6l.json",
                     f"{CUT} VLLM_USE_DEEP_GEMM=0 VLLM_EXTRA='--gpu-memory-utilization 0.80' TAG=_6l "
                     "bash /tmp/peer/bench_extra.sh r1lat", f"{CUT} TAG=_6l {OURS} r1lat", 1024),
})
# the same DeepSeek benchmarks with both engines loading one random checkpoint (WEIGHTS=random; no dummy draw)
PAIRS.update({
    f"{name}_random": (unit, theirs.replace(".json", "_random.json"), ours.replace(".json", "_random.json"),
                       cmd_vllm.replace(f"{PEER} ", "bash benchmarks/peer_random_weights.sh "),
                       f"WEIGHTS=random {cmd_ours}", out)
    for name, (unit, theirs, ours, cmd_vllm, cmd_ours, out) in list(PAIRS.items())
    if name in ("throughput_dsv2_lite_500", "throughput_r1_8l", "decode_r1_8l")
})


def vllm_value(data: dict, output_len: int | None) -> float:
    if output_len is None:  # `vllm bench latency` with 1 output token: the prefill time
        return data["avg_latency"]
    if "requests_per_second" in data:  # `vllm bench throughput`
        return data["requests_per_second"] * output_len
    return output_len / data["avg_latency"]  # `vllm bench latency` at batch 1


def vdeploy_value(data: dict, output_len: int | None) -> float:
    if output_len is None:  # gpu_suite's prefill record
        return data["metrics"]["elapsed_s"]
    return data["results"][0]["output_tokens_per_s"]


def summarize(folder: Path, git_revision: str) -> list[dict]:
    rows = []
    for name, (unit, theirs, ours, command_vllm, command_vdeploy, output_len) in PAIRS.items():
        ours = next((f for f in ((ours,) if isinstance(ours, str) else ours) if (folder / f).is_file()), None)
        if ours is None or not (folder / theirs).is_file():
            continue
        vllm = vllm_value(json.loads((folder / theirs).read_text()), output_len)
        vdeploy = vdeploy_value(json.loads((folder / ours).read_text()), output_len)
        ratio = vllm / vdeploy if output_len is None else vdeploy / vllm  # > 1: vdeploy is faster
        rows.append({"benchmark": name, "unit": unit, "vllm": round(vllm, 4), "vdeploy": round(vdeploy, 4),
                     "ratio": round(ratio, 3), "command_vllm": command_vllm, "command_vdeploy": command_vdeploy,
                     "git_revision": git_revision})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--git-rev", required=True)
    args = parser.parse_args()
    rows = summarize(args.folder, args.git_rev)
    (args.folder / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    for row in rows:
        print(f"{row['benchmark']:26} vLLM {row['vllm']:>10} vdeploy {row['vdeploy']:>10} ratio {row['ratio']}")


if __name__ == "__main__":
    main()

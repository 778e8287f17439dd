"""Result files and the summary: one JSON per benchmark (self-contained: date, device, command, git revision,
engine settings, numbers), all of them in results.json, a markdown summary in results.md, and the same table on
stdout. Files are rewritten after every benchmark, so a run cut short still leaves what it measured."""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


@dataclass
class SuiteReport:
    out_dir: Path
    meta: dict[str, Any]  # date, device, command, git revision, versions, scale
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> record

    def record(self, name: str, record: dict[str, Any]) -> None:
        self.benchmarks[name] = record
        self.write()

    def to_dict(self) -> dict[str, Any]:
        return {**self.meta, "benchmarks": self.benchmarks, "summary": summary_rows(self.benchmarks)}

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, record in self.benchmarks.items():
            _write_json(self.out_dir / f"{name}.json", {**self.meta, "benchmark": name, **record})
        _write_json(self.out_dir / "results.json", self.to_dict())
        (self.out_dir / "results.md").write_text(markdown(self.to_dict()))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def suite_metadata(device_name: str, git_rev: str | None, scale: str, model_note: str) -> dict[str, Any]:
    import torch

    from vdeploy import __version__

    return {
        "suite": "vdeploy engine benchmarks (benchmarks/engine/gpu_suite.py)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name,
        "command": " ".join(["python", *sys.argv]),
        "git_revision": git_rev or "unknown",
        "vdeploy_version": __version__,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "python_version": platform.python_version(),
        "scale": scale,
        "models": model_note,
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _verdict(value: float | None, minimum: float | None, judged: bool) -> str:
    if value is None or minimum is None:
        return ""
    if not judged:
        return "(not judged)"
    return "PASS" if value >= minimum else f"MISS by {100 * (1 - value / minimum):.0f}%"


def summary_rows(benchmarks: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """(benchmark, metric, value, target, verdict) rows; targets are judged on real shapes only."""
    rows: list[dict[str, str]] = []

    def add(bench: str, metric: str, value: Any, target: float | None = None, judged: bool = False,
            digits: int = 2) -> None:
        rows.append({"benchmark": bench, "metric": metric, "value": _fmt(value, digits),
                     "target": f">= {target:g}" if target is not None else "",
                     "verdict": _verdict(value, target, judged) if isinstance(value, (int, float)) else ""})

    for name, rec in benchmarks.items():
        if rec.get("status") in ("error", "skipped"):
            add(name, "status", f"{rec.get('status')}: {rec.get('error', '')}"[:120])
            continue
        m, judged = rec.get("metrics", {}), bool(rec.get("real_shape"))
        target = rec.get("target", {})
        if name == "hardware":
            add(name, "copy bandwidth (TB/s, read+write)", m.get("copy_bandwidth_tb_per_s"), digits=3)
            add(name, f"matmul {m.get('matmul_n')}^3 {m.get('matmul_dtype')} (TFLOP/s)", m.get("matmul_tflop_per_s"))
        elif name == "decode":
            add(name, "decode tok/s (batch 1)", m.get("decode_tokens_per_s"))
            add(name, "bandwidth bound tok/s", m.get("bandwidth_bound_tokens_per_s"))
            add(name, "fraction of bandwidth bound", m.get("fraction_of_bandwidth_bound"), target.get("min"),
                judged, digits=3)
            add(name, "fraction of bound w/o embedding table", m.get("fraction_of_bandwidth_bound_strict"),
                digits=3)
        elif name == "prefill":
            add(name, "prefill tok/s", m.get("prefill_tokens_per_s"), digits=0)
            add(name, "achieved TFLOP/s", m.get("achieved_tflop_per_s"))
            add(name, "fraction of matmul peak", m.get("fraction_of_matmul_peak"), target.get("min"), judged,
                digits=3)
        elif name == "throughput":
            for workload, res in rec.get("workloads", {}).items():
                if "error" in res:
                    add(name, f"{workload}: error", res["error"][:100])
                    continue
                cut = " (truncated)" if res.get("truncated") else ""
                minimum = target.get("min") if workload == target.get("workload") else None
                add(name, f"{workload} output tok/s{cut}", res.get("output_tokens_per_s"), minimum, judged, 1)
                add(name, f"{workload} total tok/s{cut}", res.get("total_tokens_per_s"), digits=1)
        elif name == "hf_peer":
            cut = " (truncated)" if m.get("truncated") else ""
            add(name, f"HF generate output tok/s{cut}", m.get("output_tokens_per_s"), digits=1)
            add(name, "vdeploy / HF on the same slice", m.get("speedup_same_slice"))
        elif name == "serving":
            for level in rec.get("levels", []):
                value = level.get("output_throughput", level.get("error", "")[:100])
                add(name, f"concurrency {level['concurrency']} output tok/s", value, digits=1)
            add(name, "offline output tok/s (same requests)", m.get("offline_output_tokens_per_s"), digits=1)
            add(name, "fraction of offline at saturation", m.get("fraction_of_offline_at_saturation"),
                target.get("min"), judged, digits=3)
        if rec.get("status") == "partial":
            add(name, "status", "partial: " + "; ".join(rec.get("errors", []))[:120])
        add(name, "elapsed s", rec.get("elapsed_s"), digits=1)
    return rows


def text_table(rows: list[dict[str, str]]) -> str:
    headers = ["benchmark", "metric", "value", "target", "verdict"]
    widths = [max([len(h)] + [len(r[h]) for r in rows]) for h in headers]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join((r[h].rjust(w) if h == "value" else r[h].ljust(w)) for h, w in zip(headers, widths)))
    return "\n".join(out)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# vdeploy engine benchmarks",
        "",
        f"- date: {report['date']}",
        f"- device: {report['device']}",
        f"- command: `{report['command']}`",
        f"- git revision: {report['git_revision']}",
        f"- vdeploy {report['vdeploy_version']}, torch {report['torch_version']} (CUDA {report['cuda_version']})",
        f"- scale: {report['scale']}; models: {report['models']}",
        "",
        "| benchmark | metric | value | target | verdict |",
        "|---|---|---:|---|---|",
    ]
    lines += [f"| {r['benchmark']} | {r['metric']} | {r['value']} | {r['target']} | {r['verdict']} |"
              for r in report["summary"]]
    lines += ["", "## Engine settings", ""]
    for name, rec in report["benchmarks"].items():
        settings = rec.get("engine_settings")
        if settings:
            lines.append(f"- {name}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    lines += ["", "Per-benchmark details (workloads, every repeat, byte and FLOP counts): `<name>.json`.", ""]
    return "\n".join(lines)

"""The fused-MoE tuner end to end on a tiny shape (Triton interpreter): it writes a table that the kernel's config
lookup reads back, and every tuned entry gives the heuristic's output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[2]


def test_tuner_writes_a_table_the_lookup_reads(tmp_path):
    report = tmp_path / "report.json"
    env = dict(os.environ, TRITON_INTERPRET="1", VDEPLOY_HOME=str(tmp_path))
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels" / "tune_fused_moe.py"), "--shape", "tiny",
                    "--tokens", "1", "8", "--report", str(report)], check=True, env=env, cwd=tmp_path, timeout=300)
    files = list((tmp_path / "kernel_configs" / "fused_moe").glob("*.json"))
    assert [f.name for f in files] == ["E4-I32-H64-bf16-cpu.json"]
    table = json.loads(files[0].read_text())
    assert set(table) == {"1", "8"} and all({"block_m", "w13", "w2"} <= set(c) for c in table.values())
    rows = json.loads(report.read_text())["shapes"]["tiny"]["rows"]
    assert all(r["rel_diff_vs_default"] < 1e-5 for r in rows)

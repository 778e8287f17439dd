"""benchmarks/kernels/fp8_decode_check.py --tables-from on the CPU machine: the tables written from a GPU report hold,
per shape and swept M, the fastest measured path (the sweep's fused winner, the fused path in the table's tiles, or
the two steps), and the larger rows of the GPU's committed table, else its sibling's, else the heuristic's."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "kernels" / "fp8_decode_check.py"


def row(n, k, m, two_step_us, fused_us, sweep_us):
    tiles = {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 4}
    return {"n": n, "k": k, "m": m, "config": tiles, "two_step_us": two_step_us, "fused_us": fused_us,
            "sweep_best": {**tiles, "block_n": 32, "split_k": 8, "swap_ab": True, "fused": True},
            "sweep_best_us": sweep_us}


def test_tables_from_a_report(tmp_path):
    report = {"device": "NVIDIA H100 80GB HBM3", "rows": [
        row(7168, 16384, 1, 50.0, 70.0, 53.0),  # the two steps win: R1's o_proj, which has an H200 table
        row(2048, 7168, 1, 25.0, 40.0, 13.0),  # the sweep's fused tiles win: a shape with no table anywhere
        row(2048, 7168, 4, 25.0, 20.0, 21.0),  # the fused path in the table's tiles wins
    ]}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    out = tmp_path / "tables"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tables-from", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    o_proj = json.loads((out / "N7168-K16384-block128x128-NVIDIA_H100_80GB_HBM3.json").read_text())
    assert o_proj["1"]["fused"] is False and o_proj["1"]["block_n"] == 64
    h200 = json.loads((REPO / "kernels/configs/fp8_block_gemm/N7168-K16384-block128x128-NVIDIA_H200.json").read_text())
    assert {m: c for m, c in o_proj.items() if int(m) > 16} == {m: c for m, c in h200.items() if int(m) > 16}
    other = json.loads((out / "N2048-K7168-block128x128-NVIDIA_H100_80GB_HBM3.json").read_text())
    assert other["1"] == report["rows"][1]["sweep_best"]
    assert other["4"]["fused"] is True and other["4"]["block_n"] == 64
    assert set(other) == {"1", "4", "32", "64", "128"}  # no table to borrow from: the heuristic's larger rows

"""benchmarks/kernels/sm90_compile_check.py with the installed Triton: every rope_store_kv variant (the engine's
default path for Llama / Qwen2) compiles for sm_90 with no GPU. The interpreter the kernel tests use never compiles,
so a kernel it accepts can still be refused by the compiler (a variable reshaped inside a runtime branch was: Triton
3.9 accepted it, 3.6, the GPU's, refused rope_store_kv at the tiny test models' 4 / 2 heads)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "kernels" / "sm90_compile_check.py"


T36 = Path("/tmp/t36/bin/python")  # the side environment with the GPU's Triton (3.6), as the script's docstring sets up


def run_with_triton_36(tmp_path, group: str) -> dict:
    """The script's --only group with /tmp/t36's Triton 3.6 (the GPU's); skips where that environment is missing."""
    import pytest

    if not T36.is_file():
        pytest.skip("no /tmp/t36 (python3 -m venv --system-site-packages /tmp/t36 && pip install triton==3.6.0)")
    ptxas = subprocess.run([str(T36), "-c", "import triton, pathlib; print(pathlib.Path(triton.__file__).parent"
                            " / 'backends' / 'nvidia' / 'bin' / 'ptxas')"], capture_output=True, text=True)
    if ptxas.returncode or not Path(ptxas.stdout.strip()).is_file():
        pytest.skip("no ptxas in /tmp/t36's Triton")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "vdeploy_kernels").symlink_to(REPO / "kernels")
    out = tmp_path / f"{group}.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = f"{shim}{os.pathsep}{REPO}"
    proc = subprocess.run([str(T36), str(SCRIPT), "--only", group, "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["triton"].startswith("3.6") and not report["failed"]
    return report


def check_rope_report(report: dict) -> None:
    rows = report["results"]
    assert len(rows) == 64 and not report["failed"]
    assert all(r["ok"] and r["fits_shared"] and r["num_warps"] == 4 for r in rows)
    names = [r["kernel"] for r in rows]
    for layout in ("32/8 D128", "4/2 D64", "4/2 D16", "6/3 D16", "8/4 D8", "4/4 D64", "8/2 D64", "4/1 D32"):
        assert any(layout in n for n in names), layout
    assert any("4/2 D64, float8_e4m3fn cache, rotary 32, k kept" in n for n in names)  # partial, fp8, k kept
    assert any("4/2 D64, bfloat16 cache, rotary 64 interleaved" in n for n in names)


def test_rope_store_kv_compiles_for_hopper(tmp_path):
    """Every rope_store_kv variant at Llama-8B's and the tiny test models' head layouts, with the installed Triton."""
    out = tmp_path / "sm90.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "rope", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_rope_report(json.loads(out.read_text()))


def test_rope_store_kv_compiles_with_the_gpus_triton(tmp_path):
    """The same with Triton 3.6, which refused the kernel at 4 / 2 heads where 3.9 accepted it."""
    check_rope_report(run_with_triton_36(tmp_path, "rope"))


def test_moe_kernels_compile_for_hopper(tmp_path):
    """--only moe with Triton 3.6: every launch of fused_moe (V2-Lite bf16, R1 block-FP8 up to T = 8192)
    and the epilogue kernels compile for sm_90 within the shared-memory limit and without spills."""
    report = run_with_triton_36(tmp_path, "moe")
    rows = report["results"]
    assert all(r["ok"] and r["fits_shared"] and r["spill_store_bytes"] == 0 and r["registers"] for r in rows)
    functions = {r["function"] for r in rows}
    assert functions == {"_moe_align_small_kernel", "_moe_align_count_kernel", "_moe_align_tiles_kernel",
                         "_moe_align_scatter_kernel",
                         "_per_token_group_quant_kernel", "_grouped_gemm_kernel", "_silu_and_mul_quant_kernel",
                         "_moe_sum_kernel"}
    gemms = [r["kernel"] for r in rows if r["function"] == "_grouped_gemm_kernel"]
    assert any("V2-Lite T=512 [" in g and "H200 table" in g and " w2" in g for g in gemms)  # tuned tiles
    assert any("R1 T=8192 [" in g and "H200 table" in g and "w13 BM128" in g for g in gemms)


def test_sampling_kernel_compiles_for_hopper(tmp_path):
    """The one-pass sampler at real vocabularies, with the GPU's Triton (3.6)."""
    report = run_with_triton_36(tmp_path, "sampling")
    assert len(report["results"]) == 3 and not report["failed"]
    assert all(r["ok"] and r["fits_shared"] and not r["spill_store_bytes"] for r in report["results"])


def test_fp8_and_w4a16_decode_kernels_compile_for_hopper(tmp_path):
    """The block-FP8 linears (the fused decode launch in the tables' tiles, the heuristic's and the swapped-operand
    variant; the two-step path; a prefill size) at every R1 shape, and the W4A16 decode kernel, with Triton 3.6."""
    for group in ("fp8dec", "w4a16"):
        (tmp_path / group).mkdir()
        report = run_with_triton_36(tmp_path / group, group)
        rows = report["results"]
        assert rows and all(r["ok"] and r["fits_shared"] and not r["spill_store_bytes"] for r in rows)
        if group == "fp8dec":
            assert any("swap_ab" in r["kernel"] for r in rows) and any("M=512" in r["kernel"] for r in rows)
            assert {"_w8a8_block_decode_kernel", "_w8a8_block_matmul_kernel"} <= {r["function"] for r in rows}


def test_attention_decode_kernels_compile_for_hopper(tmp_path):
    """Decode attention (several KV splits: split and merge launches; one split: the split writes the output) and
    MLA decode at R1's width, with Triton 3.6; decode attention spills nothing."""
    report = run_with_triton_36(tmp_path, "attention")
    rows = report["results"]
    assert all(r["ok"] and r["fits_shared"] for r in rows)
    assert {r["function"] for r in rows} == {"_decode_split_kernel", "_decode_reduce_kernel", "_mla_split_kernel",
                                             "_mla_reduce_kernel"}
    assert not any(r["spill_store_bytes"] for r in rows if r["function"].startswith("_decode"))


def test_every_shipped_fp8_table_row_fits_a_hopper_program(tmp_path):
    """Each Triton row of the shipped block-FP8 tables (H100 and H200), at its own M, compiles with Triton 3.6 within
    Hopper's shared memory (a row that did not stopped R1 engines at 17-48 tokens a step)."""
    report = run_with_triton_36(tmp_path, "fp8tables")
    rows = report["results"]
    assert rows and all(r["ok"] and r["fits_shared"] for r in rows)
    assert any("H100" in r["kernel"] for r in rows) and any("H200" in r["kernel"] for r in rows)

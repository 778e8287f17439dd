"""Compile kernels for Hopper (sm_90) on a machine with no GPU, and report what the compiler made of them: shared
memory (over 227 KB a launch fails), registers and spills (ptxas -v on the PTX), warps (12 where Triton warp-
specialized a 4-warp program) and whether a warp_specialize region exists. The interpreter, which runs the tests,
checks none of this: a kernel it accepts can still be refused by the compiler (rope_store_kv was, once).

Triton is made to believe a CUDA device of capability 9.0 is active and every launch is a warm-up (compile only,
nothing runs); the kernels' own Python wrappers are called with CPU tensors of the real shapes and strides, so the
arguments are specialised exactly as on the GPU. Compile with the Triton the GPU runs, in a side environment:

    python3 -m venv --system-site-packages /tmp/t36 && /tmp/t36/bin/pip install --no-deps triton==3.6.0
    mkdir -p /tmp/shim && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels
    PYTHONPATH=/tmp/shim:$PWD /tmp/t36/bin/python benchmarks/kernels/sm90_compile_check.py \
        [--only fresh|rope|moe|sampling|fp8dec|w4a16|gemv|attention] [--out x.json]

Kernels: the fresh prefill attention kernel at Llama-3.1-8B's shape (bf16, 32 / 8 heads, D = 128) in the shipped
config and every --new-options config of prefill_attention_sweep.py; rope_store_kv at the same shape and at every
head layout the tests' tiny GPU models use (4 / 2 heads at D 64 and 16, 6 / 3, 8 / 4) plus MHA, MQA, 8 / 2, one
head and 16 / 2 at D 8 to 128 (ROPE_SHAPES: bf16 and fp8 caches, full / partial / interleaved rotary, with and
without the rotated keys kept; every combination at Llama-8B's and the tiny models' shapes, each feature
elsewhere); the fused MoE (moe): fused_moe as the engine calls it (shared experts' output given, epilogue fused) for
DeepSeek-V2-Lite (bf16, E 64, I 1408, H 2048, top-6; T 1, 64, 512) and R1 (block-FP8
weights, E 256, I 2048, H 7168, top-8; T 1, 256, 8192), every launch one row (moe_align's three kernels, the
activation quantization, both grouped GEMMs, silu_and_mul_quant_fp8, moe_sum), in the tiles moe_config picks on a GPU
named as the H100 and the H200 of the lent machines (the name is faked; the H100 borrows the H200's table while it has
none) and in the heuristic's (any other GPU name); then moe_sum without a shared output and silu_and_mul_quant_fp8
alone at each shape; the block-FP8 decode linear (fp8dec: x quantized in the GEMM, split-K summed in the same
launch) at every R1 shape with a tuned table, M 1 / 4 / 16, in the table's tiles and the heuristic's; the W4A16
decode kernel (w4a16) at a distill's gate_up, M 1 and 4; the dense decode GEMV (gemv) at Llama-8B's o_proj; decode and MLA attention (attention) with several KV splits
and one.
Exit code 1 when one fails to compile or (but for a fresh config: the sweep skips those on the GPU) needs more
shared memory than a Hopper program may have. "(spills)" marks a kernel ptxas spilled registers for.
This uses Triton internals (the active driver, JITFunction.run): written against Triton 3.6 (and 3.9).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compile, never interpret

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # vdeploy from this checkout when run as a script
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sm90_cases import GROUPS  # noqa: E402

HOPPER_SHARED_LIMIT = 232448  # bytes of shared memory one program may use on an H100 / H200 (227 KB)


def fake_hopper() -> list:
    """Make Triton compile for sm_90 without a device and never launch; returns the list compiled kernels go to."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    class HopperNoDevice:
        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

        def get_active_torch_device(self):
            return torch.device("cpu")

        def is_active(self):
            return True

    compiled: list = []  # (kernel, the JIT function's name, the launch's keyword arguments)
    run = JITFunction.run

    def compile_only(self, *args, grid, warmup, **kwargs):
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        compiled.append((kernel, self.fn.__name__, dict(kwargs)))
        return kernel

    driver.set_active(HopperNoDevice())
    JITFunction.run = compile_only
    triton.set_allocator(lambda size, alignment, stream: torch.empty(size, dtype=torch.int8))
    return compiled


def ptxas_report(kernel) -> dict:
    """Registers and spill bytes ptxas reports for the kernel's PTX (sm_90a), plus Triton's own metadata."""
    import triton

    text = ""
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / "kernel.ptx"
        ptx.write_text(kernel.asm["ptx"])
        for name in ("ptxas", "ptxas-blackwell"):  # Triton's bundled ones; newer Tritons emit PTX only the second reads
            ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
            if not ptxas.is_file():
                continue
            proc = subprocess.run([str(ptxas), "-v", "--gpu-name=sm_90a", str(ptx), "-o", str(Path(tmp) / "k.o")],
                                  capture_output=True, text=True)
            text = proc.stdout + proc.stderr
            if proc.returncode == 0:
                break
    regs = re.findall(r"Used (\d+) registers", text)
    spills = re.findall(r"(\d+) bytes spill stores", text)
    shared = int(kernel.metadata.shared)
    return {"shared_bytes": shared, "fits_shared": shared <= HOPPER_SHARED_LIMIT,
            "registers": int(regs[-1]) if regs else None, "spill_store_bytes": int(spills[-1]) if spills else None,
            "num_warps": int(kernel.metadata.num_warps), "num_stages": int(kernel.metadata.num_stages),
            "warp_specialized": kernel.asm["ttgir"].count("ttg.warp_specialize") > 0}


def launch_label(fn_name: str, kwargs: dict) -> str:
    """A launch inside a multi-kernel case: the kernel's name and, for a GEMM, which one and its tiles."""
    label = fn_name.strip("_").removesuffix("_kernel")
    if fn_name == "_grouped_gemm_kernel":
        label += " w2" if kwargs["MUL_WEIGHT"] else " w13"
        label += (f" BM{kwargs['BLOCK_M']} BN{kwargs['BLOCK_N']} BK{kwargs['BLOCK_K']}"
                  f" w{kwargs['num_warps']} s{kwargs['num_stages']}")
    return label


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=tuple(GROUPS), default=None)
    parser.add_argument("--out", default=None, help="JSON report path")
    args = parser.parse_args()
    import triton

    compiled = fake_hopper()
    results, failed = [], []
    for group, cases in GROUPS.items():
        if args.only not in (None, group):
            continue
        for name, config, call in cases():
            compiled.clear()
            error = None
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - report every kernel that does not compile
                message = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
                error = f"{type(exc).__name__}: {message}"
            for kernel, fn_name, kwargs in compiled:  # every launch of the case, one row each
                row_name = name if len(compiled) == 1 and not error else f"{name} | {launch_label(fn_name, kwargs)}"
                row = {"kernel": row_name, "group": group, "function": fn_name, "config": config, "ok": True,
                       **ptxas_report(kernel)}
                note = ""
                if not row["fits_shared"]:
                    note = "  (over the shared-memory limit: fails at launch)"
                    if group != "fresh":  # the prefill sweep skips such configs on the GPU; elsewhere it is a bug
                        row["ok"] = False
                        failed.append(row_name)
                if row["spill_store_bytes"]:
                    note += "  (spills)"
                print(f"{row_name:60s} shared {row['shared_bytes']:6d} B, {row['registers']} regs, "
                      f"{row['spill_store_bytes']} B spilled, {row['num_warps']} warps"
                      f"{', warp-specialized' if row['warp_specialized'] else ''}{note}", flush=True)
                results.append(row)
            if error:
                results.append({"kernel": name, "group": group, "config": config, "ok": False, "error": error})
                failed.append(name)
                print(f"{name:60s} FAILED {error}", flush=True)
    report = {"triton": triton.__version__, "target": "cuda sm_90", "results": results, "failed": failed}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(results) - len(failed)} of {len(results)} compiled with Triton {triton.__version__}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Compile kernels for Hopper (sm_90) on a machine with no GPU, and report what the compiler made of them: shared
memory (over 227 KB a launch fails), registers and spills (ptxas -v on the PTX), warps (12 where Triton warp-
specialized a 4-warp program) and whether a warp_specialize region exists. The interpreter, which runs the tests,
checks none of this: a kernel it accepts can still be refused by the compiler (rope_store_kv was, once).

Triton is made to believe a CUDA device of capability 9.0 is active and every launch is a warm-up (compile only,
nothing runs); the kernels' own Python wrappers are called with CPU tensors of the real shapes and strides, so the
arguments are specialised exactly as on the GPU. Compile with the Triton the GPU runs, in a side environment:

    python3 -m venv --system-site-packages /tmp/t36 && /tmp/t36/bin/pip install --no-deps triton==3.6.0
    mkdir -p /tmp/shim && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels
    PYTHONPATH=/tmp/shim:$PWD /tmp/t36/bin/python benchmarks/kernels/sm90_compile_check.py [--only fresh|rope] [--out x.json]

Kernels: the fresh prefill attention kernel at Llama-3.1-8B's shape (bf16, 32 / 8 heads, D = 128) in the shipped
config and every --new-options config of prefill_attention_sweep.py; rope_store_kv at the same shape (bf16 and fp8
caches, full / partial / interleaved rotary, with and without the rotated keys kept). Exit code 1 when one fails to
compile (a fresh config over the shared-memory limit is reported, not failed: the sweep skips it on the GPU).
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

    compiled: list = []
    run = JITFunction.run

    def compile_only(self, *args, grid, warmup, **kwargs):
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        compiled.append(kernel)
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


def fresh_cases():
    from dataclasses import asdict

    from benchmarks.kernels.prefill_attention_sweep import NEW_FRESH_CONFIGS, SHIPPED_FRESH, describe
    from vdeploy_kernels.fresh_prefill_attention import FreshPrefillConfig, fresh_prefill_attention
    from vdeploy_kernels.paged_batch import make_metadata

    h, hk, d, lens = 32, 8, 128, [4096, 4096]
    rows = sum(lens)
    fused = torch.empty(rows, (h + 2 * hk) * d, dtype=torch.bfloat16)  # q, k, v: views of one projection
    q, k, v = (fused[:, : h * d].view(rows, h, d), fused[:, h * d : (h + hk) * d].view(rows, hk, d),
               fused[:, (h + hk) * d :].view(rows, hk, d))
    meta = make_metadata(lens, lens, 16, 2 * rows // 16, "cpu")
    out = torch.empty(rows, h, d, dtype=torch.bfloat16)
    for fields in [SHIPPED_FRESH] + NEW_FRESH_CONFIGS:
        cfg = FreshPrefillConfig(**fields)
        yield f"fresh {describe(cfg)}", asdict(cfg), (lambda c=cfg: fresh_prefill_attention(
            q, k, v, out, meta.query_start_loc, meta.seq_lens, 0, len(lens), max(lens), d**-0.5, c))


def rope_cases():
    from vdeploy_kernels.rope_store_kv import rope_store_kv

    h, hk, d, tokens = 32, 8, 128, 256
    qkv = torch.empty(tokens, (h + 2 * hk) * d, dtype=torch.bfloat16)
    q, k, v = (qkv[:, : h * d].view(tokens, h, d), qkv[:, h * d : (h + hk) * d].view(tokens, hk, d),
               qkv[:, (h + hk) * d :].view(tokens, hk, d))
    positions, slots = torch.zeros(tokens, dtype=torch.int64), torch.zeros(tokens, dtype=torch.int64)
    for cache_dtype in (torch.bfloat16, torch.float8_e4m3fn):
        cache = torch.empty(2, 64, 16, hk, d, dtype=cache_dtype)
        for rot_dim, interleaved in ((d, False), (d // 2, False), (d, True)):
            cos_sin = torch.empty(1024, rot_dim)
            for keep_k in (False, True):
                name = (f"rope_store_kv {str(cache_dtype).removeprefix('torch.')} cache, rotary {rot_dim}"
                        f"{' interleaved' if interleaved else ''}{', k kept' if keep_k else ''}")
                yield name, {}, (lambda c=cache, cs=cos_sin, i=interleaved, kk=keep_k: rope_store_kv(
                    q, k, v, positions, cs, c, slots, interleaved=i, return_k=kk))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("fresh", "rope"), default=None)
    parser.add_argument("--out", default=None, help="JSON report path")
    args = parser.parse_args()
    import triton

    compiled = fake_hopper()
    results, failed = [], []
    groups = {"fresh": fresh_cases, "rope": rope_cases}
    for group, cases in groups.items():
        if args.only not in (None, group):
            continue
        for name, config, call in cases():
            compiled.clear()
            try:
                call()
                row = {"kernel": name, "config": config, "ok": True, **ptxas_report(compiled[-1])}
                note = "" if row["fits_shared"] else "  (over the shared-memory limit: fails at launch)"
                print(f"{name:60s} shared {row['shared_bytes']:6d} B, {row['registers']} regs, "
                      f"{row['spill_store_bytes']} B spilled, {row['num_warps']} warps"
                      f"{', warp-specialized' if row['warp_specialized'] else ''}{note}", flush=True)
            except Exception as exc:  # noqa: BLE001 - report every kernel that does not compile
                message = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
                row = {"kernel": name, "config": config, "ok": False, "error": f"{type(exc).__name__}: {message}"}
                failed.append(name)
                print(f"{name:60s} FAILED {row['error']}", flush=True)
            results.append(row)
    report = {"triton": triton.__version__, "target": "cuda sm_90", "results": results, "failed": failed}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(results) - len(failed)} of {len(results)} compiled with Triton {triton.__version__}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

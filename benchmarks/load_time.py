"""Load-time benchmark: weight loading in GB/s per tensor-parallel rank against the raw read bandwidth of the
same safetensors files, measured in the same run (target: loading reaches >= 0.8 of raw).

    python benchmarks/load_time.py --config deepseek-r1-distill-qwen-7b --dir /data/ckpt-7b --write \
        --tp 1 2 4 --device cuda --drop-caches --out benchmarks/results/load-time-h100.json

--write first writes a real sharded checkpoint of the config (random bf16 values, HF names and shapes). Each rank
of each TP size is loaded in turn in this one process (ParallelState(rank, size) without a process group: loading
needs no collectives), each from a cold page cache when --drop-caches can evict it; otherwise everything is
measured warm (after one reading pass) and the JSON says so. The host RSS peak of each load shows that no second
copy of the weights is held on the host.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # load_time_lib sits next to this script

import load_time_lib as lib

TARGET_RATIO = 0.8
GB = 1e9


@dataclass(frozen=True)
class RankLoad:
    tp: int
    rank: int
    weight_bytes: int  # this rank's parameter bytes
    seconds: float  # load_model wall time, device synchronized
    gb_per_s: float
    ratio_to_raw: float
    loader_seconds: float  # load_stats.seconds as the loader reports it
    resident_before: float | None  # page-cache residency of the shards when the load started
    host_rss_peak_bytes: int | None  # peak resident set of the process during this load
    host_rss_growth_bytes: int | None  # that peak above the resident set before the load
    matches_reference: bool | None = None  # --verify: every parameter equals a safetensors-library load


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from vdeploy.config import ModelConfig

    directory = Path(args.dir)
    written = None
    if args.write:
        if not args.config:
            raise SystemExit("--write needs --config")
        config = load_config_dict(args.config)
        written = lib.write_checkpoint(directory, config, shard_bytes=int(args.shard_size_gb * GB), seed=args.seed)
        print(f"wrote {len(written.files)} shards, {written.data_bytes / GB:.2f} GB in {written.seconds:.1f} s "
              f"({written.gb_per_s:.2f} GB/s)", file=sys.stderr)
    files = lib.checkpoint_shards(directory)
    model_config = ModelConfig.from_path(directory)
    device = torch.device(args.device)

    cold = False
    cache_method, residency = "not requested", None
    if args.drop_caches:
        cache_method = lib.drop_page_cache(files)
        residency = lib.resident_fraction(files)
        cold = cache_method != "none" and (residency is None or residency < 0.05)

    def prepare() -> None:
        if cold:
            lib.drop_page_cache(files)

    if not cold:
        lib.read_files(files)  # warm: every measurement then reads from the page cache alike
    prepare()
    raw_before = lib.read_files(files)
    report_raw("raw read", raw_before, cold)
    warm_up(model_config, device)
    loads = [measure_rank(directory, model_config, tp, rank, device, args.dtype, files, prepare, args.verify)
             for tp in args.tp for rank in range(tp)]
    prepare()
    raw_after = lib.read_files(files)
    report_raw("raw read again", raw_after, cold)
    # ratios against the faster of the two raw passes (before and after the loads): a disk that is slow for a
    # moment during one pass must not flatter the loader
    reference = max(raw_before.gb_per_s, raw_after.gb_per_s)
    loads = [replace(x, ratio_to_raw=x.gb_per_s / reference if reference > 0 else 0.0) for x in loads]

    result = {
        "benchmark": "load_time",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else " ".join(argv),
        "git_rev": args.git_rev or lib.git_revision(),
        "machine": lib.machine_info(device),
        "model": {"config": args.config or str(directory / "config.json"), "family": model_config.family,
                  "torch_dtype": model_config.torch_dtype},
        "checkpoint": {
            "dir": str(directory),
            "filesystem": lib.filesystem_type(directory),
            "files": [{"name": f.name, "bytes": f.stat().st_size} for f in files],
            "total_bytes": sum(f.stat().st_size for f in files),
            "write": None if written is None else {"data_bytes": written.data_bytes, "seconds": written.seconds,
                                                   "gb_per_s": written.gb_per_s},
        },
        "cache": {"cold": cold, "method": cache_method, "resident_after_drop": residency,
                  "note": "each measurement starts from an evicted page cache" if cold else
                  "page cache not evicted (not requested, not permitted, or a RAM filesystem): every "
                  "measurement reads warm, after one untimed pass"},
        "device": str(device),
        "dtype": args.dtype,
        "host_to_device_gb_per_s": host_to_device_bandwidth(device),
        "raw_read": {**raw_json(raw_before), "block_bytes": lib.READ_BLOCK_BYTES},
        "raw_read_after": raw_json(raw_after),
        "raw_reference_gb_per_s": reference,
        "loads": [asdict(x) for x in loads],
        "summary": summarize(loads),
        "target_ratio": TARGET_RATIO,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return 1 if any(x.matches_reference is False for x in loads) else 0


def raw_json(raw: lib.ReadResult) -> dict:
    return {**asdict(raw), "gb_per_s": raw.gb_per_s}


def report_raw(label: str, raw: lib.ReadResult, cold: bool) -> None:
    print(f"{label}: {raw.bytes / GB:.2f} GB in {raw.seconds:.2f} s = {raw.gb_per_s:.2f} GB/s "
          f"({'cold' if cold else 'warm'})", file=sys.stderr)


def measure_rank(directory: Path, model_config, tp: int, rank: int, device, dtype: str, files: list[Path],
                 prepare, verify: bool) -> RankLoad:
    """Load rank `rank` of `tp` once, from the page-cache state `prepare` leaves; ratio_to_raw is filled in
    by the caller once both raw passes are known. verify: afterwards (untimed) compare every parameter with a
    reference load of the same rank through the safetensors library."""
    import torch

    from vdeploy.config import EngineConfig
    from vdeploy.distributed.parallel_state import ParallelState
    from vdeploy.models.loader import load_model

    prepare()
    engine_config = EngineConfig(model=str(directory), load_format="safetensors", device=str(device), dtype=dtype)
    resident = lib.resident_fraction(files)
    rss_before = lib.current_rss()
    peak_reset = lib.reset_rss_peak()
    start = time.perf_counter()
    parallel = ParallelState(tp_rank=rank, tp_size=tp)
    model = load_model(engine_config, model_config, parallel, device, quiet=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = lib.rss_peak() if peak_reset else None
    stats = model.load_stats
    verified = matches_reference_load(model, engine_config, model_config, parallel) if verify else None
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    gb_per_s = stats.weight_bytes / seconds / GB
    print(f"tp={tp} rank={rank}: {stats.weight_bytes / GB:.2f} GB in {seconds:.2f} s = {gb_per_s:.2f} GB/s",
          file=sys.stderr)
    return RankLoad(tp, rank, stats.weight_bytes, seconds, gb_per_s, 0.0, stats.seconds, resident, peak,
                    None if peak is None or rss_before is None else max(0, peak - rss_before), verified)


def matches_reference_load(model, engine_config, model_config, parallel) -> bool:
    """Whether every parameter equals (bit for bit) the same rank filled on the CPU through the safetensors
    library's own slices (safe_open + get_slice) instead of vdeploy's shard reader: checks the reader's
    positioned reads, row-span reads, staging chunks and asynchronous device copies against an independent
    implementation."""
    import torch
    from safetensors import safe_open

    from vdeploy.models.loader import (
        WeightFiller,
        build_on_meta,
        checkpoint_files,
        materialize,
        resolve_dtype,
    )

    reference = build_on_meta(model_config, parallel, resolve_dtype(engine_config.dtype, model_config))
    materialize(reference, torch.device("cpu"))
    filler = WeightFiller(reference)
    for file in checkpoint_files(engine_config.model):
        with safe_open(str(file), framework="pt") as f:
            names = f.keys()
            for name in names:
                filler.load(file.name, name, f.get_slice(name))
    for module in reference.modules():  # the same post-processing load_model applies
        method = getattr(module, "linear_method", None)
        if method is not None:
            method.process_weights_after_loading(module)
    if hasattr(reference, "process_weights_after_loading"):
        reference.process_weights_after_loading()
    expected_params = dict(reference.named_parameters())
    for name, param in model.named_parameters():
        expected, got = expected_params[name], param.detach().cpu()
        if got.dtype != expected.dtype or got.shape != expected.shape \
                or not torch.equal(got.view(torch.uint8), expected.view(torch.uint8)):
            print(f"verify: parameter {name} differs from the safetensors-library load", file=sys.stderr)
            return False
    return True


def warm_up(model_config, device) -> None:
    """One-time process costs that are not loading: importing the model's modules (a build on the meta device,
    which allocates nothing), torch's lazy imports on the first meta -> device move (sympy, ~0.5 s) and creating
    the CUDA context."""
    import torch

    from vdeploy.distributed.parallel_state import ParallelState
    from vdeploy.models.loader import build_on_meta

    build_on_meta(model_config, ParallelState(), torch.bfloat16)
    torch.nn.Linear(1, 1, device="meta").to_empty(device=device)
    if device.type == "cuda":
        torch.empty(1, device=device)
        torch.cuda.synchronize(device)


def host_to_device_bandwidth(device, nbytes: int = 256 << 20, repeats: int = 5) -> float | None:
    """Page-locked host -> GPU copy bandwidth: with raw reads, the other bound of GPU loading."""
    import torch

    if device.type != "cuda":
        return None
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    target = torch.empty(nbytes, dtype=torch.uint8, device=device)
    target.copy_(host, non_blocking=True)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        target.copy_(host, non_blocking=True)
    torch.cuda.synchronize(device)
    return nbytes * repeats / (time.perf_counter() - start) / GB


def summarize(loads: list[RankLoad]) -> dict[str, dict[str, float | bool]]:
    """Per TP size: the slowest rank's ratio (what gates start-up) and the mean bytes and GB/s per rank."""
    out: dict[str, dict[str, float]] = {}
    for tp in sorted({x.tp for x in loads}):
        ranks = [x for x in loads if x.tp == tp]
        out[str(tp)] = {
            "min_ratio_to_raw": min(x.ratio_to_raw for x in ranks),
            "mean_gb_per_s": sum(x.gb_per_s for x in ranks) / len(ranks),
            "mean_rank_bytes": sum(x.weight_bytes for x in ranks) / len(ranks),
            "max_rank_seconds": max(x.seconds for x in ranks),
            "meets_target": min(x.ratio_to_raw for x in ranks) >= TARGET_RATIO,
        }
    return out


# ---------------------------------------------------------------------------------------------- context


def load_config_dict(name_or_path: str) -> dict:
    """A bundled config name (vdeploy/model_configs), a config.json file, or a directory holding one."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        from vdeploy.model_configs import config_path

        path = config_path(name_or_path)
    return json.loads(path.read_text())


def print_table(result: dict) -> None:
    raw = result["raw_read"]
    state = "cold" if result["cache"]["cold"] else "warm"
    print(f"{result['machine']['gpu'] or result['machine']['cpu']} | {result['device']} | {state} page cache | "
          f"raw read {raw['gb_per_s']:.2f} / {result['raw_read_after']['gb_per_s']:.2f} GB/s (before / after) "
          f"over {raw['bytes'] / GB:.2f} GB"
          + ("" if result["host_to_device_gb_per_s"] is None else
             f" | pinned host->device {result['host_to_device_gb_per_s']:.1f} GB/s"))
    print(f"{'tp':>3} {'rank':>4} {'GB':>8} {'s':>8} {'GB/s':>8} {'ratio':>6} {'rss peak GB':>11}")
    for x in result["loads"]:
        rss = "-" if x["host_rss_peak_bytes"] is None else f"{x['host_rss_peak_bytes'] / GB:.2f}"
        print(f"{x['tp']:>3} {x['rank']:>4} {x['weight_bytes'] / GB:>8.3f} {x['seconds']:>8.2f} "
              f"{x['gb_per_s']:>8.2f} {x['ratio_to_raw']:>6.2f} {rss:>11}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="bundled config name or path of a config.json (needed with --write)")
    p.add_argument("--dir", required=True, help="checkpoint directory (written there with --write)")
    p.add_argument("--tp", type=int, nargs="+", default=[1], help="tensor-parallel sizes to measure")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--write", action="store_true", help="write a random checkpoint of --config into --dir first")
    p.add_argument("--shard-size-gb", type=float, default=lib.DEFAULT_SHARD_BYTES / GB)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drop-caches", action="store_true", help="evict the page cache before each measurement")
    p.add_argument("--verify", action="store_true",
                   help="after each timed load, compare every parameter with the same rank filled through the "
                        "safetensors library (untimed; exit status 1 on a difference)")
    p.add_argument("--dtype", default="auto", help="parameter dtype (auto = the checkpoint's)")
    p.add_argument("--git-rev", help="revision to record (default: git rev-parse of this tree)")
    p.add_argument("--out", required=True, help="JSON result file")
    args = p.parse_args(argv)
    if any(tp < 1 for tp in args.tp):
        p.error("--tp sizes must be >= 1")
    return args


if __name__ == "__main__":
    sys.exit(main())

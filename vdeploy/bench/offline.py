"""Offline throughput: N prompts of random tokens through the engine (and optionally HF transformers `generate`)
in one run, with fixed or uniform-random input/output lengths and ignore_eos, so every request generates exactly
its output length. Greedy decoding on both sides: the comparison measures the engines, not the samplers.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vdeploy.config import EngineConfig, ModelConfig


def drawn_length(rng: random.Random, n: int, range_ratio: float) -> int:
    """A length uniform in [n * (1 - r), n * (1 + r)], at least 1 (vLLM's random dataset draws the same way)."""
    lo, hi = int(n * (1 - range_ratio)), int(n * (1 + range_ratio))
    return max(rng.randint(max(lo, 1), max(hi, 1)), 1)


@dataclass(frozen=True)
class Workload:
    num_prompts: int = 64
    input_len: int = 128
    output_len: int = 128
    random_range_ratio: float = 0.0  # lengths uniform in [len * (1 - r), len * (1 + r)]
    seed: int = 0
    temperature: float = 0.0  # 0: greedy; vLLM's `bench throughput` samples every request at 1.0

    def lengths(self) -> list[tuple[int, int]]:
        rng = random.Random(self.seed)
        r = self.random_range_ratio
        return [(drawn_length(rng, self.input_len, r), drawn_length(rng, self.output_len, r))
                for _ in range(self.num_prompts)]

    def prompts(self, vocab_size: int) -> tuple[list[list[int]], list[int]]:
        """Random token prompts (token ids from the lower vocabulary, away from special tokens at the end)."""
        rng = random.Random(self.seed + 1)
        top = max(min(vocab_size, 32_000) - 1, 2)
        prompts, out_lens = [], []
        for in_len, out_len in self.lengths():
            prompts.append([rng.randint(1, top) for _ in range(in_len)])
            out_lens.append(out_len)
        return prompts, out_lens


@dataclass
class ThroughputResult:
    backend: str  # "vdeploy" | "hf"
    num_requests: int
    elapsed_s: float
    input_tokens: int
    output_tokens: int
    startup_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return self.num_requests / self.elapsed_s

    @property
    def input_tokens_per_s(self) -> float:
        return self.input_tokens / self.elapsed_s

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.elapsed_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            requests_per_s=round(self.requests_per_s, 4),
            input_tokens_per_s=round(self.input_tokens_per_s, 2),
            output_tokens_per_s=round(self.output_tokens_per_s, 2),
            total_tokens_per_s=round((self.input_tokens + self.output_tokens) / self.elapsed_s, 2),
        )
        return d


def lora_round_robin(config: EngineConfig, n: int) -> list | None:
    """With --lora-modules: request i uses adapter i mod (adapters + 1), the last share being the base model."""
    from vdeploy.lora.request import LoRARequest

    modules = config.lora.lora_modules
    if not modules:
        return None
    choices = [LoRARequest(name, k + 1, path) for k, (name, path) in enumerate(modules)] + [None]
    return [choices[i % len(choices)] for i in range(n)]


def run_vdeploy(config: EngineConfig, prompts: list[list[int]], out_lens: list[int],
                temperature: float = 0.0) -> ThroughputResult:
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams

    start = time.perf_counter()
    llm = LLM.from_engine_config(config)
    startup = time.perf_counter() - start
    try:
        longest = max(len(p) + n for p, n in zip(prompts, out_lens))
        if longest > llm.max_model_len:  # the engine would stop such requests early: a shorter run than reported
            from vdeploy.errors import ConfigError

            raise ConfigError(f"the workload's longest request needs {longest} tokens (prompt + output), more than "
                              f"max_model_len {llm.max_model_len}",
                              hint="lower --input-len / --output-len or raise --max-model-len")
        params = [SamplingParams(temperature=temperature, max_tokens=n, ignore_eos=True) for n in out_lens]
        loras = lora_round_robin(config, len(prompts))
        llm.generate(prompts[:1], params[:1])  # warm-up: first-call costs are not throughput
        begin, begin_monotonic = time.perf_counter(), time.monotonic()
        outputs = llm.generate(prompts, params, lora_request=loras)
        elapsed = time.perf_counter() - begin
        phases = _phases(outputs, begin_monotonic, elapsed)
        stats = llm.core.stats()
        generated = sum(len(o.outputs[0].token_ids) for o in outputs)
        from vdeploy.bench.bench_roofline import decode_roofline

        roofline = decode_roofline(llm, len(prompts), max(map(len, prompts)), max(out_lens), generated / elapsed)
    finally:
        llm.close()
    return ThroughputResult(
        "vdeploy", len(prompts), elapsed, sum(map(len, prompts)), generated, startup,
        extra={"num_preemptions": stats.num_preemptions, "num_kv_blocks": stats.num_total_blocks,
               **({"lora_adapters": [name for name, _ in config.lora.lora_modules]} if loras else {}),
               **({"spec_draft_tokens": stats.spec_draft_tokens_total,
                   "spec_accepted_tokens": stats.spec_accepted_tokens_total,
                   "spec_acceptance_rate": round(stats.spec_accepted_tokens_total / stats.spec_draft_tokens_total, 4),
                   "spec_mean_accepted_length": round(stats.spec_mean_accepted_length, 3),
                   "spec_draft_seconds": round(stats.spec_draft_seconds_total, 4)}
                  if stats.spec_draft_tokens_total else {}),
               **({"roofline": roofline} if roofline else {}),
               **({"phases": phases} if phases else {})},
    )


def _phases(outputs, begin_monotonic: float, elapsed: float) -> dict[str, float] | None:
    """When the last request got its first token (every prompt prefilled), and the decode that followed: where a
    throughput run's time went, beside a prefill-only run (--output-len 1) of the same prompts. The engine stamps
    first tokens with time.monotonic(). None when a request has no such stamp."""
    firsts = [o.metrics.get("first_token_time") for o in outputs]
    if not firsts or any(t is None for t in firsts):
        return None
    prefilled = max(firsts) - begin_monotonic
    return {"all_prefilled_s": round(prefilled, 4), "decode_after_s": round(elapsed - prefilled, 4)}


def run_hf(config: EngineConfig, prompts: list[list[int]], out_lens: list[int], batch_size: int = 1) -> ThroughputResult:
    """The same workload through transformers `generate` (left-padded batches of `batch_size`)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from vdeploy.worker.device import TORCH_DTYPES, resolve_device, resolve_dtype_name

    model_config = ModelConfig.from_path(config.model)
    dtype = TORCH_DTYPES[resolve_dtype_name(config, model_config)]
    device = resolve_device(config)
    start = time.perf_counter()
    if config.load_format == "dummy":
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config.model), dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype)
    model = model.to(device).eval()
    startup = time.perf_counter() - start
    pad_id = 0
    generated = 0
    with torch.inference_mode():
        model.generate(torch.tensor([prompts[0]], device=device), max_new_tokens=2, do_sample=False, pad_token_id=pad_id)
        begin = time.perf_counter()
        for i in range(0, len(prompts), batch_size):
            batch, lens = prompts[i : i + batch_size], out_lens[i : i + batch_size]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # [B, S] left-padded
            mask = torch.zeros_like(ids)
            for row, p in enumerate(batch):
                ids[row, width - len(p) :] = torch.tensor(p)
                mask[row, width - len(p) :] = 1
            new = max(lens)
            out = model.generate(
                ids.to(device), attention_mask=mask.to(device), max_new_tokens=new, min_new_tokens=new,
                do_sample=False, pad_token_id=pad_id,
            )
            generated += (out.shape[1] - width) * len(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - begin
    del model
    return ThroughputResult(
        "hf", len(prompts), elapsed, sum(map(len, prompts)), generated, startup, extra={"batch_size": batch_size}
    )


def describe_device(config: EngineConfig) -> str:
    import torch

    from vdeploy.env.host import cpu_model_name
    from vdeploy.worker.device import resolve_device_type

    if resolve_device_type(config) == "cuda":
        n = config.parallel.tensor_parallel_size
        return f"{n} x {torch.cuda.get_device_name(0)}"
    return f"CPU: {cpu_model_name()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def git_revision() -> str | None:
    """The checkout's short revision (+ "-dirty"); $VDEPLOY_GIT_REV wins, for copies without .git (the GPU box)."""
    if os.environ.get("VDEPLOY_GIT_REV"):
        return os.environ["VDEPLOY_GIT_REV"]
    repo = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_offline_benchmark(
    config: EngineConfig, workload: Workload, *, compare_hf: bool = False, hf_batch_size: int = 1,
    command: str | None = None,
) -> dict[str, Any]:
    """The whole report: metadata, workload, results per backend and, with HF, the speedup."""
    from vdeploy import __version__

    model_config = ModelConfig.from_path(config.model)
    prompts, out_lens = workload.prompts(model_config.vocab_size)
    results = [run_vdeploy(config, prompts, out_lens, workload.temperature)]
    if compare_hf:
        results.append(run_hf(config, prompts, out_lens, hf_batch_size))
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": describe_device(config),
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_revision": git_revision(),
        "vdeploy_version": __version__,
        "model": config.model,
        "model_architecture": model_config.architecture,
        "load_format": config.load_format,
        "tensor_parallel_size": config.parallel.tensor_parallel_size,
        "workload": asdict(workload),
        "results": [r.to_dict() for r in results],
    }
    if compare_hf:
        report["speedup_output_tokens_per_s"] = round(results[0].output_tokens_per_s / results[1].output_tokens_per_s, 2)
    return report

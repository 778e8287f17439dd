"""What `vdeploy serve` will serve, resolved before anything loads: the model source, the profile (and why), the engine
settings with their provenance, the served names and the parsers, and the memory check that refuses a model that
cannot fit, with the planner's advice."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from vdeploy.errors import ConfigError, DoesNotFitError
from vdeploy.server.model_source import ModelSource, resolve_model_source

GIB = 1 << 30


@dataclass
class ServeOptions:
    model: Optional[str] = None
    profile: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: Optional[str] = None
    served_model_names: tuple[str, ...] = ()  # what clients may send (the first: the default name)
    reasoning_parser: Optional[str] = None  # None: deepseek_r1 for R1 models and distills, none otherwise
    tool_call_parser: Optional[str] = None  # None: the format the chat template shows (server/tool_parsers/)
    chat_template: Optional[str] = None
    download: bool = False
    drain_timeout_s: float = 30.0
    log_level: str = "info"
    json_logs: bool = False
    engine_flags: dict[str, Any] = field(default_factory=dict)  # vdeploy.engine_settings name -> value
    config_values: dict[str, Any] = field(default_factory=dict)  # from --config FILE.yaml (vdeploy.config_file)
    config_file: Optional[str] = None
    explain: bool = False  # print every setting's value and source, then stop before loading
    # the engine core in its own process (no GIL shared with the HTTP side); False: a thread of this process
    engine_process: bool = True


@dataclass
class Deployment:
    """Everything resolved before the engine loads; printed for the operator."""

    source: ModelSource
    model_config: Any  # vdeploy.config.ModelConfig
    engine_config: Any  # vdeploy.config.EngineConfig
    provenance: dict[str, str]
    profile: Any  # vdeploy.profile_schema.Profile | None
    profile_reasons: list[str]
    reasoning_parser: str
    served_model_names: tuple[str, ...]  # the first is the default name, and the one metrics carry
    memory_note: str

    @property
    def served_model_name(self) -> str:
        return self.served_model_names[0]


def _checkpoint_bytes(path: Path) -> Optional[int]:
    shards = list(path.glob("*.safetensors"))
    return sum(p.stat().st_size for p in shards) if shards else None


def check_memory(model_cfg: Any, engine_cfg: Any, hardware: Any, host: Any, model_path: Path) -> str:
    """Raise DoesNotFitError when the weights plus a minimal KV cache cannot fit; return a one-line summary."""
    from vdeploy.checkpoint.planner import plan_memory
    from vdeploy.checkpoint.tp_rules import tp_advice, tp_problem

    tp = engine_cfg.parallel.tensor_parallel_size
    pp = engine_cfg.parallel.pipeline_parallel_size
    if (problem := tp_problem(model_cfg, tp)) is not None:  # a layout question, not a memory one: said as such
        raise ConfigError(f"--tp {tp}: {problem}", hint=tp_advice(model_cfg, tp))
    on_cpu = engine_cfg.device == "cpu" or hardware.is_cpu_only
    kv_dtype_bytes = 2
    if on_cpu:
        memory = host.memory_available or host.memory_total
        if not memory:
            return "CPU: memory not measurable here, plan skipped"
        utilization, fp8_cores = 0.9, False
        kv_dtype_bytes = _cpu_kv_dtype_bytes(engine_cfg)
    else:
        if tp * pp > hardware.gpu_count * max(hardware.nodes, engine_cfg.parallel.nnodes):
            raise DoesNotFitError(
                f"--tp {tp} x pp {pp} needs {tp * pp} GPUs, this machine has {hardware.gpu_count}",
                hint="lower --tp, or run on a machine (or nodes) with more GPUs",
            )
        memory = hardware.min_gpu_memory
        utilization = engine_cfg.cache.gpu_memory_utilization
        fp8_cores = all(g.has_fp8_tensor_cores for g in hardware.gpus)
    weight_bytes = _checkpoint_bytes(model_path)
    lora = engine_cfg.lora
    if weight_bytes is not None and lora.enabled and model_cfg.family in ("llama", "qwen2"):
        from vdeploy.config import DTYPE_BYTES
        from vdeploy.lora.adapter import lora_slot_bytes

        # the adapter slots are allocated with the weights: plan them as weights (summed over the ranks)
        weight_bytes += tp * lora_slot_bytes(model_cfg, lora.max_loras, lora.max_lora_rank, tp,
                                             DTYPE_BYTES.get(model_cfg.torch_dtype, 2))
    plan = plan_memory(
        model_cfg, tp=tp, pp=pp, gpu_memory_bytes=memory, gpu_memory_utilization=utilization,
        weight_bytes=weight_bytes, max_model_len=engine_cfg.scheduler.max_model_len,
        fp8_tensor_cores=fp8_cores, kv_cache_dtype_bytes=kv_dtype_bytes, device="cpu" if on_cpu else "cuda",
    )
    where = "of RAM" if on_cpu else "per GPU"
    if plan.verdict == "does_not_fit":
        raise DoesNotFitError(
            f"the model does not fit: {plan.weight_bytes_per_gpu / GIB:.1f} GiB of weights per rank, "
            f"{memory / GIB:.1f} GiB {where} at utilization {utilization}",
            hint=plan.advice,
        )
    if on_cpu:  # the CPU KV cache gets a fixed byte budget, not what is left of the RAM (worker/memory_profile.py)
        budget = engine_cfg.cache.cpu_kv_cache_bytes
        note = (f"{plan.weight_bytes_per_gpu / GIB:.1f} GiB weights per rank ({memory / GIB:.0f} GiB {where}); KV "
                f"budget {budget / (1 << 20):.0f} MiB = {budget // max(plan.kv_bytes_per_token_per_gpu, 1):,} "
                f"tokens (cache.cpu_kv_cache_bytes)")
    else:
        note = (f"{plan.weight_bytes_per_gpu / GIB:.1f} GiB weights per rank, room for "
                f"{plan.kv_tokens_per_gpu:,} KV tokens ({memory / GIB:.0f} GiB {where})")
    if plan.verdict == "fits_limited":
        note += f"; context limited to {plan.max_model_len}: {plan.advice}"
    return note


def _cpu_kv_dtype_bytes(engine_cfg: Any) -> int:
    """Bytes per KV element on CPU without importing torch: "auto" is the activation dtype, and "auto" activations
    are float32 on CPU (vdeploy.worker.device.resolve_dtype_name)."""
    from vdeploy.config import DTYPE_BYTES

    name = engine_cfg.cache.kv_cache_dtype
    if name == "auto":
        name = "float32" if engine_cfg.dtype == "auto" else engine_cfg.dtype
    return DTYPE_BYTES.get(name, 4)


def cap_profile_context(engine_cfg: Any, provenance: dict[str, str], model_cfg: Any) -> Any:
    """A profile's max_model_len is a ceiling for a whole class of models (demo-cpu: any Llama/Qwen2 up to 2B); a
    model with a shorter context keeps its own. A flag or VDEPLOY_MAX_MODEL_LEN is taken as asked (and refused by
    the engine when it exceeds the model)."""
    requested = engine_cfg.scheduler.max_model_len
    limit = model_cfg.max_position_embeddings
    if requested is None or requested <= limit or not provenance.get("max_model_len", "").startswith("profile:"):
        return engine_cfg
    provenance["max_model_len"] += f", capped at the model's {limit}"
    return engine_cfg.with_overrides(**{"scheduler.max_model_len": limit})


def resolve_deployment(opts: ServeOptions, log: Optional[Callable[[str], None]] = None) -> Deployment:
    from vdeploy.config import ModelConfig
    from vdeploy.env.hardware import detect_hardware
    from vdeploy.env.host import detect_host
    from vdeploy.profiles import get_profile, resolve_engine_config, select_profile
    from vdeploy.server.reasoning import REASONING_PARSERS, default_reasoning_parser
    from vdeploy.server.tool_parsers import TOOL_CALL_PARSERS

    if opts.tool_call_parser is not None and opts.tool_call_parser not in TOOL_CALL_PARSERS:
        raise ConfigError(f"unknown tool-call parser {opts.tool_call_parser!r}",
                          hint=f"choose one of: {', '.join(TOOL_CALL_PARSERS)}")
    if opts.reasoning_parser is not None and opts.reasoning_parser not in REASONING_PARSERS:
        raise ConfigError(f"unknown reasoning parser {opts.reasoning_parser!r}",
                          hint=f"choose one of: {', '.join(REASONING_PARSERS)}")
    if any(not name.strip() for name in opts.served_model_names):
        raise ConfigError("--served-model-name must not be empty")
    if len(set(opts.served_model_names)) < len(opts.served_model_names):
        raise ConfigError(f"--served-model-name lists a name twice: {', '.join(opts.served_model_names)}")
    if opts.chat_template is not None and not Path(opts.chat_template).is_file():
        raise ConfigError(f"chat template file not found: {opts.chat_template}")
    from vdeploy.model_configs import resolve_dummy_model

    from vdeploy.profiles import given_settings

    # before the profile resolver runs (a dummy model's name picks its bundled config)
    load_format = given_settings(opts.engine_flags, os.environ, opts.config_values).get("load_format")
    model_spec = resolve_dummy_model(opts.model, load_format)
    source = resolve_model_source(model_spec, allow_download=opts.download, log=log)
    model_cfg = ModelConfig.from_path(source.path)
    hardware = detect_hardware()
    if opts.profile:
        profile = get_profile(opts.profile)
        reasons = [f"chosen with --profile {opts.profile}"]
    else:
        selection = select_profile(model_cfg, hardware)
        profile, reasons = selection.profile, selection.reasons
    engine_cfg, provenance = resolve_engine_config(str(source.path), profile, os.environ, opts.engine_flags,
                                                   opts.config_values, opts.config_file or "")
    engine_cfg = cap_profile_context(engine_cfg, provenance, model_cfg)
    served = opts.served_model_names or (source.default_served_name,)
    taken = sorted({name for name, _ in engine_cfg.lora.lora_modules} & set(served))
    if taken:  # as /v1/load_lora_adapter refuses it at runtime: requests by that name would get the base model
        raise ConfigError(f"--lora-modules names an adapter {', '.join(taken)}, the name the model is served as",
                          hint="give the adapter another name, or change --served-model-name")
    memory_note = check_memory(model_cfg, engine_cfg, hardware, detect_host(), source.path)
    # the id the user typed, the directory, and the name the checkpoint was saved under all hint at "R1"
    name_hint = " ".join([opts.model or "", str(source.path), str(model_cfg.raw.get("_name_or_path", ""))])
    parser = opts.reasoning_parser or default_reasoning_parser(name_hint, model_cfg.architecture)
    return Deployment(
        source=source, model_config=model_cfg, engine_config=engine_cfg, provenance=provenance, profile=profile,
        profile_reasons=reasons, reasoning_parser=parser,
        served_model_names=served, memory_note=memory_note,
    )

"""`vdeploy serve`, step by step: resolve the model and the profile (saying why), refuse up front when the memory
planner says the model cannot fit, load, warm up, print the resolved configuration and the URL, then serve until
SIGTERM drains it."""

from __future__ import annotations

import asyncio
import os
import time
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
    served_model_name: Optional[str] = None
    reasoning_parser: Optional[str] = None  # None: deepseek_r1 for R1 models and distills, none otherwise
    tool_call_parser: Optional[str] = None  # None: the format the chat template shows (server/tool_parsers.py)
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
    served_model_name: str
    memory_note: str


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
        fp8_tensor_cores=fp8_cores, kv_cache_dtype_bytes=kv_dtype_bytes,
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
    if opts.chat_template is not None and not Path(opts.chat_template).is_file():
        raise ConfigError(f"chat template file not found: {opts.chat_template}")
    from vdeploy.model_configs import resolve_dummy_model

    load_format = opts.engine_flags.get("load_format") or opts.config_values.get("load_format")
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
    memory_note = check_memory(model_cfg, engine_cfg, hardware, detect_host(), source.path)
    # the id the user typed, the directory, and the name the checkpoint was saved under all hint at "R1"
    name_hint = " ".join([opts.model or "", str(source.path), str(model_cfg.raw.get("_name_or_path", ""))])
    parser = opts.reasoning_parser or default_reasoning_parser(name_hint, model_cfg.architecture)
    return Deployment(
        source=source, model_config=model_cfg, engine_config=engine_cfg, provenance=provenance, profile=profile,
        profile_reasons=reasons, reasoning_parser=parser,
        served_model_name=opts.served_model_name or source.default_served_name, memory_note=memory_note,
    )


def build_engine(dep: Deployment, chat_template: Optional[str], *, engine_process: bool = True) -> Any:
    cfg = dep.engine_config
    if cfg.parallel.data_parallel_size > 1:
        if not engine_process:
            raise ConfigError("--data-parallel-size needs the engine-core processes",
                              hint="drop --no-engine-process")
        from vdeploy.engine.data_parallel import DataParallelEngine

        return DataParallelEngine(cfg, model_name=dep.served_model_name, chat_template=chat_template,
                                  model_config=dep.model_config)
    if engine_process:
        from vdeploy.engine.process_engine import ProcessAsyncEngine

        return ProcessAsyncEngine(cfg, model_name=dep.served_model_name, chat_template=chat_template,
                                  model_config=dep.model_config)
    from vdeploy.engine.async_engine import AsyncEngine
    from vdeploy.engine.engine_core import EngineCore
    from vdeploy.engine.tokenizer import Tokenizer

    tokenizer = None
    if chat_template is not None:
        tokenizer = Tokenizer.from_dir(cfg.tokenizer or cfg.model, chat_template_file=chat_template)
    core = EngineCore(cfg, model_config=dep.model_config, tokenizer=tokenizer)
    return AsyncEngine(cfg, core=core, model_name=dep.served_model_name)


def warm_up(engine: Any) -> float:
    """One short greedy request through the whole path (kernels compiled, allocator warm) before the first user."""
    from vdeploy.engine.sampling_params import SamplingParams

    tokenizer = engine.tokenizer
    prompt = tokenizer.encode("Hello") if tokenizer is not None else [1, 2, 3, 4]
    params = SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True)

    async def run() -> None:
        async for _ in engine.generate(prompt, params, f"warmup-{os.getpid()}-{time.monotonic_ns()}"):
            pass

    start = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - start


def profile_sampling_defaults(profile: Any) -> dict[str, Any]:
    if profile is None:
        return {}
    s = profile.sampling
    return {k: v for k, v in (("temperature", s.temperature), ("top_p", s.top_p), ("max_tokens", s.max_tokens))
            if v is not None}


def summary_rows(dep: Deployment, engine: Any, url: str, api_key_set: bool, warmup_s: float) -> list[tuple[str, str]]:
    cfg, prov = dep.engine_config, dep.provenance
    stats = engine.stats()
    # what a request that sets nothing gets: generation_config.json over the profile's sampling section
    defaults = {**profile_sampling_defaults(dep.profile), **engine.generation_defaults}

    def src(setting: str) -> str:
        origin = prov.get(setting, "default")
        return "" if origin == "default" else f"  ({origin})"

    profile = dep.profile.name if dep.profile is not None else "none (built-in defaults)"
    labels = getattr(engine, "label", None)  # data parallelism: where each replica runs
    replicas = [("replicas", ", ".join(labels(k) for k in range(len(engine.replicas))))] if labels else []
    return replicas + [
        ("model", dep.source.describe()),
        ("architecture", f"{dep.model_config.architecture} ({dep.model_config.family})"),
        ("served as", dep.served_model_name),
        ("profile", f"{profile}: {'; '.join(dep.profile_reasons)}"),
        ("memory", dep.memory_note),
        ("device / dtype", f"{cfg.device}{src('device')} / {cfg.dtype}{src('dtype')}"),
        ("tensor parallel", f"{cfg.parallel.tensor_parallel_size}{src('tensor_parallel_size')}"),
        ("max model len", f"{engine.max_model_len}{src('max_model_len')}"),
        ("KV cache", f"{stats.num_total_blocks} blocks of {cfg.cache.block_size} tokens "
                     f"({stats.num_total_blocks * cfg.cache.block_size:,} tokens){src('block_size')}"),
        ("max num seqs", f"{cfg.scheduler.max_num_seqs}{src('max_num_seqs')}"),
        ("reasoning parser", dep.reasoning_parser),
        ("sampling defaults", ", ".join(f"{k}={v}" for k, v in defaults.items()) or "OpenAI's"),
        ("warm-up", f"{warmup_s:.2f} s"),
        ("API key", "required" if api_key_set else "none"),
        ("URL", f"{url}/v1"),
    ]


def reasoning_warning(dep: Deployment, chat_template: Optional[str]) -> Optional[str]:
    """A deepseek_r1 parser on a model that never writes </think> (judged from its tokenizer files, before loading)."""
    if dep.reasoning_parser != "deepseek_r1":
        return None
    from vdeploy.engine.tokenizer import Tokenizer
    from vdeploy.server.reasoning import reasoning_parser_warning

    try:
        tokenizer = Tokenizer.from_dir(dep.engine_config.tokenizer or dep.source.path, chat_template_file=chat_template)
    except Exception:  # noqa: BLE001 - no tokenizer files (dummy weights): nothing to judge by
        return None
    return reasoning_parser_warning(dep.reasoning_parser, tokenizer)


def print_explained_settings(dep: Deployment, console: Any) -> None:
    """--explain: every registry setting, the value it resolved to and where that came from."""
    from rich.table import Table

    from vdeploy.engine_settings import SETTINGS

    table = Table("setting", "option", "value", "from", box=None, pad_edge=False)
    for s in SETTINGS:
        value: Any = dep.engine_config
        for part in s.path.split("."):
            value = getattr(value, part)
        origin = dep.provenance.get(s.name, "default")
        if s.secret:
            value = "(not set)" if value is None else "(set)"
        table.add_row(s.name, s.option if s.flags else f"({s.option[2:]} in --config)", str(value),
                      origin if origin == "default" else f"[bold]{origin}[/]")
    console.print(table)
    console.print(f"[bold]memory[/] {dep.memory_note}", soft_wrap=True)


def run_serve(opts: ServeOptions, console: Any) -> None:
    from vdeploy.server.app import create_app
    from vdeploy.server.runner import bind_socket, is_loopback, serve_foreground
    from vdeploy.server.serving_base import ServerSettings

    dep = resolve_deployment(opts, log=lambda line: console.print(f"[dim]{line}[/]"))
    console.print(f"[bold]model[/] {dep.source.describe()}")
    console.print(f"[bold]profile[/] {dep.profile.name if dep.profile else 'none'}: {'; '.join(dep.profile_reasons)}")
    warning = reasoning_warning(dep, opts.chat_template)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    par = dep.engine_config.parallel
    if (not opts.engine_process and par.world_size == 1 and par.nnodes == 1
            and dep.provenance.get("step_timeout_s", "").split(":")[0] in ("flag", "env", "file")):
        # the watchdogs stop a process (the engine core, or a worker rank): an engine thread cannot be stopped
        console.print("[yellow]warning:[/] --step-timeout has no effect with --no-engine-process at --tp 1",
                      soft_wrap=True)
    if opts.explain:
        print_explained_settings(dep, console)
        return
    # bind before the (long) load so that a busy port fails in a second, not after minutes of loading
    sock = bind_socket(opts.host, opts.port)
    try:
        # no spinner here: the weight loader draws its own progress bar over the shards
        console.print(f"loading {dep.served_model_name} ...")
        start = time.perf_counter()
        engine = build_engine(dep, opts.chat_template, engine_process=opts.engine_process)
        console.print(f"[bold]loaded[/] in {time.perf_counter() - start:.1f} s")
    except BaseException:
        sock.close()
        raise
    try:
        with console.status("warming up ..."):
            warmup_s = warm_up(engine)
        settings = ServerSettings(
            served_model_names=(dep.served_model_name,),
            api_key=opts.api_key,
            reasoning_parser=dep.reasoning_parser,
            tool_call_parser=opts.tool_call_parser,
            model_path=str(dep.source.path),
            sampling_defaults=profile_sampling_defaults(dep.profile),
        )
        app = create_app(engine, settings)
        host, port = sock.getsockname()[:2]
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        from rich.table import Table

        table = Table(show_header=False, box=None, pad_edge=False)
        for key, value in summary_rows(dep, engine, url, bool(opts.api_key), warmup_s):
            table.add_row(f"[bold]{key}[/]", value)
        console.print(table)
        if not is_loopback(opts.host) and not opts.api_key:
            console.print(f"[bold yellow]warning:[/] listening on {opts.host} without --api-key: anyone who can "
                          "reach this port can use the model", soft_wrap=True)
        # soft_wrap: the URL line stays one line, whatever the terminal width, for people and for scripts
        console.print(f"[green]serving[/] {dep.served_model_name} at {url}/v1 (SIGTERM or Ctrl-C drains and stops)",
                      soft_wrap=True)
    except BaseException:
        sock.close()
        engine.close()
        raise

    async def drain() -> int:
        return await engine.shutdown(opts.drain_timeout_s)

    from vdeploy.local_servers import registered, server_record

    # listed by `vdeploy ps` (and found by `vdeploy run` / `stop`) while it serves
    record = server_record(model=opts.model or str(dep.source.path), served_model_name=dep.served_model_name,
                           host=host, port=port, tp=par.tensor_parallel_size, pp=par.pipeline_parallel_size)
    with registered(record):
        outcome = serve_foreground(app, sock, drain_timeout_s=opts.drain_timeout_s, log_level=opts.log_level,
                                   json_logs=opts.json_logs, drain=drain, on_drained=engine.close,
                                   engine_running=lambda: engine.is_running)
    console.print(stopped_line(outcome, engine, opts.drain_timeout_s), soft_wrap=True)
    if outcome.engine_stopped:
        # non-zero, so that a supervisor (systemd, Kubernetes) restarts the server instead of keeping a dead one
        raise SystemExit(1)


def stopped_line(outcome: Any, engine: Any, drain_timeout_s: float) -> str:
    """The last line `vdeploy serve` prints: how it ended, never claiming more than it knows."""
    killed = f"; {engine.core_killed}" if getattr(engine, "core_killed", None) else ""
    if outcome.engine_stopped:
        failure = getattr(engine, "failure", None)
        return (f"[red]stopped[/]: the engine stopped serving ({failure or 'it failed'}); exit code 1, for a "
                f"supervisor to restart the server{killed}")
    if outcome.forced:
        return f"[yellow]stopped[/]: a second signal cut the drain short, the requests still open were aborted{killed}"
    if not outcome.cut:  # None: no drain ran (no signal)
        return f"[green]stopped[/]{'' if outcome.cut is None else ': drained, every request finished'}{killed}"
    return (f"[yellow]stopped[/]: {outcome.cut} request(s) cut at the {drain_timeout_s:g} s drain deadline "
            f"(streams got an error event, waiting requests a 503){killed}")

"""`vdeploy serve`, step by step: resolve the model and the profile (saying why), refuse up front when the memory
planner says the model cannot fit, load, warm up, print the resolved configuration and the URL, then serve until
SIGTERM drains it."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Optional

from vdeploy.errors import ConfigError
from vdeploy.server.deployment import Deployment, ServeOptions, resolve_deployment

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
        ("served as", ", ".join(dep.served_model_names)),
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
            served_model_names=dep.served_model_names,
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

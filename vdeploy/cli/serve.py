"""`vdeploy serve`: an OpenAI-compatible server for a model directory, a downloaded hub id, or the demo model.
Only typer is imported here; the engine and the web stack load inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vdeploy.cli.engine_options import config_file_option, engine_option
from vdeploy.cli.lora_options import (
    enable_lora_option,
    lora_modules_option,
    lora_settings,
    max_lora_rank_option,
    max_loras_option,
)
from vdeploy.cli.vllm_compat import SPECULATIVE_HELP, speculative_flags

# uvicorn's names (uvicorn.config.LOG_LEVELS; not imported here, to keep --help fast)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _log_level(value: str) -> str:
    """Checked with the other options: uvicorn would refuse an unknown name only after the model loaded."""
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(LOG_LEVELS)}")
    return value.lower()


def serve(
    model: Annotated[Optional[str], typer.Argument(
        help="Model directory, hub id (already downloaded; see --download), or a bundled config name (e.g. "
             "deepseek-r1) with --load-format dummy. Default: the built-in demo model.",
        show_default=False)] = None,
    model_option: Annotated[Optional[str], typer.Option(
        "--model", help="The same as MODEL (vLLM's spelling).", show_default=False)] = None,
    profile: Annotated[Optional[str], typer.Option(
        "--profile", help="Deployment profile name or YAML file (default: the best match for model and hardware).")
    ] = None,
    config: Annotated[Optional[Path], config_file_option()] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Print every engine setting with the value it resolves to and where that came from, "
                          "then exit without loading the model.")] = False,
    tp: Annotated[Optional[int], engine_option("tensor_parallel_size")] = None,
    pp: Annotated[Optional[int], engine_option("pipeline_parallel_size")] = None,
    dp: Annotated[Optional[int], engine_option("data_parallel_size")] = None,
    dp_local: Annotated[Optional[int], engine_option("data_parallel_size_local")] = None,
    dp_secret: Annotated[Optional[str], engine_option("dp_secret")] = None,
    nnodes: Annotated[Optional[int], engine_option("nnodes")] = None,
    node_rank: Annotated[Optional[int], engine_option("node_rank")] = None,
    master_addr: Annotated[Optional[str], engine_option("master_addr")] = None,
    master_port: Annotated[Optional[int], engine_option("master_port")] = None,
    enable_dp_attention: Annotated[Optional[bool], engine_option("enable_dp_attention")] = None,
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs --api-key to be safe.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind (0: any free port).")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        "--api-key", envvar="VDEPLOY_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1 routes, /tokenize and /detokenize.")] = None,
    served_model_name: Annotated[Optional[list[str]], typer.Option(
        "--served-model-name", help="Model name clients send (default: the hub id or directory name); repeat it "
        "for aliases: every one is accepted and listed; answers carry the name asked by.")] = None,
    max_model_len: Annotated[Optional[int], engine_option("max_model_len")] = None,
    max_num_batched_tokens: Annotated[Optional[int], engine_option("max_num_batched_tokens")] = None,
    trust_remote_code: Annotated[bool, typer.Option(
        "--trust-remote-code", help="Accepted for vLLM compatibility; vdeploy never runs repository code.")] = False,
    gpu_memory_utilization: Annotated[Optional[float], engine_option("gpu_memory_utilization")] = None,
    reasoning_parser: Annotated[Optional[str], typer.Option(
        "--reasoning-parser",
        help="deepseek_r1 (split <think> into reasoning_content) or none. Default: deepseek_r1 for R1 and its "
             "distills.")] = None,
    tool_call_parser: Annotated[Optional[str], typer.Option(
        "--tool-call-parser",
        help="deepseek_v3, hermes (Qwen2.5, R1-Distill-Qwen) or llama3_json: how tool calls are read from answers "
             "with tool_choice auto. Default: the format the chat template shows.")] = None,
    chat_template: Annotated[Optional[str], typer.Option(
        "--chat-template", help="Jinja chat template file replacing the model's.")] = None,
    load_format: Annotated[Optional[str], engine_option("load_format")] = None,
    dummy_weights: Annotated[Optional[str], engine_option("dummy_weights")] = None,
    dtype: Annotated[Optional[str], engine_option("dtype")] = None,
    kv_cache_dtype: Annotated[Optional[str], engine_option("kv_cache_dtype")] = None,
    enforce_eager: Annotated[Optional[bool], engine_option("enforce_eager")] = None,
    enable_prefix_caching: Annotated[Optional[bool], engine_option("enable_prefix_caching")] = None,
    async_scheduling: Annotated[Optional[bool], engine_option("async_scheduling")] = None,
    device: Annotated[Optional[str], engine_option("device")] = None,
    speculative_config: Annotated[Optional[str], typer.Option(
        "--speculative-config", help=SPECULATIVE_HELP
    )] = None,
    max_num_seqs: Annotated[Optional[int], engine_option("max_num_seqs")] = None,
    block_size: Annotated[Optional[int], engine_option("block_size")] = None,
    step_timeout: Annotated[Optional[float], engine_option("step_timeout_s")] = None,
    enable_lora: Annotated[bool, enable_lora_option()] = False,
    lora_modules: Annotated[Optional[list[str]], lora_modules_option("Implies --enable-lora.")] = None,
    max_loras: Annotated[Optional[int], max_loras_option()] = None,
    max_lora_rank: Annotated[Optional[int], max_lora_rank_option()] = None,
    download: Annotated[bool, typer.Option(
        "--download", help="Download a hub id that is not on disk yet (otherwise serve refuses).")] = False,
    drain_timeout: Annotated[float, typer.Option(
        "--drain-timeout", min=0.0, help="Seconds SIGTERM waits for in-flight requests before aborting them.")
    ] = 30.0,
    engine_process: Annotated[bool, typer.Option(
        "--engine-process/--no-engine-process",
        help="Run the engine core in its own process (no GIL shared with HTTP); off: a thread of the server.")
    ] = True,
    log_level: Annotated[str, typer.Option(
        callback=_log_level,
        help="Server log level: critical, error, warning, info, debug or trace.")] = "info",
    json_logs: Annotated[bool, typer.Option(
        "--json-logs", help="Server logs (with one access line per request) as JSON lines on stderr.")] = False,
) -> None:
    """Serve a model with an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /metrics)."""
    from vdeploy.cli.output import console
    from vdeploy.cli.serve_checks import pick_model, preflight
    from vdeploy.server.deployment import ServeOptions
    from vdeploy.server.launch import run_serve

    engine_flags = {
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "data_parallel_size": dp,
        "data_parallel_size_local": dp_local,
        "dp_secret": dp_secret,
        "nnodes": nnodes,
        "node_rank": node_rank,
        "master_addr": master_addr,
        "master_port": master_port,
        "max_model_len": max_model_len,
        "gpu_memory_utilization": gpu_memory_utilization,
        "load_format": load_format,
        "dummy_weights": dummy_weights,
        "dtype": dtype,
        "kv_cache_dtype": kv_cache_dtype,
        "enforce_eager": enforce_eager,
        "enable_prefix_caching": enable_prefix_caching,
        "async_scheduling": async_scheduling,
        "device": device,
        "max_num_seqs": max_num_seqs,
        "max_num_batched_tokens": max_num_batched_tokens,
        "block_size": block_size,
        "step_timeout_s": step_timeout,
        "enable_dp_attention": enable_dp_attention,
        **speculative_flags(speculative_config),
        **lora_settings(enable_lora, lora_modules, max_loras, max_lora_rank),
    }
    config_values = {}
    if config is not None:
        from vdeploy.config_file import load_config_file

        config_values = load_config_file(config)
    import os

    from vdeploy.profiles import given_settings

    given = given_settings(engine_flags, os.environ, config_values)
    model, served_as = preflight(
        pick_model(model, model_option), load_format=given.get("load_format"), allow_download=download,
        trust_remote_code=trust_remote_code, console=console(stderr=True), flags=given)

    opts = ServeOptions(
        model=model,
        profile=profile,
        host=host,
        port=port,
        api_key=api_key,
        served_model_names=tuple(served_model_name or ([served_as] if served_as else [])),
        reasoning_parser=reasoning_parser,
        tool_call_parser=tool_call_parser,
        chat_template=chat_template,
        download=download,
        drain_timeout_s=drain_timeout,
        log_level=log_level,
        json_logs=json_logs,
        engine_process=engine_process,
        engine_flags=engine_flags,
        config_values=config_values,
        config_file=str(config) if config is not None else None,
        explain=explain,
    )
    run_serve(opts, console(stderr=True))

"""`vdeploy serve`: an OpenAI-compatible server for a model directory, a downloaded hub id, or the demo model.
Only typer is imported here; the engine and the web stack load inside the command."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vdeploy.cli.engine_options import step_timeout_option
from vdeploy.cli.vllm_compat import size_option


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
    tp: Annotated[Optional[int], typer.Option("--tp", "--tensor-parallel-size", min=1,
                                              help="Tensor-parallel GPUs.")] = None,
    pp: Annotated[Optional[int], typer.Option("--pp", "--pipeline-parallel-size", min=1,
                                              help="Pipeline stages (contiguous layer ranges).")] = None,
    dp: Annotated[Optional[int], typer.Option("--dp", "--data-parallel-size", min=1,
                                              help="Engine replicas, each with --tp x --pp GPUs of its own.")] = None,
    nnodes: Annotated[Optional[int], typer.Option(
        "--nnodes", min=1, help="Nodes in a multi-node job; this one is node 0, the others run "
                                "`vdeploy worker-host` (default: torchrun's environment, else 1).")] = None,
    node_rank: Annotated[Optional[int], typer.Option(
        "--node-rank", min=0, help="This node's rank; serve runs on node 0.")] = None,
    master_addr: Annotated[Optional[str], typer.Option(
        "--master-addr", help="Address of node 0 the other nodes reach (multi-node).")] = None,
    master_port: Annotated[Optional[int], typer.Option(
        "--master-port", min=1, max=65535, help="Rendezvous port on node 0 (multi-node).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs --api-key to be safe.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind (0: any free port).")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        "--api-key", envvar="VDEPLOY_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1 routes.")] = None,
    served_model_name: Annotated[Optional[str], typer.Option(
        "--served-model-name", help="Model name clients send (default: the hub id or directory name).")] = None,
    max_model_len: Annotated[Optional[int], size_option("--max-model-len",
                                                        help="Longest prompt + output, in tokens.")] = None,
    max_num_batched_tokens: Annotated[Optional[int], size_option(
        "--max-num-batched-tokens", help="Token budget of one engine step.")] = None,
    trust_remote_code: Annotated[bool, typer.Option(
        "--trust-remote-code", help="Accepted for vLLM compatibility; vdeploy never runs repository code.")] = False,
    gpu_memory_utilization: Annotated[Optional[float], typer.Option(
        "--gpu-memory-utilization", min=0.05, max=1.0, help="Fraction of each GPU's memory vdeploy may use.")] = None,
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
    load_format: Annotated[Optional[str], typer.Option(
        "--load-format", help="safetensors, or dummy (random weights at the checkpoint's shapes).")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="auto, bfloat16, float16 or float32.")] = None,
    enforce_eager: Annotated[Optional[bool], typer.Option(
        "--enforce-eager/--no-enforce-eager", help="Disable CUDA graphs.", show_default=False)] = None,
    speculative_config: Annotated[Optional[str], typer.Option(
        "--speculative-config", help='Speculative decoding, as vLLM: \'{"method": "ngram", "num_speculative_tokens": 3}\'.'
    )] = None,
    max_num_seqs: Annotated[Optional[int], typer.Option("--max-num-seqs", min=1,
                                                        help="Most requests in one batch.")] = None,
    block_size: Annotated[Optional[int], typer.Option("--block-size", min=1, help="KV-cache block size (tokens).")
                          ] = None,
    step_timeout: Annotated[Optional[float], step_timeout_option()] = None,
    download: Annotated[bool, typer.Option(
        "--download", help="Download a hub id that is not on disk yet (otherwise serve refuses).")] = False,
    drain_timeout: Annotated[float, typer.Option(
        "--drain-timeout", min=0.0, help="Seconds SIGTERM waits for in-flight requests before aborting them.")
    ] = 30.0,
    engine_process: Annotated[bool, typer.Option(
        "--engine-process/--no-engine-process",
        help="Run the engine core in its own process (no GIL shared with HTTP); off: a thread of the server.")
    ] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: debug, info, warning, error.")] = "info",
    json_logs: Annotated[bool, typer.Option(
        "--json-logs", help="Server logs (with one access line per request) as JSON lines on stderr.")] = False,
) -> None:
    """Serve a model with an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /metrics)."""
    from vdeploy.cli.output import console
    from vdeploy.cli.serve_checks import pick_model, preflight
    from vdeploy.server.launch import ServeOptions, run_serve

    model, served_as = preflight(
        pick_model(model, model_option), load_format=load_format, allow_download=download,
        trust_remote_code=trust_remote_code, console=console(stderr=True),
        flags={"gpu_memory_utilization": gpu_memory_utilization, "enforce_eager": enforce_eager})

    opts = ServeOptions(
        model=model,
        profile=profile,
        host=host,
        port=port,
        api_key=api_key,
        served_model_name=served_model_name or served_as,
        reasoning_parser=reasoning_parser,
        tool_call_parser=tool_call_parser,
        chat_template=chat_template,
        download=download,
        drain_timeout_s=drain_timeout,
        log_level=log_level,
        json_logs=json_logs,
        engine_process=engine_process,
        engine_flags={
            "tensor_parallel_size": tp,
            "pipeline_parallel_size": pp,
            "data_parallel_size": dp,
            "nnodes": nnodes,
            "node_rank": node_rank,
            "master_addr": master_addr,
            "master_port": master_port,
            "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
            "load_format": load_format,
            "dtype": dtype,
            "enforce_eager": enforce_eager,
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": max_num_batched_tokens,
            "block_size": block_size,
            "step_timeout_s": step_timeout,
            **_speculative_flags(speculative_config),
        },
    )
    run_serve(opts, console(stderr=True))


def _speculative_flags(text: Optional[str]) -> dict:
    from vdeploy.cli.bench import parse_speculative_config

    spec = parse_speculative_config(text) or {}
    flags = {"speculative_method": spec.pop("method", None), "num_speculative_tokens": spec.pop(
        "num_speculative_tokens", None)}
    if spec:
        from vdeploy.errors import ConfigError

        raise ConfigError(f"--speculative-config: unknown key(s) {', '.join(sorted(spec))}",
                          hint="method and num_speculative_tokens")
    return flags

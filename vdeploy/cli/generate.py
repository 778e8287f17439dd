"""`vdeploy generate`: one prompt through the engine, tokens streamed to the terminal.

Only typer/stdlib at module level; the engine (torch) is imported inside the command."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from vdeploy.cli.engine_options import config_file_option, engine_option
from vdeploy.cli.lora_options import lora_modules_option, max_lora_rank_option, max_loras_option
from vdeploy.cli.vllm_compat import SPECULATIVE_HELP, speculative_flags


def generate(
    ctx: typer.Context,
    path: Annotated[
        str | None, typer.Argument(help="Model directory (Hugging Face layout), downloaded hub id, or a bundled "
                                        "config (e.g. deepseek-r1) with --load-format dummy. Default: the demo model.")
    ] = None,
    model_option: Annotated[str | None, typer.Option(
        "--model", help="The same as PATH (vLLM's spelling).", show_default=False)] = None,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt (a user message unless --no-chat).")] = ...,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Most tokens to generate.")] = 256,
    temperature: Annotated[
        float | None, typer.Option("--temperature", min=0.0, max=2.0, help="0 = greedy. Default: the model's.")
    ] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling. Default: the model's.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for reproducible sampling.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="A system message (chat mode).")] = None,
    no_chat: Annotated[bool, typer.Option("--no-chat", help="Send the prompt as raw text, no chat template.")] = False,
    chat_template: Annotated[
        Path | None, typer.Option("--chat-template", exists=True, help="A Jinja chat template file to use instead.")
    ] = None,
    tp: Annotated[int, engine_option("tensor_parallel_size")] = 1,
    pp: Annotated[int, engine_option("pipeline_parallel_size")] = 1,
    dtype: Annotated[str, engine_option("dtype")] = "auto",
    device: Annotated[str, engine_option("device")] = "auto",
    max_model_len: Annotated[int | None, engine_option("max_model_len")] = None,
    load_format: Annotated[str, engine_option("load_format")] = "safetensors",
    step_timeout: Annotated[float | None, engine_option("step_timeout_s", envvar=True)] = None,
    config: Annotated[Path | None, config_file_option()] = None,
    lora_modules: Annotated[list[str] | None, lora_modules_option()] = None,
    lora: Annotated[str | None, typer.Option(
        "--lora", help="Generate with this adapter of --lora-modules (default: the base model).")] = None,
    max_loras: Annotated[int | None, max_loras_option()] = None,
    max_lora_rank: Annotated[int | None, max_lora_rank_option()] = None,
    speculative_config: Annotated[str | None, typer.Option("--speculative-config", help=SPECULATIVE_HELP)] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of streaming (schema: docs/generate.md).")
    ] = False,
) -> None:
    """Generate a reply to one prompt (chat template applied) and stream it to the terminal."""
    from vdeploy.cli.engine_options import merge_config_file, with_command_flags
    from vdeploy.cli.serve_checks import pick_model, preflight

    speculative_flags(speculative_config)  # a malformed value fails before anything loads
    settings = merge_config_file(ctx, config, {
        "tp": ("tensor_parallel_size", tp), "pp": ("pipeline_parallel_size", pp), "dtype": ("dtype", dtype),
        "device": ("device", device), "max_model_len": ("max_model_len", max_model_len),
        "load_format": ("load_format", load_format), "step_timeout": ("step_timeout_s", step_timeout)})
    settings = {k: v for k, v in settings.items() if v is not None}
    load_format = settings["load_format"]
    path, _ = preflight(pick_model(path, model_option), load_format=load_format, local_path=True, flags=settings)
    from vdeploy.engine.llm import LLM
    from vdeploy.model_configs import resolve_dummy_model

    path = resolve_dummy_model(path, load_format)
    if path is None:
        path = demo_model_path()
    settings = with_command_flags(settings, speculative_config, lora_modules, max_loras, max_lora_rank)
    if lora is not None and lora not in dict(settings.get("lora_modules") or ()):
        from vdeploy.errors import ConfigError

        raise ConfigError(f"--lora {lora!r} is not one of the adapters of --lora-modules",
                          hint="add --lora-modules NAME=PATH")
    llm = LLM(path, chat_template=chat_template, **settings)
    try:
        params = _sampling_params(llm, max_tokens, temperature, top_p, seed)
        if no_chat:
            token_ids = llm.encode(prompt)
        else:
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
            token_ids = llm.encode_chat(messages)
        _run(llm, token_ids, params, json_output, lora)
    finally:
        llm.close()


def demo_model_path() -> str:
    """The demo model, fetched and converted on first use, with its progress shown on stderr."""
    from vdeploy.cli.output import console
    from vdeploy.models.demo import ensure_demo_model

    err = console(stderr=True)
    return str(ensure_demo_model(log=lambda line: err.print(f"[dim]{line}[/]")))


def _sampling_params(llm, max_tokens: int, temperature: float | None, top_p: float | None, seed: int | None):
    from vdeploy.engine.sampling_params import SamplingParams

    values = dict(llm.core.generation_defaults)
    values.update({k: v for k, v in (("temperature", temperature), ("top_p", top_p)) if v is not None})
    return SamplingParams(max_tokens=max_tokens, seed=seed, **values)


def _run(llm, token_ids: list[int], params, json_output: bool, lora_name: str | None = None) -> None:
    start = time.perf_counter()
    first_token_s = None
    final = None
    wrote = False
    try:
        for out in llm.generate_stream(token_ids, params, lora_name=lora_name):
            completion = out.outputs[0]
            if first_token_s is None and completion.delta_token_ids:
                first_token_s = time.perf_counter() - start
            if not json_output and completion.delta_text:
                sys.stdout.write(completion.delta_text)
                sys.stdout.flush()
                wrote = True
            final = out
    except BaseException:
        if wrote:  # end the partial answer's line: the error (on stderr) must not read as part of the text
            sys.stdout.write("\n")
            sys.stdout.flush()
        raise
    elapsed = time.perf_counter() - start
    completion = final.outputs[0]
    n = len(completion.token_ids)
    summary = {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": len(token_ids),
        "completion_tokens": n,
        "time_to_first_token_s": round(first_token_s or elapsed, 4),
        "elapsed_s": round(elapsed, 4),
        "tokens_per_s": round(n / elapsed, 2) if elapsed > 0 else None,
    }
    if json_output:
        from vdeploy.cli.output import print_json

        print_json(summary)
        return
    sys.stdout.write("\n")
    from vdeploy.cli.output import console

    console(stderr=True).print(
        f"[dim]{n} tokens in {elapsed:.2f} s ({summary['tokens_per_s']} tok/s, first token after "
        f"{summary['time_to_first_token_s']:.2f} s, finish: {completion.finish_reason})[/]"
    )

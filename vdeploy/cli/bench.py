"""`vdeploy bench`: offline throughput of the engine (optionally next to HF transformers), or with --url a serving
benchmark against a running endpoint. Only typer/stdlib at module level."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vdeploy.cli.engine_options import config_file_option, engine_option, with_command_flags
from vdeploy.cli.lora_options import lora_modules_option, max_lora_rank_option, max_loras_option
from vdeploy.cli.vllm_compat import SPECULATIVE_HELP


def bench(
    ctx: typer.Context,
    path: Annotated[
        str | None,
        typer.Argument(help="Model directory (Hugging Face layout), or a bundled config name (e.g. deepseek-r1) with "
                            "--load-format dummy. Default: the demo model."),
    ] = None,
    model_option: Annotated[str | None, typer.Option(
        "--model", help="The same as PATH (vLLM's spelling).", show_default=False)] = None,
    num_prompts: Annotated[int, typer.Option("--num-prompts", min=1, help="Number of requests.")] = 64,
    input_len: Annotated[int, typer.Option("--input-len", min=1, help="Prompt tokens per request.")] = 128,
    output_len: Annotated[int, typer.Option("--output-len", min=1, help="Generated tokens per request.")] = 128,
    random_range_ratio: Annotated[
        float,
        typer.Option("--random-range-ratio", min=0.0, max=1.0, help="Lengths uniform in len*(1±ratio); 0 = fixed."),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random prompts and lengths.")] = 0,
    temperature: Annotated[float, typer.Option(
        "--temperature", min=0.0,
        help="Sampling temperature of every request (offline): 0 = greedy; vLLM's `bench throughput` samples at 1.0.",
    )] = 0.0,
    load_format: Annotated[str, engine_option("load_format")] = "safetensors",
    dummy_weights: Annotated[str, engine_option("dummy_weights")] = "normal",
    tp: Annotated[int, engine_option("tensor_parallel_size")] = 1,
    pp: Annotated[int, engine_option("pipeline_parallel_size")] = 1,
    dtype: Annotated[str, engine_option("dtype")] = "auto",
    device: Annotated[str, engine_option("device")] = "auto",
    max_num_seqs: Annotated[int | None, engine_option("max_num_seqs")] = None,
    max_num_batched_tokens: Annotated[int | None, engine_option("max_num_batched_tokens")] = None,
    max_model_len: Annotated[int | None, engine_option("max_model_len")] = None,
    enforce_eager: Annotated[bool, engine_option("enforce_eager")] = False,
    speculative_config: Annotated[str | None, typer.Option(
        "--speculative-config", help=SPECULATIVE_HELP
    )] = None,
    async_scheduling: Annotated[bool | None, engine_option("async_scheduling")] = None,
    config_file: Annotated[Path | None, config_file_option()] = None,
    lora_modules: Annotated[list[str] | None, lora_modules_option(
        "The requests are spread over the adapters round-robin, with the base model (offline only).")] = None,
    max_loras: Annotated[int | None, max_loras_option()] = None,
    max_lora_rank: Annotated[int | None, max_lora_rank_option()] = None,
    compare_hf: Annotated[
        bool, typer.Option("--compare-hf", help="Also run the workload through HF transformers generate.")
    ] = False,
    hf_batch_size: Annotated[int, typer.Option("--hf-batch-size", min=1, help="Batch size for --compare-hf.")] = 1,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Benchmark a running server (OpenAI API) instead of offline; PATH = served name."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, help="With --url: most requests in flight.")
    ] = None,
    request_rate: Annotated[
        float | None, typer.Option("--request-rate", min=0.0, help="With --url: requests/s (default: all at once).")
    ] = None,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", help="With --url: the server's API key (default: $VDEPLOY_API_KEY, else $OPENAI_API_KEY).",
        show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON (schema: docs/bench.md).")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the JSON report here.")] = None,
) -> None:
    """Measure throughput: requests/s, input and output tokens/s (ignore_eos; greedy unless --temperature)."""
    import json
    import sys

    from vdeploy.cli.serve_checks import pick_model

    path = pick_model(path, model_option)
    if output is not None:
        _check_writable(output)  # before the run: a mistyped path must not cost the benchmark it would record
    if url is not None:
        from vdeploy.bench.serving import run_serving_benchmark

        serving_kw = {"concurrency": concurrency}
        if request_rate is not None:
            if request_rate <= 0:  # Poisson arrivals at 0 requests/s never come; it is not "all at once"
                raise typer.BadParameter("must be above 0 requests/s (leave it out to send every request at once)",
                                         param_hint="--request-rate")
            serving_kw["request_rate"] = request_rate
        report = run_serving_benchmark(
            url, model=path, num_prompts=num_prompts, input_len=input_len, output_len=output_len,
            random_range_ratio=random_range_ratio, seed=seed, api_key=api_key, **serving_kw,
        )
    else:
        from vdeploy.bench.offline import Workload, run_offline_benchmark
        from vdeploy.engine.llm import build_engine_config

        from vdeploy.cli.serve_checks import preflight
        from vdeploy.model_configs import resolve_dummy_model

        from vdeploy.cli.engine_options import merge_config_file

        settings = merge_config_file(ctx, config_file, {
            "load_format": ("load_format", load_format),
            "dummy_weights": ("dummy_weights", dummy_weights), "tp": ("tensor_parallel_size", tp),
            "pp": ("pipeline_parallel_size", pp), "dtype": ("dtype", dtype), "device": ("device", device),
            "max_num_seqs": ("max_num_seqs", max_num_seqs),
            "max_num_batched_tokens": ("max_num_batched_tokens", max_num_batched_tokens),
            "max_model_len": ("max_model_len", max_model_len), "enforce_eager": ("enforce_eager", enforce_eager),
            "async_scheduling": ("async_scheduling", async_scheduling)})
        load_format = settings["load_format"]
        model, _ = preflight(path, load_format=load_format, flags=settings, local_path=True)
        model = resolve_dummy_model(model, load_format)
        if model is None:
            from vdeploy.cli.generate import demo_model_path

            model = demo_model_path()
        config = build_engine_config(model, **with_command_flags(settings, speculative_config, lora_modules,
                                                                 max_loras, max_lora_rank))
        workload = Workload(num_prompts, input_len, output_len, random_range_ratio, seed, temperature)
        report = run_offline_benchmark(
            config, workload, compare_hf=compare_hf, hf_batch_size=hf_batch_size,
            command=" ".join(["vdeploy", *sys.argv[1:]]),
        )

    if json_output:
        from vdeploy.cli.output import print_json

        print_json(report)
    else:
        _print_report(report)
    if output is not None:  # after printing: should the disk fail now, the numbers are on the screen
        output.write_text(json.dumps(report, indent=2, default=str) + "\n")


def _check_writable(output: Path) -> None:
    import os

    if output.is_dir():
        raise typer.BadParameter(f"{output} is a directory; give a file name", param_hint="--output")
    parent = output.parent
    if not parent.is_dir():
        raise typer.BadParameter(f"the directory {parent} does not exist", param_hint="--output")
    if not os.access(parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise typer.BadParameter(f"{output} is not writable", param_hint="--output")


def _print_report(report: dict) -> None:
    from rich.table import Table

    from vdeploy.cli.output import console

    out = console()
    if "results" not in report:  # a serving report: laid out as `vllm bench serve` does, for comparison
        from vdeploy.bench.serving import format_serving_report

        out.print(format_serving_report(report), markup=False, soft_wrap=True)
        return
    table = Table(title=f"vdeploy bench · {report['model']} · {report['device']}", title_justify="left")
    for col in ("backend", "requests/s", "input tok/s", "output tok/s", "total tok/s", "elapsed s", "startup s"):
        table.add_column(col, justify="right" if col != "backend" else "left")
    for r in report["results"]:
        table.add_row(
            r["backend"], f"{r['requests_per_s']:.3f}", f"{r['input_tokens_per_s']:.1f}",
            f"{r['output_tokens_per_s']:.1f}", f"{r['total_tokens_per_s']:.1f}", f"{r['elapsed_s']:.2f}",
            f"{r['startup_s']:.1f}",
        )
    out.print(table)
    w = report["workload"]
    out.print(
        f"[dim]{w['num_prompts']} prompts, input {w['input_len']} / output {w['output_len']} tokens "
        f"(range ratio {w['random_range_ratio']}), "
        f"{'greedy' if not w.get('temperature') else 'temperature ' + str(w['temperature'])}, "
        f"git {report['git_revision']}, {report['date']}[/]"
    )
    roofline = report["results"][0].get("extra", {}).get("roofline")
    if roofline:
        out.print(f"roofline: decode at batch {roofline['decode_batch']} is bound by "
                  f"{roofline['decode_bound_tokens_per_s']:,.0f} tok/s (weights + KV read per step at "
                  f"{roofline['copy_bandwidth_tb_per_s']} TB/s copy bandwidth, measured now); this run: "
                  f"[bold]{roofline['fraction_of_bound']}[/] of it")
        if roofline.get("same_experts_for_every_token"):
            out.print("routing: uniform dummy weights send every token to the same experts, as vLLM's dummy runs "
                      "do; real weights (or --dummy-weights normal) spread them over all experts")
    extra = report["results"][0].get("extra", {})
    if "phases" in extra:
        out.print(f"every prompt prefilled after {extra['phases']['all_prefilled_s']:.2f} s, then "
                  f"{extra['phases']['decode_after_s']:.2f} s of decode")
    if "spec_acceptance_rate" in extra:
        out.print(f"speculative decoding: acceptance [bold]{extra['spec_acceptance_rate']:.1%}[/] "
                  f"({extra['spec_accepted_tokens']} of {extra['spec_draft_tokens']} drafts), mean accepted length "
                  f"{extra['spec_mean_accepted_length']} tokens per step, drafting {extra['spec_draft_seconds']} s")
    if "speedup_output_tokens_per_s" in report:
        out.print(f"vdeploy vs HF transformers: [bold]{report['speedup_output_tokens_per_s']}x[/] output tokens/s")

"""Rich tables for an InspectReport (the human form of `vdeploy inspect-shards`; --json prints report.to_dict())."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from vdeploy.checkpoint.layout import COMPONENTS
from vdeploy.checkpoint.report import Architecture, InspectReport, Parameters, PlanSet, Storage

GIB = 1 << 30
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
VERDICT_STYLE = {"fits": "green", "fits_limited": "yellow", "does_not_fit": "red"}


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def billions(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:,.2f}B"


def render_report(report: InspectReport, console: Console) -> None:
    console.print(f"[bold]{report.path}[/]  inspected in {report.elapsed_s:.2f} s "
                  f"(read {', '.join(report.files_read) or 'no metadata files'} and "
                  f"{report.storage.shard_count if report.storage else 0} shard headers)")
    if report.architecture:
        console.print(_architecture_table(report.architecture))
    if report.parameters:
        console.print(_parameters_table(report.parameters, report.architecture))
    if report.storage:
        _print_storage(report.storage, console)
    for plan_set in report.plans:
        _print_plans(plan_set, console)
    if report.recommended_profile or report.profile_reasons:
        console.print(f"[bold]Recommended profile:[/] {report.recommended_profile or 'none (built-in defaults)'}")
        for reason in report.profile_reasons:
            console.print(f"  - {reason}", soft_wrap=True)
    _print_findings(report, console)


def _architecture_table(a: Architecture) -> Table:
    t = Table(title="Architecture (config.json)", show_header=False, title_justify="left")
    t.add_column("", style="bold")
    t.add_column("")
    t.add_row("architecture", f"{a.architecture} ({a.family})")
    t.add_row("layers / hidden", f"{a.num_layers} / {a.hidden_size:,}")
    heads = f"{a.num_heads} heads, {a.num_kv_heads} KV heads, head dim {a.head_dim} ({a.attention})"
    t.add_row("attention", heads)
    if a.attention == "MLA":
        q = f"q_lora_rank {a.q_lora_rank}" if a.q_lora_rank else "no q compression (q_proj)"
        t.add_row("MLA", f"{q}, kv_lora_rank {a.kv_lora_rank}, qk nope/rope {a.qk_nope_head_dim}/"
                  f"{a.qk_rope_head_dim}, v {a.v_head_dim}")
    if a.routed_experts:
        t.add_row("experts", f"{a.routed_experts} routed (top-{a.experts_per_token}, {a.expert_groups} groups, "
                  f"top-{a.topk_groups} groups) + {a.shared_experts} shared, intermediate {a.moe_intermediate_size:,}; "
                  f"first {a.first_dense_layers} layers dense ({a.intermediate_size:,})")
    else:
        t.add_row("MLP", f"intermediate {a.intermediate_size:,}")
    rope = a.rope_scaling or {}
    scaling = f", {rope.get('rope_type') or rope.get('type')} ×{rope.get('factor')}" if rope else ""
    t.add_row("context", f"{a.max_position_embeddings:,} positions (rope θ {a.rope_theta:g}{scaling})")
    if a.tokenizer_max_length is not None:
        t.add_row("tokenizer", f"model_max_length {a.tokenizer_max_length:,}"
                  + (f", ids up to {a.tokenizer_vocab_size - 1:,}" if a.tokenizer_vocab_size else ""))
    t.add_row("vocabulary", f"{a.vocab_size:,}" + (" (tied embeddings)" if a.tie_word_embeddings else ""))
    quant = "none"
    if a.quant_scheme:
        quant = f"{a.quant_scheme}; {a.quant_bytes_per_param:.3f} bytes per quantized weight"
    elif a.quant_method:
        block = f", {a.quant_block[0]}×{a.quant_block[1]} blocks" if a.quant_block else ""
        quant = f"{a.quant_method} {a.quant_format}{block}"
    t.add_row("dtype / quantization", f"{a.torch_dtype} / {quant}")
    if a.mtp_layers:
        t.add_row("multi-token prediction", f"{a.mtp_layers} layer(s) (layer {a.num_layers})")
    return t


def _parameters_table(p: Parameters, a: Architecture | None) -> Table:
    t = Table(title="Parameters", caption="counted from the headers; FP8 scales are not parameters",
              title_justify="left", caption_justify="left")
    t.add_column("component")
    t.add_column("headers", justify="right")
    t.add_column("config implies", justify="right")
    for c in COMPONENTS:
        if c == "mtp":
            continue
        have, want = p.by_component.get(c, 0), p.expected_by_component.get(c)
        if have or want:
            t.add_row(c, billions(have), billions(want))
    t.add_row("[bold]total (main model)[/]", f"[bold]{billions(p.total)}[/]", billions(p.expected_total))
    if a is not None and a.routed_experts:
        t.add_row("[bold]active per token[/]", f"[bold]{billions(p.active)}[/]", "")
    if p.mtp or p.expected_by_component.get("mtp"):
        t.add_row("MTP module (not served)", billions(p.mtp), billions(p.expected_by_component.get("mtp")))
    return t


def _print_storage(s: Storage, console: Console) -> None:
    console.print(f"[bold]Weights:[/] {s.weight_format}", soft_wrap=True)
    t = Table(title="Storage by dtype", title_justify="left")
    t.add_column("dtype")
    t.add_column("tensors", justify="right")
    t.add_column("bytes", justify="right")
    for d in s.dtypes:
        t.add_row(d.dtype, f"{d.tensors:,}", human_bytes(d.bytes))
    console.print(t)
    console.print(f"[bold]Shards:[/] {s.shard_count} files, min {human_bytes(s.shard_min)} / median "
                  f"{human_bytes(s.shard_median)} / max {human_bytes(s.shard_max)}; standard size "
                  f"{human_bytes(s.standard_shard_size)}")
    for o in s.outliers:
        console.print(f"  outlier {o.file} ({human_bytes(o.size)}): {o.holds}", soft_wrap=True)
    # a single-file checkpoint (or a missing / invalid index) has no total_size
    index_total = f"{human_bytes(s.index_total_size)} ({s.index_total_size:,} B)" \
        if s.index_total_size is not None else "- (no index)"
    console.print(f"[bold]Totals:[/] index total_size {index_total}, tensors in headers "
                  f"{s.tensor_bytes:,} B, files on disk {s.file_bytes:,} B (headers {human_bytes(s.header_bytes)})")


def _print_plans(ps: PlanSet, console: Console) -> None:
    fp8 = "" if ps.fp8_tensor_cores else ", no FP8 tensor cores (FP8 dequantized to bf16)"
    t = Table(title=f"Memory plan per GPU (GiB, KiB): {human_bytes(ps.gpu_memory_bytes)} GPUs at "
              f"{ps.gpu_memory_utilization:.0%}{fp8}",
              title_justify="left")
    # per GPU: weights, of which replicated on every rank, KV bytes per token, tokens of KV cache
    for col in ("layout", "GPUs", "weights", "repl.", "KV/tok", "KV tokens", "verdict", "max len"):
        left = col in ("layout", "verdict")
        t.add_column(col, justify="left" if left else "right", no_wrap=left)
    for p in ps.plans:
        style = VERDICT_STYLE.get(p.verdict, "")
        t.add_row(f"TP{p.tp}" + (f"×PP{p.pp}" if p.pp > 1 else ""), str(p.tp * p.pp),
                  f"{p.weight_bytes_per_gpu / GIB:.1f}G", f"{p.replicated_bytes_per_gpu / GIB:.2f}G",
                  f"{p.kv_bytes_per_token_per_gpu / 1024:.1f}K", f"{p.kv_tokens_per_gpu:,}",
                  f"[{style}]{p.verdict.replace('_', ' ')}[/]", f"{p.max_model_len:,}" if p.max_model_len else "-")
    console.print(t)
    best = next((p for p in ps.plans if p.verdict == "fits"), None) or next(
        (p for p in ps.plans if p.verdict == "fits_limited"), None) or (ps.plans[-1] if ps.plans else None)
    if best is not None:
        console.print(f"  → {best.advice}", soft_wrap=True)


def _print_findings(report: InspectReport, console: Console) -> None:
    if not report.findings:
        console.print("[green]No integrity findings.[/]")
    elif console.is_terminal:
        t = Table(title="Findings", title_justify="left")
        for col in ("severity", "kind", "file", "tensor", "message"):
            t.add_column(col, overflow="fold")
        for f in report.findings:
            message = f.message + (f" [dim](hint: {f.hint})[/]" if f.hint else "")
            t.add_row(f"[{SEVERITY_STYLE[f.severity]}]{f.severity}[/]", f.kind, f.file or "", f.tensor or "",
                      message)
        console.print(t)
    else:
        # off a terminal (a pipe, a log, CI): one finding per line, names never wrapped, so that grep finds them
        console.print("Findings:", soft_wrap=True)
        for f in report.findings:
            where = "  ".join(p for p in (f.file, f.tensor) if p)
            hint = f" (hint: {f.hint})" if f.hint else ""
            console.print(f"{f.severity}  {f.kind}  {where}  {f.message}{hint}", soft_wrap=True, markup=False,
                          highlight=False)
    if report.data is not None:
        d = report.data
        console.print(f"[bold]Data verified:[/] {human_bytes(d.bytes)} in {d.seconds:.2f} s = {d.gb_per_s:.2f} GB/s "
                      f"(raw read of the same files: {d.read_gb_per_s:.2f} GB/s; checks: NaN/Inf, FP8 scales "
                      "finite and > 0, all-zero weights)", soft_wrap=True)
    n_err = sum(f.severity == "error" for f in report.findings)
    console.print(f"[bold red]{n_err} integrity error(s)[/]" if n_err else "[green]No integrity errors.[/]")

"""`vdeploy download`: fetch a model from ModelScope, Hugging Face or a local directory, resumable and verified.

Only typer/rich/stdlib at module level; the download package (and the hub clients) load inside the command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer


def download(
    model_id: Annotated[Optional[str], typer.Argument(
        help="Hub id (org/name), or a directory with --source local.", show_default=False)] = None,
    source: Annotated[Optional[str], typer.Option(
        "--source", "-s", help="modelscope | huggingface | local. Default: $VDEPLOY_SOURCE, else modelscope "
        "(VLLM_USE_MODELSCOPE is honoured).", show_default=False)] = None,
    revision: Annotated[Optional[str], typer.Option(
        "--revision", "-r", help="Branch, tag or commit (default: master on ModelScope, main on Hugging Face).")]
    = None,
    local_dir: Annotated[Optional[Path], typer.Option(
        "--local-dir", help="Target directory (default: $VDEPLOY_HOME/models/ORG/NAME).")] = None,
    include: Annotated[Optional[list[str]], typer.Option(
        "--include", help="Only files matching this glob (repeatable), e.g. '*.json'.")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(
        "--exclude", help="Skip files matching this glob (repeatable), e.g. 'original/*'.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Files transferred in parallel.")] = 8,
    token: Annotated[Optional[str], typer.Option(
        "--token", help="Access token (else HF_TOKEN / MODELSCOPE_API_TOKEN / the saved login).")] = None,
    endpoint: Annotated[Optional[str], typer.Option(
        "--endpoint", help="Hub or mirror URL (else HF_ENDPOINT / MODELSCOPE_ENDPOINT).")] = None,
    link: Annotated[bool, typer.Option(
        "--link", help="--source local: hard-link (same filesystem) or symlink instead of copying.")] = False,
    verify: Annotated[Optional[Path], typer.Option(
        "--verify", help="Re-check an existing model directory against its manifest; no download.",
        show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (docs/download.md).")]
    = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Download a model, resumable and sha256-verified, then run the checkpoint integrity checks.

    Exit 0 when every file verified and the checkpoint checks found no error, 1 otherwise, 2 for bad input.
    Interrupted? Run the same command again: verified files are kept, partial ones resume.
    """
    import threading

    from vdeploy.errors import VdeployError

    # The hub clients draw their own tqdm bars and log every file at INFO; ours replace both.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MODELSCOPE_LOG_LEVEL", "WARNING")
    try:
        result = _run(model_id, source, revision, local_dir, include or [], exclude or [], workers, token, endpoint,
                      link, verify, show_progress=not (quiet or json_output), cancel=threading.Event())
    except VdeployError as exc:
        if not json_output:
            raise
        from vdeploy.cli.output import print_json

        print_json({"schema_version": 1, "ok": False, "error": exc.message, "hint": exc.hint})
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        from vdeploy.cli.output import console

        console(stderr=True).print("[yellow]interrupted:[/] run the same command again to resume")
        raise
    if json_output:
        from vdeploy.cli.output import print_json

        print_json(result.to_dict())
    elif not quiet or not result.ok:
        _print_summary(result)
    raise typer.Exit(0 if result.ok else 1)


def _run(model_id, source, revision, local_dir, include, exclude, workers, token, endpoint, link, verify, *,
         show_progress, cancel):
    from vdeploy.download.progress import ProgressDisplay, RichProgressDisplay
    from vdeploy.errors import VdeployError

    display = RichProgressDisplay() if show_progress else ProgressDisplay()
    if verify is not None:
        if model_id is not None:
            raise VdeployError("--verify takes the directory; do not pass a model id as well",
                               "vdeploy download --verify DIR")
        from vdeploy.download.verify import verify_directory

        return verify_directory(verify, display, workers=workers, cancel=cancel)
    if not model_id:
        raise VdeployError("missing MODEL_ID", "vdeploy download org/name  (or --verify DIR)")
    from vdeploy.download.pipeline import DownloadRequest, download_model
    from vdeploy.download.source import choose_source

    request = DownloadRequest(model_id=model_id, source=choose_source(source), revision=revision,
                              local_dir=local_dir, include=include, exclude=exclude, workers=workers, token=token,
                              endpoint=endpoint, link=link)
    return download_model(request, display, cancel)


def _print_summary(result) -> None:
    from vdeploy.cli.output import console
    from vdeploy.download.disk import human_bytes

    out = console()
    counts: dict[str, int] = {}
    for f in result.files:
        counts[f.status] = counts.get(f.status, 0) + 1
    where = f"{result.source} @ {result.revision}" + (f", commit {result.commit[:12]}" if result.commit else "")
    mark = "[green]✓[/]" if result.ok else "[bold red]✗[/]"
    out.print(f"{mark} {result.model_id} ({where}) → {result.local_dir}", soft_wrap=True)
    labels = {"skipped": "already verified"}
    tally = ", ".join(f"{n} {labels.get(status, status)}" for status, n in sorted(counts.items())) or "no manifest"
    moved = (f"{human_bytes(result.bytes_total)} hashed" if result.mode == "verify"
             else f"{human_bytes(result.bytes_downloaded)} downloaded")
    out.print(f"  {len(result.files)} files, {human_bytes(result.bytes_total)}: {tally} ({moved} in "
              f"{result.elapsed_s:.1f} s)")
    for f in result.failed:
        out.print(f"  [bold red]{f.status}[/] {f.path}: {f.message}", soft_wrap=True)
    check = result.checkpoint
    if check.ran and not check.errors:
        out.print(f"  checkpoint checks: [green]no errors[/] ({check.warnings} warnings; details: vdeploy "
                  f"inspect-shards {result.local_dir})", soft_wrap=True)
    elif check.ran:
        out.print(f"  checkpoint checks: [bold red]{len(check.errors)} errors[/]")
        for message in check.errors[:20]:
            out.print(f"    {message}", soft_wrap=True)
    else:
        out.print(f"  checkpoint checks skipped: {check.reason}", soft_wrap=True)
    if result.failed and result.mode == "download":
        out.print("  [yellow]hint:[/] run the same command again: verified files are kept, failed ones re-fetched")
    elif result.failed:
        out.print("  [yellow]hint:[/] run `vdeploy download` for this model again to re-fetch the bad files")

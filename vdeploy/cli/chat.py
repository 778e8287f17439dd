"""`vdeploy run MODEL`: chat in the terminal, as `ollama run` does. Talks to a local server that serves MODEL when
`vdeploy ps` finds one (no second copy of the weights in memory), else loads MODEL in this process.

Replies stream as they are generated; a model's reasoning (<think> ... </think>) is shown dimmed, apart from the
answer, and is not sent back in the history (DeepSeek's advice for multi-turn R1). Only typer/stdlib at module
level."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

HELP = "/bye (or Ctrl-D) quits, /clear forgets the conversation, Ctrl-C stops a reply"


def run(
    model: Annotated[Optional[str], typer.Argument(
        help="Served model name, model directory, downloaded hub id, or bundled name with --load-format dummy. "
             "Default: the demo model.", show_default=False)] = None,
    system: Annotated[Optional[str], typer.Option("--system", help="A system message for the conversation.")]
    = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Most tokens per reply.")] = 1024,
    temperature: Annotated[Optional[float], typer.Option(
        "--temperature", min=0.0, max=2.0, help="0 = greedy. Default: the model's.")] = None,
    no_server: Annotated[bool, typer.Option(
        "--no-server", help="Load the model in this process even when a local server serves it.")] = False,
    load_format: Annotated[str, typer.Option(
        "--load-format", help="In-process engine: safetensors | dummy (random weights).")] = "safetensors",
) -> None:
    """Chat with a model in the terminal (streaming, multi-turn; /bye to quit)."""
    backend = _backend(model, no_server, load_format)
    try:
        _loop(backend, system, {"max_tokens": max_tokens, "temperature": temperature})
    finally:
        backend.close()


def _find_server(model: Optional[str]) -> Any:
    from pathlib import Path

    from vdeploy.local_servers import list_servers

    if model is None:
        from vdeploy.models.demo import demo_model_dir

        model = str(demo_model_dir())
    wanted = {model, Path(model).name}
    return next((r for r in list_servers() if wanted & r.names()), None)


def _backend(model: Optional[str], no_server: bool, load_format: str) -> Any:
    from vdeploy.cli.chat_backends import EngineBackend, ServerBackend
    from vdeploy.cli.output import console

    err = console(stderr=True)
    record = None if no_server else _find_server(model)
    if record is not None:
        return ServerBackend(record.url, record.served_model_name)
    from vdeploy.cli.serve_checks import preflight
    from vdeploy.model_configs import resolve_dummy_model

    spec, _ = preflight(model, load_format=load_format, console=err, local_path=True)
    path = resolve_dummy_model(spec, load_format)
    if path is None:
        from vdeploy.cli.generate import demo_model_path

        path = demo_model_path()
    # no spinner: the weight loader draws its own progress bar
    err.print(f"[dim]loading {model or 'the demo model'} ...[/]")
    return EngineBackend(path, model or "", load_format=load_format)


def _style(code: str) -> str:
    import os

    return "" if os.environ.get("NO_COLOR") or not sys.stdout.isatty() else code


def _history_file() -> Any:
    from vdeploy.env.host import model_home

    return model_home() / "run_history"


def _loop(backend: Any, system: Optional[str], sampling: dict[str, Any]) -> None:
    """The session; the typed lines persist across sessions (up-arrow), as Ollama's ~/.ollama/history does."""
    try:
        import readline  # line editing and history for input()
    except ImportError:
        readline = None
    history_file = _history_file()
    if readline is not None:
        try:
            readline.read_history_file(history_file)
        except OSError:  # first session, or an unreadable file: start empty
            pass
    try:
        _session(backend, system, sampling)
    finally:
        if readline is not None:
            try:
                history_file.parent.mkdir(parents=True, exist_ok=True)
                readline.set_history_length(1000)
                readline.write_history_file(history_file)
            except OSError:
                pass


def _session(backend: Any, system: Optional[str], sampling: dict[str, Any]) -> None:
    dim, reset = _style("\033[2m"), _style("\033[0m")
    print(f"{dim}chatting via {backend.where}; {HELP}{reset}", flush=True)
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return
        except KeyboardInterrupt:  # Ctrl-C at the prompt drops the line, as a shell does
            print()
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/bye", "/exit", "/quit"):
            return
        if text == "/clear":
            history = list(start)
            print(f"{dim}(conversation cleared){reset}")
            continue
        if text.startswith("/"):
            print(f"{dim}{HELP}{reset}")
            continue
        history.append({"role": "user", "content": line})
        answer = _reply(backend, history, sampling, dim, reset)
        history.append({"role": "assistant", "content": answer})


def _reply(backend: Any, history: list[dict[str, str]], sampling: dict[str, Any], dim: str, reset: str) -> str:
    """Stream one reply; returns its answer part (what goes back into the history)."""
    answer, mode = [], None
    try:
        for kind, text in backend.stream(history, sampling):
            if kind != mode:  # reasoning first, dimmed under its own heading, then the answer
                sys.stdout.write(f"{dim}Thinking:\n" if kind == "reasoning" else (f"{reset}\n" if mode else ""))
                mode = kind
            if kind == "content":
                answer.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write(f"{reset} [stopped]")
    except (OSError, RuntimeError) as exc:  # the server went away mid-reply: say so, keep the session
        sys.stdout.write(f"{reset}\n[error: {exc}]")
    except BaseException:  # the engine itself failed (a dead or stuck rank): end the reply's line, then report
        sys.stdout.write(f"{reset}\n")
        sys.stdout.flush()
        raise
    sys.stdout.write(f"{reset}\n")
    sys.stdout.flush()
    return "".join(answer)

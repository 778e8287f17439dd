"""Output helpers shared by every command: Rich for people, --json for scripts (stdout carries only JSON)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_error(message: str, hint: str | None = None) -> None:
    from rich.markup import escape

    # messages quote other programs (gloo's "[/path/pair.cc:553] Connection closed"): text, never markup, or
    # printing the error would itself fail
    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        err.print(f"[yellow]hint:[/] {escape(hint)}", soft_wrap=True)

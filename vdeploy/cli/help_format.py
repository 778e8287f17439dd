"""Help that stays readable in an 80-column terminal. Rich's option table cuts long option names
(`--tp,--tensor-pa…`) when the columns do not fit; below WIDE columns the commands with many long options use
click's plain layout instead, which puts a long name on its own line and never shortens it; so does help that is
piped or logged rather than shown in a terminal."""

from __future__ import annotations

import shutil
import sys

import typer.core

WIDE = 130  # from about here on Rich's table fits the longest option names and types of serve and bench


class NarrowSafeHelp:
    """Mixin for typer commands and groups. The plain path also skips importing typer's rich help module (and
    markdown-it, pygments …): 0.15 s of the `vdeploy --help` budget."""

    def format_help(self, ctx, formatter) -> None:
        # Rich's boxes only for a wide terminal: piped or logged help stays plain (grep-able, never cut)
        if sys.stdout.isatty() and shutil.get_terminal_size((80, 24)).columns >= WIDE:
            return super().format_help(ctx, formatter)
        # typer's rich_markup_mode=None path: the plain layout of the click that typer vendors
        markup_mode, self.rich_markup_mode = self.rich_markup_mode, None
        try:
            return super().format_help(ctx, formatter)
        finally:
            self.rich_markup_mode = markup_mode


class NarrowSafeCommand(NarrowSafeHelp, typer.core.TyperCommand):
    pass

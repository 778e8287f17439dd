"""Help that stays readable in an 80-column terminal. Rich's option table cuts long option names
(`--tp,--tensor-pa…`) when the columns do not fit; below WIDE columns the commands with many long options use
click's plain layout instead, which puts a long name on its own line and never shortens it."""

from __future__ import annotations

import shutil

import typer.core

WIDE = 130  # from about here on Rich's table fits the longest option names and types of serve and bench


class NarrowSafeCommand(typer.core.TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        if shutil.get_terminal_size((80, 24)).columns >= WIDE:
            return super().format_help(ctx, formatter)
        # typer's rich_markup_mode=None path: the plain layout of the click that typer vendors
        markup_mode, self.rich_markup_mode = self.rich_markup_mode, None
        try:
            return super().format_help(ctx, formatter)
        finally:
            self.rich_markup_mode = markup_mode

"""The GPU check scripts' common frame (benchmarks/kernels/*_check.py): run sections that record into one list,
each failure recorded with its traceback instead of stopping the others, then write one JSON report whose
`all_ok` is the exit code."""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any, Callable


def run_sections(sections: list[tuple[str, Callable[[list], None]]], results: list) -> None:
    for name, fn in sections:
        print(f"section {name}", flush=True)
        try:
            fn(results)
        except Exception as e:  # record and go on: one broken section must not hide the others' numbers
            traceback.print_exc()
            results.append({"section": name, "error": f"{type(e).__name__}: {e}", "ok": False})


def finish_report(results: list, out: str | None, **extra: Any) -> None:
    """Print and (with out) write the report; exit 1 when any result is not ok."""
    import torch

    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, **extra, "results": results,
              "all_ok": all(r.get("ok", True) for r in results)}
    text = json.dumps(report, indent=1)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    raise SystemExit(0 if report["all_ok"] else 1)

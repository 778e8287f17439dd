"""One reader of Linux's /proc/PID/stat for the places that judge a process from outside: whether a server record is
still its process (`vdeploy ps`), which rank or engine process is stuck (the step watchdogs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

# the run states that explain a process making no progress, in words
STUCK_STATES = ("stopped", "traced", "in uninterruptible sleep")
_STATE_WORDS = {"T": "stopped", "t": "traced", "D": "in uninterruptible sleep", "Z": "a zombie", "X": "a zombie"}


def stat_fields(pid: int) -> Optional[list[str]]:
    """/proc/PID/stat from field 3 (state) on; the command name before it is parenthesised and may hold spaces.
    None where the process is gone or there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def process_state(pid: int) -> str:
    """The kernel's run state of a process in words: stopped, traced, in uninterruptible sleep, a zombie, running
    (which includes sleeping), or unknown (gone, or no /proc)."""
    fields = stat_fields(pid)
    if not fields:
        return "unknown"
    return _STATE_WORDS.get(fields[0], "running")


def process_start(pid: int) -> Optional[int]:
    """The process's start time (field 22 of /proc/PID/stat, clock ticks since boot); None off Linux."""
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None

"""LoRA adapters across data-parallel replicas: every live replica serves the same adapters.

A request may be routed to any live replica, so an adapter is listed (and servable by name) only where every live
replica has it, and a load is all-or-nothing: when one replica refuses (its slots in use, say), the replicas that
took the adapter unload it again, and the refusal is raised. Otherwise a half-loaded adapter would be listed, fail
on the replicas without it, and be refused as "already loaded" on the retry. Replicas that die mid-call are left
out: they serve nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("vdeploy.engine")


def served_adapters(replicas: list[Any]) -> dict[str, str]:
    """The adapters (name -> path) that every live replica serves, in the order the first live one loaded them."""
    live = [r for r in replicas if r.is_running]
    if not live:
        return {}
    first, others = live[0].lora_adapters, [r.lora_adapters for r in live[1:]]
    return {name: path for name, path in first.items() if all(name in other for other in others)}


async def load_everywhere(replicas: list[Any], name: str, path: str, label: Callable[[int], str]) -> None:
    """Every live replica loads the adapter at once (each checks it); if one refuses, those that loaded it unload
    it again (best effort, logged) and the first refusal is raised."""
    live = _live(replicas)
    results = await asyncio.gather(*(replicas[k].load_lora(name, path) for k in live), return_exceptions=True)
    loaded = [k for k, result in zip(live, results) if not isinstance(result, BaseException)]
    # a replica that died meanwhile refused nothing, unless none is left that loaded it
    refusals = [result for k, result in zip(live, results)
                if isinstance(result, BaseException) and (replicas[k].is_running or not loaded)]
    if not refusals:
        return
    if loaded:
        logger.warning("LoRA adapter %r refused (%s): unloading it from %s", name, refusals[0],
                       ", ".join(label(k) for k in loaded))
    for k in loaded:
        try:
            await replicas[k].unload_lora(name)
        except Exception as e:  # noqa: BLE001 - the refusal below is what the client must see
            logger.warning("%s: could not unload LoRA adapter %r after another replica refused it: %s",
                           label(k), name, e)
    raise refusals[0]


async def unload_everywhere(replicas: list[Any], name: str) -> None:
    """Every live replica that has the adapter unloads it (all of them are asked, so one refusal does not leave it
    on the rest); "not loaded" is raised only when no live replica had it, any other refusal after the others."""
    from vdeploy.lora.registry import LoRANotFoundError

    live = _live(replicas)
    results = await asyncio.gather(*(replicas[k].unload_lora(name) for k in live), return_exceptions=True)
    failures = [(k, result) for k, result in zip(live, results) if isinstance(result, BaseException)]
    # a replica that died meanwhile serves nothing: its failure is no refusal
    refusals = [e for k, e in failures if replicas[k].is_running and not isinstance(e, LoRANotFoundError)]
    if refusals:
        raise refusals[0]
    if len(failures) == len(live):  # no replica had it (or none is left)
        raise failures[0][1]


def _live(replicas: list[Any]) -> list[int]:
    from vdeploy.engine.streams import EngineDeadError

    live = [k for k, r in enumerate(replicas) if r.is_running]
    if not live:
        raise EngineDeadError("every data-parallel replica has stopped")
    return live

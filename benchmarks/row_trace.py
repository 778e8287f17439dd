"""BENCHMARK-ONLY: where two eager runs of one model first compute a token differently, module by module.

A greedy run and its replay (speculative_mtp.py) must give every token bit-identical hidden states, whichever row of
a verify step it sits in. RowTrace hooks every module of the target's decoder (not the MTP passes) and keeps, for
each row of each step, a digest of the module's output bytes keyed by (position, input token, module); `first_split`
compares two traces over the keys both saw and names the first (position, module) whose bytes differ. Before the
first differing greedy token both runs have the same prefix, so that module is where a row's place in the batch (or
a race) changes its arithmetic. Eager only: CUDA-graph replays run no hooks.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch


class RowTrace:
    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.digests: dict[tuple[int, int, str], str] = {}
        self.order: dict[str, int] = {}  # module -> its place in a forward pass (first seen)
        self._rows: list[tuple[int, int]] | None = None  # (position, token) of each row of the pass under way
        self._handles: list[Any] = []

    def __enter__(self) -> RowTrace:
        decoder = self.model.model  # the target's embedding, layers and final norm; the MTP module is elsewhere
        self._handles.append(decoder.register_forward_pre_hook(self._begin))
        self._handles.append(decoder.register_forward_hook(self._end))
        for name, module in decoder.named_modules():
            if name:
                self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _begin(self, module, args) -> None:
        input_ids, positions = args[0], args[1]  # [T], [T]
        self._rows = list(zip(positions.tolist(), input_ids.tolist()))

    def _end(self, module, args, output) -> None:
        self._rows = None

    def _hook(self, name: str):
        def hook(module, args, output) -> None:
            if self._rows is None:
                return
            self.order.setdefault(name, len(self.order))
            outputs = output if isinstance(output, (tuple, list)) else (output,)
            for i, out in enumerate(outputs):
                if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != len(self._rows):
                    continue
                rows = out.detach().contiguous().view(len(self._rows), -1).view(torch.uint8).cpu().numpy()
                for (position, token), row in zip(self._rows, rows):
                    # the first time a key is seen: a rejected draft's row never shares a key with an accepted token
                    self.digests.setdefault((position, token, f"{name}[{i}]"),
                                            hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest())
        return hook


def first_split(a: RowTrace, b: RowTrace, min_position: int = 0) -> dict[str, Any]:
    """The first (position >= min_position, module in forward order) where the two traces' bytes differ, over the
    keys both saw (`first` None when every one agrees). min_position: the prompt's length, since a prompt's rows are
    computed in whatever chunk the prefix cache leaves, not in a verify step."""
    def place(key):
        position, _, module = key
        return position, a.order.get(module.rsplit("[", 1)[0], 1 << 30), module

    shared = sorted((k for k in a.digests.keys() & b.digests.keys() if k[0] >= min_position), key=place)
    differing = [key for key in shared if a.digests[key] != b.digests[key]]
    if not differing:
        return {"shared_keys": len(shared), "differing_keys": 0, "first": None}
    position, token, module = differing[0]
    at_position = [k[2] for k in differing if k[0] == position]
    return {"shared_keys": len(shared), "differing_keys": len(differing),
            "first": {"position": position, "token": token, "module": module},
            "modules_differing_at_that_position": at_position[:12]}

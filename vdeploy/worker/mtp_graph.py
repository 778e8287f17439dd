"""The MTP module's forward as CUDA graphs: one per decode bucket, over the decode graph runner's static metadata.

At batch 1 a DeepSeek step is a few milliseconds of GPU work, and an eager MTP pass (one MLA + MoE block, ~40
launches and their Python) costs about as much host time as the step's GPU time: the drafts would eat most of what
speculation gains. Captured, a pass costs its kernels alone.

Two uses, both on all-decode rows:
  - the pass over a step's own rows, replayed right after the step's graph: the attention metadata (positions,
    slots, block tables, lengths) is still in the runner's static buffers, so only the MTP inputs are copied;
  - a further draft pass (k > 1), one row per request at the next position: its metadata is staged into the same
    buffers first (the next step stages its own again).
The graphs share the decode graphs' memory pool (captured right after each bucket's step graph); the pool holds one
pass's activations at a time, as replays never overlap. Only used on CUDA.
"""

from __future__ import annotations

import torch

from vdeploy.worker.cuda_graph import DecodeGraphRunner, capture_graph
from vdeploy.worker.input_batch import HostBatch


class MTPGraphs:
    def __init__(self, model, hidden_size: int, dtype: torch.dtype, device: torch.device, max_batch: int):
        self.model = model
        with torch.device(device):
            self.ids = torch.zeros(max_batch, dtype=torch.int64)  # [Bmax] the token after each row
            self.hidden = torch.zeros(max_batch, hidden_size, dtype=dtype)  # [Bmax, D] the hidden state at it
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}  # bucket -> static MTP hidden states [bucket, D]
        self.runner: DecodeGraphRunner | None = None

    def capture(self, runner: DecodeGraphRunner, batch: int, pool) -> None:
        """Called by runner.capture for each bucket, right after the step's graph of that bucket."""
        self.runner = runner

        def body() -> torch.Tensor:
            _, positions, ctx = runner.context(batch)  # a fresh context: per-step values computed in the graph
            return self.model.mtp_forward(self.ids[:batch], positions, self.hidden[:batch], ctx)

        self.graphs[batch], self.outputs[batch] = capture_graph(body, pool)

    def can_run(self, hb: HostBatch) -> bool:
        return self.runner is not None and self.runner.can_run(hb)

    def run(self, hb: HostBatch, ids: torch.Tensor, hidden: torch.Tensor, staged: bool) -> torch.Tensor:
        """The MTP module over the rows of the all-decode batch `hb`: ids [n] (the token after each row), hidden
        [n, D] -> its hidden states [n, D] (a view of the static output: consume it before the next replay).
        `staged`: hb is the batch the step's graph just ran, whose metadata is still in the static buffers."""
        n = hb.num_reqs
        bucket = self.runner.bucket_for(n) if staged else self.runner.stage(hb)
        self.ids[:n].copy_(ids, non_blocking=True)
        self.hidden[:n].copy_(hidden)
        self.graphs[bucket].replay()
        return self.outputs[bucket][:n]

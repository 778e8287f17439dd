"""Host-side parts of the decode CUDA graphs that CPU CI can check: buckets and padded inputs."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.worker.cuda_graph import MAX_GRAPH_BATCH, fill_padded_decode_inputs, graph_batch_sizes
from vdeploy.worker.input_batch import build_host_batch


def test_bucket_sizes():
    assert graph_batch_sizes(1) == [1]
    assert graph_batch_sizes(6) == [1, 2, 4, 6]
    assert graph_batch_sizes(40) == [1, 2, 4, 8, 16, 32, 40]
    sizes = graph_batch_sizes(10_000)
    assert sizes[-1] == MAX_GRAPH_BATCH == 512 and sizes[:5] == [1, 2, 4, 8, 16]
    assert all(b - a <= 16 for a, b in pairwise(sizes))  # padding waste stays small


def test_padded_decode_inputs_write_nowhere_and_read_one_token():
    greedy = SamplingParams(temperature=0.0)
    reqs = [ScheduledRequest("a", [11], 5, [3, 4], True, greedy), ScheduledRequest("b", [12], 0, [9], True, greedy)]
    hb = build_host_batch(SchedulerOutput(reqs, 2), block_size=4)
    tokens = np.full((3, 4), 99, dtype=np.int64)
    seq_lens = np.full(4, 99, dtype=np.int32)
    fill_padded_decode_inputs(hb, tokens, seq_lens)
    assert tokens.tolist() == [[11, 12, 0, 0], [5, 0, 0, 0], [4 * 4 + 1, 9 * 4, -1, -1]]
    assert seq_lens.tolist() == [6, 1, 1, 1]

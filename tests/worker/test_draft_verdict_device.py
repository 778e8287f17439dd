"""The MTP drafter's inputs computed on the device (rows rejected, last token emitted per request) agree with the
host's reading of the same verdict (`emitted`), for every acceptance pattern and mixed draft counts, and on a GPU
they are queued without waiting for the device."""

import itertools
import random

import pytest
import torch

from vdeploy.worker.spec_verify import DraftVerdict


def test_last_emitted_on_device_matches_the_host_verdict():
    rng = random.Random(0)
    for _ in range(200):
        num_rows = rng.randint(1, 6)
        samples = sorted(rng.sample(range(num_rows), rng.randint(1, num_rows)))  # rows that speculated
        drafts = [[rng.randrange(100) for _ in range(rng.randint(1, 4))] for _ in samples]
        total = sum(map(len, drafts))
        accepted = torch.tensor([rng.random() < 0.6 for _ in range(total)])
        replacement = torch.tensor([rng.randrange(100, 200) for _ in range(total)])
        bonus = torch.tensor([rng.randrange(200, 300) for _ in range(num_rows)])
        verdict = DraftVerdict(samples, drafts, accepted, replacement)
        info = torch.zeros(2, num_rows, dtype=torch.int64)
        info[1] = bonus
        verdict.fill_last_emitted(info, bonus)
        emitted = verdict.emitted(bonus.tolist(), num_rows)
        for row in range(num_rows):
            if emitted[row] is None:  # no drafts: nothing rejected, the sampled token
                assert info[:, row].tolist() == [0, bonus[row].item()]
            else:
                k = len(drafts[samples.index(row)])
                assert info[:, row].tolist() == [k + 1 - len(emitted[row]), emitted[row][-1]]


def test_every_pattern_of_three_drafts():
    for pattern in itertools.product([False, True], repeat=3):
        verdict = DraftVerdict([0], [[5, 6, 7]], torch.tensor(pattern), torch.tensor([50, 60, 70]))
        info = torch.zeros(2, 1, dtype=torch.int64)
        verdict.fill_last_emitted(info, torch.tensor([99]))
        kept = next((i for i, ok in enumerate(pattern) if not ok), 3)
        assert info[:, 0].tolist() == [3 - kept, [50, 60, 70][kept] if kept < 3 else 99]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_last_emitted_is_queued_without_waiting_for_the_device():
    # the MTP pass is to be queued behind the verify step: a blocking host->device copy here would make the host
    # wait for the whole step first (torch's sync debug mode raises on such a wait)
    device = torch.device("cuda")
    verdict = DraftVerdict([0, 2], [[5, 6], [7]], torch.tensor([True, False, True], device=device),
                           torch.tensor([50, 60, 70], device=device))
    bonus = torch.tensor([97, 98, 99], device=device)
    info = torch.zeros(2, 3, dtype=torch.int64, device=device)
    info[1] = bonus  # as the runner fills it: a row without drafts emits its sampled token
    torch.cuda._sleep(50_000_000)  # keep the stream busy, as a step in flight does
    torch.cuda.set_sync_debug_mode("error")
    try:
        verdict.fill_last_emitted(info, bonus)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert info.tolist() == [[1, 0, 0], [60, 98, 99]]

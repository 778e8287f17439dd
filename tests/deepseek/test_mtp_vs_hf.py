"""Our MTP module and drafter against HF transformers' own MtpLayer (transformers.modeling_layers) built on the same
weights: the first pass's logits at every position of a prompt over the paged cache, and k = 3 recurrent drafts
(each attending to the MTP cache the earlier passes wrote)."""

import pytest
import torch

from tests.deepseek.deepseek_fixtures import add_mtp_layer, save_hf_model, tiny_v3_config
from vdeploy.distributed import ParallelState

PROMPT = [5, 17, 99, 3, 250, 41, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 2]
BLOCK = 4
K = 3


def hf_mtp_reference(hf, donor, config, tensors, n):
    from transformers.modeling_layers import MtpLayer
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer, DeepseekV3RMSNorm

    layer = MtpLayer(config, DeepseekV3DecoderLayer, DeepseekV3RMSNorm, n)
    layer.mtp_block = donor.model.layers[n]  # the block the checkpoint's layer N was written from
    p = f"model.layers.{n}."
    with torch.no_grad():
        for ours, name in (("enorm", "enorm"), ("hnorm", "hnorm"), ("eh_proj", "eh_proj"),
                           ("post_norm", "shared_head.norm")):
            getattr(layer, ours).weight.copy_(tensors[p + name + ".weight"])

    def run(token_ids, prev_hidden):
        """MTP over rows 0..T-1 (token after each row, hidden of each row) -> its hidden [T, D], causal."""
        embeds = hf.model.embed_tokens(torch.tensor([token_ids]))
        pos = torch.arange(len(token_ids))[None]
        rope = hf.model.rotary_emb(embeds, pos)
        mask = torch.full((len(token_ids), len(token_ids)), float("-inf")).triu(1)[None, None]
        return layer(embeds, prev_hidden[None], rope, mask, pos, None)[0]

    return layer.eval(), run


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(HF main model, HF model holding the MTP block, our model with its MTP module, its config, the tensors)."""
    from safetensors.torch import load_file

    from vdeploy.config import EngineConfig, ModelConfig
    from vdeploy.distributed import ParallelState
    from vdeploy.models.loader import load_model
    from vdeploy.speculative_config import SpeculativeConfig

    path = tmp_path_factory.mktemp("mtp_ref")
    config = tiny_v3_config()
    hf = save_hf_model(config, path)
    donor = add_mtp_layer(config, path, copy_weight=0.0)  # a random module: the block decides the drafts
    cfg = ModelConfig.from_path(path)
    spec = SpeculativeConfig(method="mtp", num_speculative_tokens=K)
    ours = load_model(EngineConfig(model=str(path), speculative=spec), cfg, ParallelState(0, 1), "cpu",
                      torch.float32, quiet=True)
    return hf, donor, ours, cfg, config, load_file(path / "model.safetensors")


def paged(ours, cfg, chunks, next_token_ids=None, seed=0):
    """Our model over `chunks` (lists of prompt tokens, one step each) of one request on scattered blocks; the
    MTP module after every step as the runner runs it. Returns (host batch and hidden of the last step, KV
    caches, block table)."""
    from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.layers.forward_context import ForwardContext
    from vdeploy.worker.input_batch import build_host_batch
    from vdeploy.worker.mtp_drafter import MTPDrafter, _metadata

    t = sum(map(len, chunks))
    blocks = torch.randperm(32, generator=torch.Generator().manual_seed(seed))[: -(-(t + K) // BLOCK)].tolist()
    kv = [torch.zeros(1, 32, BLOCK, 1, cfg.kv_cache_dim) for _ in range(cfg.num_layers + 1)]
    drafter = MTPDrafter(ours, ParallelState(0, 1), torch.device("cpu"), BLOCK, K, cfg.max_position_embeddings)
    start = 0
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        req = ScheduledRequest("r", chunk, start, blocks, last, SamplingParams(temperature=0) if last else None,
                               num_prompt_tokens=t)
        nxt = {"r": next_token_ids[i]} if next_token_ids and not last else {}
        hb = build_host_batch(SchedulerOutput([req], len(chunk), next_token_ids=nxt), BLOCK)
        ctx = ForwardContext(_metadata(hb, BLOCK, torch.device("cpu")), kv)
        hidden = ours(torch.tensor(chunk), torch.arange(start, start + len(chunk)), ctx)
        if not last:
            drafter.propose(hb, hidden, kv, {"r": blocks}, None, None)
        start += len(chunk)
    return hb, hidden, kv, blocks


def test_mtp_logits_and_recurrent_drafts_match_hf(models):
    from vdeploy.layers.forward_context import ForwardContext
    from vdeploy.worker.mtp_drafter import MTPDrafter, _metadata

    hf, donor, ours, cfg, config, tensors = models
    k, n, t = K, cfg.num_layers, len(PROMPT)
    _, hf_run = hf_mtp_reference(hf, donor, config, tensors, n)
    with torch.no_grad():
        # our main forward over the prompt on a paged cache (scattered blocks, room for the drafts' positions)
        hb, hidden, kv, blocks = paged(ours, cfg, [PROMPT])  # hidden [T, D]
        ctx = ForwardContext(_metadata(hb, BLOCK, torch.device("cpu")), kv)
        ref_hidden = hf.model(torch.tensor([PROMPT])).last_hidden_state[0]  # after the final norm, as ours
        torch.testing.assert_close(hidden, ref_hidden, rtol=1e-4, atol=1e-4)
        x = int(hf.lm_head(ref_hidden[-1]).argmax())  # the token the step emits

        # pass 1 at every row: logits of the token two ahead
        shifted = PROMPT[1:] + [x]
        h1 = ours.mtp_forward(torch.tensor(shifted), torch.arange(t), hidden, ctx)
        ref1 = hf_run(shifted, ref_hidden)
        torch.testing.assert_close(ours.mtp_logits(h1), hf.lm_head(ref1), rtol=1e-4, atol=1e-4)

        # the drafter end to end: k recurrent drafts against HF's module run over the growing sequence
        kv2 = [torch.zeros_like(c) for c in kv]
        drafter = MTPDrafter(ours, ParallelState(0, 1), torch.device("cpu"), BLOCK, k, cfg.max_position_embeddings)
        ours(torch.tensor(PROMPT), torch.arange(t), ForwardContext(ctx.attn, kv2))
        drafts = drafter.propose(hb, hidden, kv2, {"r": blocks}, torch.tensor([0]), torch.tensor([x]))[0]
        tokens, prev, expected = list(shifted), ref_hidden, []
        out = ref1
        for _ in range(k):
            d = int(hf.lm_head(out[-1]).argmax())
            expected.append(d)
            tokens.append(d)
            prev = torch.cat([prev, out[-1:]])
            out = hf_run(tokens, prev)
    assert drafts == expected


def test_chunked_prefill_leaves_the_same_mtp_cache(models):
    """With the scheduler's next prompt token at each chunk's last row, a prompt prefilled in three chunks leaves
    the MTP layer's cache as one pass does; without it the boundary positions differ (the test can tell)."""
    from vdeploy.worker.mtp_drafter import MTPDrafter

    _, _, ours, cfg, _, _ = models
    n = cfg.num_layers
    chunks = [PROMPT[:7], PROMPT[7:12], PROMPT[12:]]
    boundaries = [PROMPT[7], PROMPT[12]]

    def mtp_cache(kv, blocks):  # [T, W] the MTP layer's entries at the prompt's positions
        slots = torch.tensor([blocks[p // BLOCK] * BLOCK + p % BLOCK for p in range(len(PROMPT) - 1)])
        return kv[n][0].reshape(-1, cfg.kv_cache_dim)[slots]

    def last_pass(chunks, next_token_ids=None, seed=0):  # the sampling step's MTP pass (emitted token: any)
        hb, hidden, kv, blocks = paged(ours, cfg, chunks, next_token_ids, seed)
        MTPDrafter(ours, ParallelState(0, 1), torch.device("cpu"), BLOCK, 1, cfg.max_position_embeddings).propose(
            hb, hidden, kv, {"r": blocks}, torch.tensor([0]), torch.tensor([0]))
        return mtp_cache(kv, blocks)

    with torch.no_grad():
        whole = last_pass([PROMPT])
        assert torch.allclose(last_pass(chunks, boundaries, seed=1), whole, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(last_pass(chunks, None, seed=1), whole, rtol=1e-4, atol=1e-5)

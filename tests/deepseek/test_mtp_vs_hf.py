"""Our MTP module and drafter against HF transformers' own MtpLayer (transformers.modeling_layers) built on the same
weights: the first pass's logits at every position of a prompt over the paged cache, and k = 3 recurrent drafts
(each attending to the MTP cache the earlier passes wrote)."""

import torch

from tests.deepseek.deepseek_fixtures import add_mtp_layer, save_hf_model, tiny_v3_config

PROMPT = [5, 17, 99, 3, 250, 41, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 2]
BLOCK = 4


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


def test_mtp_logits_and_recurrent_drafts_match_hf(tmp_path):
    from safetensors.torch import load_file

    from vdeploy.config import EngineConfig, ModelConfig, SpeculativeConfig
    from vdeploy.distributed import ParallelState
    from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
    from vdeploy.engine.sampling_params import SamplingParams
    from vdeploy.layers.forward_context import ForwardContext
    from vdeploy.models.loader import load_model
    from vdeploy.worker.input_batch import build_host_batch
    from vdeploy.worker.mtp_drafter import MTPDrafter, _metadata

    config = tiny_v3_config()
    hf = save_hf_model(config, tmp_path)
    donor = add_mtp_layer(config, tmp_path, copy_weight=0.0)  # a random module: the block decides the drafts
    tensors = load_file(tmp_path / "model.safetensors")
    cfg = ModelConfig.from_path(tmp_path)
    k = 3
    spec = SpeculativeConfig(method="mtp", num_speculative_tokens=k)
    ours = load_model(EngineConfig(model=str(tmp_path), speculative=spec), cfg, ParallelState(0, 1), "cpu",
                      torch.float32, quiet=True)
    n = cfg.num_layers
    _, hf_run = hf_mtp_reference(hf, donor, config, tensors, n)

    # our main forward over the prompt on a paged cache (scattered blocks, room for the drafts' positions)
    t = len(PROMPT)
    blocks = torch.randperm(32, generator=torch.Generator().manual_seed(0))[: -(-(t + k) // BLOCK)].tolist()
    req = ScheduledRequest("r", PROMPT, 0, blocks, True, SamplingParams(temperature=0), num_prompt_tokens=t)
    hb = build_host_batch(SchedulerOutput([req], t), BLOCK)
    kv = [torch.zeros(1, 32, BLOCK, 1, cfg.kv_cache_dim) for _ in range(n + 1)]
    ctx = ForwardContext(_metadata(hb, BLOCK, torch.device("cpu")), kv)
    with torch.no_grad():
        hidden = ours(torch.tensor(PROMPT), torch.arange(t), ctx)  # [T, D]
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
        drafter = MTPDrafter(ours, ParallelState(0, 1), torch.device("cpu"), BLOCK, k)
        ours(torch.tensor(PROMPT), torch.arange(t), ForwardContext(ctx.attn, kv2))
        drafts = drafter.propose(hb, hidden, kv2, {"r": blocks}, [0], [x])[0]
        tokens, prev, expected = list(shifted), ref_hidden, []
        out = ref1
        for _ in range(k):
            d = int(hf.lm_head(out[-1]).argmax())
            expected.append(d)
            tokens.append(d)
            prev = torch.cat([prev, out[-1:]])
            out = hf_run(tokens, prev)
    assert drafts == expected

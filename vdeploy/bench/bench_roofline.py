"""The bandwidth roofline `vdeploy bench` prints beside its rate: decode streams every weight once per step (of a
MoE layer, the experts the batch hits) plus each sequence's KV cache, so at batch b and context c a step cannot beat
(weights + b·c·kv_bytes) / copy bandwidth, measured on this device just before. An upper bound that leaves out
prefill, launch gaps and sampling: the fraction of it says how much of the memory system a run uses."""

from __future__ import annotations

from typing import Any

from vdeploy.bench.roofline import decode_step_bytes, single_stream_decode_bound


def decode_roofline(llm: Any, num_prompts: int, input_len: int, output_len: int,
                    output_tokens_per_s: float) -> dict[str, Any] | None:
    """The bound for this workload and the achieved fraction, or None when the model is not in this process."""
    import torch

    from vdeploy.bench.hardware import copy_bandwidth
    from vdeploy.bench.model_cost import model_cost

    runner = getattr(llm.core.executor, "runner", None)
    if runner is None:  # ranks in other processes: their bytes are not visible here
        return None
    device = runner.device
    bandwidth = copy_bandwidth(device, (1 << 30) if device.type == "cuda" else (256 << 20), repeats=5)
    cost, _ = model_cost(llm)
    batch = min(num_prompts, llm.engine_config.scheduler.max_num_seqs)
    # uniform dummy weights send every token to the same experts (a V3 router's correction bias decides, a V2 router
    # ties as in vLLM's bf16 softmax: vdeploy.models.loader.fill_dummy), so a step reads as many as one token does
    collapsed = llm.engine_config.load_format == "dummy" and llm.engine_config.dummy_weights == "uniform"
    weights, kv = cost.decode_weight_bytes(1 if collapsed else batch), cost.kv_bytes_per_token
    if batch == 1 and output_len >= 2:
        bound = single_stream_decode_bound(weights, kv, input_len, output_len, bandwidth)
    else:
        context = input_len + output_len // 2
        bound = batch * bandwidth / decode_step_bytes(weights, kv, [context] * batch)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the copy buffers, before the next backend runs
    return {"copy_bandwidth_tb_per_s": round(bandwidth / 1e12, 4), "decode_batch": batch,
            "decode_bound_tokens_per_s": round(bound, 1),
            "fraction_of_bound": round(output_tokens_per_s / bound, 3) if bound else None,
            # a MoE workload unlike real weights' (vLLM's dummy one): the output says so beside the rate
            "same_experts_for_every_token": collapsed and llm.core.model_config.is_moe}

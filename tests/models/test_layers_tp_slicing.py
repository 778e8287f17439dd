"""Each rank's weight_loader takes exactly its slice: concatenating the ranks' partitions rebuilds the full
checkpoint tensors, from torch tensors and from lazy safetensors slices alike."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.errors import ConfigError
from vdeploy.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from vdeploy.layers.linear import (
    ColumnParallelLinear,
    MergedColumnParallelLinear,
    MergedReplicatedLinear,
    QKVParallelLinear,
    ReplicatedLinear,
    RowParallelLinear,
)
from vdeploy.layers.weight_loading import WeightShapeError, set_weight_attrs

HIDDEN, HEAD_DIM = 32, 8


@pytest.fixture()
def full(tmp_path):
    torch.manual_seed(0)
    tensors = {
        "q": torch.randn(4 * HEAD_DIM, HIDDEN), "k": torch.randn(2 * HEAD_DIM, HIDDEN),
        "v": torch.randn(2 * HEAD_DIM, HIDDEN), "q_bias": torch.randn(4 * HEAD_DIM),
        "gate": torch.randn(48, HIDDEN), "up": torch.randn(48, HIDDEN),
        "down": torch.randn(HIDDEN, 48), "down_bias": torch.randn(HIDDEN),
        "embed": torch.randn(37, HIDDEN),
    }
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path))
    with safe_open(str(path), framework="pt") as f:
        yield tensors, {name: f.get_slice(name) for name in tensors}


def _source(full, lazy: bool):
    tensors, slices = full
    return slices if lazy else tensors


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("tp", [2, 4])
def test_qkv_partitions_rebuild_full_weights(full, lazy, tp):
    src = _source(full, lazy)
    ranks = []
    for rank in range(tp):
        layer = QKVParallelLinear(HIDDEN, HEAD_DIM, 4, 2, bias=True, parallel=ParallelState(rank, tp))
        for sid in "qkv":
            layer.weight.weight_loader(layer.weight, src[sid], sid)
        layer.bias.weight_loader(layer.bias, src["q_bias"], "q")
        q, k, v = layer.weight.data.split([layer.q_size, layer.kv_size, layer.kv_size])
        ranks.append((q, k, v, layer.bias.data[: layer.q_size]))
    tensors = full[0]
    torch.testing.assert_close(torch.cat([r[0] for r in ranks]), tensors["q"], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([r[3] for r in ranks]), tensors["q_bias"], rtol=0, atol=0)
    replicas = max(tp // 2, 1)  # 2 KV heads over tp ranks: each head on tp/2 consecutive ranks
    for rank in range(tp):
        torch.testing.assert_close(ranks[rank][1], ranks[rank - rank % replicas][1], rtol=0, atol=0)
    unique = range(0, tp, replicas)
    torch.testing.assert_close(torch.cat([ranks[r][1] for r in unique]), tensors["k"], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([ranks[r][2] for r in unique]), tensors["v"], rtol=0, atol=0)


@pytest.mark.parametrize("lazy", [False, True])
def test_merged_column_and_row_partitions(full, lazy):
    src, tensors, tp = _source(full, lazy), full[0], 2
    gates, ups, downs = [], [], []
    for rank in range(tp):
        parallel = ParallelState(rank, tp)
        gate_up = MergedColumnParallelLinear(HIDDEN, [48, 48], parallel=parallel)
        gate_up.weight.weight_loader(gate_up.weight, src["gate"], 0)
        gate_up.weight.weight_loader(gate_up.weight, src["up"], 1)
        gate, up = gate_up.weight.data.chunk(2)
        gates.append(gate), ups.append(up)
        down = RowParallelLinear(48, HIDDEN, bias=True, parallel=parallel)
        down.weight.weight_loader(down.weight, src["down"])
        down.bias.weight_loader(down.bias, src["down_bias"])
        torch.testing.assert_close(down.bias.data, tensors["down_bias"], rtol=0, atol=0)  # not split
        downs.append(down.weight.data)
    torch.testing.assert_close(torch.cat(gates), tensors["gate"], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat(ups), tensors["up"], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat(downs, dim=1), tensors["down"], rtol=0, atol=0)


def test_merged_loads_a_fused_checkpoint_tensor(full):
    tensors = full[0]
    fused = torch.cat([tensors["gate"], tensors["up"]])
    layer = MergedColumnParallelLinear(HIDDEN, [48, 48], parallel=ParallelState(1, 2))
    layer.weight.weight_loader(layer.weight, fused)
    torch.testing.assert_close(layer.weight.data, torch.cat([tensors["gate"][24:], tensors["up"][24:]]))


def test_column_row_partial_sums_equal_the_full_mlp(full):
    """Sum of the ranks' row-parallel outputs (what the all-reduce computes) equals the unsplit computation."""
    tensors, tp = full[0], 2
    x = torch.randn(5, HIDDEN)
    reference = (x @ tensors["gate"].t()) @ tensors["down"][:, :48].t() + tensors["down_bias"]
    partial = []
    for rank in range(tp):
        parallel = ParallelState(rank, tp)
        col = ColumnParallelLinear(HIDDEN, 48, parallel=parallel)
        col.weight.weight_loader(col.weight, tensors["gate"])
        row = RowParallelLinear(48, HIDDEN, bias=True, reduce_results=False, parallel=parallel)
        row.weight.weight_loader(row.weight, tensors["down"][:, :48])
        row.bias.weight_loader(row.bias, tensors["down_bias"])
        partial.append(row(col(x)))
    torch.testing.assert_close(sum(partial), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lazy", [False, True])
def test_vocab_parallel_embedding_pads_the_last_partition(full, lazy):
    src, tensors, tp = _source(full, lazy), full[0], 4  # 37 rows over 4 ranks: 10, 10, 10, 7 + 3 padding
    parts = []
    for rank in range(tp):
        head = ParallelLMHead(37, HIDDEN, parallel=ParallelState(rank, tp))
        head.weight.data.fill_(float("nan"))
        head.weight.weight_loader(head.weight, src["embed"])
        assert head.weight.shape == (10, HIDDEN)
        parts.append(head.weight.data)
    assert torch.all(parts[-1][7:] == 0)
    torch.testing.assert_close(torch.cat(parts)[:37], tensors["embed"], rtol=0, atol=0)


def test_embedding_rejects_a_wrong_vocabulary(full):
    emb = VocabParallelEmbedding(36, HIDDEN, parallel=ParallelState(0, 2))
    with pytest.raises(WeightShapeError, match=r"\[36, 32\].*\[37, 32\]"):
        emb.weight.weight_loader(emb.weight, full[0]["embed"])


def test_replicated_linear_rejects_wrong_shape(full):
    layer = ReplicatedLinear(HIDDEN, 47, parallel=ParallelState(0, 2))
    with pytest.raises(WeightShapeError, match="expected shape"):
        layer.weight.weight_loader(layer.weight, full[0]["gate"])



def test_merged_replicated_linear_stacks_whole_shards_on_every_rank():
    """MLA's q_a_proj ‖ kv_a_proj_with_mqa: every rank holds both whole tensors, rows stacked in shard order; with
    FP8 block scales the second shard starts on a block boundary and keeps its partial last block (R1: 1536 ‖ 576)."""
    from vdeploy.config import QuantConfig

    q_a, kv_a = torch.randn(256, 384), torch.randn(192, 384)  # 2 + 1.5 weight blocks of 128 rows
    q_scale, kv_scale = torch.rand(2, 3), torch.rand(2, 3)
    fp8 = QuantConfig(method="fp8", fmt="e4m3", weight_block_size=[128, 128])
    for rank in range(2):
        plain = MergedReplicatedLinear(384, [256, 192], parallel=ParallelState(rank, 2))
        plain.weight.weight_loader(plain.weight, kv_a, 1)
        plain.weight.weight_loader(plain.weight, q_a, 0)
        torch.testing.assert_close(plain.weight.data, torch.cat([q_a, kv_a]), rtol=0, atol=0)
        block = MergedReplicatedLinear(384, [256, 192], parallel=ParallelState(rank, 2), quant_config=fp8)
        assert block.weight_scale_inv.shape == (4, 3)
        block.weight_scale_inv.weight_loader(block.weight_scale_inv, q_scale, 0)
        block.weight_scale_inv.weight_loader(block.weight_scale_inv, kv_scale, 1)
        torch.testing.assert_close(block.weight_scale_inv.data, torch.cat([q_scale, kv_scale]), rtol=0, atol=0)
    with pytest.raises(WeightShapeError, match="out of range"):
        plain.weight.weight_loader(plain.weight, q_a, 2)
    with pytest.raises(WeightShapeError, match="expected size"):
        plain.weight.weight_loader(plain.weight, kv_a, 0)


def test_block_scaled_parameters_shard_in_block_units():
    """A parameter tagged weight_block=(bo, bi) (one value per weight block) is split in block units."""
    tp, rows, cols, block = 2, 256, 384, 128
    scales = torch.arange(2 * 3, dtype=torch.float32).reshape(2, 3)  # [rows/128, cols/128]
    parts = []
    for rank in range(tp):
        layer = ColumnParallelLinear(cols, rows, parallel=ParallelState(rank, tp))
        scale = torch.nn.Parameter(torch.empty(1, 3), requires_grad=False)
        set_weight_attrs(scale, output_dim=0, input_dim=1, weight_block=(block, block))
        layer.weight_loader(scale, scales)
        parts.append(scale.data)
    torch.testing.assert_close(torch.cat(parts), scales, rtol=0, atol=0)
    row_parts = []
    for rank in range(3):
        layer = RowParallelLinear(cols, rows, parallel=ParallelState(rank, 3))
        scale = torch.nn.Parameter(torch.empty(2, 1), requires_grad=False)
        set_weight_attrs(scale, output_dim=0, input_dim=1, weight_block=(block, block))
        layer.weight_loader(scale, scales)
        row_parts.append(scale.data)
    torch.testing.assert_close(torch.cat(row_parts, dim=1), scales, rtol=0, atol=0)


def test_indivisible_heads_raise_config_error():
    with pytest.raises(ConfigError, match="attention heads"):
        QKVParallelLinear(HIDDEN, HEAD_DIM, 4, 2, parallel=ParallelState(0, 3))
    with pytest.raises(ConfigError, match="KV heads"):
        QKVParallelLinear(48, HEAD_DIM, 6, 3, parallel=ParallelState(0, 2))


class RecordingSlice:
    """Stands in for a safetensors slice and records which windows are read."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor, self.reads = tensor, []

    def get_shape(self):
        return list(self.tensor.shape)

    def __getitem__(self, index):
        self.reads.append(index)
        return self.tensor[index]


def test_each_rank_reads_only_its_rows_and_columns(full):
    tensors = full[0]
    q, down = RecordingSlice(tensors["q"]), RecordingSlice(tensors["down"])
    qkv = QKVParallelLinear(HIDDEN, HEAD_DIM, 4, 2, parallel=ParallelState(1, 2))
    qkv.weight.weight_loader(qkv.weight, q, "q")
    row = RowParallelLinear(48, HIDDEN, parallel=ParallelState(1, 2))
    row.weight.weight_loader(row.weight, down)
    assert q.reads == [(slice(16, 32), slice(0, HIDDEN))]  # rank 1: heads 2-3 only
    assert down.reads == [(slice(0, HIDDEN), slice(24, 48))]  # rank 1: second half of the input features


def test_a_larger_checkpoint_tensor_is_rejected_not_truncated(full):
    tensors = full[0]
    qkv = QKVParallelLinear(HIDDEN, HEAD_DIM, 2, 2, parallel=ParallelState(0, 1))  # expects 16 q rows, has 32
    with pytest.raises(WeightShapeError, match="expected size 16"):
        qkv.weight.weight_loader(qkv.weight, tensors["q"], "q")
    row = RowParallelLinear(40, HIDDEN, parallel=ParallelState(0, 2))  # expects 40 input features, has 48
    with pytest.raises(WeightShapeError, match="expected size 40"):
        row.weight.weight_loader(row.weight, tensors["down"])

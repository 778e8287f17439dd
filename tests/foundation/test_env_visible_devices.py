"""CUDA_VISIBLE_DEVICES as CUDA reads it: the GPUs listed before the first invalid index are visible, none after it
(CUDA's documentation), whether the index is negative or names a GPU this machine does not have."""

from __future__ import annotations

from foundation_fakes import gpu_box

from vdeploy.env.hardware import restrict_to_visible


def test_an_index_this_machine_lacks_hides_the_gpus_after_it():
    box = gpu_box(4, "NVIDIA H100", 80 << 30, (9, 0))
    assert [g.index for g in restrict_to_visible(box, "0,9,1").gpus] == [0]
    assert restrict_to_visible(box, "7,1").is_cpu_only
    assert [g.index for g in restrict_to_visible(box, "2,3").gpus] == [2, 3]

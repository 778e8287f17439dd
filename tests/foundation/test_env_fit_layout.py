"""`env check --model M` with --pp and --gpu-memory: without --tp the TP x PP ranks use this machine's GPUs (not
TP = every GPU times PP stages), and a plan for GPUs one would rent (--gpu-memory) is not failed because this
machine has fewer GPUs than it asks for."""

from __future__ import annotations

import functools

import pytest
from foundation_fakes import H200_BYTES, by_name, cuda_software, gpu_box, h100_box, host
from foundation_reference_configs import write_reference_model

from vdeploy.env.report import build_report


@pytest.fixture
def model_dir(tmp_path):
    return functools.partial(write_reference_model, tmp_path)


def test_pp_without_tp_splits_this_machine_s_gpus(model_dir):
    report = build_report(h100_box(8), cuda_software(), host(), model=model_dir("deepseek-r1-distill-llama-70b"),
                          pp=2)
    assert (report.fit.tp, report.fit.pp) == (4, 2)
    assert "TP4 x PP2" in by_name(report.checks)["model_fit"].message


def test_a_plan_for_rented_gpus_is_not_failed_by_this_machine_s_gpu_count(model_dir):
    one_gpu, r1 = gpu_box(1, "NVIDIA H200", H200_BYTES, (9, 0)), model_dir("deepseek-r1")
    report = build_report(one_gpu, cuda_software(), host(), model=r1, tp=8, gpu_memory_gb=141)
    checks = by_name(report.checks)
    assert report.fit.verdict == "fits" and report.fit.target == "8 x 141 GB GPUs"
    assert "tp" not in checks and report.ok, [(c.name, c.status, c.message) for c in report.checks]
    # the same --tp for this machine is still refused
    here = build_report(one_gpu, cuda_software(), host(), model=r1, tp=8)
    assert by_name(here.checks)["tp"].status == "FAIL" and not here.ok

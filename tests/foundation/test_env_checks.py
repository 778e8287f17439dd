"""env check's verdicts on described machines: the checks are pure functions of the probe results."""

from __future__ import annotations

from foundation_fakes import by_name, cpu_software, cuda_software, gpu_box, h100_box, h200_box, host, no_gpu

from vdeploy.env.checks import FAIL, PASS, WARN, run_checks
from vdeploy.env.report import build_report


def test_8x_h200_box_is_ready():
    report = build_report(h200_box(), cuda_software("12.8"), host(), tp=8)
    checks = by_name(report.checks)
    assert report.ok and report.mode == "gpu"
    assert [c.name for c in report.checks if c.status != PASS] == []
    assert {f"gpu{i}" for i in range(8)} <= checks.keys()
    assert "NVIDIA H200" in checks["gpu0"].message and "FP8 tensor cores" in checks["gpu0"].message
    assert checks["fp8"].status == PASS and "W8A8" in checks["fp8"].message
    assert checks["interconnect"].status == PASS and "NVLink" in checks["interconnect"].message
    assert checks["nccl"].message == "NCCL 2.27.3"
    assert checks["torch_cuda"].status == PASS
    data = report.to_dict()
    assert data["hardware"]["gpu_count"] == 8
    assert data["hardware"]["gpus"][0]["compute_capability"] == "9.0"
    assert data["hardware"]["gpus"][0]["fp8_path"] == "w8a8-block-fp8-gemm"


def test_driver_too_old_for_torch_build_fails_with_matching_build_remedy():
    hw = h100_box(driver="550.54.15", cuda="12.4")
    report = build_report(hw, cuda_software("13.0"), host())
    check = by_name(report.checks)["torch_cuda"]
    assert not report.ok
    assert check.status == FAIL
    assert "13.0" in check.message and "12.4" in check.message
    # the remedy installs the newest build this driver runs, or names the driver the installed build needs
    assert "https://download.pytorch.org/whl/cu124" in check.remedy
    assert "580.65.06" in check.remedy


def test_same_major_newer_minor_is_a_warning():
    report = build_report(h100_box(driver="560.35.03", cuda="12.6"), cuda_software("12.8"), host())
    check = by_name(report.checks)["torch_cuda"]
    assert check.status == WARN and "minor-version" in check.message
    assert "cu126" in check.remedy
    assert report.ok


def test_driver_older_than_any_torch_build_fails():
    report = build_report(h100_box(driver="470.82.01", cuda="11.4"), cuda_software("11.8"), host())
    assert by_name(report.checks)["driver"].status == FAIL
    assert "560.28.03" in by_name(report.checks)["driver"].remedy


def test_no_gpu_is_cpu_mode_not_failure():
    report = build_report(no_gpu(), cpu_software(), host())
    checks = by_name(report.checks)
    assert report.ok and report.mode == "cpu"
    assert checks["gpus"].status == WARN and "CPU mode" in checks["gpus"].message
    assert checks["torch"].status == PASS and "CPU build" in checks["torch"].message
    for absent in ("driver", "torch_cuda", "fp8", "bf16", "nccl", "interconnect"):
        assert absent not in checks


def test_no_torch_recommends_the_build_for_the_driver():
    sw = cpu_software(torch_version=None)
    report = build_report(h100_box(driver="550.54.15", cuda="12.4"), sw, host())
    torch_check = by_name(report.checks)["torch"]
    assert torch_check.status == WARN
    assert "pip install torch --index-url https://download.pytorch.org/whl/cu124" in torch_check.remedy
    cpu_report = build_report(no_gpu(), sw, host())
    assert "whl/cpu" in by_name(cpu_report.checks)["torch"].remedy


def test_cpu_torch_on_gpu_box_fails():
    report = build_report(h200_box(), cpu_software(), host())
    check = by_name(report.checks)["torch"]
    assert check.status == FAIL and "CPU build" in check.message
    assert "whl/cu128" in check.remedy


def test_tiny_shm_warns_only_for_tensor_parallel():
    small = host(shm_gib=64 / 1024)  # docker's default 64 MiB
    multi = by_name(build_report(h200_box(), cuda_software(), small).checks)["shm"]
    assert multi.status == WARN and "--ipc=host" in multi.remedy and "64 MiB" in multi.message
    single = by_name(build_report(h100_box(1), cuda_software(), small).checks)["shm"]
    assert single.status == PASS
    absent = by_name(build_report(h100_box(1), cuda_software(), host(shm_gib=None), tp=1).checks)["shm"]
    assert absent.status == PASS
    absent_tp = by_name(build_report(h200_box(), cuda_software(), host(shm_gib=None)).checks)["shm"]
    assert absent_tp.status == WARN


def test_old_python_and_pip_fail():
    checks = by_name(run_checks(no_gpu(), cpu_software(python_version="3.9.18", pip_version="19.3.1"), host()))
    assert checks["python"].status == FAIL
    assert checks["pip"].status == FAIL and "--upgrade pip" in checks["pip"].remedy
    missing = by_name(run_checks(no_gpu(), cpu_software(pip_version=None), host()))["pip"]
    assert missing.status == WARN


def test_ampere_gets_dequantized_fp8_path_and_pcie_warning():
    hw = gpu_box(4, "NVIDIA A100-SXM4-80GB", 81920 << 20, (8, 0), kind="pcie")
    report = build_report(hw, cuda_software(), host())
    checks = by_name(report.checks)
    assert checks["bf16"].status == PASS
    assert checks["fp8"].status == WARN and "dequantized to bf16" in checks["fp8"].message
    assert checks["interconnect"].status == WARN
    assert report.to_dict()["hardware"]["gpus"][0]["fp8_path"] == "dequantize-to-bf16"


def test_tp_larger_than_gpu_count_fails():
    checks = by_name(run_checks(h100_box(2), cuda_software(), host(), tp=8))
    assert checks["tp"].status == FAIL and "--tp 2" in checks["tp"].remedy


def test_probe_error_fails_and_low_disk_warns():
    from vdeploy.env.hardware import Hardware

    broken = Hardware(gpus=[], source="nvidia-smi", probe_error="NVIDIA-SMI has failed because it couldn't "
                      "communicate with the NVIDIA driver")
    report = build_report(broken, cpu_software(), host(disk_gib=5))
    checks = by_name(report.checks)
    assert checks["gpus"].status == FAIL and not report.ok
    assert checks["disk"].status == WARN and "VDEPLOY_HOME" in checks["disk"].remedy

"""The probes' parsers on nvidia-smi's text formats, the NVML encoding, the CUDA/driver tables, and the fallback
order (NVML, nvidia-smi, CPU mode)."""

from __future__ import annotations

import sys

import pytest

from vdeploy.env import cuda_compat, hardware, nvidia_smi, nvml

QUERY = """\
0, NVIDIA H200, 143771, 143000, 9.0, 570.124.06
1, NVIDIA H200, 143771, 1024, 9.0, 570.124.06
"""
BANNER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.124.06             Driver Version: 570.124.06     CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
"""
TOPO_NVSWITCH = "\t" + "\t".join(f"GPU{i}" for i in range(4)) + "\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n" + \
    "".join(f"GPU{i}\t" + "\t".join(" X " if i == j else "NV18" for j in range(4)) + "\tPXB\t0-55\t0\t\tN/A\n"
            for i in range(4)) + \
    "\nLegend:\n\n  X    = Self\n  NV#  = Connection traversing a bonded set of # NVLinks\n"
TOPO_PCIE = """\
\t\x1b[4mGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m
GPU0\t X \tSYS\t0-31\t0\t\tN/A
GPU1\tSYS\t X \t32-63\t1\t\tN/A

Legend:
  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes
"""
P2P_PARTIAL = " \tGPU0\tGPU1\t\n GPU0\tX\tCNS\t\n GPU1\tCNS\tX\t\n\nLegend:\n\n  X    = Self\n  OK   = Status Ok\n"


def test_query_csv():
    gpus, driver = nvidia_smi.parse_query_csv(QUERY)
    assert driver == "570.124.06"
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[0].name == "NVIDIA H200" and gpus[0].total_memory == 143771 << 20
    assert gpus[1].free_memory == 1024 << 20
    assert gpus[0].compute_capability == (9, 0) and gpus[0].sm == 90 and gpus[0].has_fp8_tensor_cores


def test_query_csv_tolerates_not_available_cells():
    gpus, _ = nvidia_smi.parse_query_csv("0, GRID A100D-40C, [N/A], [N/A], [N/A], 535.54.03\n")
    assert gpus[0].total_memory == 0 and gpus[0].compute_capability is None
    assert not gpus[0].supports_bf16 and gpus[0].fp8_path == "dequantize-to-bf16"


def test_cuda_version_from_banner():
    assert nvidia_smi.parse_cuda_version(BANNER) == "12.8"
    assert nvidia_smi.parse_cuda_version("no banner") is None


def test_topology_nvswitch():
    matrix = nvidia_smi.parse_matrix(TOPO_NVSWITCH)
    assert len(matrix) == 4 and matrix[0][1] == "NV18" and matrix[2][2] == "X"
    assert nvidia_smi.classify_links(matrix) == "nvlink"


def test_topology_pcie_with_terminal_escapes_and_p2p():
    matrix = nvidia_smi.parse_matrix(TOPO_PCIE)
    assert matrix == [["X", "SYS"], ["SYS", "X"]]
    assert nvidia_smi.classify_links(matrix) == "pcie"
    assert nvidia_smi.parse_p2p(nvidia_smi.parse_matrix(P2P_PARTIAL)) is False
    assert nvidia_smi.classify_links([["X", "NV4", "SYS"], ["NV4", "X", "SYS"], ["SYS", "SYS", "X"]]) == \
        "nvlink-partial"


def test_nvml_cuda_version_encoding():
    assert nvml.cuda_version_from_int(12040) == "12.4"
    assert nvml.cuda_version_from_int(13000) == "13.0"


@pytest.mark.parametrize(("cuda", "tag"), [("12.4", "cu124"), ("12.5", "cu124"), ("12.8", "cu128"),
                                           ("13.1", "cu130"), ("11.8", "cu118"), ("11.4", None)])
def test_recommended_torch_build(cuda, tag):
    assert cuda_compat.recommended_torch_build(cuda) == tag


def test_driver_tables():
    assert cuda_compat.cuda_from_driver("550.54.15") == "12.4"
    assert cuda_compat.cuda_from_driver("580.82.07") == "13.0"
    assert cuda_compat.cuda_from_driver("470.82.01") is None
    assert cuda_compat.min_driver_for("12.8") == "570.26"
    assert cuda_compat.compatibility("12.8", "12.8") == "ok"
    assert cuda_compat.compatibility("12.1", "12.4") == "ok"
    assert cuda_compat.compatibility("12.8", "12.4") == "minor-newer"
    assert cuda_compat.compatibility("13.0", "12.9") == "too-new"
    assert cuda_compat.parse_version("2.13.0+cu128") == (2, 13, 0)
    assert cuda_compat.parse_version("3.0.0rc1") == (3, 0, 0)


def test_no_gpu_tools_means_cpu_mode(monkeypatch):
    monkeypatch.setattr(nvml, "probe", lambda: None)
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    hw = hardware.detect_hardware()
    assert hw.is_cpu_only and hw.source == "none" and hw.probe_error is None


def test_nvidia_smi_fallback_when_nvml_is_absent(monkeypatch):
    outputs = {"--query-gpu": (0, QUERY), "topo -m": (0, TOPO_NVSWITCH.replace("GPU2", "").replace("GPU3", "")),
               "topo -p2p": (0, " \tGPU0\tGPU1\n GPU0\tX\tOK\n GPU1\tOK\tX\n"), "banner": (0, BANNER)}

    def fake_run(args):
        joined = " ".join(args[1:])
        for key, value in outputs.items():
            if key in joined:
                return value
        return outputs["banner"]

    monkeypatch.setattr(nvml, "probe", lambda: None)
    monkeypatch.setattr(hardware.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(nvidia_smi, "_run", fake_run)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    hw = hardware.detect_hardware()
    assert hw.source == "nvidia-smi" and hw.gpu_count == 2
    assert hw.driver_version == "570.124.06" and hw.cuda_driver_version == "12.8"
    assert hw.interconnect.kind == "nvlink" and hw.interconnect.p2p is True


def test_failing_nvidia_smi_reports_probe_error(monkeypatch):
    monkeypatch.setattr(nvml, "probe", lambda: None)
    monkeypatch.setattr(hardware.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(nvidia_smi, "_run", lambda args: (9, "NVIDIA-SMI has failed because it couldn't communicate "
                                                          "with the NVIDIA driver.\nMake sure ..."))
    hw = hardware.detect_hardware()
    assert hw.is_cpu_only and hw.probe_error.startswith("NVIDIA-SMI has failed")


def test_manual_hardware():
    hw = hardware.manual_hardware(8, 141, (9, 0), nodes=1)
    assert hw.gpu_count == 8 and hw.min_gpu_memory == 141_000_000_000 and hw.min_compute_capability == (9, 0)


def test_host_probe_measures_the_model_directory_before_it_exists(tmp_path):
    from vdeploy.env.host import detect_host

    info = detect_host({"VDEPLOY_HOME": str(tmp_path / "not" / "yet")})
    assert info.model_dir == str(tmp_path / "not" / "yet" / "models")
    assert info.disk_free is not None and info.disk_free > 0
    assert info.cpu_count >= 1


def test_cuda_visible_devices_restricts_and_reorders():
    from foundation_fakes import gpu_box

    box = gpu_box(4, "NVIDIA H100", 80 << 30, (9, 0))
    box.interconnect.matrix[2][3] = box.interconnect.matrix[3][2] = "PIX"
    two = hardware.restrict_to_visible(box, "3,2")
    assert [g.index for g in two.gpus] == [3, 2]
    assert two.interconnect.matrix == [["X", "PIX"], ["PIX", "X"]]
    assert hardware.restrict_to_visible(box, "1").interconnect.kind == "single"
    assert hardware.restrict_to_visible(box, "").is_cpu_only
    assert [g.index for g in hardware.restrict_to_visible(box, "0,-1,2").gpus] == [0]
    assert hardware.restrict_to_visible(box, "GPU-8a1f2c3d").gpu_count == 4  # UUIDs: left as probed
    assert hardware.restrict_to_visible(box, None) is box


def test_detect_applies_cuda_visible_devices(monkeypatch):
    from foundation_fakes import h200_box

    monkeypatch.setattr(nvml, "probe", h200_box)
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    hw = hardware.detect_hardware()
    assert hw.gpu_count == 2 and hw.interconnect.kind == "nvlink"


class _FakeNvml:
    """The slice of pynvml's API the probe uses, describing two H200s joined by NVLink."""

    NVML_NVLINK_MAX_LINKS = 18
    NVML_FEATURE_ENABLED = 1

    class NVMLError(Exception):
        pass

    class _Memory:
        total = 143771 << 20
        free = 140000 << 20

    def __init__(self):
        self.shutdown = False

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlSystemGetDriverVersion(self):
        return b"570.124.06"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12080

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, handle):
        return "NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, handle):
        return self._Memory()

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return (9, 0)

    def nvmlDeviceGetNvLinkState(self, handle, link):
        if link >= 18:
            raise self.NVMLError("invalid link")
        return self.NVML_FEATURE_ENABLED


def test_nvml_probe_with_a_fake_library(monkeypatch):
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    hw = nvml.probe()
    assert fake.shutdown
    assert hw.source == "nvml" and hw.driver_version == "570.124.06" and hw.cuda_driver_version == "12.8"
    assert [g.name for g in hw.gpus] == ["NVIDIA H200", "NVIDIA H200"]
    assert hw.gpus[1].free_memory == 140000 << 20 and hw.gpus[0].compute_capability == (9, 0)
    assert hw.interconnect.kind == "nvlink" and "18" in hw.interconnect.detail


def test_nvml_that_cannot_start_falls_back(monkeypatch):
    fake = _FakeNvml()

    def fail():
        raise fake.NVMLError("Driver Not Loaded")

    fake.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert nvml.probe() is None

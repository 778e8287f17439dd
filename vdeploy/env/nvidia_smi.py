"""GPU probe through the `nvidia-smi` command, for machines without `pynvml`.

The parsers are pure functions of the tool's text output so tests feed them captured outputs.
"""

from __future__ import annotations

import re
import subprocess

from vdeploy.env.hardware import GpuInfo, Hardware, Interconnect

MIB = 1 << 20
QUERY_FIELDS = ("index", "name", "memory.total", "memory.free", "compute_cap", "driver_version")
_TIMEOUT_S = 20  # nvidia-smi can take seconds on a large box when persistence mode is off


def _run(args: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)
    return done.returncode, done.stdout if done.returncode == 0 else (done.stdout + done.stderr)


def parse_query_csv(text: str) -> tuple[list[GpuInfo], str | None]:
    """Parse `nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits` -> (gpus, driver version)."""
    gpus: list[GpuInfo] = []
    driver: str | None = None
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < len(QUERY_FIELDS):
            continue
        index, name, total_mib, free_mib, cap, driver_cell = cells[: len(QUERY_FIELDS)]
        gpus.append(
            GpuInfo(
                index=int(index),
                name=name,
                total_memory=_mib(total_mib),
                free_memory=_mib(free_mib),
                compute_capability=parse_compute_capability(cap),
            )
        )
        driver = driver or (driver_cell if re.fullmatch(r"[\d.]+", driver_cell) else None)
    return gpus, driver


def _mib(cell: str) -> int:
    try:
        return int(float(cell) * MIB)
    except ValueError:  # "[N/A]" on some virtualised GPUs
        return 0


def parse_compute_capability(cell: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)", cell.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_cuda_version(banner: str) -> str | None:
    """The newest CUDA the driver supports, from plain `nvidia-smi`'s banner ("CUDA Version: 12.4")."""
    match = re.search(r"CUDA Version\s*:\s*([\d.]+)", banner)
    return match.group(1) if match else None


def parse_matrix(text: str) -> list[list[str]]:
    """The GPU×GPU block of `nvidia-smi topo -m` or `topo -p2p r`: row i, column j -> cell text."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # bold header escapes when nvidia-smi thinks it is on a terminal
    tokenised = [line.split() for line in text.splitlines() if line.strip()]
    is_gpu = re.compile(r"GPU\d+").fullmatch
    # The header is the line listing GPU columns: its first two tokens are both GPU names (rows start "GPU0 X ...").
    header = next((t for t in tokenised if len(t) >= 2 and is_gpu(t[0]) and is_gpu(t[1])), None)
    if header is None:
        return []
    n = 0
    while n < len(header) and is_gpu(header[n]):
        n += 1
    rows = [t[1 : n + 1] for t in tokenised if t is not header and is_gpu(t[0])]
    return rows if len(rows) == n and all(len(r) == n for r in rows) else []


def classify_links(matrix: list[list[str]]) -> str:
    """nvlink when every GPU pair has an NV# link, nvlink-partial when some do, else pcie."""
    pairs = [matrix[i][j] for i in range(len(matrix)) for j in range(len(matrix)) if i != j]
    if not pairs:
        return "single" if len(matrix) == 1 else "unknown"
    nvlinked = [p.startswith("NV") for p in pairs]
    if all(nvlinked):
        return "nvlink"
    return "nvlink-partial" if any(nvlinked) else "pcie"


def parse_p2p(matrix: list[list[str]]) -> bool | None:
    """`topo -p2p r` cells: OK, or a reason it is not supported (NS, CNS, GNS, TNS, ...)."""
    pairs = [matrix[i][j] for i in range(len(matrix)) for j in range(len(matrix)) if i != j]
    return all(p == "OK" for p in pairs) if pairs else None


def describe_links(kind: str, matrix: list[list[str]]) -> str:
    pairs = sorted({matrix[i][j] for i in range(len(matrix)) for j in range(len(matrix)) if i != j})
    return f"{kind} ({', '.join(pairs)})" if pairs else kind


def probe_topology(gpu_count: int) -> Interconnect | None:
    if gpu_count < 2:
        return Interconnect(kind="single" if gpu_count == 1 else "none")
    rc, topo_text = _run(["nvidia-smi", "topo", "-m"])
    matrix = parse_matrix(topo_text) if rc == 0 else []
    if not matrix:
        return None
    rc, p2p_text = _run(["nvidia-smi", "topo", "-p2p", "r"])
    p2p = parse_p2p(parse_matrix(p2p_text)) if rc == 0 else None
    kind = classify_links(matrix)
    return Interconnect(kind=kind, matrix=matrix, p2p=p2p, detail=describe_links(kind, matrix))


def probe() -> Hardware:
    rc, out = _run(["nvidia-smi", f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv,noheader,nounits"])
    if rc != 0:
        # Present but failing: usually the kernel module is not loaded or the driver and library versions differ.
        first_line = (out.strip().splitlines() or ["nvidia-smi failed"])[0]
        return Hardware(gpus=[], source="nvidia-smi", probe_error=first_line)
    gpus, driver = parse_query_csv(out)
    rc, banner = _run(["nvidia-smi"])
    cuda = parse_cuda_version(banner) if rc == 0 else None
    interconnect = probe_topology(len(gpus)) or Interconnect(kind="unknown")
    return Hardware(
        gpus=gpus, driver_version=driver, cuda_driver_version=cuda, interconnect=interconnect, source="nvidia-smi"
    )

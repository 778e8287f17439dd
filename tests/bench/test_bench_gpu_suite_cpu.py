"""benchmarks/engine/gpu_suite.py end to end on CPU with tiny models: the files it writes, the numbers being
consistent with each other, one failing benchmark not taking the others down, the serving mode against a real
`vdeploy serve` subprocess, and the time-limited request driver releasing what it aborts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.engine.engine_runs import EngineOptions, open_llm, random_prompts, release, run_requests
from benchmarks.engine.models import prepare_model_dir

SUITE = REPO / "benchmarks" / "engine" / "gpu_suite.py"


def run_suite(out: Path, *extra: str, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SUITE), "--out", str(out), "--device", "cpu", "--tiny", "--git-rev", "test-rev", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def full_tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    proc = run_suite(out)
    return out, proc


def test_tiny_suite_runs_every_benchmark_and_writes_results(full_tiny_run):
    out, proc = full_tiny_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert set(report["benchmarks"]) == {"hardware", "decode", "prefill", "throughput", "hf_peer"}
    assert all(b["status"] == "ok" for b in report["benchmarks"].values())
    assert report["git_revision"] == "test-rev" and report["scale"] == "tiny"
    assert report["device"].startswith("CPU")
    for name in report["benchmarks"]:
        single = json.loads((out / f"{name}.json").read_text())
        assert single["benchmark"] == name and single["git_revision"] == "test-rev" and "date" in single
    md = (out / "results.md").read_text()
    assert "| decode | fraction of bandwidth bound |" in md and "test-rev" in md
    # the summary table is the last thing on stdout
    assert "fraction of matmul peak" in proc.stdout and "all ok" in proc.stdout


def test_tiny_suite_numbers_are_consistent(full_tiny_run):
    out, _ = full_tiny_run
    b = json.loads((out / "results.json").read_text())["benchmarks"]
    hw = b["hardware"]["metrics"]
    assert hw["copy_bandwidth_bytes_per_s"] > 0 and hw["matmul_flops_per_s"] > 0 and hw["matmul_dtype"] == "float32"

    decode = b["decode"]
    m = decode["metrics"]
    assert decode["engine_settings"]["dtype"] == "float32" and decode["engine_settings"]["cuda_graphs"] is False
    assert m["cost_source"] == "loaded model" and m["weight_bytes"] == decode["cost"]["num_params"] * 4
    assert m["fraction_of_bandwidth_bound"] == pytest.approx(
        m["decode_tokens_per_s"] / m["bandwidth_bound_tokens_per_s"], rel=1e-2)
    assert m["copy_bandwidth_bytes_per_s"] == hw["copy_bandwidth_bytes_per_s"]  # the same run's ceiling

    p = b["prefill"]["metrics"]
    assert p["prefill_tokens_per_s"] == pytest.approx(2 * 64 / p["elapsed_s"], rel=1e-3)
    assert p["fraction_of_matmul_peak"] == pytest.approx(p["achieved_flops_per_s"] / hw["matmul_flops_per_s"],
                                                         rel=1e-2)

    work = b["throughput"]["workloads"]
    assert work["fixed"]["output_tokens"] == 8 * 16 and work["fixed"]["completed"] == 8
    assert not work["fixed"]["truncated"]
    assert work["nano"]["completed"] == 8 and 8 * 8 <= work["nano"]["output_tokens"] <= 8 * 32
    assert work["hf_slice"]["output_tokens"] == 4 * 8

    peer = b["hf_peer"]["metrics"]
    assert peer["output_tokens"] == 4 * 8 and peer["completed"] == 4 and "weights differ" in peer["note"]
    assert peer["speedup_same_slice"] == pytest.approx(
        work["hf_slice"]["output_tokens_per_s"] / peer["output_tokens_per_s"], rel=2e-2)


def test_a_failing_benchmark_is_recorded_and_the_rest_still_run(tmp_path):
    # a 48-token context: decode (16 + 24) fits, prefill (64 + 1) does not
    proc = run_suite(tmp_path, "--only", "decode,prefill", "--max-model-len", "48")
    assert proc.returncode == 1
    b = json.loads((tmp_path / "results.json").read_text())["benchmarks"]
    assert b["hardware"]["status"] == "ok" and b["decode"]["status"] == "ok"
    assert b["prefill"]["status"] == "error" and "max_model_len" in b["prefill"]["error"]
    assert "Traceback" in b["prefill"]["traceback"]
    assert "SOME PARTS FAILED" in proc.stdout and "prefill" in (tmp_path / "results.md").read_text()


def test_serving_mode_against_a_vdeploy_serve_subprocess(tmp_path):
    proc = run_suite(tmp_path, "--only", "serving", "--concurrency", "1,4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rec = json.loads((tmp_path / "serving.json").read_text())
    assert [lv["concurrency"] for lv in rec["levels"]] == [1, 4]
    for level in rec["levels"]:
        assert level["failed"] == 0 and level["completed"] == max(2, level["concurrency"])
        assert level["total_output_tokens"] == 8 * level["completed"]
    m = rec["metrics"]
    assert m["server_exit_code"] == 0  # SIGTERM drained it
    assert rec["offline"]["output_tokens"] == 4 * 8  # the saturation level's requests, offline
    assert m["fraction_of_offline_at_saturation"] == pytest.approx(
        m["serving_output_tokens_per_s_at_saturation"] / m["offline_output_tokens_per_s"], rel=1e-2)
    assert "--load-format dummy" in rec["server_command"]


def test_time_limited_run_is_truncated_and_frees_its_blocks(tmp_path):
    model = prepare_model_dir("llama8b", tmp_path, tiny=True)
    llm = open_llm(str(model.path), EngineOptions(device="cpu", max_num_seqs=2))
    try:
        total = llm.core.stats().num_total_blocks
        prompts = random_prompts([20] * 6, 512, seed=1)
        run = run_requests(llm, prompts, [50] * 6, time_limit_s=0.0)
        assert run.truncated and run.completed < 6 and run.output_tokens < 6 * 50
        assert not llm.core.has_unfinished_requests()
        stats = llm.core.stats()
        assert stats.num_running == 0 and stats.num_waiting == 0 and stats.num_free_blocks == total
        full = run_requests(llm, prompts[:2], [5, 7])
        assert not full.truncated and full.completed == 2 and full.output_tokens == 12
    finally:
        release(llm)


def test_spent_budget_skips_parts_but_still_writes_the_report(tmp_path):
    proc = run_suite(tmp_path, "--only", "decode", "--budget-s", "0")
    assert proc.returncode == 1
    b = json.loads((tmp_path / "results.json").read_text())["benchmarks"]
    assert {name: rec["status"] for name, rec in b.items()} == {"hardware": "skipped", "decode": "skipped"}
    assert "skipped" in (tmp_path / "results.md").read_text()

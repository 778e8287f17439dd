"""Data parallelism across nodes, on one CPU machine with real processes: node 0 is the server's front-end
(DataParallelEngine with nnodes=2 on 127.0.0.1, one local replica), node 1 a `vdeploy worker-host` process tree
(one replica listening on another port). Both nodes serve; killing node 1's replica names it and node 0 keeps
serving; a peer without the secret is refused; nothing a network peer writes is unpickled."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.streams import EngineDeadError
from vdeploy.engine.dp_auth import AuthenticationError, challenge_node0, prove_node0
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError

SECRET = "test-secret-0123456789abcdef"
PROMPT = [(7 * j) % 250 + 3 for j in range(11)]
GREEDY = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("dp-nodes"), "llama", dtype="float32", num_shards=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node0_config(checkpoint, port: int, secret: str = SECRET):
    from vdeploy.engine.llm import build_engine_config

    return build_engine_config(str(checkpoint), dtype="float32", device="cpu", block_size=4,
                               num_gpu_blocks_override=128, data_parallel_size=2, nnodes=2, node_rank=0,
                               master_addr="127.0.0.1", master_port=port, dp_secret=secret)


async def collect(engine, prompt, params, rid):
    last = None
    async for out in engine.generate(prompt, params, rid):
        last = out
    return last.outputs[0].token_ids


def replica_pids_of(host_pid: int) -> list[int]:
    """The engine-core processes a worker host started (its children), from /proc (Linux)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            if ppid == host_pid and b"vdeploy.engine.core_process" in cmdline:
                pids.append(int(entry.name))
    return pids


def test_replicas_split_evenly_or_by_explicit_shares():
    from vdeploy.config import ParallelConfig
    from vdeploy.engine.dp_nodes import check_total, local_replica_count

    assert local_replica_count(ParallelConfig(data_parallel_size=4, nnodes=2), 2) == 2
    with pytest.raises(ConfigError, match=r"--data-parallel-size 3 cannot be split evenly over --nnodes 2"):
        local_replica_count(ParallelConfig(data_parallel_size=3, nnodes=2), 2)
    assert local_replica_count(ParallelConfig(data_parallel_size=3, nnodes=2, data_parallel_size_local=1), 2) == 1
    with pytest.raises(ConfigError, match=r"host 4 replicas \(node 0: 1, node 1: 3\), --data-parallel-size is 3"):
        check_total(3, {0: 1, 1: 3})


def test_handshake_needs_the_same_secret_on_both_sides():
    def pair(node0_key: bytes, replica_key: bytes) -> tuple[object, object]:
        a, b = socket.socketpair()
        results: dict[str, object] = {}

        def replica():
            try:
                challenge_node0(b, replica_key)
                results["replica"] = "ok"
            except AuthenticationError as e:
                results["replica"] = e
            b.close()  # a replica drops a peer that failed

        thread = threading.Thread(target=replica)
        thread.start()
        try:
            prove_node0(a, node0_key)
            results["node0"] = "ok"
        except AuthenticationError as e:
            results["node0"] = e
        thread.join(10)
        a.close()
        return results["node0"], results["replica"]

    assert pair(b"k" * 20, b"k" * 20) == ("ok", "ok")
    node0, replica = pair(b"k" * 20, b"x" * 20)
    assert isinstance(replica, AuthenticationError) and "does not know the shared secret" in str(replica)
    assert isinstance(node0, AuthenticationError) and "rejected our proof" in str(node0)


def test_store_values_from_the_network_are_never_unpickled(tmp_path):
    from vdeploy.distributed.rendezvous import host_store
    from vdeploy.engine.dp_nodes import wait_replicas
    from vdeploy.executor.base import ExecutorError
    from vdeploy.executor.node_link import NodeFailure, NodeLink

    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    store = host_store("127.0.0.1", None, 2)
    node1 = NodeLink(store, 1, 2)
    node1.report_failure(NodeFailure(1, "out of memory"))  # a real record still reads back as one
    assert NodeLink(store, 0, 2).first_failure() == NodeFailure(1, "out of memory")
    for key in ("vdeploy/config", "vdeploy/node/1/failure", "vdeploy/dp/node/1/replicas"):
        store.set(key, pickle.dumps(Exploit()))
    with pytest.raises(ExecutorError, match="refused the engine configuration"):
        node1.wait_config()
    with pytest.raises(ExecutorError, match="refused the failure record of node 1"):
        NodeLink(store, 0, 2).first_failure()
    with pytest.raises(ExecutorError, match="refused node 1's replica addresses"):
        wait_replicas(store, 1, 5, lambda: None)
    assert not marker.exists()


@pytest.mark.timeout(60)
def test_replica_refuses_a_peer_without_the_secret_and_keeps_listening():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    replica = subprocess.Popen(
        [sys.executable, "-m", "vdeploy.engine.core_process", "--listen-fd", str(listener.fileno()), "--model", "x"],
        pass_fds=(listener.fileno(),), env={**os.environ, "VDEPLOY_DP_SECRET": SECRET},
        stderr=subprocess.PIPE, text=True)
    listener.close()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as intruder:
            with pytest.raises(AuthenticationError):
                prove_node0(intruder, b"a-wrong-secret-of-some-length")
        assert replica.poll() is None  # still waiting for node 0
        with socket.create_connection(("127.0.0.1", port), timeout=30) as node0:
            prove_node0(node0, SECRET.encode())  # the right secret gets in
        # node 0 left before sending the configuration: the replica exits, having named the intruder
        _, err = replica.communicate(timeout=30)
        assert "refused 127.0.0.1:" in err and "does not know the shared secret" in err
    finally:
        if replica.poll() is None:
            replica.kill()
            replica.wait()


def start_node1(checkpoint, port: int, rpc_port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vdeploy", "worker-host", str(checkpoint), "--nnodes", "2", "--node-rank", "1",
         "--master-addr", "127.0.0.1", "--master-port", str(port), "--data-parallel-rpc-port", str(rpc_port)],
        env={**os.environ, "VDEPLOY_DP_SECRET": SECRET}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


NODE0_TOKENS, NODE1_TOKENS = 40, 250  # node 1's stream must outlive its first tokens by far: it is cut there


async def long_streams_on_both_replicas(engine):
    """A request on replica 0 (both idle: the lower index), then a longer one on replica 1 (replica 0 is busy),
    each returned once its first tokens arrived."""
    futures = []
    for i, max_tokens in enumerate((NODE0_TOKENS, NODE1_TOKENS)):
        params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
        started = asyncio.Event()

        async def run(rid=f"long{i}", started=started, params=params):
            tokens = 0
            async for out in engine.generate(PROMPT, params, rid):
                started.set()
                tokens = len(out.outputs[0].token_ids)
            return tokens

        futures.append(asyncio.ensure_future(run()))
        await asyncio.wait_for(started.wait(), 30)
    return futures


@pytest.mark.timeout(120)
def test_two_nodes_share_requests_and_node0_survives_the_remote_replica(checkpoint):
    from vdeploy.engine.data_parallel import DataParallelEngine

    port, rpc_port = free_port(), free_port()
    killed: list[int] = []
    node1 = start_node1(checkpoint, port, rpc_port)
    try:
        async def main():
            engine = DataParallelEngine(node0_config(checkpoint, port))
            try:
                assert engine.nodes == [0, 1] and engine.addresses == [None, f"127.0.0.1:{rpc_port}"]
                # two requests at once: one per replica (the least busy), and both nodes answer alike
                same = await asyncio.gather(collect(engine, PROMPT, GREEDY, "a"), collect(engine, PROMPT, GREEDY, "b"))
                assert same[0] == same[1] and len(same[0]) == GREEDY.max_tokens
                assert all(r.stats().prompt_tokens_total > 0 for r in engine.replicas)  # each node served
                on_node0, on_node1 = await long_streams_on_both_replicas(engine)
                (victim,) = replica_pids_of(node1.pid)
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
                with pytest.raises(EngineDeadError, match=rf"replica 1 on node 1 \(127.0.0.1:{rpc_port}\)"):
                    await asyncio.wait_for(on_node1, 30)
                assert await asyncio.wait_for(on_node0, 60) == NODE0_TOKENS  # node 0's stream was not touched
                assert engine.is_running and [r.is_running for r in engine.replicas] == [True, False]
                again = await asyncio.wait_for(collect(engine, PROMPT, GREEDY, "after"), 30)
                assert again == same[0]
            finally:
                engine.close()

        asyncio.run(main())
        assert node1.wait(timeout=30) == 1  # its only replica died
        _, err = node1.communicate(timeout=10)
        assert f"the replica at 127.0.0.1:{rpc_port} (pid {killed[0]}) was killed by SIGKILL" in err
    finally:
        if node1.poll() is None:
            node1.kill()
            node1.communicate(timeout=10)


@pytest.mark.timeout(120)
def test_a_node_that_stops_answering_is_cut_and_named(checkpoint):
    """SIGSTOP of node 1's whole process tree (a hung machine, a network partition: its connection stays open but
    nothing comes): after the heartbeat timeout node 0 cuts its replica, naming the node, and keeps serving."""
    from vdeploy.engine.data_parallel import DataParallelEngine

    port, rpc_port = free_port(), free_port()
    node1 = start_node1(checkpoint, port, rpc_port)
    frozen: list[int] = []
    try:
        async def main():
            engine = DataParallelEngine(node0_config(checkpoint, port))
            try:
                on_node0, on_node1 = await long_streams_on_both_replicas(engine)
                frozen.extend([node1.pid, *replica_pids_of(node1.pid)])
                for pid in frozen:
                    os.kill(pid, signal.SIGSTOP)
                with pytest.raises(EngineDeadError, match=rf"replica 1 on node 1 \(127.0.0.1:{rpc_port}\).*"
                                                          r"cut off: node 1 stopped responding"):
                    await asyncio.wait_for(on_node1, 30)
                assert await asyncio.wait_for(on_node0, 60) == NODE0_TOKENS
                assert await asyncio.wait_for(collect(engine, PROMPT, GREEDY, "after"), 30)
                assert engine.is_running and not engine.replicas[1].is_running
            finally:
                engine.close()

        asyncio.run(main())
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if node1.poll() is None:
            node1.kill()
        node1.communicate(timeout=10)


@pytest.mark.timeout(120)
def test_vdeploy_serve_and_worker_host_answer_over_http_and_exit_cleanly(checkpoint, tmp_path):
    """The launch as documented: `vdeploy serve --dp 2 --nnodes 2` on node 0, `vdeploy worker-host` on node 1;
    the startup summary names both replicas, the API answers, and SIGTERM ends both nodes with exit code 0."""
    import httpx

    port, rpc_port = free_port(), free_port()
    env = {**os.environ, "VDEPLOY_HOME": str(tmp_path / "home"), "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1",
           "VDEPLOY_DP_SECRET": SECRET}
    node1 = start_node1(checkpoint, port, rpc_port)
    node0 = subprocess.Popen(
        [sys.executable, "-m", "vdeploy", "serve", str(checkpoint), "--port", "0", "--served-model-name", "tiny",
         "--device", "cpu", "--dp", "2", "--nnodes", "2", "--node-rank", "0", "--master-addr", "127.0.0.1",
         "--master-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        printed, url = "", None
        for line in node0.stdout:
            printed += line
            if "serving tiny at " in line:
                url = line.split(" at ", 1)[1].split("/v1", 1)[0].strip()
                break
        assert url, printed
        assert "replica 0 on node 0 (engine process" in printed
        assert f"replica 1 on node 1 (127.0.0.1:{rpc_port})" in " ".join(printed.split())
        body = {"model": "tiny", "prompt": [3, 4, 5, 6], "max_tokens": 6, "temperature": 0, "ignore_eos": True}
        answers = [httpx.post(f"{url}/v1/completions", json=body, timeout=60) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json()["choices"][0]["text"] == answers[1].json()["choices"][0]["text"]
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        node0.send_signal(signal.SIGTERM)
        assert node0.wait(timeout=60) == 0
        assert node1.wait(timeout=30) == 0
        assert "the job shut down" in node1.communicate(timeout=10)[1]
    finally:
        for proc in (node0, node1):
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)

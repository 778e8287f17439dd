"""How the nodes of one multi-node job watch each other, through the rendezvous TCPStore hosted on node 0.

Keys (all under "vdeploy/"; one job per master address and port):
  config                the engine's (EngineConfig, ModelConfig), published by node 0 before any rank starts, so
                        every node runs exactly the engine's settings (JSON; never the data-parallel secret)
  node/<n>/heartbeat    a counter node n's host bumps every HEARTBEAT_S
  node/<n>/hosts        how many worker hosts joined as node n (more than one: a --node-rank given twice)
  node/<n>/failure      the first failure of one of node n's ranks (a NodeFailure as JSON)
  node/<n>/stuck        node n's ranks that are stopped or in uninterruptible sleep (StuckRank list as JSON), so
                        node 0's watchdogs name a rank of another node as they name their own
  abort                 set by node 0 when the job stops (failure or shutdown): every host stops its ranks

A node whose heartbeat stops advancing for NODE_TIMEOUT_S is declared dead; so is one whose ranks closed their
connections without a failure record, after a short grace (FAILURE_GRACE_S) to let the record arrive.

Anyone who reaches the store's port can write these keys, so every value is schema'd JSON decoded into the expected
dataclass (msgspec), never unpickled: a forged value fails to decode instead of running code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from vdeploy.executor.control import UserErrorInfo

# how gloo and NCCL word an error that only says a peer went away (the consequence, not the cause, of a failure)
_PEER_LOSS_MARKERS = ("connection closed by peer", "connection reset by peer", "broken pipe", "socket closed",
                      "remote process exited", "connection refused")

HEARTBEAT_S = 0.5
NODE_TIMEOUT_S = 5.0
FAILURE_GRACE_S = 2.0
_PREFIX = "vdeploy/"


@dataclass
class NodeFailure:
    node_rank: int
    message: str
    remote_traceback: str | None = None
    user_error: UserErrorInfo | None = None


@dataclass
class StuckRank:
    """A rank whose process makes no progress (vdeploy.env.procfs.STUCK_STATES) and for how long, as its host saw."""

    rank: int
    pid: int
    state: str
    stuck_s: float


class NodeLost(Exception):
    """A peer node failed, went silent, or the job was aborted."""

    def __init__(self, message: str, node: int, failure: NodeFailure | None = None):
        super().__init__(message)
        self.message, self.node, self.failure = message, node, failure


class JobEnded(Exception):
    """Raised on a worker host when node 0 ended the job (reason "shutdown": cleanly) or cannot be reached."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NodeLink:
    def __init__(self, store, node_rank: int, nnodes: int):
        self.store, self.node_rank, self.nnodes = store, node_rank, nnodes
        now = time.monotonic()
        self._beats: dict[int, tuple[int, float]] = {n: (0, now) for n in range(nnodes) if n != node_rank}
        self._last_beat_sent = 0.0
        self._published_stuck = False  # whether node/<self>/stuck last said some rank was stuck

    # ---- node 0 (the engine) --------------------------------------------------------------------------------

    def publish_config(self, engine_config, model_config) -> None:
        import msgspec

        # the secret authenticates data-parallel peers: it must never sit in the store, which anyone may read
        published = replace(engine_config, parallel=replace(engine_config.parallel, dp_secret=None))
        self.store.set(_PREFIX + "config", msgspec.json.encode((published, model_config)))

    def abort(self, reason: str) -> None:
        """Tell every host to stop its ranks. Best effort: the store may be going away too."""
        try:
            self.store.set(_PREFIX + "abort", reason.encode())
        except Exception:  # noqa: BLE001 - nothing more to do when the store itself is gone
            pass

    def check_peers(self) -> None:
        """Raise NodeLost when another node reported a failure or stopped beating (after it beat once)."""
        failure = self.first_failure()
        if failure is not None:
            raise NodeLost(f"node {failure.node_rank}: {failure.message}", failure.node_rank, failure)
        now = time.monotonic()
        for node, (count, seen) in self._beats.items():
            current = int(self.store.add(_heartbeat_key(node), 0))
            if current != count:
                self._beats[node] = (current, now)
            elif count > 0 and now - seen > NODE_TIMEOUT_S:
                raise NodeLost(f"node {node} stopped responding (no heartbeat for {now - seen:.0f} s): its "
                               "worker-host died or the network between the nodes failed", node)

    def forget(self, node: int) -> None:
        """Stop watching `node` (its loss was handled; the others are still watched)."""
        self._beats.pop(node, None)

    def explain_failure(self, grace_s: float = FAILURE_GRACE_S) -> NodeLost | None:
        """After a local rank lost contact with its peers: wait up to `grace_s` for the node that caused it to
        show itself (a failure record that is not itself a lost connection, or a heartbeat that stopped)."""
        try:
            start = {node: int(self.store.add(_heartbeat_key(node), 0)) for node in self._beats}
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline:
                failure = self.first_failure()
                if failure is not None and not is_peer_loss(failure.message):
                    return NodeLost(f"node {failure.node_rank}: {failure.message}", failure.node_rank, failure)
                time.sleep(0.1)
            silent = [n for n, count in start.items() if int(self.store.add(_heartbeat_key(n), 0)) == count]
        except Exception:  # noqa: BLE001 - no explanation beats a second error while reporting the first
            return None
        if silent:
            return NodeLost(f"node {silent[0]} stopped responding (no heartbeat for {grace_s:.0f} s): its "
                            "worker-host died or the network between the nodes failed", silent[0])
        return None

    def stuck_ranks(self) -> list[tuple[int, StuckRank]]:
        """(node, rank) for every rank another node's host last reported stuck. Best effort: an unreadable store
        only loses the names, the watchdog that asks still fires."""
        found = []
        for node in self._beats:
            key = _PREFIX + f"node/{node}/stuck"
            try:
                if self.store.check([key]):
                    stuck = decode_record(self.store.get(key), list[StuckRank], f"the stuck ranks of node {node}")
                    found += [(node, rank) for rank in stuck]
            except Exception:  # noqa: BLE001 - a forged record or a store going away: no names, same verdict
                continue
        return found

    def first_failure(self) -> NodeFailure | None:
        for node in self._beats:
            key = _PREFIX + f"node/{node}/failure"
            if self.store.check([key]):
                return decode_record(self.store.get(key), NodeFailure, f"the failure record of node {node}")
        return None

    # ---- other nodes (worker hosts) -----------------------------------------------------------------------------

    def claim_node(self) -> bool:
        """Count this host in as node `node_rank`; False when another host already joined as that node (its ranks
        would take the same global ranks, and the node the operator meant to start never comes)."""
        return int(self.store.add(_PREFIX + f"node/{self.node_rank}/hosts", 1)) == 1

    def wait_config(self):
        """(EngineConfig, ModelConfig) published by node 0; blocks up to the store's timeout."""
        from vdeploy.config import EngineConfig, ModelConfig

        return decode_record(self.store.get(_PREFIX + "config"), tuple[EngineConfig, ModelConfig],
                             "the engine configuration")

    def heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat_sent >= HEARTBEAT_S:
            self.store.add(_heartbeat_key(self.node_rank), 1)
            self._last_beat_sent = now

    def publish_stuck(self, stuck: list[StuckRank]) -> None:
        """Tell node 0 which of this node's ranks are stuck now (written while any is, and once when none is
        any more)."""
        if not stuck and not self._published_stuck:
            return
        import msgspec

        self.store.set(_PREFIX + f"node/{self.node_rank}/stuck", msgspec.json.encode(stuck))
        self._published_stuck = bool(stuck)

    def aborted(self) -> str | None:
        key = _PREFIX + "abort"
        return self.store.get(key).decode() if self.store.check([key]) else None

    def report_failure(self, failure: NodeFailure) -> None:
        try:
            import msgspec

            self.store.set(_PREFIX + f"node/{self.node_rank}/failure", msgspec.json.encode(failure))
        except Exception:  # noqa: BLE001 - the engine (and its store) may already be gone
            pass


def is_peer_loss(message: str) -> bool:
    """Whether an error only says that a peer rank went away."""
    lowered = message.lower()
    return any(marker in lowered for marker in _PEER_LOSS_MARKERS)


def decode_record(data: bytes, kind: Any, what: str) -> Any:
    """`data`, read from the rendezvous store, as a `kind` (JSON checked against the dataclasses' fields);
    ExecutorError naming `what` (e.g. "the engine configuration") for anything else."""
    import msgspec

    from vdeploy.executor.base import ExecutorError

    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ExecutorError(f"refused {what} in the rendezvous store: {e}",
                            hint="something other than vdeploy wrote it: check who can reach --master-port") from None


def _heartbeat_key(node: int) -> str:
    return _PREFIX + f"node/{node}/heartbeat"

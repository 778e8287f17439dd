"""Each rank's copy of the running requests' block tables, kept up to date from the scheduler's diffs.

The scheduler sends a request's whole table once (`ScheduledRequest.new_table`: admission, or re-admission after a
preemption) and afterwards only the blocks appended since it last scheduled the request, so a decode step's control
message does not grow with the context (at 512 running requests of 2k tokens that is ~64k block ids a step fewer
to pickle, send to every rank and unpack). Every rank sees every step in order, so every copy agrees.
"""

from __future__ import annotations

from vdeploy.engine.outputs import SchedulerOutput


class BlockTables:
    def __init__(self) -> None:
        self._tables: dict[str, list[int]] = {}

    def apply(self, sched: SchedulerOutput) -> dict[str, list[int]]:
        """Fold one step's diffs in; returns the tables by request id (the step's requests among them)."""
        tables = self._tables
        for rid in sched.finished_req_ids:
            tables.pop(rid, None)
        for r in sched.requests:
            if r.new_table:
                tables[r.req_id] = list(r.block_ids)
            elif r.block_ids:
                try:
                    tables[r.req_id].extend(r.block_ids)
                except KeyError:
                    raise RuntimeError(f"request {r.req_id}: blocks appended to a table this rank never got") from None
            elif r.req_id not in tables:
                raise RuntimeError(f"request {r.req_id}: scheduled without a block table")
        return tables

    def clear(self) -> None:
        self._tables.clear()

    def __len__(self) -> int:
        return len(self._tables)

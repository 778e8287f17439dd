"""`vdeploy worker-host`: the ranks of one node other than node 0 in a multi-node job (no HTTP server).

Only typer/stdlib at module level; torch and the executor load inside the command."""

from __future__ import annotations

from typing import Annotated

import typer

from vdeploy.cli.engine_options import engine_option


def worker_host(
    path: Annotated[str, typer.Argument(help="This node's copy of the model directory (same checkpoint as node 0).")],
    nnodes: Annotated[int | None, typer.Option(
        "--nnodes", min=2, help="Number of nodes in the job (default: torchrun's WORLD_SIZE / LOCAL_WORLD_SIZE).")
    ] = None,
    node_rank: Annotated[int | None, typer.Option(
        "--node-rank", min=1, help="This node's rank, 1..nnodes-1 (default: torchrun's GROUP_RANK).")] = None,
    master_addr: Annotated[str | None, typer.Option(
        "--master-addr", help="Node 0's address (default: MASTER_ADDR).")] = None,
    master_port: Annotated[int | None, typer.Option(
        "--master-port", min=1, max=65535, help="Node 0's rendezvous port (default: MASTER_PORT).")] = None,
    tp: Annotated[int, typer.Option("--tp", "--tensor-parallel-size", min=1,
                                    help="Tensor-parallel size; must match node 0.")] = 1,
    pp: Annotated[int, typer.Option("--pp", "--pipeline-parallel-size", min=1,
                                    help="Pipeline stages; must match node 0.")] = 1,
    dp_local: Annotated[int | None, engine_option("data_parallel_size_local", envvar=True)] = None,
    dp_listen_address: Annotated[str | None, engine_option("dp_listen_address", envvar=True)] = None,
    dp_rpc_port: Annotated[int | None, engine_option("data_parallel_rpc_port", envvar=True)] = None,
    dp_secret: Annotated[str | None, engine_option("dp_secret", envvar=True)] = None,
    device: Annotated[str | None, typer.Option(
        "--device", help="auto | cuda | cpu (default: node 0's choice).")] = None,
) -> None:
    """Run this node's share of the ranks of a multi-node job until node 0 ends it.

    Every other setting (dtype, batch limits, KV cache) comes from node 0's engine through the rendezvous store,
    so the nodes cannot disagree. When node 0 serves with --data-parallel-size, this node hosts whole replicas
    instead (its share, or --data-parallel-size-local), listening for node 0 on --dp-listen-address; node 0 and
    the replicas prove to each other that they know the shared secret (VDEPLOY_DP_SECRET) before any request.
    Exits 0 when the job shuts down, 1 when a rank, a replica or another node fails."""
    import logging

    from vdeploy.cli.output import console
    from vdeploy.config import ParallelConfig
    from vdeploy.executor.worker_host import run_worker_host

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    err = console(stderr=True)
    parallel = ParallelConfig(tensor_parallel_size=tp, pipeline_parallel_size=pp, nnodes=nnodes or 1,
                              node_rank=node_rank or 0, master_addr=master_addr, master_port=master_port,
                              data_parallel_size_local=dp_local, dp_listen_address=dp_listen_address,
                              data_parallel_rpc_port=dp_rpc_port, dp_secret=dp_secret)
    run_worker_host(path, parallel, device=device, status=lambda line: err.print(f"[dim]{line}[/]"))

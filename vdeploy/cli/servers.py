"""`vdeploy ps` and `vdeploy stop`: the vdeploy servers running on this host (from the records each `serve` keeps
under the runtime directory, see vdeploy.local_servers), with live numbers asked of each server on its own port.
Only typer/stdlib at module level."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Annotated, Any, Optional

import typer

PROBE_TIMEOUT_S = 1.0  # a busy server still answers /metrics in milliseconds; a stuck one must not stall ps


def _get(url: str) -> tuple[bool, Optional[bytes]]:
    """(the server answered at all, the body of a 200). A 401 (serve --api-key) still proves it is up."""
    import urllib.error  # here, not at module level: http.client and email cost `vdeploy --help` 40 ms
    import urllib.request

    request = urllib.request.Request(url)
    if os.environ.get("VDEPLOY_API_KEY"):
        request.add_header("Authorization", f"Bearer {os.environ['VDEPLOY_API_KEY']}")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:  # noqa: S310 (a URL we built)
            return True, response.read()
    except urllib.error.HTTPError:
        return True, None
    except (OSError, ValueError):
        return False, None


def _kv_usage(metrics: Optional[bytes]) -> Optional[float]:
    """kv_cache_usage_perc from the Prometheus text (the name carries the server's prefix)."""
    for line in (metrics or b"").decode(errors="replace").splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if not line.startswith("#") and name.endswith("kv_cache_usage_perc"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def server_status(record: Any) -> dict[str, Any]:
    """The record plus what the server says now: its served names (/v1/models) and KV-cache use (/metrics)."""
    responding, models = _get(f"{record.url}/v1/models")
    try:
        names = [m["id"] for m in json.loads(models)["data"]] if models else None
    except (ValueError, KeyError, TypeError):
        names = None
    return {
        "pid": record.pid, "model": record.served_model_name, "source": record.model, "url": f"{record.url}/v1",
        "port": record.port, "tp": record.tp, "pp": record.pp, "uptime_s": round(time.time() - record.started, 1),
        "responding": responding, "served_names": names, "kv_usage": _kv_usage(_get(f"{record.url}/metrics")[1]),
    }


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def ps(json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List the vdeploy servers running on this host: model, port, TP, KV-cache use, uptime, pid."""
    from vdeploy.local_servers import list_servers

    rows = [server_status(r) for r in list_servers()]
    if json_output:
        from vdeploy.cli.output import print_json

        print_json({"schema_version": 1, "servers": rows})
        return
    from rich.table import Table

    from vdeploy.cli.output import console

    out = console()
    if not rows:
        out.print("no vdeploy server running on this host (start one: `vdeploy serve MODEL`)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("MODEL", "URL", "TP", "KV USE", "UPTIME", "PID"):
        table.add_column(column)
    for row in rows:
        kv = "not responding" if not row["responding"] else (
            f"{row['kv_usage']:.0%}" if row["kv_usage"] is not None else "?")
        layout = f"{row['tp']}" + (f" x PP {row['pp']}" if row["pp"] > 1 else "")
        table.add_row(row["model"], row["url"], layout, kv, _uptime(row["uptime_s"]), str(row["pid"]))
    out.print(table)


def stop(
    name: Annotated[str, typer.Argument(help="Served model name, model, port or pid, as `vdeploy ps` lists them.")],
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.0, help="Seconds to wait for the server to drain and exit.")] = 60.0,
) -> None:
    """Stop a running vdeploy server (SIGTERM: it drains in-flight requests, then exits)."""
    from vdeploy.cli.output import console
    from vdeploy.errors import ConfigError
    from vdeploy.local_servers import is_running, list_servers

    servers = list_servers()
    matches = [r for r in servers if name in r.names()]
    if not matches:
        listed = ", ".join(f"{r.served_model_name} (port {r.port}, pid {r.pid})" for r in servers) or "none"
        raise ConfigError(f"no running vdeploy server called {name!r}", hint=f"running: {listed}")
    if len(matches) > 1:
        ports = ", ".join(str(r.port) for r in matches)
        raise ConfigError(f"{len(matches)} servers serve {name!r}", hint=f"name one by its port: {ports}")
    record = matches[0]
    out = console(stderr=True)
    os.kill(record.pid, signal.SIGTERM)
    out.print(f"stopping {record.served_model_name} (pid {record.pid}, port {record.port}) ...")
    deadline = time.monotonic() + timeout
    while is_running(record) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_running(record):
        out.print(f"[yellow]still running after {timeout:g} s[/] (draining?); `kill -9 {record.pid}` forces it")
        raise typer.Exit(1)
    out.print(f"[green]stopped[/] {record.served_model_name}")

"""The rendezvous store has no authentication (anyone who reaches it can join a rank's process group or write the
multi-node job's keys), so it listens only where the ranks connect: 127.0.0.1 on one node, --master-addr across
nodes, and every interface only when --master-addr is not one of this node's addresses (a service or NAT address
the other nodes reach it by), with a warning. Listening sockets are read from /proc/net/tcp{,6} (Linux)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from vdeploy.distributed.rendezvous import host_store, listen_socket

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def listening_addresses(port: int) -> set[str]:
    """Every local address a socket listens on at `port`, as text ("127.0.0.1", "::", "0.0.0.0")."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != LISTEN or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp (Linux)")
def test_a_single_node_store_listens_on_loopback_only():
    store = host_store("127.0.0.1", None, 2)
    assert listening_addresses(store.port) == {"127.0.0.1"}
    client = socket.create_connection(("127.0.0.1", store.port), timeout=5)  # the ranks still reach it
    client.close()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp (Linux)")
def test_a_multi_node_store_listens_on_the_master_address_only():
    with socket.socket() as probe:  # a port free right now, as an operator would choose --master-port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = host_store("127.0.0.1", port, 2)
    assert store.port == port
    assert listening_addresses(port) == {"127.0.0.1"}


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp (Linux)")
def test_a_master_address_that_is_not_this_nodes_listens_everywhere_and_says_so(caplog):
    # 203.0.113.77 (TEST-NET-3) is no interface's here, as a Kubernetes service address or a NAT'd one is not the
    # node's own: the other nodes still reach the store through it, so it listens on every interface, warned about
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level("WARNING", logger="vdeploy.distributed.rendezvous"):
        fd = listen_socket("203.0.113.77", port)  # the store's socket (the store itself would then connect there)
    try:
        assert listening_addresses(port) == {"0.0.0.0"}
        assert "203.0.113.77 is not an address of this machine" in caplog.text and str(port) in caplog.text
    finally:
        os.close(fd)


@pytest.mark.timeout(30)
def test_a_taken_port_is_refused_naming_the_address():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{port}: address already in use"):
            host_store("127.0.0.1", port, 2)

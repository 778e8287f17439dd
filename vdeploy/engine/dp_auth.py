"""Mutual authentication of node 0 and a data-parallel replica on another node, before any engine message.

The replica's channel crosses the network, so whoever connects must prove it knows the shared secret (--dp-secret
/ VDEPLOY_DP_SECRET, the same on every node), and so must the replica: a forged replica address written into the
rendezvous store (which anyone reaching --master-port can write) gets no requests.

  replica -> node 0   MAGIC + 32 random bytes (the replica's nonce)
  node 0 -> replica   32 random bytes (node 0's nonce) + HMAC-SHA256(secret, "node0" + both nonces)
  replica -> node 0   HMAC-SHA256(secret, "replica" + both nonces)

Fixed-size binary fields only (nothing is parsed), fresh nonces per connection (a recorded answer is worth nothing),
and a label per direction (a peer cannot reflect one side's proof back as the other's). The secret itself never
crosses the wire. The channel is not encrypted afterwards: run it on a network you trust.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket

from vdeploy.errors import ConfigError

MAGIC = b"vdeploy-dp-1\n"
_NONCE_BYTES = 32
_MAC_BYTES = hashlib.sha256().digest_size
MIN_SECRET_CHARS = 16
HANDSHAKE_TIMEOUT_S = 10.0


class AuthenticationError(Exception):
    """The peer did not prove it knows the shared secret (or did not speak this protocol)."""


def secret_key(secret: str | None, *, where: str) -> bytes:
    """The shared secret as HMAC key bytes; ConfigError when it is missing or too short to resist guessing."""
    if not secret:
        raise ConfigError(f"data parallelism across nodes needs a shared secret ({where})",
                          hint="set the same VDEPLOY_DP_SECRET on every node (e.g. `openssl rand -hex 32`), or "
                               "pass --dp-secret")
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"the data-parallel secret has {len(secret)} characters, fewer than {MIN_SECRET_CHARS}",
                          hint="use a long random one, e.g. `openssl rand -hex 32`")
    return secret.encode()


def _mac(key: bytes, label: bytes, replica_nonce: bytes, node0_nonce: bytes) -> bytes:
    return hmac.new(key, label + replica_nonce + node0_nonce, hashlib.sha256).digest()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AuthenticationError("the peer closed the connection during the handshake")
        data += chunk
    return data


def prove_node0(sock: socket.socket, key: bytes) -> None:
    """Node 0's side, right after connecting: answer the replica's challenge and check its proof."""
    sock.settimeout(HANDSHAKE_TIMEOUT_S)
    try:
        greeting = _read_exactly(sock, len(MAGIC) + _NONCE_BYTES)
        if not greeting.startswith(MAGIC):
            raise AuthenticationError("the peer is not a vdeploy data-parallel replica")
        replica_nonce, node0_nonce = greeting[len(MAGIC):], os.urandom(_NONCE_BYTES)
        sock.sendall(node0_nonce + _mac(key, b"node0", replica_nonce, node0_nonce))
        try:
            proof = _read_exactly(sock, _MAC_BYTES)
        except AuthenticationError:
            raise AuthenticationError("the replica rejected our proof: its secret is not ours") from None
        if not hmac.compare_digest(proof, _mac(key, b"replica", replica_nonce, node0_nonce)):
            raise AuthenticationError("the replica does not know the shared secret")
    except (OSError, socket.timeout) as e:
        raise AuthenticationError(f"handshake failed: {e}") from None
    sock.settimeout(None)


def challenge_node0(sock: socket.socket, key: bytes) -> None:
    """The replica's side, right after accepting: challenge the peer; prove ourselves only once it proved itself."""
    sock.settimeout(HANDSHAKE_TIMEOUT_S)
    try:
        replica_nonce = os.urandom(_NONCE_BYTES)
        sock.sendall(MAGIC + replica_nonce)
        answer = _read_exactly(sock, _NONCE_BYTES + _MAC_BYTES)
        node0_nonce, proof = answer[:_NONCE_BYTES], answer[_NONCE_BYTES:]
        if not hmac.compare_digest(proof, _mac(key, b"node0", replica_nonce, node0_nonce)):
            raise AuthenticationError("the peer does not know the shared secret")
        sock.sendall(_mac(key, b"replica", replica_nonce, node0_nonce))
    except (OSError, socket.timeout) as e:
        raise AuthenticationError(f"handshake failed: {e}") from None
    sock.settimeout(None)

"""The engine host's view of the adapters: name -> slot, which requests use which slot.

Slots are the ranks' stacked weights (vdeploy.lora.layers), max_loras of them. An unloaded adapter's name is gone at
once (new requests for it are refused), but its slot is reused only once the requests still running on it finish.
Each load gets a fresh cache salt: the first block hash of its requests' prefix-cache chains, so KV blocks are
shared only between requests of the same loaded adapter (never with the base model or another adapter, nor with an
earlier adapter that had the same name).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from vdeploy.config import LoRAConfig, ModelConfig
from vdeploy.lora.adapter import LoRAAdapter, LoRAAdapterError, check_model_supports_lora, read_adapter


class LoRANotFoundError(LoRAAdapterError):
    """A request or an unload names an adapter that is not loaded (the server answers 404)."""


@dataclass
class _Loaded:
    adapter: LoRAAdapter
    slot: int
    salt: bytes


@dataclass
class LoRARegistry:
    config: LoRAConfig
    model: ModelConfig
    _by_name: dict[str, _Loaded] = field(default_factory=dict)
    _users: dict[int, int] = field(default_factory=dict)  # slot -> running requests (unloaded ones included)
    _loads: int = 0

    def __post_init__(self) -> None:
        if self.config.max_loras < 1 or self.config.max_lora_rank < 1:
            raise LoRAAdapterError("--max-loras and --max-lora-rank must be at least 1")
        check_model_supports_lora(self.model)

    def names(self) -> list[str]:
        return list(self._by_name)

    def adapter(self, name: str) -> LoRAAdapter:
        return self._lookup(name).adapter

    def check(self, name: str, path: str) -> LoRAAdapter:
        """Read and check an adapter and that a slot is free for it; nothing changes."""
        if name in self._by_name:
            raise LoRAAdapterError(f"a LoRA adapter named {name!r} is already loaded",
                                   hint="unload it first, or choose another name")
        if self._free_slot() is None:
            holders = ", ".join(self._by_name) or "unloaded adapters still finishing requests"
            raise LoRAAdapterError(f"all {self.config.max_loras} LoRA slots are in use ({holders})",
                                   hint="unload an adapter, or restart with a larger --max-loras")
        return read_adapter(name, path, self.model, self.config.max_lora_rank)

    def add(self, adapter: LoRAAdapter) -> int:
        """Register a checked adapter (after `check`); returns its slot."""
        slot = self._free_slot()
        self._loads += 1
        salt = hashlib.blake2b(f"lora\0{self._loads}\0{adapter.name}".encode(), digest_size=16).digest()
        self._by_name[adapter.name] = _Loaded(adapter, slot, salt)
        return slot

    def remove(self, name: str) -> None:
        self._lookup(name)
        del self._by_name[name]

    def acquire(self, name: str) -> tuple[int, bytes]:
        """(slot, cache salt) for a new request of adapter `name`; release(slot) when it finishes."""
        loaded = self._lookup(name)
        self._users[loaded.slot] = self._users.get(loaded.slot, 0) + 1
        return loaded.slot, loaded.salt

    def release(self, slot: int) -> None:
        left = self._users.get(slot, 0) - 1
        if left > 0:
            self._users[slot] = left
        else:
            self._users.pop(slot, None)

    def _lookup(self, name: str) -> _Loaded:
        loaded = self._by_name.get(name)
        if loaded is None:
            raise LoRANotFoundError(f"no LoRA adapter named {name!r} is loaded",
                                    hint=f"loaded: {', '.join(self._by_name) or 'none'}")
        return loaded

    def _free_slot(self) -> int | None:
        taken = {loaded.slot for loaded in self._by_name.values()} | set(self._users)
        return next((s for s in range(self.config.max_loras) if s not in taken), None)

"""An LRU cache of style targets (Gram matrices), bounded by the memory they hold."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable

import torch
from PIL import Image


def fingerprint(item: Image.Image | torch.Tensor) -> str:
    """A content hash of an image or tensor, for cache keys."""
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(item, Image.Image):
        digest.update(f"{item.mode}{item.size}".encode())
        digest.update(item.tobytes())
    else:
        digest.update(str(tuple(item.shape)).encode())
        digest.update(item.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


class StyleTargetCache:
    """Maps a key to {layer: Gram matrix}; evicts least recently used entries past `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[dict[str, torch.Tensor], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        # A look that leaves the hit and miss counts and the LRU order alone.
        with self._lock:
            return key in self._entries

    def get(self, key: Hashable) -> dict[str, torch.Tensor] | None:
        """The cached targets for `key`, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, grams: dict[str, torch.Tensor]) -> None:
        """Store targets, evicting old entries; an entry larger than the bound is not kept."""
        size = sum(t.numel() * t.element_size() for t in grams.values())
        with self._lock:
            if key in self._entries:
                self._bytes -= self._entries.pop(key)[1]
            if size > self.max_bytes:
                return
            self._entries[key] = (grams, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

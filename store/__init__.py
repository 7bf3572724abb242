"""Storage for tidings: the interface in `base`, the LMDB backend in `lmdb_store`."""

from .base import TYPES, CannotCalculateChanges, Changes, NotFound, Reader, Store, StoreError, Writer
from .lmdb_store import LmdbStore


def open_store(path: str, map_size: int = 1 << 36) -> LmdbStore:
    """Opens (creating if needed) the store in a data directory."""
    return LmdbStore(path, map_size=map_size)


__all__ = ["TYPES", "CannotCalculateChanges", "Changes", "LmdbStore", "NotFound", "Reader", "Store",
           "StoreError", "Writer", "open_store"]

"""Storage for tidings: the contract in `base`, the id formats in `ids`, the LMDB backend in `lmdb_store`."""

from . import ids
from .base import (
    QUOTA_RESOURCES,
    CannotCalculateChanges,
    Changes,
    Collection,
    JournalEntry,
    NotFound,
    OverQuota,
    Reader,
    StorageFull,
    StorageUnavailable,
    Store,
    StoreError,
    Writer,
    disk_nearly_full,
    storage_error,
)
from .lmdb_store import LmdbStore, restore_copy


def open_store(path: str, map_size: int = 1 << 36) -> LmdbStore:
    """Opens (creating if needed) the store in a data directory."""
    return LmdbStore(path, map_size=map_size)


__all__ = ["CannotCalculateChanges", "Changes", "Collection", "JournalEntry", "LmdbStore", "NotFound", "OverQuota",
           "QUOTA_RESOURCES", "Reader",
           "StorageFull", "StorageUnavailable", "Store", "StoreError", "Writer", "disk_nearly_full", "ids",
           "open_store", "restore_copy", "storage_error"]

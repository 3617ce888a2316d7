"""Shard readers (tar, folder, Parquet) behind one streaming contract."""

from storage.readers.base import READERS, Record, ShardReader
from storage.readers.discover import SourceError, discover_shards

__all__ = ["Record", "ShardReader", "READERS", "SourceError", "discover_shards"]

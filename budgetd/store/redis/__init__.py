"""The shared store on Redis or Redis Cluster: store.py (the store and its
key layout), scripts.py (its Lua scripts' interface), pipe.py (the hot
path's pipelined connection), lua/ (the scripts)."""

from .scripts import COUNTER_RETENTION_MS
from .store import RedisStore

__all__ = ["COUNTER_RETENTION_MS", "RedisStore"]

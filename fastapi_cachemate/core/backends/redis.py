"""RedisBackend: the shared backend, over redis.asyncio (a Redis or a RedisCluster client).

The cache's calls cost one command each: ``fetch`` is one GET (the entry carries its own
created time and ttl, so no PTTL, no pipeline, no MULTI), ``store`` one SET with PX,
``delete`` one UNLINK (split per slot by RedisCluster). Keys carry a hash tag
(``<prefix>:{<hash>}``), so a key and its lock live in the same cluster slot.

Errors are not swallowed here: ``redis.exceptions.RedisError``, ``OSError`` and timeouts
propagate to the request path, which bounds every call with a timeout and a circuit
breaker and turns a failure into a miss.

Replies of ``fetch`` are never decoded, whatever the client's ``decode_responses``: the
stored entry is binary MessagePack.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.client import NEVER_DECODE
from redis.utils import HIREDIS_AVAILABLE

from fastapi_cachemate.core.types import Backend

__all__ = ["RedisBackend", "RedisClient", "parser_class_of"]

logger = logging.getLogger(__name__)

RedisClient = aioredis.Redis | RedisCluster


def parser_class_of(client: RedisClient) -> type[Any]:
    """The reply parser class that the client's connections use (without connecting)."""
    connection: Any
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes() or list(client.nodes_manager.startup_nodes.values())
        node = nodes[0]
        connection = node.connection_class(**node.connection_kwargs)
    else:
        pool = client.connection_pool
        connection = pool.connection_class(**pool.connection_kwargs)
    parser_class: type[Any] = type(connection._parser)
    return parser_class


class RedisBackend(Backend):
    """A Backend over a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` client."""

    def __init__(self, client: RedisClient) -> None:
        if not isinstance(client, (aioredis.Redis, RedisCluster)):
            raise TypeError(
                "RedisBackend(client=...) needs a redis.asyncio.Redis or "
                f"redis.asyncio.RedisCluster, got {type(client).__name__}"
            )
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._closed = False
        if not HIREDIS_AVAILABLE:
            logger.warning(
                "RedisBackend: hiredis is not installed; replies are parsed in pure Python "
                "(pip install 'redis[hiredis]')"
            )

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **kwargs: Any) -> RedisBackend:
        """A backend over a new client for url (``redis://host:port/db``, ``rediss://``...).

        cluster=True makes a ``RedisCluster`` (url names one startup node). Keyword arguments
        go to the client (socket_timeout, max_connections...). close() closes that client.
        """
        client: RedisClient
        if cluster:
            client = RedisCluster.from_url(url, **kwargs)
        else:
            client = aioredis.Redis.from_url(url, **kwargs)
        return cls(client)

    # --- the seed's interface -------------------------------------------------------------
    async def get(self, key: str) -> tuple[int, bytes | None]:
        """(PTTL in ms, value): GET and PTTL in one round trip, as the seed did."""
        # A cluster pipeline cannot be a transaction; GET and PTTL of one key go to one node.
        async with self._client.pipeline(transaction=not self._cluster) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            raw, ttl = await pipe.execute()
        return ttl, raw

    async def set(self, key: str, data: bytes | str, *, ttl: int, nx: bool = False) -> Any:
        """SET key data EX ttl [NX]: True, or None when nx and the key existed."""
        return await self._client.set(key, data, ex=ttl, nx=nx)

    async def close(self) -> None:
        """Close the client (and its pool); harmless when called again."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()

    @property
    def client(self) -> RedisClient:
        return self._client

    @property
    def is_cluster(self) -> bool:
        return self._cluster

    @property
    def parser_class(self) -> type[Any]:
        """The reply parser class of the client's connections (hiredis's when installed)."""
        return parser_class_of(self._client)

    # --- what the cache calls: one command each -------------------------------------------
    async def fetch(self, key: bytes) -> bytes | None:
        """One GET; the raw bytes or None."""
        value: bytes | None = await self._client.execute_command(
            "GET", key, keys=[key], **{NEVER_DECODE: True}
        )
        return value

    async def store(self, key: bytes, value: bytes, ttl_ms: int) -> None:
        """One SET key value PX ttl_ms."""
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        await self._client.set(key, value, px=ttl_ms)

    async def delete(self, *keys: bytes) -> int:
        """One UNLINK (one per slot on a cluster); the number of keys that existed."""
        if not keys:
            return 0
        removed: int = await self._client.unlink(*keys)
        return removed

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

With a near cache attached (``near``: ``CacheSetup.setup()`` attaches one, see
``near.py``), ``fetch`` registers each GET with it so that the reply may become a near copy,
the stores announce their write to it, and deletions and invalidations drop the copies of
the keys they name before they are sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError, ResponseError
from redis.utils import HIREDIS_AVAILABLE

from fastapi_cachemate.core import layout
from fastapi_cachemate.core.backends.near import NearCache
from fastapi_cachemate.core.scripts import (
    ADD_TAG_SCRIPT,
    ADD_TAG_SHA,
    BEGIN_SCRIPT,
    BEGIN_SHA,
    INVALIDATE_SCRIPT,
    INVALIDATE_SHA,
    SCRIPTS,
    STORE_IF_GENERATION_SCRIPT,
    STORE_SHA,
    TAKE_OVER_SHA,
    UNLOCK_SCRIPT,
    UNLOCK_SHA,
    junk_lock_removed,
    new_token,
)
from fastapi_cachemate.core.types import DEFAULT_GENERATION_TTL_MS, Backend, ComputeTicket

__all__ = [
    "ADD_TAG_SCRIPT",
    "BEGIN_SCRIPT",
    "INVALIDATE_SCRIPT",
    "STORE_IF_GENERATION_SCRIPT",
    "UNLOCK_SCRIPT",
    "RedisBackend",
    "RedisClient",
    "parser_class_of",
]

#: Bounds of every bulk operation: keys per SCAN / SSCAN call (a COUNT hint), keys per
#: invalidation script call (0.1 to 0.4 ms of server time), keys per pipeline round trip.
#: Redis serves its other clients between any two commands.
SCAN_COUNT = 500
KEYS_PER_SCRIPT = 32
PIPELINE_BATCH = 1000


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


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

    def __init__(
        self, client: RedisClient, *, generation_ttl_ms: int = DEFAULT_GENERATION_TTL_MS
    ) -> None:
        if not isinstance(client, (aioredis.Redis, RedisCluster)):
            raise TypeError(
                "RedisBackend(client=...) needs a redis.asyncio.Redis or "
                f"redis.asyncio.RedisCluster, got {type(client).__name__}"
            )
        if isinstance(generation_ttl_ms, bool) or not isinstance(generation_ttl_ms, int):
            raise TypeError(f"generation_ttl_ms must be an int, got {generation_ttl_ms!r}")
        if generation_ttl_ms < 2000:
            raise ValueError(f"generation_ttl_ms must be at least 2000, got {generation_ttl_ms}")
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._closed = False
        self.generation_ttl_ms = generation_ttl_ms
        #: the near cache in front of this backend (attached by CacheSetup.setup()), or None
        self.near: NearCache | None = None
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
        """One GET; the raw bytes or None.

        A value of another type at the key (a list: GET answers WRONGTYPE) is None like any
        other value that is not an entry: the server is fine, so it is not an error (the
        request path's circuit breaker would count it), and the next store replaces it.
        """
        near = self.near
        fetch = near.begin_fetch(key) if near is not None else None
        value: bytes | None = None
        try:
            value = await self._client.execute_command(
                "GET", key, keys=[key], **{NEVER_DECODE: True}
            )
        except ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            logger.warning("RedisBackend: %r holds another type: a miss, overwritten", key)
            return None
        finally:
            if fetch is not None:
                assert near is not None
                near.end_fetch(fetch, value)
        return value

    async def store(self, key: bytes, value: bytes, ttl_ms: int) -> None:
        """One SET key value PX ttl_ms."""
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        near = self.near
        if near is None:
            await self._client.set(key, value, px=ttl_ms)
            return
        near.writing(key)
        applied = False
        try:
            await self._client.set(key, value, px=ttl_ms)
            applied = True
        finally:
            near.written(key, applied)

    async def delete(self, *keys: bytes) -> int:
        """One UNLINK (one per slot on a cluster); the number of keys that existed."""
        if not keys:
            return 0
        if self.near is not None:
            self.near.discard(keys)
        removed: int = await self._client.unlink(*keys)
        return removed

    # --- invalidation (docs/keys-and-invalidation.md) --------------------------------------

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD of every script (on every primary of a cluster)."""
        for script in SCRIPTS:
            await self._client.script_load(script)

    async def _evalsha(self, sha: str, keys: Sequence[bytes], *args: Any) -> Any:
        try:
            return await self._client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._load_scripts()
            return await self._client.evalsha(sha, len(keys), *keys, *args)

    async def _pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """One pipeline round trip (one per node on a cluster), not a transaction; loads
        the scripts and runs it again once on NOSCRIPT (every command here is idempotent
        or harmless twice)."""
        for attempt in (1, 2):
            async with self._client.pipeline(transaction=False) as pipe:
                build(pipe)
                try:
                    replies: list[Any] = await pipe.execute()
                    return replies
                except NoScriptError:
                    if attempt == 2:
                        raise
            await self._load_scripts()
        raise AssertionError("unreachable")

    async def begin_compute(
        self, key: bytes, *, tags: Iterable[str] = (), tags_ttl_ms: int = 0
    ) -> ComputeTicket:
        """BEGIN_SCRIPT on K:gen and the tag registrations in one pipeline round trip (one
        per node involved, in parallel, on a cluster)."""
        prefix = layout.prefix_of(key) if tags else b""
        tag_keys = [layout.tag_key(prefix, tag) for tag in tags]
        if tag_keys and tags_ttl_ms <= 0:
            raise ValueError(f"tags_ttl_ms must be positive with tags, got {tags_ttl_ms}")
        started = time.monotonic()
        gen_key = layout.generation_key(key)

        ttl = self.generation_ttl_ms

        def build(pipe: Any) -> None:
            pipe.execute_command("EVALSHA", BEGIN_SHA, 1, gen_key, ttl)
            for tag_key in tag_keys:
                pipe.execute_command("EVALSHA", ADD_TAG_SHA, 1, tag_key, key, tags_ttl_ms)

        if tag_keys:
            replies = await self._pipeline(build)
            raw = replies[0]
        else:
            raw = await self._evalsha(BEGIN_SHA, (gen_key,), ttl)
        return ComputeTicket(key, 0 if raw is None else int(raw), started)

    async def store_if_generation(self, ticket: ComputeTicket, value: bytes, ttl_ms: int) -> bool:
        """One EVALSHA in K's slot: SET K value PX ttl_ms if K:gen still holds the ticket's
        generation. False (nothing sent) for a computation older than generation_ttl_ms / 2."""
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        if ticket.generation is None:
            await self.store(ticket.key, value, ttl_ms)
            return True
        if ticket.expired(self.generation_ttl_ms):
            logger.info("RedisBackend: computation of %r too old to be stored", ticket.key)
            return False
        key = ticket.key
        near = self.near
        if near is not None:
            near.writing(key)
        stored = False
        try:
            reply = await self._evalsha(
                STORE_SHA, (key, layout.generation_key(key)), value, ttl_ms, ticket.generation
            )
            stored = bool(reply == 1)
        finally:
            if near is not None:
                near.written(key, stored)
        return stored

    async def lock_and_fetch(
        self, lock_key: bytes, ttl_ms: int, key: bytes
    ) -> tuple[str | None, bytes | None]:
        """SET lock_key token NX PX ttl_ms (a RedisLockManager's try_lock), GET key and PTTL
        lock_key in one pipeline round trip, in that order (lock_key is ``K:lock``: K's
        slot). A value of another type at key is None, as for fetch.

        A lock key without an expiry is junk, never a lock of ours (scripts.TAKE_OVER_SCRIPT):
        one more EVALSHA replaces it with our lock, instead of every request waiting for a
        lock nobody holds."""
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        token = new_token()
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.execute_command("SET", lock_key, token, "NX", "PX", ttl_ms)
            pipe.execute_command("GET", key, keys=[key], **{NEVER_DECODE: True})
            pipe.execute_command("PTTL", lock_key)
            taken, value, lock_pttl = await pipe.execute(raise_on_error=False)
        if isinstance(taken, Exception):
            raise taken
        if isinstance(lock_pttl, Exception):
            raise lock_pttl
        if isinstance(value, Exception):
            if not str(value).startswith("WRONGTYPE"):
                raise value
            logger.warning("RedisBackend: %r holds another type: a miss, overwritten", key)
            value = None
        if not taken and lock_pttl == -1:
            taken = await self._take_over_lock(lock_key, token, ttl_ms)
        return (token if taken else None), value

    async def _take_over_lock(self, lock_key: bytes, token: str, ttl_ms: int) -> bool:
        """TAKE_OVER_SCRIPT: whether the lock is now token's (junk removed, or gone)."""
        outcome = await self._evalsha(TAKE_OVER_SHA, (lock_key,), token, ttl_ms)
        if outcome == 2:
            junk_lock_removed(lock_key)
        return bool(outcome)

    async def store_if_generation_and_unlock(
        self, ticket: ComputeTicket, value: bytes, ttl_ms: int, lock_key: bytes, token: str
    ) -> bool:
        """store_if_generation, then the compare-and-delete of a RedisLockManager's lock,
        in one pipeline round trip (the lock is ``K:lock``: the same slot as K)."""
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        key = ticket.key
        too_old = ticket.generation is not None and ticket.expired(self.generation_ttl_ms)

        def build(pipe: Any) -> None:
            if ticket.generation is None:
                pipe.execute_command("SET", key, value, "PX", ttl_ms)
            elif not too_old:
                gen_key = layout.generation_key(key)
                args = (value, ttl_ms, ticket.generation)
                pipe.execute_command("EVALSHA", STORE_SHA, 2, key, gen_key, *args)
            pipe.execute_command("EVALSHA", UNLOCK_SHA, 1, lock_key, token)

        if too_old:
            logger.info("RedisBackend: computation of %r too old to be stored", key)
        near = self.near if not too_old else None
        if near is not None:
            near.writing(key)
        stored = False
        try:
            replies = await self._pipeline(build)
            stored = not too_old and (ticket.generation is None or bool(replies[0] == 1))
        finally:
            if near is not None:
                near.written(key, stored)
        return stored

    async def add_tags(self, key: bytes, tags: Iterable[str], ttl_ms: int) -> None:
        """One EVALSHA per tag (SADD + expiry pushed to at least ttl_ms), one pipeline."""
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        prefix = layout.prefix_of(key)
        tag_keys = [layout.tag_key(prefix, tag) for tag in tags]
        if not tag_keys:
            return

        def build(pipe: Any) -> None:
            for tag_key in tag_keys:
                pipe.execute_command("EVALSHA", ADD_TAG_SHA, 1, tag_key, key, ttl_ms)

        await self._pipeline(build)

    def _script_groups(self, keys: Sequence[bytes]) -> list[list[bytes]]:
        """keys cut into the key lists of invalidation script calls: at most
        KEYS_PER_SCRIPT each, and one slot each on a cluster."""
        if isinstance(self._client, RedisCluster):
            by_slot: dict[int, list[bytes]] = {}
            for key in keys:
                by_slot.setdefault(self._client.keyslot(key), []).append(key)
            lists: Iterable[list[bytes]] = by_slot.values()
        else:
            lists = [list(keys)]
        return [
            group[start : start + KEYS_PER_SCRIPT]
            for group in lists
            for start in range(0, len(group), KEYS_PER_SCRIPT)
        ]

    async def _invalidate_batch(self, keys: Sequence[bytes]) -> int:
        """INVALIDATE_SCRIPT over keys; PIPELINE_BATCH keys per round trip."""
        removed = 0
        ttl = self.generation_ttl_ms
        if self.near is not None:
            self.near.discard(keys)
        for start in range(0, len(keys), PIPELINE_BATCH):
            groups = self._script_groups(keys[start : start + PIPELINE_BATCH])

            def build(pipe: Any, groups: list[list[bytes]] = groups) -> None:
                for group in groups:
                    pairs = [k for key in group for k in (key, layout.generation_key(key))]
                    pipe.execute_command("EVALSHA", INVALIDATE_SHA, len(pairs), *pairs, ttl)

            removed += sum(int(reply) for reply in await self._pipeline(build))
        return removed

    async def invalidate_keys(self, *keys: bytes) -> int:
        """Bump each key's generation (expiring generation_ttl_ms later) and UNLINK it, one
        script in the key's slot each, pipelined; the number of entries removed."""
        if not keys:
            return 0
        return await self._invalidate_batch(list(dict.fromkeys(keys)))

    async def invalidate_tags(self, prefix: str, *tags: str) -> int:
        """Per tag: SSCAN the set in batches, invalidate the members of each batch, SREM
        them. Members registered meanwhile (by computations that began after this call)
        stay. The number of entries removed."""
        removed = 0
        for tag in dict.fromkeys(tags):
            removed += await self._invalidate_tag(layout.tag_key(prefix, tag))
        return removed

    async def _invalidate_tag(self, tag_key: bytes) -> int:
        removed = 0
        cursor = 0
        while True:
            cursor, members = await self._client.sscan(tag_key, cursor, count=SCAN_COUNT)
            batch = [_as_bytes(member) for member in members]
            if batch:
                removed += await self._invalidate_batch(batch)
                await self._client.srem(tag_key, *batch)
            if int(cursor) == 0:
                return removed

    async def invalidate_namespace(self, prefix: str) -> int:
        """SCAN ``P:{*`` in COUNT-bounded calls (on every primary of a cluster, in
        parallel) and invalidate the entry K of every ``K``, ``K:gen`` and ``K:lock`` found.

        Every computation in flight when this starts has its ``K:gen`` (BEGIN_SCRIPT) and
        keeps it until generation_ttl_ms after it began, past its last possible store
        (generation_ttl_ms / 2): the key exists through the whole scan (if the scan takes
        less than generation_ttl_ms / 2), so SCAN returns it and the bump fences the
        computation out, or removes what it stored. The number of entries removed."""
        raw_prefix = prefix.encode()
        if isinstance(self._client, RedisCluster):
            nodes = self._client.get_primaries()
            counts = await asyncio.gather(
                *(self._invalidate_scanned(raw_prefix, node) for node in nodes)
            )
            return sum(counts)
        return await self._invalidate_scanned(raw_prefix, None)

    async def _invalidate_scanned(self, prefix: bytes, node: ClusterNode | None) -> int:
        pattern = layout.namespace_pattern(prefix)
        removed = 0
        cursor: Any = 0
        while True:
            if node is None:
                cursor, found = await self._client.scan(cursor, match=pattern, count=SCAN_COUNT)
            else:
                reply = await self._client.scan(
                    cursor, match=pattern, count=SCAN_COUNT, target_nodes=node
                )
                cursors, found = reply
                cursor = cursors[node.name] if isinstance(cursors, dict) else cursors
            entries: dict[bytes, None] = {}
            for item in found:
                key = _as_bytes(item)
                kind = layout.classify(prefix, key)
                if kind is not None and kind is not layout.KeyKind.TAG:
                    entries[layout.entry_of(key)] = None
            if entries:
                removed += await self._invalidate_batch(list(entries))
            if int(cursor) == 0:
                return removed

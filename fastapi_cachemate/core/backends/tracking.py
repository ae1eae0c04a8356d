"""The invalidation channel of the near cache: one tracking connection per Redis node.

For each node (the server of a ``Redis`` client; every primary of a ``RedisCluster``), one
dedicated connection made by the client's own connection class with its own connection
arguments (so its auth, TLS, db, timeouts and protocol hold), outside the client's pool:

    CLIENT ID                                   -> n
    CLIENT TRACKING on REDIRECT n BCAST PREFIX <prefix>:
    SUBSCRIBE __redis__:invalidate

Redis then sends on that connection an invalidation for every key under the prefix that
changes on that node, whoever changes it (SET, DEL, EXPIRE, UNLINK, expiry, eviction,
scripts), and a null one for FLUSHDB / FLUSHALL: as ``message`` on the channel in RESP2, as
an ``invalidate`` push in RESP3; both are understood. Tracking lives and dies with the
connection, so a dead connection can never leave the near cache believing it is told.

The :class:`Tracker` runs one background task: connect every node, mark the near cache
ready, then read; a PING every ``HEALTH_INTERVAL`` s proves the connection alive (no reply
within the next interval: lost). Any failure (EOF, ``CLIENT KILL``, a restart, a timeout, a
node added or gone on a cluster) flushes the near cache and marks it not ready until every
node is tracked again; reconnecting starts at once and backs off up to ``MAX_BACKOFF`` s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio.cluster import RedisCluster

from fastapi_cachemate.core.backends.near import NearCache

__all__ = ["HEALTH_INTERVAL", "MAX_BACKOFF", "Tracker"]

logger = logging.getLogger(__name__)

CHANNEL = b"__redis__:invalidate"
#: seconds between PINGs on an idle tracking connection (and between topology checks)
HEALTH_INTERVAL = 1.0
#: seconds between reconnection attempts, at most
MAX_BACKOFF = 2.0
#: seconds the handshake of a tracking connection may take
HANDSHAKE_TIMEOUT = 5.0

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class ChannelLost(Exception):
    """The invalidation channel of a node is gone (or cannot be trusted)."""


async def _identity(response: Any) -> Any:
    return response


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def invalidated_keys(message: Any) -> tuple[bool, list[bytes] | None]:
    """(whether message is an invalidation, its keys: None for "everything")."""
    if not isinstance(message, (list, tuple)) or not message:
        return False, None
    kind = message[0]
    if isinstance(kind, str):
        kind = kind.encode()
    if kind == b"invalidate" and len(message) >= 2:
        body = message[1]
    elif kind == b"message" and len(message) >= 3 and _bytes(message[1]) == CHANNEL:
        body = message[2]
    else:
        return False, None
    if body is None:
        return True, None
    if isinstance(body, (bytes, str)):
        return True, [_bytes(body)]
    return True, [_bytes(key) for key in body]


class _Channel:
    """One node's tracking connection."""

    def __init__(self, name: str, connection: Any) -> None:
        self.name = name
        self.connection = connection
        self.pinged = False

    async def open(self, prefix: bytes) -> None:
        conn = self.connection
        await asyncio.wait_for(conn.connect(), HANDSHAKE_TIMEOUT)
        parser = conn._parser
        # redis-py hands push messages (RESP3, and hiredis's in RESP2) to handlers that
        # would swallow them: return them to the reader instead.
        for setter in ("set_pubsub_push_handler", "set_invalidation_push_handler"):
            if hasattr(parser, setter):
                getattr(parser, setter)(_identity)
        client_id = await self._call("CLIENT", "ID")
        reply = await self._call(
            "CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST", "PREFIX", prefix
        )
        if _bytes(reply) != b"OK":
            raise ChannelLost(f"CLIENT TRACKING answered {reply!r}")
        await self.connection.send_command("SUBSCRIBE", CHANNEL)
        while True:
            reply = await self._call_reply()
            if isinstance(reply, (list, tuple)) and reply and _bytes(reply[0]) == b"subscribe":
                return

    async def _call(self, *args: Any) -> Any:
        await self.connection.send_command(*args)
        return await self._call_reply()

    async def _call_reply(self) -> Any:
        reply = await self.read(HANDSHAKE_TIMEOUT)
        if reply is None:
            raise ChannelLost(f"{self.name}: no answer within {HANDSHAKE_TIMEOUT}s")
        return reply

    async def read(self, timeout: float) -> Any:
        """The next reply or message; None when none came within timeout seconds."""
        return await self.connection.read_response(
            disable_decoding=True, timeout=timeout, push_request=True
        )

    async def close(self) -> None:
        try:
            await self.connection.disconnect()
        except Exception:  # a broken connection: nothing left to release
            logger.debug("near cache: closing the tracking connection of %s", self.name)


class Tracker:
    """Keeps the near cache told by every node, reconnecting forever until stopped."""

    def __init__(self, client: Any, near: NearCache, spawn: Spawn | None = None) -> None:
        self.client = client
        self.near = near
        self._spawn = spawn
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._channels: list[_Channel] = []
        #: times every node was tracked (tests wait for a reconnection with it)
        self.established = 0
        self._poller: Any = None  # select.poll over the tracking sockets, once established
        self._buffers: list[Any] = []  # their asyncio StreamReaders
        self._loop: asyncio.AbstractEventLoop | None = None  # where the channels live

    def quiet(self) -> bool:
        """No byte is waiting on any tracking connection, in the socket or in its stream
        (one poll(2) with a zero timeout): every invalidation (or EOF) that reached this
        process has been applied. A near copy is served only then. Asked from another event
        loop than the channels' (an app restarted in the same process), it is never quiet:
        tracking restarts there."""
        if asyncio.get_running_loop() is not self._loop:
            self.near.set_ready(False, "tracking runs in another event loop")
            self.ensure_running()
            return False
        poller = self._poller
        if poller is None:
            return True
        if poller.poll(0):
            return False
        return not any(buffer._buffer for buffer in self._buffers)

    def _watch(self, channels: list[_Channel]) -> None:
        if not hasattr(select, "poll"):
            return
        poller = select.poll()
        buffers = []
        for channel in channels:
            conn = channel.connection
            sock = conn._writer.get_extra_info("socket") if conn._writer is not None else None
            if sock is None or not hasattr(conn._reader, "_buffer"):
                self._poller = None
                return
            poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
            buffers.append(conn._reader)
        self._buffers = buffers
        self._poller = poller

    # --- lifecycle ----------------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Start the background task, in the running loop, unless it runs there already."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = self._task
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        coro = self._run()
        self._task = self._spawn(coro) if self._spawn is not None else loop.create_task(coro)

    async def aclose(self) -> None:
        """Stop for good: the near cache is flushed and serves nothing more."""
        self._closed = True
        self.near.set_ready(False, "the cache is closing")
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                running_here = task.get_loop() is asyncio.get_running_loop()
            except RuntimeError:
                running_here = False
            if not task.get_loop().is_closed():  # else it can never run again anyway
                task.cancel()
            if running_here:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_channels()

    def stop(self) -> None:
        """aclose() without waiting (the configuration is replaced by another)."""
        self._closed = True
        self.near.set_ready(False, "the configuration was replaced")
        task = self._task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()

    # --- the task -------------------------------------------------------------------------------
    def _nodes(self) -> list[tuple[str, Any]]:
        """(name, a new connection) per node, with the client's connection class and
        arguments."""
        client = self.client
        if isinstance(client, RedisCluster):
            return [
                (node.name, node.connection_class(**node.connection_kwargs))
                for node in client.get_primaries()
            ]
        pool = client.connection_pool
        return [("redis", pool.connection_class(**pool.connection_kwargs))]

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closed:
            try:
                await self._track()
            except asyncio.CancelledError:
                self.near.set_ready(False, "tracking stopped")
                await self._close_channels()
                raise
            except Exception as exc:  # every failure is the channel's loss: flush, retry
                lost = self.near.ready
                self.near.set_ready(False, f"invalidation channel lost: {exc!r}")
                await self._close_channels()
                if lost:  # INFO: a lost backend is reported by the request path
                    logger.info(
                        "near cache: invalidation channel lost (%s: %s); serving from Redis "
                        "until it is back",
                        type(exc).__name__,
                        exc,
                    )
                else:
                    logger.debug("near cache: tracking not established: %r", exc)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            backoff = 0.05

    async def _track(self) -> None:
        client = self.client
        if isinstance(client, RedisCluster) and not client.get_primaries():
            await client.initialize()
        channels = [_Channel(name, conn) for name, conn in self._nodes()]
        self._channels = channels
        await asyncio.gather(*(ch.open(self.near.tracking_prefix) for ch in channels))
        names = sorted(ch.name for ch in channels)
        self._watch(channels)
        self._loop = asyncio.get_running_loop()
        self.established += 1
        self.near.set_ready(True, "tracking established")
        logger.debug(
            "near cache: tracking %d node(s) for prefix %r", len(channels), self.near.prefix
        )
        readers = [asyncio.ensure_future(self._read(ch)) for ch in channels]
        try:
            while True:
                done, _ = await asyncio.wait(
                    readers, timeout=HEALTH_INTERVAL, return_when=asyncio.FIRST_COMPLETED
                )
                for reader in done:
                    reader.result()  # raises what ended it
                    raise ChannelLost("a tracking connection ended")
                if isinstance(client, RedisCluster):
                    now = sorted(node.name for node in client.get_primaries())
                    if now != names:
                        raise ChannelLost(f"cluster primaries changed: {names} -> {now}")
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _read(self, channel: _Channel) -> None:
        near = self.near
        while True:
            message = await channel.read(HEALTH_INTERVAL)
            if message is None:
                if channel.pinged:
                    raise ChannelLost(f"{channel.name}: no answer to PING")
                channel.pinged = True
                await channel.connection.send_command("PING")
                continue
            channel.pinged = False
            is_invalidation, keys = invalidated_keys(message)
            if is_invalidation:
                near.invalidated(keys)

    async def _close_channels(self) -> None:
        self._poller = None
        self._buffers = []
        channels, self._channels = self._channels, []
        for channel in channels:
            await channel.close()


def reads_replicas(client: Any) -> bool:
    """Whether a cluster client may send GETs to replicas: a replica can answer a value
    older than an invalidation already received from its primary, so no copy could be
    trusted (the near cache is then off)."""
    return bool(
        getattr(client, "read_from_replicas", False)
        or getattr(client, "load_balancing_strategy", None) is not None
    )


def attach_near_cache(
    backend: Any, prefix: str, max_bytes: int, spawn: Spawn | None
) -> NearCache | None:
    """A near cache for backend's keys under prefix (a RedisBackend), with its Tracker;
    tracking starts with the first lookup in a running event loop. None (and no near cache)
    for a cluster client that reads from replicas."""
    if reads_replicas(backend.client):
        logger.info(
            "near cache: off, the cluster client reads from replicas (a replica may answer "
            "a value older than the invalidation its primary sent)"
        )
        previous = backend.near
        if previous is not None and previous.tracker is not None:
            previous.tracker.stop()
        backend.near = None
        return None
    near = NearCache(max_bytes, prefix)
    near.tracker = Tracker(backend.client, near, spawn)
    previous = backend.near
    if previous is not None and previous.tracker is not None:
        previous.tracker.stop()
    backend.near = near
    return near

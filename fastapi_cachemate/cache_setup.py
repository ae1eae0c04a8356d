"""CacheSetup: the process-wide configuration of the cache (the seed's class, same calls).

``CacheSetup.setup()`` is called once from the app's lifespan; every cached endpoint reads
the configuration through the classmethod accessors. ``setup()`` may be called again (the
tests do): it replaces the previous configuration.

Differences from the seed, all compatible with its calls:

- ``backend`` and ``lock_manager`` are optional: no backend means the in-process
  ``MemoryBackend`` (bounded by ``settings.memory_max_bytes``); no lock manager means
  ``RedisLockManager(backend)`` for a ``RedisBackend`` and an in-process
  ``MemoryLockManager`` otherwise.
- ``coder_manager`` and ``compress_manager`` are accepted and kept, not used for entries:
  entries are MessagePack + zstd written by the native core (``compression_mode`` and
  ``compression_min_size_bytes`` in the settings still choose the compression).
  ``coder_manager()`` / ``compress_manager()`` return them, or, when none was given, an
  ``OrjsonCoderManager`` / ``ZlibCompressManager`` as the seed's defaults were.
- ``settings``: an instance of a ``BaseCacheSettings`` subclass is kept as it is (its extra
  fields and its own ``env_prefix`` work; the seed crashed on extra fields); a plain
  pydantic-settings ``BaseSettings`` is converted, its unknown fields ignored.
- The arguments are validated here, with errors that name the problem.
- A ``RedisBackend`` gets a near cache of ``settings.near_cache_max_bytes`` (0: none) for
  the prefix's keys (``core/backends/near.py``); ``close()`` stops its tracking first.
- ``close()`` drains background work (the refreshes of ``runtime().refreshes``, then
  ``spawn``'s tasks, within ``settings.close_timeout`` in all, the rest cancelled), runs the
  close callbacks, then closes the backend; calling it twice, or before ``setup()``, is
  harmless (the seed README's lifespan closes the backend again after
  ``CacheSetup.close()``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from pydantic_settings import BaseSettings

from fastapi_cachemate import metrics
from fastapi_cachemate._runtime import boundary
from fastapi_cachemate._runtime.breaker import BackendUnavailable
from fastapi_cachemate._runtime.flow import Runtime
from fastapi_cachemate.core import layout
from fastapi_cachemate.core.backends.memory import MemoryBackend
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.backends.tracking import attach_near_cache
from fastapi_cachemate.core.coders.orjson import OrjsonCoderManager
from fastapi_cachemate.core.compress.zlib import ZlibCompressManager
from fastapi_cachemate.core.layout import DEFAULT_PREFIX
from fastapi_cachemate.core.locks.memory import MemoryLockManager
from fastapi_cachemate.core.locks.redis import RedisLockManager
from fastapi_cachemate.core.types import Backend, ByPass, LockManager
from fastapi_cachemate.metrics import CacheStats
from fastapi_cachemate.settings import BaseCacheSettings

__all__ = ["CacheNotConfiguredError", "CacheSetup", "CloseCallback"]

logger = logging.getLogger(__name__)


CloseCallback = Callable[[], Awaitable[None]]
_T = TypeVar("_T")


class CacheNotConfiguredError(RuntimeError):
    """An accessor was called before ``CacheSetup.setup()``."""


class _Config:
    """One configuration, replaced as a whole by each ``setup()``."""

    __slots__ = (
        "backend",
        "bypass",
        "closed",
        "extras",
        "lock_manager",
        "prefix",
        "runtime",
        "settings",
    )

    def __init__(
        self,
        backend: Backend,
        lock_manager: LockManager,
        prefix: str,
        settings: BaseCacheSettings,
        extras: dict[str, Any],
    ) -> None:
        self.backend = backend
        self.lock_manager = lock_manager
        self.prefix = prefix
        self.settings = settings
        self.bypass = ByPass(header=settings.bypass_header, value=settings.bypass_value)
        self.extras = extras
        self.runtime = Runtime(settings, in_process=isinstance(backend, MemoryBackend))
        self.closed = False


def _convert_settings(settings: object) -> BaseCacheSettings:
    if settings is None:
        return BaseCacheSettings()
    if isinstance(settings, BaseCacheSettings):
        return settings
    if isinstance(settings, BaseSettings):
        known = BaseCacheSettings.model_fields
        values = {k: v for k, v in settings.model_dump().items() if k in known}
        return BaseCacheSettings(**values)
    raise TypeError(
        "CacheSetup.setup(settings=...) must be a BaseCacheSettings (or a subclass) or a "
        f"pydantic_settings.BaseSettings instance, got {type(settings).__name__}"
    )


def _stop_near_cache(config: _Config) -> None:
    """The replaced configuration's near cache serves nothing more and stops tracking."""
    near = config.runtime.near
    if near is not None and near.tracker is not None:
        near.tracker.stop()
    backend = config.backend
    if isinstance(backend, RedisBackend) and backend.near is near:
        backend.near = None


def _default_lock_manager(backend: Backend) -> LockManager:
    if isinstance(backend, RedisBackend):
        return RedisLockManager(backend)
    if not isinstance(backend, MemoryBackend):
        logger.info(
            "CacheSetup: no lock_manager given for %s: using in-process locks "
            "(stampede protection within this process only)",
            type(backend).__name__,
        )
    return MemoryLockManager()


class CacheSetup:
    """The process-wide cache configuration (classmethods only, as in the seed)."""

    _config: ClassVar[_Config | None] = None
    _close_callbacks: ClassVar[list[CloseCallback]] = []
    _tasks: ClassVar[set[asyncio.Task[Any]]] = set()

    @classmethod
    def setup(
        cls,
        backend: Backend | None = None,
        lock_manager: LockManager | None = None,
        prefix: str = DEFAULT_PREFIX,
        settings: BaseSettings | None = None,
        coder_manager: Any = None,
        compress_manager: Any = None,
    ) -> None:
        """Configure the cache; replaces any previous configuration.

        coder_manager and compress_manager are the seed's; kept for compatibility (the
        accessors return them) and not used (entries are MessagePack + zstd written by the
        native core).
        """
        prefix = layout.check_prefix(prefix, "CacheSetup.setup(prefix=...)")
        cache_settings = _convert_settings(settings)
        if backend is None:
            backend = MemoryBackend(max_bytes=cache_settings.memory_max_bytes)
        elif not isinstance(backend, Backend):
            raise TypeError(
                "CacheSetup.setup(backend=...) must be a fastapi_cachemate.core.types.Backend "
                f"(e.g. RedisBackend(client)), got {type(backend).__name__}"
            )
        if lock_manager is None:
            lock_manager = _default_lock_manager(backend)
        elif not isinstance(lock_manager, LockManager):
            raise TypeError(
                "CacheSetup.setup(lock_manager=...) must be a "
                "fastapi_cachemate.core.types.LockManager (e.g. RedisLockManager(backend)), "
                f"got {type(lock_manager).__name__}"
            )
        if coder_manager is not None or compress_manager is not None:
            logger.info(
                "CacheSetup: coder_manager / compress_manager are accepted for compatibility "
                "and not used: entries are MessagePack + zstd (see compression_mode)"
            )
        extras = {
            "coder_manager": OrjsonCoderManager() if coder_manager is None else coder_manager,
            "compress_manager": (
                ZlibCompressManager() if compress_manager is None else compress_manager
            ),
        }
        lock_manager.default_lock_ttl = cache_settings.ttl_lock_seconds
        previous = cls._config
        if previous is not None:
            _stop_near_cache(previous)
        cls._config = _Config(backend, lock_manager, prefix, cache_settings, extras)
        if isinstance(backend, RedisBackend) and cache_settings.near_cache_max_bytes > 0:
            cls._config.runtime.near = attach_near_cache(
                backend, prefix, cache_settings.near_cache_max_bytes, cls.spawn
            )
        metrics.track_breaker(cls._config.runtime.breaker)  # the breaker gauge reads it
        logger.debug(
            "CacheSetup: backend=%s lock_manager=%s prefix=%r",
            type(backend).__name__,
            type(lock_manager).__name__,
            prefix,
        )

    # --- accessors -------------------------------------------------------------------------
    @classmethod
    def _require(cls) -> _Config:
        config = cls._config
        if config is None:
            raise CacheNotConfiguredError(
                "fastapi-cachemate is not configured: call CacheSetup.setup() first "
                "(usually in the app's lifespan)"
            )
        return config

    @classmethod
    def is_configured(cls) -> bool:
        """True after setup() and until close() starts (accessors keep answering during
        and after close(), so that in-flight and draining work can finish)."""
        return cls._config is not None and not cls._config.closed

    @classmethod
    def backend(cls) -> Backend:
        return cls._require().backend

    @classmethod
    def lock_manager(cls) -> LockManager:
        return cls._require().lock_manager

    @classmethod
    def settings(cls) -> BaseCacheSettings:
        return cls._require().settings

    @classmethod
    def prefix(cls) -> str:
        return cls._require().prefix

    @classmethod
    def bypass(cls) -> ByPass:
        return cls._require().bypass

    @classmethod
    def runtime(cls) -> Runtime:
        """The request path's state for this configuration: the backend's circuit breaker,
        the single flight, the background refresh registry, the clock."""
        return cls._require().runtime

    @classmethod
    def coder_manager(cls) -> Any:
        """The seed's coder_manager argument as given, else an ``OrjsonCoderManager``
        (kept for code that calls it; entries do not use it)."""
        return cls._require().extras["coder_manager"]

    @classmethod
    def compress_manager(cls) -> Any:
        """The seed's compress_manager argument as given, else a ``ZlibCompressManager``
        (kept for code that calls it; entries do not use it)."""
        return cls._require().extras["compress_manager"]

    @classmethod
    def stats(cls) -> CacheStats:
        """This process's cache counters: ``{"endpoints": {name: {counter: int}}, "totals":
        {counter: int}, "breaker": state}`` (see ``fastapi_cachemate.metrics``). Works
        before ``setup()`` too (all zeros)."""
        return metrics.snapshot()

    # --- background work and shutdown -------------------------------------------------------
    @classmethod
    def spawn(cls, coro: Coroutine[Any, Any, _T], *, name: str | None = None) -> asyncio.Task[_T]:
        """Run coro as a background task that close() waits for (then cancels).

        The task is referenced here until it ends, so it cannot be garbage-collected
        half-way; this is where background refreshes go.
        """
        task = asyncio.get_running_loop().create_task(coro, name=name)
        cls._tasks.add(task)
        task.add_done_callback(cls._tasks.discard)
        return task

    @classmethod
    def pending_tasks(cls) -> int:
        """Background tasks started by spawn() that have not ended."""
        return sum(1 for task in cls._tasks if not task.done())

    @classmethod
    def add_close_callback(cls, callback: CloseCallback) -> None:
        """Register an async callable that every close() awaits before closing the backend."""
        if callback not in cls._close_callbacks:
            cls._close_callbacks.append(callback)

    @classmethod
    def remove_close_callback(cls, callback: CloseCallback) -> None:
        if callback in cls._close_callbacks:
            cls._close_callbacks.remove(callback)

    @classmethod
    async def _drain(cls, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # A task of another (finished) event loop cannot be awaited here: forget it.
            stale = {task for task in cls._tasks if task.get_loop() is not loop}
            cls._tasks.difference_update(stale)
            tasks = {task for task in cls._tasks if not task.done()}
            if not tasks:
                return
            left = deadline - loop.time()
            if left <= 0:
                break
            # tasks started while draining (a refresh that spawns) are picked up next round
            await asyncio.wait(tasks, timeout=left)
        logger.warning(
            "CacheSetup.close(): cancelling %d background task(s) still running after %.1fs",
            len(tasks),
            timeout,
        )
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)

    @classmethod
    async def close(cls) -> None:
        """Drain background tasks, await the close callbacks, close the backend.

        Harmless when called twice or before setup().
        """
        config = cls._config
        if config is None or config.closed:
            return
        config.closed = True
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + config.settings.close_timeout
            near = config.runtime.near
            if near is not None and near.tracker is not None:
                await near.tracker.aclose()
            await config.runtime.aclose(config.settings.close_timeout)
            await cls._drain(max(0.0, deadline - loop.time()))
            for callback in list(cls._close_callbacks):
                await callback()
        finally:
            backend = config.backend
            try:
                await boundary.call(backend.close, boundary.ignored)
            except BackendUnavailable as exc:  # the app still shuts down
                logger.warning("CacheSetup.close(): the backend's close() failed: %s", exc)

    @classmethod
    async def reset(cls) -> None:
        """close(), then forget the configuration (for tests and re-initialisation)."""
        await cls.close()
        cls._config = None

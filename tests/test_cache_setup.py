"""CacheSetup: seed-compatible calls, defaults, validation, close, background work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from pydantic_settings import BaseSettings, SettingsConfigDict

import fastapi_cachemate
from fastapi_cachemate import MAX_LOCK_TTL_SECONDS, BaseCacheSettings, CacheSetup
from fastapi_cachemate.cache_setup import CacheNotConfiguredError
from fastapi_cachemate.core.backends.memory import MemoryBackend
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.memory import MemoryLockManager
from fastapi_cachemate.core.locks.redis import RedisLockManager
from fastapi_cachemate.core.types import ByPass
from tests.support.backends import DictBackend
from tests.support.servers import RedisServer

pytestmark = pytest.mark.usefixtures("clean_cache_setup")


def test_public_names() -> None:
    assert fastapi_cachemate.__version__ == "0.2.0"
    assert {"CacheSetup", "BaseCacheSettings", "MAX_LOCK_TTL_SECONDS", "__version__"} <= set(
        fastapi_cachemate.__all__
    )
    assert MAX_LOCK_TTL_SECONDS == 5


# --- defaults -------------------------------------------------------------------------------
async def test_setup_without_a_backend_uses_memory() -> None:
    CacheSetup.setup(settings=BaseCacheSettings(memory_max_bytes=4096))
    assert CacheSetup.is_configured()
    backend = CacheSetup.backend()
    assert isinstance(backend, MemoryBackend)
    assert backend.client.max_bytes == 4096
    assert isinstance(CacheSetup.lock_manager(), MemoryLockManager)
    assert CacheSetup.prefix() == "fastapi_cachemate"
    await backend.store(b"fastapi_cachemate:{k}", b"v", 1_000)
    assert await backend.fetch(b"fastapi_cachemate:{k}") == b"v"


def test_setup_without_settings_uses_defaults() -> None:
    CacheSetup.setup()
    assert isinstance(CacheSetup.settings(), BaseCacheSettings)
    assert CacheSetup.settings().ttl_lock_seconds == 5
    assert CacheSetup.bypass() == ByPass(header="X-BYPASS-CACHE", value=None)


@pytest.mark.redis
async def test_redis_backend_gets_a_redis_lock_manager(redis_client: aioredis.Redis) -> None:
    CacheSetup.setup(backend=RedisBackend(redis_client))
    assert isinstance(CacheSetup.lock_manager(), RedisLockManager)


def test_custom_backend_without_locks_gets_in_process_locks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="fastapi_cachemate.cache_setup"):
        CacheSetup.setup(backend=DictBackend())
    assert isinstance(CacheSetup.lock_manager(), MemoryLockManager)
    assert "in-process locks" in caplog.text


def test_given_backend_and_lock_manager_are_kept() -> None:
    backend, locks = MemoryBackend(max_bytes=4096), MemoryLockManager()
    CacheSetup.setup(backend, locks, "myapp")
    assert CacheSetup.backend() is backend
    assert CacheSetup.lock_manager() is locks
    assert CacheSetup.prefix() == "myapp"


# --- settings ------------------------------------------------------------------------------
class AppSettings(BaseCacheSettings):
    model_config = SettingsConfigDict(env_prefix="myapp_cache_")
    service_name: str = "blog"
    ttl_lock_seconds: int = 3


def test_a_settings_subclass_is_kept_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_CACHE_BYPASS_VALUE", "letmein")
    monkeypatch.setenv("MYAPP_CACHE_SERVICE_NAME", "shop")
    settings = AppSettings()
    CacheSetup.setup(settings=settings)
    assert CacheSetup.settings() is settings
    kept = CacheSetup.settings()
    assert isinstance(kept, AppSettings)
    assert kept.service_name == "shop"
    assert CacheSetup.bypass() == ByPass(header="X-BYPASS-CACHE", value="letmein")


def test_a_plain_base_settings_is_converted_ignoring_extras() -> None:
    class Plain(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="plain_test_")
        ttl_lock_seconds: int = 8
        bypass_header: str = "X-SKIP"
        something_else: str = "ignored"

    CacheSetup.setup(settings=Plain())
    settings = CacheSetup.settings()
    assert type(settings) is BaseCacheSettings
    assert settings.ttl_lock_seconds == 8
    assert settings.bypass_header == "X-SKIP"
    assert not hasattr(settings, "something_else")


def test_lock_ttl_follows_the_configured_settings() -> None:
    locks = MemoryLockManager()
    assert locks.lock_ttl == 5  # not configured: the seed's 5 s
    CacheSetup.setup(settings=BaseCacheSettings(ttl_lock_seconds=11), lock_manager=locks)
    assert locks.lock_ttl == 11
    assert MemoryLockManager(lock_ttl=2).lock_ttl == 2  # the argument wins


@pytest.mark.redis
async def test_redis_lock_ttl_from_settings(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client)
    locks = RedisLockManager(backend)
    CacheSetup.setup(backend, locks, settings=BaseCacheSettings(ttl_lock_seconds=30))
    assert await locks.acquire("seed:lock") is True
    assert 29_000 < await redis_client.pttl("seed:lock") <= 30_000


# --- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"prefix": ""}, ValueError, "prefix=...\\) must not be empty"),
        ({"prefix": "app{1}"}, ValueError, "must not contain '\\{' or '\\}'"),
        ({"prefix": "app}"}, ValueError, "must not contain"),
        ({"prefix": 42}, TypeError, "prefix=...\\) must be a str, got int"),
        ({"backend": "redis://x"}, TypeError, "backend=...\\) must be a .*Backend.*got str"),
        ({"lock_manager": object()}, TypeError, "lock_manager=...\\) must be .*got object"),
        ({"settings": {"host": "x"}}, TypeError, "settings=...\\) must be .*got dict"),
    ],
)
def test_setup_errors_name_the_problem(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        CacheSetup.setup(**kwargs)
    assert not CacheSetup.is_configured()


def test_a_failed_setup_keeps_the_previous_configuration() -> None:
    CacheSetup.setup(prefix="first")
    with pytest.raises(ValueError, match="prefix"):
        CacheSetup.setup(prefix="")
    assert CacheSetup.prefix() == "first"
    assert CacheSetup.is_configured()


def test_accessors_before_setup_raise_a_clear_error() -> None:
    assert not CacheSetup.is_configured()
    for accessor in (
        CacheSetup.backend,
        CacheSetup.lock_manager,
        CacheSetup.settings,
        CacheSetup.prefix,
        CacheSetup.bypass,
    ):
        with pytest.raises(CacheNotConfiguredError, match=r"call CacheSetup\.setup\(\) first"):
            accessor()


def test_seed_coder_and_compress_managers_are_accepted_and_unused() -> None:
    coder, compressor = object(), object()
    CacheSetup.setup(coder_manager=coder, compress_manager=compressor)
    assert CacheSetup.coder_manager() is coder
    assert CacheSetup.compress_manager() is compressor
    assert isinstance(CacheSetup.backend(), MemoryBackend)


async def test_setup_again_replaces_the_configuration() -> None:
    first, second = MemoryBackend(max_bytes=4096), MemoryBackend(max_bytes=8192)
    CacheSetup.setup(backend=first, prefix="one")
    CacheSetup.setup(backend=second, prefix="two")
    assert CacheSetup.backend() is second
    assert CacheSetup.prefix() == "two"
    await CacheSetup.close()
    assert not CacheSetup.is_configured()
    CacheSetup.setup(backend=first, prefix="three")  # after close, setup works again
    assert CacheSetup.is_configured()
    assert CacheSetup.backend() is first


# --- close ------------------------------------------------------------------------------------
async def test_close_before_setup_is_harmless() -> None:
    await CacheSetup.close()
    await CacheSetup.close()
    assert not CacheSetup.is_configured()


class CountingBackend(DictBackend):
    pass


async def test_close_closes_the_backend_once() -> None:
    backend = CountingBackend()
    CacheSetup.setup(backend=backend)
    await CacheSetup.close()
    await CacheSetup.close()
    assert backend.closed == 1
    assert not CacheSetup.is_configured()
    assert CacheSetup.backend() is backend  # in-flight requests still see it


async def test_memory_backend_is_emptied_by_close() -> None:
    CacheSetup.setup()
    backend = CacheSetup.backend()
    await backend.store(b"fastapi_cachemate:{x}", b"v", 60_000)
    await CacheSetup.close()
    assert await backend.fetch(b"fastapi_cachemate:{x}") is None


@pytest.mark.redis
async def test_the_seed_readme_lifespan_runs_unchanged(redis_server: RedisServer) -> None:
    """The seed README's quick start lifespan: close twice, then disconnect the pool."""

    class ApiCacheSettings(BaseCacheSettings):
        host: str = redis_server.host
        port: int = redis_server.port
        db: int = 0
        ttl_lock_seconds: int = 5
        buffer: float = 0.2
        model_config = SettingsConfigDict(env_prefix="api_cache_")

    api_cache_settings = ApiCacheSettings()
    seen: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        _backend = redis.asyncio.Redis(
            host=api_cache_settings.host,
            port=api_cache_settings.port,
            db=api_cache_settings.db,
        )
        redis_backend = RedisBackend(client=_backend)
        try:
            CacheSetup.setup(
                backend=redis_backend,
                lock_manager=RedisLockManager(backend=redis_backend),
                settings=api_cache_settings,
            )
            yield
        finally:
            await CacheSetup.close()
            await redis_backend.close()
            await _backend.connection_pool.disconnect()

    async with lifespan(None):
        backend = CacheSetup.backend()
        await backend.store(b"fastapi_cachemate:{readme}", b"v", 60_000)
        seen["value"] = await backend.fetch(b"fastapi_cachemate:{readme}")
        seen["settings"] = CacheSetup.settings()
    assert seen["value"] == b"v"
    assert seen["settings"] is api_cache_settings
    assert not CacheSetup.is_configured()


# --- background work and close callbacks -------------------------------------------------
async def test_close_waits_for_background_tasks() -> None:
    CacheSetup.setup()
    release = asyncio.Event()
    done: list[str] = []

    async def refresh() -> None:
        await release.wait()
        done.append("refreshed")

    CacheSetup.spawn(refresh(), name="refresh")
    assert CacheSetup.pending_tasks() == 1
    closing = asyncio.ensure_future(CacheSetup.close())
    await asyncio.sleep(0)  # let close() start waiting
    assert not closing.done()
    release.set()
    await closing
    assert done == ["refreshed"]
    assert CacheSetup.pending_tasks() == 0


async def test_close_cancels_background_tasks_that_outlive_close_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    CacheSetup.setup(settings=BaseCacheSettings(close_timeout=0))
    never = asyncio.Event()
    cancelled: list[bool] = []

    async def stuck() -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    task = CacheSetup.spawn(stuck())
    await asyncio.sleep(0)  # let it start
    with caplog.at_level(logging.WARNING, logger="fastapi_cachemate.cache_setup"):
        await CacheSetup.close()
    assert task.cancelled()
    assert cancelled == [True]
    assert "cancelling 1 background task" in caplog.text


async def test_close_awaits_callbacks_in_order_before_closing_the_backend() -> None:
    backend = CountingBackend()
    order: list[str] = []

    async def first() -> None:
        order.append(f"first closed={backend.closed}")

    async def second() -> None:
        order.append(f"second closed={backend.closed}")

    async def removed() -> None:
        order.append("removed")

    CacheSetup.setup(backend=backend)
    for callback in (first, second, removed, first):
        CacheSetup.add_close_callback(callback)
    CacheSetup.remove_close_callback(removed)
    try:
        await CacheSetup.close()
    finally:
        CacheSetup.remove_close_callback(first)
        CacheSetup.remove_close_callback(second)
    assert order == ["first closed=0", "second closed=0"]
    assert backend.closed == 1


async def test_a_failing_callback_still_closes_the_backend() -> None:
    backend = CountingBackend()

    async def broken() -> None:
        raise RuntimeError("callback failed")

    CacheSetup.setup(backend=backend)
    CacheSetup.add_close_callback(broken)
    try:
        with pytest.raises(RuntimeError, match="callback failed"):
            await CacheSetup.close()
    finally:
        CacheSetup.remove_close_callback(broken)
    assert backend.closed == 1
    assert not CacheSetup.is_configured()


async def test_close_also_waits_for_tasks_spawned_while_draining() -> None:
    CacheSetup.setup()
    done: list[str] = []

    async def child() -> None:
        await asyncio.sleep(0)
        done.append("child")

    async def parent() -> None:
        await asyncio.sleep(0)
        CacheSetup.spawn(child())
        done.append("parent")

    CacheSetup.spawn(parent())
    await CacheSetup.close()
    assert done == ["parent", "child"]
    assert CacheSetup.pending_tasks() == 0

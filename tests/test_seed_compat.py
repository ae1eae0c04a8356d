"""A seed user's code keeps working: its public names, its serialisation managers, its
setting values."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zlib
from typing import Any

import pytest

import fastapi_cachemate
from fastapi_cachemate import BaseCacheSettings, CacheSetup
from fastapi_cachemate.settings import MAX_LOCK_TTL_SECONDS
from tests.support.apps import served
from tests.support.fixtures import AppFactory

SEED_NAMES = (
    "Backend",
    "LockManager",
    "ByPass",
    "CompressionMode",
    "CoderManager",
    "CompressManager",
    "OrjsonCoderManager",
    "ZlibCompressManager",
    "DEFAULT_BYPASS_HEADER",
    "BaseCacheSettings",
    "CacheSetup",
    "MAX_LOCK_TTL_SECONDS",
)


@pytest.mark.parametrize("name", SEED_NAMES)
def test_the_seeds_names_are_in_the_package_namespace(name: str) -> None:
    assert name in fastapi_cachemate.__all__
    namespace: dict[str, Any] = {}
    exec(f"from fastapi_cachemate import {name}", namespace)
    assert namespace[name] is getattr(fastapi_cachemate, name)


def test_the_seeds_names_are_the_classes_the_cache_uses() -> None:
    from fastapi_cachemate.core import types

    for name in ("Backend", "LockManager", "ByPass", "CoderManager", "CompressManager"):
        assert getattr(fastapi_cachemate, name) is getattr(types, name)
    assert fastapi_cachemate.DEFAULT_BYPASS_HEADER == "X-BYPASS-CACHE"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("fastapi_cachemate.core.coders.orjson", "OrjsonCoderManager"),
        ("fastapi_cachemate.core.compress.zlib", "ZlibCompressManager"),
    ],
)
def test_the_seeds_manager_modules_import(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(fastapi_cachemate, name)


def test_the_orjson_coder_module_imports_without_orjson() -> None:
    # a fresh interpreter in which orjson cannot be imported, whether installed or not
    code = (
        "import sys; sys.modules['orjson'] = None\n"
        "from fastapi_cachemate import OrjsonCoderManager\n"
        "try:\n"
        "    OrjsonCoderManager().encode({'a': 1})\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "ImportError: OrjsonCoderManager.encode/decode need orjson" in done.stdout


def test_the_zlib_compressor_round_trips_as_the_seeds() -> None:
    data = b'{"a": 1}' * 100
    compressed = fastapi_cachemate.ZlibCompressManager().compress(data)
    assert compressed == zlib.compress(data, 5)
    assert fastapi_cachemate.ZlibCompressManager().decompress(compressed) == data


@pytest.mark.usefixtures("clean_cache_setup")
def test_setup_keeps_the_seeds_manager_instances() -> None:
    coder = fastapi_cachemate.OrjsonCoderManager()
    compressor = fastapi_cachemate.ZlibCompressManager()
    CacheSetup.setup(coder_manager=coder, compress_manager=compressor)
    assert CacheSetup.coder_manager() is coder
    assert CacheSetup.compress_manager() is compressor


@pytest.mark.usefixtures("clean_cache_setup")
def test_without_managers_the_accessors_return_the_seeds_defaults() -> None:
    CacheSetup.setup()
    assert isinstance(CacheSetup.coder_manager(), fastapi_cachemate.OrjsonCoderManager)
    assert isinstance(CacheSetup.compress_manager(), fastapi_cachemate.ZlibCompressManager)


@pytest.mark.parametrize("value", [0, -3])
def test_a_lock_ttl_of_zero_or_less_means_the_default(value: int) -> None:
    assert BaseCacheSettings(ttl_lock_seconds=value).ttl_lock_seconds == MAX_LOCK_TTL_SECONDS
    assert BaseCacheSettings(ttl_lock_seconds=7).ttl_lock_seconds == 7


def test_negative_refresh_settings_are_accepted_as_the_seed_did() -> None:
    settings = BaseCacheSettings(buffer=-0.5, max_planing_execution_time=-1)
    assert (settings.buffer, settings.max_planing_execution_time) == (-0.5, -1)


@pytest.mark.parametrize(
    "seed_values",
    [
        {"ttl_lock_seconds": 0},
        {"ttl_lock_seconds": -1},
        {"buffer": -0.2, "max_planing_execution_time": -5},
        {"buffer": 0, "max_planing_execution_time": 0},
    ],
    ids=["lock-ttl-0", "lock-ttl-negative", "negative-refresh", "zero-refresh"],
)
async def test_seed_setting_values_start_and_cache(
    app_factory: AppFactory, seed_values: dict[str, Any]
) -> None:
    app = app_factory(**seed_values)
    async with served(app) as client:
        first = await client.get("/async/1")
        second = await client.get("/async/1")
    assert (first.status_code, first.headers["x-cache-status"]) == (200, "MISS")
    assert (second.status_code, second.headers["x-cache-status"]) == (200, "HIT")
    assert second.json() == first.json()
    assert app.state.calls["async"] == 1

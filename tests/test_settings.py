"""BaseCacheSettings: the seed's fields and defaults, subclasses with extras and env_prefix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from fastapi_cachemate import MAX_LOCK_TTL_SECONDS, BaseCacheSettings
from fastapi_cachemate.settings import DEFAULT_BYPASS_HEADER

# The seed's BaseCacheSettings (v0.1.1), field by field.
SEED_DEFAULTS = {
    "host": "127.0.0.1",
    "port": 6379,
    "db": 0,
    "ttl_lock_seconds": 5,
    "bypass_header": "X-BYPASS-CACHE",
    "bypass_value": None,
    "max_planing_execution_time": 5000,
    "buffer": 0.2,
    "compression_mode": "smart",
    "compression_min_size_bytes": 1024,
}


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # BaseCacheSettings has no env_prefix (as in the seed): keep the host's env out.
    for name in [*SEED_DEFAULTS, *BaseCacheSettings.model_fields]:
        monkeypatch.delenv(name.upper(), raising=False)


def test_seed_fields_and_defaults() -> None:
    settings = BaseCacheSettings()
    for name, default in SEED_DEFAULTS.items():
        assert getattr(settings, name) == default, name
    assert MAX_LOCK_TTL_SECONDS == 5
    assert DEFAULT_BYPASS_HEADER == "X-BYPASS-CACHE"


def test_seed_field_env_names_have_no_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTL_LOCK_SECONDS", "9")
    monkeypatch.setenv("COMPRESSION_MODE", "disabled")
    monkeypatch.setenv("BYPASS_VALUE", "secret")
    settings = BaseCacheSettings()
    assert settings.ttl_lock_seconds == 9
    assert settings.compression_mode == "disabled"
    assert settings.bypass_value == "secret"


class ApiCacheSettings(BaseCacheSettings):
    """The seed README's subclass, plus fields of the app's own."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    ttl_lock_seconds: int = 5
    buffer: float = 0.2
    bypass_header: str = "X-CACHE-BYPASS"
    bypass_value: str = "test"
    redis_url: str = "redis://127.0.0.1:6379/0"
    feature_flag: bool = False

    model_config = SettingsConfigDict(env_prefix="api_cache_")


def test_subclass_with_extra_fields_and_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_CACHE_HOST", "redis.internal")
    monkeypatch.setenv("API_CACHE_PORT", "6380")
    monkeypatch.setenv("API_CACHE_FEATURE_FLAG", "true")
    monkeypatch.setenv("API_CACHE_MEMORY_MAX_BYTES", "2048")
    monkeypatch.setenv("HOST", "not-this-one")  # no prefix: not read by the subclass
    settings = ApiCacheSettings()
    assert settings.host == "redis.internal"
    assert settings.port == 6380
    assert settings.feature_flag is True
    assert settings.memory_max_bytes == 2048
    assert settings.bypass_header == "X-CACHE-BYPASS"
    assert settings.bypass_value == "test"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_subclass_keeps_extra_init_kwargs_ignored() -> None:
    settings = BaseCacheSettings(not_a_field="x")  # type: ignore[call-arg]
    assert not hasattr(settings, "not_a_field")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("compression_mode", "sometimes"),
        ("compression_min_size_bytes", -1),
        ("backend_timeout", 0),
        ("memory_max_bytes", 10),
        ("client_cache_control", "maybe"),
        ("close_timeout", -1),
    ],
)
def test_invalid_values_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        BaseCacheSettings(**{field: value})

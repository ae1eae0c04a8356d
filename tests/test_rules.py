"""Who may skip the cache: bypass header, is_bypass, client Cache-Control, method."""

from __future__ import annotations

import httpx
import pytest

from fastapi_cachemate._request.rules import cache_control_directives
from tests.support.apps import served
from tests.support.fixtures import AppFactory

STATUS = "x-cache-status"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {}),
        (["no-cache"], {"no-cache": None}),
        (["No-Store"], {"no-store": None}),
        (["max-age=0, no-cache"], {"max-age": "0", "no-cache": None}),
        (["max-age=0", "NO-CACHE"], {"max-age": "0", "no-cache": None}),
        (
            ['no-cache="set-cookie, x-a", max-age=5'],
            {"no-cache": "set-cookie, x-a", "max-age": "5"},
        ),
        (['private="a\\"b"'], {"private": 'a"b'}),
        (["  , ,x-no-cache,,"], {"x-no-cache": None}),
        (["max-age=1, max-age=2"], {"max-age": "1"}),
        (['a="unterminated, b'], {"a": "unterminated, b"}),
        (["=, =x"], {}),
    ],
)
def test_cache_control_directives(values: list[str], expected: dict[str, str | None]) -> None:
    assert cache_control_directives(values) == expected


async def _statuses(
    client: httpx.AsyncClient, url: str, n: int = 2, headers: dict[str, str] | None = None
) -> list[str]:
    out = []
    for _ in range(n):
        response = await client.get(url, headers=headers)
        assert response.status_code == 200
        out.append(response.headers[STATUS])
    return out


async def test_bypass_header_with_the_configured_value(app_factory: AppFactory) -> None:
    app = app_factory(bypass_header="X-CACHE-BYPASS", bypass_value="test")
    async with served(app) as client:
        bypassed = {"x-cache-bypass": "test"}
        assert await _statuses(client, "/async/1", headers=bypassed) == ["BYPASS", "BYPASS"]
        assert app.state.calls["async"] == 2
        # another value is an ordinary request
        other = {"x-cache-bypass": "nope"}
        assert await _statuses(client, "/async/1", headers=other) == ["MISS", "HIT"]
        # a bypassed request neither reads nor fills the cache, and a cached key stays
        assert await _statuses(client, "/async/1", n=1, headers=bypassed) == ["BYPASS"]
        assert await _statuses(client, "/async/1", n=1) == ["HIT"]
    assert app.state.calls["async"] == 4


async def test_bypass_header_without_configured_value_never_matches(
    app_factory: AppFactory,
) -> None:
    app = app_factory(bypass_header="X-CACHE-BYPASS")
    async with served(app) as client:
        headers = {"x-cache-bypass": ""}
        assert await _statuses(client, "/async/1", headers=headers) == ["MISS", "HIT"]


@pytest.mark.parametrize(
    "cache_control",
    ["no-cache", "no-store", "No-Cache", "max-age=0, no-store", 'no-cache="x"'],
)
async def test_client_no_cache_skips_the_cache(app_factory: AppFactory, cache_control: str) -> None:
    app = app_factory()
    async with served(app) as client:
        await _statuses(client, "/async/2", n=1)  # fills the entry
        headers = {"cache-control": cache_control}
        assert await _statuses(client, "/async/2", headers=headers) == ["NO_CACHE", "NO_CACHE"]
    assert app.state.calls["async"] == 3


@pytest.mark.parametrize("cache_control", ["max-age=0", "x-no-cache", "no-transform", "public"])
async def test_other_client_directives_use_the_cache(
    app_factory: AppFactory, cache_control: str
) -> None:
    app = app_factory()
    async with served(app) as client:
        headers = {"cache-control": cache_control}
        assert await _statuses(client, "/async/2", headers=headers) == ["MISS", "HIT"]


async def test_client_directives_ignored_by_setting(app_factory: AppFactory) -> None:
    app = app_factory(client_cache_control="ignore")
    async with served(app) as client:
        headers = {"cache-control": "no-cache, no-store"}
        assert await _statuses(client, "/async/3", headers=headers) == ["MISS", "HIT"]
    assert app.state.calls["async"] == 1


async def test_is_bypass_set_in_a_dependency(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        assert await _statuses(client, "/maybe-bypass?x_user=u") == ["BYPASS", "BYPASS"]
        # the ContextVar was reset by the dependency: other requests use the cache
        assert await _statuses(client, "/maybe-bypass") == ["MISS", "HIT"]
    assert app.state.calls["maybe-bypass"] == 3


async def test_non_get_methods_are_not_cached(app_factory: AppFactory) -> None:
    app = app_factory()
    async with served(app) as client:
        for n in (1, 2):
            response = await client.post("/post")
            assert response.headers[STATUS] == "NO_CACHE"
            assert response.json() == {"n": n}

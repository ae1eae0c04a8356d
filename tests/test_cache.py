"""Decoration time: arguments checked with clear errors, the signature FastAPI sees."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from starlette.responses import JSONResponse

from fastapi_cachemate import cache_response as exported
from fastapi_cachemate.cache import CacheStatuses, cache_response, is_bypass
from fastapi_cachemate.cache_setup import CacheSetup
from tests.support.apps import client_for


@pytest.mark.parametrize("ttl", [0, -1, 0.0, float("nan"), float("inf")])
def test_ttl_must_be_positive(ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        cache_response(ttl=ttl)


@pytest.mark.parametrize("ttl", ["60", True, None, b"1"])
def test_ttl_must_be_a_number(ttl: Any) -> None:
    with pytest.raises(TypeError, match="ttl"):
        cache_response(ttl=ttl)


def test_used_without_parentheses() -> None:
    async def endpoint() -> dict[str, int]:
        return {}

    with pytest.raises(TypeError, match=r"@cache_response\(ttl=60\)"):
        cache_response(endpoint)  # type: ignore[arg-type]


@pytest.mark.parametrize("target", [42, "endpoint", None])
def test_decorates_only_callables(target: Any) -> None:
    with pytest.raises(TypeError, match="callable"):
        cache_response(ttl=1)(target)


def test_generators_are_refused() -> None:
    def sync_gen() -> Iterator[bytes]:
        yield b""

    async def async_gen() -> AsyncIterator[bytes]:
        yield b""

    for func in (sync_gen, async_gen):
        with pytest.raises(TypeError, match="generator"):
            cache_response(ttl=1)(func)


@pytest.mark.parametrize(
    ("vary", "error"), [("accept", TypeError), (["*"], ValueError), ([1], TypeError)]
)
def test_vary_is_checked(vary: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        cache_response(ttl=1, vary=vary)


def test_seed_names_and_exports() -> None:
    assert exported is cache_response
    assert [s.value for s in CacheStatuses] == ["HIT", "MISS", "BYPASS", "NO_CACHE"]
    assert is_bypass.get() is False


def test_signature_gains_request_and_response() -> None:
    async def endpoint(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {}

    wrapped = cache_response(ttl=5)(endpoint)
    params = inspect.signature(wrapped).parameters
    assert list(params)[:2] == ["item_id", "q"]
    added = [p for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert [p.annotation for p in added] == [Request, Response]
    assert wrapped.__name__ == "endpoint"
    assert wrapped.__wrapped__ is endpoint  # type: ignore[attr-defined]
    assert inspect.signature(wrapped).return_annotation == dict[str, Any]


def test_signature_reuses_declared_request_and_response() -> None:
    async def endpoint(request: Request, response: Response, **extra: Any) -> None:
        return None

    wrapped = cache_response(ttl=5)(endpoint)
    assert list(inspect.signature(wrapped).parameters) == ["request", "response", "extra"]


def test_added_parameters_go_before_var_keyword() -> None:
    def endpoint(a: int, **extra: Any) -> None:
        return None

    params = list(inspect.signature(cache_response(ttl=5)(endpoint)).parameters.values())
    assert params[-1].kind is inspect.Parameter.VAR_KEYWORD
    assert [p.annotation for p in params[1:-1]] == [Request, Response]


async def test_endpoint_that_declares_request_and_response(clean_cache_setup: None) -> None:
    app = FastAPI()
    seen: list[str] = []

    @app.get("/echo/{name}")
    @cache_response(ttl=30)
    async def echo(name: str, request: Request, response: Response) -> JSONResponse:
        seen.append(str(request.url))
        response.headers["x-seen"] = str(len(seen))
        return JSONResponse({"name": name, "raw": request.url.query})

    CacheSetup.setup()
    async with client_for(app) as client:
        first = await client.get("/echo/a?x=1")
        second = await client.get("/echo/a?x=1")
        # the endpoint reads the raw Request: its whole query string is in the key
        other = await client.get("/echo/a?x=2")
    statuses = [r.headers["x-cache-status"] for r in (first, second, other)]
    assert statuses == ["MISS", "HIT", "MISS"]
    assert first.headers["x-seen"] == second.headers["x-seen"] == "1"
    assert second.json() == {"name": "a", "raw": "x=1"}
    assert other.json() == {"name": "a", "raw": "x=2"}
    assert len(seen) == 2


async def test_direct_calls_run_the_endpoint() -> None:
    async def endpoint(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    def sync_endpoint(request: Request, item_id: int) -> dict[str, Any]:
        return {"item_id": item_id, "request": request}

    assert await cache_response(ttl=5)(endpoint)(item_id=3) == {"item_id": 3}
    assert await cache_response(ttl=5)(endpoint)(4) == {"item_id": 4}
    wrapped_sync = cache_response(ttl=5)(sync_endpoint)
    assert await wrapped_sync(request=None, item_id=5) == {"item_id": 5, "request": None}


async def test_generic_alias_parameters_are_keyed(clean_cache_setup: None) -> None:
    """``list[str]`` as a bare annotation: Python 3.10 counts it as a class, and issubclass
    refuses it; the decorator, the keyer and @invalidates must take it as a plain type."""
    from fastapi import Query

    from fastapi_cachemate.invalidation import invalidates

    app = FastAPI()
    calls: list[list[str]] = []

    @app.get("/tagged")
    @cache_response(ttl=60)
    async def tagged(tags: list[str] = Query(default=[])) -> dict[str, list[str]]:  # noqa: B008
        calls.append(tags)
        return {"tags": tags}

    @app.post("/tagged")
    @invalidates(tagged)
    async def retag(tags: list[str] = Query(default=[])) -> None:  # noqa: B008
        return None

    CacheSetup.setup()
    async with client_for(app) as client:
        first = await client.get("/tagged", params={"tags": ["a", "b"]})
        second = await client.get("/tagged", params={"tags": ["a", "b"]})
        other = await client.get("/tagged", params={"tags": ["b", "a"]})
        await client.post("/tagged", params={"tags": ["a", "b"]})
        after = await client.get("/tagged", params={"tags": ["a", "b"]})
    assert [r.headers["x-cache-status"] for r in (first, second, other, after)] == [
        "MISS",
        "HIT",
        "MISS",
        "MISS",
    ]
    assert second.json() == {"tags": ["a", "b"]}
    assert calls == [["a", "b"], ["b", "a"], ["a", "b"]]
